"""Smaller promises: as_of forms, progress of restores, VERIFY of every backup (and its summary),
RESTORE TABLE into an in-memory database, the pacer that leaves room for writers, the target
marker and metadata."""

from __future__ import annotations

import datetime as dt
import os

import pytest

import tabledb
from tabledb.backup import backup as backup_mod
from tabledb.backup.repository import BackupError, Repository, decode_meta, encode_meta
from tabledb.backup.restoring import normalize_as_of
from tabledb.errors import CorruptionError, InvalidArgumentError

from backup_helpers import archive_now, last_sequence, now_utc, restored, table_state


def test_as_of_forms():
    assert normalize_as_of(None) is None
    assert normalize_as_of(12) == ("sequence", 12)
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    us = normalize_as_of(t)[1]
    assert normalize_as_of(t.replace(tzinfo=None)) == ("time", us)                # naive = UTC
    assert normalize_as_of("2026-01-02T03:04:05.000006Z") == ("time", us)
    assert normalize_as_of("2026-01-02T04:04:05.000006+01:00") == ("time", us)
    for bad in (True, -1, "yesterday", 1.5):
        with pytest.raises((InvalidArgumentError, TypeError)):
            normalize_as_of(bad)


def test_restore_forms_and_progress(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 30) for i in range(300)])
    first = table_state(conn)
    when = now_utc()
    conn.backup(target)
    conn.execute("DELETE FROM t WHERE id < 100")
    seq = last_sequence(conn)
    archive_now(conn)
    calls = []
    info = tabledb.restore(target, str(tmp_path / "a"), as_of=when.isoformat(),
                           progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] > 0 and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert info["wal_records"] == 0
    with restored(tmp_path, "a") as r:
        assert table_state(r) == first
    info = tabledb.restore(target, str(tmp_path / "b"), backup="latest", as_of=seq)
    assert info["sequence"] == seq and info["wal_records"] == 1
    with restored(tmp_path, "b") as r:
        assert r.execute("SELECT count(*) FROM t").fetchone() == (200,)
    # SQL: AS OF TIMESTAMP with a zone, and BACKUP LATEST
    row = conn.execute(f"RESTORE DATABASE FROM '{target}' BACKUP LATEST AS OF TIMESTAMP "
                       f"'{dt.datetime.now(dt.timezone.utc).isoformat()}' INTO '{tmp_path / 'c'}'").fetchone()
    assert row[2] == seq


def test_verify_every_backup_through_sql(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    b1 = conn.backup(target)
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100, 200)])
    b2 = conn.backup(target)
    cur = conn.execute(f"VERIFY BACKUP FROM '{target}'")
    assert [d[0] for d in cur.description] == ["file", "bytes", "status"]
    rows = cur.fetchall()
    names = [r[0] for r in rows]
    assert f"backups/{b1['backup_id']}.meta" in names and f"backups/{b2['backup_id']}.meta" in names
    assert len(names) == len(set(names)) and all(r[2] == "ok" for r in rows)
    one = conn.execute(f"VERIFY BACKUP '{b1['backup_id']}' FROM '{target}'").fetchall()
    assert f"backups/{b2['backup_id']}.meta" not in [r[0] for r in one]
    with pytest.raises(tabledb.OperationalError, match="no backup"):
        conn.execute(f"VERIFY BACKUP '20000101T000000-0001' FROM '{target}'")


def test_restore_table_into_an_in_memory_database(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(50)])
    conn.backup(target)
    mem = tabledb.connect(":memory:", autocommit=True)
    try:
        mem.execute(f"RESTORE TABLE t FROM '{target}'")
        assert mem.execute("SELECT count(*), max(v) FROM t").fetchone() == (50, "v9")
        assert mem.execute("SELECT id FROM t WHERE v = 'v7'").fetchall() == [(7,)]
        with pytest.raises(tabledb.IntegrityError):
            mem.execute("INSERT INTO t VALUES (99, 'v1')")       # the UNIQUE index came along
    finally:
        mem.close()


def test_pacer_sleeps_only_while_writers_write(tmp_path, connect, monkeypatch):
    conn = connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    engine = conn._db.engine
    slept = []
    monkeypatch.setattr(backup_mod.time, "sleep", slept.append)
    pacer = backup_mod.Pacer(engine, factor=2.0)
    pacer(0.01)
    assert slept == []                       # no write since the pacer started
    conn.execute("INSERT INTO t VALUES (1)")
    pacer(0.01)
    assert slept == [0.02]
    pacer(0.01)
    assert slept == [0.02]                   # none since the last chunk


def test_target_marker_and_metadata_checks(tmp_path):
    with pytest.raises(BackupError, match="no tabledb backups"):
        Repository.open(str(tmp_path / "none"))
    os.makedirs(tmp_path / "other")
    (tmp_path / "other" / "TABLEDB-BACKUP").write_text('{"format": "something-else"}')
    with pytest.raises(BackupError, match="not a tabledb backup target"):
        Repository.open(str(tmp_path / "other"))
    repo = Repository.open("file://" + str(tmp_path / "uri"), create=True)
    assert os.path.exists(tmp_path / "uri" / "TABLEDB-BACKUP")
    meta = {"format": "tabledb-backup", "version": 1, "backup_id": "x"}
    data = encode_meta(meta)
    assert decode_meta(data, "m") == meta
    assert data.count(b"\n") == 2
    with pytest.raises(CorruptionError):
        decode_meta(data.replace(b'"x"', b'"y"'), "m")
    with pytest.raises(CorruptionError, match="newer"):
        decode_meta(encode_meta({**meta, "version": 99}), "m")
    assert repo.new_backup_id(0).endswith("-0001")


def test_verify_report_summary(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    b = conn.backup(target)
    report = tabledb.verify_backup(target, "LATEST")
    assert report.ok and report.problems == [] and report.backup_id == b["backup_id"]
    assert tabledb.verify_backup(target).backup_id == "all"
    os.remove(os.path.join(target, report[1]["file"]))
    again = tabledb.verify_backup(target, b["backup_id"])
    assert not again.ok and again.problems[0]["status"] == "missing"
