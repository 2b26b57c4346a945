"""renderchaos as a pytest plugin: the one entry point (``pytest11``).

Options, ini keys and markers are declared here and nowhere else. Fixtures are thin:
the classes behind them (engine, images, Stack, Target) work from a plain script.
Plugin state lives on ``config.stash``; importing this module has no side effects.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shlex
import signal
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from renderchaos.config import Profile, get_profile, with_timeouts
from renderchaos.errors import ConfigError, RenderChaosError
from renderchaos.report.results import PROPERTY, Collector
from renderchaos.target import Target, load_target_file

if TYPE_CHECKING:
    from renderchaos.scenario import Scenario, ScenarioRun
    from renderchaos.provisioning.stack.context import StackContext
    from renderchaos.provisioning.stack.reaper import Reaper
    from renderchaos.provisioning.stack.stack import Stack

MARKERS = {
    "gate": "fast, non-destructive scenario: part of the CI gate",
    "resilience": "slow or destructive scenario: part of the pre-release resilience run",
    "load": "Locust load test (runs Locust in a subprocess)",
    "slow": "takes more than ~30 s on a 2-core machine",
    "scenario(id)": "the SCENARIOS.md id this test proves",
    "needs(*capabilities)": "what the target must offer (platform features, fault_proxy:<role>, "
                            "containers:<role>, database); skipped naming what is missing",
    "stack(**options)": "the test needs its own reference stack with these StackConfig options",
}


@dataclass
class ChaosState:
    profile: Profile
    seed: int
    run_id: str
    worker_id: str
    reports_dir: Path
    target_file: Path | None
    allow_remote: bool
    workers: int
    broken: tuple[str, ...]
    image_overrides: dict[str, str]
    compose_file: Path | None = None
    platform_spec: str = "refstack"
    collector: Collector = field(default_factory=Collector)
    reaper: "Reaper | None" = None
    images: dict[str, str] | None = None
    dedicated: "tuple[str, Any] | None" = None  # (options key, Stack or ComposeStack)
    cli: str = "podman"
    engine: Any = None  # renderchaos.provisioning.engine.Engine, once prepare_engine ran
    engine_info: dict[str, str] = field(default_factory=dict)  # an -n run's controller: from its workers
    contexts: int = 0
    stacks: list[Any] = field(default_factory=list)  # reference and compose stacks to stop at exit
    started: float = field(default_factory=time.monotonic)
    command: str = ""

    @property
    def owner(self) -> str:
        return f"{self.run_id}-{self.worker_id}"


STATE = pytest.StashKey[ChaosState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("renderchaos", "renderchaos: chaos and conformance suite")
    group.addoption("--chaos-profile", default=None, metavar="NAME",
                    help="named profile: gate (fast CI gate, default), resilience (slow and destructive "
                         "scenarios too), load (Locust), all. Sets the default -m selection and the "
                         "named timeouts; shown in the report header.")
    group.addoption("--chaos-seed", type=int, default=None, metavar="N",
                    help="seed for Faker data and fault schedules; printed in the header so any failure "
                         "can be replayed with the same seed (default: random)")
    group.addoption("--chaos-target", default=None, metavar="PATH",
                    help="TOML file describing an external deployment to test instead of starting the "
                         "reference stack in containers (see examples/target.example.toml)")
    group.addoption("--chaos-compose", default=None, metavar="FILE",
                    help="start YOUR platform from its compose file (x-renderchaos extension fields give each "
                         "service's role, ports and dependencies; see docs/your-platform.md) instead of the "
                         "reference stack; one isolated copy per xdist worker")
    group.addoption("--chaos-allow-remote", action="store_true", default=False,
                    help="allow a target outside 127.0.0.0/8 (a deployment you own); off by default")
    group.addoption("--chaos-workers", type=int, default=None, metavar="N",
                    help="render workers per reference stack (default: from the profile)")
    group.addoption("--chaos-broken", default="", metavar="VARIANT[,VARIANT]",
                    help="start the reference stack with deliberately broken variants "
                         "(refstack.broken.VARIANTS), to prove scenarios can fail")
    group.addoption("--chaos-image", action="append", default=[], metavar="SERVICE=IMAGE",
                    help="use this image for a service (postgres, redis, rabbitmq, app) instead of the "
                         "official name or the local build; repeatable")
    group.addoption("--chaos-timeout-factor", type=float, default=None, metavar="X",
                    help="multiply every named timeout (slow machines)")
    group.addoption("--chaos-reports", default=None, metavar="DIR",
                    help="where results.json, JUnit XML and HTML go (default: reports/ or the "
                         "chaos_reports ini key)")
    group.addoption("--chaos-runbook", action="append", default=[], metavar="PATH",
                    help="register your own runbook (a .toml section index or a Markdown file) so your "
                         "scenarios can cite it and the report's coverage matrix shows its sections; repeatable")
    parser.addini("chaos_runbooks", "runbooks to register (paths, one per line)", type="linelist", default=[])
    parser.addini("chaos_profile", "default profile when --chaos-profile is not given", default="gate")
    parser.addini("chaos_reports", "default reports directory", default="reports")
    parser.addini("chaos_timeout_factor", "default timeout multiplier", default="1.0")


def _parse_images(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        svc, sep, ref = v.partition("=")
        if not sep or not svc or not ref:
            raise ConfigError(f"--chaos-image {v!r}: expected SERVICE=IMAGE, e.g. postgres=postgres:15")
        out[svc] = ref
    return out


@pytest.hookimpl(tryfirst=True)  # before junitxml reads its option
def pytest_configure(config: pytest.Config) -> None:
    for name, help_ in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_}")
    try:
        profile_name = config.getoption("--chaos-profile") or config.getini("chaos_profile")
        profile = get_profile(profile_name)
        factor = config.getoption("--chaos-timeout-factor")
        factor = float(config.getini("chaos_timeout_factor")) if factor is None else factor
        if factor <= 0:
            raise ConfigError(f"--chaos-timeout-factor must be > 0, got {factor}")
        profile = with_timeouts(profile, factor)
        workers = config.getoption("--chaos-workers")
        workers = profile.workers if workers is None else workers
        if workers < 1:
            raise ConfigError(f"--chaos-workers must be >= 1, got {workers}")
        images = _parse_images(config.getoption("--chaos-image"))
        target_file = config.getoption("--chaos-target")
        compose_file = config.getoption("--chaos-compose")
        broken = tuple(b.strip() for b in config.getoption("--chaos-broken").split(",") if b.strip())
        if broken and (target_file or compose_file):
            raise ConfigError("--chaos-broken applies to the reference stack only; drop --chaos-target / "
                              "--chaos-compose")
        if target_file and compose_file:
            raise ConfigError("--chaos-target (a running deployment) and --chaos-compose (a stack we start) "
                              "exclude each other; pick one")
        platform_spec = _platform_spec(Path(target_file) if target_file else None,
                                       Path(compose_file) if compose_file else None)

        from renderchaos.runbooks import register_runbook

        runbooks = [Path(config.rootpath) / rb for rb in config.getini("chaos_runbooks")]
        runbooks += [Path(config.invocation_params.dir) / rb for rb in config.getoption("--chaos-runbook")]
        for path in runbooks:
            register_runbook(path)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the controller chose run id and seed
        run_id, seed, worker_id = workerinput["chaos_run_id"], workerinput["chaos_seed"], workerinput["workerid"]
    else:
        from renderchaos.provisioning.stack.context import new_run_id

        run_id = new_run_id()
        seed = config.getoption("--chaos-seed")
        seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
        worker_id = "main"
    explicit = config.getoption("--chaos-profile") is not None
    if explicit and not config.option.markexpr and profile.markexpr:
        # The profile picks the selection only when named on the command line, and only
        # when the user gave no -m of their own.
        config.option.markexpr = profile.markexpr
    reports = Path(config.getoption("--chaos-reports") or config.getini("chaos_reports"))
    if not reports.is_absolute():
        reports = Path(config.rootpath) / reports
    if explicit and workerinput is None and not getattr(config.option, "xmlpath", None):
        reports.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(reports / "junit.xml")  # a suite run always leaves JUnit XML
    config.stash[STATE] = ChaosState(
        profile=profile, seed=seed, run_id=run_id, worker_id=worker_id, reports_dir=reports,
        target_file=Path(target_file) if target_file else None,
        allow_remote=config.getoption("--chaos-allow-remote"), workers=workers, broken=broken,
        image_overrides=images, compose_file=Path(compose_file) if compose_file else None,
        platform_spec=platform_spec,
        command=shlex.join(["pytest", *config.invocation_params.args]))
    if workerinput is None:
        config.pluginmanager.register(_ResultsPlugin(config.stash[STATE]), "renderchaos-results")
        if explicit:
            _term_as_interrupt()
        if getattr(config.option, "numprocesses", None) and config.pluginmanager.hasplugin("xdist"):
            # the controller of an -n run creates no container itself, but if it is killed its workers
            # must go at once (they would go on creating containers): its own watcher ends them
            import shutil

            from renderchaos.provisioning.stack.reaper import Reaper

            state = config.stash[STATE]
            state.cli = "podman" if shutil.which("podman") else "docker"
            state.reaper = Reaper.start(run_id, state.cli, None)
    else:
        from renderchaos.provisioning.stack.reaper import register_process

        register_process(run_id)  # the controller's watcher ends us if the controller is killed
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "renderchaos-xdist")


def _platform_spec(target_file: Path | None, compose_file: Path | None) -> str:
    """The adapter a run will use, known before collection (findings become expected failures)."""
    if target_file is not None:
        import tomllib

        try:
            return str(tomllib.loads(target_file.read_text()).get("target", {}).get("platform", "refstack"))
        except (OSError, tomllib.TOMLDecodeError):
            return "refstack"  # the fixture reports the file's problem with its own message
    if compose_file is not None:
        from renderchaos.provisioning.compose import platform_of

        return platform_of(compose_file)
    return "refstack"


def _term_as_interrupt() -> None:
    """SIGTERM (what a CI job's timeout sends) ends the run like Ctrl-C: teardown runs, the
    reports are written and say the run was interrupted, never that it passed."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


class _XdistHooks:
    """Hooks of pytest-xdist, registered only when xdist is installed and active: pytest refuses
    an unknown hook (``pytest -p no:xdist`` must keep working wherever renderchaos is installed)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # controller side
        state = node.config.stash[STATE]
        node.workerinput["chaos_run_id"] = state.run_id
        node.workerinput["chaos_seed"] = state.seed

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:  # controller side
        """The engine and images a worker used, for the run header (the controller starts none)."""
        state = node.config.stash[STATE]
        out = getattr(node, "workeroutput", None) or {}
        if out.get("chaos_engine") and not state.engine_info:
            state.engine_info = dict(out["chaos_engine"])
        if out.get("chaos_images") and not state.images:
            state.images = dict(out["chaos_images"])


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    for stack in reversed(state.stacks):
        stack.stop()
    state.stacks.clear()
    if state.reaper is not None:
        from renderchaos.provisioning.engine.engine import release_user
        from renderchaos.provisioning.stack.reaper import sweep

        # The controller sweeps the whole run; an xdist worker only what it created.
        sweep(state.run_id, state.cli, owner=None if state.worker_id == "main" else state.owner,
              host=state.engine.docker_host if state.engine else None)
        state.reaper.release()
        release_user(state.owner)
    else:  # no containers were made (e.g. an external target): only our temp files to remove
        import shutil

        from renderchaos.provisioning.stack.context import run_tmp_root

        root = run_tmp_root(state.run_id)
        for d in [root] if state.worker_id == "main" else list(root.glob(f"{state.owner}*")):
            shutil.rmtree(d, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("scenario")
    if marker and marker.args:
        item.user_properties.append(("scenario", marker.args[0]))


class _ResultsPlugin:
    """Registered on the controller (or the only process): turns test reports into results, and
    knows which tests started but never finished (an interrupted run)."""

    def __init__(self, state: "ChaosState") -> None:
        self.state = state
        self.collector = state.collector
        self.started: dict[str, None] = {}
        self.finished: set[str] = set()
        self.interrupted = False

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.started[nodeid] = None
        self.collector.logstart(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add_report(report)
        if report.when == "teardown":
            self.finished.add(report.nodeid)

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    def unfinished(self) -> list[str]:
        return [n for n in self.started if n not in self.finished]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Before junitxml writes its file: a test that started and never finished is an error
        there ("interrupted"), not the empty testcase junitxml would otherwise leave (a pass)."""
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.interrupted = True
        if not self.interrupted:
            return
        from _pytest.junitxml import xml_key

        xml = session.config.stash.get(xml_key, None)
        for nodeid in self.unfinished():
            if xml is None:
                break
            rep = pytest.TestReport(nodeid, ("", 0, nodeid), {}, "failed",
                                    "interrupted: the run was stopped (SIGINT / SIGTERM) before this test finished",
                                    "call", [("interrupted", True)])
            xml.pytest_runtest_logreport(rep)


@pytest.hookimpl(tryfirst=True)  # a worker's output must be set before xdist sends it
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    if getattr(config, "workerinput", None) is not None:
        out = getattr(config, "workeroutput", None)
        if out is not None:
            if state.engine is not None:
                out["chaos_engine"] = {"name": state.engine.kind, "host": state.engine.docker_host}
            out["chaos_images"] = dict(state.images or {})
        return
    results = config.pluginmanager.get_plugin("renderchaos-results")
    interrupted = bool(results and results.interrupted) or session.exitstatus == pytest.ExitCode.INTERRUPTED
    header = run_header(config, state, interrupted)
    doc = state.collector.doc(header)
    path = None
    if doc["results"]:
        from renderchaos.report.results import write_report

        path = write_report(state.reports_dir, doc)
    if path is not None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from renderchaos.report.otel import export_run

        try:
            export_run(doc, allow_remote=state.allow_remote)
        except Exception as exc:  # noqa: BLE001 - the run's outcome stands; say why the export failed
            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"renderchaos: OpenTelemetry export failed: {exc}", red=True)
    if path is not None:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"renderchaos: results in {path} and {path.with_name('report.html')} "
                          f"({header['elapsed_s']}s; replay with --chaos-seed {state.seed})"
                          + ("; the run was INTERRUPTED: unfinished scenarios are reported as interrupted"
                             if interrupted else ""))


