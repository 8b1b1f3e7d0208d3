"""Bulk loads (ingest_arrow, COPY FROM) between a backup and the point restored to.

A bulk load outside a transaction adds whole SSTables and never writes its rows
to the WAL; the WAL logs it as a reserve record and an ingest record, and the
archiver copies the ingested tables beside the segment that logged them. These
tests restore to the latest state, to sequences and times around the load,
and check the failure when an archived table is missing or damaged.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import tabledb
from tabledb.backup.repository import Repository
from backup_helpers import archive_now, last_sequence, now_utc, table_state


def load(conn, table: str, start: int, n: int, tag: str) -> None:
    data = pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "v": pa.array([f"{tag}{i}" for i in range(start, start + n)]),
                     "g": pa.array([i % 7 for i in range(start, start + n)], pa.int64())})
    conn.ingest_arrow(table, data)


@pytest.fixture
def history(tmp_path, connect):
    """A database archived to tmp_path/target: a backup, then row writes, a bulk load, more writes,
    COPY FROM a parquet file and a bulk load into a new table, more writes. Returns (conn, target, points)
    where points is [(sequence, time, state)] after each step."""
    target = str(tmp_path / "target")
    conn = connect(wal_archive_interval=3600)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, g INTEGER)")
    conn.execute("CREATE INDEX t_g ON t(g)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"row{i}", i % 7) for i in range(50)])
    conn.execute(f"BACKUP DATABASE TO '{target}'")
    points = []

    def mark():
        points.append((last_sequence(conn), now_utc(), table_state(conn)))

    mark()
    conn.execute("UPDATE t SET v = 'changed' WHERE id < 10")
    mark()
    load(conn, "t", 1000, 3000, "bulk")
    assert conn._db.engine.ingest_links(), "the bulk load did not go through the ingest path"
    mark()
    conn.execute("DELETE FROM t WHERE id BETWEEN 1000 AND 1010")
    conn.execute("UPDATE t SET v = 'after' WHERE id = 2000")
    mark()
    parquet = str(tmp_path / "more.parquet")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": pa.array(range(5000, 6000), pa.int64()),
                             "v": pa.array([f"copy{i}" for i in range(1000)]),
                             "g": pa.array([i % 3 for i in range(1000)], pa.int64())}), parquet)
    conn.execute(f"COPY t FROM '{parquet}'")       # COPY FROM loads through the write path
    conn.ingest_arrow("u", pa.table({"k": pa.array(range(500), pa.int64())}), mode="create")
    mark()
    conn.execute("INSERT INTO t VALUES (9999, 'last', 1)")
    mark()
    archive_now(conn)
    return conn, target, points


def check_restored(path, state) -> None:
    with tabledb.connect(path) as r:
        assert table_state(r) == state
        for g in (0, 1, 2):        # the index agrees with the rows
            by_index = sorted(r.execute("SELECT id FROM t WHERE g = ?", (g,)).fetchall())
            assert by_index == sorted((row[0],) for row in state["t"] if row[2] == g)
    

def test_restore_latest_replays_the_bulk_loads(tmp_path, history):
    conn, target, points = history
    out = tabledb.restore(target, str(tmp_path / "latest"))
    assert out["sequence"] == points[-1][0]
    check_restored(str(tmp_path / "latest"), points[-1][2])


@pytest.mark.parametrize("step", range(6))
def test_restore_as_of_each_sequence_around_the_loads(tmp_path, history, step):
    conn, target, points = history
    seq, when, state = points[step]
    tabledb.restore(target, str(tmp_path / "seq"), as_of=seq)
    check_restored(str(tmp_path / "seq"), state)
    tabledb.restore(target, str(tmp_path / "time"), as_of=when)
    check_restored(str(tmp_path / "time"), state)


def test_a_missing_archived_table_stops_the_restore_naming_it(tmp_path, history):
    conn, target, points = history
    repo = Repository.open(target)
    ingested = [o.path for o in repo.list("wal", recursive=True) if "/ingest/" in o.path]
    assert len(ingested) == 2
    os.remove(os.path.join(target, ingested[0]))
    with pytest.raises(tabledb.CorruptionError) as info:
        tabledb.restore(target, str(tmp_path / "r"))
    assert ingested[0] in info.value.file
    assert not os.path.exists(tmp_path / "r")
    # Before the load, the restore still works.
    tabledb.restore(target, str(tmp_path / "before"), as_of=points[1][0])
    check_restored(str(tmp_path / "before"), points[1][2])


def test_a_damaged_archived_table_stops_the_restore_naming_it(tmp_path, history):
    conn, target, points = history
    repo = Repository.open(target)
    ingested = [o.path for o in repo.list("wal", recursive=True) if "/ingest/" in o.path]
    victim = os.path.join(target, ingested[-1])
    with open(victim, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x20]))
    with pytest.raises(tabledb.CorruptionError) as info:
        tabledb.restore(target, str(tmp_path / "r"))
    assert ingested[-1] in info.value.file
    assert not os.path.exists(tmp_path / "r")
    report = tabledb.verify_backup(target)
    assert {r["file"]: r["status"] for r in report}[ingested[-1]] == "corrupt"


def test_verify_lists_the_archived_tables(history):
    conn, target, points = history
    report = tabledb.verify_backup(target)
    rows = [r for r in report if "/ingest/" in r["file"]]
    assert len(rows) == 2 and all(r["status"] == "ok" and r["bytes"] > 0 for r in rows)
    assert report.ok


def test_drop_backup_removes_archived_tables_no_backup_can_replay(tmp_path, history):
    conn, target, points = history
    first = conn.execute(f"SHOW BACKUPS FROM '{target}'").fetchall()[0][0]
    conn.execute(f"BACKUP DATABASE TO '{target}'")     # covers both loads
    conn.execute(f"DROP BACKUP '{first}' FROM '{target}'")
    repo = Repository.open(target)
    assert [o.path for o in repo.list("wal", recursive=True) if "/ingest/" in o.path] == []
    out = tabledb.restore(target, str(tmp_path / "r"))
    check_restored(str(tmp_path / "r"), table_state(conn))
    assert out["sequence"] == last_sequence(conn)
