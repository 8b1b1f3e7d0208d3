"""A Snapshot dropped without close() is released by its finalizer without ever blocking: the
garbage collector may run that finalizer in a thread inside the engine's snapshot lock."""

from __future__ import annotations

import gc
import threading

from tabledb.storage import Engine


def finalized_inside(lock, holder: list) -> bool:
    """In a thread holding ``lock``, drop the last reference (``holder.clear()``: its finalizer runs
    right there) and collect; whether that thread got through within 10 s."""
    done = threading.Event()

    def run():
        with lock:            # what an allocation inside snapshot() or a flush may do
            holder.clear()
            gc.collect()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    return done.is_set()


def test_a_finalizer_inside_the_snapshot_lock_does_not_deadlock(tmp_path):
    with Engine.open(str(tmp_path / "db"), background=False) as db:
        db.put(b"k", b"v1")
        forgotten = [db.snapshot()]
        seq = forgotten[0].sequence
        assert db.stats()["snapshots"] == 1
        assert finalized_inside(db._snap_lock, forgotten), \
            "the snapshot's finalizer blocked on the engine's snapshot lock"
        assert db.stats()["snapshots"] == 0
        db.put(b"k", b"v2")
        db.flush()
        db.compact_range()
        assert seq not in db._snapshot_list()     # the deferred release reached the engine
        with db.snapshot() as s:
            assert db.get(b"k", snapshot=s) == b"v2"
        assert len(db._snapshots) == 0


def test_a_forgotten_snapshot_is_released(tmp_path):
    with Engine.open(str(tmp_path / "db"), background=False) as db:
        db.put(b"k", b"v")
        s = db.snapshot()
        assert db.stats()["snapshots"] == 1
        del s
        gc.collect()
        assert db.stats()["snapshots"] == 0 and len(db._snapshots) == 0


def test_a_query_result_dropped_inside_the_snapshot_lock_does_not_deadlock(tmp_path):
    """The same one level up: an unfinished SELECT (its own snapshot) whose cursor is garbage."""
    import tabledb
    conn = tabledb.connect(str(tmp_path / "sql"), autocommit=True)
    try:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(100)])
        engine = conn._db.engine
        cur = [conn.cursor()]
        cur[0].execute("SELECT * FROM t x JOIN t y ON x.id = y.a")   # two reads: a snapshot of its own
        assert cur[0].fetchone() is not None and engine.stats()["snapshots"] == 1
        assert finalized_inside(engine._snap_lock, cur), "the result's finalizer blocked on the engine's snapshot lock"
        assert engine.stats()["snapshots"] == 0
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    finally:
        conn.close()