def _git_revision(root: Path) -> str | None:
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (sha + ("+dirty" if dirty else "")) or None


def replay_command(state: "ChaosState", scenario_id: str | None = None) -> str:
    """The command that runs the same selection again with the same seed (one scenario if given)."""
    args = ["pytest", "suites", "--chaos-profile", state.profile.name, "--chaos-seed", str(state.seed)]
    if state.target_file:
        args += ["--chaos-target", str(state.target_file)]
    if state.compose_file:
        args += ["--chaos-compose", str(state.compose_file)]
    for b in state.broken:
        args += ["--chaos-broken", b]
    if state.profile.factor != 1.0:
        args += ["--chaos-timeout-factor", f"{state.profile.factor:g}"]
    if scenario_id:
        args += ["-k", f"[{scenario_id}]"]
    return shlex.join(args)


def run_header(config: pytest.Config, state: "ChaosState", interrupted: bool) -> dict[str, Any]:
    """What results.json and the report say about the run as a whole."""
    from renderchaos.runbooks import default_registry

    target = (str(state.target_file) if state.target_file else
              f"compose {state.compose_file}" if state.compose_file else "reference stack")
    return {"profile": state.profile.name, "seed": state.seed, "run_id": state.run_id, "target": target,
            "platform": state.platform_spec, "broken": list(state.broken),
            "elapsed_s": round(time.monotonic() - state.started, 1), "interrupted": interrupted,
            "revision": _git_revision(Path(config.rootpath)),
            "engine": ({"name": state.engine.kind, "host": state.engine.docker_host} if state.engine
                       else dict(state.engine_info)),
            "images": dict(state.images or {}), "command": state.command,
            "timeout_factor": state.profile.factor,
            "runbooks": [d.to_dict() for d in default_registry().all()]}


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    target = (str(state.target_file) if state.target_file else
              f"compose {state.compose_file}" if state.compose_file else "reference stack (containers)")
    target += f" platform={state.platform_spec}"
    lines = [f"renderchaos: profile={state.profile.name} ({state.profile.description}) "
             f"seed={state.seed} run={state.run_id}",
             f"renderchaos: target={target} workers={state.workers}"
             + (f" broken={','.join(state.broken)}" if state.broken else ""),
             f"renderchaos: timeouts {state.profile.timeouts}"]
    return lines


