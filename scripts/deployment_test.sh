#!/usr/bin/env bash
# The provider on a real deployment (see scripts/deployment_check.py): Postgres and Redis from
# Debian's packages, CeleryExecutor with two workers, scheduler, dag-processor, triggerer and
# api-server as separate processes, the emulator with the API's limits on. Installs into its own
# venv with constraints/deployment.txt, starts everything itself, stops everything it started (by
# PID, even on failure), prints a summary with figures. Exit code 0 when every check passed.
# ~6-10 min on a 2-core machine. Usage: bash scripts/deployment_test.sh [--stages main,at_scale,...]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}

NEED=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || NEED+=(postgresql)
command -v redis-server >/dev/null 2>&1 || NEED+=(redis-server)
if [ "${#NEED[@]}" -gt 0 ]; then
  echo "deployment-test: installing Debian's ${NEED[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEED[@]}" >/dev/null
fi
PG_BINDIR=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")

WORK=$(mktemp -d /tmp/dataforseo-deployment-XXXXXX)
chmod 755 "$WORK"
: >"$WORK/pids"
stop_all() {
  # whatever deployment_check.py could not stop: each line "pid name", a process group leader
  local pid name
  while read -r pid name; do
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "deployment-test: stopping $name (process group $pid)" >&2
      kill -TERM -- "-$pid" 2>/dev/null || true
    fi
  done <"$WORK/pids"
  for _ in $(seq 1 40); do
    local left=0
    while read -r pid name; do kill -0 -- "-$pid" 2>/dev/null && left=1; done <"$WORK/pids"
    [ "$left" = 0 ] && break
    sleep 0.5
  done
  while read -r pid name; do kill -KILL -- "-$pid" 2>/dev/null || true; done <"$WORK/pids"
  # keep the logs and the summary; drop the bulk (DATAFORSEO_DEPLOYMENT_KEEP=1 keeps everything)
  if [ "${DATAFORSEO_DEPLOYMENT_KEEP:-0}" != "1" ]; then
    rm -rf "$WORK/venv" "$WORK/pgdata" "$WORK/output"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

command -v uv >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >&2
echo "deployment-test: venv $WORK/venv with constraints/deployment.txt" >&2
uv venv --quiet --python "$PYTHON" "$WORK/venv" >&2
uv pip install --quiet --python "$WORK/venv/bin/python" -c constraints/deployment.txt \
  "$REPO" "apache-airflow[celery,postgres,redis]" aiosmtpd >&2

"$WORK/venv/bin/python" scripts/deployment_check.py --work "$WORK" --pg-bindir "$PG_BINDIR" "$@"
