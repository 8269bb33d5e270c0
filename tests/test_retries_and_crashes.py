"""Money and rows across tries, crashes and shared paths: the operator against the emulator.

Every test counts requests and money at the emulator (``/_emulator/stats``), not in the client.
A "try" is either a real Airflow try (``dag.test()`` with ``retries``) or a call of ``execute``
with the same task instance in its context (what a retry or a clear of that task instance does).
A worker killed mid-fetch is a real process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.checkpoint import Checkpoint
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.ratelimit import estimate_cost_usd
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, conn_json, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START = pendulum.datetime(2026, 1, 1, tz="UTC")
CAPTURED: dict[str, Any] = {}
FAST = {"retry_wait_min": 0.001, "retry_wait_max": 0.005, "max_attempts": 3}
DOMAINS = [
    line.split(",")[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
]
#: 74 targets: one request of 0.02 + 74 x 0.00003 = 0.02222 USD (the issue's 0.0222 per try).
ONE_REQUEST = DOMAINS[:74]
#: 400 domains in 4 requests of 100 main domains.
FOUR_REQUESTS = DOMAINS[100:500]
SLOW_CONN = "dataforseo_slow"


def _stats(url: str) -> dict[str, Any]:
    return dict(requests.get(f"{url}/_emulator/stats", timeout=5).json())


def _known(targets: list[str]) -> int:
    return sum(1 for t in normalise_targets(targets).targets if summary_item(t) is not None)


def _ti(run_id: str = "run-1", try_number: int = 1, map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="d", task_id="fetch", run_id=run_id, map_index=map_index, try_number=try_number
    )


def _execute(ti: SimpleNamespace, **kwargs: Any) -> Any:
    kwargs.setdefault("hook_params", FAST)
    operator = BulkPagesSummaryOperator(task_id="fetch", **kwargs)
    return operator.execute({"ti": ti})  # type: ignore[arg-type]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[EmulatorServer]:
    """An emulator whose every request takes 1.5 s, so that requests are surely in flight."""
    server = EmulatorServer(
        EmulatorConfig(
            login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD, balance_usd=1000.0, latency_seconds=1.5
        )
    )
    with server, pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{SLOW_CONN.upper()}", conn_json(server.url))
        yield server


# ---------------------------------------------------------------------------------------------
# The cap over every try, in XCom mode and with output_path
# ---------------------------------------------------------------------------------------------


class DiesAfterFetching(BulkPagesSummaryOperator):
    """The fetch succeeds (and is paid), then the try dies: on every try, or on the first only."""

    def __init__(self, *, die_on_tries: int = 99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.die_on_tries = die_on_tries

    def execute(self, context: Any) -> Any:
        result = super().execute(context)
        if context["ti"].try_number <= self.die_on_tries:
            raise RuntimeError("the worker was lost after the fetch")
        return result


class DiesWhileStoring(BulkPagesSummaryOperator):
    """Every try is paid for its request, then dies while handing the rows over (nothing kept)."""

    def _fetch(self, target_set: Any, chunks: Any, sink: Any, **kwargs: Any) -> Any:
        def dying(rows: Any) -> None:
            raise RuntimeError("the worker was lost while storing the rows")

        return super()._fetch(target_set, chunks, dying, **kwargs)


def _capturing_dag(dag_id: str, operator: type[BulkPagesSummaryOperator], **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        fetch = operator(task_id="fetch", retry_delay=timedelta(0), hook_params=FAST, **kwargs)

        @task
        def capture(value: Any) -> None:
            CAPTURED[dag_id] = value

        capture(fetch.output)
    return dag


def _fetch_ti(run: Any) -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == "fetch")


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_xcom_mode_cap_holds_over_three_tries(emulator: EmulatorServer, tmp_path: Path) -> None:
    """The issue: three tries with max_cost_usd=0.05 spent 0.0222, 0.0444 and 0.0666 USD."""
    assert estimate_cost_usd(1, 74) == 0.02222
    before = _stats(emulator.url)
    dag = _capturing_dag(
        "xcom_cap_over_tries",
        DiesWhileStoring,
        targets=ONE_REQUEST,
        max_cost_usd=0.05,
        retries=2,
        state_root=tmp_path.as_uri() + "/state/",
    )
    ti = _fetch_ti(run_dag(dag))
    after = _stats(emulator.url)
    assert (str(ti.state), ti.try_number) == ("failed", 3)  # the third try was refused by the cap
    assert after["api_requests"] - before["api_requests"] == 2
    spent = round(after["spent_usd"] - before["spent_usd"], 5)
    assert spent == pytest.approx(2 * (0.02 + _known(ONE_REQUEST) * 0.00003)) and spent <= 0.05
    ledgers = list((tmp_path / "state").rglob("*.ledger.json"))
    assert len(ledgers) == 1 and json.loads(ledgers[0].read_text())["tries"] == 3


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_xcom_mode_retry_after_the_work_was_done_returns_the_rows_without_a_request(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    before = _stats(emulator.url)
    dag = _capturing_dag(
        "xcom_done_then_died", DiesAfterFetching, die_on_tries=1, targets=ONE_REQUEST, retries=1,
        state_root=tmp_path.as_uri() + "/state/",
    )  # fmt: skip
    ti = _fetch_ti(run_dag(dag))
    assert (str(ti.state), ti.try_number) == ("success", 2)
    assert _stats(emulator.url)["api_requests"] - before["api_requests"] == 1  # the retry sent nothing
    rows = CAPTURED["xcom_done_then_died"]
    assert len(rows) == _known(ONE_REQUEST) and len({row["target"] for row in rows}) == len(rows)
    assert sorted(p.name.rsplit(".", 2)[-2] for p in (tmp_path / "state").rglob("*.json")) == [
        "done",
        "ledger",
    ]


def test_xcom_mode_cap_without_a_place_for_the_ledger_is_refused_at_parse_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW__DATAFORSEO__STATE_ROOT", raising=False)
    with pytest.raises(ValueError, match=r"max_cost_usd without output_path needs .* state_root"):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], max_cost_usd=0.05)
    monkeypatch.setenv("AIRFLOW__DATAFORSEO__STATE_ROOT", "file:///tmp/dataforseo-state/")
    operator = BulkPagesSummaryOperator(task_id="x", targets=["a.com"], max_cost_usd=0.05)
    assert operator.state_root == "file:///tmp/dataforseo-state/"


@pytest.mark.usefixtures("dataforseo_conn")
def test_merging_paid_chunks_is_never_blocked_by_the_cap(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All chunks stored, the recorded spend above a lowered cap: the merge still happens."""
    out = tmp_path / "out"
    real_merge = Checkpoint.merge

    def die(self: Checkpoint) -> int:
        raise RuntimeError("the worker died before the merge")

    monkeypatch.setattr(Checkpoint, "merge", die)
    before = _stats(emulator.url)
    with pytest.raises(RuntimeError, match="before the merge"):
        _execute(_ti(), targets=FOUR_REQUESTS, output_path=out.as_uri() + "/")
    paid = _stats(emulator.url)
    assert paid["api_requests"] - before["api_requests"] == 4
    monkeypatch.setattr(Checkpoint, "merge", real_merge)
    manifest = _execute(
        _ti(try_number=2), targets=FOUR_REQUESTS, output_path=out.as_uri() + "/", max_cost_usd=0.01
    )
    assert _stats(emulator.url)["api_requests"] == paid["api_requests"]  # nothing sent
    assert manifest["cost_usd"] > 0.01 and manifest["requests"] == 4
    assert manifest["items"] == _known(FOUR_REQUESTS) == len(_rows(out / "bulk_pages_summary.jsonl"))