# ---------------------------------------------------------------------------------------
# Fixtures: thin wrappers over plain classes.

@pytest.fixture(scope="session")
def chaos_state(request: pytest.FixtureRequest) -> ChaosState:
    return request.config.stash[STATE]


@pytest.fixture(scope="session")
def chaos_profile(chaos_state: ChaosState) -> Profile:
    return chaos_state.profile


@pytest.fixture(scope="session")
def chaos_seed(chaos_state: ChaosState) -> int:
    return chaos_state.seed


@pytest.fixture
def chaos_rng(chaos_seed: int, request: pytest.FixtureRequest) -> random.Random:
    """A Random seeded from the run seed and the test id: same seed, same schedule."""
    return random.Random(chaos_seed ^ zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def chaos_faker(chaos_seed: int, request: pytest.FixtureRequest) -> Any:
    from faker import Faker

    fake = Faker()
    fake.seed_instance(chaos_seed ^ zlib.crc32(request.node.nodeid.encode()))
    return fake


def prepare_engine(state: ChaosState, images: bool = True) -> dict[str, str]:
    """Engine up, testcontainers pointed at it, reaper watching, images resolved (built once;
    ``images=False``: only the engine, for a compose stack that names its own images).

    Returns the image reference of each service. Idempotent within a process.
    """
    if state.images is not None:
        return state.images
    from renderchaos.provisioning.engine import ImageResolver, configure_testcontainers, find_engine
    from renderchaos.provisioning.engine.engine import STATE_DIR
    from renderchaos.provisioning.engine.images import OFFICIAL_TOXIPROXY
    from renderchaos.provisioning.stack.reaper import Reaper

    # the loopback guard applies to the stack's address, derived from the engine host
    engine = find_engine(user=state.owner, allow_remote=state.allow_remote)
    configure_testcontainers(engine)
    state.cli, state.engine = engine.cli, engine
    if state.reaper is None:  # every process that creates containers gets its own watcher
        owner = None if state.worker_id == "main" else state.owner
        state.reaper = Reaper.start(state.run_id, engine.cli, owner, host=engine.docker_host)
    if not images:
        return {}
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "images.lock", "w") as lock:  # one cold build at a time across workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        resolver = ImageResolver(engine, overrides=state.image_overrides)
        state.images = resolver.resolve(["postgres", "redis", "rabbitmq", "app", "prometheus"])
        # The real Toxiproxy wherever it can be had; ours (renderchaos_proxy) otherwise.
        official = resolver.official_only(state.image_overrides.get("toxiproxy", OFFICIAL_TOXIPROXY))
        if official:
            state.images["toxiproxy"] = official
    return state.images


