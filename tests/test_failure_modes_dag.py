"""Issue 12 through a real Airflow (``dag.test()``) against the fault-injecting emulator.

Refused targets never sink a run; a trickling server is cut off at the request's deadline; a
timed-out task's process exits without waiting for a hung request; credentials that are not
Latin-1 work and never reach a log or an exception.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, task

from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.exceptions import DataForSeoAuthenticationError, DataForSeoServerError
from airflow_provider_dataforseo.fetch import DEFAULT_INTERRUPT_GRACE_SECONDS
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.isolation import request_bound
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.ratelimit import estimate_cost_usd
from tests.conftest import REPO, conn_json, run_dag
from tests.test_security import HARNESS_LINE, debug_logging  # noqa: F401 - the fixture

if TYPE_CHECKING:
    import io
    from collections.abc import Iterator
    from pathlib import Path

CONN_ID = "dataforseo_faults_dag"
LOGIN = "tester"
#: Not Latin-1: ``requests`` cannot encode it into a Basic-auth header by itself.
PASSWORD = "pässwörd€"
TOKEN = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode("ascii")
SECRETS = {"password": PASSWORD, "Basic token": TOKEN}
START = pendulum.datetime(2026, 1, 1, tz="UTC")
CAPTURED: dict[str, Any] = {}
FAST = {"retry_wait_min": 0.001, "retry_wait_max": 0.005}
#: Three refused targets spread through one 1000-target chunk (issue 12's example).
PAGES = [f"https://example.com/p/{i}" for i in range(1000)]
REFUSED = [PAGES[i] for i in (111, 505, 888)]

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """An emulator whose account password is not Latin-1."""
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=1000.0)) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _connection(server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(server.url, login=LOGIN, password=PASSWORD)
    )
    _configure(server, None)
    yield
    _configure(server, None)


def _configure(server: EmulatorServer, settings: dict[str, Any] | None) -> None:
    route = f"{server.url}/_emulator/fault-injection"
    reply = requests.put(route, json=settings, timeout=5) if settings else requests.delete(route, timeout=5)
    reply.raise_for_status()


def _stats(server: EmulatorServer) -> dict[str, Any]:
    return dict(requests.get(f"{server.url}/_emulator/stats", timeout=5).json())


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        fetch = BulkPagesSummaryOperator(task_id="fetch", dataforseo_conn_id=CONN_ID, **kwargs)

        @task
        def capture(value: Any) -> None:
            CAPTURED[dag_id] = value

        capture(fetch.output)
    return dag


def _state(run: Any) -> str:
    return str(next(ti.state for ti in run.get_task_instances() if ti.task_id == "fetch"))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------
# Refused targets
# ---------------------------------------------------------------------------------------------


def test_three_refused_targets_in_a_1000_target_chunk_never_sink_the_run(
    server: EmulatorServer, tmp_path: Path
) -> None:
    assert all(summary_item(target) is not None for target in REFUSED)
    _configure(server, {"reject_targets": REFUSED})
    cap = 0.5
    before = _stats(server)
    out = tmp_path / "out"
    run = run_dag(
        _dag(
            "refused_targets",
            targets=PAGES,
            output_path=out.as_uri() + "/",
            max_cost_usd=cap,
            hook_params=FAST,
        )
    )
    after = _stats(server)
    assert _state(run) == "success"
    manifest = CAPTURED["refused_targets"]
    assert manifest["rejected_targets"] == REFUSED and manifest["unresolved_targets"] == []
    known = [target for target in PAGES if summary_item(target) is not None and target not in REFUSED]
    rows = _rows(out / "bulk_pages_summary.jsonl")
    assert [row["target"] for row in rows] == known  # every other target's row, in chunk order
    assert manifest["items"] == len(known) and manifest["missing_targets"] == 1000 - 3 - len(known)
    sent = after["api_requests"] - before["api_requests"]
    assert sent <= request_bound(1000, 3) == 36  # the old bisection failed the task after 41
    spent = round(after["spent_usd"] - before["spent_usd"], 5)
    assert spent == pytest.approx(manifest["cost_usd"], abs=1e-9) and spent <= cap
    assert estimate_cost_usd(1, 1000) < spent  # isolation is paid; the estimate's log says so


# ---------------------------------------------------------------------------------------------
# A trickling server
# ---------------------------------------------------------------------------------------------

#: ``timeout=(2, 3)``: every byte of a trickle arrives inside the read timeout; the deadline ends it.
TRICKLE_HOOK = {**FAST, "timeout": [2, 3], "request_deadline": 3}


def test_a_trickling_reply_is_cut_off_at_the_deadline_as_a_transient_timeout(server: EmulatorServer) -> None:
    _configure(server, {"rates": {"trickle": 1.0}, "trickle_seconds": 0.5})
    hook = DataForSeoHook(CONN_ID, **{**TRICKLE_HOOK, "max_attempts": 1})
    began = time.monotonic()
    with pytest.raises(DataForSeoServerError) as info:
        hook.bulk_pages_summary(["example.com", "example.org"])
    took = time.monotonic() - began
    error = info.value
    assert error.retryable  # a transient fault: retried by the hook, then by Airflow
    assert "no complete reply within the request deadline of 3 s (hook param request_deadline)" in str(error)
    assert took < 30  # measured: ~3 s; before, the request lasted as long as the trickle (forever)


def test_a_trickled_attempt_is_retried_and_the_task_succeeds(server: EmulatorServer, tmp_path: Path) -> None:
    domains = [
        line.split(",")[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
    ]
    targets = domains[:600]  # six requests of 100 main domains
    clean_out, out = tmp_path / "clean", tmp_path / "trickled"
    assert (
        _state(run_dag(_dag("trickle_clean", targets=targets, output_path=clean_out.as_uri() + "/")))
        == "success"
    )
    _configure(server, {"rates": {"trickle": 0.5}, "seed": 4, "trickle_seconds": 0.5})
    hook_params = {**TRICKLE_HOOK, "max_attempts": 4}
    dag = _dag(
        "trickle_retried",
        targets=targets,
        output_path=out.as_uri() + "/",
        max_active_requests=6,
        hook_params=hook_params,
    )
    run = run_dag(dag)
    injected = requests.get(f"{server.url}/_emulator/fault-injection", timeout=5).json()["injected"]
    assert injected.get("trickle", 0) >= 1  # some attempts trickled and were cut off
    assert _state(run) == "success"

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "task_id"} for row in rows]

    assert strip(_rows(out / "bulk_pages_summary.jsonl")) == strip(
        _rows(clean_out / "bulk_pages_summary.jsonl")
    )


def test_a_reply_that_always_trickles_fails_the_task_with_a_clear_message(
    server: EmulatorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    _configure(server, {"rates": {"trickle": 1.0}, "trickle_seconds": 0.5})
    before = _stats(server)
    run = run_dag(
        _dag("trickle_forever", targets=["example.com"], hook_params={**TRICKLE_HOOK, "max_attempts": 2})
    )
    assert _state(run) == "failed"
    assert _stats(server)["api_requests"] - before["api_requests"] == 2  # every attempt, no more
    output = capfd.readouterr()
    assert "no complete reply within the request deadline of 3 s" in output.out + output.err


# ---------------------------------------------------------------------------------------------
# Clean shutdown
# ---------------------------------------------------------------------------------------------

_SHUTDOWN_SCRIPT = """
import sys, time
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from airflow.utils import db
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
sys.path.insert(0, {repo!r})
from tests.conftest import run_dag

