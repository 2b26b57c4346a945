"""Queue and worker scenarios (R §三.2, A §2)."""

from __future__ import annotations

from renderchaos.faults.container import Stopped
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Poll, wait_for
from scenarios import queue as Q


@runs(Q.WORKER_DOWN)
def test_worker_down_jobs_wait_then_complete(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    faults = [run.inject(Stopped(w, grace=5)) for w in stack.workers]
    ids = []
    for i in range(4):
        resp = run.submit(title=f"while workers are down {i}", duration=1.0)
        run.expect(resp.status_code == 202, "accepted while workers are down (202)",
                   f"{resp.status_code} {resp.text[:200]}")
        ids.append(resp.json()["id"])
    # symptom: they stay pending (not lost, not failed) for as long as the workers are down
    run.detect(lambda: all((run.ledger.status(i) or {}).get("status") == "pending" for i in ids),
               "every job submitted while the workers are down to be pending")
    hold = Deadline.after(3.0)  # scenario step: keep the workers down for 3 s
    try:
        wait_for(lambda: any((run.ledger.status(i) or {}).get("status") != "pending" for i in ids),
                 what="a job leaving pending while no worker runs", timeout=hold, poll=Poll(0.5))
        run.fail("jobs stay pending while no worker runs", "a job left pending with every worker stopped")
    except Exception as exc:  # noqa: BLE001
        if exc.__class__.__name__ != "WaitTimeout":
            raise
    for f in faults:
        run.heal(f, "restart the worker")
    run.recovered(lambda: all((run.ledger.status(i) or {}).get("status") == "completed" for i in ids),
                  "every job accepted during the outage to complete")
    run.steady_state_after()
