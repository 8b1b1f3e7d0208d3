"""WAL archiving: sealed segments reach the target every wal_archive_interval seconds without a
BACKUP; segments sealed while no archiver ran are held and copied at the next open; a database
archives to one target at a time; wal_archive = false archives nothing."""

from __future__ import annotations

import os
import time

import pytest

import tabledb
from tabledb.storage import Engine

from backup_helpers import SMALL, last_sequence, restored, table_state


def wal_files(target):
    out = []
    for root, _d, files in os.walk(os.path.join(target, "wal")):
        out += files
    return sorted(out)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_interval_seals_and_copies_without_a_backup(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.backup(target)
    before = len(wal_files(target))
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    seq = last_sequence(conn)
    assert wait_for(lambda: len(wal_files(target)) > before)
    # the target alone now has the insert
    tabledb.restore(target, str(tmp_path / "r"), as_of=seq)
    with restored(tmp_path, "r") as r:
        assert r.execute("SELECT * FROM t").fetchall() == [(1, "a")]


def test_segments_sealed_without_an_archiver_are_held_and_copied_at_open(tmp_path, connect):
    target, db = str(tmp_path / "bk"), str(tmp_path / "db")
    conn = connect(wal_archive_interval=30)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.backup(target)
    conn.close()
    # the engine alone (no archiver): writes, flushes; the held segments stay in the directory
    with Engine.open(db, **SMALL) as engine:
        hold = engine.wal_hold
        assert hold > 0
    conn = connect(wal_archive_interval=30)
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 30) for i in range(500)])   # several flushes
    state = table_state(conn)
    conn.close()
    with Engine.open(db, **SMALL) as engine:
        held = [n for n, _ in engine.wal_segments()]
        assert held and held[0] >= hold
    archived_before = len(wal_files(target))
    conn = connect(wal_archive_interval=30)          # resume: copies what is pending right away
    assert wait_for(lambda: len(wal_files(target)) >= archived_before + len(held) - 1)
    conn.close()
    tabledb.restore(target, str(tmp_path / "r"))
    with restored(tmp_path, "r") as r:
        assert table_state(r) == state


def test_wal_archive_false_archives_nothing(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.1)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.execute(f"BACKUP DATABASE TO '{target}' WITH (wal_archive = false)").fetchall()
    own = wal_files(target)          # the backup's own unflushed writes (the CREATE TABLE), nothing more
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    time.sleep(0.4)
    assert wal_files(target) == own
    assert not os.path.exists(tmp_path / "db" / "BACKUP-ARCHIVE")
    # the latest state the target holds is the backup itself
    tabledb.restore(target, str(tmp_path / "r"))
    with restored(tmp_path, "r") as r:
        assert r.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_archiving_moves_to_the_newest_target(tmp_path, connect):
    t1, t2 = str(tmp_path / "bk1"), str(tmp_path / "bk2")
    conn = connect(wal_archive_interval=0.2)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.backup(t1)
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    at_switch = table_state(conn)
    conn.backup(t2)
    t2_files = len(wal_files(t2))
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10, 20)])
    final = table_state(conn)
    t1_files = wal_files(t1)
    assert wait_for(lambda: len(wal_files(t2)) > t2_files)
    assert wal_files(t1) == t1_files
    tabledb.restore(t1, str(tmp_path / "r1"))
    with restored(tmp_path, "r1") as r:
        assert table_state(r) == at_switch
    tabledb.restore(t2, str(tmp_path / "r2"))
    with restored(tmp_path, "r2") as r:
        assert table_state(r) == final


def test_bad_interval_is_refused(tmp_path):
    with pytest.raises(tabledb.ProgrammingError):
        tabledb.connect(str(tmp_path / "db"), wal_archive_interval=0)


def test_wal_archive_false_to_the_archived_target_stops_archiving(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.1)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.backup(target)
    engine = conn._db.engine
    assert engine.wal_hold > 0 and os.path.exists(tmp_path / "db" / "BACKUP-ARCHIVE")
    conn.backup(target, wal_archive=False)
    assert engine.wal_hold == 0 and not os.path.exists(tmp_path / "db" / "BACKUP-ARCHIVE")
    before = wal_files(target)
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    time.sleep(0.3)
    assert wal_files(target) == before
    # a relative target is remembered as an absolute one: reopening from elsewhere still archives
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        conn.backup("rel")
    finally:
        os.chdir(cwd)
    assert '"target": "' + str(tmp_path / "rel") in (tmp_path / "db" / "BACKUP-ARCHIVE").read_text()