db.resetdb()
with DAG("hung_api", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    BulkPagesSummaryOperator(
        task_id="fetch",
        targets=["example.com", "https://example.org/a"],
        dataforseo_conn_id={conn_id!r},
        execution_timeout=timedelta(seconds=3),
        hook_params={{"timeout": [5, 600], "max_attempts": 1}},
    )
run = run_dag(dag)
state = next(ti.state for ti in run.get_task_instances())
print("TASK-ENDED", time.monotonic(), state, flush=True)
"""


def test_a_timed_out_task_does_not_wait_for_a_hung_request_to_exit(
    server: EmulatorServer, tmp_path: Path
) -> None:
    """Issue 12: after execution_timeout with a hung API, ``dag.test`` took 2 min 07 s to exit."""
    hang = 300.0
    _configure(server, {"rates": {"hang": 1.0}, "hang_seconds": hang})
    (tmp_path / "dags").mkdir()
    script = tmp_path / "hung.py"
    script.write_text(textwrap.dedent(_SHUTDOWN_SCRIPT.format(repo=str(REPO), conn_id=CONN_ID)))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),  # empty: the DAG is registered by run_dag
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "PYTHONPATH": str(REPO),
    }
    began = time.monotonic()
    process = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=hang, check=False
    )
    ended = time.monotonic()
    marker = next((line for line in process.stdout.splitlines() if line.startswith("TASK-ENDED")), None)
    assert marker is not None, process.stdout[-2000:] + process.stderr[-3000:]
    _, task_ended, state = marker.split()
    assert state == "failed"
    after_task = ended - float(task_ended)
    # measured on a busy 2-core machine: 6.8 s from the task's end to the process's exit (3.2 s
    # for a clean run: the interpreter's own teardown), 62 s in all (start-up and database 30 s,
    # 3 s execution_timeout, 15 s grace); before the fix the exit waited for the hung request
    assert after_task < 20, f"the process outlived its task by {after_task:.1f} s"
    assert ended - began < DEFAULT_INTERRUPT_GRACE_SECONDS + 120 < hang
    assert "still in flight left behind" in process.stdout + process.stderr


# ---------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------


def test_a_non_latin1_password_works_and_never_reaches_the_log(
    server: EmulatorServer,
    capfd: pytest.CaptureFixture[str],
    debug_logging: io.StringIO,  # noqa: F811
) -> None:
    run = run_dag(_dag("utf8_password", targets=["example.com", "https://example.org/a"], hook_params=FAST))
    assert _state(run) == "success" and len(CAPTURED["utf8_password"]) == 2
    output = capfd.readouterr()
    log_text = f"{output.out}\n{output.err}\n{debug_logging.getvalue()}"
    assert "urllib3.connectionpool" in log_text  # DEBUG was on
    for name, secret in SECRETS.items():
        leaks = [line for line in log_text.splitlines() if secret in line and HARNESS_LINE not in line]
        assert leaks == [], f"the {name} appears in the log: {leaks}"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is e for e in seen):
            continue
        seen.append(current)
        pending.extend([current.__cause__, current.__context__])
    return seen


@pytest.mark.parametrize(
    ("password", "reaches_the_api"),
    [("wröng-pässwörd€", True), ("pässwörd€\udcff", False)],
    ids=["refused-by-the-api", "not-encodable"],
)
def test_a_refused_or_unusable_password_fails_once_and_no_exception_or_log_holds_it(
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    password: str,
    reaches_the_api: bool,
) -> None:
    hook = DataForSeoHook(CONN_ID, max_attempts=5, **FAST)
    if reaches_the_api:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(server.url, login=LOGIN, password=password)
        )
    else:  # a lone surrogate (what a bad decoding leaves) cannot even pass through an env var
        from airflow.sdk import Connection

        hook.__dict__["connection"] = Connection(
            conn_id=CONN_ID, conn_type="dataforseo", host=server.url, login=LOGIN, password=password
        )
    before = _stats(server)["api_requests"]
    with caplog.at_level(logging.DEBUG), pytest.raises(DataForSeoAuthenticationError) as info:
        hook.bulk_pages_summary(["example.com"])
    assert _stats(server)["api_requests"] - before == int(reaches_the_api)  # not retried
    assert not info.value.retryable
    token = base64.b64encode(f"{LOGIN}:{password}".encode("utf-8", "surrogatepass")).decode("ascii")
    texts = [caplog.text, repr(hook), *(f"{e!s} {e!r} {e.args!r}" for e in _chain(info.value))]
    for text in texts:
        for secret in (password, token, password.encode("utf-8", "surrogatepass").decode("latin-1")):
            assert secret not in text
    if not reaches_the_api:
        assert "cannot be encoded as UTF-8" in str(info.value) and CONN_ID in str(info.value)
