"""Scale past one worker: plan targets into chunk groups for mapped tasks, merge their manifests.

Pure module: no Airflow import, no network; storage is reached through the ``read_text`` /
``write_text`` callables the caller passes (the planning operator passes ``ObjectStoragePath``).

The pattern (see ``example_dags/example_dataforseo_at_scale.py``)::

    plan (one task)  ->  fetch.partial(...).expand(chunk_group=plan.output)  ->  merge (one task)

1. :func:`plan_chunk_groups` plans ALL targets at once with
   :func:`~airflow_provider_dataforseo.chunks.plan_chunks` (so the request count is the global
   plan's, close to ``max(ceil(n/1000), ceil(main_domains/100))``), then cuts the list of chunks
   into consecutive *groups* of about ``requests_per_group`` requests each, never more than
   ``max_groups`` groups (Airflow's ``[core] max_map_length``, 1024 by default): one mapped task
   per group, never one per URL.
2. Each group is written to object storage as a small JSON document (:func:`group_document`:
   its chunks exactly as planned, and the original inputs of the targets whose input differed from
   the normalised form). The planning task returns one *descriptor* per group
   (:func:`group_descriptor`: ``{"uri", "group", "groups", "requests", "targets"}``, ~200 bytes),
   so the XCom that ``expand()`` maps over stays small whatever the number of targets: 100,000
   targets in 5 groups is ~1 KB of XCom instead of ~4 MB of URLs. Small plans can carry their
   chunks inline instead (:data:`MAX_INLINE_TARGETS`).
3. A mapped :class:`~airflow_provider_dataforseo.operators.bulk_pages_summary.BulkPagesSummaryOperator`
   reads its group (:func:`load_chunk_group`), posts exactly those chunks and returns its manifest;
   :func:`merge_manifests` adds the manifests up.

Memory: reading, normalising and de-duplicating
(:func:`~airflow_provider_dataforseo.sources.read_target_lines`,
:func:`normalise_stream`) stream over the input and keep each distinct target once (~100 bytes),
plus the original inputs only of the targets whose input was not already normalised; until
reading ends, a dict entry per target more (~30 bytes). Planning works on integer positions (~4
bytes a target) besides the chunks it returns (~8 bytes a target). 1,000,000 targets peak at
~140 MB over the process's baseline, at the end of reading (``benchmarks/memory.py``); each
mapped task then holds one group only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import lower_bound, plan_chunks
from airflow_provider_dataforseo.targets import (
    TargetSet,
    count_main_domains,
    normalise_distinct,
    normalise_target,
)

#: Airflow's default ``[core] max_map_length``: a task can be mapped into at most this many instances.
DEFAULT_MAX_MAP_LENGTH: Final = 1024
#: Requests per group by default: with 5-10 requests in flight per mapped task that is 2-4 rounds
#: of requests per task, enough to amortise a task's start-up, few enough that a retried group
#: repeats little work (and money).
DEFAULT_REQUESTS_PER_GROUP: Final = 20
#: Above this many targets a plan must go to object storage (``groups_path``): inline chunks in
#: XCom would pass ~100 KB (a target is ~40-50 bytes of JSON).
MAX_INLINE_TARGETS: Final = 2000
#: ``format`` of a group document.
GROUP_FORMAT: Final = "dataforseo-chunk-group/1"
#: File name of group ``i`` under ``groups_path``.
GROUP_FILE_TEMPLATE: Final = "group-{index:05d}.json"

_MANIFEST_COUNTS: Final = ("targets", "items", "requests", "missing_targets", "unmatched_items")


# ---------------------------------------------------------------------------------------------
# Reading and normalising many targets with little memory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalisedTargets:
    """Distinct normalised targets, with the original inputs kept only where they differ.

    :ivar targets: normalised targets in first-seen order, each once.
    :ivar extra_inputs: target -> every original input that normalised to it, in input order,
        ONLY for targets given in another form or more than once; any other target's one input
        is the target itself.
    :ivar inputs: how many input entries there were (duplicates included).
    """

    targets: list[str]
    extra_inputs: dict[str, list[str]]
    inputs: int

    def inputs_of(self, target: str) -> list[str]:
        """Every original input of ``target``."""
        return self.extra_inputs.get(target) or [target]

    def target_set(self) -> TargetSet:
        """The :class:`~airflow_provider_dataforseo.targets.TargetSet` of these targets (the same
        lists, no copy; its ``inputs`` is :attr:`extra_inputs`)."""
        return TargetSet(targets=self.targets, inputs=self.extra_inputs)


def normalise_stream(values: Iterable[object]) -> NormalisedTargets:
    """Normalise, validate and de-duplicate targets from a stream, keeping first-seen order.

    :func:`airflow_provider_dataforseo.targets.normalise_distinct` (as
    :func:`~airflow_provider_dataforseo.targets.normalise_targets`), also counting the entries:
    an input already in normal form is not stored twice (see :class:`NormalisedTargets`), so the
    result holds about one string per distinct target (~100 bytes) and reading needs a dict entry
    per target more (~40 bytes) until it returns.

    :param values: raw entries.
    :return: the :class:`NormalisedTargets`.
    :raises InvalidTargetsError: listing every bad entry with its 0-based position and the reason;
        also when there is no entry at all.
    """
    targets, extra, count = normalise_distinct(values)
    return NormalisedTargets(targets=targets, extra_inputs=extra, inputs=count)


# ---------------------------------------------------------------------------------------------
# Chunk groups
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkGroup:
    """Consecutive planned requests that one mapped task posts.

    :ivar index: 0-based position of the group (equals the mapped task's ``map_index``).
    :ivar chunks: the requests, each a list of normalised targets (<= 1000, <= 100 main domains).
    """

    index: int
    chunks: list[list[str]]

    @property
    def requests(self) -> int:
        """Number of requests (chunks) in the group."""
        return len(self.chunks)

    @property
    def targets(self) -> int:
        """Number of targets in the group."""
        return sum(len(chunk) for chunk in self.chunks)


def _check_group_limits(max_groups: int, requests_per_group: int) -> None:
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise ValueError(f"max_groups must be an integer >= 1, got {max_groups!r}")
    if (
        isinstance(requests_per_group, bool)
        or not isinstance(requests_per_group, int)
        or requests_per_group < 1
    ):
        raise ValueError(f"requests_per_group must be an integer >= 1, got {requests_per_group!r}")


def group_chunks(
    chunks: Sequence[list[str]],
    *,
    max_groups: int = DEFAULT_MAX_MAP_LENGTH,
    requests_per_group: int = DEFAULT_REQUESTS_PER_GROUP,
) -> list[ChunkGroup]:
    """Cut planned chunks into consecutive groups of (nearly) equal request counts.

    The number of groups is ``min(max_groups, ceil(len(chunks) / requests_per_group))``; group
    sizes differ by at most one request (the first groups take the extra ones). Deterministic:
    the same chunks give the same groups.

    :param chunks: the planned requests, in order.
    :param max_groups: most groups (mapped tasks) allowed, e.g. Airflow's ``max_map_length``.
    :param requests_per_group: requests a group should hold; groups get bigger only when
        ``max_groups`` would otherwise be exceeded.
    :return: the groups, indexed 0..g-1; empty when there are no chunks.
    :raises ValueError: when ``max_groups`` or ``requests_per_group`` is not an integer >= 1.
    """
    _check_group_limits(max_groups, requests_per_group)
    if not chunks:
        return []
    count = min(max_groups, math.ceil(len(chunks) / requests_per_group))
    size, extra = divmod(len(chunks), count)
    groups: list[ChunkGroup] = []
    start = 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        groups.append(ChunkGroup(index=index, chunks=list(chunks[start:stop])))  # the same lists, no copy
        start = stop
    return groups


def plan_chunk_groups(
    targets: Sequence[str],
    *,
    max_groups: int = DEFAULT_MAX_MAP_LENGTH,
    requests_per_group: int = DEFAULT_REQUESTS_PER_GROUP,
) -> list[ChunkGroup]:
    """Plan normalised targets into requests, then into groups for mapped tasks.

    Every target lands in exactly one chunk of exactly one group; every chunk holds at most 1000
    targets from at most 100 main domains (:func:`~airflow_provider_dataforseo.chunks.plan_chunks`);
    there are at most ``max_groups`` groups.

    :param targets: normalised, distinct targets (see :func:`normalise_stream`).
    :param max_groups: most groups allowed (Airflow's ``max_map_length``, 1024 by default).
    :param requests_per_group: requests a group should hold (see :func:`group_chunks`).
    :return: the groups (empty for no targets).
    :raises ValueError: for a bad ``max_groups`` or ``requests_per_group``.
    """
    _check_group_limits(max_groups, requests_per_group)
    return group_chunks(plan_chunks(targets), max_groups=max_groups, requests_per_group=requests_per_group)


def group_document(group: ChunkGroup, inputs: Mapping[str, list[str]], *, groups: int) -> dict[str, Any]:
    """The JSON document of one group, as written to storage (or passed inline).

    :param group: the group.
    :param inputs: target -> original inputs, for the targets whose inputs are not just the target
        itself (e.g. :attr:`NormalisedTargets.extra_inputs`); others may be present too.
    :param groups: how many groups the plan has.
    :return: ``{"format", "group", "groups", "requests", "targets", "chunks", "inputs"}``.
    """
    extra = {
        target: list(inputs[target])
        for chunk in group.chunks
        for target in chunk
        if target in inputs and list(inputs[target]) != [target]
    }
    return {
        "format": GROUP_FORMAT,
        "group": group.index,
        "groups": groups,
        "requests": group.requests,
        "targets": group.targets,
        "chunks": group.chunks,
        "inputs": extra,
    }


def group_descriptor(group: ChunkGroup, *, groups: int, uri: str) -> dict[str, Any]:
    """The small XCom value naming one stored group: ``{"uri", "group", "groups", "requests", "targets"}``."""
    return {
        "uri": uri,
        "group": group.index,
        "groups": groups,
        "requests": group.requests,
        "targets": group.targets,
    }


def write_chunk_groups(
    groups: Sequence[ChunkGroup],
    inputs: Mapping[str, list[str]],
    *,
    groups_uri: str | None,
    write_text: Callable[[str, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Store the groups and return their descriptors, or return the groups inline.

    :param groups: the planned groups.
    :param inputs: original inputs of the targets given in another form (see :func:`group_document`).
    :param groups_uri: folder URI the group files go to (``group-00000.json``, ...); ``None``
        returns every group document inline (only for up to :data:`MAX_INLINE_TARGETS` targets).
    :param write_text: ``write_text(uri, text)`` stores one file; required with ``groups_uri``.
    :return: one descriptor per group (with ``groups_uri``), else one group document per group.
    :raises ValueError: inline plan above :data:`MAX_INLINE_TARGETS` targets, or ``groups_uri``
        without ``write_text``.
    """
    count = len(groups)
    if groups_uri is None:
        total = sum(group.targets for group in groups)
        if total > MAX_INLINE_TARGETS:
            raise ValueError(
                f"{total} targets are too many to pass through XCom (limit {MAX_INLINE_TARGETS}): "
                "give groups_path, a folder in object storage the groups are written to, e.g. "
                "groups_path='file:///tmp/dataforseo/{{ dag.dag_id }}/{{ run_id }}/groups/'"
            )
        return [group_document(group, inputs, groups=count) for group in groups]
    if write_text is None:
        raise ValueError("write_text is needed to store groups under groups_uri")
    base = groups_uri.rstrip("/")
    descriptors = []
    for group in groups:
        uri = f"{base}/{GROUP_FILE_TEMPLATE.format(index=group.index)}"
        document = group_document(group, inputs, groups=count)
        write_text(uri, json.dumps(document, ensure_ascii=False, separators=(",", ":")))
        descriptors.append(group_descriptor(group, groups=count, uri=uri))
    return descriptors


def load_chunk_group(
    value: object, read_text: Callable[[str], str]
) -> tuple[TargetSet, list[list[str]], dict[str, Any]]:
    """Resolve a group descriptor, an inline group document, or a group file URI.

    The group is checked before anything is sent: every chunk holds 1-1000 normalised targets
    from at most 100 main domains, and no target appears twice.

    :param value: a descriptor ``{"uri", ...}``, a document ``{"chunks", "inputs", ...}``, a URI
        string, or a JSON string of one of those (as a template may render it).
    :param read_text: reads the text of a URI (UTF-8).
    :return: ``(target_set, chunks, info)``: the targets with their original inputs, the chunks
        to post, and ``{"group", "groups", "uri"}`` for logs.
    :raises ValueError: naming what is wrong with the group (its URI when it has one).
    """
    document: Any = value
    if isinstance(document, str):
        text = document.strip()
        document = json.loads(text) if text.startswith("{") else {"uri": text}
    if not isinstance(document, Mapping):
        raise ValueError(f"a chunk group is a descriptor or document (a mapping), not {type(value).__name__}")
    uri = document.get("uri")
    if "chunks" not in document:
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"a chunk group needs 'chunks' or a 'uri', got keys {sorted(document)}")
        stored = json.loads(read_text(uri))
        if not isinstance(stored, Mapping):
            raise ValueError(f"chunk group {uri} is not a JSON object")
        document = stored
    where = f"chunk group {uri}" if isinstance(uri, str) else f"chunk group {document.get('group')!r}"
    chunks = document.get("chunks")
    inputs = document.get("inputs") or {}
    if not isinstance(chunks, list) or not chunks or not isinstance(inputs, Mapping):
        raise ValueError(f"{where}: 'chunks' must be a non-empty list and 'inputs' a mapping")
    targets: list[str] = []
    for number, chunk in enumerate(chunks, 1):
        _check_chunk(chunk, where, number)
        targets.extend(chunk)
    if len(set(targets)) != len(targets):
        raise ValueError(f"{where}: a target appears more than once")
    extra = {str(target): [str(v) for v in inputs[target]] for target in inputs}
    info = {"group": document.get("group"), "groups": document.get("groups"), "uri": uri}
    return TargetSet(targets=targets, inputs=extra), [list(chunk) for chunk in chunks], info


def _check_chunk(chunk: object, where: str, number: int) -> None:
    if not isinstance(chunk, list) or not chunk or not all(isinstance(t, str) for t in chunk):
        raise ValueError(f"{where}: request {number} must be a non-empty list of target strings")
    domains = count_main_domains(chunk)
    if lower_bound(len(chunk), domains) > 1:
        raise ValueError(
            f"{where}: request {number} has {len(chunk)} targets from {domains} main domains; one request "
            f"takes at most {api.MAX_TARGETS_PER_REQUEST} targets from {api.MAX_MAIN_DOMAINS_PER_REQUEST}"
        )
    for target in chunk:
        try:
            normalised = normalise_target(target)
        except ValueError as exc:
            raise ValueError(f"{where}: request {number}: invalid target {target!r}: {exc}") from None
        if normalised != target:
            raise ValueError(f"{where}: request {number}: {target!r} is not normalised ({normalised!r})")


# ---------------------------------------------------------------------------------------------
# Merging manifests
# ---------------------------------------------------------------------------------------------


def merge_manifests(
    manifests: Iterable[Mapping[str, Any] | None], *, uri: str | None = None
) -> dict[str, Any]:
    """Add up the manifests of the mapped tasks into one.

    :param manifests: the mapped tasks' return values (``{"uri", "targets", "items", "requests",
        "cost_usd", "missing_targets", "unmatched_items"}`` and, when present, the list
        ``"rejected_targets"``), as Airflow hands them over (a lazy sequence works). ``None``
        entries (a task that returned nothing) are refused.
    :param uri: where the merged manifest is stored, if it is.
    :return: ``{"uri", "parts", "targets", "items", "requests", "cost_usd", "missing_targets",
        "unmatched_items", "rejected_targets", "unresolved_targets", "part_uris"}``: sums of the
        counts, ``cost_usd`` in USD rounded to 1e-6 (and ``cost_upper_bound_usd``, the sum of the
        parts' bounds, a part without one counting its ``cost_usd``, when any part has one),
        ``rejected_targets`` and ``unresolved_targets`` the parts' lists joined in order, ``parts``
        the number of manifests, ``part_uris`` their ``uri`` in order.
    :raises ValueError: when a manifest is missing or lacks a count.
    """
    totals = dict.fromkeys(_MANIFEST_COUNTS, 0)
    cost = upper = 0.0
    with_bound = False
    rejected: list[str] = []
    unresolved: list[str] = []
    part_uris: list[str | None] = []
    for number, manifest in enumerate(manifests):
        if not isinstance(manifest, Mapping):
            raise ValueError(f"manifest {number} is {manifest!r}, not a manifest mapping")
        for key in _MANIFEST_COUNTS:
            value = manifest.get(key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"manifest {number} has no integer {key!r}: {value!r}")
            totals[key] += value
        value = manifest.get("cost_usd")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"manifest {number} has no number 'cost_usd': {value!r}")
        cost += float(value)
        bound = manifest.get("cost_upper_bound_usd", value)
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ValueError(f"manifest {number} has no number 'cost_upper_bound_usd': {bound!r}")
        with_bound = with_bound or "cost_upper_bound_usd" in manifest
        upper += float(bound)
        listed = manifest.get("rejected_targets", [])
        if not isinstance(listed, list):
            raise ValueError(f"manifest {number} has no list 'rejected_targets': {listed!r}")
        rejected.extend(listed)
        unsettled = manifest.get("unresolved_targets", [])
        if not isinstance(unsettled, list):
            raise ValueError(f"manifest {number} has no list 'unresolved_targets': {unsettled!r}")
        unresolved.extend(unsettled)
        part_uris.append(manifest.get("uri"))
    merged: dict[str, Any] = {
        "uri": uri,
        "parts": len(part_uris),
        **totals,
        "cost_usd": round(cost, 6),
        "rejected_targets": rejected,
        "unresolved_targets": unresolved,
        "part_uris": part_uris,
    }
    if with_bound:
        merged["cost_upper_bound_usd"] = round(upper, 6)
    return merged
