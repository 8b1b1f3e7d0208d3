"""CREATE INDEX on a table with rows, outside a transaction: built in bounded memory and ingested (tabledb/sql/bulk.py).

1. Differential: the bulk path (autocommit, or the first statement of an
   implicit transaction) and the transactional path (inside BEGIN ... COMMIT)
   leave byte-for-byte the same entries and the same plans, for rowid and
   primary-key tables, NULLs, DESC and multi-column indexes, every column type,
   rows from before ALTER TABLE ADD COLUMN; small budgets force several spilled
   runs, merge passes and output files.
2. A UNIQUE violation on the bulk path raises sqlite3's IntegrityError and
   leaves nothing: no index in the catalog, no entry, no temporary file.
3. Crashes: a process killed between the ingest and the catalog commit leaves
   orphan entries; a later CREATE INDEX with the same name (and so the same
   index id), on either path, must not see them (compared with sqlite3, and
   with tabledb.check). A rollback range-deletes what the transaction ingested.
4. Memory: no sort run ever holds more than the run budget.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import subprocess
import sys

import pytest

import tabledb
from tabledb import IntegrityError
from tabledb.check import check_connection, format_report
from tabledb.sql import bulk, keys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def small_budgets(monkeypatch):
    """Runs of 16 KiB (about a hundred entries), merges of 4 runs at a time, 8 KiB SSTables written
    100 entries at a time."""
    monkeypatch.setattr(bulk, "RUN_BYTES", 16 << 10)
    monkeypatch.setattr(bulk, "MERGE_FANIN", 4)
    monkeypatch.setattr(bulk, "SST_TARGET_BYTES", 8 << 10)
    monkeypatch.setattr(bulk, "SLICE", 100)


@pytest.fixture
def sorters(monkeypatch):
    """Every ExternalSorter that build_index makes, for inspection."""
    made = []

    class Recording(bulk.ExternalSorter):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(bulk, "ExternalSorter", Recording)
    return made


def ingested_files(conn) -> int:
    return conn._session.engine.stats()["ingested_files"]


def index_entries(conn, name: str) -> list[tuple[bytes, bytes]]:
    """Every engine entry of the index's key range (as the committed catalog names it)."""
    table, index = conn._session.current_catalog().find_index(name)
    lo, hi = keys.index_range(table.id, index.id)
    return list(conn._session.engine.scan(lo, hi))


def leftovers(path: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith(("index-", "ingest-")))


def create_index(conn, sql: str, how: str) -> bool:
    """Run ``sql`` (a CREATE INDEX) and commit it; True when it took the SSTable path."""
    before = ingested_files(conn)
    if how == "implicit":             # the first statement of an implicit transaction
        conn.execute(sql)
        conn.commit()
    elif how == "autocommit":
        conn.autocommit = True
        try:
            conn.execute(sql)
        finally:
            conn.autocommit = False
    else:
        assert how == "begin"
        conn.execute("BEGIN")
        conn.execute(sql)
        conn.execute("COMMIT")
    return ingested_files(conn) > before


# -- 1. differential ------------------------------------------------------------------------

def _text(rng) -> str | None:
    if rng.random() < 0.1:
        return None
    return rng.choice(["", "a", "a\x00b", "ä", "zz", "\U0001f600", "a\x00", "b"]) + str(rng.randrange(30))


def _blob(rng) -> bytes | None:
    if rng.random() < 0.1:
        return None
    return bytes(rng.choice([0, 1, 0xFF, 0x7F, 0x80]) for _ in range(rng.randrange(4))) + bytes([rng.randrange(9)])


def _real(rng) -> float | None:
    if rng.random() < 0.1:
        return None
    return rng.choice([-1e300, -2.5, -0.0, 0.0, 1e-300, 3.25, 7.0, 1e300]) * rng.randrange(1, 4)


def _int(rng) -> int | None:
    if rng.random() < 0.1:
        return None
    return rng.choice([-(2 ** 63), -7, 0, 1, 2 ** 63 - 1, rng.randrange(-50, 50)])


N = 1500


