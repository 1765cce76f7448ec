#!/usr/bin/env bash
# One command: set up, then run the demo (vendor server + broker with the agent + demo keys).
#   ./scripts/demo.sh            (extra arguments go to `mqtt-licensing demo`, e.g. --port 1884 --http-port 8081)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec .venv/bin/mqtt-licensing demo "$@"
