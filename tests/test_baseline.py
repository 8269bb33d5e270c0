"""The baseline store: keyed by the watch, atomic writes, a crash mid-write keeps the old baseline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import ObjectStoragePath
from upath import UPath

from airflow_provider_dataforseo import baseline
from airflow_provider_dataforseo.baseline import BaselineError, BaselineStore, baseline_key, watch_key
from airflow_provider_dataforseo.sources import parse_target_file
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path

FIELDS = ["lost_date", "broken_backlinks"]
TARGETS = ["https://a.com/", "b.com"]
OLD = {
    "https://a.com/": {"url": "https://a.com/", "fields": {"lost_date": None, "broken_backlinks": 3}},
    "b.com": {"url": "b.com", "fields": {"lost_date": "2026-10-01 10:00:00 +00:00", "broken_backlinks": 9}},
}
NEW = {**OLD, "b.com": {"url": "b.com", "fields": {"lost_date": None, "broken_backlinks": 1}}}
#: The targets of the version 1 fixture: the first 8 pages of the example list.
V1_PAGES = [
    t for t in parse_target_file((REPO / "example_dags/data/top_sites_targets.txt").read_text()) if "://" in t
][:8]


def _store(folder: Any, watch_id: str = "dag.watch", **kwargs: Any) -> BaselineStore:
    options = {"include_subdomains": True, **kwargs}
    return BaselineStore(folder, watch_id=watch_id, **options)


def _values(store: BaselineStore) -> Any:
    stored = store.read()
    return None if stored is None else stored.values


def test_key_depends_on_the_watch_and_the_options_that_change_the_numbers() -> None:
    key = watch_key("dag.watch", True)
    assert len(key) == 24
    assert key == watch_key("dag.watch", True, "one_thousand")  # the API's default
    assert key != watch_key("dag.other", True)
    assert key != watch_key("dag.watch", False)
    assert key != watch_key("dag.watch", True, "one_hundred")
    # the version 1 key of a target SET is kept, to find old files
    legacy = baseline_key(TARGETS, FIELDS, True)
    assert legacy == baseline_key(list(reversed(TARGETS)) + TARGETS[:1], list(reversed(FIELDS)), True)
    assert legacy != baseline_key([*TARGETS, "c.com"], FIELDS, True)


def test_round_trip_with_pending_changes_and_two_watches_never_share_a_file(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri() + "/baselines/")
    store = _store(folder)
    assert store.read() is None
    batch = {"check_id": "c1", "detected_at": "2026-11-08T10:00:00+00:00", "changes": [{"target": "b.com"}]}
    store.write(OLD, [batch])
    stored = store.read()
    assert stored is not None and stored.values == OLD and stored.pending == [batch]
    assert stored.migrated_from is None
    path = tmp_path / "baselines" / f"backlinks_watch_{store.key}.json"
    assert store.uri == path.as_uri()
    document = json.loads(path.read_text())
    assert document["format"] == baseline.FORMAT
    assert document["version"] == 2
    assert document["key"] == store.key
    assert document["watch_id"] == "dag.watch"
    assert document["targets"] == OLD  # each target's values under that target
    other = _store(folder, "dag.other")
    assert other.read() is None  # another watch: another file
    other.write({})
    assert _values(store) == OLD


def test_a_file_of_another_watch_or_garbage_is_refused(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri())
    store, other = _store(folder), _store(folder, "dag.other")
    other.write({})
    (tmp_path / f"backlinks_watch_{store.key}.json").write_bytes(
        (tmp_path / f"backlinks_watch_{other.key}.json").read_bytes()
    )
    with pytest.raises(BaselineError, match="another watch"):
        store.read()
    (tmp_path / f"backlinks_watch_{store.key}.json").write_text('{"format": ')
    with pytest.raises(BaselineError, match="not valid JSON"):
        store.read()


def test_a_version_1_file_is_read_when_the_watch_has_no_file_yet(tmp_path: Path) -> None:
    """The fixture is a file the landed 0.x version wrote (see tests/fixtures/baseline_v1/README.md)."""
    source = REPO / "tests" / "fixtures" / "baseline_v1"
    old = next(source.glob("backlinks_baseline_*.json"))
    shutil.copy(old, tmp_path / old.name)
    folder = ObjectStoragePath(tmp_path.as_uri())
    targets = normalise_targets(V1_PAGES).targets
    store = _store(folder)
    assert store.read() is None  # without the watch's list it cannot know the old file
    stored = store.read(legacy=(targets, FIELDS))
    assert stored is not None
    assert stored.migrated_from == (tmp_path / old.name).as_uri()
    assert stored.values == json.loads(old.read_text())["values"]
    assert stored.pending == []
    # another list, other fields or options: another v1 key, nothing read
    assert store.read(legacy=(targets[:-1], FIELDS)) is None
    assert store.read(legacy=(targets, ["lost_date"])) is None
    assert _store(folder, include_subdomains=False).read(legacy=(targets, FIELDS)) is None
    assert _store(folder, rank_scale="one_hundred").read(legacy=(targets, FIELDS)) is None
    # once the new file exists, it is the one read
    store.write({})
    assert store.read(legacy=(targets, FIELDS)) == baseline.Baseline({}, [])


def test_failure_during_a_write_keeps_the_old_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri())
    store = _store(folder)
    store.write(OLD)
    before = os.listdir(tmp_path)

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(baseline.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.write(NEW)
    assert _values(store) == OLD
    assert os.listdir(tmp_path) == before  # the temporary file is removed


def test_object_store_write_is_one_put(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = UPath("memory://dataforseo-test/baselines/")  # Airflow registers no memory:// store
    store = _store(folder)
    puts: list[str] = []
    original = type(store.path.fs).pipe_file

    def counting(self: Any, path: str, value: bytes, **kwargs: Any) -> Any:
        puts.append(path)
        return original(self, path, value, **kwargs)

    monkeypatch.setattr(type(store.path.fs), "pipe_file", counting)
    store.write(OLD)
    store.write(NEW)
    assert _values(store) == NEW
    assert puts == [store.path.path, store.path.path]


CRASHING_WRITER = textwrap.dedent(
    """
    import sys
    from upath import UPath
    from airflow_provider_dataforseo import baseline

    real_open = open

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            print("HALF", flush=True)
            sys.stdin.readline()  # wait here until killed
        def flush(self):
            self.handle.flush()
        def fileno(self):
            return self.handle.fileno()

    baseline.open = lambda path, mode: HalfWriter(real_open(path, mode))
    store = baseline.BaselineStore(UPath(sys.argv[1]), watch_id="dag.watch", include_subdomains=True)
    new = {"b.com": {"url": "b.com", "fields": {"lost_date": None, "broken_backlinks": 1}}}
    store.write(new)
    """
)


def test_a_crash_in_the_middle_of_a_write_leaves_the_old_baseline_intact(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri())
    store = _store(folder)
    store.write(OLD)
    final = tmp_path / f"backlinks_watch_{store.key}.json"
    old_bytes = final.read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, tmp_path.as_uri()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.strip() == "HALF", process.stderr.read() if process.stderr else ""
        partial = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        assert len(partial) == 1 and 0 < (tmp_path / partial[0]).stat().st_size < len(old_bytes) * 2
    finally:
        process.kill()  # SIGKILL: no cleanup runs
        process.wait()
    assert final.read_bytes() == old_bytes
    assert _values(store) == OLD
    store.write(NEW)  # a later write still works; the stray temporary file is harmless
    assert _values(store) == NEW
