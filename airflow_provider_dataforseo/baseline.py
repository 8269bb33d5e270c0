"""The change sensor's baseline: each watched target's last seen values, kept in object storage.

No Airflow import: the store works on any ``universal_pathlib``-style path (Airflow's
``ObjectStoragePath`` is one), so local folders, S3 and the rest behave alike.

- **One file per watch, one entry per target.** The file is
  ``<folder>/backlinks_watch_<key>.json`` where ``key`` is a SHA-256 of the watch's id (the
  sensor's ``dag_id.task_id`` unless given) and the request options that change the numbers
  (``include_subdomains``, ``rank_scale``): :func:`watch_key`. The target LIST is not part of the
  key: each target's values are stored under that target, so editing the list keeps every other
  target's values (see :func:`airflow_provider_dataforseo.changes.advance`).
- **Document** (``version`` 2)::

      {"format": "airflow-provider-dataforseo/backlinks-baseline", "version": 2, "key": "<key>",
       "watch_id": "my_dag.watch", "include_subdomains": true, "rank_scale": null,
       "updated_at": "2026-11-08T10:00:00+00:00",
       "targets": {"https://x.com/a": {"url": "https://x.com/a",
                                       "fields": {"lost_date": null, "broken_backlinks": 3}}},
       "pending": [{"check_id": "...", "detected_at": "...", "changes": [...]}]}

  ``pending`` is the outbox: changes already folded into ``targets`` but not yet delivered
  (:mod:`airflow_provider_dataforseo.watch`).
- **Old files** (``version`` 1, ``backlinks_baseline_<key>.json``, keyed by the whole target set,
  written by 0.x): read when the new file does not exist yet and their key matches the watch
  (:meth:`BaselineStore.read` with ``legacy``), so the first check after an upgrade compares
  with them and alerts only real changes. They are left in place.
- **Atomic.** A write never leaves a half-written baseline: on object stores (S3, GCS, Azure...)
  the document is sent in one put (an object appears whole or not at all); on a local disk it is
  written to a temporary file beside the target, flushed to disk, then renamed over it (POSIX
  rename is atomic); on other filesystems it is written to a temporary file then moved. A crash
  at any point leaves the previous baseline readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from airflow_provider_dataforseo.changes import Entry, Snapshot

#: ``format`` of a baseline document.
FORMAT: Final = "airflow-provider-dataforseo/backlinks-baseline"
#: Version of the document's layout (1: one file per target set; 2: per-target values + outbox).
VERSION: Final = 2
#: File name prefix; the name is ``backlinks_watch_<key>.json``.
FILE_PREFIX: Final = "backlinks_watch_"
#: File name prefix of version 1 files: ``backlinks_baseline_<key>.json``.
LEGACY_FILE_PREFIX: Final = "backlinks_baseline_"
#: Protocols whose writes are single puts (an object appears whole or not at all).
OBJECT_STORE_PROTOCOLS: Final = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "memory"}
)
_LOCAL_PROTOCOLS: Final = frozenset({"", "file", "local"})


class BaselineError(ValueError):
    """A baseline exists but cannot be used (unreadable, or written for another watch)."""


def watch_key(watch_id: str, include_subdomains: bool, rank_scale: str | None = None) -> str:
    """The key of a watch: 24 hex digits of the SHA-256 of its id and request options.

    :param watch_id: the watch's name, e.g. ``"my_dag.watch_backlinks"``.
    :param include_subdomains: the request option (it changes the numbers).
    :param rank_scale: the request option (``None``: the API's default, ``one_thousand``).
    :return: e.g. ``"3f1c0a..."`` (24 characters).
    """
    definition = {
        "watch_id": watch_id,
        "include_subdomains": bool(include_subdomains),
        "rank_scale": rank_scale or "one_thousand",
    }
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def baseline_key(targets: Sequence[str], watch_fields: Sequence[str], include_subdomains: bool) -> str:
    """The key of a version 1 baseline (kept to find old files): SHA-256 of the target SET.

    :param targets: NORMALISED targets (order and duplicates do not matter).
    :param watch_fields: the watched fields (order does not matter).
    :param include_subdomains: the request option.
    :return: 24 hex characters.
    """
    definition = {
        "targets": sorted(set(targets)),
        "watch_fields": sorted(set(watch_fields)),
        "include_subdomains": bool(include_subdomains),
    }
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass
class Baseline:
    """A stored baseline.

    :ivar values: target -> ``{"url", "fields"}`` (the last seen values).
    :ivar pending: undelivered change batches, ``{"check_id", "detected_at", "changes"}`` each.
    :ivar migrated_from: the URI of the version 1 file it was read from, else ``None``.
    """

    values: Snapshot
    pending: list[dict[str, Any]] = field(default_factory=list)
    migrated_from: str | None = None


class BaselineStore:
    """Read and atomically write one watch's baseline under a folder.

    :param folder: a path object (``ObjectStoragePath`` / ``UPath``) of the folder, e.g.
        ``ObjectStoragePath("s3://aws_default@bucket/baselines/")``.
    :param watch_id: the watch's name (the sensor's ``dag_id.task_id`` by default).
    :param include_subdomains: the request option.
    :param rank_scale: the request option (``None``: the API's default).
    """

    def __init__(
        self,
        folder: Any,
        *,
        watch_id: str,
        include_subdomains: bool,
        rank_scale: str | None = None,
    ) -> None:
        self.folder: Any = folder
        self.watch_id = watch_id
        self.include_subdomains = bool(include_subdomains)
        self.rank_scale = rank_scale
        self.key = watch_key(watch_id, include_subdomains, rank_scale)
        self.path: Any = folder / f"{FILE_PREFIX}{self.key}.json"

    @property
    def uri(self) -> str:
        """Where the baseline lives, e.g. ``"file:///data/baselines/backlinks_watch_<key>.json"``."""
        return str(self.path)

    def read(self, *, legacy: tuple[Sequence[str], Sequence[str]] | None = None) -> Baseline | None:
        """The stored baseline, or ``None`` when there is none yet.

        :param legacy: ``(normalised targets, watch_fields)`` of the watch now: when the new file
            does not exist, a version 1 file written for exactly these (and the same
            ``include_subdomains``, default ``rank_scale``) is read instead.
        :raises BaselineError: when the file is unreadable or belongs to another watch.
        :raises OSError: when storage fails (transient: nothing was changed).
        """
        document = self._load(self.path)
        if document is None:
            if legacy is None or self.rank_scale not in (None, "one_thousand"):
                return None
            return self._read_legacy(*legacy)
        if document.get("version") != VERSION or document.get("key") != self.key:
            raise BaselineError(
                f"baseline {self.uri} was written for another watch or version (key "
                f"{document.get('key')!r}, version {document.get('version')!r}; expected {self.key!r}, "
                f"{VERSION})"
            )
        values = document.get("targets")
        pending = document.get("pending", [])
        if not isinstance(values, Mapping) or not isinstance(pending, list):
            raise BaselineError(f"baseline {self.uri} has no 'targets' object or 'pending' list")
        return Baseline(
            {str(target): _entry(entry) for target, entry in values.items()},
            [_batch(batch) for batch in pending],
        )

    def _read_legacy(self, targets: Sequence[str], watch_fields: Sequence[str]) -> Baseline | None:
        key = baseline_key(targets, watch_fields, self.include_subdomains)
        path = self.folder / f"{LEGACY_FILE_PREFIX}{key}.json"
        document = self._load(path)
        if document is None or document.get("key") != key:
            return None
        values = document.get("values")
        if not isinstance(values, Mapping):
            raise BaselineError(f"baseline {path} has no 'values' object")
        return Baseline({str(t): _entry(e) for t, e in values.items()}, [], migrated_from=str(path))

    @staticmethod
    def _load(path: Any) -> Mapping[str, Any] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise BaselineError(
                f"baseline {path} is not valid JSON ({exc}); delete it to start a new baseline"
            ) from None
        if not isinstance(document, Mapping) or document.get("format") != FORMAT:
            raise BaselineError(f"{path} is not a backlinks baseline (format {FORMAT!r} expected)")
        return document

    def document(
        self,
        values: Mapping[str, Entry],
        pending: Sequence[Mapping[str, Any]] = (),
        *,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The JSON document stored for ``values`` and the undelivered ``pending`` batches."""
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        return {
            "format": FORMAT,
            "version": VERSION,
            "key": self.key,
            "watch_id": self.watch_id,
            "include_subdomains": self.include_subdomains,
            "rank_scale": self.rank_scale,
            "updated_at": moment.isoformat(timespec="seconds"),
            "targets": {target: values[target] for target in sorted(values)},
            "pending": [dict(batch) for batch in pending],
        }

    def write(
        self,
        values: Mapping[str, Entry],
        pending: Sequence[Mapping[str, Any]] = (),
        *,
        now: datetime | None = None,
    ) -> None:
        """Store ``values`` and ``pending`` atomically (see the module doc).

        :param values: target -> entry.
        :param pending: undelivered change batches (the outbox).
        :param now: the time recorded as ``updated_at`` (default: now, UTC).
        :raises OSError: when storage fails; the previous baseline is then unchanged.
        """
        document = self.document(values, pending, now=now)
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        atomic_write(self.path, (text + "\n").encode("utf-8"))


def _entry(value: object) -> Entry:
    if not isinstance(value, Mapping) or not isinstance(value.get("fields"), Mapping):
        raise BaselineError(f"malformed baseline entry {value!r:.200}")
    url = value.get("url")
    return {"url": url if isinstance(url, str) else None, "fields": dict(value["fields"])}


def _batch(value: object) -> dict[str, Any]:
    if (
        not isinstance(value, Mapping)
        or not isinstance(value.get("check_id"), str)
        or not isinstance(value.get("changes"), list)
    ):
        raise BaselineError(f"malformed pending batch {value!r:.200}")
    return dict(value)


def atomic_write(path: Any, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    :param path: a ``UPath``-style path (``.protocol``, ``.path``, ``.fs``, ``.parent``).
    :param data: the whole content.
    :raises OSError: when storage fails (the old content is then still in place).
    """
    protocol = str(getattr(path, "protocol", "") or "")
    if protocol in OBJECT_STORE_PROTOCOLS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.fs.pipe_file(path.path, data)  # one put
        return
    if protocol in _LOCAL_PROTOCOLS:
        _replace_local(str(path.path), data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
        path.fs.mv(temporary.path, path.path)
    except BaseException:
        if temporary.exists():
            temporary.unlink()
        raise


def _replace_local(target: str, data: bytes) -> None:
    """Temporary file in the same folder, flushed and fsynced, then ``os.replace`` over ``target``."""
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    try:  # make the rename itself durable
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
