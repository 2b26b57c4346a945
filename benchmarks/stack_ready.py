"""Time to a ready reference stack: Postgres, Redis, RabbitMQ, fault proxy, AI provider,
live recorder, API and 2 render workers, from nothing to every readiness check passing.

Runs N cold-container starts (images warm) side by side in one process, prints the median,
and also the image build time when images had to be built first.

    python benchmarks/stack_ready.py [--runs 3] [--workers 2]

Last lines: ``stack_ready_s=<median seconds>`` and, after a cold build, ``cold_build_s=<s>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderchaos.engine import ImageResolver, configure_testcontainers, find_engine  # noqa: E402
from renderchaos.stack.context import StackContext, new_run_id  # noqa: E402
from renderchaos.stack.reaper import Reaper, sweep  # noqa: E402
from renderchaos.stack.stack import Stack, StackConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run_id = new_run_id()
    engine = find_engine(user=run_id)
    configure_testcontainers(engine)
    reaper = Reaper.start(run_id, engine.cli)
    try:
        resolver = ImageResolver(engine)
        t0 = time.monotonic()
        images = resolver.resolve(["postgres", "redis", "rabbitmq", "app"])
        cold = time.monotonic() - t0 if resolver.built else None
        times, teardown = [], []
        for i in range(args.runs):
            stack = Stack(StackContext(run_id, f"{run_id}-b{i}"), StackConfig(images=images, workers=args.workers))
            t1 = time.monotonic()
            stack.start()
            times.append(time.monotonic() - t1)
            t2 = time.monotonic()
            stack.stop()
            teardown.append(time.monotonic() - t2)
            print(f"run {i + 1}: ready in {times[-1]:.2f}s, torn down in {teardown[-1]:.2f}s; "
                  f"per service: {sorted(stack.ready_at.items(), key=lambda kv: kv[1])}", flush=True)
    finally:
        sweep(run_id, engine.cli)
        reaper.release()
    print(f"teardown_s={statistics.median(teardown):.2f}")
    print(f"stack_ready_s={statistics.median(times):.2f}")
    if cold is not None:
        print(f"cold_build_s={cold:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
