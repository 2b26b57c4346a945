"""Locust users that behave like real clients of the render API and the AI API.

Standalone (any target: the reference stack, or a deployment named in a target file)::

    locust -f renderchaos/load/locustfile.py --headless --host http://127.0.0.1:8000 \\
        -u 12 -r 4 -t 60s --processes -1 --csv reports/load/run --csv-full-history \\
        --html reports/load/run.html --rc-admin-token "$ADMIN_TOKEN" --rc-seed 42

From pytest: ``pytest -m load --chaos-profile load`` (suites/test_load.py runs this file in a
subprocess through :mod:`renderchaos.load.runner`; gevent's monkey-patching and pytest do not
share a process).

Users (class weights ``--rc-weights render=3,ai=1,browse=1``):

* :class:`RenderClient` submits renders (Faker data, seeded from ``--rc-seed``), polls the job
  with exponential backoff, downloads the output.
* :class:`AiClient` logs in (phone + password -> access token, re-login on 401), submits AI
  jobs, polls them, reads the conversation.
* :class:`Browser` lists its jobs page by page (the read-heavy dashboard client).

Every client honours ``Retry-After`` on 429 / 503 (sleeps that long, then retries, bounded by
``--rc-retries``); the refused attempt is still recorded as a failure. Each Locust user gets its
own account and API key through the admin API, so the per-key limit (RATE_LIMIT_KEY_RATE,
default 5 r/s, burst 10) applies per simulated client as in production; pacing (``--rc-think``,
``--rc-poll``) keeps one client well below it. The per-IP flood limit exempts 127.0.0.1 on the
reference stack; against another target, run the generator from an exempt address.

Accepted job ids are appended (one JSON line each) to ``--rc-accepted-file``, so the harness
can audit them afterwards (no accepted job lost or duplicated, credits exactly once).

Thresholds (``--rc-thresholds`` TOML, ``--rc-threshold-set`` overrides; see
:mod:`renderchaos.load.thresholds`) are evaluated on the master when Locust quits: any breach
sets the exit code to 3 and prints ``THRESHOLD BROKEN: ...`` per broken threshold.

Distributed over several machines: on one machine ``locust -f ... --master --headless
--expect-workers N ...`` and on each other ``locust -f ... --worker --master-host MASTER
--processes -1`` with the same ``--rc-*`` options (each worker machine writes its own
``--rc-accepted-file``; concatenate them before the audit).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import zlib
from pathlib import Path
from typing import Any

import gevent
import requests
from faker import Faker
from locust import HttpUser, between, events, task
from locust import runners as locust_runners
from locust import stats as locust_stats
from locust.runners import MasterRunner, WorkerRunner

from renderchaos.load import thresholds as th

log = logging.getLogger("renderchaos.load")

# History resolution: flush the per-second CSV every second (the harness reads it live during
# load.chaos) and compute the "current" percentiles over 5 s instead of 10 s.
locust_stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1
locust_stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = 5
# A worker process on a saturated machine (the stack under test shares the cores) misses
# 1 s heartbeats; Locust's default (3 missed) then drops every worker and the run is empty.
locust_runners.HEARTBEAT_LIVENESS = 30

TERMINAL = {"completed", "failed", "timeout", "cancelled"}
RETRY_STATUSES = {429, 503}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("renderchaos")
    g.add_argument("--rc-admin-token", default="", env_var="RENDERCHAOS_ADMIN_TOKEN",
                   help="admin API token of the target (creates one account + key per Locust user)")
    g.add_argument("--rc-seed", type=int, default=0, env_var="RENDERCHAOS_SEED",
                   help="run seed: Faker data and pacing jitter derive from it")
    g.add_argument("--rc-accepted-file", default="", env_var="RENDERCHAOS_ACCEPTED_FILE",
                   help="append one JSON line per accepted job (for the harness's ledger audit)")
    g.add_argument("--rc-thresholds", default="", env_var=th.ENV_FILE, help="thresholds TOML file")
    g.add_argument("--rc-threshold-set", default="", env_var=th.ENV_SET,
                   help="threshold overrides 'key=value;...', e.g. 'min_rps=50;p95_ms.POST /v1/videos=300'")
    g.add_argument("--rc-enforce", default="1", env_var="RENDERCHAOS_ENFORCE",
                   help="1: thresholds decide the exit code (3 on a breach); 0: report only (load.chaos)")
    g.add_argument("--rc-weights", default="render=3,ai=1,browse=1", env_var="RENDERCHAOS_WEIGHTS",
                   help="user class weights: render=N,ai=N,browse=N (0 disables a class)")
    g.add_argument("--rc-think", default="0.5,2.0", env_var="RENDERCHAOS_THINK",
                   help="MIN,MAX seconds a user waits between tasks")
    g.add_argument("--rc-poll", default="0.5,3.0,120", env_var="RENDERCHAOS_POLL",
                   help="INITIAL,MAX,DEADLINE seconds: poll backoff (x1.6 per poll) and give-up deadline")
    g.add_argument("--rc-retries", type=int, default=4, env_var="RENDERCHAOS_RETRIES",
                   help="attempts after a 429/503 with Retry-After")
    g.add_argument("--rc-download", type=float, default=0.5, env_var="RENDERCHAOS_DOWNLOAD",
                   help="fraction of completed renders the client downloads")
    g.add_argument("--rc-render", default="1.0,320,240", env_var="RENDERCHAOS_RENDER",
                   help="DURATION,WIDTH,HEIGHT of submitted renders")
    g.add_argument("--rc-credits", type=int, default=10_000_000, env_var="RENDERCHAOS_CREDITS",
                   help="credits of each Locust user's account")
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
    w = _weights(opts.rc_weights)
    RenderClient.weight, AiClient.weight, Browser.weight = w["render"], w["ai"], w["browse"]
    environment._remove_user_classes_with_weight_zero()  # noqa: SLF001 - Locust's own filter, after our weights
    if opts.rc_stop_file and not isinstance(environment.runner, WorkerRunner):
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
class _Client(HttpUser):
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
        self.account = self._create_account(opts)
        self.client.headers["Authorization"] = f"Bearer {self.account['api_key']}"

    def _create_account(self, opts: Any) -> dict[str, Any]:
        """One account per simulated client, made through the admin API (not recorded as load)."""
        if not opts.rc_admin_token:
            raise SystemExit("--rc-admin-token (or RENDERCHAOS_ADMIN_TOKEN) is required: each Locust user "
                             "creates its own account through the admin API")
        deadline = gevent.get_hub().loop.now() + 60
        last = ""
        while gevent.get_hub().loop.now() < deadline:
            try:
                r = requests.post(f"{self.host}/admin/users", timeout=5,
                                  headers={"Authorization": f"Bearer {opts.rc_admin_token}"},
                                  json={"credits": opts.rc_credits, "name": f"locust {self.fake.name()}"})
                if r.status_code == 201:
                    return r.json()
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                last = str(exc)
            gevent.sleep(1.0)  # the target may be mid-fault; retry inside the deadline
        raise SystemExit(f"could not create a Locust user account on {self.host} within 60 s: {last}")

    # -- requests ---------------------------------------------------------------------------
    def call(self, method: str, path: str, name: str, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        """One client call, honouring Retry-After on 429/503 (bounded by --rc-retries).

        Every attempt is recorded; a refused attempt counts as a failure."""
        attempts = self.environment.parsed_options.rc_retries + 1
        resp = None
        for attempt in range(attempts):
            with self.client.request(method, path, name=name, catch_response=True, **kw) as resp:
                if resp.status_code in ok:
                    resp.success()
                    return resp
                resp.failure(f"{resp.status_code} {_code(resp)}")
                retry_after = resp.headers.get("Retry-After")
                if resp.status_code not in RETRY_STATUSES or retry_after is None or attempt == attempts - 1:
                    return resp
            try:
                pause = min(float(retry_after), 30.0)
            except ValueError:
                pause = 1.0
            gevent.sleep(pause + self.rng.uniform(0, 0.25))  # honour Retry-After (jittered), as told
        return resp

    def poll(self, path: str, name: str, status_of: Any) -> dict[str, Any] | None:
        """Poll ``path`` with exponential backoff until the job is terminal or the deadline passes."""
        delay, waited = self.poll_initial, 0.0
        while waited < self.poll_deadline:
            gevent.sleep(delay)  # client-side backoff between polls
            waited += delay
            delay = min(delay * 1.6, self.poll_max)
            r = self.call("GET", path, name)
            if r is not None and r.status_code == 200:
                job = status_of(r.json())
                if job.get("status") in TERMINAL:
                    return job
        return None

    def record_accepted(self, job_id: str, kind: str, expected: list[float] | None) -> None:
        path = self.environment.parsed_options.rc_accepted_file
        if not path:
            return
        line = json.dumps({"job_id": job_id, "kind": kind, "api_key": self.account["api_key"],
                           "expected": expected}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write per line: O_APPEND keeps lines whole across processes
        finally:
            os.close(fd)


def _code(resp: Any) -> str:
    try:
        body = resp.json()
    except Exception:  # noqa: BLE001 - not JSON (e.g. a proxy error page)
        return ""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("code", ""))
        return str(body.get("error_code", ""))
    return ""


class RenderClient(_Client):
    """Submits a render, follows it to the end, downloads the result."""

    weight = 3

    @task
    def render(self) -> None:
        dur, width, height = _floats(self.environment.parsed_options.rc_render, 3, "rc-render")
        f = self.fake
        body = {"template_id": f"template_{f.lexify('??????').lower()}",
                "data": {"title": f.catch_phrase()[:80], "duration": dur, "width": int(width), "height": int(height),
                         "fps": 25, "colours": [f.hex_color(), f.safe_color_name()],
                         "price": round(f.pyfloat(min_value=1, max_value=999, right_digits=2), 2)}}
        r = self.call("POST", "/v1/videos", "/v1/videos", ok=(202,), json=body)
        if r is None or r.status_code != 202:
            return
        job_id = r.json()["id"]
        self.record_accepted(job_id, "render", [dur, int(width), int(height)])
        job = self.poll(f"/v1/videos/{job_id}", "/v1/videos/[id]", lambda d: d)
        if job and job["status"] == "completed" and self.rng.random() < self.environment.parsed_options.rc_download:
            with self.client.get(f"/v1/videos/{job_id}/download", name="/v1/videos/[id]/download",
                                 catch_response=True, stream=True) as resp:
                if resp.status_code == 200:
                    size = sum(len(c) for c in resp.iter_content(65536))
                    if size == 0:
                        resp.failure("empty download")
                    else:
                        resp.success()
                else:
                    resp.failure(f"{resp.status_code} {_code(resp)}")


class Browser(_Client):
    """Dashboard-like reads: list my jobs, page through them."""

    weight = 1

    @task
    def browse(self) -> None:
        r = self.call("GET", "/v1/videos?limit=20", "/v1/videos?limit")
        cursor = r.json().get("next_cursor") if r is not None and r.status_code == 200 else None
        if cursor:
            self.call("GET", f"/v1/videos?limit=20&cursor={cursor}", "/v1/videos?cursor")


class AiClient(_Client):
    """Logs in with phone + password, submits AI jobs with its access token, reads the answer."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.models = ["refstack-echo"]
        self.login()
        r = self.call("GET", "/api/v1/ai/models", "/api/v1/ai/models")
        if r is not None and r.status_code == 200:
            self.models = [m["id"] for m in r.json().get("data", []) if m.get("available", True)] or self.models

    def login(self) -> bool:
        r = self.call("POST", "/api/v1/auth/login", "/api/v1/auth/login",
                      json={"phone": self.account["phone"], "password": self.account["password"]})
        if r is not None and r.status_code == 200:
            self.client.headers["Authorization"] = f"Bearer {r.json()['data']['access_token']}"
            return True
        return False

    @task
    def ask(self) -> None:
        body = {"model": self.rng.choice(self.models), "prompt": self.fake.sentence(nb_words=12)}
        r = self.call("POST", "/api/v1/ai/jobs", "/api/v1/ai/jobs", ok=(202,), json=body)
        if r is not None and r.status_code == 401 and self.login():  # token expired: log in again
            r = self.call("POST", "/api/v1/ai/jobs", "/api/v1/ai/jobs", ok=(202,), json=body)
        if r is None or r.status_code != 202:
            return
        data = r.json()["data"]
        self.record_accepted(data["job_id"], "ai", None)
        job = self.poll(f"/api/v1/ai/jobs/{data['job_id']}", "/api/v1/ai/jobs/[id]", lambda d: d["data"])
        if job and data.get("conversation_id"):
            self.call("GET", f"/api/v1/ai/conversations/{data['conversation_id']}", "/api/v1/ai/conversations/[id]")
