"""One BulkPagesSummaryOperator over a whole targets file, in one task: the benchmark's reference.

``benchmarks/scheduler.py`` (``bash scripts/deployment_test.sh --stages scale_timing``) runs it
next to the at-scale example DAG (plan -> mapped fetch -> merge) over the same file, to show what
mapping costs on a real scheduler. Not an example: the same fetch as ``fetch`` of the at-scale DAG
with every request of the run in one task, 30 in flight (the API's simultaneous limit, the same
total as the at-scale DAG's 3 mapped tasks x 10), so it takes the whole ``dataforseo`` pool.

Params: ``targets_uri`` (a file under ``<DATAFORSEO_OUTPUT_ROOT>/example_dataforseo_at_scale/``,
where the benchmark writes its targets file) and ``output_root``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

OUTPUT_ROOT = os.environ.get("DATAFORSEO_OUTPUT_ROOT", "file:///tmp/dataforseo").rstrip("/")
#: Where the benchmark's targets files are (the at-scale DAG reads files there too).
TARGETS_ROOT = f"{OUTPUT_ROOT}/example_dataforseo_at_scale/"
#: Requests in flight: the API's per-account simultaneous limit, all of the ``dataforseo`` pool.
MAX_ACTIVE_REQUESTS = 30


@dag(
    dag_id="benchmark_dataforseo_one_task",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dataforseo", "benchmark"],
    params={
        "targets_uri": Param("", type="string", title="Targets file"),
        "output_root": Param(OUTPUT_ROOT, type="string", title="Output root"),
    },
)
def benchmark_dataforseo_one_task() -> None:
    BulkPagesSummaryOperator(
        task_id="fetch",
        targets="{{ params.targets_uri }}",
        output_path="{{ params.output_root }}/{{ dag.dag_id }}/{{ run_id }}/",
        tag="{{ dag.dag_id }}/{{ run_id }}",
        allowed_target_roots=[TARGETS_ROOT],
        max_active_requests=MAX_ACTIVE_REQUESTS,
        requests_per_minute=1800,  # the account's budget, below the API's 2000 per minute
        pool="dataforseo",
        pool_slots=MAX_ACTIVE_REQUESTS,
    )


benchmark_dataforseo_one_task()
