"""End to end on a real scheduler: the at-scale DAG (plan -> mapped fetch -> merge) next to one
BulkPagesSummaryOperator in one task, over the same targets file, on the Celery deployment.

The ``scale_timing`` stage of ``scripts/deployment_check.py``; run it with::

    bash scripts/deployment_test.sh --stages scale_timing [--scale-targets 100000] \\
        [--scale-latencies 0.3,1] [--scale-requests-per-group 20,5]

(``deployment_test.sh`` builds the deployment's venv, Postgres, Redis, CeleryExecutor with two
workers of concurrency 4, scheduler, dag-processor, triggerer, api-server, and the emulator as its own
process with the API's limits on). Not part of the default stages: CI does not run it.

After one unmeasured warm-up run of each DAG over 1,000 targets: for each emulator latency (the
emulator is restarted with ``--latency``), the at-scale DAG once per ``--scale-requests-per-group``,
then the one-task DAG, one run at a time, over one deterministic targets file
(``benchmarks/datasets.py``, ``realistic`` shape, seed 5) written under
``<output root>/example_dataforseo_at_scale/``, where both DAGs may read it. The ``dataforseo``
pool gets 30 slots (the API's simultaneous limit; no trigger polls the API during this stage):
3 mapped fetches of 10 requests in flight at once, or the one task's 30.

Timings come from the metadata DB through the REST API (``dag_run.queued_at``/``start_date``/
``end_date``, ``task_instance.queued_dttm``/``start_date``/``end_date``):

- **wall**: the DAG run's ``end_date - queued_at``.
- **replay**: the same task run times (``end_date - start_date`` of each task instance) replayed
  with no gap at all: the DAG's dependencies, mapped tasks started greedily in ``map_index`` order
  on the slots the pool allows (``30 // pool_slots``, at most the workers' 8): the wall a scheduler
  with zero overhead would reach with these tasks.
- **overhead** = wall - replay: what scheduling, queueing in Celery and starting task processes
  add; shown per task instance and per mapped task instance.
- **gap** of a task instance = its ``start_date`` minus when it could have started (its upstream's
  last ``end_date``; for a mapped task also when a pool slot freed: with ``k`` slots, the ``k``-th
  latest end among the instances started before it), and **queued -> start** (``start_date -
  queued_dttm``: Celery hand-off and task process start-up).

Checks (not of time): every run succeeded; rows unique, one per item, and exactly the targets the
emulator has data for; the two DAGs paid the same requests and cost the same; the emulator saw
<= 30 requests in flight, no refusal, and was paid exactly the requests the manifests report.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.datasets import generate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

AT_SCALE_DAG = "example_dataforseo_at_scale"
ONE_TASK_DAG = "benchmark_dataforseo_one_task"
ONE_TASK_FILE = Path(__file__).resolve().parent / "dags" / f"{ONE_TASK_DAG}.py"
#: The pool's slots during the stage: the API's simultaneous limit.
POOL_SLOTS = 30
#: Task slots of the deployment's workers (2 Celery workers, concurrency 4).
WORKER_SLOTS = 8
RUN_TIMEOUT = 1800


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def dags_folder(work: Path, example_dags: Path) -> Path:
    """``<work>/dags``: links to the example DAGs and to the benchmark's one-task DAG."""
    folder = work / "dags"
    folder.mkdir(exist_ok=True)
    for path in [*sorted(example_dags.glob("*.py")), ONE_TASK_FILE]:
        (folder / path.name).symlink_to(path)
    return folder


def write_targets(output_root: Path, n: int, shape: str) -> Path:
    """The targets file both DAGs read (deterministic: ``datasets.generate(n, shape)``)."""
    path = output_root / AT_SCALE_DAG / f"benchmark-{shape}-{n}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(generate(n, shape)) + "\n", encoding="utf-8")
    return path


def known_targets(path: Path) -> set[str]:
    """The normalised targets of the file the emulator has data for (the rows must be these)."""
    from airflow_provider_dataforseo.emulator.data import summary_item
    from airflow_provider_dataforseo.targets import normalise_targets

    targets = path.read_text(encoding="utf-8").split()
    return {t for t in normalise_targets(targets).targets if summary_item(t) is not None}


def read_rows(uris: Sequence[str]) -> list[str]:
    """The ``target`` of every row of the JSON Lines files (``file://`` URIs)."""
    rows: list[str] = []
    for uri in uris:
        with Path(uri.removeprefix("file://")).open(encoding="utf-8") as handle:
            rows.extend(json.loads(line)["target"] for line in handle)
    return rows


def when(text: str | None) -> float:
    """An API timestamp as POSIX seconds."""
    if not text:
        raise ValueError("a finished run's timestamp is missing")
    return datetime.fromisoformat(text).timestamp()


