"""``python -m renderchaos.provisioning.engine [build|status|stop]``: prepare the engine and images ahead of a run.

    build [--local] [--no-copy] [SERVICE...]   engine up, images pulled / copied / built (cached by hash)
    status                                     which engine a run would use, and its stack address
    stop [--force]                             stop the Podman API service and dockerd of ours

The engine is chosen by ``RENDERCHAOS_ENGINE`` (auto, docker, podman) or ``--engine``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from renderchaos.provisioning.engine.engine import ENGINE_CHOICES, ENGINE_ENV, find_engine, release_user, stop_services
from renderchaos.provisioning.engine.images import EXTRA_RECIPES, RECIPES, ImageResolver
from renderchaos.errors import RenderChaosError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderchaos.provisioning.engine")
    parser.add_argument("command", choices=["build", "status", "stop"], nargs="?", default="build")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                        help=f"which engine (default: ${ENGINE_ENV} or auto)")
    parser.add_argument("--local", action="store_true", help="skip official images; always use local builds")
    parser.add_argument("--no-copy", action="store_true",
                        help="Docker engine: build local images with docker instead of copying podman's")
    parser.add_argument("--force", action="store_true", help="stop: even if runs are registered as users")
    parser.add_argument("services", nargs="*", default=list(RECIPES),
                        help=f"images to prepare (default: the reference stack's {', '.join(RECIPES)}); "
                             f"also buildable by name: {', '.join(EXTRA_RECIPES)}")
    args = parser.parse_intermixed_args(argv)  # `build --engine docker redis` as well as `build redis --local`
    if args.engine:
        os.environ[ENGINE_ENV] = args.engine
    if args.command == "stop":
        try:
            stopped = stop_services(force=args.force)
        except RenderChaosError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("stopped: " + (", ".join(stopped) if stopped else "nothing of ours was running"))
        return 0
    user = f"engine-{args.command}-{os.getpid()}"
    try:
        engine = find_engine(user=user)
        print(f"engine: {engine.kind} at {engine.docker_host} (cli {engine.cli}; stack address {engine.stack_host})")
        if args.command == "status":
            return 0
        resolver = ImageResolver(engine, prefer_official=not args.local, copy_from_podman=not args.no_copy)
        t0 = time.monotonic()
        refs = resolver.resolve(args.services)
        for svc, ref in refs.items():
            print(f"{svc}: {ref}")
        if resolver.built:
            print(f"cold_build_s={time.monotonic() - t0:.1f}")
        elif resolver.copied:
            print(f"copy_s={time.monotonic() - t0:.1f}")
    except RenderChaosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        release_user(user)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
