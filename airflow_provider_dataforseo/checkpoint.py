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
:meth:`Checkpoint.finish` writes the completion marker ``done.json`` (the owner, the manifest and
the rows file's size) and only then removes the parts and records. A later try of the same task
instance (a retry after a worker died once the work was done, or a clear) finds the marker and
returns the manifest without a request. What stays beside a finished rows file is the folder with
``done.json``, ``run.json`` and the spend ledger ``ledger.json`` (a few hundred bytes); it is
removed when another run takes the path over (:meth:`Checkpoint.load`) or with the rows file.
Object stores cannot append, which is why rows go to one object per chunk and are merged at the
end rather than appended to the rows file.

One writer per path: :class:`WriterLock` is ``lock.json`` in the same folder, created with an
exclusive create (``O_EXCL`` on a local disk; ``If-None-Match: *`` on S3 through s3fs) by every try
before its first request and removed when the try ends. A writer of another task instance that
finds it refuses at once (:class:`PathInUseError` naming the owner); a later try of the same task
instance takes it over (the earlier try died holding it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from airflow_provider_dataforseo.fetch import ChunkOutcome, Row
from airflow_provider_dataforseo.ledger import LEDGER_FILE_NAME, write_atomically

log = logging.getLogger(__name__)

#: Suffix of the checkpoint folder, appended to the rows file's name.
CHECKPOINT_SUFFIX: Final = ".checkpoint"
#: The file in the checkpoint folder naming the run that may resume from it.
RUN_FILE_NAME: Final = "run.json"
#: The completion marker in the checkpoint folder (see :meth:`Checkpoint.finish`).
DONE_FILE_NAME: Final = "done.json"
#: The writer's lock in the checkpoint folder (see :class:`WriterLock`).
LOCK_FILE_NAME: Final = "lock.json"
#: Version of the record format; records of another version are ignored.
FORMAT_VERSION: Final = 1
_COPY_BUFFER_BYTES: Final = 1 << 20

#: A ``pathlib``-like path: ``pathlib.Path`` or ``airflow.sdk.ObjectStoragePath``.
StoragePath = Any


class CheckpointError(ValueError):
    """A checkpoint record is unusable; the message says why (the chunk is then fetched again)."""


class RowsFileChangedError(RuntimeError):
    """The rows file of finished work was changed since; the message names it and both sizes."""


def chunk_digest(chunk: Sequence[str], options: Mapping[str, Any]) -> str:
    """The key of one request: SHA-256 of its targets and options, 32 hex digits.

    :param chunk: the request's normalised targets, in order.
    :param options: the request's other fields (JSON-serialisable), e.g.
        ``{"include_subdomains": True, "rank_scale": None, "tag": None}``.
    """
    text = json.dumps({"targets": list(chunk), "options": dict(options)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def plan_digest(chunks: Sequence[Sequence[str]], options: Mapping[str, Any]) -> str:
    """The key of a whole plan: SHA-256 of its chunks' :func:`chunk_digest` in order, 32 hex digits."""
    digests = " ".join(chunk_digest(chunk, options) for chunk in chunks)
    return hashlib.sha256(digests.encode("ascii")).hexdigest()[:32]


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
        #: Key of the whole plan (every chunk, in order): a completion marker is only for it.
        self.plan_digest = plan_digest(self.chunks, options)
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
            self._claim()
            return {}
        if self.run is not None:
            stored_run = self._stored_run()
            if stored_run != self.run and (stored_run is not None or self._has_chunk_files()):
                log.warning(
                    "The checkpoint beside %s was written by another run (%s; this is %s): ignored and "
                    "removed, every chunk is fetched. Put {{ run_id }} in output_path to keep runs apart.",
                    self.rows_path,
                    stored_run or "unknown",
                    self.run,
                )
                self.clear()
                self._claim()
                return {}
            self._claim()
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
        self._claim()
        rows = list(outcome.rows)
        if outcome.index in self._stored_rows:
            with self._part(outcome.index).open("rb") as handle:
                rows.extend(json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line)
            position = {target: i for i, target in enumerate(self.chunks[outcome.index])}
            rows.sort(key=lambda row: position.get(row.get("target") or "", len(position)))
        data = encode_rows(rows)
        write_atomically(self._part(outcome.index), data)
        record = record_for(outcome, self.digests[outcome.index], len(data))
        write_atomically(self._record(outcome.index), json.dumps(record, ensure_ascii=False))
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

    def _claim(self) -> None:
        """Write ``run.json`` naming this run (no run given: nothing to write)."""
        if self.run is None or self._run_written:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._stored_run() != self.run:
            write_atomically(self._run_file(), json.dumps({"run": self.run}))
        self._run_written = True

    def _has_chunk_files(self) -> bool:
        return any(child.name not in (LOCK_FILE_NAME, RUN_FILE_NAME) for child in self.directory.iterdir())

    def finished(self) -> dict[str, Any] | None:
        """The manifest of this run's finished work, or ``None`` when there is none to return.

        It is returned when ``done.json`` exists, names this checkpoint's run (or no run is
        given) and plan (the same chunks and options), and the rows file still has the size the
        marker recorded. A rows file deleted since is logged (WARNING) and the work done again.

        :raises RowsFileChangedError: when the rows file's size differs from the recorded one
            (changed after the work finished): it is neither returned nor silently paid for again.
        """
        try:
            marker = json.loads((self.directory / DONE_FILE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(marker, dict) or not isinstance(marker.get("manifest"), dict):
            return None
        if self.run is not None and marker.get("run") != self.run:
            return None
        if marker.get("plan") != self.plan_digest:
            log.info("The work finished beside %s was for another plan: it is done again", self.rows_path)
            return None
        recorded = marker.get("rows_bytes")
        marker_path = self.directory / DONE_FILE_NAME
        try:
            size = self.rows_path.stat().st_size
        except OSError:
            log.warning(
                "The rows file %s this task instance finished is gone (the completion marker %s "
                "records %s bytes): the work is fetched, and paid for, again",
                self.rows_path,
                marker_path,
                recorded,
            )
            return None
        if size != recorded:
            raise RowsFileChangedError(
                f"The rows file {self.rows_path} was changed after this task instance finished its "
                f"work: the completion marker {marker_path} records {recorded} bytes, the file holds "
                f"{size}. Nothing was sent, so that the work is not paid for twice: restore the file, "
                "or delete it to fetch (and pay for) the work again."
            )
        return dict(marker["manifest"])

    def finish(self, manifest: Mapping[str, Any], rows_bytes: int) -> None:
        """Write the completion marker, then remove the chunks' parts and records.

        :param manifest: the run's manifest, returned as it is by :meth:`finished` later.
        :param rows_bytes: the size of the merged rows file.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = {
            "version": FORMAT_VERSION,
            "plan": self.plan_digest,
            "run": self.run,
            "rows_bytes": rows_bytes,
            "manifest": dict(manifest),
        }
        write_atomically(self.directory / DONE_FILE_NAME, json.dumps(marker, ensure_ascii=False))
        keep = {DONE_FILE_NAME, RUN_FILE_NAME, LOCK_FILE_NAME, LEDGER_FILE_NAME}
        for child in list(self.directory.iterdir()):
            if child.name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()

    def clear(self) -> None:
        """Remove the checkpoint folder and everything in it but the writer's lock.

        A missing folder is nothing to do; a folder holding a lock stays.
        """
        if not self.directory.exists():
            return
        locked = False
        for child in list(self.directory.iterdir()):
            if child.name == LOCK_FILE_NAME:
                locked = True
                continue
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
        self._run_written = False
        if locked:
            return
        try:
            self.directory.rmdir()
        except OSError:  # object stores have no real folders: nothing is left once objects are gone
            log.debug("Checkpoint folder %s not removed", self.directory)


@dataclass(frozen=True)
class Owner:
    """The task instance (and try) that writes a rows file.

    :ivar dag_id: the DAG.
    :ivar run_id: the DAG run.
    :ivar task_id: the task.
    :ivar map_index: the mapped task's index (``-1`` or ``None`` when not mapped).
    :ivar try_number: the try (``None`` when unknown).
    """

    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    try_number: int | None = None

    @property
    def key(self) -> str:
        """``"<dag_id>/<task_id>/<run_id>/<map_index>"``: the same for every try of a task instance."""
        return f"{self.dag_id}/{self.task_id}/{self.run_id}/{self.map_index}"

    def describe(self) -> str:
        """The owner in words, e.g. ``dag 'd', run 'manual__...', task 'fetch', map index 3, try 2``."""
        text = f"dag {self.dag_id!r}, run {self.run_id!r}, task {self.task_id!r}, map index {self.map_index}"
        return text if self.try_number is None else f"{text}, try {self.try_number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
        }

    @classmethod
    def from_json(cls, value: object) -> Owner | None:
        """The owner a lock names, or ``None`` when it is not one."""
        if not isinstance(value, Mapping):
            return None
        names = ("dag_id", "run_id", "task_id")
        if not all(value.get(n) is None or isinstance(value.get(n), str) for n in names):
            return None
        map_index, try_number = value.get("map_index"), value.get("try_number")
        if not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (map_index, try_number)
        ):
            return None
        return cls(value.get("dag_id"), value.get("run_id"), value.get("task_id"), map_index, try_number)


class PathInUseError(RuntimeError):
    """Another task instance is writing the same rows file: this one refuses before any request.

    :param rows_path: the rows file.
    :param holder: who holds the lock (``None`` when the lock cannot be read).
    :param lock_path: the lock file, to delete by hand if its owner is known to be dead.
    :param detail: where and since when it was taken, as the lock says.
    """

    def __init__(self, rows_path: object, holder: Owner | None, lock_path: object, detail: str = "") -> None:
        self.holder = holder
        who = holder.describe() if holder is not None else "an unreadable lock"
        super().__init__(
            f"{rows_path} is being written by {who}{detail}: two writers would mix or delete each other's "
            "rows. Give each run its own path (put {{ run_id }} in output_path), or wait for that task to "
            f"end. If it is known to be dead (its worker is gone and it will not be retried), delete "
            f"{lock_path}. Nothing was sent."
        )


class WriterLock:
    """``lock.json`` in a checkpoint folder: at most one task instance writes a rows file at a time.

    :param directory: the checkpoint folder (created if needed).
    :param owner: the task instance and try that wants to write.
    :param rows_path: the rows file, for messages.
    """

    def __init__(self, directory: StoragePath, owner: Owner, rows_path: object) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE_NAME
        self.owner = owner
        self.rows_path = rows_path
        self._held = False

    def _content(self) -> bytes:
        body = {
            **self.owner.to_json(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.time(),
        }
        return json.dumps(body).encode("utf-8")

    def _holder(self) -> tuple[Owner | None, str]:
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None, ""
        holder = Owner.from_json(body)
        detail = ""
        if isinstance(body, dict) and isinstance(body.get("since"), (int, float)):
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(body["since"]))
            detail = f" (on host {body.get('host')!r} since {since})"
        return holder, detail

    def acquire(self) -> None:
        """Take the lock, or take it over from an earlier try of the same task instance.

        :raises PathInUseError: when another task instance holds it (nothing is changed).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a holder that releases between our create and our read: try again
            try:
                with self.path.open("xb") as handle:
                    handle.write(self._content())
                self._held = True
                return
            except FileExistsError:
                pass
            try:
                holder, detail = self._holder()
            except FileNotFoundError:
                continue
            if holder is None or holder.key != self.owner.key:
                raise PathInUseError(self.rows_path, holder, self.path, detail)
            log.warning(
                "An earlier try (%s) of this task instance died holding %s%s: this try takes it over",
                holder.try_number,
                self.path,
                detail,
            )
            write_atomically(self.path, self._content())
            self._held = True
            return
        raise PathInUseError(self.rows_path, None, self.path)

    def holds(self) -> bool:
        """Whether the lock still names this try (a newer try of the task instance may have taken it)."""
        try:
            holder, _ = self._holder()
        except FileNotFoundError:
            return False
        return holder == self.owner

    def release(self) -> None:
        """Remove the lock if it still names this try."""
        if self._held and self.holds():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = False
