#!/usr/bin/env bash
# The test suite on the oldest supported Airflow, 3.2.0, in a fresh virtualenv (.venv-oldest).
#
# Why 3.2 and not 3.1: the connection form is declared with `conn-fields`/`ui-field-behaviour`,
# which Airflow reads from 3.2 on, and the code imports Task SDK names that 3.1 lacks
# (`airflow.sdk.conf`, `airflow.sdk.exceptions.AirflowFailException`); the suite on 3.1.0 fails
# to import the operator and sensor.
#
# Airflow is normally installed with its official constraints files, which this environment cannot
# reach; unconstrained, an old Airflow pulls today's libraries, some of which it predates. So
# everything is resolved as of about one week after the 3.2.0 release (uv's --exclude-newer): the
# set a user installing 3.2.0 with its constraints gets. Extra arguments go to pytest
# (./scripts/test_oldest_airflow.sh -k s3 -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
AIRFLOW_OLDEST=${AIRFLOW_OLDEST:-3.2.0}
RESOLVE_AS_OF=${RESOLVE_AS_OF:-2026-04-17}
VENV=.venv-oldest

if ! command -v uv >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="$PYTHON -m uv"

rm -rf "$VENV"  # fresh each time: uv keeps already-installed packages, whatever their date
$UV venv --quiet --python "$PYTHON" "$VENV" >&2
$UV pip install --quiet --python "$VENV/bin/python" --exclude-newer "$RESOLVE_AS_OF" \
  -e ".[test]" "apache-airflow==$AIRFLOW_OLDEST" >&2
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m

names = ("apache-airflow", "apache-airflow-task-sdk", "apache-airflow-providers-amazon",
         "apache-airflow-providers-openlineage", "moto")
print("==", ", ".join(f"{n} {m.version(n)}" for n in names))
PY
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
