#!/usr/bin/env bash
# The demo of the README: sets up .venv when it is missing, then runs `callbridge demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/callbridge ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
fi
exec .venv/bin/callbridge demo "$@"
