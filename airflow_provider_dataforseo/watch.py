"""One check of a backlinks watch: fetch the watched values, compare with the baseline, store.

Pure module: no Airflow import. The change sensor (poke and reschedule modes) and its trigger
(deferral and AssetWatcher) both call :func:`poll`, so a watch behaves the same in every mode.
Values are fetched through the operator's own path: the targets' plan
(:func:`~airflow_provider_dataforseo.chunks.plan_chunks`) and
:func:`~airflow_provider_dataforseo.fetch.fetch_bulk_pages_summary` with the hook's
``bulk_pages_summary`` as ``post``.

Order of writes, so that no change is ever lost:

- a fetch that fails (any request failing after the hook's retries) raises before anything is
  stored; targets missing from a reply are "no data" and keep their stored values;
- the first check stores the baseline (no change can be lost: there was nothing to compare);
- values the baseline lacked (new targets, fields that had no data) are stored at once: they are
  not changes;
- changes are NOT stored by :func:`poll`. The caller delivers them first (XCom, notifiers, an
  asset event), then calls :func:`commit`. A crash in between repeats the alert at the next
  check; it never drops it (at-least-once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_dataforseo.changes import (
    apply_changes,
    count_changes,
    evaluate,
    merge,
    snapshot_entry,
)
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.fetch import FetchSummary, Row, fetch_bulk_pages_summary

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_dataforseo.baseline import BaselineStore
    from airflow_provider_dataforseo.changes import Change, Snapshot
    from airflow_provider_dataforseo.fetch import PostChunk
    from airflow_provider_dataforseo.targets import TargetSet

log = logging.getLogger(__name__)

#: ``status`` of a check that stored the first baseline.
BASELINE_STORED = "baseline_stored"
#: ``status`` of a check that found changes.
CHANGED = "changed"
#: ``status`` of a check that found none.
UNCHANGED = "unchanged"


@dataclass
class PollResult:
    """What one check found.

    :ivar status: :data:`BASELINE_STORED`, :data:`CHANGED` or :data:`UNCHANGED`.
    :ivar changes: the changes (see :mod:`airflow_provider_dataforseo.changes`).
    :ivar targets: distinct normalised targets watched.
    :ivar targets_with_data: targets an item answered this time.
    :ivar without_data: targets without an item this time (kept as they were, never "lost").
    :ivar baseline_uri: where the baseline lives.
    :ivar requests: requests sent (each charged 0.02 USD plus 0.00003 USD per item).
    :ivar cost_usd: what the check cost, USD.
    """

    status: str
    changes: list[Change]
    targets: int
    targets_with_data: int
    without_data: list[str] = field(default_factory=list)
    baseline_uri: str = ""
    requests: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready result (the sensor's XCom and the trigger's event payload).

        :return: ``{"status", "changes", "counts", "targets", "targets_with_data",
            "targets_without_data", "baseline_uri", "requests", "cost_usd"}``;
            ``targets_without_data`` is a count (names are in the log).
        """
        return {
            "status": self.status,
            "changes": self.changes,
            "counts": count_changes(self.changes),
            "targets": self.targets,
            "targets_with_data": self.targets_with_data,
            "targets_without_data": len(self.without_data),
            "baseline_uri": self.baseline_uri,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 6),
        }


def fetch_snapshot(
    target_set: TargetSet,
    post: PostChunk,
    watch_fields: Sequence[str],
    *,
    max_active_requests: int,
) -> tuple[Snapshot, FetchSummary]:
    """Fetch every target's item and keep its watched fields.

    :param target_set: the validated targets.
    :param post: sends one chunk (the hook's ``bulk_pages_summary`` with the watch's options).
    :param watch_fields: the fields to keep.
    :param max_active_requests: requests in flight at once (1-30).
    :return: ``(snapshot, summary)``; the snapshot holds only targets an item answered, in input
        order.
    :raises Exception: the first request error (after the hook's retries); nothing is kept.
    """
    snapshot: Snapshot = {}

    def sink(rows: list[Row]) -> None:
        for row in rows:
            if row["target"] is not None:
                snapshot[row["target"]] = snapshot_entry(row["item"], watch_fields)

    chunks = plan_chunks(target_set.targets)
    summary = fetch_bulk_pages_summary(
        target_set, chunks, post, sink, max_active_requests=max_active_requests
    )
    # replies complete in any order: list targets in input order, so changes come out in that order
    ordered = {target: snapshot[target] for target in target_set.targets if target in snapshot}
    return ordered, summary


def poll(
    target_set: TargetSet,
    post: PostChunk,
    store: BaselineStore,
    watch_fields: Sequence[str],
    *,
    max_active_requests: int,
) -> PollResult:
    """One check: fetch, compare with the stored baseline, store what is safe to store.

    :param target_set: the validated targets.
    :param post: sends one chunk (the hook's ``bulk_pages_summary`` with the watch's options).
    :param store: the watch's baseline store.
    :param watch_fields: the watched fields.
    :param max_active_requests: requests in flight at once (1-30).
    :return: the :class:`PollResult`; its changes are not stored yet (call :func:`commit`).
    :raises DataForSeoError: a request failed for good; nothing was stored.
    :raises BaselineError: the stored baseline is unusable.
    """
    snapshot, summary = fetch_snapshot(
        target_set, post, watch_fields, max_active_requests=max_active_requests
    )

    def result(status: str, changes: list[Change]) -> PollResult:
        return PollResult(
            status=status,
            changes=changes,
            targets=len(target_set),
            targets_with_data=len(snapshot),
            without_data=[target for target in target_set.targets if target not in snapshot],
            baseline_uri=store.uri,
            requests=summary.requests,
            cost_usd=summary.cost_usd,
        )

    baseline = store.read()
    if baseline is None:
        store.write(snapshot)
        return result(BASELINE_STORED, [])
    evaluation = evaluate(baseline, snapshot, watch_fields)
    if evaluation.additions:
        store.write(merge(baseline, evaluation.additions))
    return result(CHANGED if evaluation.changes else UNCHANGED, evaluation.changes)


def commit(store: BaselineStore, changes: Sequence[Mapping[str, Any]]) -> None:
    """Store the new values of delivered changes in the baseline (re-read, updated, rewritten).

    :param store: the watch's baseline store.
    :param changes: the changes as :func:`poll` returned them.
    """
    if not changes:
        return
    store.write(apply_changes(store.read() or {}, changes))
