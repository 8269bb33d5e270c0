"""Daily backlink summaries for 4,000 real targets, written as JSON Lines, then a short report.

The targets file holds the 2,000 highest-ranked domains of a public top-sites list and their home
pages (2,000 main domains, so at least 20 requests of <= 100 main domains each). Run it offline
against the emulator (see the README's first command), or against the real API by pointing the
``dataforseo_default`` connection at your account: about 20 requests x 0.02 USD + 4,000 items x
0.00003 USD = 0.52 USD per run.

The fetch runs in the Airflow pool ``dataforseo`` (10 of its slots, one per request in flight),
shared with the other DataForSEO examples so that all of them together stay under the API's 30
simultaneous requests. Create it once before the first scheduled run (``airflow dags test`` does not
need it)::

    airflow pools set dataforseo 30 "DataForSEO: requests in flight across all workers"

Set ``DATAFORSEO_OUTPUT_ROOT`` to choose where output goes (default ``file:///tmp/dataforseo``; an
``s3://conn_id@bucket/prefix`` URI works with the amazon provider installed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Asset, ObjectStoragePath, Param, dag, task

from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

TARGETS_URI = (Path(__file__).resolve().parent / "data" / "top_sites_targets.txt").as_uri()
OUTPUT_ROOT = os.environ.get("DATAFORSEO_OUTPUT_ROOT", "file:///tmp/dataforseo").rstrip("/")
#: Updated by every successful fetch; example_dataforseo_asset_consumer is scheduled on it.
BACKLINKS_ASSET = Asset(name="dataforseo_bulk_pages_summary")
#: A worker that dies mid-task (SIGKILL, OOM, lost node) is found by the scheduler after
#: ``[scheduler] task_instance_heartbeat_timeout`` (300 s by default); the retry then waits
#: RETRY_DELAY more. The fetch's retry resumes from its checkpoint.
RETRIES = 3
RETRY_DELAY = pendulum.duration(minutes=1)


@dag(
    dag_id="example_dataforseo_bulk_pages_summary",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dataforseo", "example"],
    # every task, not only the fetch: a task on a worker that dies fails the run without retries
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    params={
        "targets": Param(
            TARGETS_URI,
            type="string",
            title="Targets",
            description="A file URI (one target per line) or targets separated by commas or newlines: "
            "pages as https:// URLs, domains without scheme or www.",
        ),
        "include_subdomains": Param(
            True,
            type="boolean",
            title="Include subdomains",
            description="Count backlinks pointing to the targets' subdomains too (the API's default).",
        ),
        "output_root": Param(
            OUTPUT_ROOT,
            type="string",
            title="Output root",
            description="ObjectStoragePath URI under which <dag_id>/<run_id>/ is written.",
        ),
    },
    doc_md=__doc__,
)
def example_dataforseo_bulk_pages_summary() -> None:
    fetch = BulkPagesSummaryOperator(
        task_id="fetch_bulk_pages_summary",
        targets="{{ params.targets }}",
        output_path="{{ params.output_root }}/{{ dag.dag_id }}/{{ run_id }}/",
        include_subdomains="{{ params.include_subdomains }}",
        tag="{{ dag.dag_id }}/{{ run_id }}",
        outlets=[BACKLINKS_ASSET],  # each run's asset event carries the manifest
        # a file named by a run's params is read only under these roots (or the deployment's
        # [dataforseo] allowed_target_roots): a run cannot read other files of the worker
        allowed_target_roots=[TARGETS_URI.rsplit("/", 1)[0] + "/"],
        max_active_requests=10,
        # the pool every DataForSEO task shares: 30 slots = the API's simultaneous limit; one slot
        # per request in flight (create it once: airflow pools set dataforseo 30 "DataForSEO")
        pool="dataforseo",
        pool_slots=10,
    )

    @task
    def report(manifest: dict[str, Any]) -> dict[str, Any]:
        """Top pages by referring domains, pages with a lost_date, requests and cost."""
        top: list[tuple[int, str]] = []
        lost: list[tuple[str, str]] = []
        with ObjectStoragePath(manifest["uri"]).open("r", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                item = row["item"]
                url = str(item.get("url") or row["target"])
                if isinstance(item.get("referring_domains"), int) and "://" in url:
                    top.append((item["referring_domains"], url))
                if item.get("lost_date"):
                    lost.append((url, item["lost_date"]))
        top.sort(reverse=True)
        lines = [
            f"Rows: {manifest['uri']}",
            f"{manifest['items']} items for {manifest['targets']} targets "
            f"in {manifest['requests']} requests, cost {manifest['cost_usd']:.5f} USD, "
            f"{manifest['missing_targets']} targets without data",
            "Top pages by referring domains:",
            *(f"  {count:>10,}  {url}" for count, url in top[:10]),
            f"Pages with a lost_date: {len(lost)}",
            *(f"  {date}  {url}" for url, date in lost[:10]),
        ]
        print("\n".join(lines))
        return {
            "uri": manifest["uri"],
            "top_pages": [url for _, url in top[:10]],
            "pages_with_lost_date": len(lost),
            "requests": manifest["requests"],
            "cost_usd": manifest["cost_usd"],
        }

    report(fetch.output)  # type: ignore[arg-type]


example_dataforseo_bulk_pages_summary()