def greedy_makespan(ready: float, durations: Sequence[float], slots: int) -> float:
    """When the last of ``durations`` ends, each started as soon as one of ``slots`` is free."""
    free = [ready] * min(slots, max(1, len(durations)))
    for duration in durations:
        free.sort()
        free[0] += duration
    return max(free)


def slot_free_times(starts_ends: Sequence[tuple[float, float]], slots: int) -> list[float]:
    """For task instances in start order, when the pool slot each one took was freed: the
    ``slots``-th latest end among the instances started before it (``-inf`` for the first ``slots``)."""
    out: list[float] = []
    ends: list[float] = []
    for _, end in starts_ends:
        ends.sort()
        out.append(ends[len(ends) - slots] if len(ends) >= slots else float("-inf"))
        ends.append(end)
    return out


def timing(run: dict[str, Any], tis: list[dict[str, Any]], order: Sequence[str]) -> dict[str, Any]:
    """Wall, replay, overhead and gaps of one finished run whose tasks form the chain ``order``
    (a stage with several task instances is a mapped task)."""
    queued, started, ended = when(run["queued_at"]), when(run["start_date"]), when(run["end_date"])
    stages: list[dict[str, Any]] = []
    replay = 0.0
    previous_end = started
    gaps: list[float] = []
    mapped_gaps: list[float] = []
    queue_waits: list[float] = []
    for task_id in order:
        group = sorted((ti for ti in tis if ti["task_id"] == task_id), key=lambda ti: when(ti["start_date"]))
        spans = [(when(ti["start_date"]), when(ti["end_date"])) for ti in group]
        durations = [end - start for start, end in spans]
        mapped = len(group) > 1 or group[0]["map_index"] >= 0
        slots = min(POOL_SLOTS // int(group[0].get("pool_slots") or 1), WORKER_SLOTS) if mapped else 1
        by_index = [
            when(ti["end_date"]) - when(ti["start_date"])
            for ti in sorted(group, key=lambda ti: ti["map_index"])
        ]
        replay = greedy_makespan(replay, by_index, slots)
        stage_gaps = [
            start - max(previous_end, free)
            for (start, _), free in zip(spans, slot_free_times(spans, slots), strict=True)
        ]
        waits = [when(ti["start_date"]) - when(ti["queued_when"]) for ti in group if ti.get("queued_when")]
        gaps.extend(stage_gaps)
        queue_waits.extend(waits)
        if mapped:
            mapped_gaps.extend(stage_gaps)
        stages.append(
            {
                "task_id": task_id,
                "mapped": mapped,
                "instances": len(group),
                "slots": slots,
                "run_s": [round(d, 2) for d in durations],
                "run_min_mean_max_s": [
                    round(min(durations), 2),
                    round(sum(durations) / len(durations), 2),
                    round(max(durations), 2),
                ],
                "span_s": round(max(end for _, end in spans) - min(start for start, _ in spans), 2),
                "gap_mean_s": round(sum(stage_gaps) / len(stage_gaps), 2),
                "queued_to_start_mean_s": round(sum(waits) / len(waits), 2) if waits else None,
                "hosts": sorted({str(ti.get("hostname")) for ti in group}),
            }
        )
        previous_end = max(end for _, end in spans)
    wall = ended - queued
    n_mapped = sum(stage["instances"] for stage in stages if stage["mapped"])
    overhead = wall - replay
    return {
        "wall_s": round(wall, 2),
        "queued_to_start_s": round(started - queued, 2),
        "replay_s": round(replay, 2),
        "overhead_s": round(overhead, 2),
        "task_instances": len(tis),
        "mapped_task_instances": n_mapped,
        "overhead_per_task_instance_s": round(overhead / len(tis), 2),
        "overhead_per_mapped_task_instance_s": round(overhead / n_mapped, 2) if n_mapped else None,
        "gap_mean_s": round(sum(gaps) / len(gaps), 2),
        "mapped_gap_mean_s": round(sum(mapped_gaps) / len(mapped_gaps), 2) if mapped_gaps else None,
        "queued_to_start_mean_s": round(sum(queue_waits) / len(queue_waits), 2) if queue_waits else None,
        "stages": stages,
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over CPUs (``/proc/stat``)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def run_dag(dep: Any, dag_id: str, conf: dict[str, Any]) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """Trigger a run and wait for it (polled every 2 s); return its id, state, the DAG run, and
    the CPU used meanwhile: the emulator's seconds and the machine's busy share of its CPUs (from
    the trigger to the poll that saw the run finished, so up to 2 s of idle more than the run)."""
    emulator = dep.procs.get("emulator").pid
    emulator_before, (busy_before, total_before) = process_cpu(emulator), machine_cpu()
    run_id = dep.trigger(dag_id, conf)
    state = dep.wait_run(dag_id, run_id, RUN_TIMEOUT)
    busy, total = machine_cpu()
    cpu = {
        "emulator_cpu_s": round(process_cpu(emulator) - emulator_before, 1),
        "machine_busy": round((busy - busy_before) / (total - total_before), 2),
    }
    run = dep.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    return run_id, state, run, cpu


def check_rows(checks: Any, what: str, rows: list[str], items: int, expected: set[str]) -> None:
    distinct = set(rows)
    checks.check(f"{what}: one row per item", len(rows) == items, f"({len(rows)} rows, {items} items)")
    checks.check(f"{what}: rows unique", len(rows) == len(distinct), f"({len(distinct)} distinct)")
    checks.check(
        f"{what}: every target with data answered",
        distinct == expected,
        f"({len(expected)} expected; missing {len(expected - distinct)}, extra {len(distinct - expected)})",
    )


def at_scale_run(
    dep: Any, checks: Any, targets_uri: str, expected: set[str], what: str, requests_per_group: int
) -> dict[str, Any] | None:
    """One run of the at-scale DAG: its timing and merged manifest (``None`` when it failed)."""
    conf = {"targets_uri": targets_uri, "requests_per_group": requests_per_group}
    run_id, state, run, cpu = run_dag(dep, AT_SCALE_DAG, conf)
    checks.check(f"{what} run succeeded", state == "success", state)
    if state != "success":
        return None
    tis = dep.task_instances(AT_SCALE_DAG, run_id)
    merged = dep.xcom(AT_SCALE_DAG, run_id, "merge")
    stored = json.loads(Path(merged["uri"].removeprefix("file://")).read_text())
    check_rows(checks, what, read_rows(stored["part_uris"]), merged["items"], expected)
    return {
        "dag": f"at scale, {requests_per_group} requests per mapped task",
        "requests_per_group": requests_per_group,
        **timing(run, tis, ("make_targets", "plan", "fetch", "merge")),
        **cpu,
        "manifest": {k: merged.get(k) for k in ("parts", "targets", "items", "requests", "cost_usd")},
    }


def one_task_run(
    dep: Any, checks: Any, targets_uri: str, expected: set[str], what: str
) -> dict[str, Any] | None:
    """One run of the one-task DAG: its timing and manifest (``None`` when it failed)."""
    run_id, state, run, cpu = run_dag(dep, ONE_TASK_DAG, {"targets_uri": targets_uri})
    checks.check(f"{what} run succeeded", state == "success", state)
    if state != "success":
        return None
    tis = dep.task_instances(ONE_TASK_DAG, run_id)
    manifest = dep.xcom(ONE_TASK_DAG, run_id, "fetch")
    check_rows(checks, what, read_rows([manifest["uri"]]), manifest["items"], expected)
    return {
        "dag": "one task",
        **timing(run, tis, ("fetch",)),
        **cpu,
        "manifest": {k: manifest.get(k) for k in ("targets", "items", "requests", "cost_usd")},
    }


def one_latency(
    dep: Any,
    checks: Any,
    targets_uri: str,
    expected: set[str],
    latency: float,
    requests_per_group: Sequence[int],
) -> dict[str, Any]:
    """At one emulator latency: the at-scale DAG once per group size, then the one-task DAG."""
    paid_before = dep.stats()["paid_requests"]
    runs: list[dict[str, Any]] = []
    for size in requests_per_group:
        what = f"[{latency} s] at scale ({size} requests per mapped task)"
        runs.extend(filter(None, [at_scale_run(dep, checks, targets_uri, expected, what, size)]))
    runs.extend(filter(None, [one_task_run(dep, checks, targets_uri, expected, f"[{latency} s] one task")]))
    stats = dep.stats()
    peak, refused = stats["peak_in_flight"], stats["refused"]
    checks.check(f"[{latency} s] peak requests in flight <= {POOL_SLOTS}", peak <= POOL_SLOTS, peak)
    checks.check(f"[{latency} s] no 40209/40202 refusals", not any(refused.values()), refused)
    keys = ("targets", "items", "requests", "cost_usd")
    manifests = [run["manifest"] for run in runs]
    if len(runs) == len(requests_per_group) + 1:
        checks.check(
            f"[{latency} s] the same targets, items, requests and cost every way",
            all({k: m[k] for k in keys} == {k: manifests[-1][k] for k in keys} for m in manifests),
            f"({[{k: m[k] for k in keys} for m in manifests]})",
        )
        paid = stats["paid_requests"] - paid_before
        checks.check(
            f"[{latency} s] the emulator was paid exactly the requests the manifests report",
            paid == sum(m["requests"] for m in manifests),
            f"(paid {paid}, manifests {[m['requests'] for m in manifests]})",
        )
    emulator = {k: stats[k] for k in ("paid_requests", "peak_in_flight", "refused", "spent_usd")}
    return {"latency_s": latency, "runs": runs, "emulator": emulator}


def task_times(stages: Sequence[dict[str, Any]]) -> str:
    """``plan 3.1; fetch 5x 2.0-2.4 (mean 2.2); ...``: the run times of a run's tasks in seconds."""
    parts = []
    for stage in stages:
        low, mean, high = stage["run_min_mean_max_s"]
        if stage["mapped"]:
            parts.append(f"{stage['task_id']} {stage['instances']}x {low:.1f}-{high:.1f} (mean {mean:.1f})")
        else:
            parts.append(f"{stage['task_id']} {low:.1f}")
    return "; ".join(parts)


def table(results: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of the figures (docs/benchmarks.md, benchmarks/README.md)."""
    lines = [
        "| latency | DAG | task instances | wall (queued -> end) | replay (no gaps) | overhead "
        "| overhead per mapped TI | mean gap of a mapped TI | mean queued -> start | task run times (s) "
        "| emulator CPU | machine busy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for result in results:
        for t in result["runs"]:
            per_mapped, gap = t["overhead_per_mapped_task_instance_s"], t["mapped_gap_mean_s"]
            lines.append(
                f"| {result['latency_s']} s | {t['dag']} | {t['task_instances']} | {t['wall_s']:.1f} s "
                f"| {t['replay_s']:.1f} s | {t['overhead_s']:.1f} s "
                f"| {'-' if per_mapped is None else f'{per_mapped:.2f} s'} "
                f"| {'-' if gap is None else f'{gap:.2f} s'} "
                f"| {t['queued_to_start_mean_s']:.2f} s | {task_times(t['stages'])} "
                f"| {t['emulator_cpu_s']:.1f} s | {t['machine_busy']:.0%} |"
            )
    return "\n".join(lines)


def run_stage(
    dep: Any,
    checks: Any,
    figures: dict[str, Any],
    *,
    n_targets: int,
    shape: str,
    latencies: Sequence[float],
    requests_per_group: Sequence[int],
    restart_emulator: Callable[[float], None],
) -> None:
    """The ``scale_timing`` stage: figures into ``figures["scale_timing"]`` and
    ``<work>/scale-timing.json``, checks into ``checks``. First one unmeasured run of each DAG
    over 1,000 targets (so that no measured run is the first of its kind on the workers)."""
    pool = {"pool": "dataforseo", "slots": POOL_SLOTS, "include_deferred": False}
    dep.rest("PATCH", "/pools/dataforseo", params={"update_mask": "slots"}, json=pool)
    log(f"pool dataforseo: {POOL_SLOTS} slots for this stage (the default stages keep 2 for triggers)")
    deadline = time.monotonic() + 180
    while ONE_TASK_DAG not in {d["dag_id"] for d in dep.rest("GET", "/dags", params={"limit": 100})["dags"]}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ONE_TASK_DAG} not parsed after 180 s")
        time.sleep(2)
    for dag_id in (AT_SCALE_DAG, ONE_TASK_DAG):
        dep.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    warmup = write_targets(dep.work / "output", 1_000, shape)
    warm = known_targets(warmup)
    at_scale_run(dep, checks, warmup.as_uri(), warm, "[warm-up] at scale", requests_per_group[0])
    one_task_run(dep, checks, warmup.as_uri(), warm, "[warm-up] one task")
    started = time.monotonic()
    path = write_targets(dep.work / "output", n_targets, shape)
    expected = known_targets(path)
    seconds = time.monotonic() - started
    log(f"targets file {path}: {n_targets} {shape} targets, {len(expected)} with data ({seconds:.0f} s)")
    results = []
    for latency in latencies:
        restart_emulator(latency)
        log(f"emulator restarted: {latency} s per request")
        results.append(one_latency(dep, checks, path.as_uri(), expected, latency, requests_per_group))
    for dag_id in (AT_SCALE_DAG, ONE_TASK_DAG):
        dep.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    figures["scale_timing"] = {
        "load_average_before_after": [load_before, load_after],
        "cpus": os.cpu_count(),
        "targets": n_targets,
        "shape": shape,
        "targets_with_data": len(expected),
        "pool_slots": POOL_SLOTS,
        "results": results,
    }
    (dep.work / "scale-timing.json").write_text(json.dumps(figures["scale_timing"], indent=2))
    print("\n== End to end on a real scheduler")
    print(
        f"{n_targets} {shape} targets ({len(expected)} with data), pool {POOL_SLOTS} slots; "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs, load average (1, 5, 15 min) "
        f"{' '.join(load_before)} before, {' '.join(load_after)} after"
    )
    print(table(results), flush=True)
