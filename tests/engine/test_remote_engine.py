"""A second Docker engine reachable only over TCP (``DOCKER_HOST=tcp://...``), as a remote engine is.

The test starts a private dockerd listening on ``tcp://127.0.0.2:PORT`` and ``tcp://127.0.0.1:PORT``
(no unix socket, own data root), loads the images into it through the TCP API, and checks:

* a reference stack on ``tcp://127.0.0.2`` binds and is reached at 127.0.0.2, the engine host,
  not 127.0.0.1: every URL the harness uses, the services' listen addresses, a render end to end,
  a container fault and the reaper over TCP;
* the CI gate passes against ``tcp://127.0.0.1:PORT`` (the gate's suites reach some services
  at 127.0.0.1 themselves).

The dockerd is owned by a watcher that stops it when this process ends, however it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from renderchaos.provisioning.engine.engine import Engine, configure_testcontainers, ping, unmount_under
from renderchaos.provisioning.engine.images import ImageResolver
from renderchaos.provisioning.stack.context import LABEL_RUN, StackContext, free_port, new_run_id
from renderchaos.provisioning.stack.reaper import sweep
from renderchaos.wait import Poll, wait_for

pytestmark = pytest.mark.containers  # real engines (tests/conftest.py cannot see it from the fixtures)

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["postgres", "redis", "rabbitmq", "app", "prometheus"]

# Holds dockerd; stops it (SIGTERM, then waits) when stdin closes: at the end of the fixture, or
# when the test process dies in any way (the kernel closes the pipe).
WATCHER = r'''
import subprocess, sys

p = subprocess.Popen(sys.argv[1:], stdout=open(sys.argv[1 + sys.argv[1:].index("--pidfile") + 1] + ".log", "ab"),
                     stderr=subprocess.STDOUT)
sys.stdin.read()
p.terminate()
try:
    p.wait(60)
except subprocess.TimeoutExpired:
    p.kill()
'''


@dataclass
class RemoteEngine:
    port: int
    images: dict[str, str]

    def engine(self, address: str) -> Engine:
        return Engine(kind="docker", docker_host=f"tcp://{address}:{self.port}", cli="docker")


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteEngine]:
    base = Path(tempfile.mkdtemp(prefix="rc-tcp-", dir="/tmp"))
    data_root = Path(f"/var/lib/renderchaos/test-{base.name}")
    port = free_port("127.0.0.2")
    argv = ["dockerd", "--host", f"tcp://127.0.0.2:{port}", "--host", f"tcp://127.0.0.1:{port}",
            "--data-root", str(data_root), "--exec-root", str(base / "exec"), "--pidfile", str(base / "dockerd.pid"),
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--log-level=warn"]
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, *argv], stdin=subprocess.PIPE, cwd=base,
                               start_new_session=True)
    try:
        wait_for(lambda: ping(f"tcp://127.0.0.2:{port}", 0.5) or watcher.poll() is not None,
                 what=f"dockerd on tcp://127.0.0.2:{port}", timeout=60, poll=Poll(0.1))
        assert watcher.poll() is None, (base / "dockerd.pid.log").read_text()[-2000:]
        configure_testcontainers(None)
        engine = RemoteEngine(port, {}).engine("127.0.0.2")
        # images through the TCP API (podman's local builds, loaded with `docker --host tcp://... load`)
        images = ImageResolver(engine).resolve(SERVICES)
        yield RemoteEngine(port, images)
    finally:
        if watcher.stdin:
            watcher.stdin.close()
        watcher.wait(timeout=90)
        unmount_under(base)
        shutil.rmtree(data_root, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
        assert not base.exists(), f"{base} left behind"


def test_stack_on_a_tcp_engine_lives_at_the_engine_host(remote: RemoteEngine, request: pytest.FixtureRequest) -> None:
    from renderchaos.faults import container as cf
    from renderchaos.platforms.refstack.client import Admin, RenderApi, render_body
    from renderchaos.provisioning.stack.stack import Stack, StackConfig
    from renderchaos.target import Target

    engine = remote.engine("127.0.0.2")
    assert engine.stack_host == "127.0.0.2"
    run_id = new_run_id()
    # however the test ends: the run's containers and temp dirs go (a failed assertion left them)
    request.addfinalizer(lambda: sweep(run_id, "docker", host=engine.docker_host))
    ctx = StackContext(run_id, f"{run_id}-tcp", engine=engine)
    stack = Stack(ctx, StackConfig(images=remote.images, workers=1, with_live=False))
    try:
        stack.start()
        target = Target.from_stack(stack)
        e = target.platform.endpoint
        for url in (e.api_url, target.proxy_url, e.urls.get("provider_control"), target.database_dsn):
            assert "@127.0.0.2:" in str(url) or "//127.0.0.2:" in str(url), url
        with stack.postgres.connect() as conn:
            assert conn.execute("show listen_addresses").fetchone()[0] == "127.0.0.2"
        assert stack.redis.client().config_get("bind")["bind"] == "127.0.0.2"
        assert httpx.get(f"http://127.0.0.2:{stack.api.port}/health", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):  # nothing of the stack on the harness's 127.0.0.1
            httpx.get(f"http://127.0.0.1:{stack.api.port}/health", timeout=2)
        # a render end to end: API, broker and database through the proxy routes, all at 127.0.0.2
        admin = Admin(e.api_url, e.admin_token)
        user = admin.create_user(credits=100)
        api = RenderApi(e.api_url, user.api_key)
        job_id = api.submit(render_body(duration=1.0)).json()["id"]
        job = wait_for(lambda: (j := api.get(job_id).json())["status"] in ("completed", "failed") and j,
                       what=f"job {job_id} to finish", timeout=90, poll=Poll(0.5))
        assert job["status"] == "completed", job
        # a container fault through `docker --host tcp://127.0.0.2:PORT`
        with cf.stopped(stack.redis, ready_deadline=30):
            assert stack.redis.state()["Running"] is False
        assert stack.redis.client().ping()
        admin.close()
        api.close()
    finally:
        stack.stop()
    # the reaper over TCP: a container left behind on purpose is swept through the TCP API
    subprocess.run(["docker", "--host", engine.docker_host, "run", "-d", "--label", f"{LABEL_RUN}={run_id}",
                    "--network", "host", remote.images["redis"], "redis-server", "--port", "0"],
                   capture_output=True, timeout=60, check=True)
    assert any(r.startswith("container ") for r in sweep(run_id, "docker", host=engine.docker_host))
    left = subprocess.run(["docker", "--host", engine.docker_host, "ps", "-aq", "--filter",
                           f"label={LABEL_RUN}={run_id}"], capture_output=True, text=True, timeout=30)
    assert left.returncode == 0 and not left.stdout.split(), left


@pytest.fixture
def reports() -> Iterator[Path]:
    # not tmp_path, and the inner run gets its own --basetemp: with tmp_path_retention_policy
    # "none" pytest does not lock its numbered temp dir, and any other session's end-of-run
    # cleanup removes it
    d = Path(tempfile.mkdtemp(prefix="rc-gate-tcp-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_gate_passes_against_a_tcp_docker_engine(remote: RemoteEngine, reports: Path) -> None:
    engine = remote.engine("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if k != "RENDERCHAOS_ENGINE_KIND"}
    env.update(DOCKER_HOST=engine.docker_host, RENDERCHAOS_ENGINE="docker")
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--chaos-profile", "gate", "-n", "2",
                           "-p", "no:cacheprovider", "--chaos-reports", str(reports),
                           "--basetemp", str(reports / "tmp")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    results = json.loads((reports / "results.json").read_text())
    assert set(results["summary"]) == {"passed"}, results["summary"]
    print(f"gate over {engine.docker_host}: {results['summary']} in {results['elapsed_s']}s")
    left = subprocess.run(["docker", "--host", engine.docker_host, "ps", "-aq", "--filter",
                           f"label={LABEL_RUN}={results['run_id']}"], capture_output=True, text=True, timeout=30)
    assert not left.stdout.split(), "the gate run left containers on the remote engine"
