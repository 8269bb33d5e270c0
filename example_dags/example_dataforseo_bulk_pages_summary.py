"""Daily backlink summaries for 4,000 real targets, written as JSON Lines, then a short report.

The targets file holds the 2,000 highest-ranked domains of a public top-sites list and their home
pages (2,000 main domains, so at least 20 requests of <= 100 main domains each), leaving out adult,
piracy and malware sites (data/excluded_domains.txt; scripts/make_demo_targets.py makes the file).
Run it offline against the emulator (see the README's first command), or against the real API by
pointing the ``dataforseo_default`` connection at your account: about 20 requests x 0.02 USD +
4,000 items x 0.00003 USD = 0.52 USD per run.

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


@dag(
    dag_id="example_dataforseo_bulk_pages_summary",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dataforseo", "example"],
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
        retries=2,
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
