"""BacklinksChangeSensor: wait until a page's ``lost_date``, ``broken_backlinks`` (or any field) changes."""

from __future__ import annotations

import asyncio
import copy
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseNotifier, BaseSensorOperator, ObjectStoragePath, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferralTimeout,
)

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.baseline import BaselineError, BaselineStore
from airflow_provider_dataforseo.changes import (
    DEFAULT_WATCH_FIELDS,
    change_line,
    check_watch_fields,
    count_changes,
    render_message,
)
from airflow_provider_dataforseo.flags import as_bool, as_rank_scale
from airflow_provider_dataforseo.hooks.dataforseo import (
    DataForSeoHook,
    check_hook_params,
    fail_task_on_permanent_errors,
)
from airflow_provider_dataforseo.operators.bulk_pages_summary import read_targets
from airflow_provider_dataforseo.sources import coerce_targets, is_storage_uri
from airflow_provider_dataforseo.triggers.backlinks_change import ERROR, TIMEOUT, BacklinksChangeTrigger
from airflow_provider_dataforseo.watch import (
    BASELINE_STORED,
    CHANGED,
    PollResult,
    acknowledge,
    deliver,
    feed_of,
    is_permanent,
    poll,
)
from airflow_provider_dataforseo.wording import counted

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.sdk import Context

    from airflow_provider_dataforseo.targets import TargetSet

#: Key of the alert in the context handed to notifiers: ``{"subject", "text", "html", "changes",
#: "counts"}``; use it in a notifier's templates, e.g. ``subject="{{ backlinks_alert.subject }}"``.
ALERT_CONTEXT_KEY = "backlinks_alert"
#: Changes named one by one in the task log (the rest are counted).
LOGGED_CHANGES = 50
#: The failures that ``soft_fail=True`` turns into a skip: running out of time (``timeout``, or
#: ``execution_timeout``) without a change. Any other failure fails the task even with ``soft_fail``.
SOFT_FAIL_SKIPS: tuple[type[BaseException], ...] = (
    AirflowSensorTimeout,
    AirflowTaskTimeout,
    TaskDeferralTimeout,
)


