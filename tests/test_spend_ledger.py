"""The spend ledger, the writer's lock and the completion marker (pure, on local paths).

The operator's use of them, against the emulator, is in ``tests/test_retries_and_crashes.py``.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dataforseo.checkpoint import (
    Checkpoint,
    Owner,
    PathInUseError,
    RowsFileChangedError,
    WriterLock,
)
from airflow_provider_dataforseo.ledger import (
    LedgerClosedError,
    LedgerError,
    SpendLedger,
    finished_path,
    ledger_path,
    prune_ledgers,
)
from airflow_provider_dataforseo.ratelimit import CostLimitExceededError, request_cost_bound_usd

if TYPE_CHECKING:
    from pathlib import Path

OWNER = "dag/fetch/run-1/-1"
BOUND_100 = request_cost_bound_usd(100)  # 0.02 + 100 x 0.00003 = 0.023 USD


def _doc(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_every_attempt_is_written_before_it_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = SpendLedger(path, owner=OWNER)
    entry = ledger.begin(BOUND_100, "a request of 100 targets")
    assert _doc(path)["open"] == {entry: 2300}  # on disk before the caller may send
    assert ledger.upper_bound_usd == 0.023


def test_settled_released_and_lost_attempts_add_up_over_tries(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = SpendLedger(path, owner=OWNER)
    paid, refused, timed_out, in_flight = (first.begin(BOUND_100, "r") for _ in range(4))
    first.settle(paid, 0.02297)  # the reply says what was charged
    first.release(refused)  # the API refused the task: nothing charged
    first.lose(timed_out)  # no reply read: it may have been paid
    first.flush()
    assert first.summary() == {
        "settled_usd": 0.02297,
        "lost_usd": 0.023,
        "open_usd": 0.023,
        "upper_bound_usd": 0.06897,
    }
    # the try dies here with ``in_flight`` still open: the next try counts it as possibly paid
    second = SpendLedger(path, owner=OWNER)
    assert second.tries == 2
    assert second.inherited_lost_usd == 0.023
    assert second.summary() == {
        "settled_usd": 0.02297,
        "lost_usd": 0.046,
        "open_usd": 0.0,
        "upper_bound_usd": 0.06897,
    }
    second.close()
    third = SpendLedger(path, owner=OWNER)  # the converted entry is not counted twice
    assert third.upper_bound_usd == pytest.approx(0.06897) and third.tries == 3
    del in_flight


def test_an_attempt_that_could_pass_the_cap_is_refused_and_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = SpendLedger(path, owner=OWNER, max_cost_usd=0.05)
    first.settle(first.begin(BOUND_100, "r"), 0.0222)
    first.close()
    second = SpendLedger(path, owner=OWNER, max_cost_usd=0.05)
    second.settle(second.begin(BOUND_100, "r"), 0.0222)  # 0.0222 + 0.023 <= 0.05
    with pytest.raises(CostLimitExceededError, match=r"a request of 100 targets .*max_cost_usd=0\.05000"):
        second.begin(BOUND_100, "a request of 100 targets")
    second.close()
    assert _doc(path)["open"] == {} and SpendLedger(path, owner=OWNER).settled_usd == 0.0444


def test_a_closed_ledger_refuses_requests_and_never_overwrites_a_newer_try(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    old = SpendLedger(path, owner=OWNER)
    late = old.begin(BOUND_100, "r")
    old.close()
    newer = SpendLedger(path, owner=OWNER)
    newer.settle(newer.begin(BOUND_100, "r"), 0.02297)
    newer.flush()
    old.settle(late, 0.02297)  # the old try's thread gets its reply after the try ended
    old.flush()
    with pytest.raises(LedgerClosedError):
        old.begin(BOUND_100, "r")
    assert _doc(path)["tries"] == 2 and _doc(path)["settled_units"] == 2297  # the newer try's figures


def test_a_ledger_of_another_owner_is_replaced_and_an_unreadable_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    SpendLedger(path, owner="dag/fetch/run-0/-1").close()
    assert SpendLedger(path, owner=OWNER).tries == 1
    path.write_text("{torn")
    with pytest.raises(LedgerError, match=r"cannot be read .*delete it to start counting afresh"):
        SpendLedger(path, owner=OWNER)


def test_ledger_paths_under_a_state_root_are_safe_and_distinct(tmp_path: Path) -> None:
    a = ledger_path(tmp_path, "dag", "fetch", "manual__2026-01-01T00:00:00+00:00", 3)
    b = ledger_path(tmp_path, "dag", "fetch", "manual__2026-01-01T00:00:00_00:00", 3)
    assert a != b and a.parent == b.parent
    assert a.name.endswith(".3.ledger.json") and ":" not in a.name and "+" not in a.name
    assert a.parent.parent.parent == tmp_path


def test_old_ledgers_are_pruned_by_the_next_try_of_their_task(tmp_path: Path) -> None:
    keep = ledger_path(tmp_path, "dag", "fetch", "run-3", -1)
    old = ledger_path(tmp_path, "dag", "fetch", "run-1", -1)
    recent = ledger_path(tmp_path, "dag", "fetch", "run-2", -1)
    old_done, own_done = finished_path(old), finished_path(keep)
    for path in (keep, old, recent, old_done, own_done):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    month_ago = time.time() - 31 * 24 * 3600
    for path in (old, keep, old_done, own_done):
        os.utime(path, (month_ago, month_ago))
    assert own_done.name == keep.name.replace(".ledger.json", ".done.json")
    assert prune_ledgers(keep.parent, keep=keep) == 2
    assert sorted(p.name for p in keep.parent.iterdir()) == sorted([keep.name, own_done.name, recent.name])


# -- the writer's lock ---------------------------------------------------------------------------

RUN_A = Owner("d", "run-A", "fetch", -1, 1)
RUN_B = Owner("d", "run-B", "fetch", -1, 1)


def test_a_second_writer_is_refused_naming_the_owner(tmp_path: Path) -> None:
    folder = tmp_path / "rows.jsonl.checkpoint"
    first = WriterLock(folder, RUN_A, tmp_path / "rows.jsonl")
    first.acquire()
    with pytest.raises(PathInUseError) as info:
        WriterLock(folder, RUN_B, tmp_path / "rows.jsonl").acquire()
    message = str(info.value)
    assert "is being written by dag 'd', run 'run-A', task 'fetch', map index -1, try 1" in message
    assert str(folder / "lock.json") in message and message.endswith("Nothing was sent.")
    assert info.value.holder == RUN_A
    first.release()
    assert not (folder / "lock.json").exists()
    WriterLock(folder, RUN_B, tmp_path / "rows.jsonl").acquire()  # free again


def test_a_later_try_of_the_same_task_instance_takes_the_lock_over(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    dead = WriterLock(folder, RUN_A, "rows")
    dead.acquire()  # this try dies holding it
    retry = WriterLock(folder, Owner("d", "run-A", "fetch", -1, 2), "rows")
    retry.acquire()
    assert retry.holds() and not dead.holds()
    dead.release()  # the dead try's late clean-up leaves the newer try's lock alone
    assert (folder / "lock.json").exists()
    retry.release()
    assert not (folder / "lock.json").exists()


def test_an_unreadable_lock_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "lock.json").write_text("garbage")
    with pytest.raises(PathInUseError, match="an unreadable lock"):
        WriterLock(folder, RUN_A, "rows").acquire()


# -- the completion marker -----------------------------------------------------------------------

CHUNKS = [["a.com"], ["b.com"]]
OPTIONS = {"include_subdomains": True, "rank_scale": None, "tag": None}


def test_a_finished_run_is_found_by_its_own_later_tries_only(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    checkpoint = Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key)
    checkpoint.load()
    rows_path.write_text('{"target": "a.com"}\n')
    manifest = {"uri": str(rows_path), "items": 1}
    checkpoint.finish(manifest, rows_path.stat().st_size)
    assert Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key).finished() == manifest
    assert Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_B.key).finished() is None
    assert sorted(p.name for p in checkpoint.directory.iterdir()) == ["done.json", "run.json"]
    rows_path.write_text("changed since\n")
    with pytest.raises(RowsFileChangedError, match=r"records 20 bytes, the file holds 14"):
        Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key).finished()  # never silently paid again
    # another run taking the path over removes the marker (the clean-up rule)
    assert Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_B.key).load() == {}
    assert sorted(p.name for p in checkpoint.directory.iterdir()) == ["run.json"]


def test_clear_keeps_the_writers_lock(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    lock = WriterLock(tmp_path / "rows.jsonl.checkpoint", RUN_B, rows_path)
    lock.acquire()
    old = Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key)
    old.load()
    assert Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_B.key).load() == {}
    assert lock.holds()


def test_on_s3_the_lock_is_a_conditional_create_and_a_second_writer_is_refused(
    moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3fs sends ``If-None-Match: *`` for an exclusive create; S3 (and moto) answer 412 to the second."""
    from airflow.sdk import ObjectStoragePath

    from tests.conftest import aws_conn_json, s3_client

    monkeypatch.setenv("AIRFLOW_CONN_LOCK_S3", aws_conn_json(moto_s3))
    s3_client(moto_s3).create_bucket(Bucket="locks")
    folder = ObjectStoragePath("s3://lock_s3@locks/run/rows.jsonl.checkpoint")
    first = WriterLock(folder, RUN_A, "s3://locks/run/rows.jsonl")
    first.acquire()
    with pytest.raises(PathInUseError, match="run 'run-A'"):
        WriterLock(folder, RUN_B, "s3://locks/run/rows.jsonl").acquire()
    assert first.holds()
    first.release()
    assert not (folder / "lock.json").exists()


def test_a_completion_marker_is_only_for_the_plan_it_finished(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    checkpoint = Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key)
    rows_path.write_text('{"target": "a.com"}\n')
    checkpoint.finish({"items": 1}, rows_path.stat().st_size)
    assert Checkpoint(rows_path, CHUNKS, OPTIONS, run=RUN_A.key).finished() == {"items": 1}
    # the DAG changed its targets or options and the task was cleared: the work is done again
    assert Checkpoint(rows_path, [["a.com"], ["c.com"]], OPTIONS, run=RUN_A.key).finished() is None
    assert Checkpoint(rows_path, CHUNKS, {**OPTIONS, "tag": "x"}, run=RUN_A.key).finished() is None
