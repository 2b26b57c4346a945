#!/usr/bin/env bash
# Set up (idempotent) and run the project's own tests: plugin, fault proxy, render pipeline,
# media fixtures, provisioning against real containers, the reference stack, and the
# mutation meta-test that proves every scenario catches its broken variant.
set -euo pipefail
cd "$(dirname "$0")/.."
# the container tests run on both engines (RENDERCHAOS_TEST_ENGINES, default podman,docker)
RENDERCHAOS_ENGINES=${RENDERCHAOS_ENGINES:-podman docker} bash scripts/setup.sh
exec .venv/bin/pytest tests -n "${JOBS:-2}" --durations=30 "$@"
