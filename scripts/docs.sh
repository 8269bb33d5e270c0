#!/usr/bin/env bash
# Build the documentation (Sphinx + MyST) into docs/_build/html, offline, with every warning an
# error (-W --keep-going) and nitpicky cross-references (-n). Extra arguments go to sphinx-build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if ! .venv/bin/python -c "import sphinx, myst_parser, furo" 2>/dev/null; then
  UV="uv"; command -v uv >/dev/null 2>&1 || UV="${PYTHON:-python3} -m uv"
  $UV pip install --quiet --python .venv/bin/python -e ".[docs]" >&2
fi
export AIRFLOW_HOME="$PWD/docs/_build/airflow-home"  # autodoc imports Airflow: keep its files here
rm -rf docs/_build/html
exec .venv/bin/python -m sphinx -b html -W --keep-going -n -q docs docs/_build/html "$@"
