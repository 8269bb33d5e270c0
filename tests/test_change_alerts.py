"""Issue 10's examples, each on a real Airflow (``dag.test()``) against the emulator's clock.

- editing the watched list never hides a change (200 pages, a week, one page added);
- a removed page keeps nothing that could alert later; a reordered, re-spelled list reports
  once, naming the user's own spellings;
- a version 1 baseline (written by 0.x) is read after the upgrade without a false alert;
- the same values spelled another way (``"3"``, ``.000``, ``UTC``, ``T``/``Z``, ``""``) are no
  change;
- ``include_subdomains`` from a Param (``"False"``) is false;
- a deferred sensor and its trigger key the baseline alike (``www.www.`` input);
- the changes feed is written once even when the task dies after writing it and retries;
- an S3 baseline and feed (moto).

Expected changes are computed here from the emulator's data at two dates, independently of the
code under test.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, BaseNotifier, ObjectStoragePath, Param, task

from airflow_provider_dataforseo.baseline import BaselineStore
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, summary_item
from airflow_provider_dataforseo.feed import ChangesFeed
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.sources import parse_target_file
from tests.conftest import REPO, aws_conn_json, conn_json, run_dag, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db")

CAPTURED: dict[str, Any] = {}
START = pendulum.datetime(2026, 1, 1, tz="UTC")
CONN_ID = "dataforseo_alerts"
LOGIN, PASSWORD = "alerts", "a1erts-Pa55"
EPOCH = DATA_AS_OF.date()
WEEK = EPOCH + timedelta(days=7)
FIELDS = ("lost_date", "broken_backlinks")
_ALL = parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text())
#: 200 home pages of top sites (already in normal form: ``https://host/``), then known ones
_HOME_PAGES = [t for t in _ALL if t.startswith("https://")]
PAGES = _HOME_PAGES[:200] + [t for t in _HOME_PAGES[200:] if summary_item(t) is not None][:1]
DOMAINS = [t for t in _ALL if "://" not in t]


@pytest.fixture(scope="module")
def alerts_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=1000.0)) as server:
        yield server


@pytest.fixture(autouse=True)
def alerts_conn(alerts_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The connection, the clock at the epoch, the API's spellings and no fault, for every test."""
    url = alerts_emulator.url
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(url, login=LOGIN, password=PASSWORD))
    set_date(alerts_emulator, EPOCH)
    requests.delete(f"{url}/_emulator/faults", timeout=5).raise_for_status()
    requests.delete(f"{url}/_emulator/formats", timeout=5).raise_for_status()
    CAPTURED.clear()
    return alerts_emulator


def set_date(emulator: EmulatorServer, day: date) -> None:
    reply = requests.post(f"{emulator.url}/_emulator/clock", json={"date": day.isoformat()}, timeout=5)
    assert reply.json()["date"] == day.isoformat()


def set_spellings(emulator: EmulatorServer, **spellings: str) -> None:
    requests.post(f"{emulator.url}/_emulator/formats", json=spellings, timeout=5).raise_for_status()


def kind_of(field: str, old: Any, new: Any) -> tuple[str, Any]:
    if field == "lost_date":
        return ("lost" if old is None else "recovered" if new is None else "lost_date_changed"), None
    return ("broken_backlinks_increased" if new > old else "broken_backlinks_decreased"), new - old


