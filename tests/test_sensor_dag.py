"""BacklinksChangeSensor on a real Airflow (SQLite, ``dag.test()``) against the emulator's clock.

The module runs its own emulator, so moving its simulated date never disturbs other tests.
Expected changes are computed here straight from the emulator's data at two dates.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, ObjectStoragePath, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo.baseline import BaselineStore
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, summary_item
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.sources import parse_target_file
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO, conn_json, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db")

CAPTURED: dict[str, Any] = {}
START = pendulum.datetime(2026, 1, 1, tz="UTC")
CONN_ID = "dataforseo_watch"
LOGIN, PASSWORD = "watcher", "w4tch-Pa55"
EPOCH = DATA_AS_OF.date()
LATER = EPOCH + timedelta(days=10)
FIELDS = ("lost_date", "broken_backlinks")
_ALL = parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text())
#: 40 home pages of top sites
PAGES = [t for t in _ALL if t.startswith("https://")][:40]
#: 150 domains: 150 main domains, so two requests
DOMAINS = [t for t in _ALL if "://" not in t][:150]


@pytest.fixture(scope="module")
def watch_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=1000.0)) as server:
        yield server


@pytest.fixture(autouse=True)
def watch_conn(watch_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The connection, the clock back at the epoch and no queued fault, for every test."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(watch_emulator.url, login=LOGIN, password=PASSWORD)
    )
    set_date(watch_emulator, EPOCH)
    requests.delete(f"{watch_emulator.url}/_emulator/faults", timeout=5)
    CAPTURED.clear()
    return watch_emulator


def set_date(emulator: EmulatorServer, day: date) -> None:
    reply = requests.post(f"{emulator.url}/_emulator/clock", json={"date": day.isoformat()}, timeout=5)
    assert reply.json()["date"] == day.isoformat()


def api_requests(emulator: EmulatorServer) -> int:
    return int(requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["api_requests"])


def expected_changes(targets: list[str], before: date, after: date) -> list[dict[str, Any]]:
    """The changes the sensor must report, straight from the emulator's data."""
    out = []
    for target in normalise_targets(targets).targets:
        old_item, new_item = summary_item(target, as_of=before), summary_item(target, as_of=after)
        if old_item is None or new_item is None:
            continue
        for name in FIELDS:
            old, new = old_item[name], new_item[name]
            if old == new:
                continue
            if name == "lost_date":
                kind = "lost" if old is None else "recovered" if new is None else "lost_date_changed"
                delta = None
            else:
                kind = "broken_backlinks_increased" if new > old else "broken_backlinks_decreased"
                delta = new - old
            out.append(
                {
                    "target": target,
                    "inputs": [target],
                    "url": target,
                    "field": name,
                    "old": old,
                    "new": new,
                    "kind": kind,
                    "delta": delta,
                }
            )
    return out


def expected_values(targets: list[str], day: date) -> dict[str, Any]:
    values = {}
    for target in normalise_targets(targets).targets:
        item = summary_item(target, as_of=day)
        if item is not None:
            values[target] = {"url": target, "fields": {name: item[name] for name in FIELDS}}
    return values


def store_for(tmp_path: Path, dag_id: str) -> BaselineStore:
    """The baseline of the sensor ``watch`` of ``dag_id`` (its default ``watch_id``)."""
    return BaselineStore(
        ObjectStoragePath(tmp_path.as_uri() + "/baselines/"),
        watch_id=f"{dag_id}.watch",
        include_subdomains=True,
    )


def stored_values(store: BaselineStore) -> dict[str, Any] | None:
    baseline = store.read()
    return None if baseline is None else baseline.values


def sensor_dag(dag_id: str, tmp_path: Path, targets: list[str], **sensor_kwargs: Any) -> DAG:
    options: dict[str, Any] = {"mode": "poke", "poke_interval": 0.1, "timeout": 0, "soft_fail": True}
    options.update(sensor_kwargs)
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        watch = BacklinksChangeSensor(
            task_id="watch",
            targets=targets,
            baseline_path=tmp_path.as_uri() + "/baselines/",
            dataforseo_conn_id=CONN_ID,
            **options,
        )

        @task
        def capture(value: Any) -> None:
            CAPTURED[dag_id] = value

        capture(watch.output)
    return dag


