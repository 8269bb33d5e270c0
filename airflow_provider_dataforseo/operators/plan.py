"""Plan any number of targets into chunk groups, one mapped BulkPagesSummaryOperator per group.

::

    plan = BulkPagesSummaryPlanOperator(
        task_id="plan",
        targets="s3://aws_default@bucket/targets.txt",  # up to 1,000,000 targets
        groups_path="s3://aws_default@bucket/dataforseo/{{ run_id }}/groups/",
    )
    fetch = BulkPagesSummaryOperator.partial(
        task_id="fetch",
        output_path="s3://aws_default@bucket/dataforseo/{{ run_id }}/part-{{ ti.map_index }}/",
        max_active_requests=10,
        pool="dataforseo",
        pool_slots=10,
    ).expand(chunk_group=plan.output)

From a ``@task``, call :func:`plan_bulk_pages_summary` directly. The logic is in
:mod:`airflow_provider_dataforseo.planning`; this module reads and writes object storage.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath, conf
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import lower_bound
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.planning import (
    DEFAULT_MAX_MAP_LENGTH,
    DEFAULT_REQUESTS_PER_GROUP,
    plan_chunk_groups,
    write_chunk_groups,
)
from airflow_provider_dataforseo.sources import parse_roots
from airflow_provider_dataforseo.targets import count_main_domains
from airflow_provider_dataforseo.targets_io import is_literal, read_targets_streaming
from airflow_provider_dataforseo.wording import counted

__all__ = [
    "BulkPagesSummaryPlanOperator",
    "max_map_length",
    "plan_bulk_pages_summary",
    "read_targets_streaming",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

log = logging.getLogger(__name__)


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: most instances one task can be mapped into."""
    return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)


def plan_bulk_pages_summary(
    targets: object,
    groups_path: str | None = None,
    *,
    requests_per_group: int = DEFAULT_REQUESTS_PER_GROUP,
    max_groups: int | None = None,
    targets_column: int | str | None = None,
    targets_encoding: str | None = None,
    allowed_target_roots: Sequence[str] | str | None = None,
    trusted: bool = True,
) -> list[dict[str, Any]]:
    """Plan targets into chunk groups for ``BulkPagesSummaryOperator.partial(...).expand(chunk_group=...)``.

    Targets are read (a file is streamed), normalised, validated and de-duplicated; ALL of them
    are planned into requests at once (<= 1000 targets from <= 100 main domains each, as few as
    the packing finds), and the requests are cut into at most ``max_groups`` groups of about
    ``requests_per_group`` requests. Nothing is sent to DataForSEO and nothing is charged.

    :param targets: a list or any sequence of strings (a mapped task's output too), a text, or the
        URI of a text/CSV file or sitemap of up to 1,000,000 targets (see
        :func:`~airflow_provider_dataforseo.targets_io.read_targets_streaming`).
    :param groups_path: folder URI (``file:///...``, ``s3://conn@bucket/prefix/``) where each group is
        written as ``group-00000.json`` ...; each returned value is then a ~200-byte descriptor
        ``{"uri", "group", "groups", "requests", "targets"}``. Without it the groups are returned
        inline (chunks and inputs in XCom), allowed for up to
        :data:`~airflow_provider_dataforseo.planning.MAX_INLINE_TARGETS` targets.
    :param requests_per_group: requests per group (one mapped task each), default 20.
    :param max_groups: most groups; default Airflow's ``[core] max_map_length`` (1024).
    :param targets_column: the column of a file or of rows to read: a header name or a 0-based index.
    :param targets_encoding: the file's encoding; by default from its BOM, else UTF-8, else detected.
    :param allowed_target_roots: roots (URIs) that files and sitemaps must lie under, together with
        ``[dataforseo] allowed_target_roots``.
    :param trusted: ``targets`` was written by the DAG author (not rendered from params): with no
        roots set, a file is read only then.
    :return: one value per group, in order; a group's index equals its mapped task's ``map_index``.
    :raises AirflowFailException: bad targets (every bad entry listed), bad arguments, or too many
        targets for an inline plan; no Airflow retries, nothing was sent.
    """
    limit = max_map_length() if max_groups is None else max_groups
    try:
        normalised = read_targets_streaming(
            targets,
            column=targets_column,
            encoding=targets_encoding,
            allowed_roots=allowed_target_roots,
            trusted=trusted,
        )
        groups = plan_chunk_groups(
            normalised.targets, max_groups=limit, requests_per_group=requests_per_group
        )
        path = str(groups_path).strip() if groups_path else None
        if path:
            ObjectStoragePath(path).mkdir(parents=True, exist_ok=True)
        result = write_chunk_groups(groups, normalised.extra_inputs, groups_uri=path, write_text=_write_text)
    except (InvalidTargetsError, TypeError, ValueError) as exc:
        raise AirflowFailException(f"{exc}") from exc
    n_targets = len(normalised.targets)
    n_requests = sum(group.requests for group in groups)
    n_domains = count_main_domains(normalised.targets)
    log.info(
        "%s (%s, %s) planned into %s (lower bound %d) in %s (max %d); estimated cost <= %.5f USD; groups %s",
        counted(n_targets, "target"),
        counted(normalised.inputs, "input"),
        counted(n_domains, "main domain"),
        counted(n_requests, "request"),
        lower_bound(n_targets, n_domains),
        counted(len(groups), "group"),
        limit,
        n_requests * api.COST_PER_REQUEST_USD + n_targets * api.COST_PER_ITEM_USD,
        path or "inline",
    )
    return result


