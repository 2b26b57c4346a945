"""Monitoring scenarios (R §七, A 监控和告警 2): the runbook's alert rules, evaluated by a real
Prometheus (renderchaos.stack.prometheus says why) scraping the API's /metrics, fire while a
fault lasts and clear after recovery."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import httpx
import pytest

from renderchaos.errors import ProvisioningError
from renderchaos.faults.container import Stopped
from renderchaos.faults.network import RouteDown, RouteToxic
from renderchaos.probes.prometheus import PrometheusProbe
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.stack.prometheus import PrometheusService, alert_rules, prometheus_image
from renderchaos.wait import Deadline, Poll, wait_for
from scenarios import monitor as M

ALL_RULES = {"ServiceDown", "HighErrorRate", "QueueBacklog", "LowRenderSuccessRate", "HighTaskFailureRate",
             "SlowAPIResponse"}
PROM_START_S = 60.0
POLL = Poll(0.5)
BAD_MODEL = "renderchaos-no-such-model"
TRAFFIC_TIMEOUT_S = 5.0


@contextmanager
def prometheus(run: ScenarioRun, window: str, thresholds: dict[str, tuple[str, str]] | None = None
               ) -> Iterator[PrometheusProbe]:
    """Prometheus for this stack's API, with the runbook's rules (for: 2s, range windows ``window``)."""
    stack = run.target.stack
    assert stack is not None
    svc = PrometheusService(stack.ctx, prometheus_image(), stack.api.port,
                            alert_rules(for_s=2.0, window=window, thresholds=thresholds))
    probe = PrometheusProbe(svc.base_url())
    try:
        try:
            svc.start()
        except ProvisioningError as exc:
            run.fail("a Prometheus container (image: `.venv/bin/python -m renderchaos.engine --local build "
                     "prometheus`)", str(exc))
        svc.wait_ready(Deadline.after(PROM_START_S))
        # every rule of the runbook loaded and evaluated without error, and the API scraped
        wait_for(lambda: set(probe.rules()) == ALL_RULES and all(h == "ok" for h in probe.rules().values())
                 and probe.query('up{job="video-api"} == 1'),
                 "the runbook's six rules evaluated and the API scraped (up == 1)", PROM_START_S, POLL)
        yield probe
    finally:
        probe.close()
        svc.remove()


def alert_cycle(run: ScenarioRun, probe: PrometheusProbe, alert: str, remedy: Callable[[], object],
                remedy_what: str, traffic: Callable[[], object] | None = None,
                clear_traffic: Callable[[], object] | None = None) -> None:
    """``alert`` fires while the fault lasts (``traffic`` runs at each poll), then clears after ``remedy``."""

    def firing() -> bool:
        if traffic:
            traffic()
        return bool(probe.firing(alert))

    run.detect(firing, f"{alert} firing ({probe.summary()} at start)", poll=POLL)
    run.remedy(remedy, remedy_what)

    def cleared() -> bool:
        if clear_traffic:
            clear_traffic()
        return not probe.active(alert)

    run.recovered(cleared, f"{alert} cleared after recovery", poll=POLL)


def ai_failures(run: ScenarioRun, n: int) -> None:
    for _ in range(n):
        resp = run.api.http.post("/api/v1/ai/jobs", json={"model": BAD_MODEL, "prompt": "renderchaos"})
        run.expect(resp.status_code == 202, "AI job accepted (202), to fail at the provider",
                   f"{resp.status_code} {resp.text[:200]}")


@runs(M.RULES_EVALUATE)
def test_rules_load_and_task_failure_alert(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with prometheus(run, window="10s") as probe:
        run.expect(not probe.firing("HighTaskFailureRate"), "HighTaskFailureRate not firing before the burst",
                   probe.summary())
        alert_cycle(run, probe, "HighTaskFailureRate", lambda: None, "stop sending jobs for a missing model",
                    traffic=lambda: ai_failures(run, 1))
    run.steady_state_after()


@pytest.mark.stack()  # its own stack: it stops the API, the database and the workers, and counts renders
@runs(M.ALERTS)
def test_runbook_alerts_fire_and_clear(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    key = run.user.api_key
    api = httpx.Client(base_url=stack.api_url, timeout=TRAFFIC_TIMEOUT_S, headers={"Authorization": f"Bearer {key}"})

    def get(path: str) -> int:
        try:
            return api.get(path).status_code
        except httpx.HTTPError:
            return 0

    try:
        with prometheus(run, window="20s", thresholds={"QueueBacklog": ("> 1000", "> 5")}) as probe:
            # ServiceDown: the API stopped (up == 0)
            down = run.inject(Stopped(stack.api, grace=5))
            alert_cycle(run, probe, "ServiceDown", down.heal, "start the API")

            # HighErrorRate: the database unreachable under traffic -> 5xx
            seen: list[int] = []
            db = run.inject(RouteDown(stack.proxy_url, stack.routes["postgres"].name))
            alert_cycle(run, probe, "HighErrorRate", db.heal, "bring the database route back",
                        traffic=lambda: seen.extend(get("/v1/videos?limit=1") for _ in range(5)))
            run.expect(any(s >= 500 for s in seen), "the API answers 5xx while the database is down", f"{seen[:20]}")

            # SlowAPIResponse: the AI provider 1.5 s slower; /api/v1/ai/models waits for it
            slow = run.inject(RouteToxic(stack.proxy_url, stack.routes["provider"].name, "latency",
                                         attributes={"latency": 1500, "jitter": 0}))
            alert_cycle(run, probe, "SlowAPIResponse", slow.heal, "remove the latency",
                        traffic=lambda: get("/api/v1/ai/models"))

            # QueueBacklog (threshold lowered to 5): every worker stopped, then a burst
            stopped = [run.inject(Stopped(w, grace=5)) for w in stack.workers]
            for i in range(8):
                resp = run.submit(title=f"backlog {i}", duration=0.5, width=160, height=120)
                run.expect(resp.status_code == 202, "accepted while workers are down", f"{resp.status_code}")
            alert_cycle(run, probe, "QueueBacklog", lambda: [f.heal() for f in stopped], "start the workers")
            wait_for(lambda: not run.admin.jobs(status="pending,running", kind="render"),
                     "the backlog to be rendered", run.timeouts.job_completion, POLL)

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
    stack = run.target.stack
    assert stack is not None
    corrupt = stack.assets_dir / "renderchaos-corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    corrupt.chmod(0o644)
    finished = round(_value(probe, "render_jobs_finished_window"))
    completed = round(_value(probe, "render_success_rate") * finished)
    fail_n = max(1, int(completed / 0.9 - finished) + 1)  # completed / (finished + k) < 0.9
    failed_ids = []

    def burst() -> None:
        for _ in range(fail_n):
            resp = run.submit(title="corrupt input", duration=0.5, width=160, height=120,
                              input_asset=corrupt.name)
            run.expect(resp.status_code == 202, "corrupt input accepted (the worker's ffprobe gate fails it)",
                       f"{resp.status_code} {resp.text[:200]}")
            failed_ids.append(resp.json()["id"])

    burst()
    run.journal.notes.append(f"LowRenderSuccessRate: {completed}/{finished} completed before, {fail_n} failing")
    run.detect(lambda: probe.firing("LowRenderSuccessRate"), f"LowRenderSuccessRate firing ({probe.summary()})",
               poll=POLL)
    total = finished + fail_n
    good_n = max(0, 9 * total - 10 * completed) + 1  # (completed + s) / (total + s) >= 0.9

    def good() -> None:
        for i in range(good_n):
            resp = run.submit(title=f"good {i}", duration=0.5, width=160, height=120)
            run.expect(resp.status_code == 202, "good render accepted", f"{resp.status_code}")

    run.remedy(good, f"render {good_n} good jobs")
    run.recovered(lambda: not probe.active("LowRenderSuccessRate"), "LowRenderSuccessRate cleared", poll=POLL)