def ti_of(run: Any, task_id: str = "watch") -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == task_id)


def state(run: Any, task_id: str = "watch") -> str:
    return str(ti_of(run, task_id).state)


def without_ids(value: dict[str, Any]) -> dict[str, Any]:
    """An XCom with each change's ``check_id``/``detected_at`` checked (one check) and removed."""
    changes = value["changes"]
    assert len({c["check_id"] for c in changes}) <= 1
    assert all(c["detected_at"].endswith("+00:00") for c in changes)
    return {
        **value,
        "changes": [{k: v for k, v in c.items() if k not in ("check_id", "detected_at")} for c in changes],
    }


def result(
    changes: list[dict[str, Any]], targets: list[str], store: BaselineStore, **extra: Any
) -> dict[str, Any]:
    """The exact XCom the sensor returns (without the random ``check_id``s: see :func:`without_ids`)."""
    counts = dict.fromkeys(
        (
            "lost",
            "recovered",
            "lost_date_changed",
            "broken_backlinks_increased",
            "broken_backlinks_decreased",
            "changed",
        ),
        0,
    )
    for change in changes:
        counts[change["kind"]] += 1
    counts["total"] = len(changes)
    counts["targets"] = len({c["target"] for c in changes})
    target_set = normalise_targets(targets).targets
    with_data = sum(1 for t in target_set if summary_item(t) is not None)
    requests_made = len(plan_chunks(target_set))
    return {
        "status": "changed",
        "changes": changes,
        "counts": counts,
        "targets": len(target_set),
        "targets_with_data": with_data,
        "targets_without_data": len(target_set) - with_data,
        "targets_first_seen": 0,
        "targets_dropped": 0,
        "baseline_uri": store.uri,
        "requests": requests_made,
        "cost_usd": pytest.approx(requests_made * 0.02 + with_data * 0.00003, abs=1e-6),
        **extra,
    }


def test_poke_mode_baseline_then_waiting_then_the_exact_changes(
    watch_conn: EmulatorServer, tmp_path: Path
) -> None:
    store = store_for(tmp_path, "watch_poke")
    dag = sensor_dag("watch_poke", tmp_path, PAGES)

    # first run: no baseline yet -> stores one and keeps waiting (timeout 0 + soft_fail ends the run)
    run = run_dag(dag)
    assert state(run) == "skipped"
    assert stored_values(store) == expected_values(PAGES, EPOCH)
    stored = (tmp_path / "baselines" / store.path.name).read_bytes()

    # nothing changed: it keeps poking (several pokes within the timeout) and stores nothing
    before = api_requests(watch_conn)
    run = run_dag(sensor_dag("watch_poke", tmp_path, PAGES, timeout=1.5, poke_interval=0.3))
    assert state(run) == "skipped"
    assert api_requests(watch_conn) - before >= 2  # a check, no change, another check...
    assert (tmp_path / "baselines" / store.path.name).read_bytes() == stored

    # the simulated date moves on: the next run returns exactly the changes, then stores them
    set_date(watch_conn, LATER)
    changes = expected_changes(PAGES, EPOCH, LATER)
    assert {c["kind"] for c in changes} >= {"lost", "broken_backlinks_increased"}
    run = run_dag(dag)
    assert state(run) == "success"
    assert without_ids(CAPTURED["watch_poke"]) == result(changes, PAGES, store)
    assert stored_values(store) == expected_values(PAGES, LATER)

    # the same change set is reported once: the next run waits again
    run = run_dag(dag)
    assert state(run) == "skipped"


def test_succeed_on_first_run_returns_no_changes(tmp_path: Path) -> None:
    store = store_for(tmp_path, "watch_first")
    run = run_dag(sensor_dag("watch_first", tmp_path, PAGES, succeed_on_first_run=True))
    assert state(run) == "success"
    assert CAPTURED["watch_first"] == {**result([], PAGES, store), "status": "baseline_stored"}
    assert stored_values(store) == expected_values(PAGES, EPOCH)


