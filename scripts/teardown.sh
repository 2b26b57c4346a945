#!/usr/bin/env bash
# Stop what renderchaos started on this machine and left running between runs: the Podman API
# service and the Docker engine (dockerd) on our sockets. Refuses while a run still uses them
# (FORCE=1 stops them anyway). Images stay (cached by recipe hash); containers of a run are
# removed by that run's reaper, or by hand: .venv/bin/python -m renderchaos.provisioning.stack.reaper sweep RUN_ID
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m renderchaos.provisioning.engine stop ${FORCE:+--force}
