"""End to end through SQL and the Python API: full then incremental backups; restores to each backup
and to sequences and times between them, compared row by row with the database at that moment;
RESTORE TABLE after a bad DELETE; a restore from the target alone; schema changes; DROP BACKUP."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

import tabledb
from tabledb.errors import NotSupportedError, OperationalError, ProgrammingError

from backup_helpers import archive_now, last_sequence, now_utc, restored, schema_state, table_state, wait_archived


def backup(conn, target, options=""):
    cur = conn.execute(f"BACKUP DATABASE TO '{target}'" + (f" WITH ({options})" if options else ""))
    cols = [d[0] for d in cur.description]
    row = cur.fetchone()
    assert cur.fetchone() is None
    return dict(zip(cols, row))


def restore_sql(conn, target, path, clause=""):
    cur = conn.execute(f"RESTORE DATABASE FROM '{target}' {clause} INTO '{path}'")
    cols = [d[0] for d in cur.description]
    return dict(zip(cols, cur.fetchone()))


def make_table(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    conn.execute("CREATE INDEX t_n ON t(n)")


def insert(conn, lo, hi, tag="a"):
    """Rows lo..hi-1, 50 to a transaction (so that memtables fill and flush as they go)."""
    for start in range(lo, hi, 50):
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)",
                         [(i, f"{tag}{i}" * 3, i % 17) for i in range(start, min(hi, start + 50))])


def index_probe(conn, table="t"):
    return sorted(conn.execute(f"SELECT id FROM {table} WHERE n = 5").fetchall())


def test_full_then_incremental_and_restore_to_every_point(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    make_table(conn)
    points = []      # (sequence, time, state, index probe)

    def mark():
        points.append((last_sequence(conn), now_utc(), table_state(conn), index_probe(conn)))

    insert(conn, 0, 400)
    mark()
    b1 = backup(conn, target)
    assert b1["kind"] == "full" and b1["parent_id"] is None and b1["sequence"] == points[-1][0]
    assert b1["files_copied"] == b1["files_total"] > 1 and b1["bytes_copied"] == b1["bytes_total"] > 0
    for i in range(0, 400, 7):
        conn.execute("UPDATE t SET v = 'changed', n = 5 WHERE id = ?", (i,))
    mark()
    conn.execute("DELETE FROM t WHERE id BETWEEN 100 AND 150")
    mark()
    b2 = backup(conn, target, "label = 'two'")
    assert b2["kind"] == "incremental" and b2["parent_id"] == b1["backup_id"]
    assert b2["files_copied"] < b2["files_total"] and b2["bytes_copied"] < b2["bytes_total"]
    insert(conn, 400, 500, "b")
    mark()
    b3 = backup(conn, target)
    assert b3["parent_id"] == b2["backup_id"]
    conn.execute("DELETE FROM t WHERE id % 3 = 0")
    mark()
    insert(conn, 1000, 1010, "c")
    mark()
    archive_now(conn)
    # exactly each backup
    for n, (b, point) in enumerate([(b1, points[0]), (b2, points[2]), (b3, points[3])]):
        out = restore_sql(conn, target, tmp_path / f"exact{n}", f"BACKUP '{b['backup_id']}'")
        assert out["backup_id"] == b["backup_id"] and out["sequence"] == b["sequence"] == point[0]
        with restored(tmp_path, f"exact{n}") as r:
            assert table_state(r) == point[2] and index_probe(r) == point[3]
    # every point by sequence and by time
    for n, (seq, when, state, probe) in enumerate(points):
        out = restore_sql(conn, target, tmp_path / f"seq{n}", f"AS OF SEQUENCE {seq}")
        assert out["sequence"] == seq
        with restored(tmp_path, f"seq{n}") as r:
            assert table_state(r) == state and index_probe(r) == probe
            assert last_sequence(r) == seq
        tabledb.restore(target, str(tmp_path / f"time{n}"), as_of=when)
        with restored(tmp_path, f"time{n}") as r:
            assert table_state(r) == state and index_probe(r) == probe
    # a backup named with a later point: start from it and replay
    out = restore_sql(conn, target, tmp_path / "from_b1", f"BACKUP '{b1['backup_id']}' AS OF SEQUENCE {points[4][0]}")
    assert out["backup_id"] == b1["backup_id"]
    with restored(tmp_path, "from_b1") as r:
        assert table_state(r) == points[4][2]
    # no AS OF, no backup: the latest state the target holds
    restore_sql(conn, target, tmp_path / "latest")
    with restored(tmp_path, "latest") as r:
        assert table_state(r) == points[-1][2]
    # LATEST alone: the newest backup as it was
    restore_sql(conn, target, tmp_path / "latest_backup", "LATEST")
    with restored(tmp_path, "latest_backup") as r:
        assert table_state(r) == points[3][2]
    # LATEST AS OF a point before the newest backup: the newest backup at or before it, then the WAL
    out = restore_sql(conn, target, tmp_path / "latest_as_of", f"LATEST AS OF SEQUENCE {points[1][0]}")
    assert out["backup_id"] == b1["backup_id"]
    with restored(tmp_path, "latest_as_of") as r:
        assert table_state(r) == points[1][2]


def test_restored_database_is_writable_and_starts_its_own_history(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    make_table(conn)
    insert(conn, 0, 100)
    b1 = backup(conn, target)
    tabledb.restore(target, str(tmp_path / "r"), backup=b1["backup_id"])
    r = connect("r")
    insert(r, 100, 120)
    rb = r.backup(target)
    assert rb["kind"] == "full"          # a restored database is a new database: its own files
    assert rb["sequence"] == last_sequence(r)
    backups = tabledb.backup.list_backups(target)
    assert [b["backup_id"] for b in backups] == [b1["backup_id"], rb["backup_id"]]
    tabledb.restore(target, str(tmp_path / "r2"))
    with restored(tmp_path, "r2") as r2:
        assert table_state(r2) == table_state(r)


def test_bad_delete_then_restore_table(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    make_table(conn)
    conn.execute("CREATE TABLE other(k TEXT PRIMARY KEY, x REAL)")
    conn.executemany("INSERT INTO other VALUES (?, ?)", [(f"k{i}", i / 2) for i in range(50)])
    insert(conn, 0, 300)
    backup(conn, target)
    insert(conn, 300, 350)
    good = table_state(conn, ["t"])["t"]
    good_probe = index_probe(conn)
    before = last_sequence(conn)
    conn.execute("DELETE FROM t WHERE id > 10")          # the mistake
    conn.execute("INSERT INTO other VALUES ('after', 1.0)")
    other_now = table_state(conn, ["other"])
    archive_now(conn)
    with pytest.raises(ProgrammingError, match="already exists"):
        conn.execute(f"RESTORE TABLE t FROM '{target}' AS OF SEQUENCE {before}")
    cur = conn.execute(f"RESTORE TABLE t AS t_good FROM '{target}' AS OF SEQUENCE {before}")
    row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    assert row["table_name"] == "t_good" and row["rows"] == 350 and row["sequence"] == before
    assert table_state(conn, ["t_good"])["t_good"] == good
    assert index_probe(conn, "t_good") == good_probe
    assert table_state(conn, ["other"]) == other_now              # the live tables are untouched
    assert len(conn.execute("SELECT * FROM t").fetchall()) == 11
    # indexes came along under names that do not clash, and the table is writable
    indexes = {r[1] for r in conn.execute("SHOW INDEXES FROM t_good").fetchall()}
    assert "t_good_t_n" in indexes
    conn.execute("INSERT INTO t_good VALUES (9999, 'new', 5)")
    with pytest.raises(tabledb.IntegrityError):
        conn.execute("INSERT INTO t_good VALUES (1, 'dup', 5)")
    # under its own name once the name is free
    conn.execute("DROP TABLE t")
    conn.execute(f"RESTORE TABLE t FROM '{target}' AS OF SEQUENCE {before}")
    assert table_state(conn, ["t"])["t"] == good
    assert {r[1] for r in conn.execute("SHOW INDEXES FROM t").fetchall()} >= {"t_n"}
    with pytest.raises(OperationalError, match="not in backup"):
        conn.execute(f"RESTORE TABLE nosuch FROM '{target}'")
    # survives reopen
    conn.close()
    again = connect()
    assert table_state(again, ["t"])["t"] == good


def test_original_deleted_then_restore_from_the_target_alone(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    make_table(conn)
    insert(conn, 0, 200)
    conn.backup(target)
    insert(conn, 200, 260)
    conn.execute("UPDATE t SET v = 'late' WHERE id < 5")
    state = table_state(conn)
    wait_archived(conn)     # the archiver's own interval: a disaster loses at most that window
    conn.close()
    shutil.rmtree(tmp_path / "db")
    info = tabledb.restore(target, str(tmp_path / "db"))
    assert info["wal_records"] > 0
    with restored(tmp_path, "db") as r:
        assert table_state(r) == state


def test_schema_of_each_backup_comes_back(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    make_table(conn)
    conn.execute("CREATE TABLE gone(a INTEGER, b TEXT UNIQUE)")
    conn.execute("INSERT INTO gone VALUES (1, 'x'), (2, 'y')")
    insert(conn, 0, 50)
    steps = []

    def snap():
        steps.append((conn.backup(target, wal_archive=False)["backup_id"], schema_state(conn), table_state(conn)))

    snap()
    conn.execute("DROP TABLE gone")
    snap()
    conn.execute("ALTER TABLE t ADD COLUMN extra TEXT DEFAULT 'd'")
    conn.execute("UPDATE t SET extra = 'e' WHERE id < 3")
    snap()
    conn.execute("DROP INDEX t_n")
    conn.execute("CREATE UNIQUE INDEX t_v ON t(v)")
    snap()
    conn.execute("ALTER TABLE t RENAME TO t2")
    snap()
    for n, (bid, schema, state) in enumerate(steps):
        tabledb.restore(target, str(tmp_path / f"s{n}"), backup=bid)
        with restored(tmp_path, f"s{n}") as r:
            assert schema_state(r) == schema
            assert table_state(r) == state


def test_show_backups_and_python_api(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    make_table(conn)
    insert(conn, 0, 100)
    calls = []
    b1 = conn.backup(target, label="first", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] == b1["bytes_copied"]
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    conn.execute("CREATE TABLE u(x INTEGER)")
    b2 = conn.backup(target)
    cur = conn.execute(f"SHOW BACKUPS FROM '{target}'")
    assert [d[0] for d in cur.description] == ["backup_id", "kind", "parent_id", "label", "sequence",
                                               "created_at", "bytes_total", "tables"]
    rows = cur.fetchall()
    assert [r[0] for r in rows] == [b1["backup_id"], b2["backup_id"]]
    assert rows[0][1:5] == ("full", None, "first", b1["sequence"])
    assert rows[1][1:4] == ("incremental", b1["backup_id"], None)
    assert rows[0][7] == "t" and rows[1][7] == "t, u"
    assert rows[1][6] == b2["bytes_total"]
    # VERIFY through the Python API, with progress
    seen = []
    report = tabledb.verify_backup(target, progress=lambda d, t: seen.append((d, t)))
    assert report and all(r["status"] == "ok" for r in report)
    assert seen[-1][0] == seen[-1][1]
    # DB-API errors
    with pytest.raises(ProgrammingError, match="unknown BACKUP option"):
        conn.execute(f"BACKUP DATABASE TO '{target}' WITH (nope = 1)")
    with pytest.raises(ProgrammingError):
        conn.execute(f"BACKUP DATABASE TO '{target}' WITH (incremental = 'maybe')")
    with pytest.raises(ProgrammingError):
        tabledb.restore(target, str(tmp_path / "db"))          # exists
    with pytest.raises(OperationalError, match="no tabledb backups"):
        tabledb.restore(str(tmp_path / "nothing"), str(tmp_path / "x"))
    with pytest.raises(OperationalError, match="no backup"):
        tabledb.restore(target, str(tmp_path / "x"), backup="20000101T000000-0001")
    with pytest.raises(OperationalError):
        tabledb.restore(target, str(tmp_path / "x"), as_of=10 ** 9)
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(str(tmp_path / "x") + ".restoring")


def test_backup_refuses_to_run_inside_a_transaction_and_keeps_readers_fresh(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(autocommit=False)
    make_table(conn)
    insert(conn, 0, 10)
    conn.commit()
    conn.execute("BEGIN")
    with pytest.raises(OperationalError, match="inside a transaction"):
        conn.execute(f"BACKUP DATABASE TO '{target}'")
    conn.rollback()
    insert(conn, 10, 11)
    with pytest.raises(OperationalError, match="inside a transaction"):
        conn.execute(f"BACKUP DATABASE TO '{target}'")
    conn.rollback()
    # autocommit off, no pending writes: fine; another connection writes meanwhile
    other = connect()
    conn.execute(f"BACKUP DATABASE TO '{target}'").fetchall()
    other.execute("INSERT INTO t VALUES (500, 'o', 1)")
    conn.execute("INSERT INTO t VALUES (501, 'c', 1)")        # no stale-snapshot error
    conn.commit()
    assert len(conn.execute("SELECT * FROM t").fetchall()) == 12


def test_backup_does_not_block_other_connections_writers(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    make_table(conn)
    insert(conn, 0, 2000)
    writer = connect(busy_timeout=0.5)
    done = []
    errors = []

    def write():
        try:
            for i in range(5000, 5200):
                writer.execute("INSERT INTO t VALUES (?, 'w', 1)", (i,))
                done.append(i)
        except Exception as exc:   # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    conn.execute(f"BACKUP DATABASE TO '{target}'").fetchall()
    t.join()
    assert not errors and len(done) == 200


def test_backup_table_and_its_restore(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect()
    make_table(conn)
    insert(conn, 0, 200)
    conn.execute("CREATE TABLE keep(a INTEGER PRIMARY KEY, b TEXT)")
    conn.executemany("INSERT INTO keep VALUES (?, ?)", [(i, str(i)) for i in range(300)])
    conn.execute("CREATE VIEW vv AS SELECT * FROM t")
    keep = table_state(conn, ["keep"])
    cur = conn.execute(f"BACKUP TABLE keep TO '{target}' WITH (wal_archive = false)")
    row = cur.fetchone()
    shown = conn.execute(f"SHOW BACKUPS FROM '{target}'").fetchall()
    assert shown[0][0] == row[0] and shown[0][7] == "keep"
    tabledb.restore(target, str(tmp_path / "r"))
    with restored(tmp_path, "r") as r:
        assert [x[0] for x in r.execute("SHOW TABLES").fetchall()] == ["keep"]
        assert table_state(r) == keep
    with pytest.raises(OperationalError, match="not in backup"):
        conn.execute(f"RESTORE TABLE t AS t9 FROM '{target}'")
    conn.execute(f"RESTORE TABLE keep AS keep2 FROM '{target}'")
    assert table_state(conn, ["keep2"])["keep2"] == keep["keep"]
    with pytest.raises(ProgrammingError, match="no such table"):
        conn.execute(f"BACKUP TABLE nosuch TO '{target}'")


def test_drop_backup_removes_only_unused_files(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    make_table(conn)
    insert(conn, 0, 300)
    b1 = conn.backup(target)
    insert(conn, 300, 400)
    b2 = conn.backup(target)
    insert(conn, 400, 500)
    b3 = conn.backup(target)
    state3 = table_state(conn)
    before = set(_objects(target))
    cur = conn.execute(f"DROP BACKUP '{b2['backup_id']}' FROM '{target}'")
    row = cur.fetchone()
    assert row[0] == b2["backup_id"] and row[1] >= 1
    after = set(_objects(target))
    assert after < before
    bad = [r for r in tabledb.verify_backup(target) if r["status"] != "ok"]
    assert not bad, bad
    assert [b["backup_id"] for b in tabledb.backup.list_backups(target)] == [b1["backup_id"], b3["backup_id"]]
    tabledb.restore(target, str(tmp_path / "r3"), backup=b3["backup_id"])
    with restored(tmp_path, "r3") as r:
        assert table_state(r) == state3
    tabledb.restore(target, str(tmp_path / "r1"), backup=b1["backup_id"])
    tabledb.backup.drop_backup(target, b1["backup_id"])
    tabledb.backup.drop_backup(target, b3["backup_id"])
    assert not [p for p in _objects(target) if p.startswith("sst/")]
    with pytest.raises(OperationalError, match="no backup"):
        conn.execute(f"DROP BACKUP '{b3['backup_id']}' FROM '{target}'")


def test_in_memory_database_cannot_be_backed_up(tmp_path):
    conn = tabledb.connect(":memory:")
    with pytest.raises(NotSupportedError):
        conn.backup(str(tmp_path / "bk"))
    conn.close()


def _objects(target):
    out = []
    for root, _dirs, files in os.walk(target):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), target))
    return out


def test_copied_counts_the_wal_files_a_backup_wrote_through_the_archive(tmp_path):
    """With wal_archive the backup's own WAL files reach the target through the archive (copied
    first, oldest first); files_copied/bytes_copied still count them, and never more than the
    backup's own files."""
    target = str(tmp_path / "bk")
    conn = tabledb.connect(str(tmp_path / "db"), autocommit=True)
    try:
        make_table(conn)
        insert(conn, 0, 100)
        b1 = backup(conn, target)
        conn.execute("INSERT INTO t VALUES (1000, 'only in the WAL', 1)")
        b2 = backup(conn, target)
        meta = tabledb.backup.list_backups(target)[-1]
        assert meta["backup_id"] == b2["backup_id"]
    finally:
        from tabledb.backup import archive
        archive.stop(conn._db.engine)
        conn.close()
    from tabledb.backup.repository import Repository
    repo = Repository.open(target)
    own_wal = repo.read_meta(b2["backup_id"])["wal_files"]
    earlier = {f["path"] for f in repo.read_meta(b1["backup_id"])["wal_files"]}
    new = [f for f in own_wal if f["path"] not in earlier]
    assert new, "the row inserted after the first backup is in a WAL file of the second"
    assert b2["files_copied"] == len(new) and b2["bytes_copied"] == sum(f["size"] for f in new)
    assert b2["files_copied"] <= b2["files_total"] and b2["bytes_copied"] <= b2["bytes_total"]
