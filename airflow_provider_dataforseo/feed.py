"""The changes feed: every change a watch detects, once, as JSON Lines beside its baseline.

No Airflow import. Alerting pipelines and dashboards read the history from here without calling
the API again. One file per watch and calendar month (UTC), so a file stays small and old
months can be archived::

    <folder>/backlinks_changes_<key>_2026-11.jsonl

One line per change::

    {"detected_at": "2026-11-08T10:00:00+00:00", "check_id": "9f1c...", "target": "https://x.com/a",
     "inputs": ["www.X.com/a"], "field": "broken_backlinks", "old": 3, "new": 5,
     "kind": "broken_backlinks_increased"}

``detected_at`` is the check's time (UTC, ISO 8601), ``check_id`` the check that found the
change (one per batch), ``inputs`` the user's original spellings of ``target``, ``old``/``new``
the normal values (:mod:`airflow_provider_dataforseo.changes`), ``kind`` as the sensor reports it.

**Exactly once.** A batch is appended with its ``check_id``; appending a batch whose
``check_id`` is already in the file writes nothing, so a task that retries after writing never
repeats a line. Each append rewrites the month's file atomically
(:func:`~airflow_provider_dataforseo.baseline.atomic_write`): a crash leaves the file as it was
before or after, never with half a line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_dataforseo.baseline import atomic_write

if TYPE_CHECKING:
    from collections.abc import Mapping

#: File name prefix; the name is ``backlinks_changes_<key>_<YYYY-MM>.jsonl``.
FEED_PREFIX: Final = "backlinks_changes_"
#: Keys of a feed line, in order.
RECORD_KEYS: Final = ("detected_at", "check_id", "target", "inputs", "field", "old", "new", "kind")


def feed_records(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The feed lines of one batch of changes.

    :param batch: ``{"check_id", "detected_at", "changes": [change, ...]}``.
    :return: one record per change, keys :data:`RECORD_KEYS`.
    """
    return [
        {
            "detected_at": batch["detected_at"],
            "check_id": batch["check_id"],
            "target": change["target"],
            "inputs": list(change.get("inputs") or [change["target"]]),
            "field": change["field"],
            "old": change["old"],
            "new": change["new"],
            "kind": change["kind"],
        }
        for change in batch["changes"]
    ]


class ChangesFeed:
    """Append batches of changes to a watch's JSON Lines feed, once each.

    :param folder: a path object (``ObjectStoragePath`` / ``UPath``) of the folder (the
        baseline's).
    :param key: the watch's key (:func:`~airflow_provider_dataforseo.baseline.watch_key`).
    """

    def __init__(self, folder: Any, key: str) -> None:
        self.folder: Any = folder
        self.key = key

    def path_for(self, detected_at: str) -> Any:
        """The month file of a batch detected at ``detected_at`` (ISO 8601, UTC)."""
        return self.folder / f"{FEED_PREFIX}{self.key}_{detected_at[:7]}.jsonl"

    def append(self, batch: Mapping[str, Any]) -> int:
        """Append one batch unless its ``check_id`` is already in the feed.

        :param batch: ``{"check_id", "detected_at", "changes"}``.
        :return: lines written (0 when the batch was there already, or has no change).
        :raises OSError: when storage fails (the file is then as it was).
        """
        records = feed_records(batch)
        if not records:
            return 0
        path = self.path_for(str(batch["detected_at"]))
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            existing = b""
        marker = json.dumps({"check_id": batch["check_id"]})[1:-1].encode("utf-8")
        if marker in existing:
            return 0
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        atomic_write(path, existing + lines.encode("utf-8"))
        return len(records)

    def read(self) -> list[dict[str, Any]]:
        """Every line of the feed, oldest month first (for tests, tools and small dashboards).

        :return: the records in the order they were appended.
        """
        if not self.folder.exists():
            return []
        files = sorted(
            (p for p in self.folder.iterdir() if p.name.startswith(f"{FEED_PREFIX}{self.key}_")),
            key=lambda p: str(p.name),
        )
        records: list[dict[str, Any]] = []
        for path in files:
            text = path.read_bytes().decode("utf-8")
            records.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return records
