"""The run as OpenTelemetry traces, over the real wire: the SDK's OTLP/HTTP exporter sends to a
receiver started here, which decodes ExportTraceServiceRequest with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from renderchaos.errors import ConfigError
from renderchaos.report.otel import TelemetryError, export_run
from renderchaos.report.synthetic import synthetic_doc


class Receiver:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1 (http/protobuf, as a collector takes it)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                receiver.paths.append(self.path)
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                receiver.requests.append(req)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    def spans(self) -> list[Any]:
        return [s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(timeout=5)


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def test_no_endpoint_no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert export_run(synthetic_doc(2)) is None


def test_the_run_arrives_as_a_span_tree(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    doc = synthetic_doc(3, failures=1)
    doc["results"][2]["faults"][0].update(healed_at=None, heal_error="route stuck")
    sent = export_run(doc)
    assert receiver.paths == ["/v1/traces"]
    spans = receiver.spans()
    assert sent == len(spans) == 1 + 3 * (1 + 5 + 1)  # run, 3 x (scenario, 5 phases, 1 fault)
    res = {kv.key: kv.value.string_value for kv in receiver.requests[0].resource_spans[0].resource.attributes}
    assert res["service.name"] == "renderchaos" and res["renderchaos.run_id"] == "synthetic1"

    by_id = {s.span_id: s for s in spans}
    [run] = [s for s in spans if not s.parent_span_id]
    assert run.name == "renderchaos run" and attrs(run)["renderchaos.verdict"] == "failed"
    assert run.status.code == Status.STATUS_CODE_ERROR
    scenarios = [s for s in spans if s.parent_span_id == run.span_id]
    assert sorted(s.name for s in scenarios) == [f"scenario {e['id']}" for e in doc["results"]]
    assert {s.trace_id for s in spans} == {run.trace_id}

    failed_entry = doc["results"][0]
    [sc] = [s for s in scenarios if s.name == f"scenario {failed_entry['id']}"]
    a = attrs(sc)
    assert a["renderchaos.scenario.id"] == failed_entry["id"]
    assert a["renderchaos.runbook.key"] == "R"
    assert a["renderchaos.runbook.section"] == failed_entry["runbook_section"]
    assert a["renderchaos.outcome"] == "failed"
    assert a["renderchaos.time_to_detect_s"] == pytest.approx(failed_entry["time_to_detect_s"])
    assert a["renderchaos.time_to_recover_s"] == pytest.approx(failed_entry["time_to_recover_s"])
    assert a["renderchaos.limit.recover_s"] == 60.0
    assert sc.status.code == Status.STATUS_CODE_ERROR and "1 lost job" in sc.status.message
    assert {ev.name for ev in sc.events} == {"symptom detected", "recovered"}
    start = failed_entry["started_at"]
    assert sc.start_time_unix_nano == round(start * 1e9)

    children = [s for s in spans if s.parent_span_id == sc.span_id]
    phase_names = [s.name for s in children if s.name.startswith("phase ")]
    assert phase_names == [f"phase {p['name']}" for p in failed_entry["phases"]]
    inject = next(s for s in children if s.name == "phase inject")
    p = failed_entry["phases"][1]
    assert inject.start_time_unix_nano == round((start + p["started"]) * 1e9)
    assert inject.end_time_unix_nano == round((start + p["ended"]) * 1e9)
    [fault] = [s for s in children if s.name.startswith("fault ")]
    f = failed_entry["faults"][0]
    assert fault.start_time_unix_nano == round((start + f["injected_at"]) * 1e9)
    assert fault.end_time_unix_nano == round((start + f["healed_at"]) * 1e9)
    assert attrs(fault)["renderchaos.fault.healed"] is True
    assert attrs(fault)["renderchaos.runbook.section"] == failed_entry["runbook_section"]
    for s in spans:  # every span inside its parent's window
        if s.parent_span_id:
            parent = by_id[s.parent_span_id]
            assert parent.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano \
                <= parent.end_time_unix_nano, s.name

    stuck = next(s for s in spans if s.name == f"fault {doc['results'][2]['faults'][0]['description']}")
    assert stuck.status.code == Status.STATUS_CODE_ERROR and attrs(stuck)["renderchaos.fault.healed"] is False


def test_a_collector_that_refuses_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Receiver(status=400)
    r.thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
        with pytest.raises(TelemetryError, match="did not accept"):
            export_run(synthetic_doc(1))
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_an_old_document_without_start_times_is_laid_end_to_end(receiver: Receiver,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    doc = synthetic_doc(2, failures=0)
    for e in doc["results"]:
        del e["started_at"], e["faults"]
    assert export_run(doc) == 1 + 2 * 6
    scen = sorted((s for s in receiver.spans() if s.name.startswith("scenario ")), key=lambda s: s.start_time_unix_nano)
    assert scen[0].end_time_unix_nano <= scen[1].start_time_unix_nano
    assert attrs(scen[0])["renderchaos.time_approximate"] is True


def test_a_remote_endpoint_needs_allow_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://192.0.2.10:4318")
    with pytest.raises(ConfigError, match="not loopback"):
        export_run(synthetic_doc(1))
