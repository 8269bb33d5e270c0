#!/usr/bin/env bash
# The test suite on the oldest supported Airflow, 3.1.0, in its own virtualenv (.venv-oldest).
#
# Airflow is installed with its official constraints files, which this environment cannot reach;
# unconstrained, `apache-airflow==3.1.0` pulls today's libraries, some of which it predates (e.g. a
# structlog without `structlog.dev.Styles`). So everything is resolved as of one week after the
# 3.1.0 release (uv's --exclude-newer): the set a user installing 3.1.0 with its constraints gets.
# Extra arguments go to pytest (./scripts/test_oldest_airflow.sh -k s3 -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
AIRFLOW_OLDEST=${AIRFLOW_OLDEST:-3.1.0}
RESOLVE_AS_OF=${RESOLVE_AS_OF:-2025-10-01}
VENV=${VENV:-.venv-oldest}

if ! command -v uv >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="$PYTHON -m uv"

[ -x "$VENV/bin/python" ] || $UV venv --quiet --python "$PYTHON" "$VENV" >&2
$UV pip install --quiet --python "$VENV/bin/python" --exclude-newer "$RESOLVE_AS_OF" \
  -e ".[test]" "apache-airflow==$AIRFLOW_OLDEST" >&2
echo "== $("$VENV/bin/python" -c 'import importlib.metadata as m; print("apache-airflow", m.version("apache-airflow"), "task-sdk", m.version("apache-airflow-task-sdk"))')"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