class BacklinksChangeSensor(BaseSensorOperator):
    """Succeed when a watched field of any target's backlink summary changes.

    Each check fetches the targets through the operator's path (same targets, same planning into
    <= 1000 targets / <= 100 main domains per request, the hook's retries) and compares the
    watched fields of each target with that target's last seen values, kept in object storage
    under ``baseline_path`` (see :mod:`airflow_provider_dataforseo.baseline`). Editing the list
    never hides a change of a target that stayed; a new target's first values are stored without
    an alert; a removed target is forgotten. Cost per check: 0.02 USD per request plus 0.00003 USD
    per item.

    - **Change**: the sensor succeeds and returns (XCom) ``{"status": "changed", "changes": [...],
      "counts": {...}, "targets", "targets_with_data", "targets_without_data",
      "targets_first_seen", "targets_dropped", "baseline_uri", "requests", "cost_usd"}``; each
      change is ``{"target", "inputs", "url", "field", "old", "new", "kind", "delta",
      "check_id", "detected_at"}`` (``inputs``: the user's own spellings of the target) with
      ``kind`` ``lost``, ``recovered``, ``lost_date_changed``, ``broken_backlinks_increased`` /
      ``broken_backlinks_decreased`` (``delta`` = new - old) or ``changed``. Each change is
      appended once to the changes feed beside the baseline (:mod:`airflow_provider_dataforseo.feed`),
      then one message goes to each notifier. A change is reported once: the check stores the
      new values together with the changes as pending, and they are delivered even if the task
      dies in between (:mod:`airflow_provider_dataforseo.watch`).
    - **No baseline yet**: the first check stores one and keeps waiting; with
      ``succeed_on_first_run=True`` it succeeds instead, with ``status`` ``"baseline_stored"`` and
      no changes.
    - **No data**: a target missing from a reply is never "lost": it keeps its stored values. A
      failed fetch stores nothing. A permanent API error (credentials, payment, invalid request)
      fails the task with the API's message (``AirflowFailException``); transient ones (5xx,
      timeouts, storage errors, an unreadable targets file) are retried by the hook, then by
      Airflow's ``retries``, in every mode, deferred too.
    - **Notifiers** (``BaseNotifier`` instances, e.g. ``SmtpNotifier``, ``SlackNotifier``) get the
      Airflow context plus ``backlinks_alert`` = ``{"subject", "text", "html", "changes",
      "counts"}``, so their templates can say ``"{{ backlinks_alert.subject }}"``. Sending is
      best-effort: a failing notifier is logged and never loses the change (it is in XCom).
    - **Deferrable** (``deferrable=True``, default from ``[operators] default_deferrable``): the
      checks run in :class:`BacklinksChangeTrigger` on the triggerer; ``timeout`` still applies.
    - **soft_fail=True** skips the task only when ``timeout`` (or ``execution_timeout``) passes
      without a change (:data:`SOFT_FAIL_SKIPS`), in every mode. Any other failure still fails the
      task: a permanent API error or bad input at once (``AirflowFailException``, no retries), a
      transient one with Airflow's ``retries``. (Airflow's own ``BaseSensorOperator`` would skip
      those too.) ``never_fail=True`` keeps Airflow's meaning: every failure is a skip.

    :param targets: (templated) a list of targets, a text of them, or a file URI, as for
        :class:`~airflow_provider_dataforseo.operators.bulk_pages_summary.BulkPagesSummaryOperator`.
    :param baseline_path: (templated) ObjectStoragePath URI of the folder that keeps baselines,
        e.g. ``"file:///data/dataforseo/baselines/"`` or ``"s3://aws_default@bucket/baselines/"``.
        The file's name carries a hash of ``watch_id``, ``include_subdomains`` and
        ``rank_scale``; the changes feed lies beside it.
    :param watch_fields: item fields to compare; default ``("lost_date", "broken_backlinks")``.
    :param include_subdomains: (templated) request option (API default ``True``); ``"false"``,
        ``"False"``, ``"0"`` (a rendered Param) mean ``False``
        (:func:`~airflow_provider_dataforseo.flags.as_bool`).
    :param rank_scale: (templated) ``"one_thousand"`` / ``"one_hundred"`` or ``None`` (API
        default); matters for the ``rank`` fields.
    :param watch_id: (templated) the watch's name, which keys its baseline file and feed; default
        ``"<dag_id>.<task_id>"``, with ``[<map_index>]`` appended for a mapped task instance, so
        the instances of ``.expand()`` keep baselines apart. Two sensors with the same
        ``watch_id``, ``baseline_path`` and options share a baseline: give them different ones.
    :param dataforseo_conn_id: the DataForSEO connection.
    :param notifiers: ``BaseNotifier`` instances told about each change set.
    :param succeed_on_first_run: succeed (with no changes) when the first baseline is stored,
        instead of waiting for a change.
    :param max_active_requests: requests in flight per check, 1-30.
    :param hook_params: extra keyword arguments for :class:`DataForSeoHook` (timeouts, retries).
    :param deferrable: run the checks in the triggerer instead of a worker slot.
    :raises ValueError: for bad ``watch_fields``, ``max_active_requests``, ``include_subdomains``
        or ``rank_scale`` (templates are checked when rendered).
    :raises TypeError: when a notifier is not a ``BaseNotifier``.
    """

    template_fields: Sequence[str] = (
        "targets",
        "baseline_path",
        "include_subdomains",
        "rank_scale",
        "watch_id",
    )
    ui_color = "#fbbc04"

    def __init__(
        self,
        *,
        targets: Any,
        baseline_path: str,
        watch_fields: Sequence[str] = DEFAULT_WATCH_FIELDS,
        include_subdomains: bool | str = True,
        rank_scale: str | None = None,
        watch_id: str | None = None,
        dataforseo_conn_id: str = DataForSeoHook.default_conn_name,
        notifiers: Sequence[BaseNotifier] | None = None,
        succeed_on_first_run: bool = False,
        max_active_requests: int = 5,
        hook_params: dict[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= max_active_requests <= api.MAX_SIMULTANEOUS_REQUESTS:
            raise ValueError(
                f"max_active_requests must be 1-{api.MAX_SIMULTANEOUS_REQUESTS}, got {max_active_requests!r}"
            )
        for notifier in notifiers or ():
            if not isinstance(notifier, BaseNotifier):
                raise TypeError(f"notifiers must be BaseNotifier instances, got {notifier!r}")
        self.targets = targets
        self.baseline_path = baseline_path
        self.watch_fields = check_watch_fields(watch_fields)
        if not _is_template(include_subdomains):
            as_bool(include_subdomains, "include_subdomains")  # refused now, naming the value
        if not _is_template(rank_scale):
            as_rank_scale(rank_scale)
        self.include_subdomains = include_subdomains
        self.rank_scale = rank_scale
        self.watch_id = watch_id
        self.dataforseo_conn_id = dataforseo_conn_id
        self.notifiers = list(notifiers or ())
        self.succeed_on_first_run = succeed_on_first_run
        self.max_active_requests = max_active_requests
        self.hook_params = hook_params or {}
        check_hook_params(self.hook_params)  # refused now, not by every request later
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> DataForSeoHook:
        """The DataForSEO hook, sized for ``max_active_requests``."""
        params = {"pool_maxsize": self.max_active_requests, **self.hook_params}
        return DataForSeoHook(self.dataforseo_conn_id, **params)

    # -- checks ----------------------------------------------------------------------------------

    def _raw_targets(self) -> list[Any] | str:
        """The rendered ``targets`` as the user gave them: a text (or a file URI) as is, any other
        iterable (a list, a tuple, a mapped task's ``LazyXComSequence``...) as a list of entries.

        The one place where ``targets`` is coerced: the poke, the deferral (the trigger gets these
        same raw entries and normalises them once, with the same function, so both key the
        baseline alike) and the alert's ``inputs`` all start from it.

        :raises AirflowFailException: for a value of an unsupported type.
        """
        if isinstance(self.targets, str):
            return self.targets.strip() if is_storage_uri(self.targets) else self.targets
        try:
            return coerce_targets(self.targets)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc

    def _target_set(self) -> TargetSet:
        """The validated targets; bad input fails the task at once (no retry), a source that could
        not be read this time (a missing or unreadable file, storage errors) is retried by Airflow.
        """
        try:
            return read_targets(self._raw_targets())
        except Exception as exc:
            if is_permanent(exc):
                raise AirflowFailException(str(exc)) from exc
            raise

    def _options(self) -> tuple[bool, str | None]:
        """``(include_subdomains, rank_scale)`` as rendered, read by :mod:`.flags`."""
        try:
            return as_bool(self.include_subdomains, "include_subdomains"), as_rank_scale(self.rank_scale)
        except ValueError as exc:
            raise AirflowFailException(f"{exc}. Nothing was sent.") from exc

    def _watch_id(self, context: Context) -> str:
        """``watch_id`` as rendered, or ``"<dag_id>.<task_id>"`` (``"...[<map_index>]"`` when mapped)."""
        if self.watch_id is not None and str(self.watch_id).strip():
            return str(self.watch_id).strip()
        map_index = getattr(context.get("ti"), "map_index", -1)
        suffix = f"[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{suffix}"

    def _store(self, context: Context) -> BaselineStore:
        if not isinstance(self.baseline_path, str) or not self.baseline_path.strip():
            raise AirflowFailException(
                f"baseline_path must be an object storage URI, got {self.baseline_path!r}"
            )
        include_subdomains, rank_scale = self._options()
        return BaselineStore(
            ObjectStoragePath(self.baseline_path.strip()),
            watch_id=self._watch_id(context),
            include_subdomains=include_subdomains,
            rank_scale=rank_scale,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        target_set = self._target_set()
        include_subdomains, rank_scale = self._options()
        post = partial(
            self.hook.bulk_pages_summary, include_subdomains=include_subdomains, rank_scale=rank_scale
        )
        try:
            with fail_task_on_permanent_errors(BaselineError):
                result = poll(
                    target_set,
                    post,
                    self._store(context),
                    self.watch_fields,
                    max_active_requests=self.max_active_requests,
                )
        finally:
            self.hook.close()
        self._log_result(result)
        if result.status == CHANGED or (result.status == BASELINE_STORED and self.succeed_on_first_run):
            return PokeReturnValue(is_done=True, xcom_value=result.as_dict())
        return False

    def _log_result(self, result: PollResult) -> None:
        if result.without_data:
            self.log.info(
                "No data this time for %s (their stored values are kept): %s",
                counted(len(result.without_data), "target"),
                ", ".join(result.without_data[:50]),
            )
        if result.first_seen:
            self.log.info(
                "First values stored for %s (no alert on first sight): %s",
                counted(len(result.first_seen), "new target"),
                ", ".join(result.first_seen[:50]),
            )
        if result.dropped:
            self.log.info(
                "Forgot %s no longer watched: %s",
                counted(len(result.dropped), "target"),
                ", ".join(result.dropped[:50]),
            )
        if result.status == BASELINE_STORED:
            self.log.info(
                "No baseline yet: stored the values of %s (%d with data) at %s; %s",
                counted(result.targets, "target"),
                result.targets_with_data,
                result.baseline_uri,
                "succeeding (succeed_on_first_run)" if self.succeed_on_first_run else "waiting for a change",
            )
        elif result.status == CHANGED:
            counts = count_changes(result.changes)
            self.log.info(
                "%s on %s:", counted(counts["total"], "change"), counted(counts["targets"], "target")
            )
            for change in result.changes[:LOGGED_CHANGES]:
                self.log.info("  %s", change_line(change))
        else:
            self.log.info(
                "No change in %s; cost %.5f USD", counted(result.targets, "target"), result.cost_usd
            )

    # -- execution -------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        with self._soft_fail_skips_timeouts_only():
            if self.deferrable:
                self._defer(context)
            result = super().execute(context)
        return self._deliver(context, result)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger (see :meth:`execute_complete`); ``soft_fail`` skips only a timeout."""
        with self._soft_fail_skips_timeouts_only():
            return super().resume_execution(next_method, next_kwargs, context)

    @contextmanager
    def _soft_fail_skips_timeouts_only(self) -> Iterator[None]:
        """Undo ``BaseSensorOperator``'s ``soft_fail`` skip of anything but a timeout.

        Airflow's ``execute`` (poke) and ``resume_execution`` (deferred) turn any
        ``AirflowFailException`` (resp. ``AirflowException``) into ``AirflowSkipException(...) from
        error`` when ``soft_fail`` is set, so bad credentials or an empty account would end the task
        green. Here the skip's cause is raised again instead, unless it is one of
        :data:`SOFT_FAIL_SKIPS`. ``never_fail`` (exclusive with ``soft_fail``) is left as Airflow
        defines it.

        :raises AirflowFailException: a permanent DataForSEO error or bad input (the API's / the
            input's message; no retries).
        :raises AirflowException: a transient error the trigger reported (Airflow's ``retries`` apply).
        """
        try:
            yield
        except AirflowSkipException as skip:
            failure = skip.__cause__
            if not self.soft_fail or failure is None or isinstance(failure, SOFT_FAIL_SKIPS):
                raise
            self.log.warning(
                "soft_fail skips only a timeout without change; failing on %s", type(failure).__name__
            )
            raise failure from failure.__cause__

    def _defer(self, context: Context) -> None:
        self._target_set()  # bad input fails here, before deferring
        include_subdomains, rank_scale = self._options()
        store = self._store(context)
        end_at = datetime.now(timezone.utc) + timedelta(seconds=self.timeout)
        self.defer(
            trigger=BacklinksChangeTrigger(
                # the raw entries, not their normal form: the trigger normalises them once, with
                # the same function, so both sides key the baseline alike
                targets=self._raw_targets(),
                baseline_path=str(self.baseline_path).strip(),
                watch_fields=list(self.watch_fields),
                include_subdomains=include_subdomains,
                rank_scale=rank_scale,
                watch_id=store.watch_id,
                dataforseo_conn_id=self.dataforseo_conn_id,
                poke_interval=self.poke_interval,
                commit_baseline=False,
                succeed_on_first_run=self.succeed_on_first_run,
                end_at=end_at.isoformat(),
                max_active_requests=self.max_active_requests,
                hook_params=self.hook_params,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after :class:`BacklinksChangeTrigger` fired.

        :raises AirflowFailException: the trigger met a permanent error (the API's message).
        :raises AirflowException: the trigger met a transient error (Airflow may retry).
        :raises AirflowSensorTimeout: no change before ``timeout``.
        """
        if not event:
            raise AirflowException("BacklinksChangeTrigger ended without an event")
        status = event.get("status")
        if status == ERROR:
            message = str(event.get("message"))
            if event.get("retryable"):
                raise AirflowException(message)
            raise AirflowFailException(message)
        if status == TIMEOUT:
            raise AirflowSensorTimeout(str(event.get("message")))
        if status not in (CHANGED, BASELINE_STORED):
            raise AirflowException(f"Unexpected event from BacklinksChangeTrigger: {event!r:.300}")
        return self._deliver(context, event)

    def _deliver(self, context: Context, result: Any) -> Any:
        """Append the changes to the feed, notify, then clear them from the outbox; return the XCom.

        :raises OSError: when the feed cannot be written (the task fails and Airflow retries; the
            changes stay pending, so the next try reports them again and writes each feed line once).
        """
        if isinstance(result, dict) and result.get("changes"):
            store = self._store(context)
            written = deliver(store, result["changes"])
            self.log.info(
                "Changes feed: %s appended under %s", counted(written, "line"), feed_of(store).folder
            )
            self._notify(context, result)
            acknowledge(store, result["changes"])
        return result

    def _notify(self, context: Context, result: dict[str, Any]) -> None:
        """Send one message to each notifier, best-effort (failures are logged)."""
        if not self.notifiers:
            return
        alert = {
            **render_message(result["changes"]),
            "changes": result["changes"],
            "counts": result["counts"],
        }
        notify_context = cast("Context", {**context, ALERT_CONTEXT_KEY: alert})
        for notifier in self.notifiers:
            name = type(notifier).__name__
            try:
                send(copy.copy(notifier), notify_context)
            except Exception as exc:
                self.log.warning(
                    "Notifier %s failed (%s: %s); the changes are in this task's XCom",
                    name,
                    type(exc).__name__,
                    exc,
                )
            else:
                self.log.info("Notifier %s sent: %s", name, alert["subject"])


def _is_template(value: object) -> bool:
    """Whether ``value`` is a Jinja template still to render (checked after rendering instead)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def send(notifier: BaseNotifier, context: Context) -> None:
    """Call a notifier synchronously, or through its ``async_notify`` when it has only that.

    :param notifier: a ``BaseNotifier`` (rendered against ``context``; pass a copy to keep the
        original's templates).
    :param context: the context, with :data:`ALERT_CONTEXT_KEY` set.
    :raises Exception: whatever the notifier raises.
    """
    kind = type(notifier)
    if kind.notify is BaseNotifier.notify and kind.async_notify is not BaseNotifier.async_notify:
        notifier.context = context

        async def _send() -> None:
            await notifier

        asyncio.run(_send())
        return
    notifier(context)