# ---------------------------------------------------------------------------------------------
# Crash-safe completion
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_a_retry_after_the_work_was_done_returns_the_manifest_without_a_request(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The issue: the worker dies after every part is written; the retry must not pay again."""
    out = tmp_path / "out"
    before = _stats(emulator.url)
    dag = _capturing_dag(
        "done_then_died", DiesAfterFetching, die_on_tries=1, targets=FOUR_REQUESTS,
        output_path=out.as_uri() + "/", retries=1,
    )  # fmt: skip
    ti = _fetch_ti(run_dag(dag))
    after = _stats(emulator.url)
    assert (str(ti.state), ti.try_number) == ("success", 2)
    assert after["api_requests"] - before["api_requests"] == 4  # the retry sent nothing
    manifest = CAPTURED["done_then_died"]
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["cost_usd"] == pytest.approx(after["spent_usd"] - before["spent_usd"], abs=1e-9)
    assert len(_rows(out / "bulk_pages_summary.jsonl")) == manifest["items"] == _known(FOUR_REQUESTS)
    # what stays beside the rows: the marker folder only (a few hundred bytes)
    folder = out / "bulk_pages_summary.jsonl.checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["done.json", "ledger.json", "run.json"]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2000


@pytest.mark.usefixtures("dataforseo_conn")
def test_execute_twice_with_the_same_task_instance_sends_nothing_the_second_time(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    kwargs = {"targets": FOUR_REQUESTS, "output_path": (tmp_path / "rows.jsonl").as_uri()}
    first = _execute(_ti(), **kwargs)
    before = _stats(emulator.url)
    assert _execute(_ti(try_number=2), **kwargs) == first
    assert _stats(emulator.url)["api_requests"] == before["api_requests"]
    # a new run writing the same path is not the same work: it fetches afresh
    second_run = _execute(_ti(run_id="run-2"), **kwargs)
    assert _stats(emulator.url)["api_requests"] - before["api_requests"] == 4
    assert second_run["items"] == first["items"]


# ---------------------------------------------------------------------------------------------
# Write-ahead: what a killed worker may have paid is in the next try's bound
# ---------------------------------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    targets = sys.argv[2].split(",")
    operator = BulkPagesSummaryOperator(
        task_id="fetch", targets=targets, output_path=sys.argv[1], dataforseo_conn_id="dataforseo_slow",
        max_active_requests=4, hook_params={"max_attempts": 1},
    )
    ti = SimpleNamespace(dag_id="d", task_id="fetch", run_id="run-1", map_index=-1, try_number=1)
    operator.execute({"ti": ti})
    """
)


