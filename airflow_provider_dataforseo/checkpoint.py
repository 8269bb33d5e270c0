"""A record of finished chunks beside the rows file, so that a retried task fetches only the rest.

Pure-ish module: no Airflow import; it works on any path object with the ``pathlib`` interface
(``pathlib.Path`` in tests, Airflow's ``ObjectStoragePath`` for local files or S3 in the operator).

Layout, for the rows file ``.../bulk_pages_summary.jsonl``::

    .../bulk_pages_summary.jsonl.checkpoint/
        <digest>.jsonl   the rows of one finished chunk (JSON Lines), written first
        <digest>.json    its record: counts, cost, missing, rejected and pending targets, task ids, size
        run.json         the run that wrote it (``{"run": "<dag_id>/<task_id>/<run_id>/<map_index>"}``)

``<digest>`` is a SHA-256 of the chunk's targets and the request options (``include_subdomains``,
``rank_scale``, ``tag``), so a record is only ever reused for the very same request; a changed
plan reuses the chunks it still has and ignores the others. A chunk counts as finished only when
its record exists, parses, matches the chunk, and its rows file has the recorded size: a try that
died between the two writes simply fetches that chunk again. A chunk stopped half-way (e.g. by the
cost guard during follow-ups) is stored too, with the targets still ``pending``: a later try
fetches only those and adds their rows to the stored ones. Only tries of the run that wrote the
checkpoint resume from it: another run writing to the same path (a fixed ``output_path``) finds
it, logs that it belongs to another run, removes it and fetches everything, so it never reuses
older data.

Once every chunk is finished, :meth:`Checkpoint.merge` writes the rows file from the parts in plan
order (so it holds every row exactly once, in the same order as a clean run), and
:meth:`Checkpoint.clear` removes the folder. Object stores cannot append, which is why rows go to
one object per chunk and are merged at the end rather than appended to the rows file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from airflow_provider_dataforseo.fetch import ChunkOutcome, Row

log = logging.getLogger(__name__)

#: Suffix of the checkpoint folder, appended to the rows file's name.
CHECKPOINT_SUFFIX: Final = ".checkpoint"
#: The file in the checkpoint folder naming the run that may resume from it.
RUN_FILE_NAME: Final = "run.json"
#: Version of the record format; records of another version are ignored.
FORMAT_VERSION: Final = 1
_COPY_BUFFER_BYTES: Final = 1 << 20

#: A ``pathlib``-like path: ``pathlib.Path`` or ``airflow.sdk.ObjectStoragePath``.
StoragePath = Any


class CheckpointError(ValueError):
    """A checkpoint record is unusable; the message says why (the chunk is then fetched again)."""


def chunk_digest(chunk: Sequence[str], options: Mapping[str, Any]) -> str:
    """The key of one request: SHA-256 of its targets and options, 32 hex digits.

    :param chunk: the request's normalised targets, in order.
    :param options: the request's other fields (JSON-serialisable), e.g.
        ``{"include_subdomains": True, "rank_scale": None, "tag": None}``.
    """
    text = json.dumps({"targets": list(chunk), "options": dict(options)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_ENCODER: Final = msgspec.json.Encoder()


def encode_rows(rows: Sequence[Row]) -> bytes:
    """Rows as JSON Lines (UTF-8, one object per line), as the rows file holds them.

    Encoded with ``msgspec`` (an Airflow dependency; ~5x faster than ``json`` for 1000-item
    chunks): compact separators, non-ASCII characters as UTF-8, a raw item (``msgspec.Raw``)
    written exactly as the API sent it.
    """
    return _ENCODER.encode_lines(rows)


def _str_list(record: Mapping[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CheckpointError(f"{key!r} is not a list of strings")
    return list(value)


def _count(record: Mapping[str, Any], key: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckpointError(f"{key!r} is not a count")
    return value


def record_for(outcome: ChunkOutcome, digest: str, size: int) -> dict[str, Any]:
    """The JSON record of a finished chunk (what :func:`outcome_from_record` reads back)."""
    return {
        "version": FORMAT_VERSION,
        "digest": digest,
        "targets": outcome.targets,
        "items": outcome.items,
        "requests": outcome.requests,
        "cost_usd": outcome.cost_usd,
        "missing_targets": list(outcome.missing_targets),
        "rejected_targets": list(outcome.rejected_targets),
        "unresolved_targets": list(outcome.unresolved_targets),
        "unmatched_items": outcome.unmatched_items,
        "task_ids": list(outcome.task_ids),
        "pending": list(outcome.pending),
        "bytes": size,
    }


def outcome_from_record(record: object, *, index: int, chunk: Sequence[str], digest: str) -> ChunkOutcome:
    """Read a chunk's record back into a resumed :class:`ChunkOutcome` (without rows).

    :param record: the decoded JSON of the record.
    :param index: the chunk's position in the current plan.
    :param chunk: its targets in the current plan.
    :param digest: its :func:`chunk_digest` in the current plan.
    :return: the outcome, ``resumed=True``.
    :raises CheckpointError: when the record is not one this module wrote for this chunk.
    """
    if not isinstance(record, Mapping):
        raise CheckpointError("the record is not a JSON object")
    if record.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"format version {record.get('version')!r}, expected {FORMAT_VERSION}")
    if record.get("digest") != digest:
        raise CheckpointError("the record belongs to another request")
    if _count(record, "targets") != len(chunk):
        raise CheckpointError("the record's target count differs from the chunk's")
    cost = record.get("cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost < float("inf"):
        raise CheckpointError("'cost_usd' is not an amount of USD")
    members = set(chunk)
    missing = _str_list(record, "missing_targets")
    rejected = _str_list(record, "rejected_targets")
    pending = _str_list(record, "pending")
    unresolved = _str_list(record, "unresolved_targets") if "unresolved_targets" in record else []
    if not members.issuperset([*missing, *rejected, *pending, *unresolved]):
        raise CheckpointError("the record names targets outside the chunk")
    _count(record, "bytes")
    return ChunkOutcome(
        index=index,
        targets=len(chunk),
        items=_count(record, "items"),
        requests=_count(record, "requests"),
        cost_usd=float(cost),
        missing_targets=missing,
        rejected_targets=rejected,
        unresolved_targets=unresolved,
        unmatched_items=_count(record, "unmatched_items"),
        task_ids=_str_list(record, "task_ids"),
        resumed=True,
        pending=pending,
    )


class Checkpoint:
    """Finished chunks of one rows file, kept beside it (see the module doc).

    :param rows_path: the rows file (``pathlib.Path`` or ``ObjectStoragePath``); the checkpoint
        folder is ``<rows_path>.checkpoint`` beside it.
    :param chunks: the planned chunks, in plan order.
    :param options: the request options every chunk is sent with (part of each chunk's key).
    :param run: who may resume from this checkpoint, e.g. ``"<dag_id>/<task_id>/<run_id>/<map_index>"``
        (the operator passes its task instance's, so every try of one run resumes, and another
        run writing to the same path starts afresh instead of reusing older data); ``None``
        accepts any checkpoint.
    """

    def __init__(
        self,
        rows_path: StoragePath,
        chunks: Sequence[Sequence[str]],
        options: Mapping[str, Any],
        *,
        run: str | None = None,
    ) -> None:
        self.rows_path = rows_path
        self.directory = rows_path.parent / f"{rows_path.name}{CHECKPOINT_SUFFIX}"
        self.chunks = [list(chunk) for chunk in chunks]
        self.digests = [chunk_digest(chunk, options) for chunk in self.chunks]
        self.run = run
        self._run_written = False
        self._stored_rows: set[int] = set()  # interrupted chunks whose stored rows a save adds to

    def _run_file(self) -> StoragePath:
        return self.directory / RUN_FILE_NAME

    def _stored_run(self) -> str | None:
        """The run that wrote the checkpoint (``None`` when it names none or cannot be read)."""
        try:
            value = json.loads(self._run_file().read_text(encoding="utf-8")).get("run")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def _part(self, index: int) -> StoragePath:
        return self.directory / f"{self.digests[index]}.jsonl"

    def _record(self, index: int) -> StoragePath:
        return self.directory / f"{self.digests[index]}.json"

    def load(self) -> dict[int, ChunkOutcome]:
        """The chunks an earlier try stored, by index (``{}`` when there is no checkpoint).

        Complete chunks have an empty ``pending``; interrupted ones list the targets still to
        fetch. A record that cannot be used is ignored with a warning naming why; its chunk is
        fetched again.
        """
        if not self.directory.exists():
            return {}
        if self.run is not None:
            stored_run = self._stored_run()
            if stored_run != self.run:
                log.warning(
                    "The checkpoint beside %s was written by another run (%s; this is %s): ignored and "
                    "removed, every chunk is fetched. Put {{ run_id }} in output_path to keep runs apart.",
                    self.rows_path,
                    stored_run or "unknown",
                    self.run,
                )
                self.clear()
                return {}
            self._run_written = True
        finished: dict[int, ChunkOutcome] = {}
        for index, chunk in enumerate(self.chunks):
            record_path = self._record(index)
            if not record_path.exists():
                continue
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                outcome = outcome_from_record(record, index=index, chunk=chunk, digest=self.digests[index])
                size = self._part(index).stat().st_size
                if size != record["bytes"]:
                    raise CheckpointError(
                        f"its rows file holds {size} bytes, the record says {record['bytes']}"
                    )
            except (OSError, ValueError) as exc:  # CheckpointError and JSON errors are ValueErrors
                log.warning("Checkpoint of chunk %d ignored (%s): it is fetched again", index + 1, exc)
                continue
            finished[index] = outcome
            if outcome.pending:
                self._stored_rows.add(index)
        return finished

    def save(self, outcome: ChunkOutcome) -> None:
        """Store a finished (or interrupted) chunk: its rows first, then its record.

        For a chunk :meth:`load` found interrupted, ``outcome.rows`` are the newly fetched rows:
        they are added to the stored ones, all in chunk order.

        :param outcome: the chunk's outcome with its rows.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.run is not None and not self._run_written:
            self._run_file().write_text(json.dumps({"run": self.run}), encoding="utf-8")
            self._run_written = True
        rows = list(outcome.rows)
        if outcome.index in self._stored_rows:
            with self._part(outcome.index).open("rb") as handle:
                rows.extend(json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line)
            position = {target: i for i, target in enumerate(self.chunks[outcome.index])}
            rows.sort(key=lambda row: position.get(row.get("target") or "", len(position)))
        data = encode_rows(rows)
        with self._part(outcome.index).open("wb") as handle:
            handle.write(data)
        record = record_for(outcome, self.digests[outcome.index], len(data))
        self._record(outcome.index).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        if outcome.pending:
            self._stored_rows.add(outcome.index)
        else:
            self._stored_rows.discard(outcome.index)

    def merge(self) -> int:
        """Write the rows file from every chunk's rows, in plan order; return the bytes written.

        :raises CheckpointError: when a chunk has no stored rows (merge only once all are complete).
        """
        absent = [i + 1 for i in range(len(self.chunks)) if not self._part(i).exists()]
        if absent:
            raise CheckpointError(f"chunks {absent[:10]} have no stored rows; nothing was merged")
        written = 0
        with self.rows_path.open("wb") as out:
            for index in range(len(self.chunks)):
                with self._part(index).open("rb") as part:
                    shutil.copyfileobj(part, out, _COPY_BUFFER_BYTES)
                    written += part.tell()
        return written

    def clear(self) -> None:
        """Remove the checkpoint folder and everything in it (missing folder: nothing to do)."""
        if not self.directory.exists():
            return
        for child in list(self.directory.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
        try:
            self.directory.rmdir()
        except OSError:  # object stores have no real folders: nothing is left once objects are gone
            log.debug("Checkpoint folder %s not removed", self.directory)
