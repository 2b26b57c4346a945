"""Nothing left behind: a run interrupted by Ctrl-C or killed outright leaves no containers,
volumes, temp dirs or processes of ours; two xdist workers get isolated resources. On every
engine of RENDERCHAOS_TEST_ENGINES (the inner run chooses it with RENDERCHAOS_ENGINE)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from renderchaos.provisioning.engine.engine import DOCKERD_SOCKET, SYSTEM_DOCKER, ping
from renderchaos.provisioning.stack.context import LABEL_RUN, run_tmp_root
from renderchaos.wait import Poll, wait_for
from tests.stack.conftest import ENGINES

pytestmark = pytest.mark.containers  # real engines (tests/conftest.py cannot see it from the fixtures)

INNER = '''
import json, os
from pathlib import Path
from renderchaos.provisioning.stack.services import Postgres, Redis
from renderchaos.wait import Deadline, wait_for


def _hold(chaos_context, chaos_images, tag):
    # a labelled named volume, as the reference stack's storage and compose stacks' volumes are
    chaos_context.engine.client().volumes.create(name=chaos_context.name("vol"), labels=chaos_context.labels)
    services = [Redis(chaos_context, chaos_images["redis"]), Postgres(chaos_context, chaos_images["postgres"])]
    for s in services:
        s.start()
    for s in services:
        s.wait_ready(Deadline.after(60))
    Path(os.environ["RC_MARKERS"], tag).write_text(json.dumps({
        "run": chaos_context.run_id, "stack": chaos_context.stack_id, "pid": os.getpid(),
        "ports": [s.port for s in services], "names": [s.container_name for s in services]}))
    if os.environ.get("RC_HOLD"):
        wait_for(lambda: False, what="the outer test to interrupt this run", timeout=180)

def test_a(chaos_context, chaos_images):
    _hold(chaos_context, chaos_images, "a")

def test_b(chaos_context, chaos_images):
    _hold(chaos_context, chaos_images, "b")
'''


@pytest.fixture
def keep_engine_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """This process uses the engine too, so the inner run's exit cannot stop it under our checks
    (a stopped dockerd would make every container look gone)."""
    from renderchaos.provisioning.engine.engine import find_engine, release_user

    user = f"reaper-test-{os.getpid()}"
    find_engine(user=user, kind=request.node.callspec.params["engine"])
    yield
    release_user(user)


def _cli(engine: str) -> list[str]:
    if engine == "podman":
        return ["podman"]
    # the inner run's docker engine: the system's if it answers, else ours (started on demand)
    return ["docker", "--host", SYSTEM_DOCKER if ping(SYSTEM_DOCKER) else f"unix://{DOCKERD_SOCKET}"]


def _containers(run_id: str, engine: str) -> list[str]:
    out = subprocess.run([*_cli(engine), "ps", "-a", "--format", "{{.Names}}", "--filter",
                          f"label={LABEL_RUN}={run_id}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _volumes(run_id: str, engine: str) -> list[str]:
    out = subprocess.run([*_cli(engine), "volume", "ls", "-q", "--filter", f"label={LABEL_RUN}={run_id}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _our_processes(run_id: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if run_id in line and "ps -eo" not in line]


def _launch(tmp_path: Path, engine: str, *args: str, hold: bool) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "test_inner.py").write_text(INNER)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "RENDERCHAOS_ENGINE_KIND")}
    env.update(RC_MARKERS=str(markers), PYTHONPATH=str(Path.cwd()), RENDERCHAOS_ENGINE=engine)
    if hold:
        env["RC_HOLD"] = "1"
    # --basetemp: the inner run's own temp dir, so its end-of-session cleanup of pytest's numbered
    # temp dirs never touches this (outer) session's
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "inner-tmp"),
                             *args, str(tmp_path / "test_inner.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, markers


def _assert_all_gone(run_id: str, engine: str, within: float) -> float:
    t0 = time.monotonic()
    wait_for(lambda: not _containers(run_id, engine), what=f"no containers labelled {LABEL_RUN}={run_id}",
             timeout=within, poll=Poll(0.1))
    gone = time.monotonic() - t0
    wait_for(lambda: not _volumes(run_id, engine), what=f"no volumes labelled {LABEL_RUN}={run_id}",
             timeout=within, poll=Poll(0.1))
    wait_for(lambda: not _our_processes(run_id), what=f"no process mentioning run {run_id}",
             timeout=within, poll=Poll(0.1))
    wait_for(lambda: not run_tmp_root(run_id).exists(), what=f"{run_tmp_root(run_id)} removed",
             timeout=within, poll=Poll(0.1))
    return gone


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_run_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals, engine: str,
                                               keep_engine_up: None) -> None:
    proc, markers = _launch(tmp_path, engine, "-k", "test_a", hold=True)
    try:
        wait_for(lambda: (markers / "a").exists() or proc.poll() is not None,
                 what="the inner run to start its containers", timeout=120, poll=Poll(0.2))
        assert (markers / "a").exists(), proc.communicate(timeout=30)[0].decode()[-3000:]
        info = json.loads((markers / "a").read_text())
        assert set(_containers(info["run"], engine)) == set(info["names"])
        assert _volumes(info["run"], engine), "the inner run made a labelled volume"
        proc.send_signal(sig)
        # SIGKILL: the watcher sweeps, within 5 s. Ctrl-C: the run tears its stack down itself
        # (graceful stops, reports written), which on a loaded 2-core CI machine took over 5 s.
        gone = _assert_all_gone(info["run"], engine, within=5.0 if sig is signal.SIGKILL else 30.0)
        print(f"{engine} {sig.name}: containers gone {gone:.2f}s after the signal")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[-1][:1] != "Z"


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_of_the_xdist_controller_leaves_nothing_behind(tmp_path: Path, engine: str,
                                                              keep_engine_up: None) -> None:
    """kill -9 of the controller of an ``-n 2`` run: its workers, their containers and temp dirs
    are gone within 5 s (the workers do not go on until they notice)."""
    proc, markers = _launch(tmp_path, engine, "-n", "2", hold=True)
    try:
        wait_for(lambda: (markers / "a").exists() and (markers / "b").exists(),
                 what="both xdist workers to start their containers", timeout=180, poll=Poll(0.2))
        a, b = (json.loads((markers / t).read_text()) for t in ("a", "b"))
        assert a["run"] == b["run"] and _alive(a["pid"]) and _alive(b["pid"])
        assert set(_containers(a["run"], engine)) == set(a["names"]) | set(b["names"])
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)  # the controller only: its workers keep running until ended
        _assert_all_gone(a["run"], engine, within=5.0)
        wait_for(lambda: not _alive(a["pid"]) and not _alive(b["pid"]), what="both xdist workers to be gone",
                 timeout=max(0.1, 5.0 - (time.monotonic() - t0)), poll=Poll(0.1))
        print(f"controller SIGKILLed: workers and containers gone {time.monotonic() - t0:.2f}s later")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize("engine", ENGINES)
def test_two_xdist_workers_run_isolated_stacks(tmp_path: Path, engine: str, keep_engine_up: None) -> None:
    proc, markers = _launch(tmp_path, engine, "-n", "2", hold=False)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out.decode()
    a, b = (json.loads((markers / t).read_text()) for t in ("a", "b"))
    assert a["run"] == b["run"], "one run id for the whole xdist session"
    assert a["pid"] != b["pid"] and a["stack"] != b["stack"], "each worker has its own stack"
    assert not set(a["ports"]) & set(b["ports"]) and not set(a["names"]) & set(b["names"])
    _assert_all_gone(a["run"], engine, within=5.0)
