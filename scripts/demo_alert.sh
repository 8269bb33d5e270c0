#!/usr/bin/env bash
# The alert, offline: the emulator (its clock at 2026-11-01) and a loopback SMTP server; a first run
# of example_dataforseo_backlinks_alert stores the baseline; the emulator's clock moves a week on;
# a second run finds the changed lost_date / broken_backlinks values and emails them; a third run
# the same day alerts nothing (each change is reported once). Prints the changes, the email
# received and the changes feed (JSON Lines beside the baseline). Everything under .demo/alert/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

DEMO="$PWD/.demo/alert"
rm -rf "$DEMO"
mkdir -p "$DEMO"  # the Maildir itself is created by the SMTP server
export AIRFLOW_HOME="$DEMO/airflow-home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/example_dags"
export DATAFORSEO_OUTPUT_ROOT="file://$DEMO/output"
export DATAFORSEO_BASELINE_ROOT="file://$DEMO/baselines"
export DATAFORSEO_ALERT_EMAIL_TO="seo-team@example.org"
export DATAFORSEO_ALERT_EMAIL_FROM="airflow@example.org"
export DATAFORSEO_ALERT_TIMEOUT_SECONDS=0   # one check per run instead of waiting all day

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${DATAFORSEO_EMULATOR_PORT:-$(free_port)}
SMTP_PORT=$(free_port)
.venv/bin/dataforseo-emulator --port "$PORT" --login demo --password demo-password --date 2026-11-01 \
  >"$DEMO/emulator.log" 2>&1 &
EMULATOR_PID=$!
.venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$DEMO/mailbox" \
  >"$DEMO/smtp.log" 2>&1 &
SMTP_PID=$!
trap 'kill "$EMULATOR_PID" "$SMTP_PID" 2>/dev/null || true' EXIT
.venv/bin/python - "$PORT" "$SMTP_PORT" <<'PY'
import socket, sys, time, requests
url = f"http://127.0.0.1:{sys.argv[1]}/v3/appendix/user_data"
deadline = time.monotonic() + 30
while True:  # poll until the emulator answers
    try:
        if requests.get(url, auth=("demo", "demo-password"), timeout=1).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"emulator did not answer on {url}; see .demo/alert/emulator.log")
    time.sleep(0.1)
while True:  # and until the SMTP server greets
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=1) as s:
            if s.recv(64).startswith(b"220"):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("SMTP server did not answer; see .demo/alert/smtp.log")
    time.sleep(0.1)
PY
export AIRFLOW_CONN_DATAFORSEO_DEFAULT="{\"conn_type\": \"dataforseo\", \"login\": \"demo\", \"password\": \"demo-password\", \"host\": \"http://127.0.0.1:$PORT\"}"
export AIRFLOW_CONN_SMTP_DEFAULT="{\"conn_type\": \"smtp\", \"host\": \"127.0.0.1\", \"port\": $SMTP_PORT, \"extra\": {\"disable_tls\": true, \"disable_ssl\": true, \"retry_limit\": 0}}"
echo "Emulator on http://127.0.0.1:$PORT (simulated date 2026-11-01); SMTP on 127.0.0.1:$SMTP_PORT"

.venv/bin/airflow db migrate >"$DEMO/db-migrate.log" 2>&1

run_state() { grep -Eo "DagRun Finished: .*state=[a-z]+" "$1" | tail -n 1 | sed 's/.*state=//'; }

echo
echo "== Run 1: no baseline yet"
.venv/bin/airflow dags test example_dataforseo_backlinks_alert 2>&1 | tee "$DEMO/run1.log" \
  | grep -Eo "No baseline yet: .*(waiting for a change|succeeding)|Sensor has timed out|ERROR.*|Traceback.*" || true
[ "$(run_state "$DEMO/run1.log")" = "success" ] || { echo "Run 1 failed; see $DEMO/run1.log" >&2; exit 1; }

echo
echo "== The emulator's clock moves 7 days on"
.venv/bin/python - "$PORT" <<'PY'
import sys, requests
reply = requests.post(f"http://127.0.0.1:{sys.argv[1]}/_emulator/clock", json={"advance_days": 7}, timeout=5)
reply.raise_for_status()
print(f"Simulated date: {reply.json()['date']}")
PY

echo
echo "== Run 2: changes found and emailed"
.venv/bin/airflow dags test example_dataforseo_backlinks_alert 2>&1 | tee "$DEMO/run2.log" \
  | grep -Eo "DataForSEO backlinks: [0-9]+ changes? on [0-9]+ pages?( \([^)]*\))?|- https?://[^ ]+  [a-z_]+: .* \([^)]*\)|ERROR.*|Traceback.*" \
  | awk '!seen[$0]++' || true
STATE=$(run_state "$DEMO/run2.log")
if [ "$STATE" != "success" ] || ! grep -q "Success criteria met" "$DEMO/run2.log"; then
  echo "Run 2 did not find and send the changes (state: ${STATE:-unknown}); see $DEMO/run2.log" >&2
  exit 1
fi

echo
echo "== Email received by the SMTP server"
.venv/bin/python - "$DEMO/mailbox" <<'PY'
import html, mailbox, re, sys
messages = list(mailbox.Maildir(sys.argv[1], create=False))
if len(messages) != 1:
    sys.exit(f"expected 1 email, found {len(messages)}")
message = messages[0]
print(f"From: {message['From']}\nTo: {message['To']}\nSubject: {message['Subject']}")
for part in message.walk():
    if part.get_content_type() == "text/html":
        body = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        for row in re.findall(r"<tr>(.*?)</tr>", body)[1:]:
            page, _given_as, field, old, new, kind, _delta = (
                html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)
            )
            print(f"  {page}  {field}: {old} -> {new} ({kind})")
PY

echo
echo "== Run 3, the same day: nothing new, nothing sent again"
.venv/bin/airflow dags test example_dataforseo_backlinks_alert 2>&1 | tee "$DEMO/run3.log" \
  | grep -Eo "No change in [0-9]+ targets|[0-9]+ changes on [0-9]+ targets|ERROR.*|Traceback.*" | awk '!seen[$0]++' || true
[ "$(run_state "$DEMO/run3.log")" = "success" ] || { echo "Run 3 failed; see $DEMO/run3.log" >&2; exit 1; }

echo
echo "== The changes feed (every change once, beside the baseline)"
.venv/bin/python - "$DEMO/baselines" "$DEMO/mailbox" <<'PY'
import json, mailbox, pathlib, sys
feeds = sorted(pathlib.Path(sys.argv[1]).rglob("backlinks_changes_*.jsonl"))
if len(feeds) != 1:
    sys.exit(f"expected 1 changes feed, found {[str(f) for f in feeds]}")
records = [json.loads(line) for line in feeds[0].read_text().splitlines()]
print(f"{feeds[0]}: {len(records)} lines")
for record in records[:5]:
    print("  " + json.dumps(record))
if len(list(mailbox.Maildir(sys.argv[2], create=False))) != 1:
    sys.exit("run 3 sent another email")
PY
