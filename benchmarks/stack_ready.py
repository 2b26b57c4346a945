"""Time to a ready reference stack: Postgres, Redis, RabbitMQ, fault proxy, AI provider,
live recorder, API and 2 render workers, from nothing to every readiness check passing.

Runs N cold-container starts (images warm) in one process, prints the median, and also the
image build time when images had to be built first. Side by side (alternating), the same stack
started from its compose file (renderchaos/platforms/refstack/compose.yml), the path every
user's platform takes: ``compose_ready_s`` and the ratio to the Python-started stack.

    python benchmarks/stack_ready.py [--runs 3] [--workers 2] [--no-compose]

Last lines: ``stack_ready_s=<median seconds>``, ``compose_ready_s``, ``compose_vs_stack_ratio``
and, after a cold build, ``cold_build_s=<s>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderchaos.provisioning.stack.standalone import standalone_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-compose", action="store_true", help="only the Python-started stack")
    args = parser.parse_args()
    compose_file = Path(__file__).resolve().parents[1] / "renderchaos" / "platforms" / "refstack" / "compose.yml"
    with standalone_run() as run:
        cold = run.cold_build_s
        times, teardown, compose_times = [], [], []
        for i in range(args.runs):
            if not args.no_compose:
                cstack = run.compose(compose_file, name=f"c{i}", start=False)
                t0 = time.monotonic()
                cstack.start()
                compose_times.append(time.monotonic() - t0)
                cstack.stop()
                run.stacks.remove(cstack)
                print(f"run {i + 1}: compose stack ready in {compose_times[-1]:.2f}s", flush=True)
            stack = run.stack(f"b{i}", start=False, workers=args.workers)
            t1 = time.monotonic()
            stack.start()
            times.append(time.monotonic() - t1)
            t2 = time.monotonic()
            stack.stop()
            run.stacks.remove(stack)
            teardown.append(time.monotonic() - t2)
            print(f"run {i + 1}: ready in {times[-1]:.2f}s, torn down in {teardown[-1]:.2f}s; "
                  f"per service: {sorted(stack.ready_at.items(), key=lambda kv: kv[1])}", flush=True)
    print(f"teardown_s={statistics.median(teardown):.2f}")
    print(f"stack_ready_s={statistics.median(times):.2f}")
    if compose_times:
        print(f"compose_ready_s={statistics.median(compose_times):.2f}")
        print(f"compose_vs_stack_ratio={statistics.median(compose_times) / statistics.median(times):.2f}")
    if cold is not None:
        print(f"cold_build_s={cold:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
