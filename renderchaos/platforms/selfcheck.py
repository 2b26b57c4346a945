"""The adapter self-check: does an adapter do what it declares, on a live platform? About a minute.

    python -m renderchaos.platforms.selfcheck --compose path/to/docker-compose.yml
    python -m renderchaos.platforms.selfcheck --target staging.toml
    python -m renderchaos.platforms.selfcheck                      # the reference stack

Runs every core operation and every operation of the feature groups the adapter declares, and
prints one line per check: ``ok``, ``MISSING`` (declared but not implemented) or ``WRONG`` (it
answered, but not as the seam says: a job that never ends, an error not normalised, a download
that is not media). Exit status 0 only when every check is ok. Write your adapter until this is
green, then run the gate (docs/your-platform.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from renderchaos.errors import RenderChaosError
from renderchaos.platforms.base import TERMINAL, ErrorKind, Feature, JobState, Platform, RenderRequest
from renderchaos.wait import Poll, wait_for

#: how long a small render may take on the platform under check
RENDER_WAIT_S = 60.0


@dataclass
class Check:
    name: str
    status: str  # ok | MISSING | WRONG | skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class SelfCheck:
    platform: Platform
    checks: list[Check] = field(default_factory=list)
    say: Callable[[str], None] = print

    def run(self, name: str, fn: Callable[[], str | None], needs: Feature | None = None) -> Any:
        if needs is not None and not self.platform.has(needs):
            self.checks.append(Check(name, "skipped", f"feature '{needs.value}' not declared"))
            self.say(f"  skipped  {name}: feature '{needs.value}' not declared")
            return None
        t0 = time.monotonic()
        try:
            detail = fn() or ""
            check = Check(name, "ok", detail)
        except NotImplementedError as exc:
            check = Check(name, "MISSING", f"declared but not implemented: {exc}")
        except (AssertionError, RenderChaosError, OSError, ValueError, KeyError, TypeError) as exc:
            check = Check(name, "WRONG", f"{type(exc).__name__}: {exc}"[:600])
        check.seconds = round(time.monotonic() - t0, 2)
        self.checks.append(check)
        self.say(f"  {check.status:<8} {name} ({check.seconds}s){': ' + check.detail if check.detail else ''}")
        return check

    @property
    def ok(self) -> bool:
        return all(c.status in ("ok", "skipped") for c in self.checks)

    def all(self) -> "SelfCheck":
        p = self.platform
        state: dict[str, Any] = {}
        self.say(f"adapter {p.name} ({type(p).__module__}.{type(p).__qualname__}) at {p.endpoint.api_url}; "
                 f"features: {', '.join(sorted(f.value for f in p.features)) or 'none'}")

        def prepare() -> str:
            p.prepare()
            return "one-time setup done"

        def health() -> str:
            h = p.health()
            assert h.ok, f"health not ok: status {h.status}, failing {list(h.failing)}, {h.detail[:200]}"
            return f"status {h.status} in {h.elapsed * 1000:.0f} ms"

        def account() -> str:
            state["account"] = acc = p.open_account("selfcheck", credits=1000)
            assert acc.id, "an account needs an id (a fixed one is fine)"
            return f"account {acc.id}"

        def submit() -> str:
            ans = p.submit(state["account"], RenderRequest(title="selfcheck", duration=2.0))
            assert ans.ok and ans.value, f"a small valid render must be accepted; got {ans}"
            state["job"] = ans.value
            return f"job {ans.value} in {ans.elapsed * 1000:.0f} ms"

        def observe() -> str:
            job = wait_for(lambda: (j := p.observe_job(state["job"])) is not None and j.terminal and j,
                           what=f"job {state['job']} to reach a terminal state", timeout=RENDER_WAIT_S,
                           poll=Poll(0.5, tolerate=(RenderChaosError, OSError)))
            assert job.state is JobState.COMPLETED, f"a small valid render must complete; got {job.brief()}"
            state["done"] = job
            return f"{job.state} (states seen through observe_job)"

        def owner_view() -> str:
            ans = p.job(state["account"], state["job"])
            assert ans.ok and ans.value and ans.value.state in TERMINAL, f"the owner's view: {ans}"
            return str(ans.value.state)

        def unknown() -> str:
            missing = p.observe_job("renderchaos-selfcheck-no-such-job")
            assert missing is None, f"observe_job of an unknown id must be None (lost), got {missing}"
            return "unknown job -> None"

        def listing() -> str:
            ans = p.list_jobs(state["account"], limit=5)
            assert ans.ok and ans.value is not None, f"list_jobs: {ans}"
            return f"{len(ans.value)} job(s)"

        def download() -> str:
            from renderchaos.probes.media import probe_bytes

            ans = p.download(state["account"], state["job"])
            assert ans.ok and ans.value, f"download of a completed job: {ans}"
            info = probe_bytes(ans.value)
            return f"{len(ans.value)} bytes, {info.width}x{info.height}, {info.duration:.2f}s"

        def refused() -> str:
            ans = p.submit(state["account"], RenderRequest(title="selfcheck missing input",
                                                           input=p.missing_asset()))
            if ans.ok:  # accepted: then the job must fail, not complete
                job = wait_for(lambda: (j := p.observe_job(ans.value or "")) is not None and j.terminal and j,
                               what="the job of a missing input to end", timeout=RENDER_WAIT_S, poll=Poll(0.5))
                assert job.state is JobState.FAILED, f"a missing input must fail, got {job.brief()}"
                return f"accepted, then {job.brief()}"
            assert ans.error is not None and ans.error.kind is ErrorKind.INVALID_PARAMETER, \
                f"a missing input must be refused as invalid_parameter: {ans}"
            return f"refused: {ans.error}"

        def cancel() -> str:
            ans = p.submit(state["account"], RenderRequest(title="selfcheck cancel", duration=60.0, width=1280,
                                                           height=720))
            assert ans.ok and ans.value, f"submit: {ans}"
            c = p.cancel(state["account"], ans.value)
            assert c.ok or c.kind is ErrorKind.CONFLICT, f"cancel: {c}"
            job = wait_for(lambda: (j := p.observe_job(ans.value or "")) is not None and j.terminal and j,
                           what="the cancelled job to end", timeout=RENDER_WAIT_S, poll=Poll(0.5))
            assert job.state in (JobState.CANCELLED, JobState.COMPLETED), f"after cancel: {job.brief()}"
            return job.brief()

        def counts() -> str:
            c = p.job_counts()
            assert c is not None, "job_counts declared but None"
            return ", ".join(f"{k}={v}" for k, v in c.items())

        def metrics() -> str:
            text = p.metrics() or ""
            assert "# TYPE" in text or "# HELP" in text, f"not Prometheus text: {text[:120]!r}"
            return f"{len(text.splitlines())} lines"

        def openapi() -> str:
            doc = p.openapi() or {}
            assert "paths" in doc and ("openapi" in doc or "swagger" in doc), "not an OpenAPI document"
            return f"{doc.get('openapi') or doc.get('swagger')}, {len(doc['paths'])} paths"

        def credits() -> str:
            acc = state["account"]
            b, t = p.balance(acc), p.ledger_total(acc)
            assert b is not None and t is not None and b == t, f"balance {b} vs ledger total {t}"
            charges = p.job_charges(state["job"])
            assert charges == (1, 0), f"a completed job: charged once, not refunded; got {charges}"
            return f"balance {b} == ledger"

        def auth() -> str:
            bad = p.bad_credentials(state["account"])
            assert bad, "bad_credentials() is empty"
            with p.http(None) as c:
                ep = (p.endpoints(state["account"]) or [None])[0]
                assert ep is not None, "endpoints() names no operation to try bad credentials on"
                for b in bad:
                    r = c.request(ep.method, ep.path, headers=dict(b.headers))
                    err = p.classify(r)
                    assert err is not None and err.kind is ErrorKind.UNAUTHORIZED, f"{b.name}: {r.status_code}"
            return f"{len(bad)} bad credentials refused as unauthorized"

        for name, fn, needs in (("prepare", prepare, None), ("health", health, None), ("open_account", account, None),
                                ("submit", submit, None), ("observe_job until terminal", observe, None),
                                ("job (owner's view)", owner_view, None), ("observe_job of an unknown id", unknown, None),
                                ("list_jobs", listing, None), ("download", download, Feature.DOWNLOAD),
                                ("missing input refused", refused, Feature.ASSETS), ("cancel", cancel, Feature.CANCEL),
                                ("job_counts", counts, Feature.STATS), ("metrics", metrics, Feature.METRICS),
                                ("openapi", openapi, Feature.OPENAPI), ("credits", credits, Feature.CREDITS),
                                ("bad credentials", auth, Feature.AUTH)):
            check = self.run(name, fn, needs)
            if name in ("health", "submit", "observe_job until terminal") and check and check.status != "ok":
                self.say("  (stopping: the core does not work yet)")
                break
        return self


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderchaos.platforms.selfcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--compose", type=Path, help="start the platform of this compose file (x-renderchaos)")
    where.add_argument("--target", type=Path, help="a running deployment described by a target file")
    parser.add_argument("--allow-remote", action="store_true", help="allow a target outside 127.0.0.0/8")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    if args.target:
        from renderchaos.target import load_target_file

        target = load_target_file(args.target, args.allow_remote)
        result = SelfCheck(target.platform).all()
    else:
        from renderchaos.provisioning.stack.standalone import standalone_run
        from renderchaos.target import Target

        with standalone_run() as run:
            if args.compose:
                target = run.compose(args.compose).target()
            else:
                target = Target.from_stack(run.stack("selfcheck", workers=1, with_live=False))
            result = SelfCheck(target.platform).all()
            target.close()
    bad = [c for c in result.checks if c.status not in ("ok", "skipped")]
    print(f"selfcheck: {len(result.checks) - len(bad)} ok or skipped, {len(bad)} to fix, "
          f"in {time.monotonic() - t0:.0f}s")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
