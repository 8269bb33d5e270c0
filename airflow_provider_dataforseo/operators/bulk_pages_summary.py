"""BulkPagesSummaryOperator: any number of targets -> DataForSEO bulk pages summaries."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import DataForSeoError, InvalidTargetsError
from airflow_provider_dataforseo.fetch import FetchSummary, Row, fetch_bulk_pages_summary
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook, check_rank_scale, check_tag
from airflow_provider_dataforseo.targets import (
    TargetSet,
    coerce_targets,
    count_main_domains,
    is_storage_uri,
    lower_bound,
    normalise_targets,
    parse_target_file,
    plan_chunks,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

#: Without ``output_path`` at most this many targets are fetched, so that the rows returned
#: through XCom stay under ~0.5 MB (an item is ~1-2 KB of JSON). Larger runs need ``output_path``.
MAX_XCOM_TARGETS = 300
#: Name of the JSON Lines file written when ``output_path`` is a folder.
ROWS_FILE_NAME = "bulk_pages_summary.jsonl"
#: Name of the manifest written beside it.
MANIFEST_FILE_NAME = "manifest.json"


def read_targets(value: object) -> TargetSet:
    """Resolve a rendered ``targets`` argument into a validated :class:`TargetSet`.

    :param value: a list of targets, a string that renders a list, newline- or comma-separated
        text, or the URI of a text/CSV file in object storage (``file:///...``, ``s3://...``; one
        target per line, header/blank/``#`` lines skipped).
    :return: the normalised, de-duplicated targets.
    :raises InvalidTargetsError: listing every bad entry.
    :raises TypeError: for a value of an unsupported type.
    :raises FileNotFoundError: when the file URI names no file.
    """
    if is_storage_uri(value):
        text = ObjectStoragePath(str(value).strip()).read_text(encoding="utf-8")
        return normalise_targets(parse_target_file(text))
    return normalise_targets(coerce_targets(value))


class BulkPagesSummaryOperator(BaseOperator):
    """Fetch backlink summaries for any number of pages, domains and subdomains.

    Targets are normalised and validated (every bad entry named, before any request), planned into
    as few requests as the packing finds (each <= 1000 targets from <= 100 main domains), and
    posted to ``POST /v3/backlinks/bulk_pages_summary/live`` with ``max_active_requests`` in flight.
    Cost: 0.02 USD per request plus 0.00003 USD per item (DataForSEO pricing).

    Output, one row per item: ``{"target", "inputs", "task_id", "item"}`` where ``item`` is the
    API's item as returned and ``inputs`` the original strings that normalised to ``target``.

    - Without ``output_path`` the rows are returned (XCom); more than :data:`MAX_XCOM_TARGETS`
      targets are refused before any request.
    - With ``output_path`` the rows are written as JSON Lines (a ``.jsonl`` path is the file; any
      other path is a folder that gets ``bulk_pages_summary.jsonl`` and ``manifest.json``), and the
      manifest ``{"uri", "targets", "items", "requests", "cost_usd", "missing_targets",
      "unmatched_items"}`` is returned. A retry rewrites the file from the start: no duplicates.

    A target without an item is counted in ``missing_targets`` and named in the log; it never
    becomes a row of zeros. Permanent API errors (credentials, payment, invalid request) and bad
    input fail the task without Airflow retries; transient errors are retried by the hook, then by
    Airflow's ``retries``.

    :param targets: (templated) a list of targets, a text of them, or a file URI (see
        :func:`read_targets`).
    :param include_subdomains: count backlinks of the targets' subdomains too (API default True).
    :param rank_scale: ``"one_thousand"`` (0-1000, API default) or ``"one_hundred"`` (0-100).
    :param tag: (templated) up to 255 characters echoed in each task's ``data``.
    :param output_path: (templated) ObjectStoragePath URI, e.g.
        ``"file:///data/backlinks/{{ dag.dag_id }}/{{ run_id }}/"`` or ``"s3://aws_default@bucket/x/"``.
    :param dataforseo_conn_id: the DataForSEO connection.
    :param max_active_requests: requests in flight at once, 1-30 (the API allows 30 per account).
    :param hook_params: extra keyword arguments for :class:`DataForSeoHook` (timeouts, retries).
    """

    template_fields: Sequence[str] = ("targets", "tag", "output_path")
    template_ext: Sequence[str] = ()
    ui_color = "#1a73e8"

    def __init__(
        self,
        *,
        targets: Any,
        include_subdomains: bool = True,
        rank_scale: str | None = None,
        tag: str | None = None,
        output_path: str | None = None,
        dataforseo_conn_id: str = DataForSeoHook.default_conn_name,
        max_active_requests: int = 5,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= max_active_requests <= api.MAX_SIMULTANEOUS_REQUESTS:
            raise ValueError(
                f"max_active_requests must be 1-{api.MAX_SIMULTANEOUS_REQUESTS}, got {max_active_requests!r}"
            )
        if rank_scale is not None:
            check_rank_scale(rank_scale)
        self.targets = targets
        self.include_subdomains = include_subdomains
        self.rank_scale = rank_scale
        self.tag = tag
        self.output_path = output_path
        self.dataforseo_conn_id = dataforseo_conn_id
        self.max_active_requests = max_active_requests
        self.hook_params = hook_params or {}

    @cached_property
    def hook(self) -> DataForSeoHook:
        """The DataForSEO hook, sized for ``max_active_requests``."""
        params = {"pool_maxsize": self.max_active_requests, **self.hook_params}
        return DataForSeoHook(self.dataforseo_conn_id, **params)

    def execute(self, context: Context) -> Any:
        try:
            target_set = read_targets(self.targets)
            if self.tag is not None:
                check_tag(self.tag)
        except (InvalidTargetsError, TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc
        chunks = plan_chunks(target_set.targets)
        self.log.info(
            "%d targets (%d inputs) planned into %d requests (lower bound %d); estimated cost <= %.5f USD",
            len(target_set),
            sum(len(v) for v in target_set.inputs.values()),
            len(chunks),
            lower_bound(len(target_set), count_main_domains(target_set.targets)),
            len(chunks) * api.COST_PER_REQUEST_USD + len(target_set) * api.COST_PER_ITEM_USD,
        )
        if self.output_path:
            return self._fetch_to_storage(target_set, chunks)
        if len(target_set) > MAX_XCOM_TARGETS:
            raise AirflowFailException(
                f"{len(target_set)} targets would return too many rows for XCom (limit "
                f"{MAX_XCOM_TARGETS}): set output_path to write them to object storage, e.g. "
                "output_path='file:///tmp/dataforseo/{{ dag.dag_id }}/{{ run_id }}/'. Nothing was sent."
            )
        rows: list[Row] = []
        summary = self._fetch(target_set, chunks, rows.extend)
        self._log_summary(summary)
        return rows

    def _fetch_to_storage(self, target_set: TargetSet, chunks: list[list[str]]) -> dict[str, Any]:
        base = ObjectStoragePath(str(self.output_path).strip())
        if base.suffix == ".jsonl":
            rows_path, manifest_path = base, None
        else:
            rows_path, manifest_path = base / ROWS_FILE_NAME, base / MANIFEST_FILE_NAME
        rows_path.parent.mkdir(parents=True, exist_ok=True)

        with rows_path.open("w", encoding="utf-8") as handle:  # type: ignore[no-untyped-call]  # "w": a retry starts the file anew

            def write(rows: list[Row]) -> None:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

            summary = self._fetch(target_set, chunks, write)
        manifest = summary.manifest(str(rows_path))
        if manifest_path is not None:
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.log.info("Wrote %d rows to %s", summary.items, rows_path)
        self._log_summary(summary)
        return manifest

    def _fetch(self, target_set: TargetSet, chunks: list[list[str]], sink: Any) -> FetchSummary:
        def post(chunk: list[str]) -> Any:
            return self.hook.bulk_pages_summary(
                chunk, include_subdomains=self.include_subdomains, rank_scale=self.rank_scale, tag=self.tag
            )

        try:
            return fetch_bulk_pages_summary(
                target_set, chunks, post, sink, max_active_requests=self.max_active_requests
            )
        except DataForSeoError as exc:
            if exc.retryable:
                raise
            raise AirflowFailException(str(exc)) from exc
        finally:
            self.hook.close()

    def _log_summary(self, summary: FetchSummary) -> None:
        self.log.info(
            "Done: %d requests, %d items, %d targets without data, %d unmatched items, cost %.5f USD",
            summary.requests,
            summary.items,
            len(summary.missing_targets),
            summary.unmatched_items,
            summary.cost_usd,
        )
        if summary.missing_targets:
            shown = summary.missing_targets[:200]
            self.log.warning(
                "No data for %d targets%s: %s",
                len(summary.missing_targets),
                " (first 200)" if len(shown) < len(summary.missing_targets) else "",
                ", ".join(shown),
            )
