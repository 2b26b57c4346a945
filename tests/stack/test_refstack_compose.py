"""The reference stack described as a compose file (renderchaos/platforms/refstack/compose.yml).

Two things must hold: the file describes the same stack as the Python classes that start the
default target (same containers, commands, environment, mounts, routes, roles), so the worked
example a team copies is the real thing; and the gate passes against a stack started from it,
through the compose path every user's platform takes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from renderchaos.provisioning.compose import ComposeStack, _tmpfs_size_to_blocks, load_compose
from renderchaos.provisioning.stack.context import StackContext, new_run_id, run_tmp_root
from renderchaos.provisioning.stack.stack import Stack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "renderchaos" / "platforms" / "refstack" / "compose.yml"
IMAGES = {k: f"localhost/renderchaos/{k}" for k in ("postgres", "redis", "rabbitmq", "app")}


#: the options scenarios ask of their own stack (@pytest.mark.stack): none, and all three at once
OPTIONS = [{}, {"workers": 1, "env": {"RENDER_TIME_LIMIT": "30", "WEB_CONCURRENCY": "1"}, "worker_mem_limit": "350m"},
           {"workers": 3}]


@pytest.fixture(params=OPTIONS, ids=["defaults", "workers-env-memory", "three-workers"])
def both(request: pytest.FixtureRequest) -> Iterator[tuple[Stack, ComposeStack]]:
    """The Python stack and the compose stack planned on one context (nothing started), with the
    same scenario options (the compose stack as a scenario's own copy)."""
    run_id = new_run_id()
    ctx = StackContext(run_id, f"{run_id}-t")
    try:
        stack = Stack(ctx, StackConfig(images=dict(IMAGES), **request.param))
        compose = ComposeStack(load_compose(COMPOSE), ctx, options=request.param)
        compose._plan({name: IMAGES.get(name, IMAGES["app"]) for name in compose.spec.services})
        yield stack, compose
    finally:
        shutil.rmtree(run_tmp_root(run_id), ignore_errors=True)


def _norm(value: str, ports: set[int], secrets: set[str]) -> str:
    for s in secrets:
        value = value.replace(s, "<secret>")
    return re.sub(r"\b\d{4,5}\b", lambda m: "<port>" if int(m.group()) in ports else m.group(), value)


def test_the_compose_file_describes_the_python_stack(both: tuple[Stack, ComposeStack]) -> None:
    stack, compose = both
    ports = set(stack.ctx._ports)
    secrets = {stack.admin_token, compose.variables["RENDERCHAOS_TOKEN"]}
    py = {s.name: s for s in stack.services if s is not stack.proxy}  # compose starts its own proxy
    co = {c.name: c for c in compose.services}
    assert sorted(co) == sorted(py)

    def view(s: Any) -> dict[str, Any]:
        env = {k: _norm(v, ports, secrets) for k, v in s.env.items()}
        env.pop("RABBITMQ_NODENAME", None)  # unique per stack either way: rc<id> vs rc-<id>
        kwargs = {k: v for k, v in s.container_kwargs().items()
                  if k in ("user", "init", "mem_limit", "memswap_limit")}
        return {"command": [_norm(a, ports, secrets) for a in s.command() or []], "env": env, "kwargs": kwargs,
                "mounts": sorted((m["bind"], m["mode"]) for m in s.mounts_spec().values())}

    for name in sorted(py):
        assert view(co[name]) == view(py[name]), name
    # workers added mid-scenario (queue.backlog: scale out) are built alike too
    (py_extra,), (co_extra,) = stack.new_workers(1), compose.new_workers(1)
    assert co_extra.name == py_extra.name == "worker-100"
    assert view(co_extra) == view(py_extra)
    # the shared output volume: one named volume, the same size
    assert compose.volumes == [stack.storage_volume]
    opts = compose.spec.volumes["storage"]["driver_opts"]
    assert _tmpfs_size_to_blocks(opts["o"]) == f"nr_blocks={stack.config.storage_mib * 256},mode=1777"
    # the same fault-proxy routes (by role), and the same roles for container faults
    assert set(compose.routes) == set(stack.routes)
    from renderchaos.target import Target

    class _Unstarted:  # Target.from_stack reads URLs and services only
        def __getattr__(self, name: str) -> Any:
            return getattr(stack, name)

    py_roles = {role: sorted(s.name for s in ss) for role, ss in Target.from_stack(_Unstarted()).services.items()  # type: ignore[arg-type]
                if role != "proxy"}
    co_roles: dict[str, list[str]] = {}
    for c in compose.services:
        for role in c.roles:
            co_roles.setdefault(role, []).append(c.name)
    assert {r: sorted(n) for r, n in co_roles.items()} == py_roles


def test_a_compose_stack_refuses_options_it_cannot_honour() -> None:
    from renderchaos.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stack option\(s\) \['storage_mib'\].*takes \['env', 'worker_mem_limit', 'workers'\]"):
        ComposeStack(load_compose(COMPOSE), None, options={"storage_mib": 64})  # type: ignore[arg-type]


def test_more_workers_than_the_file_declares_get_their_own_names() -> None:
    import dataclasses

    from renderchaos.provisioning.compose import _with_options

    spec = load_compose(COMPOSE)
    single = dataclasses.replace(spec, services={**spec.services, "worker": dataclasses.replace(
        spec.services["worker"], replicas=1, numbered=False)})
    worker = _with_options(single, {"workers": 3}).services["worker"]
    assert (worker.replicas, worker.numbered) == (3, True)  # worker-0..2, never three "worker"
    assert _with_options(single, {"workers": 1}).services["worker"].numbered is False


def test_the_reroute_leaves_url_schemes_alone() -> None:
    from renderchaos.provisioning.compose import _reroute

    assert _reroute("redis://redis:6379/0", "redis", "127.0.0.1:9", 6379) == "redis://127.0.0.1:9/0"
    assert _reroute("postgresql+psycopg://u:p@postgres:5432/db", "postgres", "127.0.0.1:9", 5432) == \
        "postgresql+psycopg://u:p@127.0.0.1:9/db"
    assert _reroute("http://provider:8000", "provider", "127.0.0.1:9", 8000) == "http://127.0.0.1:9"


@pytest.fixture
def reports() -> Iterator[Path]:
    # not tmp_path, and the inner run gets its own --basetemp (see test_remote_engine.reports)
    d = Path(tempfile.mkdtemp(prefix="rc-gate-compose-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.containers
@pytest.mark.slow
def test_gate_passes_against_the_reference_stack_started_from_its_compose_file(reports: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--chaos-profile", "gate", "-n", "2",
                           "-p", "no:cacheprovider", "--chaos-compose", str(COMPOSE), "--chaos-reports", str(reports),
                           "--basetemp", str(reports / "tmp"), "-rs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    results = json.loads((reports / "results.json").read_text())
    # every gate scenario runs and passes: the compose path loses nothing the scenarios need
    # (a skip would name what it lacks: -rs puts it in the output)
    assert set(results["summary"]) == {"passed"}, (results["summary"], proc.stdout[-2000:])
    print(f"gate against {COMPOSE.name}: {results['summary']} in {results['elapsed_s']}s")
