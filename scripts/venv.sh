#!/usr/bin/env bash
# The README's commands share this step (scripts/demo.sh and scripts/test.sh run it first):
# make .venv hold callbridge with its test extras, whichever command runs first. A stamp of
# pyproject.toml records what was installed, so a venv made by an older script (without
# pytest) or before a dependency changed is brought up to date, and an up-to-date one costs
# nothing. pip's output goes to .venv/setup.log; one line says what is happening.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/callbridge-setup.stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1) .[test]"
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "callbridge needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
echo "setting up .venv: installing callbridge and its test tools (pip's log: .venv/setup.log)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
rm -f "$stamp"
if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]' >.venv/setup.log 2>&1; then
  echo "pip install failed; the end of .venv/setup.log:" >&2
  tail -n 20 .venv/setup.log >&2
  exit 1
fi
echo "$want" >"$stamp"
