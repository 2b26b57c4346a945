#!/usr/bin/env bash
# Set up (idempotent) and run the project's own tests: plugin, fault proxy, render pipeline,
# media fixtures, provisioning against real containers, the reference stack, and the
# mutation meta-test that proves every scenario catches its broken variant.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest tests -n "${JOBS:-2}" --durations=30 "$@"
