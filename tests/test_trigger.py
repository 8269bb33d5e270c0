"""BacklinksChangeTrigger driven directly: serialisation, the event loop stays free, one event per
change set (AssetWatcher use), and the sensor-side events (error, timeout, first run)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests
from airflow.sdk import Asset, AssetWatcher, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_dataforseo.baseline import BaselineStore
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, summary_item
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.sources import parse_target_file
from airflow_provider_dataforseo.targets import normalise_targets
from airflow_provider_dataforseo.triggers.backlinks_change import BacklinksChangeTrigger
from airflow_provider_dataforseo.watch import feed_of
from tests.conftest import REPO, conn_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from airflow.triggers.base import TriggerEvent

CONN_ID = "dataforseo_trigger"
LOGIN, PASSWORD = "trigger", "tr1gger-Pa55"
EPOCH = DATA_AS_OF.date()
FIELDS = ("lost_date", "broken_backlinks")
PAGES = [
    t for t in parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text()) if "://" in t
][:30]
CLASSPATH = "airflow_provider_dataforseo.triggers.backlinks_change.BacklinksChangeTrigger"


@pytest.fixture(scope="module")
def trigger_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD)) as server:
        yield server


@pytest.fixture(autouse=True)
def trigger_conn(trigger_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(trigger_emulator.url, login=LOGIN, password=PASSWORD)
    )
    set_date(trigger_emulator, EPOCH)
    requests.delete(f"{trigger_emulator.url}/_emulator/faults", timeout=5)
    return trigger_emulator


def set_date(emulator: EmulatorServer, day: date) -> None:
    requests.post(
        f"{emulator.url}/_emulator/clock", json={"date": day.isoformat()}, timeout=5
    ).raise_for_status()


def api_requests(emulator: EmulatorServer) -> int:
    return int(requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["api_requests"])


def expected_changes(before: date, after: date) -> list[tuple[str, str, Any, Any]]:
    out = []
    for target in normalise_targets(PAGES).targets:
        old_item, new_item = summary_item(target, as_of=before), summary_item(target, as_of=after)
        if old_item is None or new_item is None:
            continue
        out.extend(
            (target, name, old_item[name], new_item[name])
            for name in FIELDS
            if old_item[name] != new_item[name]
        )
    return out


def brief(changes: list[dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    return [(c["target"], c["field"], c["old"], c["new"]) for c in changes]


def make(tmp_path: Path, **kwargs: Any) -> BacklinksChangeTrigger:
    options: dict[str, Any] = {
        "targets": PAGES,
        "baseline_path": tmp_path.as_uri() + "/baselines/",
        "dataforseo_conn_id": CONN_ID,
        "poke_interval": 0.02,
    }
    options.update(kwargs)
    return BacklinksChangeTrigger(**options)


def store_for(tmp_path: Path, watch_id: str = "backlinks_watcher") -> BaselineStore:
    return BaselineStore(
        ObjectStoragePath(tmp_path.as_uri() + "/baselines/"), watch_id=watch_id, include_subdomains=True
    )


def stored_values(store: BaselineStore) -> dict[str, Any] | None:
    baseline = store.read()
    return None if baseline is None else baseline.values


# -- serialisation -------------------------------------------------------------------------------


def test_serialize_round_trip_is_plain_json(tmp_path: Path) -> None:
    trigger = make(
        tmp_path,
        watch_fields=["lost_date", "backlinks"],
        include_subdomains="false",
        rank_scale="one_hundred",
        watch_id="my_dag.watch",
        commit_baseline=False,
        succeed_on_first_run=True,
        end_at="2026-12-01T00:00:00+00:00",
        max_active_requests=3,
        hook_params={"max_attempts": 2},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "targets": PAGES,
        "baseline_path": tmp_path.as_uri() + "/baselines/",
        "watch_fields": ["lost_date", "backlinks"],
        "include_subdomains": False,
        "rank_scale": "one_hundred",
        "watch_id": "my_dag.watch",
        "dataforseo_conn_id": CONN_ID,
        "poke_interval": 0.02,
        "commit_baseline": False,
        "succeed_on_first_run": True,
        "end_at": "2026-12-01T00:00:00+00:00",
        "max_active_requests": 3,
        "hook_params": {"max_attempts": 2},
    }
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    rebuilt = BacklinksChangeTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)

    # and through Airflow's own encoding of deferred-task and watcher kwargs
    from airflow.sdk.serde import deserialize, serialize

    assert BacklinksChangeTrigger(**deserialize(serialize(kwargs))).serialize() == (classpath, kwargs)  # type: ignore[arg-type]
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*rebuilt.serialize())


def test_it_is_an_asset_watcher_trigger(tmp_path: Path) -> None:
    trigger = make(tmp_path)
    assert isinstance(trigger, BaseEventTrigger)
    asset = Asset("backlinks_changes", watchers=[AssetWatcher(name="backlinks", trigger=trigger)])
    assert asset.watchers[0].trigger is trigger


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"watch_fields": "lost_date"}, "watch_fields"),
        ({"poke_interval": -1}, "poke_interval"),
        ({"max_active_requests": 31}, "max_active_requests"),
        ({"end_at": "next week"}, "end_at must be an ISO 8601 time, got 'next week'"),
        ({"targets": [1, 2]}, "targets must be a list of strings"),
        ({"include_subdomains": "sometimes"}, "include_subdomains must be true or false, got 'sometimes'"),
        (
            {"rank_scale": "one_million"},
            "rank_scale must be one of one_thousand, one_hundred, got 'one_million'",
        ),
        ({"watch_id": " "}, "watch_id must be a non-empty string"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **kwargs)


# -- the event loop -------------------------------------------------------------------------------


def test_checks_never_block_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that can only finish once the loop runs another coroutine: it would deadlock if
    the trigger fetched on the loop. The sync connection lookup is forbidden too."""
    loop_is_free = threading.Event()
    real_post = DataForSeoHook.bulk_pages_summary

    def gated_post(self: DataForSeoHook, *args: Any, **kwargs: Any) -> Any:
        if not loop_is_free.wait(timeout=10):
            raise AssertionError("the event loop was blocked during a check")
        return real_post(self, *args, **kwargs)

    def no_sync_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("synchronous get_connection called by the trigger")

    monkeypatch.setattr(DataForSeoHook, "bulk_pages_summary", gated_post)
    monkeypatch.setattr(DataForSeoHook, "get_connection", no_sync_lookup)
    trigger = make(tmp_path, commit_baseline=False, succeed_on_first_run=True)

    async def scenario() -> TriggerEvent:
        pending = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0)
        loop_is_free.set()  # runs only if the loop is free while the check waits in its thread
        return await pending

    event = asyncio.run(scenario())
    assert event.payload["status"] == "baseline_stored"
    assert stored_values(store_for(tmp_path)) is not None