def expected_changes(
    targets: list[str], before: date, after: date, inputs: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """The changes of ``targets`` (normal form) between two dates, from the emulator's data."""
    out = []
    for target in targets:
        old_item, new_item = summary_item(target, as_of=before), summary_item(target, as_of=after)
        if old_item is None or new_item is None:
            continue
        for name in FIELDS:
            old, new = old_item[name], new_item[name]
            if old != new:
                kind, delta = kind_of(name, old, new)
                out.append(
                    {
                        "target": target,
                        "inputs": (inputs or {}).get(target, [target]),
                        "url": target,
                        "field": name,
                        "old": old,
                        "new": new,
                        "kind": kind,
                        "delta": delta,
                    }
                )
    return out


def plain(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changes without ``check_id``/``detected_at`` (random / the wall clock)."""
    return [{k: v for k, v in c.items() if k not in ("check_id", "detected_at")} for c in changes]


def store_for(tmp_path: Path, watch_id: str, **options: Any) -> BaselineStore:
    folder = ObjectStoragePath(tmp_path.as_uri() + "/baselines/")
    return BaselineStore(
        folder, watch_id=watch_id, include_subdomains=options.get("include_subdomains", True)
    )


def sensor_dag(dag_id: str, tmp_path: Path, targets: Any, **sensor_kwargs: Any) -> DAG:
    options: dict[str, Any] = {"mode": "poke", "poke_interval": 0.1, "timeout": 0, "soft_fail": True}
    options.update(sensor_kwargs)
    params = options.pop("params", None)
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, params=params) as dag:
        watch = BacklinksChangeSensor(
            task_id="watch",
            targets=targets,
            baseline_path=options.pop("baseline_path", tmp_path.as_uri() + "/baselines/"),
            dataforseo_conn_id=CONN_ID,
            **options,
        )

        @task
        def capture(value: Any) -> None:
            CAPTURED[dag_id] = value

        capture(watch.output)
    return dag


def state(run: Any, task_id: str = "watch") -> str:
    return str(next(ti for ti in run.get_task_instances() if ti.task_id == task_id).state)


def try_number(run: Any, task_id: str = "watch") -> int:
    return int(next(ti for ti in run.get_task_instances() if ti.task_id == task_id).try_number)


# -- editing the list ------------------------------------------------------------------------------


def test_a_page_added_after_a_week_hides_no_change_of_the_200(
    alerts_conn: EmulatorServer, tmp_path: Path
) -> None:
    """The issue's example: before, the baseline was keyed by the whole set and all was lost."""
    watched, added = PAGES[:200], PAGES[200]
    assert state(run_dag(sensor_dag("alerts_add", tmp_path, watched))) == "skipped"  # baseline
    set_date(alerts_conn, WEEK)
    run = run_dag(sensor_dag("alerts_add", tmp_path, [*watched, added]))
    assert state(run) == "success"
    expected = expected_changes(watched, EPOCH, WEEK)
    assert len(expected) >= 40  # the issue counted 46 lost changes
    result = CAPTURED["alerts_add"]
    assert plain(result["changes"]) == expected  # every real change of the 200, none of the new page
    assert (result["targets"], result["targets_first_seen"], result["targets_dropped"]) == (201, 1, 0)
    # the new page's first values are stored: the next run (same day) reports nothing
    assert state(run_dag(sensor_dag("alerts_add", tmp_path, [*watched, added]))) == "skipped"
    baseline = store_for(tmp_path, "alerts_add.watch").read()
    assert baseline is not None and baseline.pending == []
    item = summary_item(added, as_of=WEEK)
    assert item is not None
    assert baseline.values[added]["fields"] == {name: item[name] for name in FIELDS}


def test_a_removed_page_keeps_nothing_stale(alerts_conn: EmulatorServer, tmp_path: Path) -> None:
    pages = PAGES[:60]
    changing = [c["target"] for c in expected_changes(pages, EPOCH, WEEK)]
    removed = changing[0]
    kept = [p for p in pages if p != removed]
    assert state(run_dag(sensor_dag("alerts_remove", tmp_path, pages))) == "skipped"
    # removed while it changes: its stored values are forgotten at the next check
    run = run_dag(sensor_dag("alerts_remove", tmp_path, kept))
    assert state(run) == "skipped"
    baseline = store_for(tmp_path, "alerts_remove.watch").read()
    assert baseline is not None and removed not in baseline.values
    set_date(alerts_conn, WEEK)
    run = run_dag(sensor_dag("alerts_remove", tmp_path, pages))  # added back a week later
    assert state(run) == "success"
    result = CAPTURED["alerts_remove"]
    assert plain(result["changes"]) == expected_changes(kept, EPOCH, WEEK)  # nothing of its old values
    assert removed not in {c["target"] for c in result["changes"]}
    assert result["targets_first_seen"] == 1


def test_a_reordered_respelled_list_reports_each_change_once_with_the_users_spellings(
    alerts_conn: EmulatorServer, tmp_path: Path
) -> None:
    pages = PAGES[:40]
    assert state(run_dag(sensor_dag("alerts_respell", tmp_path, pages))) == "skipped"
    set_date(alerts_conn, WEEK)
    expected_targets = [c["target"] for c in expected_changes(pages, EPOCH, WEEK)]
    respelled = {t: t.replace("https://", "HTTPS://").upper().replace("HTTPS://", "https://") for t in pages}
    assert all(respelled[t] != t for t in expected_targets)
    given = [respelled[t] for t in reversed(pages)]  # other order, other spelling
    run = run_dag(sensor_dag("alerts_respell", tmp_path, given))
    assert state(run) == "success"
    order = list(reversed(pages))
    inputs = {t: [respelled[t]] for t in pages}
    assert plain(CAPTURED["alerts_respell"]["changes"]) == expected_changes(order, EPOCH, WEEK, inputs)
    # the feed names the user's spellings too, once each
    feed = ChangesFeed(ObjectStoragePath(tmp_path.as_uri() + "/baselines/"), store_key(tmp_path))
    records = feed.read()
    assert [(r["target"], r["inputs"], r["field"], r["old"], r["new"], r["kind"]) for r in records] == [
        (c["target"], c["inputs"], c["field"], c["old"], c["new"], c["kind"])
        for c in expected_changes(order, EPOCH, WEEK, inputs)
    ]
    assert state(run_dag(sensor_dag("alerts_respell", tmp_path, pages))) == "skipped"  # once


def store_key(tmp_path: Path) -> str:
    return store_for(tmp_path, "alerts_respell.watch").key


# -- upgrade and value spellings -----------------------------------------------------------------


def test_a_version_1_baseline_is_read_after_the_upgrade_without_a_false_alert(
    alerts_conn: EmulatorServer, tmp_path: Path
) -> None:
    """tests/fixtures/baseline_v1 holds a file 0.x wrote for these 8 pages on the epoch, with a
    numeric string and an empty lost_date among its values."""
    pages = PAGES[:8]
    old = next((REPO / "tests" / "fixtures" / "baseline_v1").glob("backlinks_baseline_*.json"))
    (tmp_path / "baselines").mkdir()
    shutil.copy(old, tmp_path / "baselines" / old.name)
    run = run_dag(sensor_dag("alerts_upgrade", tmp_path, pages))
    assert state(run) == "skipped"  # same day: no change, not even for "0" vs 0 or "" vs null
    store = store_for(tmp_path, "alerts_upgrade.watch")
    baseline = store.read()
    assert baseline is not None  # now in the new file, in normal values
    assert baseline.values["https://apple.com/"]["fields"]["broken_backlinks"] == 0
    assert baseline.values["https://dzen.ru/"]["fields"]["lost_date"] is None
    set_date(alerts_conn, EPOCH + timedelta(days=20))
    run = run_dag(sensor_dag("alerts_upgrade", tmp_path, pages))
    expected = expected_changes(pages, EPOCH, EPOCH + timedelta(days=20))
    assert expected
    assert state(run) == "success"
    assert plain(CAPTURED["alerts_upgrade"]["changes"]) == expected


@pytest.mark.parametrize(
    "spellings",
    [
        {"lost_date": "fraction", "broken_backlinks": "string", "null_lost_date": "empty"},
        {"lost_date": "utc"},
        {"lost_date": "iso", "null_lost_date": "empty"},
        {"lost_date": "zulu", "broken_backlinks": "string"},
    ],
)
def test_the_same_values_spelled_another_way_are_no_change(
    alerts_conn: EmulatorServer, tmp_path: Path, spellings: dict[str, str]
) -> None:
    pages = PAGES[:80]
    assert state(run_dag(sensor_dag("alerts_spell", tmp_path, pages))) == "skipped"
    set_spellings(alerts_conn, **spellings)
    assert state(run_dag(sensor_dag("alerts_spell", tmp_path, pages))) == "skipped"  # no change
    set_date(alerts_conn, WEEK)  # real changes, still spelled the other way: in normal values
    run = run_dag(sensor_dag("alerts_spell", tmp_path, pages))
    assert state(run) == "success"
    assert plain(CAPTURED["alerts_spell"]["changes"]) == expected_changes(pages, EPOCH, WEEK)
    requests.delete(f"{alerts_conn.url}/_emulator/formats", timeout=5)
    assert state(run_dag(sensor_dag("alerts_spell", tmp_path, pages))) == "skipped"  # stored normal


# -- typed arguments, deferral -------------------------------------------------------------------


def test_include_subdomains_false_from_a_param(alerts_conn: EmulatorServer, tmp_path: Path) -> None:
    domains = DOMAINS[:30]
    dag = sensor_dag(
        "alerts_param",
        tmp_path,
        domains,
        include_subdomains="{{ params.subdomains }}",
        params={"subdomains": Param(False, type="boolean")},
        succeed_on_first_run=True,
    )
    run = run_dag(dag)
    assert state(run) == "success"
    store = store_for(tmp_path, "alerts_param.watch", include_subdomains=False)
    baseline = store.read()
    assert baseline is not None
    narrow = {t: summary_item(t, include_subdomains=False) for t in domains}
    wide = {t: summary_item(t, include_subdomains=True) for t in domains}
    assert any(n != w for n, w in zip(narrow.values(), wide.values(), strict=True))
    assert {t: e["fields"] for t, e in baseline.values.items()} == {
        t: {name: item[name] for name in FIELDS} for t, item in narrow.items() if item is not None
    }
    with pytest.raises(ValueError, match="include_subdomains must be true or false, got 'sometimes'"):
        BacklinksChangeSensor(
            task_id="x", targets=domains, baseline_path="file:///tmp/x", include_subdomains="sometimes"
        )
    run = run_dag(
        sensor_dag("alerts_param_bad", tmp_path, domains, include_subdomains="{{ 'maybe' }}", soft_fail=False)
    )
    assert state(run) == "failed"


def test_a_deferred_sensor_and_its_trigger_key_the_baseline_alike(
    alerts_conn: EmulatorServer, tmp_path: Path
) -> None:
    """``www.www.x`` normalised twice was another key: every run alerted the same changes. Both
    sides now normalise the user's entries once, with the one normal form."""
    from airflow_provider_dataforseo.targets import normalise_target

    known = [d for d in DOMAINS[:40] if summary_item(d) is not None]
    given = [f"www.www.{d}" for d in known[:3]] + known[3:20]
    targets = [normalise_target(g) for g in given]
    dag = sensor_dag("alerts_www", tmp_path, given, deferrable=True, timeout=0)
    assert state(run_dag(dag)) == "skipped"  # the trigger stored the baseline, then timed out
    store = store_for(tmp_path, "alerts_www.watch")
    baseline = store.read()
    assert baseline is not None
    assert sorted(baseline.values) == sorted(targets)  # the sensor's keys, from the trigger
    assert state(run_dag(dag)) == "skipped"  # no clock change: no alert, in deferral as in poke
    assert state(run_dag(sensor_dag("alerts_www", tmp_path, given))) == "skipped"
    set_date(alerts_conn, WEEK)
    run = run_dag(sensor_dag("alerts_www", tmp_path, given, deferrable=True, timeout=60))
    assert state(run) == "success"
    inputs = {normalise_target(g): [g] for g in given[:3]}
    assert plain(CAPTURED["alerts_www"]["changes"]) == expected_changes(targets, EPOCH, WEEK, inputs)
    assert state(run_dag(dag)) == "skipped"


# -- the changes feed ------------------------------------------------------------------------------


class Crash(BaseException):
    """A task dying after the feed was written (not an Exception: not swallowed as best-effort)."""


class CrashOnceNotifier(BaseNotifier):
    """Kills the task the first time; then records what it was told."""

    calls: list[list[str]] = []

    def notify(self, context: Any) -> None:
        CrashOnceNotifier.calls.append([c["check_id"] for c in context["backlinks_alert"]["changes"]])
        if len(CrashOnceNotifier.calls) == 1:
            raise Crash("worker killed")


def test_the_feed_is_written_once_when_the_task_dies_after_writing_and_retries(
    alerts_conn: EmulatorServer, tmp_path: Path
) -> None:
    pages = PAGES[:50]
    CrashOnceNotifier.calls = []
    options = {"notifiers": [CrashOnceNotifier()], "retries": 1, "retry_delay": 0}
    assert state(run_dag(sensor_dag("alerts_feed", tmp_path, pages, **options))) == "skipped"
    set_date(alerts_conn, WEEK)
    run = run_dag(sensor_dag("alerts_feed", tmp_path, pages, **options))
    assert state(run) == "success"
    assert try_number(run) == 2  # died after writing the feed, then retried
    expected = expected_changes(pages, EPOCH, WEEK)
    result = CAPTURED["alerts_feed"]
    assert plain(result["changes"]) == expected  # the retry reported the same pending changes
    assert len(CrashOnceNotifier.calls) == 2 and CrashOnceNotifier.calls[0] == CrashOnceNotifier.calls[1]
    store = store_for(tmp_path, "alerts_feed.watch")
    records = ChangesFeed(store.folder, store.key).read()
    assert [(r["target"], r["field"], r["old"], r["new"], r["kind"]) for r in records] == [
        (c["target"], c["field"], c["old"], c["new"], c["kind"]) for c in expected
    ]  # once, though the task wrote it twice
    assert set(records[0]) == {"detected_at", "check_id", "target", "inputs", "field", "old", "new", "kind"}
    assert {r["check_id"] for r in records} == {c["check_id"] for c in result["changes"]}
    baseline = store.read()
    assert baseline is not None and baseline.pending == []  # acknowledged after delivery
    assert state(run_dag(sensor_dag("alerts_feed", tmp_path, pages, **options))) == "skipped"


def test_an_s3_baseline_and_feed(
    alerts_conn: EmulatorServer, tmp_path: Path, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("s3fs", reason="the [s3] extra is not installed")

    monkeypatch.setenv("AIRFLOW_CONN_MOTO_ALERTS", aws_conn_json(moto_s3))
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="alerts-baselines")
    uri = "s3://moto_alerts@alerts-baselines/watches/"
    pages = PAGES[:30]
    assert state(run_dag(sensor_dag("alerts_s3", tmp_path, pages, baseline_path=uri))) == "skipped"
    set_date(alerts_conn, WEEK)
    run = run_dag(sensor_dag("alerts_s3", tmp_path, [*pages, PAGES[40]], baseline_path=uri))
    assert state(run) == "success"
    expected = expected_changes(pages, EPOCH, WEEK)
    assert plain(CAPTURED["alerts_s3"]["changes"]) == expected
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="alerts-baselines")["Contents"])
    store = BaselineStore(ObjectStoragePath(uri), watch_id="alerts_s3.watch", include_subdomains=True)
    assert keys == [
        f"watches/backlinks_changes_{store.key}_{CAPTURED['alerts_s3']['changes'][0]['detected_at'][:7]}.jsonl",
        f"watches/backlinks_watch_{store.key}.json",
    ]
    body = s3.get_object(Bucket="alerts-baselines", Key=keys[0])["Body"].read().decode("utf-8")
    assert [(r["target"], r["field"], r["new"]) for r in map(json.loads, body.splitlines())] == [
        (c["target"], c["field"], c["new"]) for c in expected
    ]
    document = json.loads(s3.get_object(Bucket="alerts-baselines", Key=keys[1])["Body"].read())
    assert document["pending"] == [] and len(document["targets"]) == sum(
        1 for t in [*pages, PAGES[40]] if summary_item(t) is not None
    )


