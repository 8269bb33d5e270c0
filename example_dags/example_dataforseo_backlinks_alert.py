"""Alert by email when a page's ``lost_date`` or ``broken_backlinks`` changes.

Two DAGs:

- ``example_dataforseo_backlinks_alert`` (daily): ``BacklinksChangeSensor`` checks a list of pages
  every hour (reschedule mode: no worker slot held between checks) against the values it saw
  last for each page, kept in object storage. When something changed, a downstream task formats
  the alert and sends it with the SMTP provider's ``SmtpNotifier``. The first run only stores the
  baseline; a day without change ends with the sensor skipped (``soft_fail``), not failed. Editing
  ``PAGES`` is safe: new pages start their baseline, removed ones are forgotten, the others keep
  being compared. ``include_subdomains`` is a Param (trigger the DAG with
  ``{"include_subdomains": false}`` to count only the pages' own host).
- ``example_dataforseo_backlinks_asset_alert``: scheduled by an ``AssetWatcher`` whose
  ``BacklinksChangeTrigger`` polls in the triggerer; each change set becomes an asset event whose
  ``extra["payload"]["changes"]`` the DAG emails (once per ``check_id``: after a triggerer restart
  an event may come twice).

Every change is also appended once to the changes feed beside the baseline
(``backlinks_changes_<key>_<YYYY-MM>.jsonl``), which ``example_dataforseo_changes_feed_report``
in ``example_dataforseo_asset_consumer.py`` reads.

Cost against the real API: 1 request (0.02 USD) + 0.00003 USD per page per check, i.e. about
0.02 x 24 = 0.5 USD a day for hourly checks of these pages.

Settings (environment, read when the DAG file is parsed):
``DATAFORSEO_BASELINE_ROOT`` (default ``file:///tmp/dataforseo/baselines``; ``s3://conn@bucket/x``
works with the amazon provider), ``DATAFORSEO_ALERT_EMAIL_TO``, ``DATAFORSEO_ALERT_EMAIL_FROM``,
``DATAFORSEO_ALERT_POKE_SECONDS`` (default 3600) and ``DATAFORSEO_ALERT_TIMEOUT_SECONDS`` (default
82800, 23 h). Mail goes through the ``smtp_default`` connection, e.g.
``AIRFLOW_CONN_SMTP_DEFAULT='{"conn_type": "smtp", "host": "smtp.example.com", "port": 587,
"login": "...", "password": "..."}'``.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Asset, AssetWatcher, Param, dag, get_current_context, task

from airflow_provider_dataforseo.changes import render_message
from airflow_provider_dataforseo.sensors.backlinks_change import (
    ALERT_CONTEXT_KEY,
    BacklinksChangeSensor,
    send,
)
from airflow_provider_dataforseo.triggers.backlinks_change import BacklinksChangeTrigger

#: The pages watched: pages as https:// URLs (domains work too, without scheme).
PAGES = [
    "https://www.python.org/",
    "https://docs.python.org/3/",
    "https://pypi.org/",
    "https://airflow.apache.org/",
    "https://airflow.apache.org/docs/",
    "https://www.apache.org/",
    "https://github.com/",
    "https://github.com/apache/airflow",
    "https://www.djangoproject.com/",
    "https://flask.palletsprojects.com/",
    "https://fastapi.tiangolo.com/",
    "https://numpy.org/",
    "https://pandas.pydata.org/",
    "https://scikit-learn.org/stable/",
    "https://www.postgresql.org/",
    "https://www.sqlite.org/index.html",
    "https://kubernetes.io/",
    "https://www.docker.com/",
    "https://www.mozilla.org/",
    "https://developer.mozilla.org/",
    "https://www.wikipedia.org/",
    "https://en.wikipedia.org/wiki/Backlink",
    "https://stackoverflow.com/",
    "https://news.ycombinator.com/",
    "https://www.rust-lang.org/",
    "https://go.dev/",
    "https://nodejs.org/",
    "https://www.w3.org/",
    "https://letsencrypt.org/",
    "https://www.debian.org/",
]

BASELINE_ROOT = os.environ.get("DATAFORSEO_BASELINE_ROOT", "file:///tmp/dataforseo/baselines").rstrip("/")
ALERT_TO = os.environ.get("DATAFORSEO_ALERT_EMAIL_TO", "seo-alerts@example.com")
ALERT_FROM = os.environ.get("DATAFORSEO_ALERT_EMAIL_FROM", "airflow@example.com")
POKE_SECONDS = float(os.environ.get("DATAFORSEO_ALERT_POKE_SECONDS", "3600"))
TIMEOUT_SECONDS = float(os.environ.get("DATAFORSEO_ALERT_TIMEOUT_SECONDS", str(23 * 3600)))


def email_alert(changes: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """Print the alert and send it by email with the SMTP provider's notifier.

    :param changes: the sensor's (or the asset event's) changes.
    :param context: the task's Airflow context (the notifier renders its templates against it).
    :return: ``{"to", "subject", "changes"}`` (small, for XCom).
    """
    message = render_message(changes)
    print(message["text"])
    notifier = SmtpNotifier(
        to=ALERT_TO,
        from_email=ALERT_FROM,
        subject="{{ backlinks_alert.subject }}",
        html_content="{{ backlinks_alert.html }}",
    )
    send(notifier, {**context, ALERT_CONTEXT_KEY: {**message, "changes": changes}})
    return {"to": ALERT_TO, "subject": message["subject"], "changes": len(changes)}


@dag(
    dag_id="example_dataforseo_backlinks_alert",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dataforseo", "example", "alert"],
    doc_md=__doc__,
    params={"include_subdomains": Param(True, type="boolean", description="count subdomains' backlinks")},
)
def example_dataforseo_backlinks_alert() -> None:
    watch = BacklinksChangeSensor(
        task_id="watch_backlinks",
        targets=PAGES,
        watch_fields=("lost_date", "broken_backlinks"),
        include_subdomains="{{ params.include_subdomains }}",  # "False" is read as false
        # one folder per DAG: another DAG watching the same pages keeps its own baseline
        baseline_path=BASELINE_ROOT + "/{{ dag.dag_id }}/",
        mode="reschedule",
        poke_interval=POKE_SECONDS,
        timeout=TIMEOUT_SECONDS,
        soft_fail=True,
        pool="dataforseo",  # its one request in flight counts against the fetches' pool
        pool_slots=1,
        retries=2,
        retry_delay=pendulum.duration(minutes=5),
    )

    # the changes are in the sensor's XCom: a failed send is retried without checking again
    @task(retries=3, retry_delay=pendulum.duration(minutes=5))
    def send_alert(result: dict[str, Any]) -> dict[str, Any]:
        """Format the changes the sensor found and email them."""
        return email_alert(result["changes"], get_current_context())

    send_alert(watch.output)  # type: ignore[arg-type]


example_dataforseo_backlinks_alert()


#: Asset updated whenever the watched pages change (by the watcher below, in the triggerer).
BACKLINKS_CHANGES = Asset(
    "dataforseo_backlinks_changes",
    watchers=[
        AssetWatcher(
            name="dataforseo_backlinks_watcher",
            trigger=BacklinksChangeTrigger(
                targets=PAGES,
                baseline_path=BASELINE_ROOT + "/asset-watcher/",
                watch_id="dataforseo_backlinks_watcher",  # keys its baseline and changes feed
                poke_interval=POKE_SECONDS,
            ),
        )
    ],
)


@dag(
    dag_id="example_dataforseo_backlinks_asset_alert",
    schedule=[BACKLINKS_CHANGES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dataforseo", "example", "alert"],
    doc_md=__doc__,
)
def example_dataforseo_backlinks_asset_alert() -> None:
    @task(retries=3, retry_delay=pendulum.duration(minutes=5))
    def send_alert() -> dict[str, Any]:
        """Email the changes carried by the asset events that triggered this run."""
        context = get_current_context()
        changes: list[dict[str, Any]] = []
        seen: set[str] = set()  # an event repeated after a triggerer restart has the same check_id
        for event in context["triggering_asset_events"][BACKLINKS_CHANGES]:
            for change in (event.extra or {}).get("payload", {}).get("changes", []):
                key = f"{change.get('check_id')}|{change['target']}|{change['field']}"
                if key not in seen:
                    seen.add(key)
                    changes.append(change)
        if not changes:
            print("No changes in the triggering asset events")
            return {"to": ALERT_TO, "subject": None, "changes": 0}
        return email_alert(changes, context)

    send_alert()


example_dataforseo_backlinks_asset_alert()
