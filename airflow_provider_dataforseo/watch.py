"""One check of a backlinks watch: fetch the watched values, compare with the baseline, store.

Pure module: no Airflow import. The change sensor (poke and reschedule modes) and its trigger
(deferral and AssetWatcher) both call :func:`poll` then :func:`deliver`, so a watch behaves the
same in every mode. Values are fetched through the operator's own path: the targets' plan
(:func:`~airflow_provider_dataforseo.chunks.plan_chunks`) and
:func:`~airflow_provider_dataforseo.fetch.fetch_bulk_pages_summary` with the hook's
``bulk_pages_summary`` as ``post``.

Each target is compared with its own last seen values
(:func:`~airflow_provider_dataforseo.changes.advance`): a new target's first values are stored
without a change, a removed target is forgotten, the others are compared whatever the list
became.

Order of writes, so that no change is ever lost and none is ever repeated (an outbox):

1. a fetch that fails (any request failing after the hook's retries) raises before anything is
   stored; targets missing from a reply are "no data" and keep their stored values;
2. :func:`poll` writes, in ONE atomic put, the new values AND the changes found as a *pending
   batch* ``{"check_id", "detected_at", "changes"}`` in the baseline document. From then on the
   next check compares with the new values (never reports the same change again), and the batch
   waits in the document until delivered (never lost). Batches left by a check whose delivery
   did not finish are reported again with the next check's, by their own ``check_id``;
3. :func:`deliver` appends the batches to the changes feed (:mod:`.feed`; a batch already there
   is skipped by its ``check_id``), then the caller notifies (XCom, notifiers, an asset event),
   then :func:`acknowledge` removes the batches from the document.

A crash between 2 and 3 reports the batch at the next check; one between the feed append and
:func:`acknowledge` writes no second feed line (the feed is exactly-once) but may notify twice
(notifiers are at-least-once; each change carries its ``check_id`` to dedupe on).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dataforseo.baseline import BaselineError
from airflow_provider_dataforseo.changes import advance, count_changes, snapshot_entry
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.exceptions import DataForSeoError, InvalidTargetsError
from airflow_provider_dataforseo.feed import ChangesFeed
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
    :ivar changes: the changes to deliver (see :mod:`airflow_provider_dataforseo.changes`), each
        with the ``check_id`` and ``detected_at`` of the check that found it: this check's and
        any earlier undelivered ones'.
    :ivar targets: distinct normalised targets watched.
    :ivar targets_with_data: targets an item answered this time.
    :ivar without_data: targets without an item this time (kept as they were, never "lost").
    :ivar baseline_uri: where the baseline lives.
    :ivar requests: requests sent (each charged 0.02 USD plus 0.00003 USD per item).
    :ivar cost_usd: what the check cost, USD.
    :ivar first_seen: targets whose first values this check stored (no change reported).
    :ivar dropped: stored targets no longer watched, forgotten by this check.
    :ivar migrated_from: URI of the version 1 baseline this check read, else ``None``.
    """

    status: str
    changes: list[Change]
    targets: int
    targets_with_data: int
    without_data: list[str] = field(default_factory=list)
    baseline_uri: str = ""
    requests: int = 0
    cost_usd: float = 0.0
    first_seen: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    migrated_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready result (the sensor's XCom and the trigger's event payload).

        :return: ``{"status", "changes", "counts", "targets", "targets_with_data",
            "targets_without_data", "targets_first_seen", "targets_dropped", "baseline_uri",
            "requests", "cost_usd"}``; the ``targets_*`` are counts (names are in the log).
        """
        return {
            "status": self.status,
            "changes": self.changes,
            "counts": count_changes(self.changes),
            "targets": self.targets,
            "targets_with_data": self.targets_with_data,
            "targets_without_data": len(self.without_data),
            "targets_first_seen": len(self.first_seen),
            "targets_dropped": len(self.dropped),
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
    now: datetime | None = None,
) -> PollResult:
    """One check: fetch, compare each target with its stored values, store values and outbox.

    :param target_set: the validated targets.
    :param post: sends one chunk (the hook's ``bulk_pages_summary`` with the watch's options).
    :param store: the watch's baseline store.
    :param watch_fields: the watched fields.
    :param max_active_requests: requests in flight at once (1-30).
    :param now: the check's time, ``detected_at`` of its changes (default: now, UTC).
    :return: the :class:`PollResult`; its changes are stored as pending until :func:`acknowledge`.
    :raises DataForSeoError: a request failed for good; nothing was stored.
    :raises BaselineError: the stored baseline is unusable.
    :raises OSError: storage failed (transient; the previous baseline is unchanged).
    """
    snapshot, summary = fetch_snapshot(
        target_set, post, watch_fields, max_active_requests=max_active_requests
    )
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    baseline = store.read(legacy=(target_set.targets, watch_fields))
    stored = baseline.values if baseline is not None else {}
    step = advance(stored, snapshot, target_set.targets, watch_fields, inputs_of=target_set.inputs_of)
    pending = list(baseline.pending) if baseline is not None else []
    if step.changes:
        check_id, detected_at = uuid.uuid4().hex, moment.isoformat(timespec="seconds")
        changes = [{**change, "check_id": check_id, "detected_at": detected_at} for change in step.changes]
        pending.append({"check_id": check_id, "detected_at": detected_at, "changes": changes})
    if baseline is None or baseline.migrated_from or step.values != stored or pending != baseline.pending:
        store.write(step.values, pending, now=moment)
    if baseline is not None and baseline.migrated_from:
        log.info("Read the version 1 baseline %s; from now on %s", baseline.migrated_from, store.uri)
    status = BASELINE_STORED if baseline is None else CHANGED if pending else UNCHANGED
    return PollResult(
        status=status,
        changes=[change for batch in pending for change in batch["changes"]],
        targets=len(target_set),
        targets_with_data=len(snapshot),
        without_data=step.no_data,
        baseline_uri=store.uri,
        requests=summary.requests,
        cost_usd=summary.cost_usd,
        first_seen=step.first_seen if baseline is not None else [],
        dropped=step.dropped,
        migrated_from=baseline.migrated_from if baseline is not None else None,
    )


def batches_of(changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group changes by the check that found them: ``[{"check_id", "detected_at", "changes"}]``.

    :param changes: changes as :func:`poll` returned them (each with ``check_id``, ``detected_at``).
    :return: the batches in first-seen order.
    """
    batches: dict[str, dict[str, Any]] = {}
    for change in changes:
        batch = batches.setdefault(
            str(change["check_id"]),
            {"check_id": change["check_id"], "detected_at": change["detected_at"], "changes": []},
        )
        batch["changes"].append(dict(change))
    return list(batches.values())


