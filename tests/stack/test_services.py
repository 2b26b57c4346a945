"""Provisioning and container-level fault primitives, against real containers."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redislib

from renderchaos.faults import container as cf
from renderchaos.stack.context import LABEL_OWNER, LABEL_RUN, LABEL_STACK, StackContext
from renderchaos.stack.services import Postgres, RabbitMQ, Redis, Service
from renderchaos.wait import Deadline, wait_for
from tests.stack.conftest import Sleeper


def _start(services: list[Service], started: list[Service], timeout: float = 60) -> None:
    started.extend(services)
    deadline = Deadline.after(timeout)
    with ThreadPoolExecutor(len(services)) as pool:
        list(pool.map(lambda s: s.start(), services))
        list(pool.map(lambda s: s.wait_ready(deadline), services))


def test_data_services_start_ready_labelled_and_on_loopback(
        chaos_context: StackContext, chaos_images: dict[str, str], started: list[Service]) -> None:
    pg, rd, mq = (Postgres(chaos_context, chaos_images["postgres"]), Redis(chaos_context, chaos_images["redis"]),
                  RabbitMQ(chaos_context, chaos_images["rabbitmq"]))
    t0 = time.monotonic()
    _start([pg, rd, mq], started)
    assert time.monotonic() - t0 < 20, "Postgres + Redis + RabbitMQ should be ready well within 20 s"
    for svc in (pg, rd, mq):
        labels = svc.container.labels
        assert labels[LABEL_RUN] == chaos_context.run_id
        assert labels[LABEL_OWNER] == chaos_context.owner
        assert labels[LABEL_STACK] == chaos_context.stack_id
        assert svc.container.attrs["HostConfig"]["NetworkMode"] == "host"
    with pg.connect() as conn:
        listen = conn.execute("show listen_addresses").fetchone()[0]
    assert listen == "127.0.0.1"
    assert rd.client().config_get("bind")["bind"] == "127.0.0.1"


def test_postgres_keeps_data_across_sigkill_and_graceful_stop(
        chaos_context: StackContext, chaos_images: dict[str, str], started: list[Service]) -> None:
    pg = Postgres(chaos_context, chaos_images["postgres"])
    _start([pg], started)
    with pg.connect() as conn:
        conn.execute("create table t (v int)")
        conn.execute("insert into t values (42)")
    assert cf.kill(pg) == 137
    cf.start(pg, deadline=30)
    assert cf.stop(pg) == 0  # graceful: postgres exits 0 on SIGINT (its STOPSIGNAL)
    cf.start(pg, deadline=30)
    with pg.connect() as conn:
        assert conn.execute("select v from t").fetchone() == (42,)


def test_paused_redis_times_out_within_bound_then_recovers(
        chaos_context: StackContext, chaos_images: dict[str, str], started: list[Service]) -> None:
    rd = Redis(chaos_context, chaos_images["redis"])
    _start([rd], started)
    client = rd.client()
    with cf.frozen(rd):
        t0 = time.monotonic()
        with pytest.raises(redislib.TimeoutError):
            client.ping()
        assert time.monotonic() - t0 < 5, "client timeouts must be bounded while the server is frozen"
    assert client.ping()


def test_exec_processes_and_oom_detection(
        chaos_context: StackContext, chaos_images: dict[str, str], started: list[Service]) -> None:
    box = Sleeper(chaos_context, chaos_images["app"], mem_limit="96m")
    _start([box], started)
    # the container runs as soon as its init does; its child may exec a moment later
    wait_for(lambda: any(p.args == "sleep 600" for p in cf.processes(box)), what="`sleep 600` in the container",
             timeout=10)
    assert cf.exec_in(box, ["id", "-u"]).output.strip() == "1000"
    assert cf.oom_kills(box) == 0
    hog = cf.exec_in(box, ["python3", "-c", "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"])
    assert hog.exit_code == 137, hog.output
    assert cf.oom_kills(box) >= 1
    assert box.state()["Running"], "the OOM kill hit the hog, not the container's main process"
    # a raised limit lets the same allocation through
    cf.set_memory_limit(box, "768m")
    ok = cf.exec_in(box, ["python3", "-c", "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"])
    assert ok.exit_code == 0, ok.output


def test_process_listing_sees_container_pids_without_exec(
        chaos_context: StackContext, chaos_images: dict[str, str], started: list[Service]) -> None:
    box = Sleeper(chaos_context, chaos_images["app"])
    _start([box], started)
    sleeper = wait_for(lambda: [p for p in cf.processes(box) if p.args == "sleep 600"],
                       what="`sleep 600` in the container", timeout=10)
    procs = cf.processes(box)
    assert sleeper and sleeper[0].pid > 1, procs  # pid 1 is the init (--init)
    assert not cf.orphan_ffmpeg(box)
    cf.exec_in(box, ["sh", "-c", "ffmpeg -hide_banner -f lavfi -i testsrc -f null - >/dev/null 2>&1 &"])
    wait_for(lambda: cf.orphan_ffmpeg(box), what="the background ffmpeg to show up", timeout=10)
    from renderchaos.stack.reaper import sweep

    box.remove()
    started.remove(box)
    sweep(chaos_context.run_id, owner=chaos_context.owner)
    out = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert box.container_name not in out, "exec monitors (conmon) of the removed container must be ended"
