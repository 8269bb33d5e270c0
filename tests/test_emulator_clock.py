"""The emulator's simulated clock: deterministic evolution, consistent items, the control endpoint."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer, clock
from airflow_provider_dataforseo.emulator.__main__ import build_parser
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, canonical, summary_item, summary_items
from airflow_provider_dataforseo.sources import parse_target_file
from tests.conftest import REPO

if TYPE_CHECKING:
    from collections.abc import Iterator

EPOCH = DATA_AS_OF.date()
TARGETS = parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text())[:600]


def _parse(value: str) -> datetime:
    return datetime.strptime(value, api.DATE_FORMAT)


def test_same_date_same_item_and_the_epoch_is_the_base() -> None:
    day = date(2026, 11, 20)
    for target in TARGETS[:50]:
        assert summary_item(target, as_of=day) == summary_item(target, as_of=day)
        assert summary_item(target, as_of=EPOCH) == summary_item(target)
        assert summary_item(target, as_of=date(2020, 1, 1)) == summary_item(target)


def test_events_of_a_later_date_extend_those_of_an_earlier_one() -> None:
    key = canonical("https://www.python.org/")
    early = clock.events(key, epoch=EPOCH, until=EPOCH + timedelta(days=40))
    late = clock.events(key, epoch=EPOCH, until=EPOCH + timedelta(days=400))
    assert late[: len(early)] == early
    assert all(EPOCH < event.moment.date() <= EPOCH + timedelta(days=400) for event in late)
    assert [e.moment for e in late] == sorted(e.moment for e in late)


@pytest.mark.parametrize("days", [1, 7, 90, 1000])
def test_evolved_items_stay_consistent(days: int) -> None:
    day = EPOCH + timedelta(days=days)
    end_of_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    for target in TARGETS:
        item = summary_item(target, as_of=day)
        if item is None:
            assert summary_item(target) is None  # unknown targets stay unknown
            continue
        links = item["backlinks"]
        assert 0 <= item["broken_backlinks"] <= links
        assert item["referring_main_domains"] <= item["referring_domains"] <= item["referring_pages"] <= links
        assert item["referring_pages_nofollow"] <= item["referring_pages"]
        for name in clock.SUM_MAPS:
            if item[name] is not None:
                assert sum(item[name].values()) == links, name
        if item["lost_date"] is not None:
            assert item["first_seen"] is not None
            assert _parse(item["first_seen"]) <= _parse(item["lost_date"]) < end_of_day


def test_a_deterministic_share_changes_each_day_with_every_kind() -> None:
    base = {target: summary_item(target) for target in TARGETS}
    day1 = {target: summary_item(target, as_of=EPOCH + timedelta(days=1)) for target in TARGETS}
    week = {target: summary_item(target, as_of=EPOCH + timedelta(days=7)) for target in TARGETS}
    known = [t for t in TARGETS if base[t] is not None]

    def changed(after: dict[str, Any], name: str) -> list[str]:
        return [t for t in known if base[t][name] != after[t][name]]  # type: ignore[index]

    share = len(set(changed(day1, "lost_date")) | set(changed(day1, "broken_backlinks"))) / len(known)
    assert 0.01 <= share <= 0.10
    kinds = set()
    for target in changed(week, "lost_date"):
        old, new = base[target]["lost_date"], week[target]["lost_date"]  # type: ignore[index]
        kinds.add("lost" if old is None else "recovered" if new is None else "lost_date_changed")
    for target in changed(week, "broken_backlinks"):
        old, new = base[target]["broken_backlinks"], week[target]["broken_backlinks"]  # type: ignore[index]
        kinds.add("up" if new > old else "down")
    assert kinds == {"lost", "recovered", "lost_date_changed", "up", "down"}
    moved = [t for t in known if base[t]["backlinks"] != week[t]["backlinks"]]  # type: ignore[index]
    assert len(moved) > len(known) // 10


@pytest.fixture(scope="module")
def clock_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(simulated_date=date(2026, 11, 3))) as server:
        yield server


def test_clock_endpoint_sets_the_date_the_api_answers_for(clock_emulator: EmulatorServer) -> None:
    url = f"{clock_emulator.url}/_emulator/clock"
    assert requests.get(url, timeout=5).json() == {"date": "2026-11-03", "epoch": "2026-11-01"}
    targets = TARGETS[:40]

    def items() -> list[dict[str, Any]]:
        reply = requests.post(
            f"{clock_emulator.url}{api.BULK_PAGES_SUMMARY_PATH}",
            json=[{"targets": targets}],
            auth=("emulator", "emulator"),
            timeout=10,
        ).json()
        return list(reply["tasks"][0]["result"][0]["items"])

    assert items() == summary_items(targets, as_of=date(2026, 11, 3))
    assert requests.post(url, json={"date": "2026-12-01"}, timeout=5).json()["date"] == "2026-12-01"
    assert items() == summary_items(targets, as_of=date(2026, 12, 1))
    assert requests.post(url, json={"advance_days": 2}, timeout=5).json()["date"] == "2026-12-03"
    assert items() == summary_items(targets, as_of=date(2026, 12, 3))
    assert items() != summary_items(targets, as_of=date(2026, 12, 1))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"date": "2026-10-31"}, "2026-10-31 is outside the simulated range"),
        ({"date": "tomorrow"}, "date must be YYYY-MM-DD, got 'tomorrow'"),
        ({"date": 20261105}, "date must be a string"),
        ({"advance_days": "1"}, "advance_days must be an integer"),
        ({"advance_days": -1000}, "outside the simulated range"),
        ({"when": "2026-11-05"}, 'body must be {"date"'),
    ],
)
def test_clock_endpoint_names_bad_values(clock_emulator: EmulatorServer, body: Any, message: str) -> None:
    url = f"{clock_emulator.url}/_emulator/clock"
    before = requests.get(url, timeout=5).json()
    reply = requests.post(url, json=body, timeout=5)
    assert reply.status_code == 422
    assert message in reply.json()["error"]
    assert requests.get(url, timeout=5).json() == before


def test_cli_date_flag() -> None:
    assert build_parser({}).parse_args(["--date", "2026-11-09"]).date == date(2026, 11, 9)
    assert build_parser({}).parse_args([]).date is None
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["--date", "2026-01-01"])
