#!/usr/bin/env bash
# Create (or update) the project's virtualenv in .venv with the package, Airflow 3.3.x and the test
# tools. Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
AIRFLOW_SPEC=${AIRFLOW_SPEC:-"apache-airflow>=3.3,<3.4"}

if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv (a fast pip replacement) with pip" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="$PYTHON -m uv"

if [ ! -x .venv/bin/python ]; then
  $UV venv --quiet --python "$PYTHON" .venv >&2
fi
$UV pip install --quiet --python .venv/bin/python -e ".[test]" "$AIRFLOW_SPEC" >&2