def _write_text(uri: str, text: str) -> None:
    ObjectStoragePath(uri).write_text(text, encoding="utf-8")


class BulkPagesSummaryPlanOperator(BaseOperator):
    """Plan targets into chunk groups: the first step of a fetch mapped over many workers.

    Returns one value per group (see :func:`plan_bulk_pages_summary`); map
    :class:`~airflow_provider_dataforseo.operators.bulk_pages_summary.BulkPagesSummaryOperator`
    over them with ``.partial(...).expand(chunk_group=plan.output)``: one mapped task per group,
    never one per URL, never more than ``max_map_length``. Sends nothing, costs nothing.

    :param targets: (templated) a list or any sequence of strings, a text, or the URI of a
        text/CSV file or sitemap (see :func:`plan_bulk_pages_summary`).
    :param groups_path: (templated) folder URI the group files are written to, e.g.
        ``"s3://aws_default@bucket/dataforseo/{{ dag.dag_id }}/{{ run_id }}/groups/"``; without
        it, groups travel inline through XCom (up to 2,000 targets).
    :param requests_per_group: (templated) requests per group, default 20.
    :param max_groups: most groups; default Airflow's ``[core] max_map_length``.
    :param targets_column: (templated) the column of a file or of rows to read: a header name or a
        0-based index.
    :param targets_encoding: (templated) the file's encoding; detected by default.
    :param allowed_target_roots: URIs under which target files and sitemaps may be read (not
        templated: a run's params cannot widen it), together with ``[dataforseo] allowed_target_roots``.
        With neither set, only a file URI written literally in the DAG is read.
    """

    template_fields: Sequence[str] = (
        "targets",
        "groups_path",
        "requests_per_group",
        "targets_column",
        "targets_encoding",
    )
    ui_color = "#8ab4f8"

    def __init__(
        self,
        *,
        targets: Any,
        groups_path: str | None = None,
        requests_per_group: int | str = DEFAULT_REQUESTS_PER_GROUP,
        max_groups: int | None = None,
        targets_column: int | str | None = None,
        targets_encoding: str | None = None,
        allowed_target_roots: Sequence[str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(requests_per_group, str):
            _positive_int("requests_per_group", requests_per_group)
        if max_groups is not None:
            _positive_int("max_groups", max_groups)
        self.targets = targets
        self.groups_path = groups_path
        self.requests_per_group = requests_per_group
        self.max_groups = max_groups
        self.targets_column = targets_column
        self.targets_encoding = targets_encoding
        self.allowed_target_roots = parse_roots(allowed_target_roots)
        self._targets_literal = is_literal(targets)  # before rendering: written in the DAG file

    def execute(self, context: Context) -> list[dict[str, Any]]:
        try:
            requests_per_group = _positive_int("requests_per_group", self.requests_per_group)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        return plan_bulk_pages_summary(
            self.targets,
            self.groups_path,
            requests_per_group=requests_per_group,
            max_groups=self.max_groups,
            targets_column=self.targets_column,
            targets_encoding=self.targets_encoding or None,
            allowed_target_roots=self.allowed_target_roots,
            trusted=self._targets_literal,
        )


def _positive_int(name: str, value: object) -> int:
    """``value`` as an integer >= 1 (a rendered template such as ``"20"`` is accepted)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
