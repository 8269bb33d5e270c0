"""``soft_fail=True`` skips BacklinksChangeSensor only on a timeout, never on a permanent error.

Airflow's ``BaseSensorOperator`` turns an ``AirflowFailException`` (poke) or any
``AirflowException`` (deferred) into a skip when ``soft_fail`` is set; the docs recommend
``soft_fail=True`` so that a day without change ends skipped, and with it a wrong password or an
empty account would end the alert pipeline green. Real ``dag.test()`` runs against the emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow import __version__ as airflow_version
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from tests.conftest import conn_json, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db")

START = pendulum.datetime(2026, 1, 1, tz="UTC")
LOGIN, PASSWORD = "softfail", "s0ft-Fa1l-Pa55"
TARGETS = ["https://www.python.org/", "github.com", "https://en.wikipedia.org/wiki/Main_Page"]


def _failure_text(error: BaseException | None, expected: str) -> str:
    """The failure's text, checked to be an ``AirflowFailException``; ``expected`` stands in for it
    where the failure callback gets no exception (``context["exception"]`` is ``None`` on Airflow
    3.2 under ``dag.test()``: the task's state and try number still prove the failure there)."""
    if error is None and AIRFLOW_BEFORE_3_3:
        return expected
    assert isinstance(error, AirflowFailException) or type(error).__name__ == "AirflowFailException"
    return str(error)


AIRFLOW_BEFORE_3_3 = tuple(int(part) for part in airflow_version.split(".")[:2]) < (3, 3)

#: the task's exception and the callback that saw it, per dag_id
SEEN: dict[str, tuple[str, BaseException | None]] = {}
MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferred": {"deferrable": True},
}


@pytest.fixture(scope="module")
def soft_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=100.0)) as server:
        yield server


@pytest.fixture(scope="module")
def broke_emulator() -> Iterator[EmulatorServer]:
    """An account with no money: every paid request answers 40210."""
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=0.0)) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean() -> None:
    SEEN.clear()


def use_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str, password: str = PASSWORD) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(url, login=LOGIN, password=password))


def api_requests(emulator: EmulatorServer) -> int:
    return int(requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["api_requests"])


def record(kind: str) -> Any:
    def callback(context: Any) -> None:
        SEEN[context["dag"].dag_id] = (kind, context.get("exception"))

    return callback


def soft_fail_dag(dag_id: str, tmp_path: Path, conn_id: str, **sensor_kwargs: Any) -> DAG:
    options: dict[str, Any] = {"poke_interval": 0.1, "timeout": 0, "soft_fail": True, "retries": 2}
    options.update(sensor_kwargs)
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        BacklinksChangeSensor(
            task_id="watch",
            targets=TARGETS,
            baseline_path=tmp_path.as_uri() + "/baselines/",
            dataforseo_conn_id=conn_id,
            on_failure_callback=record("failed"),
            on_retry_callback=record("up_for_retry"),
            on_skipped_callback=record("skipped"),
            **options,
        )
    return dag


def the_ti(run: Any) -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == "watch")


def baselines(tmp_path: Path) -> list[str]:
    folder = tmp_path / "baselines"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("mode", list(MODES))
def test_a_wrong_password_fails_with_soft_fail(
    mode: str, soft_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, "dataforseo_soft_bad", soft_emulator.url, password="not-the-password")
    dag_id = f"soft_fail_401_{mode}"
    before = api_requests(soft_emulator)
    run = run_dag(soft_fail_dag(dag_id, tmp_path, "dataforseo_soft_bad", timeout=120, **MODES[mode]))
    ti = the_ti(run)
    assert str(ti.state) == "failed"  # not "skipped"
    assert ti.try_number == 1  # AirflowFailException: no Airflow retry
    kind, error = SEEN[dag_id]
    assert kind == "failed"
    text = _failure_text(error, "DataForSEO 40100: You are not authorized to access this resource.")
    assert text.startswith("DataForSEO 40100: You are not authorized to access this resource.")
    assert PASSWORD not in text and "not-the-password" not in text
    assert api_requests(soft_emulator) - before == 1  # one refused request, no retry of it
    assert baselines(tmp_path) == []  # a failed check stores nothing


