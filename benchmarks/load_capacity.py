"""Load capacity of the reference stack, and of the load generator itself, side by side.

Starts one reference stack (per-key rate limit off: RATE_LIMIT_KEY_RATE=0; 127.0.0.1 is exempt
from the per-IP limit), stops its render workers (submits then measure the API's accept path:
auth, charge + insert in one transaction, publish with confirm, not ffmpeg competing for the
same cores), then with Locust in distributed mode (``--processes``, one worker per core):

1. steps up the submit rate (5, 10, 20, 40, 80, 160 req/s; one user per req/s) for --step-s
   seconds each; a step is sustained when the achieved rate is >= 90 % of the target, failures
   < 1 % and p95 < 200 ms; stops at the first step that is not;
2. runs --ceiling-users users with no wait asking the same API for its health: the generator's
   own ceiling on this machine (if it is close to submit_rps, the generator was the limit).

Both go through the platform adapter (operations ``submit`` and ``health``), as the load test does.

    python benchmarks/load_capacity.py [--step-s 15] [--ceiling-users 50]

Last lines: ``submit_rps=``, ``generator_ceiling_rps=``, ``submit_p95_ms=``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderchaos.faults.container import stop  # noqa: E402
from renderchaos.load.platform import PlatformSpec  # noqa: E402
from renderchaos.load.runner import LoadRun, LocustProcess  # noqa: E402
from renderchaos.load.thresholds import AGGREGATED  # noqa: E402
from renderchaos.provisioning.stack.standalone import standalone_run  # noqa: E402
from renderchaos.target import Target  # noqa: E402

CAPACITY = Path(__file__).resolve().parents[1] / "renderchaos" / "load" / "capacity.py"
P95_LIMIT_MS = 200.0


def locust(platform: PlatformSpec, out: Path, name: str, users: int, seconds: float, mode: str
           ) -> tuple[float, float, float]:
    """(achieved req/s, p95 ms, failure ratio) after the ramp (--reset-stats)."""
    run = LoadRun(platform=platform, out_dir=out, name=name, users=users,
                  spawn_rate=users, run_time_s=seconds, locustfile=CAPACITY, enforce=False,
                  extra_args=["--cap-mode", mode, "--cap-rate", "1", "--reset-stats"])
    proc = LocustProcess(run)
    res = proc.start().wait(timeout=seconds + 120)
    agg = res.row(AGGREGATED)
    assert agg is not None
    return agg.rps, agg.p95_ms or 0.0, agg.failure_ratio


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-s", type=float, default=15.0)
    parser.add_argument("--rates", default="5,10,20,40,80,160")
    parser.add_argument("--ceiling-users", type=int, default=50)
    args = parser.parse_args()
    out = Path(__file__).resolve().parents[1] / "reports" / "load" / "capacity"  # not a temp dir: kept to read
    out.mkdir(parents=True, exist_ok=True)
    best_rps, best_p95 = 0.0, 0.0
    with standalone_run() as run:
        stack = run.stack("cap", workers=1, with_live=False,
                          env={"RATE_LIMIT_KEY_RATE": "0", "WEB_CONCURRENCY": "2"})
        target = Target.from_stack(stack)
        platform = PlatformSpec.of(target.platform)
        target.close()
        for w in target.containers("worker"):
            stop(w, grace=2)  # type: ignore[arg-type]
        for rate in (int(r) for r in args.rates.split(",")):
            rps, p95, fail = locust(platform, out, f"submit{rate}", rate, args.step_s, "submit")
            ok = rps >= 0.9 * rate and p95 < P95_LIMIT_MS and fail < 0.01
            print(f"submit target {rate} req/s: achieved {rps:.1f} req/s, p95 {p95:.0f} ms, "
                  f"failures {fail:.1%} -> {'sustained' if ok else 'NOT sustained'}", flush=True)
            if not ok:
                break
            best_rps, best_p95 = rps, p95
        ceiling, hp95, _ = locust(platform, out, "ceiling", args.ceiling_users, args.step_s, "health")
        print(f"generator ceiling: {ceiling:.1f} req/s of platform.health() (p95 {hp95:.0f} ms, "
              f"{args.ceiling_users} users, no wait); reports in {out}", flush=True)
    print(f"submit_rps={best_rps:.1f}")
    print(f"generator_ceiling_rps={ceiling:.1f}")
    print(f"submit_p95_ms={best_p95:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
