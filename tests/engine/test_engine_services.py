"""The engine services we start (Podman's API service, Debian's dockerd): started on demand in a
state dir of their own, working there (nothing of ours in the user's directories: conmon writes
an ``oom`` file into its working directory on every OOM kill), and stopped by the last user.

Each test runs a private instance (its own state dir, socket and, for dockerd, data root) in a
subprocess started from a "user directory", so the machine's shared services are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from renderchaos.provisioning.engine.images import LOCAL_PREFIX, RECIPES, recipe_hash

ROOT = Path(__file__).resolve().parents[2]
APP = f"{LOCAL_PREFIX}/app:{recipe_hash(RECIPES['app'])}"

SCRIPT = r'''
import json, os, sys
from pathlib import Path
from renderchaos.provisioning.engine import engine as E

kind = sys.argv[1]
engine = E.find_engine(user="svc-test", kind=kind)
pids = E._our_services() if kind == "podman" else E._our_dockerds()
out = {"host": engine.docker_host, "pids": pids, "cwd": [os.readlink(f"/proc/{p}/cwd") for p in pids]}
if len(sys.argv) > 2 and sys.argv[2] == "hostnet":  # one host-network container on an empty engine
    import io, tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/usr/bin/tini-static", arcname="tini")  # a static binary: the whole image
    c = engine.client()
    c.api.import_image_from_data(buf.getvalue(), repository="rc-svc-test", tag="1")
    out["hostnet"] = c.containers.run("rc-svc-test:1", ["/tini", "--version"], network_mode="host",
                                      remove=True).decode().strip()
elif len(sys.argv) > 2:  # an OOM kill in a container of this service
    c = engine.client().containers.run(
        sys.argv[2], ["python3", "-c", "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"],
        detach=True, mem_limit="96m", memswap_limit="96m", network_mode="host", init=True,
        labels={"renderchaos.run": "svc-test"})
    try:
        out["exit"] = c.wait(timeout=60)["StatusCode"]
    finally:
        c.remove(force=True)
E.release_user("svc-test")
out["alive_after_release"] = [p for p in pids if E.pid_alive(p) and not E._zombie(p)]
print(json.dumps(out))
'''

pytestmark = pytest.mark.containers  # real engines (tests/conftest.py cannot see it from the fixtures)


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """(state dir, user dir) under a short path: dockerd's containerd sockets live in the state dir."""
    base = Path(tempfile.mkdtemp(prefix="rc-svc-", dir="/tmp"))
    (base / "state").mkdir()
    (base / "user").mkdir()
    yield base / "state", base / "user"
    shutil.rmtree(base, ignore_errors=True)


def _run(state: Path, user: Path, *args: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "RENDERCHAOS_ENGINE_KIND")}
    env.update(RENDERCHAOS_STATE_DIR=str(state), PYTHONPATH=str(ROOT), **(extra_env or {}))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=user, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_podman_service_works_in_the_state_dir_and_its_oom_file_stays_there(dirs: tuple[Path, Path]) -> None:
    state, user = dirs
    out = _run(state, user, "podman", APP)
    assert out["host"] == f"unix://{state}/podman.sock"
    assert out["cwd"] == [str(state)], out
    assert out["exit"] == 137, "the container was OOM-killed"
    assert (state / "oom").exists(), "conmon records the OOM kill in the service's working directory"
    assert not list(user.rglob("oom")), f"nothing of ours in the user's directory: {list(user.iterdir())}"
    assert out["alive_after_release"] == [], "the last user stops the service"


def test_dockerd_starts_in_the_state_dir_on_its_own_socket_and_stops_with_the_last_user(
        dirs: tuple[Path, Path]) -> None:
    state, user = dirs
    data_root = Path(f"/var/lib/renderchaos/test-{state.parent.name}")
    try:
        out = _run(state, user, "docker", "hostnet", extra_env={"RENDERCHAOS_DOCKER_DATA_ROOT": str(data_root)})
        assert out["hostnet"].startswith("tini version"), out
        assert out["host"] == f"unix://{state}/docker.sock"
        assert len(out["pids"]) == 1 and out["cwd"] == [str(state)], out
        assert out["alive_after_release"] == [], "the last user stops dockerd (and waits for it)"
        assert not list(user.iterdir())
        assert not [m for m in Path("/proc/self/mounts").read_text().splitlines() if str(state) in m], \
            "nothing left mounted in the state dir"
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
