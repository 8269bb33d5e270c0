"""Stateful property: any sequence of faults, interruptions, crashes and retries of one task
instance ends with every row exactly once and the money paid at most ``max_cost_usd``.

A hypothesis ``RuleBasedStateMachine`` drives the real operator against the emulator's seeded
fault injection (``/_emulator/fault-injection``), one task instance per example, a try being a
call of ``execute`` with the same task instance and the next try number. Two kinds of stop:

- *interrupted*: an exception in the task's thread at the k-th stored chunk (what Airflow's
  ``execution_timeout`` raises); the process lives on, ``finally`` blocks run.
- *crashed*: from the k-th stored chunk on, the process is dead: nothing more is written (no
  chunk, no ledger, no lock released), as after SIGKILL.

The model is independent of the code: the rows a fault-free run returns (targets with an item,
from the emulator's data) and the cap. After every step, with the emulator settled: the money the
emulator took since the example began is <= the cap; once a try succeeded, the rows file holds
every row exactly once, every target is a row or counted missing, every expected row is there
unless a ``drop_items`` fault made the API leave items out for good, and every later try returns
the same manifest without a request.
"""

from __future__ import annotations

import collections
import json
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from airflow_provider_dataforseo.checkpoint import Checkpoint, WriterLock
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.emulator.faults import FAULT_KINDS
from airflow_provider_dataforseo.exceptions import DataForSeoError
from airflow_provider_dataforseo.ledger import SpendLedger
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.ratelimit import estimate_cost_usd
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, conn_json

if TYPE_CHECKING:
    from collections.abc import Iterator

CONN_ID = "dataforseo_machine"
DOMAINS = [
    line.split(",")[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
]
TARGETS = DOMAINS[3000:3300]  # 3 requests of 100 main domains
CHUNKS = plan_chunks(normalise_targets(TARGETS).targets)
EXPECTED = sorted(t for t in normalise_targets(TARGETS).targets if summary_item(t) is not None)
ESTIMATE = estimate_cost_usd(len(CHUNKS), len(TARGETS))
HOOK = {
    "retry_wait_min": 0.001,
    "retry_wait_max": 0.002,
    "max_attempts": 2,
    "timeout": (5.0, 0.4),
    "request_deadline": 1.0,  # a trickling reply is cut off (and maybe paid)
}


#: What the tries did, over every example (printed with ``-s``: proof that each path is taken).
OUTCOMES: collections.Counter[str] = collections.Counter()


def event(what: str) -> None:
    OUTCOMES[what] += 1


class WorkerCrash(BaseException):  # a stop, not an error
    """The process died: raised wherever it would have written anything more."""


class Interrupted(BaseException):
    """What ``execution_timeout`` raises in the task's thread."""


class _Stops:
    """Patches the writers for one try: interrupt or crash at the k-th stored chunk."""

    def __init__(self, mode: str | None, at: int) -> None:
        self.mode, self.at, self.saves, self.dead = mode, at, 0, False

    def __enter__(self) -> _Stops:
        self._saved = (Checkpoint.save, Checkpoint.merge, SpendLedger._write, WriterLock.release)
        stops = self
        save, merge, write, release = self._saved

        def guarded_save(checkpoint: Checkpoint, outcome: Any) -> None:
            stops.saves += 1
            if stops.mode == "interrupt" and stops.saves == stops.at:
                raise Interrupted()
            if stops.mode == "crash" and stops.saves >= stops.at:
                stops.dead = True
            if stops.dead:
                raise WorkerCrash()
            save(checkpoint, outcome)

        def guarded(original: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                if stops.dead:
                    raise WorkerCrash()
                return original(*args, **kwargs)

            return call

        Checkpoint.save = guarded_save  # type: ignore[method-assign]
        Checkpoint.merge = guarded(merge)  # type: ignore[method-assign]
        SpendLedger._write = guarded(write)  # type: ignore[method-assign]
        WriterLock.release = guarded(release)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Checkpoint.save, Checkpoint.merge, SpendLedger._write, WriterLock.release = self._saved  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def machine_emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        EmulatorConfig(login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD, balance_usd=1000.0)
    )
    with server, pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(server.url))
        yield server


def _settle(url: str, operators: list[BulkPagesSummaryOperator] = []) -> dict[str, Any]:  # noqa: B006
    """Wait until no request of an ended try is still running, then read the emulator's counters.

    A try's HTTP attempts all pass its hook's limiter, whose ``in_flight`` counts them (idle worker
    threads of a crashed try may linger: they send nothing).
    """
    deadline = time.monotonic() + 30
    pause = threading.Event()
    while (
        any(op.hook.limiter.in_flight for op in operators if "hook" in op.__dict__)
        or requests.get(f"{url}/_emulator/fault-injection", timeout=5).json()["delaying"]
    ):
        assert time.monotonic() < deadline, "requests of an ended try did not finish"
        pause.wait(0.02)
    return dict(requests.get(f"{url}/_emulator/stats", timeout=5).json())


