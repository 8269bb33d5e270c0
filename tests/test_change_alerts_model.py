"""Model-based test of the change sensor: none missed, none repeated, whatever happens in between.

A hypothesis ``RuleBasedStateMachine`` drives :class:`BacklinksChangeSensor` in-process (its
``poke`` + delivery, and its deferral: ``execute`` -> the trigger's ``run()`` ->
``execute_complete``) against the emulator on loopback, over random sequences of:

- emulator clock moves (forwards and back), so pages get lost, recover, gain broken backlinks;
- list edits: add, remove, reorder, re-spell targets (``HTTPS://``, upper-case hosts, ``:443``,
  a trailing dot, no trailing slash, ``www.`` before a domain);
- value spellings in the replies (``/_emulator/formats``: fractional seconds, ``UTC``, ISO
  ``T``/``Z``, ``""`` for null, counts as strings);
- transient faults: a 5xx reply (the check fails), a reply without items (no data), a task that
  dies after the check stored its values, a task that dies after writing the changes feed.

After each check the reported changes must equal exactly the ground truth, computed here from
the emulator's data (``summary_item`` at the simulated date) by a model that knows each target's
canonical form by construction (it never calls the provider's normal form): the last seen values
of every watched target; a target is compared with its own values, its first values are no
change, a target no longer watched at a check is forgotten; changes of a check whose task died
are owed and reported with the next delivered check. The changes feed must hold every delivered
change exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from airflow_provider_dataforseo.baseline import BaselineStore
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, summary_item
from airflow_provider_dataforseo.exceptions import DataForSeoError
from airflow_provider_dataforseo.feed import ChangesFeed
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.sources import parse_target_file
from airflow_provider_dataforseo.watch import acknowledge, deliver
from tests.conftest import REPO, conn_json

if TYPE_CHECKING:
    from collections.abc import Iterator

CONN_ID = "dataforseo_model"
LOGIN, PASSWORD = "model", "m0del-Pa55"
EPOCH = DATA_AS_OF.date()
FIELDS = ("lost_date", "broken_backlinks")
WATCH_ID = "model.watch"
_ALL = parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text())


def _changes_within(target: str, days: int) -> bool:
    first = summary_item(target)
    return first is not None and any(
        summary_item(target, as_of=EPOCH + timedelta(days=d)) != first for d in range(1, days + 1)
    )


#: The pool of canonical targets the lists are drawn from: home pages and domains whose values
#: change within a few weeks, a few that never do, one the emulated database does not know.
_PAGES = [t for t in _ALL if t.startswith("https://")][:300]
_DOMAINS = [t for t in _ALL if "://" not in t and not t.startswith("www.")][:200]


def _first(candidates: list[str], count: int, wanted: Any) -> list[str]:
    out: list[str] = []
    for target in candidates:
        if len(out) == count:
            break
        if wanted(target):
            out.append(target)
    return out


POOL: list[str] = (
    _first(_PAGES, 14, lambda t: _changes_within(t, 10))
    + _first(_PAGES, 3, lambda t: summary_item(t) is not None and not _changes_within(t, 10))
    + _first(_PAGES, 1, lambda t: summary_item(t) is None)
    + _first(_DOMAINS, 6, lambda t: _changes_within(t, 10))
)

#: Spellings of a canonical target the user may write (the model's own, not the provider's).
PAGE_SPELLINGS = ("same", "upper_scheme", "upper_host", "no_slash", "port", "trailing_dot")
DOMAIN_SPELLINGS = ("same", "www", "upper", "trailing_dot")


def spell(canonical: str, spelling: str) -> str:
    """``canonical`` written another way that means the same target."""
    if "://" in canonical:
        host = canonical.split("://", 1)[1].rstrip("/")  # pool pages are https://host/
        return {
            "same": canonical,
            "upper_scheme": f"HTTPS://{host}/",
            "upper_host": f"https://{host.upper()}/",
            "no_slash": f"https://{host}",
            "port": f"https://{host}:443/",
            "trailing_dot": f"https://{host}./",
        }[spelling]
    return {
        "same": canonical,
        "www": f"www.{canonical}",
        "upper": canonical.upper(),
        "trailing_dot": f"{canonical}.",
    }.get(spelling, canonical)


def kind_of(field: str, old: Any, new: Any) -> str:
    if field == "lost_date":
        return "lost" if old is None else "recovered" if new is None else "lost_date_changed"
    return "broken_backlinks_increased" if new > old else "broken_backlinks_decreased"


Change = tuple[str, tuple[str, ...], str, Any, Any, str]  # target, inputs, field, old, new, kind


class Emulator:
    """The module's emulator, set by the fixture."""

    server: EmulatorServer | None = None

    @classmethod
    def url(cls) -> str:
        assert cls.server is not None
        return cls.server.url


