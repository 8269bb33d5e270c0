"""Runs whenever fresh backlink data lands: scheduled on the fetch DAG's output Asset.

``example_dataforseo_bulk_pages_summary`` declares ``outlets=[Asset("dataforseo_bulk_pages_summary")]``
on its ``BulkPagesSummaryOperator``; every successful fetch emits an asset event whose ``extra`` is
the fetch's manifest (``uri`` of the JSON Lines rows, ``targets``, ``items``, ``requests``,
``cost_usd``, ...). Airflow then schedules this DAG, which reads the rows the event points to and
lists the pages with the most broken backlinks.

Triggered by hand (no triggering event), it reads the Asset's latest event instead.
"""

from __future__ import annotations

import json
from typing import Any

import pendulum
from airflow.sdk import Asset, ObjectStoragePath, dag, task

#: The same Asset the fetch DAG declares as its operator's outlet.
BACKLINKS_ASSET = Asset(name="dataforseo_bulk_pages_summary")


def broken_backlinks_report(manifest: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """Read the rows a manifest points to; count and rank pages by ``broken_backlinks``.

    :param manifest: an asset event's ``extra`` (``{"uri": <rows file>, "items": ..., ...}``).
    :param top: how many pages to list.
    :return: ``{"uri", "rows", "pages_with_broken_backlinks", "top_broken": [[count, url], ...]}``.
    """
    rows = 0
    broken: list[tuple[int, str]] = []
    with ObjectStoragePath(manifest["uri"]).open("r", encoding="utf-8") as handle:
        for line in handle:
            rows += 1
            row = json.loads(line)
            count = row["item"].get("broken_backlinks")
            if isinstance(count, int) and count > 0:
                broken.append((count, str(row["item"].get("url") or row["target"])))
    broken.sort(key=lambda pair: (-pair[0], pair[1]))
    return {
        "uri": manifest["uri"],
        "rows": rows,
        "pages_with_broken_backlinks": len(broken),
        "top_broken": [[count, url] for count, url in broken[:top]],
    }


@dag(
    dag_id="example_dataforseo_asset_consumer",
    schedule=[BACKLINKS_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dataforseo", "example"],
    # a task on a worker that dies is retried once the scheduler finds it (heartbeat timeout)
    default_args={"retries": 3, "retry_delay": pendulum.duration(minutes=1)},
    doc_md=__doc__,
)
def example_dataforseo_asset_consumer() -> None:
    @task(inlets=[BACKLINKS_ASSET])
    def report_broken_backlinks(
        triggering_asset_events: Any = None, inlet_events: Any = None
    ) -> dict[str, Any]:
        """The pages with the most broken backlinks in the fresh rows."""
        events = list(triggering_asset_events[BACKLINKS_ASSET]) if triggering_asset_events else []
        if not events:  # a manual run: use the Asset's latest event
            events = list(inlet_events[BACKLINKS_ASSET])[-1:]
        if not events:
            raise ValueError(f"{BACKLINKS_ASSET.name} has no asset event yet: run the fetch DAG first")
        manifest = dict(events[-1].extra)
        report = broken_backlinks_report(manifest)
        print(
            f"{report['rows']} rows in {report['uri']} ({manifest.get('cost_usd')} USD); "
            f"{report['pages_with_broken_backlinks']} with broken backlinks"
        )
        for count, url in report["top_broken"]:
            print(f"  {count:>8,}  {url}")
        return report

    report_broken_backlinks()


example_dataforseo_asset_consumer()