def test_a_worker_killed_mid_fetch_leaves_an_honest_upper_bound(
    slow_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The issue: requests in flight at a crash are paid and lost; the manifest must say so."""
    targets = DOMAINS[1000:1800]  # 8 requests, 4 in flight at a time, 1.5 s each
    out = tmp_path / "out"
    ledger = out / "bulk_pages_summary.jsonl.checkpoint" / "ledger.json"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    before = _stats(slow_emulator.url)
    worker = subprocess.Popen(
        [sys.executable, str(script), out.as_uri() + "/", ",".join(targets)],
        env={**os.environ, f"AIRFLOW_CONN_{SLOW_CONN.upper()}": conn_json(slow_emulator.url)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # kill it once some chunks are stored and others are in flight
            doc = json.loads(ledger.read_text()) if ledger.exists() else {}
            if doc.get("settled_units", 0) > 0 and doc.get("open"):
                break
            assert worker.poll() is None and time.monotonic() < deadline, "the worker did not get going"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    left_open = len(doc["open"])
    manifest = _execute(_ti(try_number=2), targets=targets, output_path=out.as_uri() + "/",
                        dataforseo_conn_id=SLOW_CONN, max_active_requests=4)  # fmt: skip
    spent = round(_stats(slow_emulator.url)["spent_usd"] - before["spent_usd"], 5)  # both tries
    assert len(_rows(out / "bulk_pages_summary.jsonl")) == manifest["items"] == _known(targets)
    assert manifest["cost_usd"] <= spent <= manifest["cost_upper_bound_usd"]
    # the bound holds the write-ahead entries left open at the kill, at 0.02 + 100 x 0.00003 each
    assert left_open >= 1
    assert manifest["cost_upper_bound_usd"] >= manifest["cost_usd"] + left_open * 0.023 - 1e-9


# ---------------------------------------------------------------------------------------------
# One writer per path
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_two_mapped_tasks_given_the_same_output_path_keep_every_row(tmp_path: Path) -> None:
    """The issue: the merged manifests said 393 items, the shared file held 196."""
    groups = [DOMAINS[2000:2200], DOMAINS[2200:2400]]
    out = tmp_path / "shared"
    with DAG("same_path_mapped", schedule=None, start_date=START, catchup=False) as dag:
        fetch = BulkPagesSummaryOperator.partial(
            task_id="fetch", output_path=out.as_uri() + "/", hook_params=FAST
        ).expand(targets=groups)

        @task
        def capture(manifests: Any) -> None:
            CAPTURED["same_path_mapped"] = list(manifests)

        capture(fetch.output)
    run = run_dag(dag)
    assert all(str(ti.state) == "success" for ti in run.get_task_instances())
    manifests = CAPTURED["same_path_mapped"]
    assert len({m["uri"] for m in manifests}) == 2
    files = sorted(out.glob("*.jsonl"))
    assert [f.name for f in files] == ["bulk_pages_summary-0.jsonl", "bulk_pages_summary-1.jsonl"]
    rows = [row for f in files for row in _rows(f)]
    expected = _known(groups[0]) + _known(groups[1])
    assert len(rows) == sum(m["items"] for m in manifests) == expected
    assert len({row["target"] for row in rows}) == expected


def test_a_second_run_writing_the_same_path_at_once_is_refused_naming_the_owner(
    slow_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The issue: the second run deleted the first one's checkpoint; the first crashed."""
    out = (tmp_path / "fixed").as_uri() + "/"
    kwargs = {
        "targets": FOUR_REQUESTS,
        "output_path": out,
        "dataforseo_conn_id": SLOW_CONN,
        "max_active_requests": 1,
    }
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(manifest=_execute(_ti("run-A"), **kwargs)))
    runner.start()
    lock = tmp_path / "fixed" / "bulk_pages_summary.jsonl.checkpoint" / "lock.json"
    deadline = time.monotonic() + 30
    while not lock.exists():
        assert time.monotonic() < deadline and runner.is_alive(), "run A did not start"
        time.sleep(0.01)
    second = BulkPagesSummaryOperator(task_id="fetch", hook_params=FAST, **kwargs)
    with pytest.raises(AirflowFailException) as info:
        second.execute({"ti": _ti("run-B")})  # type: ignore[arg-type]
    runner.join(timeout=60)
    message = str(info.value)
    assert "is being written by dag 'd', run 'run-A', task 'fetch', map index -1, try 1" in message
    assert "Nothing was sent." in message
    assert "hook" not in second.__dict__  # no HTTP client was ever made for run B
    assert first["manifest"]["items"] == _known(FOUR_REQUESTS)  # run A finished untouched
    assert len(_rows(tmp_path / "fixed" / "bulk_pages_summary.jsonl")) == first["manifest"]["items"]
    assert not lock.exists()