class TriesOfOneTaskInstance(RuleBasedStateMachine):
    url: str

    @initialize(cap_factor=st.sampled_from([1.0, 1.5, 3.0]), seed=st.integers(0, 1000))
    def start(self, cap_factor: float, seed: int) -> None:
        self.cap = round(ESTIMATE * cap_factor, 5)
        self.seed = seed
        self.folder = Path(tempfile.mkdtemp(prefix="dataforseo-machine-"))
        self.run_id = f"run-{self.folder.name}"
        self.try_number = 0
        self.manifest: dict[str, Any] | None = None
        self.refused_by_cap = False
        self.items_dropped = False  # a drop_items fault was on: replies may lack items for good
        requests.delete(f"{self.url}/_emulator/fault-injection", timeout=5)
        self.operators: list[BulkPagesSummaryOperator] = []
        self.start_stats = _settle(self.url)

    # -- the world ------------------------------------------------------------------------------

    @rule(kind=st.sampled_from(sorted(set(FAULT_KINDS) - {"slow"})), share=st.sampled_from([0.2, 0.5, 1.0]))
    def faults(self, kind: str, share: float) -> None:
        self.items_dropped = self.items_dropped or kind == "drop_items"
        settings_ = {
            "rates": {kind: share},
            "seed": self.seed,
            "hang_seconds": 0.8,
            "drop_share": 0.3,
            "trickle_seconds": 0.05,
            "trickle_bytes": 4096,
        }
        assert requests.put(f"{self.url}/_emulator/fault-injection", json=settings_, timeout=5).ok

    @rule()
    def no_faults(self) -> None:
        requests.delete(f"{self.url}/_emulator/fault-injection", timeout=5)

    # -- tries ----------------------------------------------------------------------------------

    @rule(stop=st.sampled_from([None, "interrupt", "crash"]), at=st.integers(1, len(CHUNKS)))
    def a_try(self, stop: str | None, at: int) -> None:
        self._try(stop, at)

    def _try(self, stop: str | None = None, at: int = 1) -> None:
        self.try_number += 1
        before = _settle(self.url, self.operators)
        operator = BulkPagesSummaryOperator(
            task_id="fetch",
            targets=TARGETS,
            output_path=self.folder.as_uri() + "/",
            dataforseo_conn_id=CONN_ID,
            max_active_requests=3,
            hook_params=HOOK,
            max_cost_usd=self.cap,
        )
        self.operators.append(operator)
        ti = SimpleNamespace(
            dag_id="machine", task_id="fetch", run_id=self.run_id, map_index=-1, try_number=self.try_number
        )
        try:
            with _Stops(stop, at):
                manifest = operator.execute({"ti": ti})  # type: ignore[arg-type]
        except (WorkerCrash, Interrupted, DataForSeoError) as exc:
            event(f"try stopped: {type(exc).__name__}")
            return
        except AirflowFailException as exc:
            # the only permanent failure here is the cost guard (faults are all transient)
            assert str(exc).startswith("Cost guard"), exc
            self.refused_by_cap = True
            event("try refused by the cost guard")
            return
        event("try returned the manifest" + (" again" if self.manifest is not None else ""))
        if self.manifest is not None:  # finished before: the same manifest, nothing sent
            assert manifest == self.manifest
            assert _settle(self.url, self.operators)["api_requests"] == before["api_requests"]
        self.manifest = manifest

    # -- what must always hold ----------------------------------------------------------------------

    @invariant()
    def spend_within_the_cap(self) -> None:
        if not hasattr(self, "start_stats"):
            return
        spent = round(_settle(self.url, self.operators)["spent_usd"] - self.start_stats["spent_usd"], 5)
        assert spent <= self.cap + 1e-9
        if self.manifest is not None:
            assert self.manifest["cost_usd"] <= spent + 1e-9 <= self.manifest["cost_upper_bound_usd"] + 2e-9

    @invariant()
    def rows_exactly_once_once_finished(self) -> None:
        if getattr(self, "manifest", None) is None:
            return
        lines = (self.folder / "bulk_pages_summary.jsonl").read_text().splitlines()
        targets = [json.loads(line)["target"] for line in lines]
        assert self.manifest is not None
        assert len(targets) == len(set(targets)) == self.manifest["items"]  # each row exactly once
        assert set(targets) <= set(EXPECTED)
        # every target accounted for once: a row, or missing (an item the API left out)
        assert self.manifest["items"] + self.manifest["missing_targets"] == len(TARGETS)
        if not self.items_dropped:  # the API gave every item: every one is a row
            assert sorted(targets) == EXPECTED

    @precondition(lambda self: getattr(self, "manifest", None) is None)
    @rule()
    def finish_without_faults(self) -> None:
        """The faults clear and Airflow retries: the run finishes, or the cap refuses it."""
        requests.delete(f"{self.url}/_emulator/fault-injection", timeout=5)
        for _ in range(3):
            self._try()
            if self.manifest is not None or self.refused_by_cap:
                break
        assert self.manifest is not None or self.refused_by_cap


@pytest.mark.usefixtures("machine_emulator")
def test_any_sequence_of_faults_stops_and_retries_keeps_rows_and_money_safe(
    machine_emulator: EmulatorServer,
) -> None:
    TriesOfOneTaskInstance.url = machine_emulator.url
    run = TriesOfOneTaskInstance.TestCase
    run.settings = settings(
        max_examples=25,
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
    print(dict(OUTCOMES))