def feed_of(store: BaselineStore) -> ChangesFeed:
    """The changes feed beside ``store``'s baseline (same folder, same key)."""
    return ChangesFeed(store.folder, store.key)


def deliver(store: BaselineStore, changes: Sequence[Mapping[str, Any]]) -> int:
    """Append the changes to the feed beside the baseline; batches already there are skipped.

    :param store: the watch's baseline store.
    :param changes: the changes as :func:`poll` returned them.
    :return: feed lines written.
    :raises OSError: when storage fails (nothing acknowledged: the next check delivers again).
    """
    feed = feed_of(store)
    return sum(feed.append(batch) for batch in batches_of(changes))


def acknowledge(store: BaselineStore, changes: Sequence[Mapping[str, Any]]) -> None:
    """Remove the delivered changes' batches from the baseline's outbox (re-read, rewritten).

    :param store: the watch's baseline store.
    :param changes: the changes as :func:`poll` returned them.
    :raises OSError: when storage fails (the batches stay pending; the feed will skip them).
    """
    done = {str(change["check_id"]) for change in changes}
    if not done:
        return
    baseline = store.read()
    if baseline is None:
        return
    pending = [batch for batch in baseline.pending if batch["check_id"] not in done]
    if pending != baseline.pending:
        store.write(baseline.values, pending)


def is_permanent(exc: BaseException) -> bool:
    """Whether a failed check needs a person rather than another try.

    Permanent: a DataForSEO error that is not retryable (credentials, payment, invalid request:
    401xx/402xx/40501...), invalid targets, an unusable baseline document, a wrong type of
    argument. Everything else (``OSError`` from storage or a targets file, S3 errors, timeouts,
    5xx after the hook's retries...) is transient: the check can be tried again.

    :param exc: the exception a check raised.
    :return: ``True`` for the permanent kinds above.
    """
    if isinstance(exc, DataForSeoError):
        return not exc.retryable
    return isinstance(exc, (InvalidTargetsError, BaselineError, TypeError))