def test_reschedule_mode_keeps_the_baseline_across_reschedules(
    watch_conn: EmulatorServer, tmp_path: Path
) -> None:
    store = store_for(tmp_path, "watch_reschedule")
    with DAG("watch_reschedule", schedule=None, start_date=START, catchup=False) as dag:
        watch = BacklinksChangeSensor(
            task_id="watch",
            targets=PAGES,
            baseline_path=tmp_path.as_uri() + "/baselines/",
            dataforseo_conn_id=CONN_ID,
            mode="reschedule",
            poke_interval=0.1,
            timeout=120,
        )

        @task.sensor(mode="reschedule", poke_interval=0.1, timeout=120)
        def baseline_stored() -> bool:
            return store.read() is not None

        @task
        def advance_clock() -> None:  # runs while the sensor waits between two reschedules
            set_date(watch_conn, LATER)

        @task
        def capture(value: Any) -> None:
            CAPTURED["watch_reschedule"] = value

        baseline_stored() >> advance_clock()
        capture(watch.output)
    run = run_dag(dag)
    assert state(run) == "success"
    assert ti_of(run).try_number == 1  # one try, several reschedules
    assert without_ids(CAPTURED["watch_reschedule"]) == result(
        expected_changes(PAGES, EPOCH, LATER), PAGES, store
    )
    assert stored_values(store) == expected_values(PAGES, LATER)


def test_deferrable_mode_runs_the_checks_in_the_trigger(watch_conn: EmulatorServer, tmp_path: Path) -> None:
    store = store_for(tmp_path, "watch_deferred")
    # first run: deferred at once; the trigger stores the baseline, then its deadline passes
    run = run_dag(sensor_dag("watch_deferred", tmp_path, PAGES, deferrable=True, timeout=0))
    assert state(run) == "skipped"
    assert stored_values(store) == expected_values(PAGES, EPOCH)

    set_date(watch_conn, LATER)
    run = run_dag(sensor_dag("watch_deferred", tmp_path, PAGES, deferrable=True, timeout=120))
    assert state(run) == "success"
    assert without_ids(CAPTURED["watch_deferred"]) == result(
        expected_changes(PAGES, EPOCH, LATER), PAGES, store
    )
    assert stored_values(store) == expected_values(PAGES, LATER)


def test_a_partial_response_yields_no_false_lost(watch_conn: EmulatorServer, tmp_path: Path) -> None:
    store = store_for(tmp_path, "watch_partial")
    chunks = plan_chunks(normalise_targets(DOMAINS).targets)
    assert len(chunks) == 2
    dag = sensor_dag("watch_partial", tmp_path, DOMAINS, max_active_requests=1)
    assert state(run_dag(dag)) == "skipped"  # baseline
    set_date(watch_conn, LATER)
    everything = expected_changes(DOMAINS, EPOCH, LATER)
    first = set(chunks[0])
    assert any(c["target"] in first for c in everything)

    # the first request's reply is a success with no items: its targets have no data this time
    requests.post(f"{watch_conn.url}/_emulator/faults", json={"faults": [{"task_status": 20000}]}, timeout=5)
    run = run_dag(dag)
    assert state(run) == "success"
    reply = without_ids(CAPTURED["watch_partial"])
    assert reply["changes"] == [c for c in everything if c["target"] not in first]
    assert not any(c["target"] in first for c in reply["changes"])
    with_data = sum(1 for t in chunks[1] if summary_item(t) is not None)
    assert reply["targets_with_data"] == with_data
    assert reply["targets_without_data"] == len(DOMAINS) - with_data
    # their stored values are kept, not overwritten by "nothing"
    stored = stored_values(store)
    assert stored is not None
    old, new = expected_values(DOMAINS, EPOCH), expected_values(DOMAINS, LATER)
    assert {t: stored[t] for t in first if t in old} == {t: old[t] for t in first if t in old}
    assert {t: stored[t] for t in chunks[1] if t in new} == {t: new[t] for t in chunks[1] if t in new}

    # a complete reply later reports the first request's changes, and only those
    run = run_dag(dag)
    assert state(run) == "success"
    assert without_ids(CAPTURED["watch_partial"])["changes"] == [
        c for c in everything if c["target"] in first
    ]
    assert stored_values(store) == new


