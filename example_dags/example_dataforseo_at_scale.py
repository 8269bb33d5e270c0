"""Backlink summaries for 100,000 targets across many workers: plan -> mapped fetch -> merge.

1. ``make_targets`` writes a file of ``n_targets`` targets (default 100,000) into object storage,
   built from the real top-sites list shipped in ``data/top-domains-20k.csv``: a few large sites
   with many pages, a long tail of small ones. Bring your own file instead with ``targets_uri``.
2. ``plan`` (:class:`BulkPagesSummaryPlanOperator`) streams that file, normalises and de-duplicates
   the targets, plans ALL of them into requests (<= 1000 targets from <= 100 main domains each; for
   the default file: 100 requests, the lower bound) and cuts the requests into groups of
   ``requests_per_group``. Each group is written to ``<run>/groups/group-NNNNN.json``; the XCom is
   one ~200-byte descriptor per group.
3. ``fetch`` is :class:`BulkPagesSummaryOperator` mapped over the groups: one task instance per
   group (never one per URL, never more than ``[core] max_map_length``), each writing its rows to
   ``<run>/part-<map_index>/``. Every instance runs in the Airflow pool ``dataforseo`` with
   ``pool_slots = max_active_requests``, so a pool of 30 slots keeps at most 30 requests in flight
   across ALL workers: the API's per-account limit. Each task's per-minute budget is its share of
   the account's (1800 / 3 tasks at once = 600 requests per minute).
4. ``merge`` adds the manifests up (targets, items, requests, cost, missing targets) and writes
   ``<run>/manifest.json``.

Before the first run create the pool (the UI's Admin > Pools works too)::

    airflow pools set dataforseo 30 "DataForSEO: requests in flight across all workers"

Against the real API the default 100,000 targets cost about 100 x 0.02 + 100,000 x 0.00003 =
5.00 USD per run; against the emulator, nothing. ``DATAFORSEO_OUTPUT_ROOT`` (or the
``output_root`` param) chooses where output goes: ``file:///...`` on one machine, an
``s3://conn_id@bucket/prefix`` URI (amazon provider installed) when workers run on several
machines (Celery or Kubernetes executor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import ObjectStoragePath, Param, dag, task

from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.operators.plan import BulkPagesSummaryPlanOperator
from airflow_provider_dataforseo.planning import merge_manifests

DOMAINS_FILE = Path(__file__).resolve().parent / "data" / "top-domains-20k.csv"
OUTPUT_ROOT = os.environ.get("DATAFORSEO_OUTPUT_ROOT", "file:///tmp/dataforseo").rstrip("/")
#: The Airflow pool every fetch task runs in; give it 30 slots (the API's simultaneous limit).
POOL = "dataforseo"
POOL_SLOTS = 30
#: Requests in flight per mapped task; each task takes this many pool slots.
MAX_ACTIVE_REQUESTS = 10
#: Per-minute budget of one task: the account's budget (1800/min, below the API's 2000) shared by
#: the POOL_SLOTS / MAX_ACTIVE_REQUESTS tasks the pool lets run at once.
REQUESTS_PER_MINUTE = 1800 * MAX_ACTIVE_REQUESTS // POOL_SLOTS
#: A worker that dies mid-fetch (SIGKILL, OOM, lost node) is found by the scheduler after
#: ``[scheduler] task_instance_heartbeat_timeout`` (300 s by default); the retry then waits
#: RETRY_DELAY, long enough for a task process orphaned by a killed Celery worker to finish the
#: requests it already sent (one group: ``requests_per_group`` requests, seconds each).
RETRIES = 3
RETRY_DELAY = pendulum.duration(minutes=1)
RUN_ROOT = "{{ params.output_root }}/{{ dag.dag_id }}/{{ run_id }}"


def build_targets(n: int, domains: list[str]) -> list[str]:
    """``n`` distinct targets: site ``r`` gets a share proportional to ``1/r`` (at least one).

    Uses the first ``n // 20`` domains of ``domains``; each site contributes its domain, then
    pages ``https://<domain>/page/<i>``.

    :param n: number of targets (>= 20).
    :param domains: domains in rank order.
    :return: the targets, site after site.
    """
    sites = max(1, min(len(domains), n // 20))
    weights = [1.0 / rank for rank in range(1, sites + 1)]
    scale = (n - sites) / sum(weights)
    sizes = [1 + int(weight * scale) for weight in weights]
    for i in range(n - sum(sizes)):
        sizes[i % sites] += 1
    targets: list[str] = []
    for domain, size in zip(domains, sizes, strict=False):
        targets.append(domain)
        targets.extend(f"https://{domain}/page/{i}" for i in range(1, size))
    return targets


@dag(
    dag_id="example_dataforseo_at_scale",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dataforseo", "example", "scale"],
    # every task, not only the fetch: a task on a worker that dies fails the run without retries
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    params={
        "n_targets": Param(
            100_000,
            type="integer",
            minimum=20,
            maximum=1_000_000,
            title="Number of targets to generate",
            description="How many targets make_targets generates when no targets file is given.",
        ),
        # may stay empty: typed to allow null, so the UI form's Trigger button works with defaults
        "targets_uri": Param(
            None,
            type=["null", "string"],
            title="Targets file (optional)",
            description="A text/CSV file of targets in object storage; empty: generate n_targets.",
        ),
        "output_root": Param(OUTPUT_ROOT, type="string", title="Output root"),
        "requests_per_group": Param(20, type="integer", minimum=1, title="Requests per mapped task"),
    },
    doc_md=__doc__,
)
def example_dataforseo_at_scale() -> None:
    @task
    def make_targets(params: dict[str, Any] | None = None) -> str:
        """The URI of the targets file: ``targets_uri``, or a generated file of ``n_targets``."""
        assert params is not None  # injected by Airflow
        if params["targets_uri"]:
            return str(params["targets_uri"])
        n = int(params["n_targets"])
        path = ObjectStoragePath(f"{params['output_root']}/example_dataforseo_at_scale/targets-{n}.txt")
        if not path.exists():
            domains = [line.split(",", 1)[1] for line in DOMAINS_FILE.read_text("utf-8").split()]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(build_targets(n, domains)) + "\n", encoding="utf-8")
        return str(path)

    targets_uri = make_targets()

    plan = BulkPagesSummaryPlanOperator(
        task_id="plan",
        targets=targets_uri,
        groups_path=f"{RUN_ROOT}/groups/",
        requests_per_group="{{ params.requests_per_group }}",
        # targets files are read only under these roots (and [dataforseo] allowed_target_roots):
        # the generated file, and the files of this folder
        allowed_target_roots=[
            f"{OUTPUT_ROOT}/example_dataforseo_at_scale/",
            DOMAINS_FILE.parent.as_uri() + "/",
        ],
    )

    fetch = BulkPagesSummaryOperator.partial(
        task_id="fetch",
        output_path=RUN_ROOT + "/part-{{ ti.map_index }}/",
        tag="{{ dag.dag_id }}/{{ run_id }}/{{ ti.map_index }}",
        max_active_requests=MAX_ACTIVE_REQUESTS,
        requests_per_minute=REQUESTS_PER_MINUTE,
        pool=POOL,
        pool_slots=MAX_ACTIVE_REQUESTS,
    ).expand(chunk_group=plan.output)

    @task
    def merge(
        manifests: Any, params: dict[str, Any] | None = None, run_id: str | None = None, dag: Any = None
    ) -> dict[str, Any]:
        """One manifest for the run, stored beside the parts; its totals (no part list) to XCom."""
        assert params is not None and dag is not None  # injected by Airflow
        root = ObjectStoragePath(f"{params['output_root']}/{dag.dag_id}/{run_id}")
        # one slice reads every mapped XCom at once; iterating the lazy sequence instead asks for
        # one offset past the end and Airflow logs that 404 as an ERROR ("XCom not found")
        merged = merge_manifests(manifests[:], uri=str(root / "manifest.json"))
        (root / "manifest.json").write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
        print(
            f"{merged['parts']} parts: {merged['items']} items for {merged['targets']} targets in "
            f"{merged['requests']} requests, {merged['missing_targets']} targets without data, "
            f"cost {merged['cost_usd']:.5f} USD. Manifest: {merged['uri']}"
        )
        return {key: value for key, value in merged.items() if key != "part_uris"}

    merge(fetch.output)


example_dataforseo_at_scale()
