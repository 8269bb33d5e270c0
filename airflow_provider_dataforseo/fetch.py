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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import DataForSeoError, DataForSeoInvalidRequestError
from airflow_provider_dataforseo.heap import frozen_heap
from airflow_provider_dataforseo.ratelimit import (
    CostBudget,
    CostLimitExceededError,
    estimate_cost_usd,
    request_cost_bound_usd,
)
from airflow_provider_dataforseo.responses import MatchedItems, TaskResult, match_items
from airflow_provider_dataforseo.wording import counted

if TYPE_CHECKING:
    from airflow_provider_dataforseo.targets import TargetSet

log = logging.getLogger(__name__)

Row = dict[str, Any]
PostChunk = Callable[[list[str]], TaskResult]
Sink = Callable[[list[Row]], None]

#: Extra requests one chunk may spend isolating targets the API refuses with 40501 (bisection:
#: both halves of a refused piece are sent; one bad target among 1000 takes 20, two take <= 38).
DEFAULT_MAX_BISECTION_REQUESTS: Final = 40
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
    :ivar rejected_targets: targets the API refused with 40501, isolated by bisection, in input
        order (no row; nothing charged for them).
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
        self.resumed_chunks += int(outcome.resumed)

    def manifest(self, uri: str | None) -> dict[str, Any]:
        """The small XCom-sized description of the run.

        :param uri: where the rows were written (``None`` when returned through XCom).
        :return: ``{"uri", "targets", "items", "requests", "cost_usd", "missing_targets",
            "unmatched_items", "rejected_targets"}``; ``cost_usd`` is what the replies reported as
            charged (USD, every try of the task included); ``missing_targets`` is a count (names are
            in the task log); ``rejected_targets`` lists the targets the API refused (40501).
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
        }


@dataclass
class ChunkOutcome:
    """What one planned chunk gave, over every request it took.

    :ivar index: the chunk's 0-based position in the plan.
    :ivar targets: targets in the chunk.
    :ivar rows: its rows in chunk order, unmatched items last (empty when resumed from a checkpoint:
        they are stored there).
    :ivar items: how many rows it gave.
    :ivar requests: successful (charged) requests it took: 1, more after bisection or follow-ups.
    :ivar cost_usd: what those replies reported as charged, USD.
    :ivar missing_targets: targets no item answered, in chunk order.
    :ivar rejected_targets: targets the API refused with 40501, in chunk order.
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
    max_bisection_requests: int = DEFAULT_MAX_BISECTION_REQUESTS,
    max_incomplete_retries: int = DEFAULT_MAX_INCOMPLETE_RETRIES,
    interrupt_grace_seconds: float = DEFAULT_INTERRUPT_GRACE_SECONDS,
    on_interrupt: Callable[[], None] | None = None,
) -> FetchSummary:
    """Fetch every chunk, at most ``max_active_requests`` at a time, and hand rows to ``sink``.

    Each chunk is fetched by :func:`fetch_chunk` (40501 bisection, follow-ups of incomplete
    replies). Slots freed by finished chunks are refilled before their rows are written, so at
    most ``2 x max_active_requests`` chunks' rows are held at once. Rows reach ``sink`` a whole
    chunk at a time, in the order chunks complete, from the calling thread only; then
    ``on_chunk`` gets the chunk's :class:`ChunkOutcome` (to record it in a checkpoint). When a
    chunk fails for good, no further chunk is started; those in flight finish and their rows are
    still handed over; a chunk stopped half-way hands what it got to ``on_chunk`` only
    (``pending`` non-empty); then the first error is raised.

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
        anything is sent, and every request must fit, at its upper bound, beside the spend and the
        requests in flight before it is sent.
    :param max_bisection_requests: extra requests one chunk may spend isolating 40501 targets.
    :param max_incomplete_retries: follow-up requests one chunk may spend on targets an
        incomplete reply left out.
    :param interrupt_grace_seconds: when this thread is interrupted (an exception raised in it
        while waiting or writing, such as Airflow's ``execution_timeout``): how
        long to wait, seconds, for the requests in flight, whose replies are then still handed
        to ``sink`` and ``on_chunk`` (they are paid for); requests not started are dropped and
        later replies are left behind. The interruption is then re-raised.
    :param on_interrupt: called first when this thread is interrupted, to stop every further
        HTTP attempt, retries inside ``post`` included (the operator passes its limiter's
        :meth:`~airflow_provider_dataforseo.ratelimit.RequestLimiter.close`).
    :return: the :class:`FetchSummary`.
    :raises CostLimitExceededError: before anything is sent when the estimate does not fit
        ``max_cost_usd``, or while running before a request that might not fit.
    :raises Exception: the first error a chunk raised (a
        :class:`~airflow_provider_dataforseo.exceptions.DataForSeoError` names the request's target
        count and first targets), after chunks in flight finished.
    :raises ValueError: when ``max_active_requests`` is below 1 (nothing could ever be sent).
    """
    if max_active_requests < 1:
        raise ValueError(f"max_active_requests must be at least 1, got {max_active_requests!r}")
    stored = {index: outcome for index, outcome in (done or {}).items() if 0 <= index < len(chunks)}
    summary = FetchSummary(targets=len(target_set), planned_requests=len(chunks))
    for index in sorted(stored):
        if not stored[index].pending:
            summary.add(stored[index])
    todo = [index for index in range(len(chunks)) if index not in stored or stored[index].pending]
    budget = CostBudget(max_cost_usd, spent_usd=sum(outcome.cost_usd for outcome in stored.values()))
    to_send = sum(len(stored[i].pending) if i in stored else len(chunks[i]) for i in todo)
    estimate = estimate_cost_usd(len(todo), to_send)
    if budget.would_exceed(estimate):
        raise CostLimitExceededError(
            max_cost_usd=budget.max_cost_usd or 0.0,
            spent_usd=budget.spent_usd,
            reserved_usd=0.0,
            needed_usd=estimate,
            what=f"the plan of {counted(len(todo), 'request')} for {counted(to_send, 'target')} "
            "(requests x 0.02 USD + targets x 0.00003 USD)",
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
    first_error: BaseException | None = None
    running: dict[Future[ChunkOutcome], int] = {}
    to_hand_over: deque[tuple[Future[ChunkOutcome], int]] = deque()
    position = 0
    stopping = False
    pool = ThreadPoolExecutor(max_workers=max_active_requests, thread_name_prefix="dataforseo")

    def top_up() -> None:
        nonlocal position
        while (
            not stopping
            and first_error is None
            and position < len(todo)
            and len(running) < max_active_requests
        ):
            index = todo[position]
            position += 1
            future = pool.submit(
                fetch_chunk,
                index,
                chunks[index],
                post,
                target_set,
                budget=budget,
                max_bisection_requests=max_bisection_requests,
                max_incomplete_retries=max_incomplete_retries,
                resume=stored.get(index),
            )
            running[future] = index

    def hand_over(future: Future[ChunkOutcome], index: int) -> None:
        error = future.exception()
        if isinstance(error, ChunkInterrupted):
            if on_chunk is not None:
                on_chunk(error.outcome)
            log.warning(
                "Chunk %d/%d stopped with %d of its %s still to fetch; the rest is kept",
                index + 1,
                len(chunks),
                len(error.outcome.pending),
                counted(error.outcome.targets, "target"),
            )
            error = error.cause
        if error is not None:
            log.error("Request %d/%d failed: %s", index + 1, len(chunks), error)
            return
        outcome = future.result()
        sink(outcome.rows)
        if on_chunk is not None:
            on_chunk(outcome)
        summary.add(outcome)
        log.info(
            "Request %d/%d: %s, %s, cost %.5f USD (task %s)",
            index + 1,
            len(chunks),
            counted(outcome.targets, "target"),
            counted(outcome.items, "item"),
            outcome.cost_usd,
            ", ".join(outcome.task_ids) or None,
        )
        outcome.rows = []  # written: let them go while later chunks are still running

    try:
        top_up()
        while running:
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            finished = [(future, running.pop(future)) for future in completed]
            # errors first (no new chunk starts after one), then the freed slots are refilled
            # BEFORE the finished replies are written, so requests stay in flight meanwhile
            for future, _index in finished:
                if future.exception() is not None and first_error is None:
                    error = future.exception()
                    first_error = error.cause if isinstance(error, ChunkInterrupted) else error
            to_hand_over.extend(finished)
            top_up()
            while to_hand_over:
                hand_over(*to_hand_over.popleft())
    except BaseException:
        # Interrupted in this thread (Airflow's execution_timeout raises here): nothing new
        # starts, and replies already paid for are still stored if they arrive within the grace
        # period, so that a retry does not pay for them again.
        stopping = True
        if on_interrupt is not None:
            on_interrupt()
        _save_what_arrives(running, to_hand_over, hand_over, interrupt_grace_seconds)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    summary.missing_targets = _in_input_order(summary.missing_targets, target_set.targets)
    summary.rejected_targets = _in_input_order(summary.rejected_targets, target_set.targets)
    if first_error is not None:
        raise first_error
    return summary


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
    max_bisection_requests: int = DEFAULT_MAX_BISECTION_REQUESTS,
    max_incomplete_retries: int = DEFAULT_MAX_INCOMPLETE_RETRIES,
    resume: ChunkOutcome | None = None,
) -> ChunkOutcome:
    """Fetch one planned chunk, recovering what can be recovered without paying twice.

    - A 40501 about ``targets`` (see :func:`is_targets_rejection`): the refused piece is split in
      two and both halves are sent, again and again, until the refused targets stand alone; they
      are reported in ``rejected_targets`` (a refused task costs nothing). At most
      ``max_bisection_requests`` extra requests; beyond, the 40501 is raised.
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
    :param budget: money guard; each request reserves its upper bound before it is sent.
    :param max_bisection_requests: extra requests allowed for bisection.
    :param max_incomplete_retries: follow-up requests allowed for incomplete replies.
    :param resume: an interrupted outcome of this chunk from an earlier try: only its ``pending``
        targets are fetched; the result adds up both tries (its ``rows`` are the new ones only).
    :return: the chunk's :class:`ChunkOutcome`, rows in chunk order, unmatched items last.
    :raises ChunkInterrupted: when an error stops the chunk after some of its requests succeeded.
    :raises CostLimitExceededError: before a request that might take the spend over the limit.
    :raises DataForSeoError: as ``post`` raised it, with the request's targets named.
    """
    outcome = ChunkOutcome(index=index, targets=len(chunk))
    pieces: deque[list[str]] = deque([list(chunk)])
    if resume is not None and resume.pending:
        outcome = ChunkOutcome(
            index=index,
            targets=len(chunk),
            items=resume.items,
            requests=resume.requests,
            cost_usd=resume.cost_usd,
            missing_targets=list(resume.missing_targets),
            rejected_targets=list(resume.rejected_targets),
            unmatched_items=resume.unmatched_items,
            task_ids=list(resume.task_ids),
        )
        pieces = deque([list(resume.pending)])
    progress = outcome.requests + len(outcome.rejected_targets)
    bisections_left = max_bisection_requests
    follow_ups_left = max_incomplete_retries
    while pieces:
        piece = pieces.popleft()
        try:
            result = _post_within_budget(post, piece, budget, index)
        except Exception as exc:
            if is_targets_rejection(exc) and len(piece) == 1:
                log.warning("The API refused target %r (%s): no row for it", piece[0], exc)
                outcome.rejected_targets.append(piece[0])
                continue
            if is_targets_rejection(exc) and bisections_left >= 2:
                bisections_left -= 2
                half = len(piece) // 2
                log.info(
                    "40501 on a request of %s (chunk %d): sending its halves to isolate the "
                    "refused targets (%s left)",
                    counted(len(piece), "target"),
                    index + 1,
                    counted(bisections_left, "extra request"),
                )
                pieces.extendleft([piece[half:], piece[:half]])
                continue
            note = (
                f"{max_bisection_requests} extra requests spent isolating the refused targets"
                if is_targets_rejection(exc)
                else None
            )
            named = with_request_context(exc, piece, note)
            error = named if named is not exc else exc
            if outcome.requests + len(outcome.rejected_targets) > progress:
                outcome.pending = [target for rest in (piece, *pieces) for target in rest]
                _finish(outcome, chunk, new_rows_only=resume is not None)
                raise ChunkInterrupted(outcome, error) from exc
            if named is exc:
                raise
            raise named from exc
        rows, missing = rows_for_chunk(result, piece, target_set)
        outcome.rows.extend(rows)
        outcome.requests += 1
        outcome.cost_usd += result.cost_usd
        if result.task_id:
            outcome.task_ids.append(result.task_id)
        short = declared_items(result) - result.item_count - result.malformed_items
        if short > 0 and missing and follow_ups_left > 0:
            follow_ups_left -= 1
            log.warning(
                "Incomplete reply (task %s): items_count says %s more than it holds; asking again "
                "for the %s of chunk %d left without an item",
                result.task_id,
                counted(short, "item"),
                counted(len(missing), "target"),
                index + 1,
            )
            pieces.append(missing)
            continue
        if short > 0:
            log.warning(
                "Incomplete reply (task %s) and no follow-up left: %s of chunk %d count as missing",
                result.task_id,
                counted(len(missing), "target"),
                index + 1,
            )
        outcome.missing_targets.extend(missing)
    _finish(outcome, chunk, new_rows_only=resume is not None)
    return outcome


def _post_within_budget(
    post: PostChunk, piece: list[str], budget: CostBudget | None, index: int
) -> TaskResult:
    """``post(piece)`` after reserving its upper cost; the reservation is settled or released."""
    if budget is None:
        return post(piece)
    reservation = budget.reserve(
        request_cost_bound_usd(len(piece)),
        f"a request of {counted(len(piece), 'target')} (chunk {index + 1})",
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
    :param note: more to say (e.g. why bisection stopped).
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