def test_the_feed_report_example_reads_the_feed_once_per_change(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from example_dags.example_dataforseo_asset_consumer import changes_feed_report

    bag = DagBag(dag_folder=str(REPO / "example_dags" / "example_dataforseo_asset_consumer.py"))
    assert bag.import_errors == {}
    assert "example_dataforseo_changes_feed_report" in bag.dag_ids
    feed = ChangesFeed(ObjectStoragePath(tmp_path.as_uri() + "/"), "k" * 24)

    def change(target: str, kind: str) -> dict[str, Any]:
        return {
            "target": target,
            "inputs": [target],
            "field": "lost_date",
            "old": None,
            "new": "x",
            "kind": kind,
        }

    old = {
        "check_id": "c0",
        "detected_at": "2026-10-20T10:00:00+00:00",
        "changes": [change("https://a.com/", "lost")],
    }
    new = {
        "check_id": "c1",
        "detected_at": "2026-11-06T10:00:00+00:00",
        "changes": [change("https://a.com/", "recovered"), change("https://b.com/", "lost")],
    }
    assert [feed.append(old), feed.append(new), feed.append(new)] == [1, 2, 0]  # once per check_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"backlinks_changes_{'k' * 24}_2026-10.jsonl",
        f"backlinks_changes_{'k' * 24}_2026-11.jsonl",
    ]
    report = changes_feed_report(feed.read(), now=pendulum.datetime(2026, 11, 8, 10, tz="UTC"))
    assert report == {
        "since": "2026-11-01T10:00:00+00:00",
        "changes": 2,
        "by_kind": {"recovered": 1, "lost": 1},
        "pages": [[1, "https://a.com/"], [1, "https://b.com/"]],
    }
