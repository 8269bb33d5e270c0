#!/usr/bin/env bash
# The whole test suite: quality gates (ruff, mypy) then pytest. Extra arguments go to pytest.
# Needs no server running: the tests start the emulator (and any other server) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

echo "== ruff check";         .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy";                .venv/bin/mypy
if [ "${DATAFORSEO_BROWSER_CHECK:-0}" = "1" ]; then  # set by .ci/run; see scripts/browser_check.py
  echo "== browser check";     bash scripts/browser_check.sh
fi
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