def test_a_permanent_api_error_fails_with_the_api_message_and_stores_nothing(
    watch_conn: EmulatorServer, tmp_path: Path
) -> None:
    store = store_for(tmp_path, "watch_error")
    assert state(run_dag(sensor_dag("watch_error", tmp_path, PAGES))) == "skipped"
    stored = (tmp_path / "baselines" / store.path.name).read_bytes()
    set_date(watch_conn, LATER)
    fault = {
        "task_status": 40204,
        "status_message": "Access denied. Activate the Backlinks API subscription.",
    }
    requests.post(f"{watch_conn.url}/_emulator/faults", json={"faults": [fault]}, timeout=5)
    run = run_dag(sensor_dag("watch_error", tmp_path, PAGES, soft_fail=False, retries=2, timeout=60))
    assert state(run) == "failed"
    assert ti_of(run).try_number == 1  # AirflowFailException: no Airflow retry
    assert (tmp_path / "baselines" / store.path.name).read_bytes() == stored

    # the message is the API's, seen directly on a poke
    requests.post(f"{watch_conn.url}/_emulator/faults", json={"faults": [fault]}, timeout=5)
    sensor = BacklinksChangeSensor(
        task_id="direct",
        targets=PAGES,
        baseline_path=tmp_path.as_uri() + "/baselines/",
        dataforseo_conn_id=CONN_ID,
    )
    with pytest.raises(
        AirflowFailException, match=r"DataForSEO 40204: Access denied\. Activate the Backlinks"
    ):
        sensor.poke({})  # type: ignore[arg-type]
    assert (tmp_path / "baselines" / store.path.name).read_bytes() == stored


def test_a_transient_error_is_retried_by_the_hook(watch_conn: EmulatorServer, tmp_path: Path) -> None:
    store = store_for(tmp_path, "adhoc")  # the sensor below has watch_id "adhoc.watch"
    store.write(expected_values(PAGES, EPOCH))
    set_date(watch_conn, LATER)
    requests.post(f"{watch_conn.url}/_emulator/faults", json={"faults": [{"task_status": 50301}]}, timeout=5)
    before = api_requests(watch_conn)
    sensor = BacklinksChangeSensor(
        task_id="direct",
        targets=PAGES,
        baseline_path=tmp_path.as_uri() + "/baselines/",
        dataforseo_conn_id=CONN_ID,
        hook_params={"retry_wait_min": 0.01, "retry_wait_max": 0.02},
        watch_id="adhoc.watch",
    )
    value = sensor.poke({})  # type: ignore[arg-type]
    assert api_requests(watch_conn) - before == 2
    assert value and without_ids(value.xcom_value)["changes"] == expected_changes(PAGES, EPOCH, LATER)  # type: ignore[union-attr]


def test_bad_input_fails_before_any_request(watch_conn: EmulatorServer, tmp_path: Path) -> None:
    before = api_requests(watch_conn)
    run = run_dag(sensor_dag("watch_bad", tmp_path, ["https://ok.com/", "example.com/page"], soft_fail=False))
    assert state(run) == "failed"
    assert api_requests(watch_conn) == before
    with pytest.raises(ValueError, match="watch_fields"):
        BacklinksChangeSensor(
            task_id="x", targets=PAGES, baseline_path="file:///tmp/x", watch_fields="lost_date"
        )
    with pytest.raises(TypeError, match="BaseNotifier"):
        BacklinksChangeSensor(task_id="y", targets=PAGES, baseline_path="file:///tmp/x", notifiers=[print])  # type: ignore[list-item]