# -- AssetWatcher use: one event per change set -----------------------------------------------------


async def _wait_for(condition: Any, what: str) -> None:
    for _ in range(2000):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_event_trigger_fires_once_per_change_set(trigger_conn: EmulatorServer, tmp_path: Path) -> None:
    day1, day2 = EPOCH + timedelta(days=6), EPOCH + timedelta(days=13)
    store = store_for(tmp_path)
    trigger = make(tmp_path)  # commit_baseline=True: the AssetWatcher form

    async def scenario() -> list[dict[str, Any]]:
        events: AsyncIterator[TriggerEvent] = trigger.run()
        first = asyncio.ensure_future(anext(events))
        await _wait_for(lambda: store.read() is not None, "the first baseline")
        assert not first.done()  # storing the baseline fires nothing
        await asyncio.to_thread(set_date, trigger_conn, day1)
        event1 = await first

        second = asyncio.ensure_future(anext(events))  # resumes: stores the values, keeps polling
        seen = await asyncio.to_thread(api_requests, trigger_conn)
        await _wait_for(lambda: api_requests(trigger_conn) >= seen + 3, "three more checks")
        assert not second.done()  # the same change set never fires twice
        await asyncio.to_thread(set_date, trigger_conn, day2)
        event2 = await second
        await events.aclose()  # type: ignore[attr-defined]
        return [event1.payload, event2.payload]

    payload1, payload2 = asyncio.run(scenario())
    assert payload1["status"] == payload2["status"] == "changed"
    assert brief(payload1["changes"]) == expected_changes(EPOCH, day1)
    assert brief(payload2["changes"]) == expected_changes(day1, day2)
    assert payload1["counts"]["total"] == len(expected_changes(EPOCH, day1)) > 0
    assert json.loads(json.dumps(payload1)) == payload1  # goes into the asset event's extra as is
    # each check stored its values at once (the next check never reports them again); the first
    # set was acknowledged when the trigger resumed after its event, the second is still pending,
    # as the trigger was closed right after handing it over: a restarted watcher reports it again
    baseline = store.read()
    assert baseline is not None
    assert {t: e["fields"] for t, e in baseline.values.items()} == {
        t: {name: item[name] for name in FIELDS}
        for t in normalise_targets(PAGES).targets
        if (item := summary_item(t, as_of=day2)) is not None
    }
    assert [batch["check_id"] for batch in baseline.pending] == [payload2["changes"][0]["check_id"]]
    # the feed holds both sets, once each, appended before their events
    feed = feed_of(store).read()
    assert [(r["target"], r["field"], r["old"], r["new"]) for r in feed] == expected_changes(
        EPOCH, day1
    ) + expected_changes(day1, day2)
    assert [r["check_id"] for r in feed] == [c["check_id"] for c in payload1["changes"] + payload2["changes"]]


