#!/usr/bin/env bash
# The test command of the README: sets up .venv (scripts/venv.sh), then runs pytest.
# pytest exits 5 when it collects nothing; that is a failure here too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
