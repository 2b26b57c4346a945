#!/usr/bin/env bash
# Set up (idempotent) and run the chaos suite against the reference stack in containers.
# Reports: reports/results.json, reports/junit.xml, reports/report.html.
#   PROFILE=gate|resilience|all (default resilience: every scenario but load)
#   extra arguments go to pytest, e.g.  scripts/run-suite.sh -k render
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest suites --chaos-profile "${PROFILE:-resilience}" -n "${JOBS:-2}" -p no:cacheprovider "$@"
