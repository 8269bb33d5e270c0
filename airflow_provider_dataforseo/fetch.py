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
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_dataforseo.responses import TaskResult, match_items

if TYPE_CHECKING:
    from airflow_provider_dataforseo.targets import TargetSet

log = logging.getLogger(__name__)

Row = dict[str, Any]
PostChunk = Callable[[list[str]], TaskResult]
Sink = Callable[[list[Row]], None]


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
    """

    targets: int
    planned_requests: int
    requests: int = 0
    items: int = 0
    cost_usd: float = 0.0
    missing_targets: list[str] = field(default_factory=list)
    unmatched_items: int = 0
    task_ids: list[str] = field(default_factory=list)

    def manifest(self, uri: str | None) -> dict[str, Any]:
        """The small XCom-sized description of the run.

        :param uri: where the rows were written (``None`` when returned through XCom).
        :return: ``{"uri", "targets", "items", "requests", "cost_usd", "missing_targets",
            "unmatched_items"}``; ``missing_targets`` is a count (names are in the task log).
        """
        return {
            "uri": uri,
            "targets": self.targets,
            "items": self.items,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 6),
            "missing_targets": len(self.missing_targets),
            "unmatched_items": self.unmatched_items,
        }


def rows_for_chunk(
    result: TaskResult, chunk: Sequence[str], target_set: TargetSet
) -> tuple[list[Row], list[str]]:
    """Match one task's items to its chunk and build rows.

    :param result: the task's result.
    :param chunk: the normalised targets that were sent.
    :param target_set: gives each target's original inputs.
    :return: ``(rows, missing_targets)``; rows in chunk order, then unmatched items.
    """
    matched = match_items(result.items, chunk)
    rows: list[Row] = [
        {
            "target": target,
            "inputs": list(target_set.inputs.get(target, [target])),
            "task_id": result.task_id,
            "item": matched.by_target[target],
        }
        for target in chunk
        if target in matched.by_target
    ]
    rows.extend(
        {"target": None, "inputs": [], "task_id": result.task_id, "item": item} for item in matched.unmatched
    )
    return rows, matched.missing


def fetch_bulk_pages_summary(
    target_set: TargetSet,
    chunks: Sequence[list[str]],
    post: PostChunk,
    sink: Sink,
    *,
    max_active_requests: int,
) -> FetchSummary:
    """Post every chunk, at most ``max_active_requests`` at a time, and hand rows to ``sink``.

    Rows reach ``sink`` in the order requests complete, from the calling thread only. When a
    request fails for good, no further request is started; those in flight finish and their rows
    are still written; then the first error is raised.

    :param target_set: the targets and their original inputs.
    :param chunks: the planned requests (see :func:`~airflow_provider_dataforseo.targets.plan_chunks`).
    :param post: sends one chunk, returns its checked result (retries are its business).
    :param sink: stores a list of rows.
    :param max_active_requests: requests in flight at once (1-30).
    :return: the :class:`FetchSummary`.
    :raises Exception: the first error ``post`` raised, after in-flight requests finished.
    """
    summary = FetchSummary(targets=len(target_set), planned_requests=len(chunks))
    missing: dict[str, None] = {}
    first_error: BaseException | None = None
    pending: dict[Future[TaskResult], int] = {}
    next_chunk = 0
    with ThreadPoolExecutor(max_workers=max(1, max_active_requests), thread_name_prefix="dataforseo") as pool:
        while pending or (next_chunk < len(chunks) and first_error is None):
            while first_error is None and next_chunk < len(chunks) and len(pending) < max_active_requests:
                pending[pool.submit(post, list(chunks[next_chunk]))] = next_chunk
                next_chunk += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                error = future.exception()
                if error is not None:
                    log.error("Request %d/%d failed: %s", index + 1, len(chunks), error)
                    first_error = first_error or error
                    continue
                result = future.result()
                rows, chunk_missing = rows_for_chunk(result, chunks[index], target_set)
                sink(rows)
                summary.requests += 1
                summary.items += len(rows)
                summary.cost_usd += result.cost_usd
                summary.unmatched_items += sum(1 for row in rows if row["target"] is None)
                if result.task_id:
                    summary.task_ids.append(result.task_id)
                missing.update(dict.fromkeys(chunk_missing))
                log.info(
                    "Request %d/%d: %d targets, %d items, cost %.5f USD (task %s)",
                    index + 1,
                    len(chunks),
                    len(chunks[index]),
                    len(rows),
                    result.cost_usd,
                    result.task_id,
                )
    order = {target: i for i, target in enumerate(target_set.targets)}
    summary.missing_targets = sorted(missing, key=order.__getitem__)
    if first_error is not None:
        raise first_error
    return summary
