"""The change sensor's baseline: the last seen watched values, kept in object storage.

No Airflow import: the store works on any ``universal_pathlib``-style path (Airflow's
``ObjectStoragePath`` is one), so local folders, S3 and the rest behave alike.

- **Keyed.** The file is ``<folder>/backlinks_baseline_<key>.json`` where ``key`` is a SHA-256 of the
  normalised target SET, the watched fields and ``include_subdomains``
  (:func:`baseline_key`). Two sensors with different targets, fields or options never share a
  baseline by accident; the same watch in another DAG (or a later run) finds it again. The key is
  also stored inside the file and checked on read.
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
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from airflow_provider_dataforseo.changes import Entry, Snapshot

#: ``format`` of a baseline document.
FORMAT: Final = "airflow-provider-dataforseo/backlinks-baseline"
#: Version of the document's layout.
VERSION: Final = 1
#: File name prefix; the name is ``backlinks_baseline_<key>.json``.
FILE_PREFIX: Final = "backlinks_baseline_"
#: Protocols whose writes are single puts (an object appears whole or not at all).
OBJECT_STORE_PROTOCOLS: Final = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "memory"}
)
_LOCAL_PROTOCOLS: Final = frozenset({"", "file", "local"})


class BaselineError(ValueError):
    """A baseline exists but cannot be used (unreadable, or written for another watch)."""


def baseline_key(targets: Sequence[str], watch_fields: Sequence[str], include_subdomains: bool) -> str:
    """The key of a watch: 24 hex digits of the SHA-256 of its normalised definition.

    :param targets: NORMALISED targets (order and duplicates do not matter).
    :param watch_fields: the watched fields (order does not matter).
    :param include_subdomains: the request option (it changes the numbers).
    :return: e.g. ``"3f1c0a..."`` (24 characters).
    """
    definition = {
        "targets": sorted(set(targets)),
        "watch_fields": sorted(set(watch_fields)),
        "include_subdomains": bool(include_subdomains),
    }
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class BaselineStore:
    """Read and atomically write one watch's baseline under a folder.

    :param folder: a path object (``ObjectStoragePath`` / ``UPath``) of the folder, e.g.
        ``ObjectStoragePath("s3://aws_default@bucket/baselines/")``.
    :param targets: the watch's normalised targets.
    :param watch_fields: the watched fields.
    :param include_subdomains: the request option.
    """

    def __init__(
        self,
        folder: Any,
        *,
        targets: Sequence[str],
        watch_fields: Sequence[str],
        include_subdomains: bool,
    ) -> None:
        self.key = baseline_key(targets, watch_fields, include_subdomains)
        self.targets = len(set(targets))
        self.watch_fields = list(watch_fields)
        self.include_subdomains = bool(include_subdomains)
        self.path: Any = folder / f"{FILE_PREFIX}{self.key}.json"

    @property
    def uri(self) -> str:
        """Where the baseline lives, e.g. ``"file:///data/baselines/backlinks_baseline_<key>.json"``."""
        return str(self.path)

    def read(self) -> Snapshot | None:
        """The stored values (target -> entry), or ``None`` when there is no baseline yet.

        :raises BaselineError: when the file is unreadable or belongs to another watch.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise BaselineError(
                f"baseline {self.uri} is not valid JSON ({exc}); delete it to start a new baseline"
            ) from None
        if not isinstance(document, Mapping) or document.get("format") != FORMAT:
            raise BaselineError(f"{self.uri} is not a backlinks baseline (format {FORMAT!r} expected)")
        if document.get("key") != self.key:
            raise BaselineError(
                f"baseline {self.uri} was written for another watch (key {document.get('key')!r}, "
                f"expected {self.key!r})"
            )
        values = document.get("values")
        if not isinstance(values, Mapping):
            raise BaselineError(f"baseline {self.uri} has no 'values' object")
        return {str(target): _entry(entry) for target, entry in values.items()}

    def document(self, values: Mapping[str, Entry], *, now: datetime | None = None) -> dict[str, Any]:
        """The JSON document stored for ``values``."""
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        return {
            "format": FORMAT,
            "version": VERSION,
            "key": self.key,
            "watch_fields": self.watch_fields,
            "include_subdomains": self.include_subdomains,
            "targets": self.targets,
            "updated_at": moment.isoformat(timespec="seconds"),
            "values": {target: values[target] for target in sorted(values)},
        }

    def write(self, values: Mapping[str, Entry], *, now: datetime | None = None) -> None:
        """Store ``values`` atomically (see the module doc); the old baseline stays until then.

        :param values: target -> entry.
        :param now: the time recorded as ``updated_at`` (default: now, UTC).
        :raises OSError: when storage fails; the previous baseline is then unchanged.
        """
        text = json.dumps(self.document(values, now=now), ensure_ascii=False, separators=(",", ":"))
        atomic_write(self.path, (text + "\n").encode("utf-8"))


def _entry(value: object) -> Entry:
    if not isinstance(value, Mapping) or not isinstance(value.get("fields"), Mapping):
        raise BaselineError(f"malformed baseline entry {value!r:.200}")
    url = value.get("url")
    return {"url": url if isinstance(url, str) else None, "fields": dict(value["fields"])}


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
