"""BacklinksChangeSensor: wait until a page's ``lost_date``, ``broken_backlinks`` (or any field) changes."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseNotifier, BaseSensorOperator, ObjectStoragePath, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.baseline import BaselineError, BaselineStore
from airflow_provider_dataforseo.changes import (
    DEFAULT_WATCH_FIELDS,
    change_line,
    check_watch_fields,
    count_changes,
    render_message,
)
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.hooks.dataforseo import (
    DataForSeoHook,
    check_hook_params,
    fail_task_on_permanent_errors,
)
from airflow_provider_dataforseo.operators.bulk_pages_summary import read_targets
from airflow_provider_dataforseo.sources import is_storage_uri
from airflow_provider_dataforseo.triggers.backlinks_change import ERROR, TIMEOUT, BacklinksChangeTrigger
from airflow_provider_dataforseo.watch import BASELINE_STORED, CHANGED, PollResult, commit, poll
from airflow_provider_dataforseo.wording import counted

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_dataforseo.targets import TargetSet

#: Key of the alert in the context handed to notifiers: ``{"subject", "text", "html", "changes",
#: "counts"}``; use it in a notifier's templates, e.g. ``subject="{{ backlinks_alert.subject }}"``.
ALERT_CONTEXT_KEY = "backlinks_alert"
#: Changes named one by one in the task log (the rest are counted).
LOGGED_CHANGES = 50


class BacklinksChangeSensor(BaseSensorOperator):
    """Succeed when a watched field of any target's backlink summary changes.

    Each check fetches the targets through the operator's path (same targets, same planning into
    <= 1000 targets / <= 100 main domains per request, the hook's retries) and compares the
    watched fields with the baseline kept in object storage under ``baseline_path`` (see
    :mod:`airflow_provider_dataforseo.baseline`). Cost per check: 0.02 USD per request plus
    0.00003 USD per item.

    - **Change**: the sensor succeeds and returns (XCom) ``{"status": "changed", "changes": [...],
      "counts": {...}, "targets", "targets_with_data", "targets_without_data", "baseline_uri",
      "requests", "cost_usd"}``; each change is ``{"target", "url", "field", "old", "new",
      "kind", "delta"}`` with ``kind`` ``lost``, ``recovered``, ``lost_date_changed``,
      ``broken_backlinks_increased`` / ``broken_backlinks_decreased`` (``delta`` = new - old) or
      ``changed``. It then sends one message to each notifier and stores the new values.
    - **No baseline yet**: the first check stores one and keeps waiting; with
      ``succeed_on_first_run=True`` it succeeds instead, with ``status`` ``"baseline_stored"`` and
      no changes.
    - **No data**: a target missing from a reply is never "lost": it keeps its stored values. A
      failed fetch stores nothing. A permanent API error (credentials, payment, invalid request)
      fails the task with the API's message (``AirflowFailException``); transient ones are
      retried by the hook, then by Airflow's ``retries``.
    - **Notifiers** (``BaseNotifier`` instances, e.g. ``SmtpNotifier``, ``SlackNotifier``) get the
      Airflow context plus ``backlinks_alert`` = ``{"subject", "text", "html", "changes",
      "counts"}``, so their templates can say ``"{{ backlinks_alert.subject }}"``. Sending is
      best-effort: a failing notifier is logged and never loses the change (it is in XCom).
    - **Deferrable** (``deferrable=True``, default from ``[operators] default_deferrable``): the
      checks run in :class:`BacklinksChangeTrigger` on the triggerer; ``timeout`` still applies.

    :param targets: (templated) a list of targets, a text of them, or a file URI, as for
        :class:`~airflow_provider_dataforseo.operators.bulk_pages_summary.BulkPagesSummaryOperator`.
    :param baseline_path: (templated) ObjectStoragePath URI of the folder that keeps baselines,
        e.g. ``"file:///data/dataforseo/baselines/"`` or ``"s3://aws_default@bucket/baselines/"``.
        The file's name carries a hash of the targets, ``watch_fields`` and
        ``include_subdomains``, so different watches never share one.
    :param watch_fields: item fields to compare; default ``("lost_date", "broken_backlinks")``.
    :param include_subdomains: request option (API default ``True``).
    :param dataforseo_conn_id: the DataForSEO connection.
    :param notifiers: ``BaseNotifier`` instances told about each change set.
    :param succeed_on_first_run: succeed (with no changes) when the first baseline is stored,
        instead of waiting for a change.
    :param max_active_requests: requests in flight per check, 1-30.
    :param hook_params: extra keyword arguments for :class:`DataForSeoHook` (timeouts, retries).
    :param deferrable: run the checks in the triggerer instead of a worker slot.
    :raises ValueError: for bad ``watch_fields`` or ``max_active_requests``.
    :raises TypeError: when a notifier is not a ``BaseNotifier``.
    """

    template_fields: Sequence[str] = ("targets", "baseline_path")
    ui_color = "#fbbc04"

    def __init__(
        self,
        *,
        targets: Any,
        baseline_path: str,
        watch_fields: Sequence[str] = DEFAULT_WATCH_FIELDS,
        include_subdomains: bool = True,
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
        self.include_subdomains = include_subdomains
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

    def _target_set(self) -> TargetSet:
        try:
            return read_targets(self.targets)
        except (InvalidTargetsError, TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc

    def _store(self, target_set: TargetSet) -> BaselineStore:
        if not isinstance(self.baseline_path, str) or not self.baseline_path.strip():
            raise AirflowFailException(
                f"baseline_path must be an object storage URI, got {self.baseline_path!r}"
            )
        return BaselineStore(
            ObjectStoragePath(self.baseline_path.strip()),
            targets=target_set.targets,
            watch_fields=self.watch_fields,
            include_subdomains=self.include_subdomains,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        target_set = self._target_set()
        post = partial(self.hook.bulk_pages_summary, include_subdomains=self.include_subdomains)
        try:
            with fail_task_on_permanent_errors(BaselineError):
                result = poll(
                    target_set,
                    post,
                    self._store(target_set),
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
        if self.deferrable:
            self._defer()
        return self._deliver(context, super().execute(context))

    def _defer(self) -> None:
        target_set = self._target_set()  # bad input fails here, before deferring
        self._store(target_set)
        targets = self.targets.strip() if is_storage_uri(self.targets) else list(target_set.targets)
        end_at = datetime.now(timezone.utc) + timedelta(seconds=self.timeout)
        self.defer(
            trigger=BacklinksChangeTrigger(
                targets=targets,
                baseline_path=str(self.baseline_path).strip(),
                watch_fields=list(self.watch_fields),
                include_subdomains=self.include_subdomains,
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
        """Notify, then store the delivered changes in the baseline; return the XCom value."""
        if isinstance(result, dict) and result.get("changes"):
            self._notify(context, result)
            store = self._store(self._target_set())
            if store.uri != result.get("baseline_uri"):
                # the targets (e.g. a file) changed since the check: that is another watch now
                self.log.warning(
                    "The targets changed since the check (baseline %s, now %s); not storing the changes",
                    result.get("baseline_uri"),
                    store.uri,
                )
                return result
            commit(store, result["changes"])
            self.log.info("Stored the new values in %s", store.uri)
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
