"""Remove everything a run created, by its label, even if the run is SIGKILLed.

``Reaper.start(run_id, cli, host=...)`` forks a detached watcher (its own session, so Ctrl-C in
the terminal does not reach it) that blocks reading a pipe whose only write end this
process holds. When this process exits for any reason, including SIGKILL, the kernel
closes the write end, the watcher reads EOF and sweeps:

* containers labelled ``renderchaos.run=<id>`` (``rm -f -v``: also anonymous volumes),
* volumes with that label, then again after a short delay (an xdist worker may have been
  creating one at the moment of the kill),
* the run's temp directory,
* the Podman API service, if we started it and no other live run uses it.

The controller's watcher (a run with ``-n``) also ends the run's other processes first: every
xdist worker registers itself (:func:`register_process`), and when the controller dies the
watcher SIGKILLs those workers and their children (Locust, ffmpeg...) before sweeping, so a
``kill -9`` of the controller leaves nothing running: the workers do not go on creating
containers until they notice.

``python -m renderchaos.provisioning.stack.reaper sweep RUN_ID [--cli docker --host DOCKER_HOST]`` runs the
same sweep by hand. Engines differ: ``docker rm`` has no ``-t`` (``-f`` kills at once) and only
Podman leaves exec monitors (``conmon``) behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from pathlib import Path

from renderchaos.provisioning.engine.engine import STATE_DIR
from renderchaos.provisioning.stack.context import LABEL_OWNER, LABEL_RUN, run_tmp_root


def _argv(cli: str, host: str | None) -> list[str]:
    if cli.endswith("podman") or not host:
        return [cli]
    return [cli, "--host", host]


def _procs_dir(run_id: str) -> Path:
    return Path(STATE_DIR) / "procs" / run_id


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def register_process(run_id: str, pid: int | None = None) -> None:
    """Record a process of the run (an xdist worker) for the controller's watcher to end."""
    pid = pid or os.getpid()
    d = _procs_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / str(pid)).write_text(_start_time(pid) or "")


#: how a watcher's command line reads (Reaper.start): never a victim of end_processes
_WATCH_ARGV = b"renderchaos.provisioning.stack.reaper\0watch\0"


def _children(pids: set[int]) -> set[int]:
    """Every descendant of ``pids`` (from /proc), to kill a worker's Locust, ffmpeg, watchers' peers."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _WATCH_ARGV in Path(f"/proc/{entry}/cmdline").read_bytes():
                    continue  # a worker's own watcher: it must live to sweep that worker's containers
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out: set[int] = set()
    frontier = set(pids)
    while frontier:
        nxt = {c for c, pp in parent.items() if pp in frontier and c not in out and c not in pids}
        out |= nxt
        frontier = nxt
    return out


def end_processes(run_id: str) -> list[str]:
    """SIGKILL the registered processes of a run (same start time: never a reused pid) and their
    descendants, except the workers' own watchers: children of the workers, they sweep what each
    worker made on its engine (a Docker engine's containers are not the controller's podman's)."""
    d = _procs_dir(run_id)
    if not d.exists():
        return []
    alive: set[int] = set()
    for f in d.iterdir():
        if f.name.isdigit() and _start_time(int(f.name)) == (f.read_text() or None) and f.read_text():
            alive.add(int(f.name))
    ended = []
    victims = alive | _children(alive)
    me = os.getpid()
    for pid in sorted(victims - {me}):
        try:
            os.kill(pid, signal.SIGKILL)
            ended.append(f"process {pid}")
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)
    return ended


