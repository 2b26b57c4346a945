"""Monitoring scenarios (R §七, A 监控和告警 2): the runbook's alert rules, evaluated by a real
Prometheus (renderchaos.provisioning.stack.prometheus says why) scraping the API's metrics, fire while a
fault lasts and clear after recovery."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import pytest

from renderchaos.errors import ProvisioningError
from renderchaos.faults.base import Fault
from renderchaos.faults.media import PlacedAsset
from renderchaos.platforms.base import JobState
from renderchaos.probes.prometheus import PrometheusProbe
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.provisioning.stack.prometheus import PrometheusService, alert_rules, prometheus_image
from renderchaos.wait import Deadline, Poll, Wait, wait_for
from scenarios import monitor as M
from suites.conftest import all_completed

ALL_RULES = {"ServiceDown", "HighErrorRate", "QueueBacklog", "LowRenderSuccessRate", "HighTaskFailureRate",
             "SlowAPIResponse"}
PROM_START = Wait(60.0, "Prometheus ready, the rules evaluated and the API scraped")
POLL = Poll(0.5)
BAD_MODEL = "renderchaos-no-such-model"
#: traffic that keeps an alert's condition true: each request is cut here (a stopped dependency)
TRAFFIC = Wait(5.0, "one request of the alert traffic")
#: the QueueBacklog threshold, lowered for a test (the runbook's is 1000)
BACKLOG = 5
BACKLOG_BURST = 8


@contextmanager
def prometheus(run: ScenarioRun, window: str, thresholds: dict[str, tuple[str, str]] | None = None
               ) -> Iterator[PrometheusProbe]:
    """Prometheus for this platform's API, with the runbook's rules (for: 2s, range windows ``window``)."""
    ctx = run.target.context
    assert ctx is not None, "the scenario needs sidecars (Prometheus runs in the stack's context)"
    metrics = run.platform.metrics_endpoint()  # type: ignore[attr-defined]
    rules = alert_rules(run.platform.alert_rules_file(), for_s=2.0, window=window,  # type: ignore[attr-defined]
                        thresholds=thresholds)
    svc = PrometheusService(ctx, prometheus_image(), run.platform.endpoint.api_url.rstrip("/") + metrics.path,
                            rules)
    probe = PrometheusProbe(svc.base_url())
    try:
        try:
            svc.start()
        except ProvisioningError as exc:
            run.fail("a Prometheus container (image: `.venv/bin/python -m renderchaos.provisioning.engine --local build "
                     "prometheus`)", str(exc))
        svc.wait_ready(Deadline.after(run.wait(PROM_START)))
        # every rule of the runbook loaded and evaluated without error, and the API scraped
        wait_for(lambda: set(probe.rules()) == ALL_RULES and all(h == "ok" for h in probe.rules().values())
                 and probe.query('up{job="video-api"} == 1'),
                 "the runbook's six rules evaluated and the API scraped (up == 1)", run.wait(PROM_START), POLL)
        yield probe
    finally:
        probe.close()
        svc.remove()


def alert_cycle(run: ScenarioRun, probe: PrometheusProbe, alert: str, remedy: Fault | Callable[[], object],
                remedy_what: str, traffic: Callable[[], object] | None = None) -> None:
    """``alert`` fires while the fault lasts (``traffic`` runs at each poll), then clears after
    ``remedy`` (a fault healed, or a step of the scenario)."""

    def firing() -> bool:
        if traffic:
            traffic()
        return bool(probe.firing(alert))

    run.detect(firing, f"{alert} firing ({probe.summary()} at start)", poll=POLL)
    if callable(remedy):
        run.remedy(remedy, remedy_what)
    else:
        run.heal(remedy, remedy_what)
    run.recovered(lambda: not probe.active(alert), f"{alert} cleared after recovery", poll=POLL)


def ai_failures(run: ScenarioRun, n: int) -> None:
    """``n`` AI jobs for a model the provider does not have: accepted, then failed (and refunded)."""
    for _ in range(n):
        answer = run.platform.ai_submit(run.account, "renderchaos", model=BAD_MODEL)  # type: ignore[attr-defined]
        run.expect(run.ledger.accept(answer, run.account, kind="ai") is not None,
                   "AI job accepted, to fail at the provider", str(answer))


@runs(M.RULES_EVALUATE)
def test_rules_load_and_task_failure_alert(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with prometheus(run, window="10s") as probe:
        run.expect(not probe.firing("HighTaskFailureRate"), "HighTaskFailureRate not firing before the burst",
                   probe.summary())
        run.mark_injected("AI jobs for a model the provider does not have")
        alert_cycle(run, probe, "HighTaskFailureRate", lambda: None, "stop sending jobs for a missing model",
                    traffic=lambda: ai_failures(run, 1))
    run.steady_state_after()


@pytest.mark.stack()  # its own stack: it stops the API, the database and the workers, and counts renders
@runs(M.ALERTS)
def test_runbook_alerts_fire_and_clear(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    api_down, db_down, provider_slow, workers_down, _ai_failing, _bad_inputs = M.ALERTS.faults
    run.steady_state_before()
    api = run.platform.http(run.account, timeout=run.wait(TRAFFIC))

    def get(ep: Any) -> int:
        try:
            return api.request(ep.method, ep.path).status_code
        except httpx.HTTPError:
            return 0

    try:
        with prometheus(run, window="20s", thresholds={"QueueBacklog": ("> 1000", f"> {BACKLOG}")}) as probe:
            # ServiceDown: the API stopped (up == 0)
            alert_cycle(run, probe, "ServiceDown", run.inject(api_down), "start the API")

            # HighErrorRate: the database unreachable under traffic -> 5xx
            seen: list[int] = []
            read = run.platform.light_read()  # type: ignore[attr-defined]
            db = run.inject(db_down)
            alert_cycle(run, probe, "HighErrorRate", db, "bring the database route back",
                        traffic=lambda: seen.extend(get(read) for _ in range(5)))
            run.expect(any(s >= 500 for s in seen), "the API answers 5xx while the database is down", f"{seen[:20]}")

            # SlowAPIResponse: the AI provider 1.5 s slower; a read that asks the provider waits for it
            slow = run.inject(provider_slow)
            alert_cycle(run, probe, "SlowAPIResponse", slow, "remove the latency",
                        traffic=lambda: get(run.platform.provider_read()))  # type: ignore[attr-defined]

            # QueueBacklog (threshold lowered): every worker stopped, then a burst
            stopped = run.inject(workers_down)
            backlog = [run.accepted(run.submit(title=f"backlog {i}", duration=0.5, width=160, height=120),
                                    "a render while the workers are down") for i in range(BACKLOG_BURST)]
            alert_cycle(run, probe, "QueueBacklog", stopped, "start the workers")
            wait_for(lambda: all_completed(run, backlog), "the backlog to be rendered", run.timeouts.job_completion,
                     POLL)

            # HighTaskFailureRate: AI jobs failing at the provider
            alert_cycle(run, probe, "HighTaskFailureRate", lambda: None, "stop sending jobs for a missing model",
                        traffic=lambda: ai_failures(run, 1))

            # LowRenderSuccessRate: corrupt inputs fail; good renders bring the rate back over 90 %
            low_render_success(run, probe)
    finally:
        api.close()
    run.steady_state_after()


def _value(probe: PrometheusProbe, expr: str) -> float:
    result = probe.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def low_render_success(run: ScenarioRun, probe: PrometheusProbe) -> None:
    assert run.tmp_dir is not None
    run.tmp_dir.mkdir(parents=True, exist_ok=True)
    source = run.tmp_dir / "renderchaos-corrupt.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    corrupt = run.inject(PlacedAsset(run.platform, source)).asset
    finished = round(_value(probe, "render_jobs_finished_window"))
    completed = round(_value(probe, "render_success_rate") * finished)
    fail_n = max(1, int(completed / 0.9 - finished) + 1)  # completed / (finished + k) < 0.9
    failed = [run.accepted(run.submit(title="corrupt input", duration=0.5, width=160, height=120, input=corrupt),
                           "corrupt input accepted (the worker's media check fails it)") for _ in range(fail_n)]
    run.journal.notes.append(f"LowRenderSuccessRate: {completed}/{finished} completed before, {fail_n} failing")
    run.detect(lambda: probe.firing("LowRenderSuccessRate"), f"LowRenderSuccessRate firing ({probe.summary()})",
               poll=POLL)
    wrong = {i: str(j.state) for i in failed if (j := run.job(i)) is not None and j.state is JobState.COMPLETED}
    run.expect(not wrong, "the corrupt inputs failed (not completed)", str(wrong))
    total = finished + fail_n
    good_n = max(0, 9 * total - 10 * completed) + 1  # (completed + s) / (total + s) >= 0.9

    def good() -> None:
        for i in range(good_n):
            run.accepted(run.submit(title=f"good {i}", duration=0.5, width=160, height=120), "good render")

    run.remedy(good, f"render {good_n} good jobs")
    run.recovered(lambda: not probe.active("LowRenderSuccessRate"), "LowRenderSuccessRate cleared", poll=POLL)
