"""What the operator's errors and warnings say, checked word for word through ``dag.test()``.

The cost guard names the cap the user set and what earlier tries may have paid; a rows file
changed after the run finished is named in a warning; a path refused as an existing file names
the file that exists.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.ratelimit import estimate_cost_usd
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, conn_json, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONN_ID = "dataforseo_guard_messages"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
DOMAINS = [
    line.split(",")[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
]
#: 74 page URLs: one request, bound 0.02 + 74 x 0.00003 = 0.02222 USD.
PAGES = [f"https://{domain}/about" for domain in DOMAINS[:74]]

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD, balance_usd=1000.0)
    with EmulatorServer(config) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _connection(server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(server.url))
    yield
    requests.delete(f"{server.url}/_emulator/fault-injection", timeout=5).raise_for_status()


def _stats(server: EmulatorServer) -> dict[str, Any]:
    return dict(requests.get(f"{server.url}/_emulator/stats", timeout=5).json())


def _fetch_ti(run: Any) -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == "fetch")


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        BulkPagesSummaryOperator(task_id="fetch", dataforseo_conn_id=CONN_ID, **kwargs)
    return dag


# ---------------------------------------------------------------------------------------------
# The cost guard's figures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["xcom", "output_path"])
def test_cost_guard_names_the_cap_set_and_what_earlier_cut_off_tries_may_have_paid(
    server: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    """The tester's case: two tries cut off, the third refused, its error said cap 0.00556 USD."""
    targets = tmp_path / "pages.txt"
    targets.write_text("\n".join(PAGES) + "\n", encoding="utf-8")
    monkeypatch.setenv("AIRFLOW__DATAFORSEO__STATE_ROOT", tmp_path.as_uri() + "/state/")
    extra = {"output_path": (tmp_path / "out").as_uri() + "/"} if mode == "output_path" else {}
    requests.put(
        f"{server.url}/_emulator/fault-injection", json={"rates": {"disconnect": 1.0}}, timeout=5
    ).raise_for_status()
    before = _stats(server)
    dag = _dag(
        f"guard_message_{mode}",
        targets=targets.as_uri(),
        max_cost_usd=0.05,
        retries=5,
        retry_delay=timedelta(0),
        hook_params={"max_attempts": 1, "retry_wait_min": 0.001, "retry_wait_max": 0.005},
        **extra,
    )
    ti = _fetch_ti(run_dag(dag))
    after = _stats(server)
    assert (str(ti.state), ti.try_number) == ("failed", 3)  # tries 1-2 cut off, try 3 refused
    assert after["api_requests"] - before["api_requests"] == 2
    bound = estimate_cost_usd(1, 74)
    assert bound == 0.02222
    output = capfd.readouterr()
    text = output.out + output.err
    expected = (
        "Cost guard: the plan of 1 request for 74 targets (requests x 0.02 USD + targets x 0.00003 USD) "
        "(up to 0.02222 USD) could take the spend to 0.06666 USD, over max_cost_usd=0.05000; it was "
        "not sent. Spent so far: 0.00000 USD reported by replies; up to 0.04444 USD counting what "
        "earlier tries may have paid for requests whose reply was never read or never stored."
    )
    assert expected in text
    assert "max_cost_usd=0.00556" not in text
    # what the emulator really charged for the two cut-off attempts is within that bound
    charged = round(after["spent_usd"] - before["spent_usd"], 5)
    assert 0 < charged <= 2 * bound


# ---------------------------------------------------------------------------------------------
# A finished run's rows file changed afterwards
# ---------------------------------------------------------------------------------------------

FAST = {"retry_wait_min": 0.001, "retry_wait_max": 0.005}


def _execute(out: Path, try_number: int) -> Any:
    ti = SimpleNamespace(dag_id="d", task_id="fetch", run_id="run-1", map_index=-1, try_number=try_number)
    operator = BulkPagesSummaryOperator(
        task_id="fetch",
        dataforseo_conn_id=CONN_ID,
        targets=PAGES[:5],
        output_path=out.as_uri() + "/",
        hook_params=FAST,
    )
    return operator.execute({"ti": ti})  # type: ignore[arg-type]


def test_a_rows_file_changed_after_the_run_finished_is_refused_not_paid_for_again(
    server: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    first = _execute(out, 1)
    rows_path = out / "bulk_pages_summary.jsonl"
    recorded = rows_path.stat().st_size
    assert first["uri"].endswith("bulk_pages_summary.jsonl") and recorded > 0
    with rows_path.open("a", encoding="utf-8") as rows:
        rows.write('{"target": "added-by-hand.example"}\n')
    found = rows_path.stat().st_size
    before = _stats(server)
    with pytest.raises(AirflowFailException) as info:
        _execute(out, 2)
    assert str(info.value) == (
        f"The rows file {rows_path.as_uri()} was changed after this task instance finished its work: "
        f"the completion marker {rows_path.as_uri()}.checkpoint/done.json records {recorded} bytes, "
        f"the file holds {found}. Nothing was sent, so that the work is not paid for twice: restore "
        "the file, or delete it to fetch (and pay for) the work again."
    )
    assert _stats(server)["api_requests"] == before["api_requests"]  # nothing sent, nothing paid
    assert rows_path.stat().st_size == found  # the user's file is left as it is
    # deleting the rows file is the way to have the work done (and paid for) again: said at WARNING
    rows_path.unlink()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_dataforseo"):
        again = _execute(out, 3)
    assert _stats(server)["api_requests"] == before["api_requests"] + 1
    assert rows_path.stat().st_size == recorded and again["items"] == first["items"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"The rows file {rows_path.as_uri()} this task instance finished is gone" in text
        and f"records {recorded} bytes" in text
        and "fetched, and paid for, again" in text
        for text in warnings
    ), warnings


# ---------------------------------------------------------------------------------------------
# An output_path under an existing file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("below", ["sub/r.jsonl", "r.jsonl", "sub/deeper/", "sub/"])
def test_an_output_path_under_a_file_names_the_file_that_exists(
    server: EmulatorServer, tmp_path: Path, below: str
) -> None:
    blocker = tmp_path / "isfile"
    blocker.write_text("not a folder\n")
    output_path = blocker.as_uri() + "/" + below
    before = _stats(server)
    operator = BulkPagesSummaryOperator(
        task_id="fetch", dataforseo_conn_id=CONN_ID, targets=PAGES[:5], output_path=output_path
    )
    ti = SimpleNamespace(dag_id="d", task_id="fetch", run_id="run-1", map_index=-1, try_number=1)
    with pytest.raises(AirflowFailException) as info:
        operator.execute({"ti": ti})  # type: ignore[arg-type]
    assert (
        f"output_path {output_path!r}: {blocker.as_uri()} is an existing file where a folder is meant"
        in str(info.value)
    )
    assert _stats(server)["api_requests"] == before["api_requests"]