def sweep(run_id: str, cli: str = "podman", owner: str | None = None, host: str | None = None) -> list[str]:
    """Remove the containers, volumes and temp dirs of a run, or of one owner process in it.

    ``host``: the Docker engine's address (default: ``DOCKER_HOST`` of this process)."""
    removed: list[str] = []
    label = f"label={LABEL_OWNER}={owner}" if owner else f"label={LABEL_RUN}={run_id}"
    base = _argv(cli, host or os.environ.get("DOCKER_HOST"))
    rm = ["rm", "-f", "-v", "-t", "0"] if cli.endswith("podman") else ["rm", "-f", "-v"]
    try:
        ids = subprocess.run([*base, "ps", "-aq", "--filter", label], capture_output=True,
                             text=True, timeout=30).stdout.split()
        if ids:
            subprocess.run([*base, *rm, *ids], capture_output=True, timeout=60)
            removed += [f"container {i}" for i in ids]
        vols = subprocess.run([*base, "volume", "ls", "-q", "--filter", label], capture_output=True,
                              text=True, timeout=30).stdout.split()
        if vols:
            subprocess.run([*base, "volume", "rm", "-f", *vols], capture_output=True, timeout=60)
            removed += [f"volume {v}" for v in vols]
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"renderchaos reaper: engine call failed: {exc}", file=sys.stderr)
    removed += _end_exec_monitors(f"rc-{owner or run_id}")
    root = run_tmp_root(run_id)
    dirs = sorted(root.glob(f"{owner}*")) if owner else [root]
    for d in dirs:
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"dir {d}")
    if owner and root.exists() and not any(root.iterdir()):
        root.rmdir()
    return removed


def _end_exec_monitors(name_prefix: str) -> list[str]:
    """Podman leaves two ``conmon`` processes per ``exec`` for five minutes (``--exit-delay
    300``), even after the container is gone. End those of our removed containers."""
    ended = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"conmon") or b"--exec-attach" not in argv:
            continue
        try:
            name = argv[argv.index(b"-n") + 1].decode()
        except (ValueError, IndexError):
            continue
        if name.startswith(name_prefix):
            try:
                os.kill(int(entry), signal.SIGTERM)
                ended.append(f"exec monitor {entry} of {name}")
            except OSError:
                pass
    return ended


@dataclass
class Reaper:
    run_id: str
    owner: str
    pid: int
    write_fd: int

    @classmethod
    def start(cls, run_id: str, cli: str, owner: str | None = None, host: str | None = None) -> "Reaper":
        """Watch this process; sweep ``owner``'s resources (or the whole run) when it ends, then
        release its use of the engine services we start. ``host``: the Docker engine's address."""
        read_fd, write_fd = os.pipe()  # both non-inheritable by default
        args = [sys.executable, "-m", "renderchaos.provisioning.stack.reaper", "watch", run_id, "--cli", cli]
        if owner:
            args += ["--owner", owner]
        if host or os.environ.get("DOCKER_HOST"):
            args += ["--host", host or os.environ["DOCKER_HOST"]]
        proc = subprocess.Popen(
            args,
            stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
        os.close(read_fd)
        return cls(run_id, owner or run_id, proc.pid, write_fd)

    def release(self) -> None:
        """Normal end: closing our end makes the watcher sweep once more and exit."""
        try:
            os.close(self.write_fd)
        except OSError:
            pass


def _watch(run_id: str, cli: str, owner: str | None, host: str | None) -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    if owner is None:  # the controller (or a run without -n) ended: its workers go with it
        end_processes(run_id)
    sweep(run_id, cli, owner, host)
    time.sleep(1.0)  # scheduled second pass: a worker may have been creating a container  # noqa
    sweep(run_id, cli, owner, host)
    try:
        from renderchaos.provisioning.engine.engine import release_user

        release_user(owner or run_id)
    except Exception:  # noqa: BLE001 - best effort; the service is harmless if left
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderchaos.provisioning.stack.reaper")
    parser.add_argument("command", choices=["watch", "sweep"])
    parser.add_argument("run_id")
    parser.add_argument("--cli", default="podman")
    parser.add_argument("--owner", default=None, help="only what this owner (run-worker) created")
    parser.add_argument("--host", default=None, help="Docker engine address (default: $DOCKER_HOST)")
    args = parser.parse_args(argv)
    if args.command == "watch":
        _watch(args.run_id, args.cli, args.owner, args.host)
    else:
        for item in sweep(args.run_id, args.cli, args.owner, args.host):
            print(f"removed {item}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