# -- sensor use: error, timeout and first-run events --------------------------------------------


def test_deferral_events_for_errors_and_deadline(trigger_conn: EmulatorServer, tmp_path: Path) -> None:
    def first_event(trigger: BacklinksChangeTrigger) -> dict[str, Any]:
        async def scenario() -> dict[str, Any]:
            events = trigger.run()
            event = await anext(events)
            with pytest.raises(StopAsyncIteration):  # one event, then the trigger ends
                await anext(events)
            return dict(event.payload)

        return asyncio.run(scenario())

    fault = {"task_status": 40100}
    requests.post(f"{trigger_conn.url}/_emulator/faults", json={"faults": [fault]}, timeout=5)
    event = first_event(make(tmp_path, commit_baseline=False))
    assert event["status"] == "error"
    assert event["retryable"] is False
    assert event["message"].startswith("DataForSEO 40100: You are not authorized to access this resource.")
    assert stored_values(store_for(tmp_path)) is None  # a failed check stores nothing

    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    event = first_event(make(tmp_path, commit_baseline=False, end_at=past))
    assert event == {"status": "timeout", "message": f"No change in the watched fields by {past}"}
    assert stored_values(store_for(tmp_path)) is not None  # it checked once before giving up

    sensor = BacklinksChangeSensor(task_id="s", targets=PAGES, baseline_path=tmp_path.as_uri())
    with pytest.raises(AirflowFailException, match="40100"):
        sensor.execute_complete(
            {}, {"status": "error", "message": "DataForSEO 40100: no", "retryable": False}
        )  # type: ignore[arg-type]
    with pytest.raises(AirflowException, match="50301") as info:
        sensor.execute_complete(
            {}, {"status": "error", "message": "DataForSEO 50301: later", "retryable": True}
        )  # type: ignore[arg-type]
    assert not isinstance(info.value, AirflowFailException)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete({}, {"status": "timeout", "message": "No change"})  # type: ignore[arg-type]


def test_watcher_form_retries_transient_errors_and_raises_permanent_ones(
    trigger_conn: EmulatorServer, tmp_path: Path
) -> None:
    trigger = make(tmp_path, hook_params={"max_attempts": 1})
    faults = [{"task_status": 50301}, {"task_status": 40204}]
    requests.post(f"{trigger_conn.url}/_emulator/faults", json={"faults": faults}, timeout=5)

    async def scenario() -> None:
        await anext(trigger.run())

    with pytest.raises(Exception, match="DataForSEO 40204"):
        asyncio.run(scenario())
    assert requests.get(f"{trigger_conn.url}/_emulator/stats", timeout=5).json()["faults_pending"] == 0


