"""Run Locust in a subprocess (gevent's monkey-patching and pytest do not share a process).

:class:`LoadRun` is plain data (what to run, against which platform: a
:class:`~renderchaos.load.platform.PlatformSpec`, handed to the Locust processes as JSON in
``RENDERCHAOS_PLATFORM``); :class:`LocustProcess` starts it in distributed
mode on this machine (``--processes N``: a master plus N worker processes, one per core by
default), can be stopped early through the locustfile's stop file, and returns a
:class:`LoadResult` with the exit code, the report paths, the final per-request statistics and
the threshold breaches. Works from a plain script (benchmarks/load_capacity.py) as well as
from pytest (suites/test_load.py).

Across machines: ``LoadRun(..., expect_workers=N, master_bind="HOST:PORT")`` makes this run a
master that runs no users itself and waits for N workers; :meth:`LoadRun.worker_command` is the
command to start on each other machine (:class:`LocustWorker` starts it here, in a process
group of its own). Thresholds and the per-second history stay on the master.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from renderchaos.errors import RenderChaosError
from renderchaos.load import thresholds as th
from renderchaos.load.platform import ENV as PLATFORM_ENV
from renderchaos.load.platform import PlatformSpec

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
EXIT_THRESHOLD = 3  # the locustfile's exit code when a threshold broke


class LoadError(RenderChaosError):
    """Locust could not run (not installed, crashed, never stopped)."""


@dataclass
class LoadRun:
    platform: PlatformSpec  # what every Locust user builds its adapter from
    out_dir: Path
    name: str = "load"  # report file prefix
    users: int = 12
    spawn_rate: float = 4.0
    run_time_s: float = 60.0
    processes: int = -1  # -1: one worker process per core
    seed: int = 0
    weights: str = "render=3,ai=1,browse=1"
    think: str = "0.5,2.0"
    poll: str = "0.5,3.0,120"
    download: float = 0.5
    render: str = "1.0,320,240"
    thresholds_file: Path | None = None
    threshold_set: str = field(default_factory=lambda: os.environ.get(th.ENV_SET, ""))  # "key=value;..."
    enforce: bool = True
    locustfile: Path = LOCUSTFILE
    expect_workers: int = 0  # >0: a master for workers on other machines (no local worker processes)
    master_bind: str = "127.0.0.1:5557"  # where such a master listens for its workers
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def csv_prefix(self) -> Path:
        return self.out_dir / self.name

    @property
    def html(self) -> Path:
        return self.out_dir / f"{self.name}.html"

    @property
    def stats_csv(self) -> Path:
        return self.out_dir / f"{self.name}_stats.csv"

    @property
    def history_csv(self) -> Path:
        return self.out_dir / f"{self.name}_stats_history.csv"

    @property
    def accepted_file(self) -> Path:
        return self.out_dir / f"{self.name}_accepted.jsonl"

    @property
    def stop_file(self) -> Path:
        return self.out_dir / f"{self.name}.stop"

    @property
    def log_file(self) -> Path:
        return self.out_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("locust")
        cmd = [str(exe) if exe.exists() else "locust", "-f", str(self.locustfile), "--headless",
               "-u", str(self.users), "-r", str(self.spawn_rate),
               "-t", f"{int(self.run_time_s)}s", "--stop-timeout", "10",
               "--csv", str(self.csv_prefix), "--csv-full-history", "--html", str(self.html),
               "--only-summary", "--loglevel", "INFO"]
        if self.expect_workers:
            host, port = self._master()
            cmd += ["--master", "--master-bind-host", host, "--master-bind-port", str(port),
                    "--expect-workers", str(self.expect_workers), "--expect-workers-max-wait", "120"]
        elif self.processes:
            cmd += ["--processes", str(self.processes)]
        return cmd + self._rc_options() + self.extra_args

    def _master(self) -> tuple[str, int]:
        host, _, port = self.master_bind.rpartition(":")
        if not host or not port.isdigit():
            raise LoadError(f"master_bind {self.master_bind!r}: expected HOST:PORT, e.g. 127.0.0.1:5557")
        return host, int(port)

    def _rc_options(self) -> list[str]:
        if self.locustfile != LOCUSTFILE:
            return []
        # the renderchaos users' own options (the master sends them to its workers too)
        cmd = ["--rc-seed", str(self.seed), "--rc-accepted-file", str(self.accepted_file),
               "--rc-weights", self.weights, "--rc-think", self.think, "--rc-poll", self.poll,
               "--rc-download", str(self.download), "--rc-render", self.render,
               "--rc-threshold-set", self.threshold_set, "--rc-enforce", "1" if self.enforce else "0",
               "--rc-stop-file", str(self.stop_file)]
        if self.thresholds_file:
            cmd += ["--rc-thresholds", str(self.thresholds_file)]
        return cmd

    def worker_command(self, master_host: str, processes: int = 1) -> list[str]:
        """The command a worker machine runs to join this master (``master_host``: this machine's
        address as the worker reaches it). The platform spec goes through the environment
        (``RENDERCHAOS_PLATFORM``, see :meth:`env`), never argv."""
        _, port = self._master()
        exe = Path(sys.executable).with_name("locust")
        cmd = [str(exe) if exe.exists() else "locust", "-f", str(self.locustfile), "--worker",
               "--master-host", master_host, "--master-port", str(port), "--loglevel", "INFO"]
        if processes != 1:
            cmd += ["--processes", str(processes)]
        return cmd + self._rc_options()

    def env(self) -> dict[str, str]:
        # The platform spec (with the admin token) goes through the environment, not argv (ps
        # shows argv to everyone). The working directory is importable, as in pytest, so an
        # adapter given as module:Class from the user's repository loads in Locust too.
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, PLATFORM_ENV: self.platform.to_json(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path,
               **self.extra_env}
        for name in (th.ENV_SET, "RENDERCHAOS_ADMIN_TOKEN", "RENDERCHAOS_ADAPTER"):
            env.pop(name, None)  # explicit on the command line / in the spec, never inherited
        return env


@dataclass
class LoadResult:
    run: LoadRun
    exit_code: int
    elapsed_s: float
    stats: list[th.RequestStat]
    breaches: list[th.Breach]
    thresholds: th.Thresholds

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.breaches

    def row(self, key: str) -> th.RequestStat | None:
        return next((s for s in self.stats if s.key == key), None)

    def accepted(self) -> list[dict[str, Any]]:
        """The jobs Locust users saw accepted (one per line, written by every worker process)."""
        path = self.run.accepted_file
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def operations(self) -> str:
        """Per operation: requests, failures, p95 (what the report shows next to the summary)."""
        def p95(s: th.RequestStat) -> str:
            return "n/a" if s.p95_ms is None else f"{s.p95_ms:g} ms"

        return "; ".join(f"{s.key} {s.requests} req, {s.failures} failed, p95 {p95(s)}"
                         for s in self.stats if s.key != th.AGGREGATED)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.run.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def summary(self) -> str:
        agg = self.row(th.AGGREGATED)
        if agg is None:
            return "no requests recorded"
        return (f"{agg.requests} requests, {agg.failures} failed ({agg.failure_ratio:.2%}), "
                f"{agg.rps:.1f} req/s, p95 {agg.p95_ms} ms, p99 {agg.p99_ms} ms")


def _kill_group(proc: "subprocess.Popen[bytes] | None") -> None:
    """SIGKILL a Locust process's whole group (its workers, its users' children) and reap it."""
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class LocustProcess:
    """One Locust run in a subprocess (its own process group, so stopping it stops its workers)."""

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0

    def start(self) -> "LocustProcess":
        r = self.run
        r.out_dir.mkdir(parents=True, exist_ok=True)
        for p in (r.accepted_file, r.stop_file, r.history_csv, r.stats_csv):
            p.unlink(missing_ok=True)
        cmd = r.command()
        # Never import locust here: it monkey-patches the whole process (gevent) on import.
        if importlib.util.find_spec("locust") is None:
            raise LoadError("Locust is not installed: .venv/bin/pip install 'renderchaos[load]' "
                            "(or 'locust>=2.20')")
        log = open(r.log_file, "wb")
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=r.env(),
                                     start_new_session=True)
        log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ask Locust to stop now (it writes its reports and evaluates thresholds)."""
        self.run.stop_file.touch()

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for the run to end (``timeout`` default: run time + 90 s), then read the results."""
        assert self.proc is not None, "start() first"
        limit = timeout if timeout is not None else self.run.run_time_s + 90
        try:
            code = self.proc.wait(timeout=max(1.0, limit - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            self.stop()
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise LoadError(f"Locust did not finish within {limit:.0f}s and ignored the stop file; "
                                f"killed. Log: {self.run.log_file}") from None
        return self._result(code)

    def kill(self) -> None:
        _kill_group(self.proc)

    def _result(self, code: int) -> LoadResult:
        r = self.run
        t = th.load(r.thresholds_file, r.threshold_set)
        stats = th.read_stats_csv(r.stats_csv) if r.stats_csv.exists() else []
        res = LoadResult(run=r, exit_code=code, elapsed_s=round(time.monotonic() - self.t0, 1), stats=stats,
                         breaches=th.evaluate(stats, t) if stats else [], thresholds=t)
        if not stats:
            raise LoadError(f"Locust exited {code} without statistics ({r.stats_csv} missing); "
                            f"last log lines:\n{res.log_tail()}", exit_code=code)
        return res

    def __enter__(self) -> "LocustProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LocustWorker:
    """A Locust worker process joining a master, as on another machine: its own process group and
    session, its own working directory, and only the environment a worker machine would have."""

    def __init__(self, command: list[str], platform: PlatformSpec, log_file: Path, cwd: Path) -> None:
        self.command, self.platform, self.log_file, self.cwd = command, platform, log_file, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "LocustWorker":
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RENDERCHAOS_", "DOCKER_", "TESTCONTAINERS"))}
        # the platform spec (adapter, URLs, admin token) as a worker machine would be given it
        env.update({PLATFORM_ENV: self.platform.to_json(), "PYTHONUNBUFFERED": "1"})
        log = open(self.log_file, "wb")
        log.write(f"$ {shlex.join(self.command)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                     start_new_session=True)
        log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """The master's quit makes a worker exit by itself; end it (its whole group) otherwise."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return self.proc.wait(timeout=10)

    def kill(self) -> None:
        _kill_group(self.proc)

    def __enter__(self) -> "LocustWorker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_load(run: LoadRun) -> LoadResult:
    """Run to completion (blocking)."""
    with LocustProcess(run) as p:
        return p.wait()
