"""heap.frozen_heap: the heap alive on entry is out of the collector's walks, and only until exit."""

from __future__ import annotations

import gc

import pytest

from airflow_provider_dataforseo.heap import frozen_heap


@pytest.fixture(autouse=True)
def _unfrozen() -> None:
    gc.unfreeze()


def test_objects_alive_on_entry_are_frozen_until_exit_and_garbage_is_still_collected() -> None:
    kept = [[i] for i in range(1000)]
    with frozen_heap():
        assert gc.get_freeze_count() >= len(kept)
        cycle: list[object] = []
        cycle.append(cycle)  # garbage made inside is collected as usual
        del cycle
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    assert len(kept) == 1000


def test_a_freeze_made_by_someone_else_is_left_as_it_was() -> None:
    gc.freeze()  # as Airflow's LocalExecutor does before it forks
    frozen = gc.get_freeze_count()
    with frozen_heap():
        pass
    # still frozen (a frozen object freed meanwhile leaves the count, hence no equality)
    assert gc.get_freeze_count() > frozen // 2
    gc.unfreeze()


def test_a_disabled_collector_is_left_alone() -> None:
    gc.disable()
    try:
        with frozen_heap():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_the_fetch_runs_with_the_heap_frozen_and_unfreezes_it() -> None:
    from airflow_provider_dataforseo.fetch import fetch_bulk_pages_summary
    from airflow_provider_dataforseo.responses import TaskResult
    from airflow_provider_dataforseo.targets import normalise_targets

    seen: list[int] = []

    def post(chunk: list[str]) -> TaskResult:
        seen.append(gc.get_freeze_count())
        return TaskResult(
            task_id="t", endpoint="/v3", cost_usd=0.02, items=[{"url": target} for target in chunk]
        )

    target_set = normalise_targets(["example.com", "example.org"])
    rows: list[dict[str, object]] = []
    summary = fetch_bulk_pages_summary(
        target_set, [target_set.targets], post, rows.extend, max_active_requests=1
    )
    assert summary.items == 2
    assert [row["target"] for row in rows] == ["example.com", "example.org"]
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