@pytest.mark.parametrize("mode", ["poke", "deferred"])
def test_an_empty_account_fails_with_soft_fail(
    mode: str, broke_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, "dataforseo_soft_broke", broke_emulator.url)
    dag_id = f"soft_fail_40210_{mode}"
    run = run_dag(soft_fail_dag(dag_id, tmp_path, "dataforseo_soft_broke", timeout=120, **MODES[mode]))
    assert str(the_ti(run).state) == "failed"
    kind, error = SEEN[dag_id]
    assert kind == "failed"
    assert _failure_text(error, "DataForSEO 40210: Insufficient funds.").startswith(
        "DataForSEO 40210: Insufficient funds."
    )


@pytest.mark.parametrize("mode", ["poke", "deferred"])
def test_bad_input_fails_with_soft_fail(
    mode: str, soft_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, "dataforseo_soft_ok", soft_emulator.url)
    dag_id = f"soft_fail_flag_{mode}"
    before = api_requests(soft_emulator)
    dag = soft_fail_dag(
        dag_id, tmp_path, "dataforseo_soft_ok", include_subdomains="{{ 'maybe' }}", **MODES[mode]
    )
    assert str(the_ti(run_dag(dag)).state) == "failed"
    kind, error = SEEN[dag_id]
    assert kind == "failed"
    assert "'maybe'" in _failure_text(error, "'maybe'")
    assert api_requests(soft_emulator) == before


@pytest.mark.parametrize("mode", list(MODES))
def test_a_timeout_without_change_is_still_skipped(
    mode: str, soft_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, "dataforseo_soft_ok", soft_emulator.url)
    dag_id = f"soft_fail_timeout_{mode}"
    # the first check stores the baseline and keeps waiting; timeout 0 ends the wait
    run = run_dag(soft_fail_dag(dag_id, tmp_path, "dataforseo_soft_ok", **MODES[mode]))
    assert str(the_ti(run).state) == "skipped"
    assert SEEN[dag_id][0] == "skipped"
    assert len(baselines(tmp_path)) == 1
    # the next day, nothing changed (same emulator date): skipped again
    SEEN.clear()
    run = run_dag(soft_fail_dag(dag_id, tmp_path, "dataforseo_soft_ok", **MODES[mode]))
    assert str(the_ti(run).state) == "skipped"
    assert SEEN[dag_id][0] == "skipped"


def test_a_transient_error_from_the_trigger_is_retried_not_skipped(tmp_path: Path) -> None:
    """Deferred: a retryable error event fails the try (Airflow's ``retries``), as in poke mode."""
    sensor = BacklinksChangeSensor(
        task_id="direct", targets=TARGETS, baseline_path=tmp_path.as_uri() + "/", soft_fail=True
    )
    event = {"status": "error", "message": "DataForSEO 50000: Internal Error.", "retryable": True}
    with pytest.raises(AirflowException, match="DataForSEO 50000") as raised:
        sensor.resume_execution("execute_complete", {"event": event}, {})  # type: ignore[arg-type]
    assert type(raised.value) is AirflowException
    event = {"status": "error", "message": "DataForSEO 40100: no", "retryable": False}
    with pytest.raises(AirflowFailException, match="DataForSEO 40100: no"):
        sensor.resume_execution("execute_complete", {"event": event}, {})  # type: ignore[arg-type]


def test_never_fail_keeps_airflows_meaning(
    soft_emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, "dataforseo_soft_bad", soft_emulator.url, password="not-the-password")
    dag = soft_fail_dag(
        "never_fail_401", tmp_path, "dataforseo_soft_bad", soft_fail=False, never_fail=True, timeout=120
    )
    assert str(the_ti(run_dag(dag)).state) == "skipped"
