"""``python -m renderchaos.merge reports/shard-* [--out DIR]``: short for ``renderchaos.shards merge``."""

from __future__ import annotations

import sys

from renderchaos.shards import main

if __name__ == "__main__":
    raise SystemExit(main(["merge", *sys.argv[1:]]))
