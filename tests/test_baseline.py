"""The baseline store: keyed by the watch, atomic writes, a crash mid-write keeps the old baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import ObjectStoragePath
from upath import UPath

from airflow_provider_dataforseo import baseline
from airflow_provider_dataforseo.baseline import BaselineError, BaselineStore, baseline_key
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


def _store(folder: Any, targets: list[str] = TARGETS, **kwargs: Any) -> BaselineStore:
    options = {"watch_fields": FIELDS, "include_subdomains": True, **kwargs}
    return BaselineStore(folder, targets=targets, **options)


def test_key_depends_on_the_target_set_fields_and_options_only() -> None:
    key = baseline_key(TARGETS, FIELDS, True)
    assert key == baseline_key(list(reversed(TARGETS)) + TARGETS[:1], list(reversed(FIELDS)), True)
    assert len(key) == 24
    assert key != baseline_key([*TARGETS, "c.com"], FIELDS, True)
    assert key != baseline_key(TARGETS, ["lost_date"], True)
    assert key != baseline_key(TARGETS, FIELDS, False)


def test_round_trip_and_two_watches_never_share_a_file(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri() + "/baselines/")
    store = _store(folder)
    assert store.read() is None
    store.write(OLD)
    assert store.read() == OLD
    assert store.uri == (tmp_path / "baselines" / f"backlinks_baseline_{store.key}.json").as_uri()
    document = json.loads((tmp_path / "baselines" / f"backlinks_baseline_{store.key}.json").read_text())
    assert document["format"] == baseline.FORMAT
    assert document["key"] == store.key
    assert document["targets"] == 2
    other = _store(folder, ["https://a.com/"])
    assert other.read() is None  # another target set: another file
    other.write({})
    assert store.read() == OLD


def test_a_file_of_another_watch_or_garbage_is_refused(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri())
    store, other = _store(folder), _store(folder, ["c.com"])
    other.write({})
    (tmp_path / f"backlinks_baseline_{store.key}.json").write_bytes(
        (tmp_path / f"backlinks_baseline_{other.key}.json").read_bytes()
    )
    with pytest.raises(BaselineError, match="another watch"):
        store.read()
    (tmp_path / f"backlinks_baseline_{store.key}.json").write_text('{"format": ')
    with pytest.raises(BaselineError, match="not valid JSON"):
        store.read()


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
    assert store.read() == OLD
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
    assert store.read() == NEW
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
    store = baseline.BaselineStore(
        UPath(sys.argv[1]), targets=["https://a.com/", "b.com"],
        watch_fields=["lost_date", "broken_backlinks"], include_subdomains=True,
    )
    new = {"b.com": {"url": "b.com", "fields": {"lost_date": None, "broken_backlinks": 1}}}
    store.write(new)
    """
)


def test_a_crash_in_the_middle_of_a_write_leaves_the_old_baseline_intact(tmp_path: Path) -> None:
    folder = ObjectStoragePath(tmp_path.as_uri())
    store = _store(folder)
    store.write(OLD)
    final = tmp_path / f"backlinks_baseline_{store.key}.json"
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
    assert store.read() == OLD
    store.write(NEW)  # a later write still works; the stray temporary file is harmless
    assert store.read() == NEW
