"""Resources given back: what compaction replaces leaves the disk; found while sizing bench/scale.py."""

from __future__ import annotations

import gc
import os
import time

from tabledb.storage import Engine, WriteBatch


def fill(db) -> None:
    for lo in range(0, 60000, 1000):
        batch = WriteBatch()
        for i in range(lo, lo + 1000):
            batch.put(b"%08d" % i, b"x" * 100)
        db.write(batch)


def sst_files(path: str) -> int:
    return len([n for n in os.listdir(path) if n.endswith(".sst")])


def test_compact_range_frees_its_inputs_in_the_foreground(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, memtable_bytes=1 << 20, background=False) as db:
        fill(db)
        db.flush()
        db.compact_range()
        assert sst_files(path) == db.stats()["files"]


def test_compact_range_frees_its_inputs_with_background_threads(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, memtable_bytes=1 << 20) as db:
        fill(db)
        db.flush()
        db.compact_range()
        deadline = time.monotonic() + 1
        while sst_files(path) != db.stats()["files"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sst_files(path) == db.stats()["files"], \
            f"{sst_files(path)} tables on disk, {db.stats()['files']} live"
        # nothing holds a replaced Version (and with it a flushed set's memtables) once the work is done
        gc.collect()
        assert not list(db.versions._live_versions), "an old Version is still referenced"
