#!/usr/bin/env bash
# The demo of the README: sets up .venv (scripts/venv.sh), then runs `callbridge demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/venv.sh
exec .venv/bin/callbridge demo "$@"
