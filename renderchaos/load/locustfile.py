"""Locust users that behave like real clients of a render platform, through its adapter.

The users never speak HTTP themselves: every Locust process builds the platform adapter from
the spec the runner passes (``RENDERCHAOS_PLATFORM``, JSON: the adapter name or
``module:Class`` and the :class:`~renderchaos.platforms.base.PlatformEndpoint` fields; see
:mod:`renderchaos.load.platform`), opens one account per user with ``platform.open_account``,
and submits, polls, downloads and lists through the adapter. Each adapter call is reported to
Locust's statistics under its operation name (``submit``, ``job``, ``list``, ``download``,
``ai_submit``, ``ai_job``; :mod:`renderchaos.load.ops`), with the adapter's measured time, and
as a failure when the answer is not what the operation expects. So the same load runs against
any platform with an adapter.

Standalone (``RENDERCHAOS_PLATFORM`` unset: the adapter from ``--rc-adapter``, default
``refstack``, at ``--host``)::

    RENDERCHAOS_ADMIN_TOKEN=... locust -f renderchaos/load/locustfile.py --headless \\
        --host http://127.0.0.1:8000 -u 12 -r 4 -t 60s --processes -1 --csv reports/load/run \\
        --csv-full-history --html reports/load/run.html --rc-seed 42

From pytest: ``pytest -m load --chaos-profile load`` (suites/test_load.py runs this file in a
subprocess through :mod:`renderchaos.load.runner`; gevent's monkey-patching and pytest do not
share a process).

Users (class weights ``--rc-weights render=3,ai=1,browse=1``):

* :class:`RenderClient` submits renders (Faker titles, seeded from ``--rc-seed``), polls the job
  with exponential backoff, downloads the output (when the adapter declares ``download``).
* :class:`AiClient` submits AI jobs and polls them (only when the adapter declares ``ai_jobs``;
  otherwise its weight is 0 and the log says so).
* :class:`Browser` lists its jobs and reads one of them (the read-heavy dashboard client).

Every client honours ``retry_after`` on a rate_limited or dependency_unavailable answer (sleeps
that long, then retries, bounded by ``--rc-retries``); the refused attempt is still recorded as a
failure. Each Locust user opens its own account, so per-tenant limits apply per simulated
client as in production; pacing (``--rc-think``, ``--rc-poll``) keeps one client well below the
reference stack's per-key limit.

Accepted job ids are appended (one JSON line each, with the owner account) to
``--rc-accepted-file``, so the harness can audit them afterwards (no accepted job lost or
duplicated, credits exactly once).

Thresholds (``--rc-thresholds`` TOML, ``--rc-threshold-set`` overrides; see
:mod:`renderchaos.load.thresholds`) are evaluated on the master when Locust quits: any breach
sets the exit code to 3 and prints ``THRESHOLD BROKEN: ...`` per broken threshold.

Distributed over several machines: on one machine ``locust -f ... --master --headless
--expect-workers N ...`` and on each other ``locust -f ... --worker --master-host MASTER
--processes -1`` with the same ``--rc-*`` options and ``RENDERCHAOS_PLATFORM`` (each worker
machine writes its own ``--rc-accepted-file``; concatenate them before the audit).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import gevent
from faker import Faker
from locust import User, events, task
from locust import runners as locust_runners
from locust import stats as locust_stats
from locust.runners import WorkerRunner

from renderchaos.load import ops
from renderchaos.load import thresholds as th
from renderchaos.load.client import add_platform_options, fire, open_account, platform_spec
from renderchaos.platforms.base import Answer, Feature, Job, JobState, RenderRequest

log = logging.getLogger("renderchaos.load")

# History resolution: flush the per-second CSV every second (the harness reads it live during
# load.chaos) and compute the "current" percentiles over 5 s instead of 10 s.
locust_stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1
locust_stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = 5
# A worker process on a saturated machine (the stack under test shares the cores) misses
# 1 s heartbeats; Locust's default (3 missed) then drops every worker and the run is empty.
locust_runners.HEARTBEAT_LIVENESS = 30

#: longest the client honours a retry_after before trying again
MAX_RETRY_AFTER_S = 30.0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("renderchaos")
    add_platform_options(g)
    g.add_argument("--rc-seed", type=int, default=0, env_var="RENDERCHAOS_SEED",
                   help="run seed: Faker data and pacing jitter derive from it")
    g.add_argument("--rc-accepted-file", default="", env_var="RENDERCHAOS_ACCEPTED_FILE",
                   help="append one JSON line per accepted job (for the harness's ledger audit)")
    g.add_argument("--rc-thresholds", default="", env_var=th.ENV_FILE, help="thresholds TOML file")
    g.add_argument("--rc-threshold-set", default="", env_var=th.ENV_SET,
                   help="threshold overrides 'key=value;...', e.g. 'min_rps=50;p95_ms.submit=300'")
    g.add_argument("--rc-enforce", default="1", env_var="RENDERCHAOS_ENFORCE",
                   help="1: thresholds decide the exit code (3 on a breach); 0: report only (load.chaos)")
    g.add_argument("--rc-weights", default="render=3,ai=1,browse=1", env_var="RENDERCHAOS_WEIGHTS",
                   help="user class weights: render=N,ai=N,browse=N (0 disables a class)")
    g.add_argument("--rc-think", default="0.5,2.0", env_var="RENDERCHAOS_THINK",
                   help="MIN,MAX seconds a user waits between tasks")
    g.add_argument("--rc-poll", default="0.5,3.0,120", env_var="RENDERCHAOS_POLL",
                   help="INITIAL,MAX,DEADLINE seconds: poll backoff (x1.6 per poll) and give-up deadline")
    g.add_argument("--rc-retries", type=int, default=4, env_var="RENDERCHAOS_RETRIES",
                   help="attempts after a rate_limited / dependency_unavailable answer with retry_after")
    g.add_argument("--rc-download", type=float, default=0.5, env_var="RENDERCHAOS_DOWNLOAD",
                   help="fraction of completed renders the client downloads (adapters with 'download')")
    g.add_argument("--rc-render", default="1.0,320,240", env_var="RENDERCHAOS_RENDER",
                   help="DURATION,WIDTH,HEIGHT of submitted renders")
    g.add_argument("--rc-credits", type=int, default=10_000_000, env_var="RENDERCHAOS_CREDITS",
                   help="credits of each Locust user's account (platforms with credits)")
    g.add_argument("--rc-stop-file", default="", env_var="RENDERCHAOS_STOP_FILE",
                   help="stop the run (reports written) as soon as this file exists")


def _floats(raw: str, n: int, name: str) -> list[float]:
    parts = [float(p) for p in raw.split(",")]
    if len(parts) != n:
        raise SystemExit(f"--{name} needs {n} comma-separated numbers, got {raw!r}")
    return parts


def _weights(raw: str) -> dict[str, int]:
    out = {"render": 0, "ai": 0, "browse": 0}
    for item in filter(None, raw.split(",")):
        k, _, v = item.partition("=")
        if k.strip() not in out:
            raise SystemExit(f"--rc-weights: unknown class {k!r}; known: {sorted(out)}")
        out[k.strip()] = int(v)
    return out


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    spec = platform_spec(opts, environment.host)
    cls = spec.platform_class()  # fails here, once, if the adapter cannot be loaded
    w = _weights(opts.rc_weights)
    if w["ai"] and Feature.AI_JOBS not in cls.features:
        log.info("AI users off: adapter %s does not declare %r", spec.adapter, Feature.AI_JOBS.value)
        w["ai"] = 0
    RenderClient.weight, AiClient.weight, Browser.weight = w["render"], w["ai"], w["browse"]
    environment._remove_user_classes_with_weight_zero()  # noqa: SLF001 - Locust's own filter, after our weights
    if not isinstance(environment.runner, WorkerRunner):
        groups = {g.value: g in cls.features for g in (Feature.DOWNLOAD, Feature.AI_JOBS)}
        log.info("driving %s; optional groups %s; users %s", spec.describe(), groups,
                 {k: v for k, v in w.items() if v})
        if opts.rc_stop_file:
            gevent.spawn(_watch_stop_file, environment, Path(opts.rc_stop_file))


def _watch_stop_file(environment: Any, path: Path) -> None:
    while not path.exists():
        gevent.sleep(0.5)  # polling interval of the stop-file watcher
    log.info("stop file %s found: stopping the run", path)
    environment.runner.quit()


@events.quitting.add_listener
def _enforce(environment: Any, **_: Any) -> None:
    """Thresholds decide the exit code (master / local runner only: it holds the totals)."""
    opts = environment.parsed_options
    if opts is None or isinstance(environment.runner, WorkerRunner):
        return
    t = th.load(opts.rc_thresholds or None, opts.rc_threshold_set)
    breaches = th.evaluate(th.from_locust_stats(environment.stats), t)
    for b in breaches:
        sys.stderr.write(f"THRESHOLD BROKEN: {b}\n")
    if breaches and opts.rc_enforce not in ("0", "false", "no"):
        environment.process_exit_code = 3
    elif not breaches:
        sys.stderr.write(f"thresholds held: {t.describe()}\n")


# ---------------------------------------------------------------------------------------
class _Client(User):
    abstract = True
    _serial = 0

    def wait_time(self) -> float:
        lo, hi = _floats(self.environment.parsed_options.rc_think, 2, "rc-think")
        return self.rng.uniform(lo, hi)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        type(self)._serial += 1
        runner = self.environment.runner
        index = getattr(runner, "worker_index", 0) if runner is not None else 0
        seed = (opts.rc_seed ^ zlib.crc32(f"{type(self).__name__}:{index}:{self._serial}".encode())) & 0x7FFFFFFF
        self.rng = random.Random(seed)
        self.fake = Faker()
        self.fake.seed_instance(seed)
        self.poll_initial, self.poll_max, self.poll_deadline = _floats(opts.rc_poll, 3, "rc-poll")
        self.platform = platform_spec(opts, self.environment.host).build()
        self.account = open_account(self.platform, f"locust {self.fake.name()}", opts.rc_credits)

    def on_stop(self) -> None:
        platform = getattr(self, "platform", None)
        if platform is not None:
            platform.close()

    # -- operations -------------------------------------------------------------------------
    def call(self, operation: str, do: Callable[[], Answer[Any]], expect: Callable[[Answer[Any]], str | None]
             ) -> Answer[Any]:
        """One adapter call, reported to Locust; a refusal with retry_after (rate limited, a
        dependency down) is retried after that long, bounded by --rc-retries. Every attempt is
        recorded; a refused attempt counts as a failure."""
        attempts = self.environment.parsed_options.rc_retries + 1
        for attempt in range(attempts):
            answer = do()
            failure = expect(answer)
            fire(self.environment, operation, answer.elapsed, failure, ops.length(answer))
            retry_after = answer.error.retry_after if answer.error is not None else None
            if failure is None or answer.kind not in ops.RETRY_KINDS or retry_after is None or attempt == attempts - 1:
                return answer
            # the client does what the platform told it: wait retry_after (jittered), then retry
            gevent.sleep(min(retry_after, MAX_RETRY_AFTER_S) + self.rng.uniform(0, 0.25))
        raise AssertionError("unreachable")

    def poll(self, operation: str, job_id: str, read: Callable[[], Answer[Any]]) -> Job | None:
        """Read the job with exponential backoff until it is terminal or the deadline passes."""
        delay, waited = self.poll_initial, 0.0
        while waited < self.poll_deadline:
            gevent.sleep(delay)  # client-side backoff between polls (a real client's pacing)
            waited += delay
            delay = min(delay * 1.6, self.poll_max)
            answer = self.call(operation, read, ops.the_job(job_id))
            if answer.ok and isinstance(answer.value, Job) and answer.value.terminal:
                return answer.value
        return None

    def record_accepted(self, job_id: str, kind: str, expected: tuple[float, int, int] | None) -> None:
        path = self.environment.parsed_options.rc_accepted_file
        if not path:
            return
        line = json.dumps({"job_id": job_id, "kind": kind, "account": asdict(self.account),
                           "expected": list(expected) if expected else None}, default=str) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write per line: O_APPEND keeps lines whole across processes
        finally:
            os.close(fd)


class RenderClient(_Client):
    """Submits a render, follows it to the end, downloads the result (adapters with download)."""

    weight = 3

    @task
    def render(self) -> None:
        opts = self.environment.parsed_options
        dur, width, height = _floats(opts.rc_render, 3, "rc-render")
        request = RenderRequest(title=self.fake.catch_phrase()[:80], duration=dur, width=int(width),
                                height=int(height))
        p, acc = self.platform, self.account
        answer = self.call(ops.SUBMIT, lambda: p.submit(acc, request), ops.accepted)
        if ops.accepted(answer) is not None:
            return
        job_id: str = answer.value
        self.record_accepted(job_id, "render", p.expected_output(request))
        job = self.poll(ops.JOB, job_id, lambda: p.job(acc, job_id))
        if job is not None and job.state is JobState.COMPLETED and p.has(Feature.DOWNLOAD) \
                and self.rng.random() < opts.rc_download:
            self.call(ops.DOWNLOAD, lambda: p.download(acc, job_id), ops.output_bytes)


class Browser(_Client):
    """Dashboard-like reads: list my jobs, open one of them."""

    weight = 1

    @task
    def browse(self) -> None:
        p, acc = self.platform, self.account
        answer = self.call(ops.LIST, lambda: p.list_jobs(acc, limit=20), ops.jobs_list)
        if ops.jobs_list(answer) is None and answer.value:
            job_id = self.rng.choice(answer.value).id
            self.call(ops.JOB, lambda: p.job(acc, job_id), ops.the_job(job_id))


class AiClient(_Client):
    """Submits AI jobs and reads the answer (adapters with the ai_jobs group)."""

    weight = 1

    @task
    def ask(self) -> None:
        p, acc = self.platform, self.account
        prompt = self.fake.sentence(nb_words=12)
        answer = self.call(ops.AI_SUBMIT, lambda: p.ai_submit(acc, prompt=prompt), ops.accepted)  # type: ignore[attr-defined]
        if ops.accepted(answer) is not None:
            return
        job_id: str = answer.value
        self.record_accepted(job_id, "ai", None)
        self.poll(ops.AI_JOB, job_id, lambda: p.ai_job(acc, job_id))  # type: ignore[attr-defined]
