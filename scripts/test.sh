#!/usr/bin/env bash
# The test command of the README: sets up .venv when it is missing, then runs pytest.
# pytest exits 5 when it collects nothing; that is a failure here too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
fi
exec .venv/bin/python -m pytest "$@"
