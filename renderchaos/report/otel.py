"""The run as OpenTelemetry traces, so fault windows line up with the platform's own traces.

When ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set,
:func:`export_run` turns a finished results document into spans and sends them with the
OpenTelemetry SDK's OTLP/HTTP (protobuf) exporter:

    renderchaos run                      the whole session
    └── scenario <id>                    one per results entry (runbook section, outcome, TTD/TTR)
        ├── phase <name>                 steady_state_before, inject, detect, remedy, ...
        └── fault <description>          injected .. healed (an error span when never healed)

Spans are built after the fact with explicit start and end times: an entry's ``started_at``
(epoch seconds) plus the relative seconds of its phases and faults. The SDK's standard
variables apply (``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``). Needs the ``otel`` extra:
``pip install 'renderchaos[otel]'``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from renderchaos.errors import RenderChaosError
from renderchaos.report.doc import BAD, Doc, Entry, failure_parts, num, rel_end, runbook_parts, scenario_id, verdict

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
NS = 1_000_000_000


class TelemetryError(RenderChaosError):
    """The run could not be exported as traces (fields: ``endpoint``)."""


def endpoint() -> str | None:
    for var in ENDPOINT_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def export_run(doc: Doc, allow_remote: bool = False) -> int | None:
    """Send the run's spans to the OTLP endpoint; the number of spans sent, or None when no
    endpoint is configured. Raises :class:`TelemetryError` when the collector does not take them,
    and ConfigError for an endpoint outside 127.0.0.0/8 unless ``allow_remote``."""
    url = endpoint()
    if not url:
        return None
    from renderchaos.config import ensure_loopback

    ensure_loopback(url, "OTEL_EXPORTER_OTLP_ENDPOINT", allow_remote)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult
    except ImportError as exc:
        raise TelemetryError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set ({url}) but the OpenTelemetry SDK is not installed ({exc}); "
            "expected opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http: "
            "pip install 'renderchaos[otel]', or unset the variable", endpoint=url) from exc
    spans = build_spans(doc)
    exporter = OTLPSpanExporter()
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        raise TelemetryError(
            f"the OTLP/HTTP collector at {url} did not accept the run's {len(spans)} spans (see the "
            "exporter's log line above for the status); expected a 2xx from its /v1/traces: check that a "
            "collector listens there and takes http/protobuf", endpoint=url)
    return len(spans)


def build_spans(doc: Doc) -> "list[ReadableSpan]":
    """The finished spans of a run (SDK objects; nothing is sent)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    attrs: dict[str, Any] = {"service.name": "renderchaos"}
    if doc.get("run_id"):
        attrs["renderchaos.run_id"] = str(doc["run_id"])
    if os.environ.get("OTEL_SERVICE_NAME"):
        attrs.pop("service.name")  # Resource.create reads it
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("renderchaos.report")

    results = list(doc.get("results", []))
    placed = _place(doc, results)
    run_start = min((s for s, _ in placed), default=0.0)
    run_end = max((e for _, e in placed), default=run_start)
    elapsed = num(doc.get("elapsed_s"))
    if elapsed is not None:
        run_end = max(run_end, run_start + elapsed)
    v = verdict(doc)
    run_attrs = _clean({
        "renderchaos.run_id": doc.get("run_id"), "renderchaos.profile": doc.get("profile"),
        "renderchaos.seed": doc.get("seed"), "renderchaos.target": doc.get("target"),
        "renderchaos.platform": doc.get("platform"), "renderchaos.revision": doc.get("revision"),
        "renderchaos.verdict": v, "renderchaos.interrupted": bool(doc.get("interrupted")),
        "renderchaos.command": doc.get("command"), "renderchaos.broken": list(doc.get("broken") or []) or None,
        **{f"renderchaos.summary.{k}": n for k, n in (doc.get("summary") or {}).items()},
    })
    run = tracer.start_span("renderchaos run", attributes=run_attrs, start_time=_ns(run_start))
    run_ctx = trace.set_span_in_context(run)
    for entry, (start, end) in zip(results, placed):
        _scenario(tracer, run_ctx, entry, start, end, Status, StatusCode, trace)
    if v != "passed":
        run.set_status(Status(StatusCode.ERROR, f"run {v}"))
    run.end(end_time=_ns(run_end))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _place(doc: Doc, results: list[Entry]) -> list[tuple[float, float]]:
    """(start, end) epoch seconds per entry; entries without ``started_at`` (older documents) are
    laid end to end after the last known one."""
    out = []
    cursor = None
    known = [num(e.get("started_at")) for e in results]
    if any(k is not None for k in known):
        cursor = min(k for k in known if k is not None)
    else:
        import calendar
        import time

        try:
            cursor = calendar.timegm(time.strptime(str(doc.get("generated_at")), "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            cursor = time.time()
        cursor -= num(doc.get("elapsed_s")) or sum(num(e.get("duration_s")) or 0.0 for e in results)
    for e, start in zip(results, known):
        length = max(rel_end(e), 0.001)
        if start is None:
            start = cursor
            length = max(length, num(e.get("duration_s")) or 0.0, 0.001)
        out.append((start, start + length))
        cursor = max(cursor, start + length)
    return out


def _scenario(tracer: Any, parent: Any, e: Entry, start: float, end: float, Status: Any, StatusCode: Any,
              trace: Any) -> None:
    key, section = runbook_parts(e)
    sid = scenario_id(e)
    limits = e.get("limits") or {}
    ledger = e.get("ledger") or {}
    attrs = _clean({
        "renderchaos.scenario.id": sid, "renderchaos.scenario.title": e.get("title"),
        "renderchaos.scenario.nodeid": e.get("nodeid"),
        "renderchaos.runbook": e.get("runbook"), "renderchaos.runbook.key": key,
        "renderchaos.runbook.section": section, "renderchaos.outcome": e.get("outcome"),
        "renderchaos.time_to_detect_s": num(e.get("time_to_detect_s")),
        "renderchaos.time_to_recover_s": num(e.get("time_to_recover_s")),
        "renderchaos.limit.detect_s": num(limits.get("detect_s")),
        "renderchaos.limit.recover_s": num(limits.get("recover_s")),
        "renderchaos.faults_active_at_end": e.get("faults_active_at_end"),
        "renderchaos.time_approximate": True if num(e.get("started_at")) is None else None,
        **{f"renderchaos.ledger.{k}": v for k, v in ledger.items() if isinstance(v, (int, float))},
        **{f"renderchaos.{k}": e.get(k) for k in ("lost", "stuck", "duplicated", "orphan_ffmpeg")
           if isinstance(e.get(k), int)},
    })
    span = tracer.start_span(f"scenario {sid}", context=parent, attributes=attrs, start_time=_ns(start))
    ctx = trace.set_span_in_context(span)
    base = start
    for p in e.get("phases") or []:
        a, b = num(p.get("started")), num(p.get("ended"))
        if a is None:
            continue
        ps = tracer.start_span(f"phase {p.get('name')}", context=ctx, start_time=_ns(base + a), attributes=_clean({
            "renderchaos.phase.name": p.get("name"), "renderchaos.phase.ok": p.get("ok"),
            "renderchaos.phase.note": p.get("note") or None, "renderchaos.scenario.id": sid,
            "renderchaos.phase.ended": b is not None}))
        if p.get("ok") is False:
            ps.set_status(Status(StatusCode.ERROR, "phase failed"))
        ps.end(end_time=_ns(base + b if b is not None else end))
    for f in e.get("faults") or []:
        a, h = num(f.get("injected_at")), num(f.get("healed_at"))
        if a is None:
            continue
        fs = tracer.start_span(f"fault {f.get('description', '?')}", context=ctx, start_time=_ns(base + a),
                               attributes=_clean({"renderchaos.fault.description": f.get("description"),
                                                  "renderchaos.fault.healed": h is not None,
                                                  "renderchaos.fault.heal_error": f.get("heal_error"),
                                                  "renderchaos.scenario.id": sid,
                                                  "renderchaos.runbook.section": section}))
        if h is None or f.get("heal_error"):
            fs.set_status(Status(StatusCode.ERROR, f.get("heal_error") or "never healed"))
        fs.end(end_time=_ns(base + h if h is not None else end))
    from renderchaos.report.timeline import anchors

    inject, remedy = anchors(e)
    ttd, ttr = num(e.get("time_to_detect_s")), num(e.get("time_to_recover_s"))
    if inject is not None and ttd is not None:
        span.add_event("symptom detected", {"renderchaos.time_to_detect_s": ttd}, timestamp=_ns(base + inject + ttd))
    if remedy is not None and ttr is not None:
        span.add_event("recovered", {"renderchaos.time_to_recover_s": ttr}, timestamp=_ns(base + remedy + ttr))
    if e.get("outcome") in BAD:
        fp = failure_parts(e)
        span.set_status(Status(StatusCode.ERROR, (fp.get("observed") or fp.get("message") or str(e.get("outcome")))[:500]))
    span.end(end_time=_ns(end))


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """Drop None values (OpenTelemetry attributes cannot be null)."""
    return {k: v for k, v in attrs.items() if v is not None}