def resolve_images(state: ChaosState, names: list[str]) -> dict[str, str]:
    """Image references for renderchaos recipes ``names`` (built once, under the machine-wide lock)."""
    from renderchaos.provisioning.engine import ImageResolver, find_engine
    from renderchaos.provisioning.engine.engine import STATE_DIR

    engine = find_engine(user=state.owner, allow_remote=state.allow_remote)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return ImageResolver(engine, overrides=state.image_overrides).resolve(names)


def new_context(state: ChaosState) -> "StackContext":
    """A fresh, labelled StackContext unique on the machine (run id + xdist worker + counter)."""
    from renderchaos.provisioning.stack.context import StackContext

    state.contexts += 1
    n = state.contexts
    return StackContext(state.run_id, state.owner + (f"-{n}" if n > 1 else ""), owner=state.owner,
                        engine=state.engine)


def start_stack(state: ChaosState, **overrides: Any) -> "Stack":
    """Start a reference stack for this run; registered for teardown at exit."""
    from renderchaos.provisioning.stack.stack import Stack, StackConfig

    images = prepare_engine(state)
    toxiproxy_url = os.environ.get("TOXIPROXY_URL") or None
    if toxiproxy_url:
        from renderchaos.config import ensure_loopback

        ensure_loopback(toxiproxy_url, "TOXIPROXY_URL", state.allow_remote)
    config = StackConfig(images=images, workers=state.workers, broken=state.broken,
                         start_timeout=state.profile.timeouts.stack_start,
                         toxiproxy_url=toxiproxy_url)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ConfigError(f"unknown stack option {key!r}; see renderchaos.provisioning.stack.stack.StackConfig")
        setattr(config, key, value)
    stack = Stack(new_context(state), config)
    stack.start()
    state.stacks.append(stack)
    return stack


