#!/usr/bin/env bash
# The main job, offline: build .venv, start the DataForSEO emulator on loopback, and run the example
# DAG with `airflow dags test` on SQLite, writing JSON Lines to local files under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

DEMO="$PWD/.demo"
mkdir -p "$DEMO"
export AIRFLOW_HOME="$DEMO/airflow-home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/example_dags"
export DATAFORSEO_OUTPUT_ROOT="file://$DEMO/output"

PORT=${DATAFORSEO_EMULATOR_PORT:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
.venv/bin/dataforseo-emulator --port "$PORT" --login demo --password demo-password >"$DEMO/emulator.log" 2>&1 &
EMULATOR_PID=$!
trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
.venv/bin/python - "$PORT" <<'PY'
import sys, time, requests
url = f"http://127.0.0.1:{sys.argv[1]}/v3/appendix/user_data"
deadline = time.monotonic() + 30
while True:  # poll until the emulator answers
    try:
        if requests.get(url, auth=("demo", "demo-password"), timeout=1).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"emulator did not answer on {url}; see .demo/emulator.log")
    time.sleep(0.1)
PY
export AIRFLOW_CONN_DATAFORSEO_DEFAULT="{\"conn_type\": \"dataforseo\", \"login\": \"demo\", \"password\": \"demo-password\", \"host\": \"http://127.0.0.1:$PORT\"}"
echo "Emulator on http://127.0.0.1:$PORT; Airflow home $AIRFLOW_HOME"

.venv/bin/airflow db migrate >"$DEMO/db-migrate.log" 2>&1
.venv/bin/airflow dags test example_dataforseo_bulk_pages_summary 2>&1 | tee "$DEMO/dags-test.log" \
  | grep -E "Request [0-9]+/|Done:|Wrote|Top pages|^\s+[0-9,]+\s+https?://|Pages with|items for|Rows:|ERROR|Traceback" || true

STATE=$(grep -Eo "DagRun Finished: .*state=[a-z]+" "$DEMO/dags-test.log" | tail -n 1 | sed 's/.*state=//')
MANIFEST=$(ls -t "$DEMO"/output/example_dataforseo_bulk_pages_summary/*/manifest.json 2>/dev/null | head -n 1 || true)
if [ "$STATE" != "success" ] || [ -z "$MANIFEST" ]; then
  echo "The DAG run did not succeed (state: ${STATE:-unknown}); full log: $DEMO/dags-test.log" >&2
  exit 1
fi
echo
echo "Run state: $STATE. Manifest: $MANIFEST"
cat "$MANIFEST"
