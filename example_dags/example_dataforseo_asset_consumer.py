"""Runs whenever fresh backlink data lands: scheduled on the fetch DAG's output Asset.

``example_dataforseo_bulk_pages_summary`` declares ``outlets=[Asset("dataforseo_bulk_pages_summary")]``
on its ``BulkPagesSummaryOperator``; every successful fetch emits an asset event whose ``extra`` is
the fetch's manifest (``uri`` of the JSON Lines rows, ``targets``, ``items``, ``requests``,
``cost_usd``, ...). Airflow then schedules this DAG, which reads the rows the event points to and
lists the pages with the most broken backlinks.

Triggered by hand (no triggering event), it reads the Asset's latest event instead.

A second DAG, ``example_dataforseo_changes_feed_report``, runs whenever the change watcher of
``example_dataforseo_backlinks_alert.py`` fires (its Asset ``dataforseo_backlinks_changes``) and
reads the watch's changes feed (JSON Lines beside the baseline: every change detected, once)
to report the last week, without calling the API again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum
from airflow.sdk import Asset, ObjectStoragePath, dag, task

from airflow_provider_dataforseo.baseline import watch_key
from airflow_provider_dataforseo.changes import normalise_value
from airflow_provider_dataforseo.feed import ChangesFeed

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
            # a count as the API may spell it (3 or "3"); no number is no data
            has_data, count = normalise_value("broken_backlinks", row["item"].get("broken_backlinks"))
            if has_data and count > 0:
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


#: The watcher's Asset and where its feed lies (see example_dataforseo_backlinks_alert.py).
CHANGES_ASSET = Asset(name="dataforseo_backlinks_changes")
FEED_FOLDER = (
    os.environ.get("DATAFORSEO_BASELINE_ROOT", "file:///tmp/dataforseo/baselines").rstrip("/")
    + "/asset-watcher/"
)
WATCH_ID = "dataforseo_backlinks_watcher"


def changes_feed_report(
    records: list[dict[str, Any]], *, days: int = 7, now: datetime | None = None
) -> dict[str, Any]:
    """Count the feed's changes of the last ``days`` days by kind and by page.

    :param records: feed lines (``{"detected_at", "check_id", "target", "inputs", "field", "old",
        "new", "kind"}``).
    :param days: the window, in days before ``now``.
    :param now: the end of the window (default: now, UTC).
    :return: ``{"since", "changes", "by_kind": {kind: n}, "pages": [[n, target], ...]}`` (pages
        most changed first).
    """
    since = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    recent = [r for r in records if datetime.fromisoformat(r["detected_at"]) >= since]
    by_kind: dict[str, int] = {}
    by_page: dict[str, int] = {}
    for record in recent:
        by_kind[record["kind"]] = by_kind.get(record["kind"], 0) + 1
        by_page[record["target"]] = by_page.get(record["target"], 0) + 1
    pages = sorted(([n, page] for page, n in by_page.items()), key=lambda pair: (-pair[0], pair[1]))
    return {
        "since": since.isoformat(timespec="seconds"),
        "changes": len(recent),
        "by_kind": by_kind,
        "pages": pages,
    }


@dag(
    dag_id="example_dataforseo_changes_feed_report",
    schedule=[CHANGES_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dataforseo", "example", "alert"],
    doc_md=__doc__,
    # a task on a worker that dies is retried (reading the feed is free and repeatable)
    default_args={"retries": 3, "retry_delay": pendulum.duration(minutes=1)},
)
def example_dataforseo_changes_feed_report() -> None:
    @task
    def report_changes() -> dict[str, Any]:
        """The last week of the watcher's changes feed, by kind and by page."""
        feed = ChangesFeed(ObjectStoragePath(FEED_FOLDER), watch_key(WATCH_ID, include_subdomains=True))
        report = changes_feed_report(feed.read())
        print(f"{report['changes']} changes since {report['since']}: {report['by_kind']}")
        for count, page in report["pages"][:20]:
            print(f"  {count:>4}  {page}")
        return report

    report_changes()


example_dataforseo_changes_feed_report()