@pytest.fixture(scope="session")
def chaos_images(chaos_state: ChaosState) -> dict[str, str]:
    """Image reference per service, built or pulled once."""
    try:
        return prepare_engine(chaos_state)
    except RenderChaosError as exc:
        pytest.fail(f"container engine or images not available: {exc}", pytrace=False)


@pytest.fixture
def chaos_context(chaos_state: ChaosState, chaos_images: dict[str, str]) -> "StackContext":
    """A labelled StackContext for containers a test starts itself (reaped with the run)."""
    return new_context(chaos_state)


@pytest.fixture(scope="session")
def chaos_stack(chaos_state: ChaosState) -> Iterator["Stack"]:
    """The reference stack for this xdist worker (own ports, names, database, vhost)."""
    if chaos_state.target_file or chaos_state.compose_file:
        pytest.skip("running against another target (--chaos-target / --chaos-compose): no reference stack")
    try:
        stack = start_stack(chaos_state)
    except RenderChaosError as exc:
        pytest.fail(f"could not start the reference stack: {exc}", pytrace=False)
    yield stack
    stack.stop()
    chaos_state.stacks.remove(stack)


def start_compose(state: ChaosState, options: dict[str, Any] | None = None) -> Any:
    """Start the user's compose stack for this process (one isolated copy per xdist worker);
    ``options``: a scenario's own copy (``@pytest.mark.stack``: workers, env, worker_mem_limit)."""
    from renderchaos.provisioning.compose import ComposeStack, load_compose

    assert state.compose_file is not None
    prepare_engine(state, images=False)
    spec = load_compose(state.compose_file)
    toxiproxy_url = os.environ.get("TOXIPROXY_URL") or None
    if toxiproxy_url:
        from renderchaos.config import ensure_loopback

        ensure_loopback(toxiproxy_url, "TOXIPROXY_URL", state.allow_remote)
    stack = ComposeStack(spec, new_context(state), start_timeout=state.profile.timeouts.stack_start,
                         image_overrides=state.image_overrides, recipes=lambda names: resolve_images(state, names),
                         proxy_image=lambda: resolve_images(state, ["app"])["app"], toxiproxy_url=toxiproxy_url,
                         cli=state.cli, options=options)
    state.stacks.append(stack)
    stack.start()
    return stack


