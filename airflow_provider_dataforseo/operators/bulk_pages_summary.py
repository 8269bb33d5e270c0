"""BulkPagesSummaryOperator: any number of targets -> DataForSEO bulk pages summaries."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath, conf
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.checkpoint import (
    Checkpoint,
    Owner,
    PathInUseError,
    RowsFileChangedError,
    WriterLock,
    plan_digest,
)
from airflow_provider_dataforseo.chunks import lower_bound, plan_chunks
from airflow_provider_dataforseo.exceptions import DataForSeoError, InvalidTargetsError
from airflow_provider_dataforseo.fetch import ChunkOutcome, FetchSummary, Row, fetch_bulk_pages_summary
from airflow_provider_dataforseo.flags import as_bool  # one reading of flags for every class
from airflow_provider_dataforseo.hooks.dataforseo import (
    DataForSeoHook,
    check_hook_params,
    check_rank_scale,
    check_tag,
    fail_task_on_permanent_errors,
)
from airflow_provider_dataforseo.ledger import (
    LEDGER_FILE_NAME,
    LedgerError,
    SpendLedger,
    finished_path,
    ledger_path,
    prune_ledgers,
    write_atomically,
)
from airflow_provider_dataforseo.planning import load_chunk_group
from airflow_provider_dataforseo.ratelimit import (
    DEFAULT_REQUESTS_PER_MINUTE,
    CostLimitExceededError,
    RequestLimiter,
    RequestsStoppedError,
    check_max_cost,
    estimate_cost_usd,
    request_cost_bound_usd,
)
from airflow_provider_dataforseo.sources import parse_roots
from airflow_provider_dataforseo.targets import (
    TargetSet,
    count_main_domains,
)
from airflow_provider_dataforseo.targets_io import is_literal
from airflow_provider_dataforseo.targets_io import read_targets as _read_targets
from airflow_provider_dataforseo.wording import counted

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow.sdk import Context

#: Without ``output_path`` at most this many targets are fetched, so that the rows returned
#: through XCom stay under ~0.5 MB (an item is ~1-2 KB of JSON). Larger runs need ``output_path``.
MAX_XCOM_TARGETS = 300
#: Name of the JSON Lines file written when ``output_path`` is a folder.
ROWS_FILE_NAME = "bulk_pages_summary.jsonl"
#: Name of the manifest written beside it.
MANIFEST_FILE_NAME = "manifest.json"
#: Airflow config section of this provider, and its option naming the state root.
CONFIG_SECTION = "dataforseo"
STATE_ROOT_OPTION = "state_root"


def default_state_root() -> str | None:
    """``[dataforseo] state_root`` (``AIRFLOW__DATAFORSEO__STATE_ROOT``), or ``None`` when unset.

    The folder (an ObjectStoragePath URI every worker can reach) where operators without
    ``output_path`` keep the spend ledger of each task instance.
    """
    value = conf.get(CONFIG_SECTION, STATE_ROOT_OPTION, fallback=None)
    if value is None:
        return None
    return str(value).strip() or None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


#: Missing targets listed in the manifest itself; more go to :data:`MISSING_FILE_NAME` beside it.
MAX_LISTED_MISSING = 100
#: Name of the file of every missing target (one original input per line) beside the manifest.
MISSING_FILE_NAME = "missing_targets.txt"


def read_targets(value: object, **options: Any) -> TargetSet:
    """Resolve a rendered ``targets`` argument into a validated :class:`TargetSet`.

    :param value: a list or any sequence of strings (a generator, a mapped task's
        ``LazyXComSequence``), a string that renders a list, text (one or more lines of targets
        separated by commas, tabs or semicolons), or the URI of a text/CSV file (plain or gzip,
        any encoding) or sitemap (see :mod:`airflow_provider_dataforseo.sources`).
    :param options: ``column``, ``encoding``, ``allowed_roots``, ``trusted`` (see
        :func:`~airflow_provider_dataforseo.targets_io.read_targets_streaming`).
    :return: the normalised, de-duplicated targets. A file is streamed line by line. Either way
        ``inputs`` only lists the targets given in another form or more than once (any other
        target's one input is itself: read them with ``TargetSet.inputs_of(target)``), so
        1,000,000 targets do not hold every input twice.
    :raises InvalidTargetsError: listing every bad entry with its file line or list position.
    :raises TargetSourceError: a file outside the allowed roots, missing, a folder, or unreadable.
    :raises TypeError: for a value of an unsupported type.
    """
    return _read_targets(value, **options)


def storage_path(uri: str) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI, a ``file`` URI's percent escapes decoded.

    ``file:///data/SEO%20reports/`` names the folder ``/data/SEO reports`` (RFC 8089), as a
    browser or ``pathlib.Path.as_uri()`` means it; ``ObjectStoragePath`` alone would create a
    folder literally named ``SEO%20reports``. Other schemes are passed on as given.

    :param uri: e.g. ``"file:///data/x/"``, ``"s3://aws_default@bucket/x/"``.
    """
    text = str(uri).strip()
    parts = urlsplit(text)
    if parts.scheme == "file" and "%" in parts.path:
        host = "" if parts.netloc in ("", "localhost") else parts.netloc
        return ObjectStoragePath(f"file://{host}{unquote(parts.path)}")
    return ObjectStoragePath(text)


class _WriteAheadHook(DataForSeoHook):
    """The DataForSEO hook, each HTTP attempt of a bulk request written to a spend ledger first.

    With :attr:`ledger` set, every attempt (retries inside the hook included) is recorded once it
    holds its request slot, just before it is sent (:meth:`SpendLedger.begin`, which also refuses
    it past ``max_cost_usd``; a chunk waiting for a slot has nothing recorded), then settled with
    the reply's cost, released when the API answered with an error status (nothing charged), or
    kept as possibly paid when no reply was read (timeout, dropped connection, garbled body).
    """

    ledger: SpendLedger | None = None

    def _send(
        self,
        method: str,
        endpoint: str,
        body: object | None,
        raw_items: bool = False,
        on_slot: Callable[[], object] | None = None,
    ) -> Any:
        ledger = self.ledger
        targets = _targets_of(body)
        if ledger is None or targets is None:
            return super()._send(method, endpoint, body, raw_items, on_slot)
        begun: list[str] = []  # this attempt's ledger entry, once it holds its request slot

        def begin() -> None:
            if on_slot is not None:
                on_slot()
            begun.append(ledger.begin(request_cost_bound_usd(targets), f"a request of {targets} targets"))

        try:
            result = super()._send(method, endpoint, body, raw_items, begin)
        except RequestsStoppedError:
            for entry in begun:
                ledger.release(entry)  # never sent
            raise
        except DataForSeoError as exc:
            for entry in begun:
                if exc.status_code is not None and exc.status_code >= _FIRST_API_STATUS:
                    ledger.release(entry)  # the API refused the task: nothing charged
                else:
                    ledger.lose(entry)
            raise
        except BaseException:
            for entry in begun:
                ledger.lose(entry)
            raise
        ledger.settle(begun[0], result.cost_usd)
        return result


#: API status codes are five digits; a smaller code is an HTTP status (no envelope was read).
_FIRST_API_STATUS = 10000


def _targets_of(body: object) -> int | None:
    """How many targets a bulk_pages_summary body ``[{"targets": [...]}]`` carries, else ``None``."""
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        targets = body[0].get("targets")
        if isinstance(targets, list):
            return len(targets)
    return None


def _existing_file(path: Any) -> Any:
    """The nearest of ``path`` and its parents that is an existing file (``path`` when none is)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return path


class BulkPagesSummaryOperator(BaseOperator):
    """Fetch backlink summaries for any number of pages, domains and subdomains.

    Targets are normalised and validated (every bad entry named, before any request), planned into
    as few requests as the packing finds (each <= 1000 targets from <= 100 main domains), and
    posted to ``POST /v3/backlinks/bulk_pages_summary/live`` with ``max_active_requests`` in flight.
    Cost: 0.02 USD per request plus 0.00003 USD per item (DataForSEO pricing).

    Output, one row per item: ``{"target", "inputs", "task_id", "item"}`` where ``item`` is the
    API's item as returned and ``inputs`` the original strings that normalised to ``target``.

    - Without ``output_path`` the rows are returned (XCom); more than :data:`MAX_XCOM_TARGETS`
      targets are refused before any request. With ``state_root`` they are also kept beside the
      task instance's ledger, so that a retry after the work was done returns them unsent.
    - With ``output_path`` the rows are written as JSON Lines (a ``.jsonl`` path is the file; any
      other path is a folder that gets ``bulk_pages_summary.jsonl`` and ``manifest.json``), and the
      manifest ``{"uri", "targets", "items", "requests", "cost_usd", "missing_targets",
      "unmatched_items", "rejected_targets", "unresolved_targets", "cost_upper_bound_usd"}`` is
      returned. Each finished chunk is stored at once in a checkpoint beside the rows file
      (:mod:`~airflow_provider_dataforseo.checkpoint`); a retry of the task fetches only the chunks
      still missing, and the rows file is written from the chunks once all are done, so it holds
      every row exactly once, as a clean run would. A retry (or clear) of a task instance whose
      work was finished returns the finished manifest without a request.
    - One writer per rows file: a try holds a lock beside it; another task instance writing the
      same file at the same time fails at once naming the owner (dag, run, task, map index). A
      mapped task whose ``output_path`` template does not mention ``map_index`` writes
      ``bulk_pages_summary-<map index>.jsonl`` (``<name>-<map index>.jsonl`` for a ``.jsonl``
      path), so mapped tasks never share a rows file. Paths of the wrong kind (a folder where the
      rows file is meant, a file where a folder is) fail before the first request.

    Spend: every HTTP attempt is written to the task instance's spend ledger before it is sent
    (:mod:`~airflow_provider_dataforseo.ledger`), in the checkpoint folder with ``output_path``, or
    under ``state_root`` without. ``cost_usd`` is what the stored replies report;
    ``cost_upper_bound_usd`` adds every reply the API may have charged but no try stored (lost in
    a crash or a timeout), at 0.02 USD + 0.00003 USD per target each.

    Faults: a 40501 refusing ``targets`` is narrowed down by group testing and the refused targets
    are reported (``rejected_targets``, or ``unresolved_targets`` when the isolation's allowance or
    the cost cap runs out) instead of failing the chunk; an incomplete reply is topped up.
    ``max_cost_usd`` refuses to start when the estimate exceeds it and stops before any request
    that could exceed it, over every try of the task instance. Requests in flight
    (``max_active_requests``) and per minute (``requests_per_minute``) are capped for all threads
    of the task; across tasks, use an Airflow pool (e.g. ``pool="dataforseo"`` with 30 slots and
    ``pool_slots=max_active_requests``).

    The manifest also names the targets without data as the user wrote them:
    ``missing_target_list`` (up to :data:`MAX_LISTED_MISSING`) and, when there are more,
    ``missing_targets_uri``, a ``missing_targets.txt`` beside the manifest listing every one.

    A target without an item is counted in ``missing_targets`` and named in the log; it never
    becomes a row of zeros. Permanent API errors (credentials, payment, invalid request) and bad
    input fail the task without Airflow retries; transient errors are retried by the hook, then by
    Airflow's ``retries``.

    Assets and lineage: pass ``outlets=[Asset(...)]`` and each successful run emits an asset event
    whose ``extra`` is the manifest (so a DAG scheduled on that Asset finds the rows file in
    ``triggering_asset_events``). With the OpenLineage provider installed,
    :meth:`get_openlineage_facets_on_complete` reports the endpoint as input and the rows file as
    output.

    :param targets: (templated) a list or any sequence of targets (an upstream task's output, a
        mapped task's ``LazyXComSequence``), a text of them, or the URI of a file or sitemap (see
        :func:`read_targets`).
    :param targets_column: (templated) the column of a file, text or rows to read: a header name
        (``"Target URL"``) or a 0-based index (``0`` is the first column).
    :param targets_encoding: (templated) the file's encoding (``"cp1252"``, ``"utf-16"``); by
        default from its BOM, else UTF-8, else detected with charset-normalizer.
    :param allowed_target_roots: URIs under which target files and sitemaps may be read, e.g.
        ``["file:///data/seo/", "s3://aws_default@bucket/lists/"]`` (not templated: a run's params
        cannot widen it), together with ``[dataforseo] allowed_target_roots``. With neither set, only a
        file URI written literally in the DAG is read; one from a template, params or XCom is refused.
    :param include_subdomains: (templated) count backlinks of the targets' subdomains too (API
        default True); a rendered ``"True"``/``"false"``/``"1"``/``"0"`` is accepted.
    :param rank_scale: ``"one_thousand"`` (0-1000, API default) or ``"one_hundred"`` (0-100).
    :param tag: (templated) up to 255 characters echoed in each task's ``data``.
    :param output_path: (templated) ObjectStoragePath URI, e.g.
        ``"file:///data/backlinks/{{ dag.dag_id }}/{{ run_id }}/"`` or ``"s3://aws_default@bucket/x/"``.
    :param dataforseo_conn_id: the DataForSEO connection.
    :param max_active_requests: requests in flight at once, 1-30 (the API allows 30 per account).
    :param hook_params: extra keyword arguments for :class:`DataForSeoHook` (timeouts, retries).
    :param max_cost_usd: the most the task instance may spend, USD, over every try (counted by the
        spend ledger at the upper bound), or ``None``: refuse to start when what earlier tries may
        have spent plus the estimate (requests x 0.02 + targets x 0.00003) exceeds it, and stop
        before an attempt that could exceed it (the task then fails without Airflow retries).
        Merging chunks already paid for is never refused. Without ``output_path`` it needs
        ``state_root`` (refused at parse time otherwise).
    :param requests_per_minute: the task's per-minute budget of HTTP requests (retries included),
        default 1800, below the API's 2000.
    :param state_root: where task instances without ``output_path`` keep their spend ledger: an
        ObjectStoragePath URI of a folder every worker shares (``s3://conn@bucket/state/``, or
        ``file:///...`` on one machine). Default: ``[dataforseo] state_root``
        (``AIRFLOW__DATAFORSEO__STATE_ROOT``), else none. Ledgers not written for 30 days are
        removed by the next try of their task.
    :param chunk_group: (templated) instead of ``targets``: one group of already planned requests,
        as :func:`~airflow_provider_dataforseo.operators.plan.plan_bulk_pages_summary` returns them
        (a descriptor ``{"uri", ...}``, an inline group, or a group file URI), posted exactly as
        planned. Map over a plan with ``.partial(...).expand(chunk_group=plan.output)`` and give
        each mapped task its own ``output_path`` (e.g. ending in ``part-{{ ti.map_index }}/``).
    """

    template_fields: Sequence[str] = (
        "targets",
        "tag",
        "output_path",
        "chunk_group",
        "include_subdomains",
        "targets_column",
        "targets_encoding",
    )
    template_ext: Sequence[str] = ()
    ui_color = "#1a73e8"

    def __init__(
        self,
        *,
        targets: Any = None,
        chunk_group: Any = None,
        include_subdomains: bool | str = True,
        rank_scale: str | None = None,
        tag: str | None = None,
        output_path: str | None = None,
        dataforseo_conn_id: str = DataForSeoHook.default_conn_name,
        max_active_requests: int = 5,
        hook_params: dict[str, Any] | None = None,
        max_cost_usd: float | None = None,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        targets_column: int | str | None = None,
        targets_encoding: str | None = None,
        allowed_target_roots: Sequence[str] | str | None = None,
        state_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.targets_column = targets_column
        self.targets_encoding = targets_encoding
        self.allowed_target_roots = parse_roots(allowed_target_roots)
        self._targets_literal = is_literal(targets)  # before rendering: written in the DAG file
        if (
            isinstance(max_active_requests, bool)
            or not isinstance(max_active_requests, int)
            or not 1 <= max_active_requests <= api.MAX_SIMULTANEOUS_REQUESTS
        ):
            raise ValueError(
                f"max_active_requests must be 1-{api.MAX_SIMULTANEOUS_REQUESTS}, got {max_active_requests!r}"
            )
        if rank_scale is not None:
            check_rank_scale(rank_scale)
        if (
            isinstance(requests_per_minute, bool)
            or not isinstance(requests_per_minute, int)
            or requests_per_minute < 1
        ):
            raise ValueError(
                f"requests_per_minute must be an integer of at least 1, got {requests_per_minute!r}"
            )
        if (targets is None) == (chunk_group is None):
            raise ValueError("give exactly one of targets and chunk_group")
        self.targets = targets
        self.chunk_group = chunk_group
        self.include_subdomains = include_subdomains
        self.rank_scale = rank_scale
        self.tag = tag
        self.output_path = output_path
        self.dataforseo_conn_id = dataforseo_conn_id
        self.max_active_requests = max_active_requests
        self.hook_params = hook_params or {}
        check_hook_params(self.hook_params)  # refused now, not by every request later
        self.max_cost_usd = check_max_cost(max_cost_usd)
        self.requests_per_minute = requests_per_minute
        self.state_root = state_root if state_root is not None else default_state_root()
        if self.max_cost_usd is not None and not output_path and not self.state_root:
            raise ValueError(
                "max_cost_usd without output_path needs a place that outlives a try for its spend "
                "ledger, or the cap could not cover every try: set output_path, or state_root (or "
                f"[{CONFIG_SECTION}] {STATE_ROOT_OPTION}, i.e. AIRFLOW__DATAFORSEO__STATE_ROOT) to a folder "
                "every worker shares, e.g. 's3://aws_default@bucket/dataforseo-state/'. (XCom cannot hold "
                "it: Airflow clears a task's XCom when a new try starts.)"
            )
        # the unrendered output_path: a mapped task whose template does not mention the map index
        # gets its own file name, so that mapped tasks never share a rows file
        self._output_path_template = output_path
        self._summary: FetchSummary | None = None  # of the last fetch: asset extras, lineage
        self._manifest: dict[str, Any] | None = None  # of the last run to storage
        self._rows_uri: str | None = None  # where the last fetch wrote rows
        self._run_key: str | None = None  # "<dag_id>/<task_id>/<run_id>/<map_index>" of this run
        self._owner = Owner(None, None, None, None)
        self._missing: dict[str, Any] | None = None  # the manifest's list of missing targets

    @cached_property
    def hook(self) -> DataForSeoHook:
        """The DataForSEO hook, sized for ``max_active_requests`` and limited to ``requests_per_minute``."""
        limiter = RequestLimiter(
            max_in_flight=self.max_active_requests, requests_per_minute=self.requests_per_minute
        )
        params = {"pool_maxsize": self.max_active_requests, "limiter": limiter, **self.hook_params}
        return _WriteAheadHook(self.dataforseo_conn_id, **params)

    def execute(self, context: Context) -> Any:
        try:
            self.include_subdomains = as_bool(self.include_subdomains, "include_subdomains")
        except ValueError as exc:
            raise AirflowFailException(f"{exc}. Nothing was sent.") from exc
        self._summary, self._rows_uri, self._missing, self._manifest = None, None, None, None
        self.__dict__.pop("hook", None)  # a fresh hook and limiter for every try
        ti = context.get("ti")
        # every try of this task instance resumes from its checkpoint; no other run does
        self._run_key = "/".join(
            str(getattr(ti, name, None)) for name in ("dag_id", "task_id", "run_id", "map_index")
        )
        map_index, try_number = getattr(ti, "map_index", None), getattr(ti, "try_number", None)
        self._owner = Owner(
            dag_id=_str_or_none(getattr(ti, "dag_id", None)),
            run_id=_str_or_none(getattr(ti, "run_id", None)),
            task_id=_str_or_none(getattr(ti, "task_id", None)),
            map_index=map_index if isinstance(map_index, int) else None,
            try_number=try_number if isinstance(try_number, int) else None,
        )
        result = self._execute(context)
        if self._manifest is not None:
            self._publish_to_outlets(context, self._manifest)
        elif self._summary is not None:
            manifest = self._summary.manifest(self._rows_uri)
            manifest.update(self._missing or {})
            self._publish_to_outlets(context, manifest)
        return result

    def on_kill(self) -> None:
        """Airflow calls this on SIGTERM: no further request starts (retries included).

        Requests in flight finish and their replies are stored; the task then fails.
        """
        if "hook" in self.__dict__:
            self.hook.limiter.close()

    def _publish_to_outlets(self, context: Context, manifest: dict[str, Any]) -> None:
        """Put the manifest into the ``extra`` of this run's event of every ``Asset`` outlet."""
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(manifest)
                self.log.info("Asset event for %s carries the manifest (%s)", outlet.name, manifest["uri"])

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: input the DataForSEO endpoint, output the rows file written (if any).

        Called by the OpenLineage provider (the ``[openlineage]`` extra) after the task succeeded.

        :param task_instance: the finished task instance (unused: the operator kept what it wrote).
        :return: ``OperatorLineage`` with inputs ``[<base URL> /v3/backlinks/bulk_pages_summary/live]``
            and outputs ``[<rows file>]`` (none when rows went to XCom), the output carrying an
            ``outputStatistics`` facet with the row count.
        """
        from airflow_provider_dataforseo.lineage import operator_lineage

        return operator_lineage(
            base_url=self.hook.base_url,
            endpoint=api.BULK_PAGES_SUMMARY_PATH,
            output_uri=self._rows_uri,
            rows=(
                self._manifest["items"]
                if self._manifest is not None
                else self._summary.items
                if self._summary is not None
                else None
            ),
        )

    def _execute(self, context: Context) -> Any:
        if self.chunk_group is not None:
            return self._fetch_planned(*self._read_chunk_group())
        try:
            target_set = read_targets(
                self.targets,
                column=self.targets_column,
                encoding=self.targets_encoding or None,
                allowed_roots=self.allowed_target_roots,
                trusted=self._targets_literal,
            )
            if self.tag is not None:
                check_tag(self.tag)
        except (InvalidTargetsError, TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise AirflowFailException(
                f"The targets file {self.targets!r} does not exist. Nothing was sent."
            ) from exc
        chunks = plan_chunks(target_set.targets)
        self.log.info(
            "%s (from %s) planned into %s (lower bound %d); estimated cost <= %.5f USD",
            counted(len(target_set), "target"),
            counted(
                sum(len(v) for v in target_set.inputs.values()) + len(target_set) - len(target_set.inputs),
                "distinct input string",
            ),
            counted(len(chunks), "request"),
            lower_bound(len(target_set), count_main_domains(target_set.targets)),
            len(chunks) * api.COST_PER_REQUEST_USD + len(target_set) * api.COST_PER_ITEM_USD,
        )
        return self._fetch_planned(target_set, chunks)

    def _read_chunk_group(self) -> tuple[TargetSet, list[list[str]]]:
        """The targets and planned chunks of ``chunk_group``; bad groups fail without retries."""
        try:
            target_set, chunks, info = load_chunk_group(
                self.chunk_group, lambda uri: ObjectStoragePath(uri).read_text(encoding="utf-8")
            )
            if self.tag is not None:
                check_tag(self.tag)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            raise AirflowFailException(f"Bad chunk_group: {exc}. Nothing was sent.") from exc
        self.log.info(
            "Chunk group %s of %s (%s): %s in %s; estimated cost <= %.5f USD",
            info["group"],
            info["groups"],
            info["uri"] or "inline",
            counted(len(target_set), "target"),
            counted(len(chunks), "planned request"),
            len(chunks) * api.COST_PER_REQUEST_USD + len(target_set) * api.COST_PER_ITEM_USD,
        )
        return target_set, chunks

    def _fetch_planned(self, target_set: TargetSet, chunks: list[list[str]]) -> Any:
        """Post the planned ``chunks``: rows to ``output_path`` (manifest returned) or to XCom."""
        if self.output_path:
            return self._fetch_to_storage(target_set, chunks)
        if len(target_set) > MAX_XCOM_TARGETS:
            raise AirflowFailException(
                f"{len(target_set)} targets would return too many rows for XCom (limit "
                f"{MAX_XCOM_TARGETS}): set output_path to write them to object storage, e.g. "
                "output_path='file:///tmp/dataforseo/{{ dag.dag_id }}/{{ run_id }}/'. Nothing was sent."
            )
        if self.max_cost_usd is not None and not self.state_root:  # output_path rendered empty
            raise AirflowFailException(
                "max_cost_usd without output_path needs state_root (or [dataforseo] state_root) to keep "
                "its spend ledger across tries. Nothing was sent."
            )
        ledger = self._xcom_ledger()
        done = finished_path(ledger.path) if ledger is not None else None
        plan = plan_digest(chunks, self._request_options())
        finished = self._finished_rows(done, plan)
        if finished is not None:
            assert ledger is not None
            ledger.close()
            return finished
        rows: list[Row] = []
        try:
            summary = self._fetch(target_set, chunks, rows.extend, ledger=ledger)
        finally:
            if ledger is not None:
                ledger.close()
        self._missing = missing_listing(summary, target_set, None)
        if done is not None:  # a retry after a crash past this point returns these rows unsent
            manifest = {**summary.manifest(None), **self._missing}
            if ledger is not None:
                manifest["cost_upper_bound_usd"] = round(max(ledger.upper_bound_usd, summary.cost_usd), 6)
            record = {"owner": self._run_key, "plan": plan, "manifest": manifest, "rows": rows}
            write_atomically(done, json.dumps(record, ensure_ascii=False))
        self._log_summary(summary, target_set, ledger)
        return rows

    def _finished_rows(self, done: Any | None, plan: str) -> list[Row] | None:
        """The rows an earlier try of this task instance returned for this plan, if it finished."""
        if done is None:
            return None
        try:
            record = json.loads(done.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.log.warning("The finished result %s cannot be read (%s): the work is done again", done, exc)
            return None
        if not isinstance(record, dict) or record.get("owner") != self._run_key or record.get("plan") != plan:
            return None
        rows, manifest = record.get("rows"), record.get("manifest")
        if not isinstance(rows, list) or not isinstance(manifest, dict):
            return None
        self.log.info(
            "An earlier try of this task instance finished this work (%s): its %s returned, nothing is sent",
            done,
            counted(len(rows), "row is", "rows are"),
        )
        self._manifest = manifest
        return rows

    def _xcom_ledger(self) -> SpendLedger | None:
        """The spend ledger of this task instance under ``state_root`` (``None`` without one)."""
        if not self.state_root:
            return None
        root = storage_path(self.state_root)
        path = ledger_path(
            root, self._owner.dag_id, self._owner.task_id, self._owner.run_id, self._owner.map_index
        )
        prune_ledgers(path.parent, keep=path)
        try:
            return SpendLedger(path, owner=self._run_key or "", max_cost_usd=self.max_cost_usd)
        except LedgerError as exc:
            raise AirflowFailException(f"{exc} Nothing was sent.") from exc

    def _storage_paths(self) -> tuple[Any, Any | None]:
        """The rows file and the manifest file (``None`` for a ``.jsonl`` output_path)."""
        base = storage_path(str(self.output_path))
        index = self._owner.map_index
        # mapped tasks never share a rows file: without the map index in the template, each gets
        # its own file name
        suffix = (
            f"-{index}"
            if index is not None and index >= 0 and "map_index" not in str(self._output_path_template)
            else ""
        )
        if base.suffix == ".jsonl":
            return base.parent / f"{base.stem}{suffix}.jsonl", None
        stem, ext = ROWS_FILE_NAME.rsplit(".", 1)
        manifest_stem, manifest_ext = MANIFEST_FILE_NAME.rsplit(".", 1)
        return base / f"{stem}{suffix}.{ext}", base / f"{manifest_stem}{suffix}.{manifest_ext}"

    def _check_storage_paths(self, rows_path: Any, manifest_path: Any | None, checkpoint_dir: Any) -> None:
        """Fail before any request when a file is meant where a folder is, or the reverse."""

        def refuse(path: Any, what: str) -> AirflowFailException:
            return AirflowFailException(
                f"output_path {self.output_path!r}: {path} {what}. Give a folder path (ending in '/') "
                "or a path ending in .jsonl that names no folder. Nothing was sent."
            )

        try:
            rows_path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise refuse(
                _existing_file(rows_path.parent), "is an existing file where a folder is meant"
            ) from exc
        for path in (rows_path, manifest_path):
            if path is not None and path.is_dir():
                raise refuse(path, "is a folder where the rows or manifest file is meant")
        if checkpoint_dir.is_file():
            raise refuse(checkpoint_dir, "is a file where the checkpoint folder is meant")

    def _fetch_to_storage(self, target_set: TargetSet, chunks: list[list[str]]) -> dict[str, Any]:
        rows_path, manifest_path = self._storage_paths()
        checkpoint = Checkpoint(rows_path, chunks, self._request_options(), run=self._run_key)
        self._check_storage_paths(rows_path, manifest_path, checkpoint.directory)
        self._rows_uri = str(rows_path)
        lock = WriterLock(checkpoint.directory, self._owner, rows_path)
        try:
            lock.acquire()  # one writer per rows file: another task instance is refused here
        except PathInUseError as exc:
            raise AirflowFailException(str(exc)) from exc
        ledger: SpendLedger | None = None
        try:
            try:
                finished = checkpoint.finished()
            except RowsFileChangedError as exc:
                raise AirflowFailException(str(exc)) from exc
            if finished is not None:  # an earlier try did it all (and maybe died before success)
                self.log.info(
                    "An earlier try of this task instance finished this work (%s): its manifest is "
                    "returned, nothing is sent",
                    rows_path,
                )
                self._manifest = finished
                return finished
            # Rows go to one part per chunk in a checkpoint beside the rows file, then are merged in
            # plan order: a retry fetches only the missing chunks and the file never holds a row twice.
            stored = checkpoint.load()
            try:
                ledger = SpendLedger(
                    checkpoint.directory / LEDGER_FILE_NAME,
                    owner=self._run_key or "",
                    max_cost_usd=self.max_cost_usd,
                )
            except LedgerError as exc:
                raise AirflowFailException(f"{exc} Nothing was sent.") from exc

            def keep(outcome: ChunkOutcome) -> None:
                assert ledger is not None
                ledger.flush()  # the replies' costs are written before their rows count as stored
                checkpoint.save(outcome)
                stored[outcome.index] = replace(outcome, rows=[])  # rows live in storage, not in memory

            try:
                # items stay the API's JSON text on their way to the file: no dict built per item
                summary = self._fetch(
                    target_set,
                    chunks,
                    _no_sink,
                    done=dict(stored),
                    on_chunk=keep,
                    raw_items=True,
                    ledger=ledger,
                )
            except BaseException:
                done = sum(1 for outcome in stored.values() if not outcome.pending)
                self.log.warning(
                    "Chunks finished: %d of %d (%d more partly), kept in %s; the next try of this "
                    "task (an Airflow retry, or a clear after fixing the cause) fetches only what is missing",
                    done,
                    len(chunks),
                    len(stored) - done,
                    checkpoint.directory,
                )
                raise
            if not lock.holds():
                raise AirflowFailException(
                    f"A newer try of this task instance took over {rows_path} while this one ran: this "
                    "try stops without writing the rows file (the newer one does)."
                )
            rows_bytes = checkpoint.merge()
            manifest = summary.manifest(str(rows_path))
            self._missing = missing_listing(summary, target_set, manifest_path or rows_path)
            manifest.update(self._missing)
            ledger.close()
            manifest["cost_upper_bound_usd"] = round(max(ledger.upper_bound_usd, summary.cost_usd), 6)
            if manifest_path is not None:
                manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            checkpoint.finish(manifest, rows_bytes)
            self._manifest = manifest
            self.log.info("Wrote %s to %s", counted(summary.items, "row"), rows_path)
            self._log_summary(summary, target_set, ledger)
            return manifest
        finally:
            if ledger is not None:
                ledger.close()
            lock.release()

    def _request_options(self) -> dict[str, Any]:
        """The fields every request carries besides ``targets`` (part of each chunk's checkpoint key)."""
        return {
            "include_subdomains": as_bool(self.include_subdomains, "include_subdomains"),
            "rank_scale": self.rank_scale,
            "tag": self.tag,
        }

    def _fetch(
        self,
        target_set: TargetSet,
        chunks: list[list[str]],
        sink: Any,
        *,
        done: Mapping[int, ChunkOutcome] | None = None,
        on_chunk: Callable[[ChunkOutcome], None] | None = None,
        raw_items: bool = False,
        ledger: SpendLedger | None = None,
    ) -> FetchSummary:
        def post(chunk: list[str]) -> Any:
            return self.hook.bulk_pages_summary(
                chunk,
                include_subdomains=as_bool(self.include_subdomains, "include_subdomains"),
                rank_scale=self.rank_scale,
                tag=self.tag,
                raw_items=raw_items,
            )

        stored = dict(done or {})
        remaining = [i for i in range(len(chunks)) if i not in stored or stored[i].pending]
        try:
            with fail_task_on_permanent_errors(CostLimitExceededError):
                max_cost, unconfirmed = self._cap_for_this_try(stored, remaining, chunks, ledger)
                hook = self.hook
                if isinstance(hook, _WriteAheadHook):
                    hook.ledger = ledger  # every attempt is written to it before it is sent
                self._summary = fetch_bulk_pages_summary(
                    target_set,
                    chunks,
                    post,
                    sink,
                    max_active_requests=self.max_active_requests,
                    standby_chunks=self._standby_chunks(),
                    done=done,
                    on_chunk=on_chunk,
                    max_cost_usd=max_cost,
                    unconfirmed_usd=unconfirmed,
                    on_interrupt=self.hook.limiter.close,  # no retry either, once interrupted
                )
            return self._summary
        finally:
            self.hook.close()

    def _standby_chunks(self) -> int:
        """Chunks that wait for a request slot beside those in flight (see ``fetch_bulk_pages_summary``).

        ``max_active_requests`` of them when more than one request may be in flight and the hook's
        limiter keeps them to ``max_active_requests`` (``hook_params`` may give another limiter):
        a slot freed when a reply's body has been read is then taken at once while that reply is
        decoded. None with one request in flight: each reply is then checked before the next
        request leaves.
        """
        if self.max_active_requests > 1 and self.hook.limiter.max_in_flight <= self.max_active_requests:
            return self.max_active_requests
        return 0

    def _cap_for_this_try(
        self,
        stored: Mapping[int, ChunkOutcome],
        remaining: Sequence[int],
        chunks: Sequence[Sequence[str]],
        ledger: SpendLedger | None,
    ) -> tuple[float | None, float]:
        """``max_cost_usd`` and what earlier tries may have spent beyond the stored chunks' cost.

        The fetch counts stored chunks as spent; the ledger adds replies never stored and
        attempts whose reply was never read (their upper bound): that extra, USD, is counted
        against the cap the user set (which the cost guard's error names as it is). Nothing left
        to fetch: no cap at all, so that paid chunks are always merged, whatever was spent.

        :return: the cap (USD or ``None``) and the extra (USD).
        :raises CostLimitExceededError: when earlier tries left no room for what is left to fetch.
        """
        if self.max_cost_usd is None or not remaining:
            return None, 0.0
        if ledger is None:
            return self.max_cost_usd, 0.0
        kept = sum(outcome.cost_usd for outcome in stored.values())
        extra = round(max(0.0, ledger.upper_bound_usd - kept), 5)
        if round(self.max_cost_usd - extra, 5) > 0:
            return self.max_cost_usd, extra
        to_send = sum(len(stored[i].pending) if i in stored else len(chunks[i]) for i in remaining)
        raise CostLimitExceededError(
            max_cost_usd=self.max_cost_usd,
            spent_usd=kept,
            reserved_usd=0.0,
            needed_usd=estimate_cost_usd(len(remaining), to_send),
            what=(
                f"the plan of {counted(len(remaining), 'request')} for {counted(to_send, 'target')} "
                "left after earlier tries"
            ),
            unconfirmed_usd=extra,
        )

    def _log_summary(
        self, summary: FetchSummary, target_set: TargetSet | None = None, ledger: SpendLedger | None = None
    ) -> None:
        """Log the totals; rejected and missing targets as the user wrote them (their inputs)."""

        def named(targets: list[str]) -> list[str]:
            if target_set is None:
                return targets
            return [text for target in targets for text in target_set.inputs_of(target)]

        self.log.info(
            "Done: %s, %s, %s, %s, cost %.5f USD",
            counted(summary.requests, "request"),
            counted(summary.items, "item"),
            counted(len(summary.missing_targets), "target without data", "targets without data"),
            counted(summary.unmatched_items, "unmatched item"),
            summary.cost_usd,
        )
        if ledger is not None:
            figures = ledger.summary()
            self.log.info(
                "Spend of this task instance over %s: %.5f USD reported by replies, up to %.5f USD "
                "with the requests whose reply was never read (ledger %s)",
                counted(ledger.tries, "try", "tries"),
                figures["settled_usd"],
                figures["upper_bound_usd"],
                ledger.path,
            )
        if summary.rejected_targets:
            self.log.warning(
                "The API refused %s (40501), isolated by group testing; no rows for them: %s",
                counted(len(summary.rejected_targets), "target"),
                ", ".join(named(summary.rejected_targets[:200])),
            )
        if summary.unresolved_targets:
            self.log.warning(
                "%s of refused requests unresolved (isolation allowance or max_cost_usd "
                "spent); no rows for them, listed in the manifest's unresolved_targets: %s",
                counted(len(summary.unresolved_targets), "target stays", "targets stay"),
                ", ".join(summary.unresolved_targets[:200]),
            )
        if summary.missing_targets:
            shown = named(summary.missing_targets[:200])
            self.log.warning(
                "No data for %s%s: %s",
                counted(len(summary.missing_targets), "target"),
                " (first 200)" if len(summary.missing_targets) > 200 else "",
                ", ".join(shown),
            )


def missing_listing(
    summary: FetchSummary, target_set: TargetSet, beside: ObjectStoragePath | None
) -> dict[str, Any]:
    """The manifest's list of the targets without data, as the user wrote them.

    :param summary: the finished fetch.
    :param target_set: gives each target's original inputs.
    :param beside: the manifest (or rows file) the list of more than :data:`MAX_LISTED_MISSING`
        goes beside, as ``missing_targets.txt`` (``<rows>.missing_targets.txt`` beside a ``.jsonl``
        path); ``None`` (XCom mode): the first ones only.
    :return: ``{"missing_target_list": [...], "missing_targets_uri": str | None}``: the original
        inputs of every missing target (all of them when there are at most
        :data:`MAX_LISTED_MISSING`, else the first ones, and every one in the file).
    """
    names = [text for target in summary.missing_targets for text in target_set.inputs_of(target)]
    uri = None
    if len(names) > MAX_LISTED_MISSING and beside is not None:
        own = beside.name == MANIFEST_FILE_NAME
        name = MISSING_FILE_NAME if own else f"{beside.stem}.{MISSING_FILE_NAME}"
        path = beside.parent / name
        path.write_text("".join(f"{text}\n" for text in names), encoding="utf-8")
        uri = str(path)
    return {"missing_target_list": names[:MAX_LISTED_MISSING], "missing_targets_uri": uri}


def _no_sink(rows: list[Row]) -> None:
    """Rows of the storage path are stored by the checkpoint (``on_chunk``), not by the sink."""
