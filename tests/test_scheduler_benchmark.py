"""The ``scale_timing`` stage's parts (``benchmarks/scheduler.py``): its one-task DAG on a real
Airflow (SQLite, ``dag.test()``) against the emulator, and the arithmetic of its figures (replay,
overhead, gaps) on a hand-made run whose answer is known."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.targets import normalise_targets
from benchmarks import scheduler
from benchmarks.datasets import generate
from tests.conftest import run_dag

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def ti(
    task_id: str, start: float, end: float, *, map_index: int = -1, queued: float | None = None
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "map_index": map_index,
        "start_date": at(start),
        "end_date": at(end),
        "queued_when": at(start - 0.5 if queued is None else queued),
        "pool_slots": 10 if map_index >= 0 else 1,
        "hostname": "worker-1",
    }


def test_timing_of_a_known_run() -> None:
    # queued at 0, started at 1; plan 1-3; 4 mapped fetches of 10 pool slots (3 at once in 30):
    # 0: 4-6, 1: 4-6, 2: 5-7, 3: 7-9 (its slot freed at 6); merge 10-11; run ends at 12
    run = {"queued_at": at(0), "start_date": at(1), "end_date": at(12)}
    tis = [
        ti("plan", 1, 3),
        ti("fetch", 4, 6, map_index=0),
        ti("fetch", 4, 6, map_index=1),
        ti("fetch", 5, 7, map_index=2),
        ti("fetch", 7, 9, map_index=3),
        ti("merge", 10, 11),
    ]
    figures = scheduler.timing(run, tis, ("plan", "fetch", "merge"))
    # no gaps: plan 2 s from 0, fetches 2+2+2 on 3 slots then 2 more = 4 s, merge 1 s
    assert figures["replay_s"] == 7.0
    assert figures["wall_s"] == 12.0
    assert figures["overhead_s"] == 5.0
    assert figures["mapped_task_instances"] == 4
    assert figures["overhead_per_mapped_task_instance_s"] == 1.25
    assert figures["overhead_per_task_instance_s"] == round(5 / 6, 2)
    # gaps: plan 0 (run start 1), fetches 1, 1, 2, 1 (fetch 3's slot freed at 6), merge 1
    [plan, fetch, merge] = figures["stages"]
    assert plan["gap_mean_s"] == 0.0 and merge["gap_mean_s"] == 1.0
    assert fetch["gap_mean_s"] == figures["mapped_gap_mean_s"] == 1.25
    assert fetch["slots"] == 3 and fetch["instances"] == 4 and fetch["run_s"] == [2.0, 2.0, 2.0, 2.0]
    assert figures["gap_mean_s"] == 1.0  # (0 + 1 + 1 + 2 + 1 + 1) / 6
    assert figures["queued_to_start_mean_s"] == 0.5
    # the table row the docs show
    row = {"dag": "at scale", **figures, "emulator_cpu_s": 1.0, "machine_busy": 0.5}
    [*_, line] = scheduler.table([{"latency_s": 0.3, "runs": [row]}]).splitlines()
    assert line == (
        "| 0.3 s | at scale | 6 | 12.0 s | 7.0 s | 5.0 s | 1.25 s | 1.25 s | 0.50 s "
        "| plan 2.0; fetch 4x 2.0-2.0 (mean 2.0); merge 1.0 | 1.0 s | 50% |"
    )


def test_greedy_makespan_and_slot_free_times() -> None:
    assert scheduler.greedy_makespan(0.0, [3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert scheduler.greedy_makespan(5.0, [2.0], 3) == 7.0
    spans = [(0.0, 4.0), (0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert scheduler.slot_free_times(spans, 2) == [float("-inf"), float("-inf"), 1.0, 2.0]


@pytest.fixture
def dataforseo_pool(airflow_db: Path) -> str:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("dataforseo", slots=30, description="DataForSEO", include_deferred=False)
    return "dataforseo"


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn", "dataforseo_pool")
def test_one_task_dag_fetches_the_benchmark_file(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFORSEO_OUTPUT_ROOT", tmp_path.as_uri())  # read at parse time
    from airflow.dag_processing.dagbag import DagBag

    path = scheduler.write_targets(tmp_path, 2_000, "realistic")
    assert path.parent == tmp_path / scheduler.AT_SCALE_DAG  # where both DAGs may read it
    targets = generate(2_000, "realistic")
    assert path.read_text().split() == targets  # deterministic: the same file every run
    expected = scheduler.known_targets(path)
    assert expected == {t for t in normalise_targets(targets).targets if summary_item(t) is not None}

    bag = DagBag(dag_folder=str(scheduler.ONE_TASK_FILE))
    assert bag.import_errors == {}
    dag = bag.get_dag(scheduler.ONE_TASK_DAG)
    run = run_dag(dag, run_conf={"targets_uri": path.as_uri(), "output_root": tmp_path.as_uri()})
    [fetch] = run.get_task_instances()  # type: ignore[attr-defined]
    assert str(fetch.state) == "success"
    run_root = tmp_path / scheduler.ONE_TASK_DAG / run.run_id  # type: ignore[attr-defined]
    manifest = json.loads((run_root / "manifest.json").read_text())
    rows = scheduler.read_rows([manifest["uri"]])
    requests = len(plan_chunks(normalise_targets(targets).targets))
    assert (manifest["targets"], manifest["requests"], manifest["items"]) == (2_000, requests, len(expected))
    assert len(rows) == len(set(rows)) and set(rows) == expected
    cost = requests * api.COST_PER_REQUEST_USD + len(expected) * api.COST_PER_ITEM_USD
    assert manifest["cost_usd"] == pytest.approx(cost, abs=1e-6)


@pytest.mark.parametrize("stages", ["crash,scale_timing", "alert,scale_timing", "scale-timing"])
def test_scale_timing_runs_alone(stages: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # refused before anything starts: other stages' DAGs and triggers would share what it times
    import importlib.util
    import sys

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location(
        "deployment_check", REPO / "scripts" / "deployment_check.py"
    )
    assert spec is not None and spec.loader is not None
    driver = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = driver
    spec.loader.exec_module(driver)
    with pytest.raises(SystemExit) as exit_info:
        driver.main(["--work", str(tmp_path), "--stages", stages])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert ("scale_timing runs alone" in error) == ("_" in stages)
    assert ("unknown stages ['scale-timing']" in error) == ("-" in stages)
    assert not (tmp_path / "pids").exists()  # nothing was started
