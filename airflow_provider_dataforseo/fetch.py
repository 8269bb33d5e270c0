"""Post planned chunks with bounded concurrency and turn replies into rows.

Pure module: no Airflow import. The Airflow operator (and the sensor) call
:func:`fetch_bulk_pages_summary` with a ``post`` callable (the hook's ``bulk_pages_summary``) and
a ``sink`` that stores rows as they arrive, so memory is bounded by the requests in flight, not by
the number of targets.

A row is one JSON object per item::

    {"target": "https://x.com/", "inputs": ["HTTPS://X.com"], "task_id": "...", "item": {...}}

``item`` is the API's item untouched; ``inputs`` lists every original input string that
normalised to ``target``. An item whose ``url`` answers no target of its request is still kept,
with ``"target": null`` and ``"inputs": []`` (nothing fetched is dropped).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NoReturn

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import DataForSeoError, DataForSeoInvalidRequestError
from airflow_provider_dataforseo.heap import frozen_heap
from airflow_provider_dataforseo.isolation import RefusalSearch
from airflow_provider_dataforseo.ratelimit import (
    CostBudget,
    CostLimitExceededError,
    RequestsStoppedError,
    estimate_cost_usd,
    request_cost_bound_usd,
)
from airflow_provider_dataforseo.responses import MatchedItems, TaskResult, match_items
from airflow_provider_dataforseo.targets import normalise_target
from airflow_provider_dataforseo.wording import counted
from airflow_provider_dataforseo.workers import DaemonPool

if TYPE_CHECKING:
    from airflow_provider_dataforseo.targets import TargetSet

log = logging.getLogger(__name__)

Row = dict[str, Any]
PostChunk = Callable[[list[str]], TaskResult]
Sink = Callable[[list[Row]], None]

#: Requests one chunk may spend isolating targets the API refuses with 40501 (see
#: :mod:`.isolation`): enough for 5 refused targets among 1000 (at most 57 requests), or 1 in 1000
#: (at most 14). Each refused request is free; each that passes is charged like any request.
DEFAULT_MAX_ISOLATION_REQUESTS: Final = 64
#: Follow-up requests one chunk may spend on targets an incomplete reply left out (a reply whose
#: ``items`` hold fewer entries than its ``items_count`` says).
DEFAULT_MAX_INCOMPLETE_RETRIES: Final = 3
#: Seconds an interrupted fetch waits for the replies in flight, to store what was paid for.
DEFAULT_INTERRUPT_GRACE_SECONDS: Final = 15.0
#: How many targets of a failed request an error message names.
TARGETS_NAMED_IN_ERRORS: Final = 5
_QUOTED_FIELD_RE: Final = re.compile(r"'([^']*)'")


@dataclass
class FetchSummary:
    """Totals of one fetch.

    :ivar targets: distinct normalised targets asked for.
    :ivar requests: requests that succeeded (each one charged).
    :ivar planned_requests: requests planned.
    :ivar items: items received and written (matched and unmatched).
    :ivar cost_usd: sum of the tasks' ``cost``, USD.
    :ivar missing_targets: targets that no item answered, in input order.
    :ivar unmatched_items: items whose ``url`` answered no target (kept with ``target: null``).
    :ivar task_ids: the API's ids of the successful tasks.
    :ivar rejected_targets: targets the API refused with 40501, isolated by group testing (see
        :mod:`.isolation`), in input order (no row; nothing charged for them).
    :ivar unresolved_targets: targets of refused requests that the isolation could not settle
        within its allowance or the cost cap, in input order (no row; maybe refused, maybe not).
    :ivar resumed_chunks: chunks taken from a checkpoint of an earlier try (nothing sent for them;
        their requests, items and cost are included in the totals).
    """

    targets: int
    planned_requests: int
    requests: int = 0
    items: int = 0
    cost_usd: float = 0.0
    missing_targets: list[str] = field(default_factory=list)
    unmatched_items: int = 0
    task_ids: list[str] = field(default_factory=list)
    rejected_targets: list[str] = field(default_factory=list)
    unresolved_targets: list[str] = field(default_factory=list)
    resumed_chunks: int = 0

    def add(self, outcome: ChunkOutcome) -> None:
        """Add one finished chunk to the totals."""
        self.requests += outcome.requests
        self.items += outcome.items
        self.cost_usd += outcome.cost_usd
        self.unmatched_items += outcome.unmatched_items
        self.task_ids.extend(outcome.task_ids)
        self.missing_targets.extend(outcome.missing_targets)
        self.rejected_targets.extend(outcome.rejected_targets)
        self.unresolved_targets.extend(outcome.unresolved_targets)
        self.resumed_chunks += int(outcome.resumed)

    def manifest(self, uri: str | None) -> dict[str, Any]:
        """The small XCom-sized description of the run.

        :param uri: where the rows were written (``None`` when returned through XCom).
        :return: ``{"uri", "targets", "items", "requests", "cost_usd", "missing_targets",
            "unmatched_items", "rejected_targets", "unresolved_targets"}``; ``cost_usd`` is what the
            replies reported as charged (USD, every try of the task included); ``missing_targets`` is
            a count (names are in the task log); ``rejected_targets`` lists the targets the API
            refused (40501); ``unresolved_targets`` those of refused requests whose isolation ran out
            of its allowance or of money (no rows; send them again in a smaller run to settle them).
        """
        return {
            "uri": uri,
            "targets": self.targets,
            "items": self.items,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 6),
            "missing_targets": len(self.missing_targets),
            "unmatched_items": self.unmatched_items,
            "rejected_targets": list(self.rejected_targets),
            "unresolved_targets": list(self.unresolved_targets),
        }


@dataclass
class ChunkOutcome:
    """What one planned chunk gave, over every request it took.

    :ivar index: the chunk's 0-based position in the plan.
    :ivar targets: targets in the chunk.
    :ivar rows: its rows in chunk order, unmatched items last (empty when resumed from a checkpoint:
        they are stored there).
    :ivar items: how many rows it gave.
    :ivar requests: successful (charged) requests it took: 1, more after isolating refused targets
        or follow-ups.
    :ivar cost_usd: what those replies reported as charged, USD.
    :ivar missing_targets: targets no item answered, in chunk order.
    :ivar rejected_targets: targets the API refused with 40501, in chunk order.
    :ivar unresolved_targets: targets of a refused request the isolation could not settle, in
        chunk order.
    :ivar unmatched_items: rows whose item answered no target.
    :ivar task_ids: the API's ids of its successful tasks.
    :ivar resumed: whether it was taken from a checkpoint instead of fetched.
    :ivar pending: targets not fetched yet when the chunk was interrupted (empty: the chunk is
        complete). A checkpoint keeps an interrupted chunk's rows, and a later try fetches only
        these targets.
    """

    index: int
    targets: int
    rows: list[Row] = field(default_factory=list, repr=False)
    items: int = 0
    requests: int = 0
    cost_usd: float = 0.0
    missing_targets: list[str] = field(default_factory=list)
    rejected_targets: list[str] = field(default_factory=list)
    unresolved_targets: list[str] = field(default_factory=list)
    unmatched_items: int = 0
    task_ids: list[str] = field(default_factory=list)
    resumed: bool = False
    pending: list[str] = field(default_factory=list)


class ChunkInterrupted(Exception):
    """A chunk failed after some of its requests succeeded; what they gave is in ``outcome``.

    :param outcome: the chunk's rows and counts so far; ``outcome.pending`` lists the targets
        still to fetch.
    :param cause: the error that stopped it.
    """

    def __init__(self, outcome: ChunkOutcome, cause: Exception) -> None:
        super().__init__(str(cause))
        self.outcome = outcome
        self.cause = cause


def rows_for_chunk(
    result: TaskResult, chunk: Sequence[str], target_set: TargetSet
) -> tuple[list[Row], list[str]]:
    """Match one task's items to its chunk and build rows.

    :param result: the task's result.
    :param chunk: the normalised targets that were sent.
    :param target_set: gives each target's original inputs.
    :return: ``(rows, missing_targets)``; rows in chunk order, then unmatched items.
    """
    matched: MatchedItems[Any] = (
        match_items(result.raw_items, chunk, urls=result.item_urls)
        if result.raw_items is not None
        else match_items(result.items, chunk)
    )
    by_target = matched.by_target
    inputs = target_set.inputs
    task_id = result.task_id
    rows: list[Row] = [
        {
            "target": target,
            "inputs": list(inputs[target]) if target in inputs else [target],
            "task_id": task_id,
            "item": by_target[target],
        }
        for target in chunk
        if target in by_target
    ]
    rows.extend(
        {"target": None, "inputs": [], "task_id": result.task_id, "item": item} for item in matched.unmatched
    )
    return rows, matched.missing


@frozen_heap()  # collections skip the heap alive before the fetch (see heap.py): ~25x cheaper rows
def fetch_bulk_pages_summary(
    target_set: TargetSet,
    chunks: Sequence[list[str]],
    post: PostChunk,
    sink: Sink,
    *,
    max_active_requests: int,
    done: Mapping[int, ChunkOutcome] | None = None,
    on_chunk: Callable[[ChunkOutcome], None] | None = None,
    max_cost_usd: float | None = None,
    unconfirmed_usd: float = 0.0,
    max_isolation_requests: int = DEFAULT_MAX_ISOLATION_REQUESTS,
    max_incomplete_retries: int = DEFAULT_MAX_INCOMPLETE_RETRIES,
    interrupt_grace_seconds: float = DEFAULT_INTERRUPT_GRACE_SECONDS,
    on_interrupt: Callable[[], None] | None = None,
    standby_chunks: int = 0,
) -> FetchSummary:
    """Fetch every chunk, at most ``max_active_requests`` at a time, and hand rows to ``sink``.

    Each chunk is fetched by :func:`fetch_chunk` (40501 isolation, follow-ups of incomplete
    replies). Slots freed by finished chunks are refilled before their rows are written, so at
    most ``2 x (max_active_requests + standby_chunks)`` chunks' rows are held at once. Rows reach
    ``sink`` a whole chunk at a time, in the order chunks complete, from the calling thread only; then
    ``on_chunk`` gets the chunk's :class:`ChunkOutcome` (to record it in a checkpoint). When a
    chunk fails for good, no further chunk is started and ``on_interrupt`` stops the others'
    retries; those in flight get ``interrupt_grace_seconds`` to finish and their rows are still
    handed over; a chunk stopped half-way hands what it got to ``on_chunk`` only (``pending``
    non-empty); then the first error is raised. Requests run in daemon threads
    (:class:`~airflow_provider_dataforseo.workers.DaemonPool`): one left hung never keeps the
    process alive.

    :param target_set: the targets and their original inputs.
    :param chunks: the planned requests (see :func:`~airflow_provider_dataforseo.chunks.plan_chunks`).
    :param post: sends one list of targets, returns its checked result (retries are its business).
    :param sink: stores a list of rows.
    :param max_active_requests: chunks fetched at once (1-30).
    :param done: outcomes an earlier try stored, by chunk index (from a checkpoint). A complete one
        is counted in the summary and not fetched again; an interrupted one (``pending``
        non-empty) is completed by fetching only its ``pending`` targets. Neither is handed to
        ``sink``; only the newly fetched part of the latter reaches ``sink`` and ``on_chunk``.
    :param on_chunk: called with each newly finished or interrupted chunk's outcome, after ``sink``.
    :param max_cost_usd: the most this run may spend, USD (what ``done`` chunks cost included), or
        ``None``. The plan's estimate (requests x $0.02 + targets x $0.00003) must fit before
        anything is sent, and is then set aside for the planned requests; every request must fit,
        at its upper bound, beside the spend and the requests in flight before it is sent, and a
        request that is not a chunk's first (isolating refused targets, follow-ups) also beside
        what is still set aside for the plan.
    :param unconfirmed_usd: what earlier tries may have spent beyond what ``done`` chunks cost
        (replies never stored, requests whose reply was never read, at their upper bound), USD:
        counted against ``max_cost_usd`` and named apart when a request is refused.
    :param max_isolation_requests: requests one chunk may spend isolating targets refused with
        40501 (see :func:`fetch_chunk`); the targets still unsettled then are reported in
        ``unresolved_targets`` and the run goes on.
    :param max_incomplete_retries: follow-up requests one chunk may spend on targets an
        incomplete reply left out.
    :param interrupt_grace_seconds: when this thread is interrupted (an exception raised in it
        while waiting or writing, such as Airflow's ``execution_timeout``) or a chunk fails for
        good: how long to wait, seconds, for the requests in flight, whose replies are then still
        handed to ``sink`` and ``on_chunk`` (they are paid for); requests not started are dropped
        and later replies are left behind (their daemon threads do not keep the process alive).
        The interruption or the chunk's error is then raised.
    :param on_interrupt: called first in either case, to stop every further HTTP attempt,
        retries and backoff waits inside ``post`` included (the operator passes its limiter's
        :meth:`~airflow_provider_dataforseo.ratelimit.RequestLimiter.close`).
    :param standby_chunks: chunks started beyond ``max_active_requests`` (default 0), for a
        ``post`` whose :class:`~airflow_provider_dataforseo.ratelimit.RequestLimiter` lets at most
        ``max_active_requests`` requests be in flight (the operator's hook): they wait in the
        limiter, so that a request slot freed when a reply's body has been read is taken at once,
        while that reply is still being decoded, instead of after it (on a busy CPU, when many
        replies arrive together). Up to that many more requests may thus leave between a chunk's
        failure and the end of the run (each within ``max_cost_usd``). With a ``post`` that no
        such limiter guards, leave it 0, or more than ``max_active_requests`` requests would be
        in flight.
    :return: the :class:`FetchSummary`.
    :raises CostLimitExceededError: before anything is sent when the estimate does not fit
        ``max_cost_usd``, or while running before a request that might not fit.
    :raises Exception: the first error a chunk raised (a
        :class:`~airflow_provider_dataforseo.exceptions.DataForSeoError` names the request's target
        count and first targets), after chunks in flight finished.
    :raises ValueError: when ``max_active_requests`` is below 1 (nothing could ever be sent) or
        ``standby_chunks`` below 0 (naming the value).
    """
    if max_active_requests < 1:
        raise ValueError(f"max_active_requests must be at least 1, got {max_active_requests!r}")
    if standby_chunks < 0:
        raise ValueError(f"standby_chunks must be at least 0, got {standby_chunks!r}")
    run = FetchRun(
        target_set,
        chunks,
        post,
        sink,
        max_active_requests=max_active_requests,
        done=done,
        on_chunk=on_chunk,
        max_cost_usd=max_cost_usd,
        unconfirmed_usd=unconfirmed_usd,
        max_isolation_requests=max_isolation_requests,
        max_incomplete_retries=max_incomplete_retries,
        interrupt_grace_seconds=interrupt_grace_seconds,
        on_interrupt=on_interrupt,
        standby_chunks=standby_chunks,
    )
    return run.run()


class FetchRun:
    """The state of one :func:`fetch_bulk_pages_summary` call, one method per step.

    :meth:`check_estimate` refuses a plan over the cap before anything is sent; :meth:`start`
    fills the free request slots with chunks; :meth:`hand_over` stores one finished chunk;
    :meth:`stop` ends an interrupted run (store what arrives within the grace period, drop the
    rest); :meth:`run` drives them. Arguments as :func:`fetch_bulk_pages_summary`.
    """

    def __init__(
        self,
        target_set: TargetSet,
        chunks: Sequence[list[str]],
        post: PostChunk,
        sink: Sink,
        *,
        max_active_requests: int,
        done: Mapping[int, ChunkOutcome] | None = None,
        on_chunk: Callable[[ChunkOutcome], None] | None = None,
        max_cost_usd: float | None = None,
        unconfirmed_usd: float = 0.0,
        max_isolation_requests: int = DEFAULT_MAX_ISOLATION_REQUESTS,
        max_incomplete_retries: int = DEFAULT_MAX_INCOMPLETE_RETRIES,
        interrupt_grace_seconds: float = DEFAULT_INTERRUPT_GRACE_SECONDS,
        on_interrupt: Callable[[], None] | None = None,
        standby_chunks: int = 0,
    ) -> None:
        self.target_set = target_set
        self.chunks = chunks
        self.post = post
        self.sink = sink
        self.max_active_requests = max_active_requests
        #: chunks running at once: those in flight and those waiting for a request slot
        self.max_running = max_active_requests + standby_chunks
        self.on_chunk = on_chunk
        self.max_isolation_requests = max_isolation_requests
        self.max_incomplete_retries = max_incomplete_retries
        self.interrupt_grace_seconds = interrupt_grace_seconds
        self.on_interrupt = on_interrupt
        self.stored = {index: outcome for index, outcome in (done or {}).items() if 0 <= index < len(chunks)}
        self.summary = FetchSummary(targets=len(target_set), planned_requests=len(chunks))
        for index in sorted(self.stored):
            if not self.stored[index].pending:
                self.summary.add(self.stored[index])
        self.todo = [
            index for index in range(len(chunks)) if index not in self.stored or self.stored[index].pending
        ]
        self.budget = CostBudget(
            max_cost_usd,
            spent_usd=sum(outcome.cost_usd for outcome in self.stored.values()),
            unconfirmed_usd=unconfirmed_usd,
        )
        self.first_error: BaseException | None = None
        self.running: dict[Future[ChunkOutcome], int] = {}
        self.to_hand_over: deque[tuple[Future[ChunkOutcome], int]] = deque()
        self.position = 0
        self.stopping = False
        self.pool: DaemonPool | None = None

    def check_estimate(self) -> None:
        """Refuse the plan before anything is sent when its estimate does not fit the cap.

        :raises CostLimitExceededError: naming the plan and its estimate.
        """
        stored, chunks, todo, budget = self.stored, self.chunks, self.todo, self.budget
        to_send = sum(len(stored[i].pending) if i in stored else len(chunks[i]) for i in todo)
        estimate = estimate_cost_usd(len(todo), to_send)
        if budget.would_exceed(estimate):
            raise CostLimitExceededError(
                max_cost_usd=budget.max_cost_usd or 0.0,
                spent_usd=budget.spent_usd,
                reserved_usd=0.0,
                needed_usd=estimate,
                unconfirmed_usd=budget.unconfirmed_usd,
                what=f"the plan of {counted(len(todo), 'request')} for {counted(to_send, 'target')} "
                "(requests x 0.02 USD + targets x 0.00003 USD)",
            )
        budget.set_aside(estimate)
        log.info(
            "Estimate: %s for %s, at most %.5f USD; isolating targets the API refuses "
            "(40501), if any, takes at most %s per chunk holding one, paid only from what "
            "max_cost_usd leaves beside the plan",
            counted(len(todo), "request"),
            counted(to_send, "target"),
            estimate,
            counted(self.max_isolation_requests, "more request"),
        )
        if stored:
            log.info(
                "Resuming: chunks stored by an earlier try: %d of %d (%.5f USD spent); fetching %s in %s",
                len(stored),
                len(chunks),
                budget.spent_usd,
                counted(to_send, "target"),
                counted(len(todo), "chunk"),
            )

    def run(self) -> FetchSummary:
        """Fetch every chunk still to do; return the summary or raise the first error."""
        self.check_estimate()
        self.pool = DaemonPool(self.max_running, name="dataforseo")
        try:
            self.start()
            while self.running and self.first_error is None:
                self.collect()
        except BaseException:
            # Interrupted in this thread (Airflow's execution_timeout raises here): nothing new
            # starts, and replies already paid for are still stored if they arrive within the grace
            # period, so that a retry does not pay for them again.
            self.stop()
            raise
        if self.first_error is not None:
            self.stop()  # the same for a chunk that failed for good: no retry runs on behind it
            raise self.first_error
        self.pool.shutdown()
        order = self.target_set.targets
        self.summary.missing_targets = _in_input_order(self.summary.missing_targets, order)
        self.summary.rejected_targets = _in_input_order(self.summary.rejected_targets, order)
        self.summary.unresolved_targets = _in_input_order(self.summary.unresolved_targets, order)
        return self.summary

    def start(self) -> None:
        """Start chunks until every request slot is busy (none after an error or interruption)."""
        assert self.pool is not None
        while (
            not self.stopping
            and self.first_error is None
            and self.position < len(self.todo)
            and len(self.running) < self.max_running
        ):
            index = self.todo[self.position]
            self.position += 1
            future = self.pool.submit(
                fetch_chunk,
                index,
                self.chunks[index],
                self.post,
                self.target_set,
                budget=self.budget,
                max_isolation_requests=self.max_isolation_requests,
                max_incomplete_retries=self.max_incomplete_retries,
                resume=self.stored.get(index),
            )
            self.running[future] = index

    def collect(self) -> None:
        """Wait for chunks to finish, refill their slots, then hand their rows over."""
        completed, _ = wait(self.running, return_when=FIRST_COMPLETED)
        finished = [(future, self.running.pop(future)) for future in completed]
        # errors first (no new chunk starts after one), then the freed slots are refilled
        # BEFORE the finished replies are written, so requests stay in flight meanwhile
        for future, _index in finished:
            error = future.exception()
            if error is not None and self.first_error is None:
                self.first_error = error.cause if isinstance(error, ChunkInterrupted) else error
        self.to_hand_over.extend(finished)
        self.start()
        while self.to_hand_over:
            self.hand_over(*self.to_hand_over.popleft())

    def hand_over(self, future: Future[ChunkOutcome], index: int) -> None:
        """Store one finished chunk: rows to ``sink``, outcome to ``on_chunk``, totals to the summary."""
        error = future.exception()
        if isinstance(error, ChunkInterrupted):
            if self.on_chunk is not None:
                self.on_chunk(error.outcome)
            log.warning(
                "Chunk %d/%d stopped with %d of its %s still to fetch; the rest is kept",
                index + 1,
                len(self.chunks),
                len(error.outcome.pending),
                counted(error.outcome.targets, "target"),
            )
            error = error.cause
        if isinstance(error, RequestsStoppedError) and self.stopping:
            log.info("Request %d/%d not sent: the run was stopped", index + 1, len(self.chunks))
            return
        if error is not None:
            log.error("Request %d/%d failed: %s", index + 1, len(self.chunks), error)
            return
        outcome = future.result()
        self.sink(outcome.rows)
        if self.on_chunk is not None:
            self.on_chunk(outcome)
        self.summary.add(outcome)
        log.info(
            "Request %d/%d: %s, %s, cost %.5f USD (task %s)",
            index + 1,
            len(self.chunks),
            counted(outcome.targets, "target"),
            counted(outcome.items, "item"),
            outcome.cost_usd,
            ", ".join(outcome.task_ids) or None,
        )
        outcome.rows = []  # written: let them go while later chunks are still running

    def stop(self) -> None:
        """After an interruption or an error: start nothing, store what arrives within the grace period.

        ``on_interrupt`` stops every further HTTP attempt (retries and backoff waits included);
        the requests in flight get ``interrupt_grace_seconds`` to answer, and their rows are
        stored; then the worker threads are left behind (daemon threads: they do not keep the
        process alive).
        """
        self.stopping = True
        if self.on_interrupt is not None:
            self.on_interrupt()
        _save_what_arrives(self.running, self.to_hand_over, self.hand_over, self.interrupt_grace_seconds)
        self.running.clear()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _save_what_arrives(
    running: dict[Future[ChunkOutcome], int],
    to_hand_over: deque[tuple[Future[ChunkOutcome], int]],
    hand_over: Callable[[Future[ChunkOutcome], int], None],
    grace_seconds: float,
) -> None:
    """After an interruption: hand over finished chunks, and those in flight that finish in time."""
    for future in running:
        future.cancel()  # not started yet: never sent
    in_flight = [future for future in running if not future.cancelled()]
    if in_flight:
        log.warning(
            "Interrupted with %s in flight: waiting up to %.0f s to store their replies "
            "(they are paid for either way)",
            counted(len(in_flight), "request"),
            grace_seconds,
        )
        wait(in_flight, timeout=grace_seconds)
    to_hand_over.extend((future, running[future]) for future in in_flight if future.done())
    while to_hand_over:
        future, index = to_hand_over.popleft()
        try:
            hand_over(future, index)
        except Exception:  # keep the interruption the error the caller sees
            log.exception("Could not store chunk %d after the interruption", index + 1)
    late = sum(1 for future in in_flight if not future.done())
    if late:
        log.warning("%s still in flight left behind; a retry sends them again", counted(late, "request"))


def _in_input_order(some: list[str], targets: Sequence[str]) -> list[str]:
    """``some`` (a few of ``targets``) in the order of ``targets``, without indexing all targets."""
    if len(some) < 2:
        return list(some)
    wanted = set(some)
    ordered = [target for target in targets if target in wanted]
    if len(ordered) < len(wanted):  # not in ``targets`` (never expected): kept, last
        seen = set(ordered)
        ordered.extend(target for target in some if target not in seen)
    return ordered


def fetch_chunk(
    index: int,
    chunk: Sequence[str],
    post: PostChunk,
    target_set: TargetSet,
    *,
    budget: CostBudget | None = None,
    max_isolation_requests: int = DEFAULT_MAX_ISOLATION_REQUESTS,
    max_incomplete_retries: int = DEFAULT_MAX_INCOMPLETE_RETRIES,
    resume: ChunkOutcome | None = None,
) -> ChunkOutcome:
    """Fetch one planned chunk, recovering what can be recovered without paying twice.

    - A 40501 about ``targets`` (see :func:`is_targets_rejection`): targets the local check
      (:func:`locally_refused`) refuses are set aside without a request, then a
      :class:`~airflow_provider_dataforseo.isolation.RefusalSearch` finds the refused targets in
      about ``d * log2(n / d) + O(d)`` requests for ``d`` refused among ``n``; they are reported in
      ``rejected_targets`` (a refused task costs nothing) and every other target's rows are kept.
      The search stops when it has sent ``max_isolation_requests`` requests, or when the next one
      does not fit the money ``budget`` leaves beside the planned requests; the targets it could
      not settle are reported in ``unresolved_targets`` and the chunk still finishes.
    - An incomplete reply (``items`` shorter than its ``items_count``): its rows are kept and the
      targets it left without an item are asked again, at most ``max_incomplete_retries`` times;
      then they count as missing (and a warning says so).
    - Any other error is raised as the same kind, its message naming the request's target count
      and first targets (:func:`with_request_context`). If earlier requests of the chunk had
      succeeded, it comes wrapped in :class:`ChunkInterrupted` with what they gave, so that it is
      not paid for again.

    :param index: the chunk's position in the plan (0-based).
    :param chunk: its normalised targets.
    :param post: sends one list of targets, returns its checked result.
    :param target_set: gives each target's original inputs.
    :param budget: money guard; each request reserves its upper bound before it is sent (the
        chunk's first request from the plan's share, the others from what is left beside it).
    :param max_isolation_requests: requests one chunk may spend isolating refused targets.
    :param max_incomplete_retries: follow-up requests allowed for incomplete replies.
    :param resume: an interrupted outcome of this chunk from an earlier try: only its ``pending``
        targets are fetched; the result adds up both tries (its ``rows`` are the new ones only).
    :return: the chunk's :class:`ChunkOutcome`, rows in chunk order, unmatched items last.
    :raises ChunkInterrupted: when an error stops the chunk after some of its requests succeeded.
    :raises CostLimitExceededError: before a request (not an isolating one) that might take the
        spend over the limit.
    :raises DataForSeoError: as ``post`` raised it, with the request's targets named.
    """
    return ChunkFetch(
        index,
        chunk,
        post,
        target_set,
        budget=budget,
        max_isolation_requests=max_isolation_requests,
        max_incomplete_retries=max_incomplete_retries,
        resume=resume,
    ).run()


class ChunkFetch:
    """The state of one :func:`fetch_chunk` call: :meth:`run` sends plain pieces, :meth:`isolate`
    searches a refused one, :meth:`keep` stores a reply, :meth:`fail` stops. Arguments as
    :func:`fetch_chunk`.
    """

    def __init__(
        self,
        index: int,
        chunk: Sequence[str],
        post: PostChunk,
        target_set: TargetSet,
        *,
        budget: CostBudget | None,
        max_isolation_requests: int,
        max_incomplete_retries: int,
        resume: ChunkOutcome | None,
    ) -> None:
        self.index = index
        self.chunk = chunk
        self.post = post
        self.target_set = target_set
        self.budget = budget
        self.max_isolation_requests = max_isolation_requests
        self.isolation_left = max_isolation_requests
        self.follow_ups_left = max_incomplete_retries
        self.resumed = resume is not None and bool(resume.pending)
        self.outcome = ChunkOutcome(index=index, targets=len(chunk))
        self.pieces: deque[list[str]] = deque([list(chunk)])
        if resume is not None and resume.pending:
            self.outcome = ChunkOutcome(
                index=index,
                targets=len(chunk),
                items=resume.items,
                requests=resume.requests,
                cost_usd=resume.cost_usd,
                missing_targets=list(resume.missing_targets),
                rejected_targets=list(resume.rejected_targets),
                unresolved_targets=list(resume.unresolved_targets),
                unmatched_items=resume.unmatched_items,
                task_ids=list(resume.task_ids),
            )
            self.pieces = deque([list(resume.pending)])
        self.progress = self._settled()
        self.planned = True  # the chunk's first request is paid from the plan's share

    def _settled(self) -> int:
        return (
            self.outcome.requests + len(self.outcome.rejected_targets) + len(self.outcome.unresolved_targets)
        )

    def run(self) -> ChunkOutcome:
        """Send the chunk (and its follow-ups); isolate a refused piece; return the outcome."""
        while self.pieces:
            piece = self.pieces.popleft()
            try:
                result = self.send(piece)
            except Exception as exc:
                if is_targets_rejection(exc):
                    self.isolate(piece)
                    continue
                self.fail(exc, piece)
            self.keep(result, piece)
        _finish(self.outcome, self.chunk, new_rows_only=self.resumed)
        return self.outcome

    def send(self, piece: list[str], *, isolating: bool = False) -> TaskResult:
        """``post(piece)`` after reserving its upper cost (see :func:`_post_within_budget`)."""
        planned, self.planned = self.planned, False
        return _post_within_budget(
            self.post, piece, self.budget, self.index, planned=planned, isolating=isolating
        )

    def keep(self, result: TaskResult, piece: list[str]) -> None:
        """Store one reply's rows; queue the targets an incomplete reply left out (follow-ups)."""
        outcome = self.outcome
        rows, missing = rows_for_chunk(result, piece, self.target_set)
        outcome.rows.extend(rows)
        outcome.requests += 1
        outcome.cost_usd += result.cost_usd
        if result.task_id:
            outcome.task_ids.append(result.task_id)
        short = declared_items(result) - result.item_count - result.malformed_items
        if short > 0 and missing and self.follow_ups_left > 0:
            self.follow_ups_left -= 1
            log.warning(
                "Incomplete reply (task %s): items_count says %s more than it holds; asking again "
                "for the %s of chunk %d left without an item",
                result.task_id,
                counted(short, "item"),
                counted(len(missing), "target"),
                self.index + 1,
            )
            self.pieces.append(missing)
            return
        if short > 0:
            log.warning(
                "Incomplete reply (task %s) and no follow-up left: %s of chunk %d count as missing",
                result.task_id,
                counted(len(missing), "target"),
                self.index + 1,
            )
        outcome.missing_targets.extend(missing)

    def isolate(self, piece: list[str]) -> None:
        """Find the targets of a refused ``piece`` (40501) in few requests; keep the others' rows."""
        screened = locally_refused(piece)
        if screened:
            log.warning(
                "Chunk %d: %s not in the form the API takes (no request for them): %s",
                self.index + 1,
                counted(len(screened), "target is", "targets are"),
                ", ".join(screened[:TARGETS_NAMED_IN_ERRORS]),
            )
            self.outcome.rejected_targets.extend(screened)
            rest = [target for target in piece if target not in set(screened)]
            if rest:
                self.pieces.appendleft(rest)  # may pass now
            return
        log.info(
            "40501 on a request of %s (chunk %d): searching the refused targets (up to %s)",
            counted(len(piece), "target"),
            self.index + 1,
            counted(self.isolation_left, "request"),
        )
        search = RefusalSearch(piece)
        try:
            while not search.done:
                if self.isolation_left <= 0:
                    self._give_up(search, f"its allowance of {self.max_isolation_requests} requests is spent")
                    break
                group = search.next_group()
                if group is None:
                    break
                self.isolation_left -= 1
                try:
                    result = self.send(group, isolating=True)
                except CostLimitExceededError:
                    self._give_up(
                        search, "the next request does not fit beside the planned ones in max_cost_usd"
                    )
                    break
                except Exception as exc:
                    if is_targets_rejection(exc):
                        search.record(True)
                        continue
                    self._take_refused(search)
                    self.fail(exc, search.unresolved())
                search.record(False)
                self.keep(result, group)
        finally:
            self._take_refused(search)

    def _take_refused(self, search: RefusalSearch) -> None:
        """Move the refused targets the search found into the outcome (once each)."""
        for target in search.refused:
            log.warning("The API refused target %r (40501): no row for it", target)
        self.outcome.rejected_targets.extend(search.refused)
        search.refused.clear()

    def _give_up(self, search: RefusalSearch, why: str) -> None:
        unresolved = search.unresolved()
        log.warning(
            "Chunk %d: stopped isolating refused targets (%s): %s left unresolved, no rows for "
            "them (listed as unresolved_targets): %s",
            self.index + 1,
            why,
            counted(len(unresolved), "target"),
            ", ".join(unresolved[:TARGETS_NAMED_IN_ERRORS]),
        )
        self.outcome.unresolved_targets.extend(unresolved)

    def fail(self, exc: Exception, unsent: list[str]) -> NoReturn:
        """Raise ``exc`` naming the request; wrapped in :class:`ChunkInterrupted` after progress."""
        named = with_request_context(exc, unsent)
        error = named if named is not exc else exc
        if self._settled() > self.progress:
            self.outcome.pending = [*unsent, *(target for rest in self.pieces for target in rest)]
            _finish(self.outcome, self.chunk, new_rows_only=self.resumed)
            raise ChunkInterrupted(self.outcome, error) from exc
        if named is exc:
            raise exc
        raise named from exc


def locally_refused(targets: Sequence[str]) -> list[str]:
    """The targets the API is known to refuse: those not in the normal form :func:`normalise_target` gives.

    The operator only sends normalised targets (which pass the endpoint's rules, see
    :mod:`~airflow_provider_dataforseo.targets`), so this finds nothing there; it keeps targets
    handed to :func:`fetch_bulk_pages_summary` directly from costing isolation requests.

    :param targets: targets of a refused request.
    :return: those that fail the local check, in order.
    """
    refused = []
    for target in targets:
        try:
            ok = normalise_target(target) == target
        except ValueError:
            ok = False
        if not ok:
            refused.append(target)
    return refused


def _post_within_budget(
    post: PostChunk,
    piece: list[str],
    budget: CostBudget | None,
    index: int,
    *,
    planned: bool = False,
    isolating: bool = False,
) -> TaskResult:
    """``post(piece)`` after reserving its upper cost; the reservation is settled or released.

    ``planned``: the chunk's first request, paid from the plan's share the up-front check set
    aside; any other request is paid only from what is left beside the planned requests.
    """
    if budget is None:
        return post(piece)
    kind = "an isolating request" if isolating else "a request"
    reservation = budget.reserve(
        request_cost_bound_usd(len(piece)),
        f"{kind} of {counted(len(piece), 'target')} (chunk {index + 1})",
        planned=planned,
    )
    try:
        result = post(piece)
    except BaseException:
        budget.release(reservation)  # a refused or failed task costs nothing
        raise
    budget.settle(reservation, result.cost_usd)
    return result


def _finish(outcome: ChunkOutcome, chunk: Sequence[str], *, new_rows_only: bool) -> None:
    """Order an outcome's rows and lists by chunk position and fill in its counts."""
    position = {target: i for i, target in enumerate(chunk)}
    if outcome.requests > 1 or new_rows_only:  # one reply's rows are in chunk order already
        outcome.rows.sort(key=lambda row: position.get(row["target"], len(position)))
    outcome.missing_targets.sort(key=lambda target: position.get(target, len(position)))
    outcome.rejected_targets.sort(key=lambda target: position.get(target, len(position)))
    outcome.unresolved_targets.sort(key=lambda target: position.get(target, len(position)))
    new_unmatched = sum(1 for row in outcome.rows if row["target"] is None)
    if new_rows_only:  # the counts carried over from an earlier try already hold the old rows
        outcome.items += len(outcome.rows)
        outcome.unmatched_items += new_unmatched
    else:
        outcome.items = len(outcome.rows)
        outcome.unmatched_items = new_unmatched


def declared_items(result: TaskResult) -> int:
    """How many items the task's ``result[]`` entries say they hold (``items_count``), or 0.

    ``items_count`` is "number of items in the results array" (endpoint doc); when an entry lacks
    it the count is unknown and 0 is returned (no check).
    """
    counts = [entry.get("items_count") for entry in result.results]
    if not counts or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        return 0
    return sum(counts)  # type: ignore[arg-type]  # ints, checked above


def is_targets_rejection(exc: BaseException) -> bool:
    """Whether ``exc`` is a 40501 that refuses the ``targets`` field (or names no field).

    The API answers one invalid target with 40501 ``Invalid Field: 'targets'.`` for the whole task
    (``https://docs.dataforseo.com/v3/appendix/errors/``); a 40501 naming another field (``tag``,
    ``rank_scale``) is not about targets, and splitting the request would not help.
    """
    if not isinstance(exc, DataForSeoInvalidRequestError) or exc.status_code != api.INVALID_FIELD:
        return False
    fields = _QUOTED_FIELD_RE.findall(exc.status_message or "")
    return not fields or "targets" in fields


def with_request_context(exc: Exception, targets: Sequence[str], note: str | None = None) -> Exception:
    """The same error, its message naming the request's target count and first targets.

    :param exc: the error ``post`` raised.
    :param targets: the request's targets.
    :param note: more to say (e.g. why isolation stopped).
    :return: a new error of the same :class:`DataForSeoError` kind (status code, task id and
        endpoint kept), or ``exc`` itself for other errors.
    """
    if not isinstance(exc, DataForSeoError):
        return exc
    shown = ", ".join(targets[:TARGETS_NAMED_IN_ERRORS])
    more = (
        f" and {len(targets) - TARGETS_NAMED_IN_ERRORS} more"
        if len(targets) > TARGETS_NAMED_IN_ERRORS
        else ""
    )
    extra = f"; {note}" if note else ""
    message = f"{exc.status_message} (request of {counted(len(targets), 'target')}: {shown}{more}{extra})"
    try:
        return type(exc)(message, status_code=exc.status_code, task_id=exc.task_id, endpoint=exc.endpoint)
    except TypeError:  # pragma: no cover - a subclass with another signature
        return exc