# -- transient storage faults: retryable when deferred, the watch goes on as an AssetWatcher ---------


def test_deferred_storage_faults_are_retryable_errors(trigger_conn: EmulatorServer, tmp_path: Path) -> None:
    """An unreadable targets file or a baseline store that fails ends the deferred check as a
    retryable error: execute_complete raises a plain exception, so Airflow's retries apply."""

    def first_event(trigger: BacklinksChangeTrigger) -> dict[str, Any]:
        async def scenario() -> dict[str, Any]:
            return dict((await anext(trigger.run())).payload)

        return asyncio.run(scenario())

    before = api_requests(trigger_conn)
    missing = (tmp_path / "lists" / "pages.txt").as_uri()
    event = first_event(make(tmp_path, targets=missing, commit_baseline=False))
    assert event["status"] == "error"
    assert event["retryable"] is True
    assert event["message"].startswith("TargetSourceError: targets names file:///")
    assert event["message"].endswith("pages.txt, which does not exist")
    assert api_requests(trigger_conn) == before  # nothing fetched

    # the baseline folder cannot be created: a regular file stands where it should be
    (tmp_path / "blocked").write_text("not a folder")
    blocked = make(tmp_path, baseline_path=(tmp_path / "blocked" / "baselines").as_uri() + "/")
    blocked.commit_baseline = False
    event = first_event(blocked)
    assert event["status"] == "error" and event["retryable"] is True
    assert event["message"].split(":")[0] in {"NotADirectoryError", "FileExistsError", "FileNotFoundError"}

    sensor = BacklinksChangeSensor(task_id="s", targets=PAGES, baseline_path=tmp_path.as_uri())
    with pytest.raises(AirflowException, match="NotADirectoryError") as info:
        sensor.execute_complete({}, event)  # type: ignore[arg-type]
    assert not isinstance(info.value, AirflowFailException)


def test_the_watcher_logs_a_storage_fault_and_keeps_watching_with_backoff(
    trigger_conn: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets_file = tmp_path / "lists" / "pages.txt"
    trigger = make(tmp_path, targets=targets_file.as_uri(), poke_interval=0.01)
    assert [trigger.backoff(n) for n in (1, 2, 3, 6, 7, 50)] == [0.01, 0.02, 0.04, 0.32, 0.32, 0.32]
    assert make(tmp_path, poke_interval=3600).backoff(9) == 86_400.0
    store = store_for(tmp_path)
    logged: list[str] = []

    def log_text() -> str:  # the triggerer's log goes to stdout here
        logged.append(capsys.readouterr().out)
        return "".join(logged)

    async def scenario() -> dict[str, Any]:
        events = trigger.run()
        pending = asyncio.ensure_future(anext(events))
        await _wait_for(lambda: "Check failed (TargetSourceError" in log_text(), "a logged failure")
        await _wait_for(lambda: log_text().count("Check failed") >= 3, "more failed checks")
        assert not pending.done()  # the watch goes on
        # the file appears: the next check stores the baseline, then a clock move fires
        targets_file.parent.mkdir()
        targets_file.write_text("\n".join(PAGES) + "\n")
        await _wait_for(lambda: store.read() is not None, "the first baseline")
        await asyncio.to_thread(set_date, trigger_conn, EPOCH + timedelta(days=6))
        event = await pending
        await events.aclose()  # type: ignore[attr-defined]
        return dict(event.payload)

    payload = asyncio.run(scenario())
    text = log_text()
    assert "next check in 0.01 s (failure 1 in a row)" in text
    assert "next check in 0.02 s (failure 2 in a row)" in text
    assert payload["status"] == "changed"
    assert brief(payload["changes"]) == expected_changes(EPOCH, EPOCH + timedelta(days=6))