@pytest.fixture(scope="session")
def chaos_target(chaos_state: ChaosState, request: pytest.FixtureRequest) -> Iterator[Target]:
    """The system under test, behind its platform adapter: an external deployment (--chaos-target),
    the user's compose stack (--chaos-compose) or the reference stack."""
    timeout = chaos_state.profile.timeouts.connect
    if chaos_state.target_file:
        try:
            target = load_target_file(chaos_state.target_file, chaos_state.allow_remote, timeout=timeout)
        except ConfigError as exc:
            pytest.fail(str(exc), pytrace=False)
    elif chaos_state.compose_file:
        try:
            stack = start_compose(chaos_state)
            target = stack.target(timeout=timeout)
        except RenderChaosError as exc:
            pytest.fail(f"could not start the stack of {chaos_state.compose_file}: {exc}", pytrace=False)
    else:
        target = Target.from_stack(request.getfixturevalue("chaos_stack"), timeout=timeout)
    try:
        target.platform.prepare()
    except RenderChaosError as exc:
        pytest.fail(f"could not prepare {target.platform.name} for the run: {exc}", pytrace=False)
    yield target
    target.close()


def dedicated_stack(state: ChaosState, options: dict[str, Any]) -> Any:
    """A stack with non-default StackConfig options (``@pytest.mark.stack(...)``): a reference
    stack, or with --chaos-compose a copy of the compose stack (``workers`` worker replicas,
    ``env`` added to its api/worker/live services).

    Kept while consecutive tests ask for the same options; at most one per process besides
    the session stack, so a 2-core machine never runs more than two stacks per worker.
    """
    key = json.dumps(options, sort_keys=True, default=str)
    if state.dedicated is not None and state.dedicated[0] == key:
        return state.dedicated[1]
    if state.dedicated is not None:
        old = state.dedicated[1]
        old.stop()
        state.stacks.remove(old)
        state.dedicated = None
    stack = start_compose(state, options) if state.compose_file else start_stack(state, **options)
    state.dedicated = (key, stack)
    return stack