def _rowid_table(rng):
    rows = [(_int(rng), _text(rng), _real(rng), _blob(rng), i if i % 5 else None) for i in range(N)]
    setup = [("CREATE TABLE t(x INTEGER, s TEXT, r REAL, b BLOB, u INTEGER)", None),
             ("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)]
    indexes = ["CREATE INDEX i ON t(s)", "CREATE INDEX i ON t(r DESC, x)", "CREATE INDEX i ON t(b, s DESC)",
               "CREATE INDEX i ON t(x, s, r, b)", "CREATE UNIQUE INDEX i ON t(u DESC)",
               "CREATE UNIQUE INDEX i ON t(u, s)"]
    return setup, indexes, "SELECT * FROM t WHERE s = 'a3'"


def _pk_table(rng):
    seen, rows = set(), []
    while len(rows) < N:
        k, n = _text(rng) or "k", rng.randrange(40)
        if (k, n) not in seen:
            seen.add((k, n))
            rows.append((k, n, _real(rng), _blob(rng)))
    setup = [("CREATE TABLE t(k TEXT, n INTEGER, v REAL, w BLOB, PRIMARY KEY (k, n))", None),
             ("INSERT INTO t VALUES (?, ?, ?, ?)", rows)]
    indexes = ["CREATE INDEX i ON t(v)", "CREATE INDEX i ON t(w DESC)", "CREATE INDEX i ON t(n DESC, k)",
               "CREATE UNIQUE INDEX i ON t(k DESC, n)", "CREATE INDEX i ON t(w, v DESC, n)"]
    return setup, indexes, "SELECT k FROM t WHERE v = 7.0"


def _typed_table(rng):
    day = dt.date(2024, 1, 1)
    rows = [(None if i % 11 == 0 else i * 3,
             None if rng.random() < 0.2 else rng.random() < 0.5,
             None if rng.random() < 0.1 else day + dt.timedelta(days=rng.randrange(-400, 400)),
             None if rng.random() < 0.1 else dt.datetime(2024, 5, 1) + dt.timedelta(microseconds=rng.randrange(10 ** 12)),
             None if rng.random() < 0.3 else f"t{i}") for i in range(N)]
    setup = [("CREATE TABLE t(id INTEGER PRIMARY KEY, flag BOOLEAN, day DATE, at TIMESTAMP, name TEXT)", None),
             ("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)]
    indexes = ["CREATE INDEX i ON t(flag, day)", "CREATE INDEX i ON t(at DESC)", "CREATE UNIQUE INDEX i ON t(name)",
               "CREATE INDEX i ON t(day DESC, flag DESC, name)"]
    return setup, indexes, "SELECT id FROM t WHERE day = '2024-02-03'"


def _altered_table(rng):
    setup = [("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)", None),
             ("INSERT INTO t(a) VALUES (?)", [(_text(rng),) for _ in range(N // 2)]),
             ("ALTER TABLE t ADD COLUMN z INTEGER DEFAULT 7", None),
             ("ALTER TABLE t ADD COLUMN y TEXT", None),
             ("INSERT INTO t(a, z, y) VALUES (?, ?, ?)", [(_text(rng), _int(rng), _text(rng)) for _ in range(N // 2)])]
    indexes = ["CREATE INDEX i ON t(z, a)", "CREATE INDEX i ON t(y DESC)", "CREATE INDEX i ON t(a, y, z DESC)"]
    return setup, indexes, "SELECT id FROM t WHERE z = 7"


TABLES = {"rowid": _rowid_table, "primary_key": _pk_table, "typed": _typed_table, "altered": _altered_table}


def _load(conn, setup) -> None:
    for sql, params in setup:
        if params is None:
            conn.execute(sql)
        else:
            conn.executemany(sql, params)
    conn.commit()


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_bulk_and_transactional_paths_write_the_same_entries(tmp_path, small_budgets, sorters, kind):
    setup, indexes, query = TABLES[kind](random.Random(kind))
    bulk_conn = tabledb.connect(str(tmp_path / "bulk"))
    txn_conn = tabledb.connect(str(tmp_path / "txn"))
    try:
        _load(bulk_conn, setup)
        _load(txn_conn, setup)
        for n, sql in enumerate(indexes):
            how = "implicit" if n % 2 == 0 else "autocommit"
            sorters.clear()
            assert create_index(bulk_conn, sql, how), sql
            assert not create_index(txn_conn, sql, "begin"), sql
            assert len(sorters) == 1 and sorters[0].spilled >= 4, sql          # several runs, merged in passes
            got, want = index_entries(bulk_conn, "i"), index_entries(txn_conn, "i")
            assert len(want) == N
            assert got == want, sql
            plan = [f"EXPLAIN {query}", f"EXPLAIN {query.replace('SELECT ', 'SELECT count(*), ', 1)}"]
            for q in plan:
                assert bulk_conn.execute(q).fetchall() == txn_conn.execute(q).fetchall()
            q = query.replace("SELECT ", "SELECT rowid, ", 1) if kind == "rowid" else query
            assert sorted(bulk_conn.execute(q).fetchall(), key=repr) == sorted(txn_conn.execute(q).fetchall(), key=repr)
            for c in (bulk_conn, txn_conn):
                c.execute("DROP INDEX i")
                c.commit()
        assert leftovers(str(tmp_path / "bulk")) == []
        report = check_connection(bulk_conn)
        assert report["ok"], format_report(report)
    finally:
        bulk_conn.close()
        txn_conn.close()


def test_several_output_files_do_not_overlap_and_survive_reopen(tmp_path, small_budgets):
    path = str(tmp_path / "db")
    c = tabledb.connect(path)
    try:
        setup, _indexes, _q = _rowid_table(random.Random(3))
        _load(c, setup)
        before = ingested_files(c)
        c.execute("CREATE INDEX i ON t(x, s, r, b)")
        c.commit()
        assert ingested_files(c) - before >= 3                  # 8 KiB files
        want = index_entries(c, "i")
    finally:
        c.close()
    c = tabledb.connect(path)
    try:
        assert index_entries(c, "i") == want
        report = check_connection(c)
        assert report["ok"], format_report(report)
    finally:
        c.close()


def test_memory_database_and_empty_tables(small_budgets):
    c = tabledb.connect(":memory:")
    try:
        c.execute("CREATE TABLE e(a INTEGER, b TEXT)")
        c.commit()
        assert not create_index(c, "CREATE INDEX e_a ON e(a)", "implicit")     # no rows: nothing to ingest
        assert index_entries(c, "e_a") == []
        setup, _indexes, _q = _pk_table(random.Random(5))
        _load(c, setup)
        assert create_index(c, "CREATE INDEX i ON t(n DESC, k)", "autocommit")
        assert len(index_entries(c, "i")) == N
        assert c.execute("SELECT count(*) FROM t WHERE n = 3").fetchone() == \
            c.execute("SELECT count(*) FROM t WHERE n + 0 = 3").fetchone()
    finally:
        c.close()


def test_an_implicit_transaction_reads_the_new_index_and_can_roll_it_back(tmp_path):
    path = str(tmp_path / "db")
    c = tabledb.connect(path)
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, i % 10) for i in range(1000)])
        c.commit()
        before = ingested_files(c)
        c.execute("CREATE INDEX t_k ON t(k)")
        assert ingested_files(c) > before and c.in_transaction
        assert "index t_k" in " ".join(r[0] for r in c.execute("EXPLAIN SELECT id FROM t WHERE k = 3"))
        assert c.execute("SELECT count(*) FROM t WHERE k = 3").fetchone() == (100,)   # its own transaction sees them
        c.execute("INSERT INTO t VALUES (1000, 3)")
        assert c.execute("SELECT count(*) FROM t WHERE k = 3").fetchone() == (101,)
        c.rollback()
        assert c.execute("SHOW INDEXES FROM t").fetchall() == [("t", "PRIMARY", 1, "id")]
        report = check_connection(c)
        assert report["ok"], format_report(report)              # the ingested entries were range-deleted: no orphans
        c.execute("CREATE INDEX t_k ON t(k)")
        c.execute("INSERT INTO t VALUES (1000, 3)")
        c.commit()
    finally:
        c.close()
    c = tabledb.connect(path)
    try:
        assert c.execute("SELECT count(*) FROM t WHERE k = 3").fetchone() == (101,)
        report = check_connection(c)
        assert report["ok"], format_report(report)
    finally:
        c.close()


# -- 2. UNIQUE violations --------------------------------------------------------------------

@pytest.mark.parametrize("columns", ["k", "k, s", "s DESC, k"])
def test_unique_violation_raises_sqlites_error_and_leaves_nothing(tmp_path, small_budgets, columns):
    rows = [(i, i % 700 if i % 3 else None, f"s{i % 2}") for i in range(1400)]    # duplicates far apart: other runs
    ref = sqlite3.connect(":memory:")
    ref.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT)")
    ref.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    with pytest.raises(sqlite3.IntegrityError) as want:
        ref.execute(f"CREATE UNIQUE INDEX u ON t({columns})")
    path = str(tmp_path / "db")
    c = tabledb.connect(path)
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT)")
        c.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        c.commit()
        table = c._session.current_catalog().table("t")
        lo, hi = keys.index_range(table.id, table.next_index_id)
        for how in ("implicit", "autocommit"):
            before = ingested_files(c)
            with pytest.raises(IntegrityError) as got:
                create_index(c, f"CREATE UNIQUE INDEX u ON t({columns})", how)
            assert str(got.value) == str(want.value)
            c.rollback()
            assert ingested_files(c) == before
            assert c._session.current_catalog().find_index("u") is None
            assert c.execute("SHOW INDEXES FROM t").fetchall() == [("t", "PRIMARY", 1, "id")]
            assert list(c._session.engine.scan(lo, hi)) == []
            assert leftovers(path) == []
        report = check_connection(c)
        assert report["ok"], format_report(report)
    finally:
        c.close()


def test_unique_violation_across_a_slice_boundary(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "SLICE", 10)           # entries 0-9 in one slice, the duplicate opens the next
    c = tabledb.connect(str(tmp_path / "db"), autocommit=True)
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, min(i, 9)) for i in range(11)])
        with pytest.raises(IntegrityError, match=r"^UNIQUE constraint failed: t\.k$"):
            c.execute("CREATE UNIQUE INDEX u ON t(k)")
        c.execute("DELETE FROM t WHERE id = 10")
        c.execute("CREATE UNIQUE INDEX u ON t(k)")
        assert len(index_entries(c, "u")) == 10
    finally:
        c.close()


def test_unique_index_with_nulls_builds(tmp_path, small_budgets):
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
        c.executemany("INSERT INTO t VALUES (?, ?, ?)",
                      [(i, i // 2, None if i % 2 else "x") for i in range(1000)])     # (a, b) unique: NULLs never collide
        c.commit()
        assert create_index(c, "CREATE UNIQUE INDEX u ON t(a, b)", "implicit")
        assert len(index_entries(c, "u")) == 1000
        with pytest.raises(IntegrityError, match=r"^UNIQUE constraint failed: t\.a, t\.b$"):
            c.execute("INSERT INTO t VALUES (5000, 7, 'x')")
        c.execute("INSERT INTO t VALUES (5000, 7, NULL)")
        c.commit()
    finally:
        c.close()


# -- 3. crashes ------------------------------------------------------------------------------

CRASH_CHILD = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import tabledb
from tabledb.sql import bulk

real = bulk.build_index

def build_then_die(*args, **kw):
    n = real(*args, **kw)
    assert n > 0
    os.kill(os.getpid(), signal.SIGKILL)     # ingested; the catalog record never commits

bulk.build_index = build_then_die
c = tabledb.connect(sys.argv[1])
c.execute("CREATE INDEX t_k ON t(k)")
raise SystemExit("not killed")
"""

INDEXED = ["SELECT id FROM t WHERE k = 3 ORDER BY id", "SELECT k, id FROM t WHERE k BETWEEN 2 AND 6 ORDER BY k, id",
           "SELECT count(*) FROM t WHERE k >= 5", "SELECT k FROM t WHERE k < 4 ORDER BY k DESC",
           "SELECT v FROM t WHERE k IN (1, 8) ORDER BY v"]
OTHERS = ["SELECT id FROM t WHERE k IS NULL ORDER BY id", "SELECT k, count(*) FROM t GROUP BY k ORDER BY k"]


@pytest.mark.parametrize("retry", ["implicit", "autocommit", "begin"])
def test_orphans_of_a_crashed_build_stay_hidden(tmp_path, retry):
    path = str(tmp_path / "db")
    rows = [(i, i % 10 if i % 13 else None, f"v{i}") for i in range(2000)]
    c = tabledb.connect(path)
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
        c.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        c.commit()
        table = c._session.current_catalog().table("t")
        lo, hi = keys.index_range(table.id, table.next_index_id)
    finally:
        c.close()
    out = subprocess.run([sys.executable, "-c", CRASH_CHILD, path, REPO], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    c = tabledb.connect(path)
    try:
        assert c._session.current_catalog().find_index("t_k") is None
        orphans = list(c._session.engine.scan(lo, hi))
        assert len(orphans) == len(rows)                        # ingested before the kill, named by no catalog
        report = check_connection(c)                            # harmless: a warning, not a problem
        assert report["ok"] and any("did not commit" in w for w in report["warnings"]), format_report(report)
        # change the rows, so that stale entries would give wrong answers
        c.execute("UPDATE t SET k = (k + 3) % 10 WHERE id % 3 = 0")
        c.execute("DELETE FROM t WHERE id % 7 = 0")
        c.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i % 4, f"n{i}") for i in range(2000, 2300)])
        c.commit()
        create_index(c, "CREATE INDEX t_k ON t(k)", retry)
        table, index = c._session.current_catalog().find_index("t_k")
        assert keys.index_range(table.id, index.id) == (lo, hi)  # the same index id as the crashed attempt
        ref = sqlite3.connect(":memory:")
        ref.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
        ref.executemany("INSERT INTO t VALUES (?, ?, ?)", c.execute("SELECT * FROM t").fetchall())
        for q in INDEXED + OTHERS:
            if q in INDEXED:
                assert "index t_k" in " ".join(r[0] for r in c.execute(f"EXPLAIN {q}").fetchall()), q
            assert c.execute(q).fetchall() == ref.execute(q).fetchall(), q
        report = check_connection(c)
        assert report["ok"] and not report["warnings"], format_report(report)
    finally:
        c.close()


def test_work_directories_of_a_crashed_process_are_removed(tmp_path):
    path = str(tmp_path / "db")
    c = tabledb.connect(path)
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, -i) for i in range(100)])
        c.commit()
        for name in ("index-abcd1234", "ingest-x0y1z2w3"):
            os.mkdir(os.path.join(path, name))
            with open(os.path.join(path, name, "run-000001"), "wb") as f:
                f.write(b"\x00" * 100)
        assert create_index(c, "CREATE INDEX t_k ON t(k)", "implicit")
        assert leftovers(path) == []
    finally:
        c.close()


def test_a_failure_after_the_ingest_removes_the_entries(tmp_path, monkeypatch):
    from tabledb.sql.session import Session
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, i % 10) for i in range(500)])
        c.commit()
        table = c._session.current_catalog().table("t")
        lo, hi = keys.index_range(table.id, table.next_index_id)
        real = Session.write_table

        def fail(self, catalog, table):
            if table.indexes:
                raise IntegrityError("injected")
            return real(self, catalog, table)

        monkeypatch.setattr(Session, "write_table", fail)
        for how in ("implicit", "autocommit"):
            before = ingested_files(c)
            with pytest.raises(IntegrityError, match="injected"):
                create_index(c, "CREATE INDEX t_k ON t(k)", how)
            assert ingested_files(c) > before
            assert list(c._session.engine.scan(lo, hi)) == []
            c.rollback()
        monkeypatch.undo()
        report = check_connection(c)
        assert report["ok"], format_report(report)
    finally:
        c.close()


# -- 4. memory -------------------------------------------------------------------------------

def test_no_run_holds_more_than_the_budget(tmp_path, monkeypatch, sorters):
    budget = 8 << 10
    monkeypatch.setattr(bulk, "RUN_BYTES", budget)
    c = tabledb.connect(str(tmp_path / "db"))
    try:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"key-{(i * 7919) % 3000:05d}") for i in range(3000)])
        c.commit()
        assert create_index(c, "CREATE INDEX t_k ON t(k)", "implicit")
        (sorter,) = sorters
        assert sorter.budget == budget
        assert sorter.count == 3000
        assert sorter.spilled >= 3000 * bulk.ENTRY_OVERHEAD // budget
        assert 0 < sorter.peak_bytes <= budget
        assert sorter.peak_entries <= budget // bulk.ENTRY_OVERHEAD
        assert c.execute("SELECT id FROM t WHERE k = 'key-00007'").fetchall() == \
            [(i,) for i in range(3000) if (i * 7919) % 3000 == 7]
    finally:
        c.close()


def test_run_budget_follows_the_memtable(tmp_path):
    c = tabledb.connect(str(tmp_path / "db"), memtable_bytes=8 << 20)
    try:
        assert bulk.run_budget(c._session.engine) == 4 << 20
    finally:
        c.close()
    c = tabledb.connect(str(tmp_path / "db2"), memtable_bytes=1 << 30)
    try:
        assert bulk.run_budget(c._session.engine) == bulk.RUN_BYTES
    finally:
        c.close()