# ---------------------------------------------------------------------------------------------
# Output paths checked before spending
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("dataforseo_conn")
@pytest.mark.parametrize(
    ("make", "output", "message"),
    [
        ("folder x.jsonl", "x.jsonl", r"x\.jsonl is a folder where the rows or manifest file is meant"),
        ("folder rows file", "out/", r"bulk_pages_summary\.jsonl is a folder where the rows"),
        ("file as parent", "a_file/x.jsonl", r"a_file is an existing file where a folder is meant"),
        ("file as checkpoint", "y.jsonl", r"y\.jsonl\.checkpoint is a file where the checkpoint folder"),
    ],
)
def test_an_output_path_of_the_wrong_kind_fails_before_the_first_request(
    emulator: EmulatorServer, tmp_path: Path, make: str, output: str, message: str
) -> None:
    if make == "folder x.jsonl":
        (tmp_path / "x.jsonl").mkdir()
    elif make == "folder rows file":
        (tmp_path / "out" / "bulk_pages_summary.jsonl").mkdir(parents=True)
    elif make == "file as parent":
        (tmp_path / "a_file").write_text("x")
    else:
        (tmp_path / "y.jsonl.checkpoint").write_text("x")
    before = _stats(emulator.url)
    with pytest.raises(AirflowFailException, match=message) as info:
        _execute(_ti(), targets=ONE_REQUEST, output_path=tmp_path.as_uri() + "/" + output)
    assert str(info.value).endswith("Nothing was sent.")
    assert _stats(emulator.url)["api_requests"] == before["api_requests"]


@pytest.mark.usefixtures("dataforseo_conn")
def test_a_file_uri_with_percent_escapes_names_the_decoded_folder(tmp_path: Path) -> None:
    folder = tmp_path / "SEO reports"
    uri = folder.as_uri() + "/"
    assert "SEO%20reports" in uri
    manifest = _execute(_ti(), targets=ONE_REQUEST[:5], output_path=uri)
    assert (folder / "bulk_pages_summary.jsonl").exists()
    assert not (tmp_path / "SEO%20reports").exists()
    assert manifest["items"] == _known(ONE_REQUEST[:5])
    assert manifest["cost_usd"] >= api.COST_PER_REQUEST_USD