def control(method: str, path: str, body: Any = None) -> Any:
    reply = requests.request(method, f"{Emulator.url()}/_emulator/{path}", json=body, timeout=5)
    reply.raise_for_status()
    return reply.json()


class ChangeAlerts(RuleBasedStateMachine):
    """The sensor against the model (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="change-alerts-model-"))
        control("DELETE", "faults")
        control("DELETE", "formats")
        control("POST", "clock", {"date": EPOCH.isoformat()})
        self.day = EPOCH
        self.targets: list[str] = []  # canonical, in the order given
        self.spelled: dict[str, str] = {}  # canonical -> how the user writes it now
        self.known: dict[str, dict[str, Any]] | None = None  # None: no baseline yet
        self.owed: list[Change] = []  # found by checks whose task died before delivering
        self.owed_fed = 0  # how many of the owed changes are in the feed already (a prefix)
        self.in_feed: list[Change] = []  # delivered (or written to the feed), once each
        self.checks = 0

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the list ------------------------------------------------------------------------------

    @initialize(picks=st.lists(st.sampled_from(POOL), min_size=1, max_size=10, unique=True))
    def start(self, picks: list[str]) -> None:
        self.targets = list(picks)
        self.spelled = {t: t for t in picks}
        self.check(deferred=False, fault="none")  # the first baseline

    @rule(pick=st.sampled_from(POOL), data=st.data())
    def add(self, pick: str, data: st.DataObject) -> None:
        target = pick
        if target in self.targets:
            return
        choices = PAGE_SPELLINGS if "://" in target else DOMAIN_SPELLINGS
        self.targets.insert(data.draw(st.integers(0, len(self.targets))), target)
        self.spelled[target] = spell(target, data.draw(st.sampled_from(choices)))
        self.then_check(data)

    @precondition(lambda self: len(self.targets) > 1)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.targets))
        self.targets.remove(target)
        del self.spelled[target]
        self.then_check(data)

    @rule(data=st.data())
    def reorder(self, data: st.DataObject) -> None:
        self.targets = data.draw(st.permutations(self.targets))
        self.then_check(data)

    @rule(data=st.data())
    def respell(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.targets))
        choices = PAGE_SPELLINGS if "://" in target else DOMAIN_SPELLINGS
        self.spelled[target] = spell(target, data.draw(st.sampled_from(choices)))
        self.then_check(data)

    # -- the world -----------------------------------------------------------------------------

    @rule(days=st.integers(-5, 15), data=st.data())
    def move_clock(self, days: int, data: st.DataObject) -> None:
        self.day = max(EPOCH, self.day + timedelta(days=days))
        control("POST", "clock", {"date": self.day.isoformat()})
        self.then_check(data)

    @rule(
        lost_date=st.sampled_from(("api", "fraction", "utc", "iso", "zulu")),
        broken_backlinks=st.sampled_from(("number", "string")),
        null_lost_date=st.sampled_from(("null", "empty")),
    )
    def respell_replies(self, lost_date: str, broken_backlinks: str, null_lost_date: str) -> None:
        spellings = {
            "lost_date": lost_date,
            "broken_backlinks": broken_backlinks,
            "null_lost_date": null_lost_date,
        }
        control("POST", "formats", spellings)

    # -- checks --------------------------------------------------------------------------------

    def sensor(self, *, deferrable: bool) -> BacklinksChangeSensor:
        return BacklinksChangeSensor(
            task_id="watch",
            targets=[self.spelled[t] for t in self.targets],
            baseline_path=self.folder.as_uri() + "/",
            watch_id=WATCH_ID,
            dataforseo_conn_id=CONN_ID,
            hook_params={"max_attempts": 1},  # a 5xx fails the check (Airflow would retry)
            deferrable=deferrable,
            timeout=0,  # deferred: one check, then the deadline
        )

    def store(self) -> BaselineStore:
        return BaselineStore(
            ObjectStoragePath(self.folder.as_uri() + "/"), watch_id=WATCH_ID, include_subdomains=True
        )

    def model_check(self) -> list[Change]:
        """What the check finds by the model's rules; updates the model's last seen values."""
        first = self.known is None
        known = {} if first else {t: v for t, v in (self.known or {}).items() if t in self.targets}
        found: list[Change] = []
        for target in self.targets:
            item = summary_item(target, as_of=self.day)
            if item is None:
                continue  # no data: stored values kept
            values = {name: item[name] for name in FIELDS}
            if target in known:
                for name in FIELDS:
                    old, new = known[target][name], values[name]
                    if old != new:
                        found.append(
                            (target, (self.spelled[target],), name, old, new, kind_of(name, old, new))
                        )
            known[target] = values
        self.known = known
        return found

    def no_data_check(self) -> None:
        """A check whose reply had no items: only forgets targets no longer watched."""
        if self.known is not None:
            self.known = {t: v for t, v in self.known.items() if t in self.targets}
        else:
            self.known = {}

    @staticmethod
    def reported(result: Any) -> list[Change]:
        changes = result["changes"] if isinstance(result, dict) else []
        return [(c["target"], tuple(c["inputs"]), c["field"], c["old"], c["new"], c["kind"]) for c in changes]

    def expect_delivered(self, got: list[Change], found: list[Change]) -> None:
        expected = self.owed + found
        assert got == expected, f"check {self.checks} on {self.day}: reported {got}, expected {expected}"
        self.in_feed.extend(expected[self.owed_fed :])
        self.owed, self.owed_fed = [], 0

    def then_check(self, data: st.DataObject) -> None:
        """Every step ends with a check: delivered (poke or deferred, maybe with a fault), or one
        whose task dies after storing (maybe after writing the feed)."""
        how = data.draw(st.sampled_from(("poke", "deferred", "poke", "deferred", "die", "die_after_feed")))
        if how.startswith("die") and self.known is not None:
            self.check_then_die(after_feed=how == "die_after_feed")
            return
        fault = data.draw(st.sampled_from(("none", "none", "none", "5xx", "no_items")))
        self.check(deferred=how == "deferred", fault=fault)

    def check(self, *, deferred: bool, fault: str) -> None:
        """One check, delivered: the reported changes are exactly the owed ones and the new ones."""
        self.checks += 1
        if fault == "5xx":
            control("POST", "faults", {"faults": [{"http_status": 503}]})
        elif fault == "no_items":
            control("POST", "faults", {"faults": [{"task_status": 20000}]})
        sensor = self.sensor(deferrable=deferred)
        try:
            result = self.run_deferred(sensor) if deferred else self.run_poke(sensor)
        except (DataForSeoError, AirflowException) as exc:
            assert fault == "5xx", f"unexpected failure {exc!r}"
            assert not isinstance(exc, AirflowFailException)  # retryable: Airflow's retries apply
            return  # the check failed: nothing stored, nothing reported
        assert fault != "5xx", "a failed reply must fail the check"
        if fault == "no_items":
            self.no_data_check()
            self.expect_delivered(self.reported(result), [])
            return
        first = self.known is None
        found = self.model_check()
        if first:
            assert result is None or not result["changes"]
            return
        self.expect_delivered(self.reported(result), found)

    def run_poke(self, sensor: BacklinksChangeSensor) -> Any:
        value = sensor.poke({})  # type: ignore[arg-type]
        if not value:
            return None
        return sensor._deliver({}, value.xcom_value)  # type: ignore[arg-type,union-attr]

    def run_deferred(self, sensor: BacklinksChangeSensor) -> Any:
        try:
            sensor.execute({})  # type: ignore[arg-type]
        except TaskDeferred as deferral:
            trigger = deferral.trigger

            async def first_event() -> Any:
                return await anext(trigger.run())  # type: ignore[attr-defined]

            event = asyncio.run(first_event())
            try:
                return sensor.execute_complete({}, event.payload)  # type: ignore[arg-type]
            except AirflowSensorTimeout:
                return None
        raise AssertionError("the deferrable sensor did not defer")

    def check_then_die(self, *, after_feed: bool) -> None:
        """A task that dies after its check stored the values (and maybe after the feed write)."""
        self.checks += 1
        sensor = self.sensor(deferrable=False)
        value = sensor.poke({})  # type: ignore[arg-type]
        found = self.model_check()
        got = self.reported(value.xcom_value) if value else []  # type: ignore[union-attr]
        assert got == self.owed + found
        if after_feed and value:
            written = deliver(self.store(), value.xcom_value["changes"])  # type: ignore[union-attr]
            assert written == len(got) - self.owed_fed  # batches already in the feed are skipped
            self.in_feed.extend(got[self.owed_fed :])
            self.owed_fed = len(got)
        self.owed = got  # reported again by the next delivered check

    @precondition(lambda self: self.known is not None)
    @rule()
    def acknowledge_twice_is_harmless(self) -> None:
        """Delivery of nothing new: the outbox and the feed are idempotent."""
        baseline = self.store().read()
        assert baseline is not None
        pending = [c for batch in baseline.pending for c in batch["changes"]]
        assert [
            (c["target"], tuple(c["inputs"]), c["field"], c["old"], c["new"], c["kind"]) for c in pending
        ] == self.owed
        if self.owed and self.owed_fed == len(self.owed):
            assert deliver(self.store(), pending) == 0  # a second feed write of the same batches: nothing
        acknowledge(self.store(), [])

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def feed_holds_every_delivered_change_once(self) -> None:
        store = self.store()
        records = ChangesFeed(store.folder, store.key).read()
        got = [(r["target"], tuple(r["inputs"]), r["field"], r["old"], r["new"], r["kind"]) for r in records]
        assert got == self.in_feed
        assert len({(r["check_id"], r["target"], r["field"]) for r in records}) == len(records)

    @invariant()
    def baseline_holds_the_last_seen_values_of_the_watched_targets(self) -> None:
        if self.known is None:
            return
        baseline = self.store().read()
        assert baseline is not None
        stored = {t: e["fields"] for t, e in baseline.values.items()}
        assert stored == self.known


@pytest.fixture(scope="module")
def model_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login=LOGIN, password=PASSWORD, balance_usd=10_000.0)) as server:
        Emulator.server = server
        yield server
        Emulator.server = None


def test_pool_spellings_mean_the_same_target() -> None:
    """The model's re-spellings are the user's: each is the same target to the provider."""
    from airflow_provider_dataforseo.targets import normalise_target

    assert len(POOL) >= 20
    for target in POOL:
        for spelling in PAGE_SPELLINGS if "://" in target else DOMAIN_SPELLINGS:
            assert normalise_target(spell(target, spelling)) == target


def test_changes_are_reported_exactly_once(
    model_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(model_emulator.url, login=LOGIN, password=PASSWORD)
    )
    run_state_machine_as_test(
        ChangeAlerts,
        settings=settings(
            max_examples=30,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