@pytest.fixture
def scenario_target(request: pytest.FixtureRequest, chaos_state: ChaosState) -> Iterator[Target]:
    """The target for one test: a dedicated stack when marked ``stack(**options)`` (configuration
    such as a time limit; a copy of the compose stack with --chaos-compose); a running deployment
    (--chaos-target) runs as it is."""
    marker = request.node.get_closest_marker("stack")
    if marker is None or chaos_state.target_file:
        yield request.getfixturevalue("chaos_target")
        return
    timeout = chaos_state.profile.timeouts.connect
    try:
        stack = dedicated_stack(chaos_state, dict(marker.kwargs))
        target = stack.target(timeout=timeout) if chaos_state.compose_file else Target.from_stack(stack, timeout=timeout)
        if chaos_state.compose_file and not stack.prepared:
            target.platform.prepare()  # once per copy: it sets the platform up server-side
            stack.prepared = True
    except RenderChaosError as exc:
        pytest.fail(f"could not start a dedicated stack {marker.kwargs}: {exc}", pytrace=False)
    yield target
    target.close()


@pytest.fixture
def scenario_run(request: pytest.FixtureRequest, scenario: "Scenario", scenario_target: Target,
                 chaos_profile: Profile) -> Iterator["ScenarioRun"]:
    """Drive the parametrized ``scenario`` against the target; journal lands in the report."""
    from renderchaos.scenario import ScenarioRun
    from renderchaos.provisioning.stack.context import run_tmp_root

    state = request.config.stash[STATE]
    tmp_dir = run_tmp_root(state.run_id) / f"{state.owner}-probes"
    run = ScenarioRun(scenario, scenario_target, chaos_profile, tmp_dir)
    try:
        yield run
    finally:
        heal_errors = run.close()
        j = run.journal
        record = j.to_dict()
        record["replay"] = replay_command(state, scenario.id)
        request.node.user_properties.append((PROPERTY, json.dumps(record)))
        for key in ("time_to_detect_s", "time_to_recover_s"):
            request.node.user_properties.append((key, getattr(j, key)))
        for key in ("lost", "duplicated", "orphan_ffmpeg"):
            request.node.user_properties.append((key, getattr(j.invariants, key)))
        request.node.user_properties.append(("faults_active_at_end", j.faults_active))
        request.node.user_properties.append(("runbook", str(scenario.runbook)))
    if heal_errors:
        from renderchaos.errors import FaultHealError

        raise FaultHealError(f"[{scenario.id}] could not heal, still active at the end: {'; '.join(heal_errors)}; "
                             "the target may need a manual reset", scenario=scenario.id, faults=heal_errors)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed and not run.finished:
        pytest.fail(f"[{scenario.id}] the test never checked the steady state after "
                    "(call scenario_run.steady_state_after())", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(autouse=True)
def _chaos_needs(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs")
    if marker is None:
        return
    target: Target = request.getfixturevalue("chaos_target")
    target.require(*marker.args)  # MissingCapability is a pytest skip


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Findings of the platform under test (a runbook behaviour it violates, documented by its
    adapter) become strict expected failures carrying the finding's text: the day the platform
    fixes it, the run says so (XPASS(strict) fails)."""
    state = config.stash.get(STATE, None)
    if state is None or not any(i.get_closest_marker("scenario") for i in items):
        return
    from renderchaos.errors import ScenarioFailed
    from renderchaos.platforms import platform_class
    from renderchaos.runbooks import default_registry

    try:
        findings = getattr(platform_class(state.platform_spec), "findings", {}) or {}
        registry = default_registry()
        for item in items:  # every scenario cites a registered runbook section
            sc = getattr(item, "callspec", None) and item.callspec.params.get("scenario")
            if sc is not None and hasattr(sc, "runbook"):
                registry.resolve(sc.runbook.key, sc.runbook.section)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for item in items:
        marker = item.get_closest_marker("scenario")
        finding = findings.get(marker.args[0]) if marker and marker.args else None
        if finding:
            item.add_marker(pytest.mark.xfail(strict=True, raises=ScenarioFailed,
                                              reason=f"finding on {state.platform_spec}: {finding}"))
