"""Load across machines: a Locust master that runs no users itself, and a worker started as it
would be on another host (own process group and session, own working directory, only the admin
token in its environment) that reaches the master over its port. The run still evaluates the
thresholds and the per-fault timeline from the master's history, with a fault held mid-run."""

from __future__ import annotations

import os
from pathlib import Path


from renderchaos.faults.container import Stopped
from renderchaos.load import history as H
from renderchaos.load.platform import PlatformSpec
from renderchaos.load.runner import LoadRun, LocustProcess, LocustWorker
from renderchaos.load.thresholds import ChaosThresholds
from renderchaos.provisioning.stack.context import free_port
from renderchaos.target import Target
from renderchaos.wait import Poll, wait_for


CHAOS = ChaosThresholds(max_failure_ratio=0.05, p95_ms=3000.0, recovery_deadline_s=40, stable_s=3, window_s=3)


def test_worker_in_its_own_process_group_reaches_the_master(chaos_stack: object, tmp_path: Path) -> None:
    stack = chaos_stack
    port = free_port()
    platform = PlatformSpec.of(Target.from_stack(stack).platform)  # type: ignore[arg-type]
    run = LoadRun(platform=platform, out_dir=tmp_path / "master",
                  users=4, spawn_rate=4, run_time_s=120, seed=7, expect_workers=1,
                  master_bind=f"127.0.0.1:{port}", enforce=False, think="0.2,0.6", render="0.5,160,120")
    master = LocustProcess(run)
    worker = LocustWorker(run.worker_command("127.0.0.1"), platform, tmp_path / "worker.log",
                          cwd=tmp_path / "worker-host")
    windows: list[H.FaultWindow] = []
    try:
        master.start()
        assert "--processes" not in run.command() and "--master" in run.command()
        worker.start()
        assert worker.proc is not None and master.proc is not None
        assert os.getpgid(worker.proc.pid) not in (os.getpgid(0), os.getpgid(master.proc.pid))
        assert os.getsid(worker.proc.pid) != os.getsid(master.proc.pid)

        def samples_for(seconds: float) -> bool:
            s = H.read_history(run.history_csv)
            return len(s) > 1 and s[-1].t - s[0].t >= seconds and s[-1].requests > 0

        wait_for(lambda: samples_for(12), what="12 s of load from the remote worker in the master's history",
                 timeout=90, poll=Poll(1.0))
        fault = Stopped(stack.redis, grace=2)  # type: ignore[attr-defined]
        t0 = H.read_history(run.history_csv)[-1].t
        fault.inject()
        wait_for(lambda: H.read_history(run.history_csv)[-1].t >= t0 + 6, what="6 s of load under the fault",
                 timeout=30, poll=Poll(0.5))
        t_heal = H.read_history(run.history_csv)[-1].t
        fault.heal()
        windows.append(H.FaultWindow("redis.down", t0, t_heal))
        wait_for(lambda: H.recovered_at(H.read_history(run.history_csv), t_heal, CHAOS) is not None,
                 what="recovery after redis is back", timeout=60, poll=Poll(1.0))
        master.stop()
        result = master.wait(timeout=90)
        assert worker.stop(timeout=30) is not None, "the worker exits when its master quits"
    finally:
        master.kill()
        worker.kill()
    log = run.log_file.read_text()
    assert "1 workers connected" in log, log[-2000:]
    agg = result.row("Aggregated")
    assert agg is not None and agg.requests > 20, result.summary()  # every request came from the worker
    assert result.thresholds is not None and isinstance(result.breaches, list)  # evaluated on the master
    [impact] = H.analyse(H.read_history(run.history_csv), windows, CHAOS)
    assert impact.name == "redis.down" and impact.requests > 0
    assert impact.time_to_recover_s is not None, impact.describe()
    assert result.accepted(), "the worker recorded the jobs it saw accepted (the ledger feed)"
    assert "Traceback" not in (tmp_path / "worker.log").read_text()
