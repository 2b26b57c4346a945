"""``python -m renderchaos.engine [build|status] [--local]``: prepare the engine and images ahead of a run."""

from __future__ import annotations

import argparse
import sys
import time

from renderchaos.engine.engine import find_engine, release_user
from renderchaos.engine.images import EXTRA_RECIPES, RECIPES, ImageResolver
from renderchaos.errors import RenderChaosError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderchaos.engine")
    parser.add_argument("command", choices=["build", "status"], nargs="?", default="build")
    parser.add_argument("--local", action="store_true", help="skip official images; always use local builds")
    parser.add_argument("services", nargs="*", default=list(RECIPES),
                        help=f"images to prepare (default: the reference stack's {', '.join(RECIPES)}); "
                             f"also buildable by name: {', '.join(EXTRA_RECIPES)}")
    args = parser.parse_args(argv)
    try:
        engine = find_engine(user="image-build")
        print(f"engine: {engine.kind} at {engine.docker_host}")
        resolver = ImageResolver(engine, prefer_official=not args.local)
        t0 = time.monotonic()
        refs = resolver.resolve(args.services)
        for svc, ref in refs.items():
            print(f"{svc}: {ref}")
        if resolver.built:
            print(f"cold_build_s={time.monotonic() - t0:.1f}")
    except RenderChaosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        release_user("image-build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
