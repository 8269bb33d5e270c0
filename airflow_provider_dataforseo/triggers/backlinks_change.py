"""BacklinksChangeTrigger: watch pages' backlink fields from the triggerer (deferral or AssetWatcher)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.changes import DEFAULT_WATCH_FIELDS, check_watch_fields
from airflow_provider_dataforseo.exceptions import DataForSeoError
from airflow_provider_dataforseo.flags import as_bool, as_rank_scale
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.watch import (
    BASELINE_STORED,
    CHANGED,
    PollResult,
    acknowledge,
    deliver,
    is_permanent,
    poll,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from airflow.sdk import Connection

    from airflow_provider_dataforseo.baseline import BaselineStore
    from airflow_provider_dataforseo.targets import TargetSet

#: ``status`` of the event sent when the deadline passed without a change.
TIMEOUT = "timeout"
#: ``status`` of the event sent (deferral only) when a check failed.
ERROR = "error"
#: Default ``watch_id`` of a trigger used on its own (an AssetWatcher).
DEFAULT_WATCH_ID = "backlinks_watcher"
#: After failed checks an AssetWatcher waits ``poke_interval`` x 2^(failures - 1), at most this
#: many times ``poke_interval``...
MAX_BACKOFF_FACTOR = 32
#: ...and at most this many seconds (a day).
MAX_BACKOFF_SECONDS = 86_400.0


class BacklinksChangeTrigger(BaseEventTrigger):
    """Poll DataForSEO without blocking the event loop and fire when a watched field changes.

    Each check runs :func:`airflow_provider_dataforseo.watch.poll` (fetch through the operator's
    planning and the hook, compare with the baseline in object storage) in a worker thread
    (``asyncio.to_thread``); the DataForSEO connection is read once with
    ``await BaseHook.aget_connection`` on the loop. The event's payload is the sensor's result:
    ``{"status": "changed", "changes": [{target, url, field, old, new, kind, delta}, ...],
    "counts": {...}, "targets", "targets_with_data", "targets_without_data", "baseline_uri",
    "requests", "cost_usd"}``.

    Two uses:

    - **AssetWatcher** (``commit_baseline=True``, the default):
      ``Asset("backlinks", watchers=[AssetWatcher(name="backlinks", trigger=BacklinksChangeTrigger(...))])``
      schedules a DAG whenever a change happens; the payload is in the asset event's
      ``extra["payload"]``. The trigger fires once per change set: after an event it stores the
      new values and keeps watching. The first check only stores the baseline. A permanent error
      (a DataForSEO 401xx/402xx/40501..., invalid targets, an unusable baseline document) ends the
      trigger (raised, logged by the triggerer); any other (storage ``OSError``, S3, timeouts, 5xx
      after the hook's retries, an unreadable targets file) is logged and the watch goes on,
      waiting ``poke_interval`` x 2^(failures - 1) (at most x32, at most a day) before the next
      check. Each change is appended once to the changes feed before its event; the payload's
      changes carry their ``check_id`` so consumers can drop a repeated event (after a triggerer
      restart between an event and its acknowledgement).
    - **Deferral** from :class:`~airflow_provider_dataforseo.sensors.backlinks_change.BacklinksChangeSensor`
      (``commit_baseline=False``): it fires one event and ends; the sensor stores the values in
      ``execute_complete``. Errors become ``{"status": "error", "message", "retryable"}`` events
      (``retryable`` false only for the permanent kinds above: ``execute_complete`` then fails
      without retries, else it raises a plain exception so Airflow's ``retries`` apply),
      the deadline ``end_at`` a ``{"status": "timeout"}`` event, and with ``succeed_on_first_run``
      the first check fires ``{"status": "baseline_stored", "changes": [], ...}``.

    :param targets: the targets: a list of strings, a text of them, or a file URI (as the
        operator's ``targets``), already rendered; the user's own entries (the sensor passes
        them as given: they are normalised here, once).
    :param baseline_path: ObjectStoragePath URI of the folder holding the baseline, e.g.
        ``"file:///data/baselines/"`` or ``"s3://aws_default@bucket/baselines/"``.
    :param watch_fields: item fields to watch (default ``lost_date`` and ``broken_backlinks``).
    :param include_subdomains: request option (API default ``True``); ``"false"``/``"0"`` mean
        ``False`` (:func:`~airflow_provider_dataforseo.flags.as_bool`).
    :param rank_scale: request option, ``"one_thousand"`` / ``"one_hundred"`` or ``None``.
    :param watch_id: the watch's name, which keys its baseline file and feed (default
        ``"backlinks_watcher"``): give each watcher sharing a ``baseline_path`` its own.
    :param dataforseo_conn_id: the DataForSEO connection.
    :param poke_interval: seconds between checks.
    :param commit_baseline: ``True`` for AssetWatcher use, ``False`` when deferring a sensor.
    :param succeed_on_first_run: with ``commit_baseline=False``, fire when the first baseline is
        stored instead of waiting for a change.
    :param end_at: ISO 8601 UTC time after which (deferral) a ``timeout`` event is sent; ``None``
        for no deadline.
    :param max_active_requests: requests in flight per check, 1-30.
    :param hook_params: extra keyword arguments for :class:`DataForSeoHook` (timeouts, retries).
    :raises ValueError: for bad ``watch_fields``, ``poke_interval``, ``max_active_requests``,
        ``include_subdomains``, ``rank_scale`` or ``end_at``, naming the value.
    """

    def __init__(
        self,
        *,
        targets: list[str] | str,
        baseline_path: str,
        watch_fields: Sequence[str] = DEFAULT_WATCH_FIELDS,
        include_subdomains: bool | str = True,
        rank_scale: str | None = None,
        watch_id: str = DEFAULT_WATCH_ID,
        dataforseo_conn_id: str = DataForSeoHook.default_conn_name,
        poke_interval: float = 3600.0,
        commit_baseline: bool = True,
        succeed_on_first_run: bool = False,
        end_at: str | None = None,
        max_active_requests: int = 5,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(targets, (str, list)) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"targets must be a list of strings or a string, got {targets!r:.200}")
        if not isinstance(poke_interval, (int, float)) or poke_interval < 0:
            raise ValueError(f"poke_interval must be a number of seconds >= 0, got {poke_interval!r}")
        if not 1 <= max_active_requests <= api.MAX_SIMULTANEOUS_REQUESTS:
            raise ValueError(
                f"max_active_requests must be 1-{api.MAX_SIMULTANEOUS_REQUESTS}, got {max_active_requests!r}"
            )
        if end_at is not None:
            _parse_end_at(end_at)
        self.targets = list(targets) if isinstance(targets, list) else targets
        self.baseline_path = str(baseline_path)
        self.watch_fields = list(check_watch_fields(watch_fields))
        if not isinstance(watch_id, str) or not watch_id.strip():
            raise ValueError(f"watch_id must be a non-empty string, got {watch_id!r}")
        self.include_subdomains = as_bool(include_subdomains, "include_subdomains")
        self.rank_scale = as_rank_scale(rank_scale)
        self.watch_id = watch_id.strip()
        self.dataforseo_conn_id = dataforseo_conn_id
        self.poke_interval = float(poke_interval)
        self.commit_baseline = bool(commit_baseline)
        self.succeed_on_first_run = bool(succeed_on_first_run)
        self.end_at = end_at
        self.max_active_requests = int(max_active_requests)
        self.hook_params = dict(hook_params or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """``(classpath, kwargs)``; every kwarg is plain JSON (strings, numbers, lists, dicts)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "targets": self.targets,
                "baseline_path": self.baseline_path,
                "watch_fields": list(self.watch_fields),
                "include_subdomains": self.include_subdomains,
                "rank_scale": self.rank_scale,
                "watch_id": self.watch_id,
                "dataforseo_conn_id": self.dataforseo_conn_id,
                "poke_interval": self.poke_interval,
                "commit_baseline": self.commit_baseline,
                "succeed_on_first_run": self.succeed_on_first_run,
                "end_at": self.end_at,
                "max_active_requests": self.max_active_requests,
                "hook_params": dict(self.hook_params),
            },
        )

    # -- the blocking part, run in a worker thread ------------------------------------------------

    def _target_set(self) -> TargetSet:
        from airflow_provider_dataforseo.operators.bulk_pages_summary import read_targets

        return read_targets(self.targets)

    def _store(self) -> BaselineStore:
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_dataforseo.baseline import BaselineStore

        return BaselineStore(
            ObjectStoragePath(self.baseline_path.strip()),
            watch_id=self.watch_id,
            include_subdomains=self.include_subdomains,
            rank_scale=self.rank_scale,
        )

    def _poll(self, connection: Connection) -> PollResult:
        """One check (blocking: HTTP and object storage); runs in a worker thread.

        With ``commit_baseline`` (AssetWatcher) the changes are appended to the feed here, before
        their event is yielded.
        """
        target_set = self._target_set()
        params = {"pool_maxsize": self.max_active_requests, **self.hook_params}
        hook = DataForSeoHook(self.dataforseo_conn_id, **params)
        hook.connection = connection  # looked up on the loop with aget_connection
        post = partial(
            hook.bulk_pages_summary, include_subdomains=self.include_subdomains, rank_scale=self.rank_scale
        )
        store = self._store()
        try:
            result = poll(
                target_set, post, store, self.watch_fields, max_active_requests=self.max_active_requests
            )
        finally:
            hook.close()
        if self.commit_baseline and result.changes:
            deliver(store, result.changes)
        return result

    def _acknowledge(self, changes: list[dict[str, Any]]) -> None:
        """Clear delivered changes from the baseline's outbox (blocking); runs in a worker thread."""
        acknowledge(self._store(), changes)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (>= 1) failed checks in a row (AssetWatcher use).

        :return: ``poke_interval`` x 2^(failures - 1), at most x :data:`MAX_BACKOFF_FACTOR` and at
            most :data:`MAX_BACKOFF_SECONDS` (but never less than ``poke_interval``).
        """
        factor: int = 2 ** min(max(failures, 1) - 1, MAX_BACKOFF_FACTOR.bit_length() - 1)
        return float(max(self.poke_interval, min(self.poke_interval * factor, MAX_BACKOFF_SECONDS)))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check every ``poke_interval`` seconds; yield an event per change set (see the class doc)."""
        deadline = _parse_end_at(self.end_at) if self.end_at else None
        try:
            connection = await BaseHook.aget_connection(self.dataforseo_conn_id)
        except Exception as exc:
            if self.commit_baseline:
                raise
            yield _event({"status": ERROR, "message": str(exc), "retryable": not is_permanent(exc)})
            return
        failures = 0
        while True:
            wait = self.poke_interval
            try:
                result = await asyncio.to_thread(self._poll, connection)
            except Exception as exc:
                permanent = is_permanent(exc)
                if not self.commit_baseline:
                    message = str(exc) if isinstance(exc, DataForSeoError) else f"{type(exc).__name__}: {exc}"
                    yield _event({"status": ERROR, "message": message, "retryable": not permanent})
                    return
                if permanent:
                    raise
                failures += 1
                wait = self.backoff(failures)
                self.log.warning(
                    "Check failed (%s: %s); the watch goes on: next check in %s s (failure %d in a row)",
                    type(exc).__name__,
                    exc,
                    wait,
                    failures,
                )
            else:
                failures = 0
                self._log_result(result)
                first = result.status == BASELINE_STORED and self.succeed_on_first_run
                if result.status == CHANGED or (first and not self.commit_baseline):
                    yield _event(result.as_dict())
                    if not self.commit_baseline:
                        return
                    # in the feed before the event; out of the outbox only after it was handed over
                    try:
                        await asyncio.to_thread(self._acknowledge, result.changes)
                    except Exception as exc:  # the batch stays pending: reported with the next check
                        if is_permanent(exc):
                            raise
                        self.log.warning("Could not clear delivered changes (%s); kept pending", exc)
            if deadline is not None:
                remaining = (deadline - datetime.now(timezone.utc)).total_seconds()
                if remaining <= 0:
                    yield _event(
                        {"status": TIMEOUT, "message": f"No change in the watched fields by {self.end_at}"}
                    )
                    return
                wait = min(wait, remaining)
            await asyncio.sleep(wait)

    def _log_result(self, result: PollResult) -> None:
        if result.status == BASELINE_STORED:
            self.log.info(
                "Stored the first baseline (%d targets, %d with data) at %s",
                result.targets,
                result.targets_with_data,
                result.baseline_uri,
            )
        elif result.status == CHANGED:
            self.log.info("%d changes in %d targets", len(result.changes), result.targets)
        else:
            self.log.info(
                "No change in %d targets (%d without data this time)",
                result.targets,
                len(result.without_data),
            )


def _event(payload: dict[str, Any]) -> TriggerEvent:
    """A :class:`TriggerEvent` with a JSON payload."""
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def _parse_end_at(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (naive means UTC); :class:`ValueError` naming it."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"end_at must be an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