@pytest.mark.usefixtures("dataforseo_conn")
def test_each_attempt_is_settled_released_or_kept_as_possibly_paid(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Retries inside the hook are attempts too: a reply never read stays counted at its bound."""
    from airflow_provider_dataforseo.ledger import SpendLedger
    from airflow_provider_dataforseo.operators.bulk_pages_summary import _WriteAheadHook
    from airflow_provider_dataforseo.ratelimit import request_cost_bound_usd

    route = f"{emulator.url}/_emulator/fault-injection"
    targets = normalise_targets(ONE_REQUEST).targets
    bound = request_cost_bound_usd(len(targets))
    ledger = SpendLedger(tmp_path / "ledger.json", owner="d/fetch/run-1/-1")
    hook = _WriteAheadHook("dataforseo_default", **{**FAST, "max_attempts": 2})
    hook.ledger = ledger
    try:
        before = _stats(emulator.url)
        requests.put(route, json={"rates": {"disconnect": 1.0}}, timeout=5).raise_for_status()
        with pytest.raises(Exception, match="connection"):
            hook.bulk_pages_summary(targets)
        assert ledger.lost_usd == pytest.approx(2 * bound)  # two attempts, both maybe paid
        requests.put(route, json={"rates": {"status_50301": 1.0}}, timeout=5).raise_for_status()
        with pytest.raises(Exception, match="50301"):
            hook.bulk_pages_summary(targets)
        assert ledger.lost_usd == pytest.approx(2 * bound)  # refused by the API: nothing charged
        requests.delete(route, timeout=5).raise_for_status()
        result = hook.bulk_pages_summary(targets)
    finally:
        requests.delete(route, timeout=5)
        hook.close()
    assert ledger.settled_usd == result.cost_usd
    spent = round(_stats(emulator.url)["spent_usd"] - before["spent_usd"], 5)
    assert result.cost_usd <= spent <= ledger.upper_bound_usd  # the disconnected replies were charged
    assert ledger.open_usd == 0


@pytest.mark.usefixtures("dataforseo_conn")
def test_an_attempt_waiting_for_a_request_slot_is_not_in_the_ledger(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A chunk standing by (waiting in the limiter) is recorded only once it holds its slot: a
    crash while it waits leaves nothing counted as possibly paid."""
    import threading

    from airflow_provider_dataforseo.ledger import SpendLedger
    from airflow_provider_dataforseo.operators.bulk_pages_summary import _WriteAheadHook
    from airflow_provider_dataforseo.ratelimit import RequestLimiter

    waiting = threading.Event()

    class Limiter(RequestLimiter):
        def acquire(self) -> float:
            waiting.set()
            return super().acquire()

    limiter = Limiter(max_in_flight=1, requests_per_minute=None)
    ledger = SpendLedger(tmp_path / "ledger.json", owner="d/fetch/run-1/-1")
    hook = _WriteAheadHook("dataforseo_default", limiter=limiter, **FAST)
    hook.ledger = ledger
    targets = normalise_targets(ONE_REQUEST[:5]).targets
    results: list[Any] = []
    limiter.acquire()  # the one slot is taken: the attempt below must wait for it
    waiting.clear()
    worker = threading.Thread(target=lambda: results.append(hook.bulk_pages_summary(targets)))
    worker.start()
    try:
        assert waiting.wait(10)
        assert ledger.open_usd == 0 and ledger.lost_usd == 0  # waiting: nothing recorded
    finally:
        limiter.release()
        worker.join(30)
        hook.close()
    assert results and ledger.settled_usd == results[0].cost_usd > 0
    assert ledger.open_usd == 0


@pytest.mark.parametrize(
    ("template", "rows", "manifest"),
    [
        ("{base}/out/", "out/bulk_pages_summary-3.jsonl", "out/manifest-3.json"),
        ("{base}/rows.jsonl", "rows-3.jsonl", None),
        ("{base}/part-{{{{ ti.map_index }}}}/", "part-3/bulk_pages_summary.jsonl", "part-3/manifest.json"),
    ],
)
def test_a_mapped_task_gets_its_own_file_unless_its_template_names_the_map_index(
    tmp_path: Path, template: str, rows: str, manifest: str | None
) -> None:
    from airflow_provider_dataforseo.checkpoint import Owner

    raw = template.format(base=tmp_path.as_uri())
    operator = BulkPagesSummaryOperator(task_id="fetch", targets=["a.com"], output_path=raw)
    operator.output_path = raw.replace("{{ ti.map_index }}", "3")  # as Airflow renders it
    operator._owner = Owner("d", "run-1", "fetch", 3, 1)
    rows_path, manifest_path = operator._storage_paths()
    assert str(rows_path) == (tmp_path / rows).as_uri()
    assert (str(manifest_path) if manifest_path is not None else None) == (
        (tmp_path / manifest).as_uri() if manifest else None
    )
