"""Sessions and connections (tabledb/sql/session.py, database.py, dbapi.py).

1. One connection: BEGIN/COMMIT/ROLLBACK, nested savepoints, reads of own
   writes, rolled-back DDL, and statement atomicity: a failing statement undoes
   all of its own rows and nothing of the statements before it.
2. Two or more connections on one path: snapshots, invisibility of uncommitted
   writes, the writer lock and its busy timeout, readers that never wait, the
   stale-snapshot rule, and concurrent transfers that keep an invariant.
3. Durability: the schema and rows after reopen and after SIGKILL.
4. The statement cache, ':memory:' privacy, executemany (rowcount and
   lastrowid compared with sqlite3).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import tabledb
from tabledb import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def connect(path):
    """``connect(**kw)`` opens a connection on the test's path (or ``p``); all are closed at the end."""
    opened = []

    def factory(p=None, **kw):
        c = tabledb.connect(path if p is None else p, **kw)
        opened.append(c)
        return c

    yield factory
    for c in reversed(opened):
        try:
            c.close()
        except ProgrammingError:
            pass


def rows(conn, sql, params=()):
    return conn.execute(sql, params).fetchall()


def dump(conn) -> dict:
    """Everything a connection sees: every table's rows (sorted) and the index list."""
    out = {}
    for (name,) in rows(conn, "SHOW TABLES"):
        out[name] = sorted(rows(conn, f'SELECT * FROM "{name}"'), key=repr)
    out["#indexes"] = rows(conn, "SHOW INDEXES")
    return out


def make_accounts(conn, n=3):
    conn.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT UNIQUE, bal INTEGER NOT NULL)")
    conn.executemany("INSERT INTO acct VALUES (?, ?, ?)", [(i, f"o{i}", 100) for i in range(1, n + 1)])
    if not conn.autocommit:
        conn.commit()


# -- 1. one connection --------------------------------------------------------------

def test_begin_commit_rollback_and_reads_of_own_writes(connect):
    a = connect(autocommit=True)
    other = connect(autocommit=True)
    make_accounts(a)
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (4, 'o4', 5)")
    a.execute("UPDATE acct SET bal = bal - 50 WHERE id = 1")
    assert rows(a, "SELECT id, bal FROM acct ORDER BY id") == [(1, 50), (2, 100), (3, 100), (4, 5)]
    assert rows(a, "SELECT bal FROM acct WHERE id = 4") == [(5,)]           # point get of an own write
    assert rows(a, "SELECT id FROM acct WHERE owner = 'o4'") == [(4,)]       # unique index of an own write
    assert rows(other, "SELECT id, bal FROM acct ORDER BY id") == [(1, 100), (2, 100), (3, 100)]
    a.execute("COMMIT")
    assert not a.in_transaction
    assert rows(other, "SELECT id, bal FROM acct ORDER BY id") == [(1, 50), (2, 100), (3, 100), (4, 5)]

    a.execute("BEGIN")
    a.execute("DELETE FROM acct WHERE id >= 2")
    a.execute("INSERT INTO acct VALUES (9, 'o9', 9)")
    assert rows(a, "SELECT id FROM acct ORDER BY id") == [(1,), (9,)]
    a.execute("ROLLBACK")
    assert rows(a, "SELECT id, bal FROM acct ORDER BY id") == [(1, 50), (2, 100), (3, 100), (4, 5)]
    assert rows(a, "SELECT id FROM acct WHERE owner = 'o9'") == []
    with pytest.raises(OperationalError):
        a.execute("COMMIT")
    with pytest.raises(OperationalError):
        a.execute("ROLLBACK")


def test_in_transaction_is_true_right_after_begin(connect):
    a = connect(autocommit=True)
    make_accounts(a)
    assert not a.in_transaction
    a.execute("BEGIN")
    assert a.in_transaction                 # as sqlite3, before any statement
    a.execute("COMMIT")
    assert not a.in_transaction
    a.execute("SAVEPOINT s")
    assert a.in_transaction
    a.execute("RELEASE s")
    assert not a.in_transaction


def test_begin_inside_begin_is_an_error(connect):
    a = connect(autocommit=True)
    make_accounts(a)
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (4, 'o4', 5)")
    with pytest.raises(OperationalError):
        a.execute("BEGIN")
    assert a.in_transaction
    a.execute("COMMIT")
    assert rows(a, "SELECT count(*) FROM acct") == [(4,)]


def test_default_mode_dml_and_ddl_open_a_transaction_that_commit_ends(connect):
    a = connect()                       # autocommit=False, like sqlite3's default
    other = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    assert a.in_transaction
    with pytest.raises(DatabaseError):
        other.execute("SELECT * FROM t")
    a.commit()
    assert not a.in_transaction
    a.execute("INSERT INTO t VALUES (1, 'a')")
    assert a.in_transaction
    assert rows(other, "SELECT * FROM t") == []
    a.commit()
    assert rows(other, "SELECT * FROM t") == [(1, "a")]
    a.execute("INSERT INTO t VALUES (2, 'b')")
    a.rollback()
    assert rows(a, "SELECT * FROM t") == [(1, "a")]
    assert not a.in_transaction
    with a:                             # the context manager commits
        a.execute("INSERT INTO t VALUES (3, 'c')")
    with pytest.raises(ZeroDivisionError):
        with a:                         # ... or rolls back on an exception
            a.execute("INSERT INTO t VALUES (4, 'd')")
            raise ZeroDivisionError
    assert rows(other, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]


def test_nested_savepoints(connect):
    a = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    ids = lambda: [r[0] for r in rows(a, "SELECT id FROM t ORDER BY id")]  # noqa: E731
    a.execute("BEGIN")
    a.execute("INSERT INTO t VALUES (1)")
    a.execute("SAVEPOINT sa")
    a.execute("INSERT INTO t VALUES (2)")
    a.execute("SAVEPOINT sb")
    a.execute("INSERT INTO t VALUES (3)")
    a.execute("SAVEPOINT sc")
    a.execute("INSERT INTO t VALUES (4)")
    a.execute("RELEASE sc")
    assert ids() == [1, 2, 3, 4]
    a.execute("ROLLBACK TO sb")
    assert ids() == [1, 2]
    a.execute("INSERT INTO t VALUES (5)")       # sb still exists after ROLLBACK TO
    a.execute("ROLLBACK TO SAVEPOINT sb")
    assert ids() == [1, 2]
    a.execute("INSERT INTO t VALUES (6)")
    a.execute("RELEASE SAVEPOINT sb")
    with pytest.raises(OperationalError):
        a.execute("ROLLBACK TO sb")             # released
    assert ids() == [1, 2, 6]
    a.execute("ROLLBACK TO sa")
    assert ids() == [1]
    a.execute("INSERT INTO t VALUES (7)")
    a.execute("RELEASE sa")
    a.execute("COMMIT")
    assert ids() == [1, 7]
    # a savepoint outside a transaction starts one; releasing the outermost commits it
    a.execute("SAVEPOINT outer_sp")
    a.execute("INSERT INTO t VALUES (8)")
    a.execute("SAVEPOINT inner_sp")
    a.execute("INSERT INTO t VALUES (9)")
    a.execute("ROLLBACK TO inner_sp")
    a.execute("RELEASE outer_sp")
    assert not a.in_transaction
    a.close()
    b = connect(autocommit=True)
    assert [r[0] for r in rows(b, "SELECT id FROM t ORDER BY id")] == [1, 7, 8]


def test_rollback_to_savepoint_undoes_ddl(connect):
    a = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
    a.execute("INSERT INTO t VALUES (1, 10), (2, 20)")
    a.execute("BEGIN")
    a.execute("SAVEPOINT s")
    a.execute("CREATE TABLE n(x INTEGER)")
    a.execute("CREATE INDEX tv ON t(v)")
    a.execute("ALTER TABLE t ADD COLUMN w TEXT DEFAULT 'w'")
    a.execute("DROP TABLE n")
    a.execute("CREATE TABLE n(y INTEGER)")
    assert rows(a, "SELECT * FROM t ORDER BY id") == [(1, 10, "w"), (2, 20, "w")]
    a.execute("ROLLBACK TO s")
    assert rows(a, "SHOW TABLES") == [("t",)]
    assert rows(a, "SELECT * FROM t ORDER BY id") == [(1, 10), (2, 20)]
    assert [r[1] for r in rows(a, "SHOW INDEXES")] == ["PRIMARY"]
    a.execute("COMMIT")
    a.close()
    b = connect(autocommit=True)
    assert rows(b, "SHOW TABLES") == [("t",)]
    assert rows(b, "SELECT * FROM t ORDER BY id") == [(1, 10), (2, 20)]


def test_rollback_undoes_create_and_drop_table(connect):
    a = connect(autocommit=True)
    a.execute("CREATE TABLE keep(id INTEGER PRIMARY KEY, v TEXT)")
    a.execute("CREATE INDEX keep_v ON keep(v)")
    a.execute("INSERT INTO keep VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    before = dump(a)

    a.execute("BEGIN")
    a.execute("CREATE TABLE gone(id INTEGER PRIMARY KEY, x TEXT)")
    a.execute("INSERT INTO gone VALUES (1, 'x')")
    a.execute("CREATE VIEW gone_v AS SELECT * FROM gone")
    assert rows(a, "SELECT * FROM gone_v") == [(1, "x")]
    a.execute("ROLLBACK")
    assert dump(a) == before
    with pytest.raises(DatabaseError):
        a.execute("SELECT * FROM gone")
    with pytest.raises(DatabaseError):
        a.execute("SELECT * FROM gone_v")
    a.execute("CREATE TABLE gone(other INTEGER)")     # the name is free again
    assert rows(a, "SELECT * FROM gone") == []
    a.execute("DROP TABLE gone")

    a.execute("BEGIN")
    a.execute("DROP TABLE keep")
    with pytest.raises(DatabaseError):
        a.execute("SELECT * FROM keep")
    a.execute("ROLLBACK")
    assert dump(a) == before
    assert rows(a, "SELECT id FROM keep WHERE v = 'b'") == [(2,)]
    assert "keep_v" in rows(a, "EXPLAIN SELECT id FROM keep WHERE v = 'b'")[-1][0]

    a.execute("BEGIN")
    a.execute("DROP TABLE keep")
    a.execute("CREATE TABLE keep(id INTEGER PRIMARY KEY, v TEXT)")   # same name, fresh and empty
    assert rows(a, "SELECT * FROM keep") == []
    a.execute("ROLLBACK")
    assert dump(a) == before
    a.close()
    assert dump(connect(autocommit=True)) == before


def _seed_unique(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n INTEGER CHECK (n >= 0))")
    conn.execute("CREATE INDEX t_n ON t(n)")
    conn.execute("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    if not conn.autocommit:
        conn.commit()


def test_failed_statement_inside_a_transaction_undoes_only_itself(connect):
    a = connect(autocommit=True)
    _seed_unique(a)
    a.execute("BEGIN")
    a.execute("INSERT INTO t VALUES (10, 'p', 0)")
    with pytest.raises(IntegrityError):     # the third row repeats u = 'a'
        a.execute("INSERT INTO t VALUES (11, 'q', 0), (12, 'r', 0), (13, 'a', 0)")
    assert a.in_transaction
    with pytest.raises(DataError):          # id 3 gets a text n, after ids 1 and 2 were updated
        a.execute("UPDATE t SET n = CASE WHEN id = 3 THEN 'abc' ELSE n + 100 END")
    with pytest.raises(IntegrityError):     # CHECK fails on the last row in key order (id 10)
        a.execute("UPDATE t SET n = n - 1 WHERE id <= 10")
    with pytest.raises(IntegrityError):     # INSERT ... SELECT that collides on its second row
        a.execute("INSERT INTO t SELECT id + 20, CASE WHEN id = 2 THEN 'p' ELSE u || 'x' END, n FROM t")
    a.execute("UPDATE t SET n = n + 1 WHERE id = 1")
    expected = [(1, "a", 2), (2, "b", 2), (3, "c", 3), (10, "p", 0)]
    assert rows(a, "SELECT * FROM t ORDER BY id") == expected
    for u in ("q", "r", "ax", "bx"):
        assert rows(a, "SELECT id FROM t WHERE u = ?", (u,)) == []
    assert rows(a, "SELECT id FROM t WHERE n = 0") == [(10,)]
    assert rows(a, "SELECT id FROM t WHERE n >= 100") == []
    a.execute("COMMIT")
    a.close()
    b = connect(autocommit=True)
    assert rows(b, "SELECT * FROM t ORDER BY id") == expected
    assert rows(b, "SELECT id FROM t WHERE n = 2 ORDER BY id") == [(1,), (2,)]
    assert rows(b, "SELECT id FROM t WHERE u = 'q'") == []


@pytest.mark.parametrize("autocommit", [True, False])
def test_failed_statement_outside_a_transaction_leaves_the_database_as_before(connect, autocommit):
    a = connect(autocommit=autocommit)
    _seed_unique(a)
    before = dump(a)
    failing = [
        ("INSERT INTO t VALUES (11, 'q', 0), (12, 'r', 0), (13, 'a', 0)", IntegrityError),
        ("INSERT INTO t VALUES (11, 'q', 0), (12, 'r', 0), (1, 'z', 0)", IntegrityError),
        ("UPDATE t SET n = CASE WHEN id = 3 THEN 'abc' ELSE n + 100 END", DataError),
        ("UPDATE t SET u = 'c' WHERE id = 2", IntegrityError),
        ("UPDATE t SET id = id + 1", IntegrityError),
        ("UPDATE t SET n = 2 - n", IntegrityError),
        ("INSERT INTO t (id, u, n) SELECT id + 10, u, n FROM t", IntegrityError),
        ("INSERT INTO t(id, u, n) VALUES (5, 'e', 5), (6, 'f', NULL), (7, 'g', -1)", IntegrityError),
    ]
    for sql, error in failing:
        with pytest.raises(error):
            a.execute(sql)
        a.rollback()
        assert dump(a) == before, sql
    other = connect(autocommit=True, busy_timeout=0.2)
    other.execute("INSERT INTO t VALUES (4, 'd', 4)")   # the writer lock is free
    assert rows(a, "SELECT id FROM t WHERE u = 'd'") == [(4,)]


# -- 2. several connections -----------------------------------------------------------

def test_uncommitted_writes_are_invisible_to_other_connections(connect):
    a = connect()
    b = connect()
    make_accounts(a)
    a.execute("UPDATE acct SET bal = 0 WHERE id = 1")
    a.execute("INSERT INTO acct VALUES (4, 'o4', 1)")
    a.execute("CREATE TABLE side(x INTEGER)")
    assert rows(b, "SELECT id, bal FROM acct ORDER BY id") == [(1, 100), (2, 100), (3, 100)]
    assert rows(b, "SELECT bal FROM acct WHERE id = 1") == [(100,)]
    assert rows(b, "SELECT id FROM acct WHERE owner = 'o4'") == []
    assert rows(b, "SHOW TABLES") == [("acct",)]
    a.commit()
    assert rows(b, "SELECT id, bal FROM acct ORDER BY id") == [(1, 0), (2, 100), (3, 100), (4, 1)]
    assert rows(b, "SHOW TABLES") == [("acct",), ("side",)]


def test_an_open_cursor_reads_one_snapshot_while_a_writer_commits(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
    a.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(200)])
    a.execute("CREATE TABLE u(id INTEGER PRIMARY KEY, v INTEGER)")
    a.executemany("INSERT INTO u VALUES (?, ?)", [(i, -i) for i in range(200)])
    single = b.execute("SELECT id, v FROM t")
    joined = b.execute("SELECT t.id, t.v + u.v FROM t JOIN u ON t.v = u.id")
    first = single.fetchmany(10)
    first_joined = joined.fetchmany(10)
    a.execute("BEGIN")
    a.execute("DELETE FROM t WHERE id >= 5")
    a.execute("UPDATE u SET v = 1000")
    a.executemany("INSERT INTO t VALUES (?, ?)", [(i, 7) for i in range(1000, 1100)])
    a.execute("COMMIT")
    assert first + single.fetchall() == [(i, i) for i in range(200)]
    assert first_joined + joined.fetchall() == [(i, 0) for i in range(200)]
    assert rows(b, "SELECT count(*), sum(v) FROM t") == [(105, 10 + 700)]


def test_explicit_transaction_reads_one_snapshot(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    make_accounts(a)
    b.execute("BEGIN")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(300,)]
    a.execute("INSERT INTO acct VALUES (4, 'o4', 1)")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(300,)]


def test_savepoint_transaction_reads_one_snapshot(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    make_accounts(a)
    b.execute("SAVEPOINT s")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(300,)]
    a.execute("INSERT INTO acct VALUES (4, 'o4', 1)")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(300,)]
    assert rows(b, "SELECT bal FROM acct WHERE id = 4") == []
    b.execute("RELEASE s")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(301,)]


@pytest.mark.timeout(30)
def test_second_writer_times_out_then_writes_after_commit_same_thread(connect):
    a = connect(busy_timeout=0.2)
    b = connect(busy_timeout=0.2)
    make_accounts(a)
    a.execute("UPDATE acct SET bal = 1 WHERE id = 1")       # a holds the writer lock
    with pytest.raises(OperationalError):
        b.execute("UPDATE acct SET bal = 2 WHERE id = 2")
    with pytest.raises(OperationalError):
        b.execute("CREATE TABLE x(y INTEGER)")
    b.rollback()
    assert rows(b, "SELECT bal FROM acct ORDER BY id") == [(100,), (100,), (100,)]
    a.commit()
    b.execute("UPDATE acct SET bal = 2 WHERE id = 2")
    b.commit()
    assert rows(a, "SELECT bal FROM acct ORDER BY id") == [(1,), (2,), (100,)]
    # BEGIN IMMEDIATE takes the lock before any write
    a.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError):
        b.execute("UPDATE acct SET bal = 3 WHERE id = 3")
    b.rollback()
    a.rollback()
    b.execute("UPDATE acct SET bal = 3 WHERE id = 3")
    b.commit()
    assert rows(a, "SELECT bal FROM acct ORDER BY id") == [(1,), (2,), (3,)]


@pytest.mark.timeout(30)
def test_second_writer_in_a_thread_waits_for_the_first_commit(connect):
    a = connect(autocommit=True)
    make_accounts(a)
    b = connect(autocommit=True, busy_timeout=0.2)
    c = connect(autocommit=True, busy_timeout=20)
    a.execute("BEGIN")
    a.execute("UPDATE acct SET bal = bal - 10 WHERE id = 1")
    outcome = {}

    def write(conn, key):
        try:
            conn.execute("UPDATE acct SET bal = bal + 10 WHERE id = 2")
            outcome[key] = "ok"
        except OperationalError as exc:
            outcome[key] = exc

    tb = threading.Thread(target=write, args=(b, "b"))
    tb.start()
    tb.join(10)
    assert isinstance(outcome["b"], OperationalError)
    tc = threading.Thread(target=write, args=(c, "c"))
    tc.start()
    tc.join(0.3)
    assert tc.is_alive() and "c" not in outcome        # c is waiting for the lock
    a.execute("COMMIT")
    tc.join(20)
    assert outcome["c"] == "ok"
    assert rows(a, "SELECT bal FROM acct ORDER BY id") == [(90,), (110,), (100,)]


@pytest.mark.timeout(30)
def test_readers_never_wait_for_the_writer(connect):
    a = connect(autocommit=True)
    make_accounts(a)
    a.execute("CREATE INDEX acct_bal ON acct(bal)")
    a.execute("BEGIN IMMEDIATE")
    a.execute("UPDATE acct SET bal = 0")
    b = connect(autocommit=True, busy_timeout=0)
    seen = {}

    def read():
        seen["scan"] = rows(b, "SELECT sum(bal) FROM acct")
        seen["index"] = rows(b, "SELECT count(*) FROM acct WHERE bal = 100")
        b.execute("SAVEPOINT r")
        seen["txn"] = rows(b, "SELECT id FROM acct JOIN acct AS x USING (id) ORDER BY id")
        b.execute("RELEASE r")

    t = threading.Thread(target=read)
    t.start()
    t.join(20)
    assert not t.is_alive()
    assert seen == {"scan": [(300,)], "index": [(3,)], "txn": [(1,), (2,), (3,)]}
    a.execute("COMMIT")
    assert rows(b, "SELECT sum(bal) FROM acct") == [(0,)]


def test_stale_snapshot_after_begin_and_select_fails_the_write(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    make_accounts(a)
    b.execute("BEGIN")
    assert rows(b, "SELECT bal FROM acct WHERE id = 1") == [(100,)]
    a.execute("UPDATE acct SET bal = 50 WHERE id = 1")
    with pytest.raises(OperationalError):
        b.execute("INSERT INTO acct VALUES (4, 'o4', 1)")


def test_stale_snapshot_after_savepoint_and_select_fails_the_write_then_retry_works(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    make_accounts(a)
    b.execute("SAVEPOINT s")
    assert rows(b, "SELECT bal FROM acct WHERE id = 1") == [(100,)]
    a.execute("UPDATE acct SET bal = 50 WHERE id = 1")
    with pytest.raises(OperationalError):
        b.execute("UPDATE acct SET bal = 100 + 1 WHERE id = 1")
    b.execute("ROLLBACK")
    b.execute("SAVEPOINT s")
    (bal,), = rows(b, "SELECT bal FROM acct WHERE id = 1")
    b.execute("UPDATE acct SET bal = ? WHERE id = 1", (bal + 1,))
    b.execute("RELEASE s")
    assert rows(a, "SELECT bal FROM acct WHERE id = 1") == [(51,)]
    # a transaction that wrote first holds the lock, so nobody can commit under it
    b.execute("BEGIN")
    b.execute("UPDATE acct SET bal = bal + 1 WHERE id = 2")
    assert rows(b, "SELECT bal FROM acct WHERE id = 2") == [(101,)]
    b.execute("UPDATE acct SET bal = bal + 1 WHERE id = 3")
    b.execute("COMMIT")
    assert rows(a, "SELECT bal FROM acct ORDER BY id") == [(51,), (101,), (101,)]


@pytest.mark.timeout(120)
def test_concurrent_transfers_keep_the_invariant(connect):
    accounts, threads, per_thread, start = 8, 4, 200, 1000
    setup = connect(autocommit=True, sync=False)
    setup.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
    setup.executemany("INSERT INTO acct VALUES (?, ?)", [(i, start) for i in range(accounts)])
    setup.execute("CREATE TABLE log(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amt INTEGER)")
    setup.execute("CREATE INDEX log_src ON log(src)")
    errors: list = []
    committed: list[tuple] = []
    stop = threading.Event()

    def transfer(conn, tx_id, src, dst, amt, mode):
        """Read-modify-write under BEGIN IMMEDIATE or SAVEPOINT (whose snapshot makes a stale
        write fail), or relative updates under a plain BEGIN."""
        if mode in ("BEGIN IMMEDIATE", "SAVEPOINT s"):
            conn.execute(mode)
            (s,), = rows(conn, "SELECT bal FROM acct WHERE id = ?", (src,))
            (d,), = rows(conn, "SELECT bal FROM acct WHERE id = ?", (dst,))
            time.sleep(0)           # let other threads commit between the reads and the writes
            conn.execute("UPDATE acct SET bal = ? WHERE id = ?", (s - amt, src))
            conn.execute("UPDATE acct SET bal = ? WHERE id = ?", (d + amt, dst))
        else:
            conn.execute("BEGIN")
            conn.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (amt, src))
            conn.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (amt, dst))
        conn.execute("INSERT INTO log VALUES (?, ?, ?, ?)", (tx_id, src, dst, amt))
        conn.execute("RELEASE s" if mode == "SAVEPOINT s" else "COMMIT")

    def writer(t):
        conn = connect(autocommit=True, busy_timeout=0.05, sync=False)
        rnd = random.Random(t)
        try:
            for i in range(per_thread):
                src, dst = rnd.sample(range(accounts), 2)
                amt = rnd.randint(1, 50)
                tx_id = t * 10_000 + i
                while True:
                    try:
                        transfer(conn, tx_id, src, dst, amt, ("BEGIN IMMEDIATE", "SAVEPOINT s", "BEGIN")[i % 3])
                        break
                    except OperationalError:
                        conn.rollback()
                committed.append((tx_id, src, dst, amt))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader(t):
        conn = connect(autocommit=True, sync=False)
        check = ("SELECT a.id, a.bal - ? - coalesce((SELECT sum(amt) FROM log WHERE dst = a.id), 0)"
                 " + coalesce((SELECT sum(amt) FROM log WHERE src = a.id), 0) FROM acct AS a")
        try:
            while not stop.is_set():
                assert rows(conn, "SELECT sum(bal) FROM acct") == [(accounts * start,)]
                assert rows(conn, check, (start,)) == [(i, 0) for i in range(accounts)]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    readers = [threading.Thread(target=reader, args=(t,)) for t in range(2)]
    for th in writers + readers:
        th.start()
    for th in writers:
        th.join(100)
    stop.set()
    for th in readers:
        th.join(20)
    assert errors == []
    assert len(committed) == threads * per_thread
    assert sorted(rows(setup, "SELECT * FROM log")) == sorted(committed)
    expected = {i: start for i in range(accounts)}
    for _tx, src, dst, amt in committed:
        expected[src] -= amt
        expected[dst] += amt
    assert dict(rows(setup, "SELECT id, bal FROM acct")) == expected


# -- 3. durability ---------------------------------------------------------------------

def test_schema_and_rows_survive_reopen(connect, path):
    a = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'anon', "
              "score REAL DEFAULT 1.5, n INTEGER CHECK (n BETWEEN 0 AND 10), tag TEXT UNIQUE)")
    a.execute("CREATE INDEX t_n ON t(n DESC, name)")
    a.execute("CREATE TABLE pair(a INTEGER, b TEXT, c BLOB, PRIMARY KEY (a, b))")
    a.execute("CREATE VIEW high AS SELECT id, name FROM t WHERE n > 5")
    a.execute("INSERT INTO t(id, n, tag) VALUES (1, 3, 'x'), (2, 8, 'y')")
    a.execute("INSERT INTO t VALUES (3, 'c', 2.0, 9, NULL)")
    a.executemany("INSERT INTO pair VALUES (?, ?, ?)", [(1, "a", b"\x00"), (1, "b", None), (0, "z", b"")])
    before = dump(a)
    describe = rows(a, "DESCRIBE t")
    assert describe == [("id", "INTEGER", "NO", "PRI", None, None),
                        ("name", "TEXT", "NO", None, "'anon'", None),
                        ("score", "REAL", "YES", None, "1.5", None),
                        ("n", "INTEGER", "YES", None, None, None),
                        ("tag", "TEXT", "YES", "UNI", None, None)]
    a.close()

    b = connect(autocommit=True)
    assert rows(b, "SHOW TABLES") == [("pair",), ("t",)]
    assert rows(b, "DESCRIBE t") == describe
    assert rows(b, "DESCRIBE pair") == [("a", "INTEGER", "NO", "PRI", None, None),
                                        ("b", "TEXT", "NO", "PRI", None, None),
                                        ("c", "BLOB", "YES", None, None, None)]
    assert dump(b) == before
    assert before["t"] == [(1, "anon", 1.5, 3, "x"), (2, "anon", 1.5, 8, "y"), (3, "c", 2.0, 9, None)]
    assert rows(b, "SELECT * FROM high ORDER BY id") == [(2, "anon"), (3, "c")]
    assert "index t_n" in rows(b, "EXPLAIN SELECT id FROM t WHERE n = 8")[-1][0]
    assert rows(b, "SELECT id FROM t WHERE n = 8") == [(2,)]
    with pytest.raises(IntegrityError):
        b.execute("INSERT INTO t(id, n) VALUES (4, 11)")               # CHECK
    with pytest.raises(IntegrityError):
        b.execute("INSERT INTO t(id, n, tag) VALUES (4, 1, 'x')")      # UNIQUE
    with pytest.raises(IntegrityError):
        b.execute("INSERT INTO t(id, name) VALUES (4, NULL)")          # NOT NULL
    b.execute("INSERT INTO t(n) VALUES (0)")                           # next rowid and defaults
    assert rows(b, "SELECT * FROM t WHERE id = 4") == [(4, "anon", 1.5, 0, None)]
    assert rows(b, "SELECT a, b FROM pair WHERE a = 1 ORDER BY b DESC") == [(1, "b"), (1, "a")]


_KILLED_CHILD = r"""
import sys, time
import tabledb
conn = tabledb.connect(sys.argv[1], autocommit=True)
conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
conn.execute("CREATE INDEX t_v ON t(v)")
print("ready", flush=True)
n = 0
while True:
    n += 1
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (?, ?)", (2 * n, "v%d" % n))
    conn.execute("INSERT INTO t VALUES (?, ?)", (2 * n + 1, "v%d" % n))
    conn.execute("COMMIT")
    print(n, flush=True)
    if n == int(sys.argv[2]):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1, 'uncommitted')")
        conn.execute("DELETE FROM t WHERE id < 10")
        print("holding", flush=True)
        time.sleep(60)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hold_at", [25, 0])
def test_sigkill_keeps_every_committed_transaction(connect, path, hold_at):
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, path, str(hold_at)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        acked = 0
        while True:
            line = child.stdout.readline().strip()
            if line == "holding" or (not hold_at and acked >= 40):
                break
            acked = int(line)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    conn = connect(autocommit=True)
    got = rows(conn, "SELECT id, v FROM t ORDER BY id")
    n = len(got) // 2
    assert n >= acked
    if hold_at:
        assert n == hold_at
    assert got == [(i, f"v{i // 2}") for i in range(2, 2 * n + 2)]       # whole commits, no holes
    assert rows(conn, "SELECT id FROM t WHERE v = 'v2'") == [(4,), (5,)]
    assert rows(conn, "SELECT count(*) FROM t WHERE v >= 'v'") == [(2 * n,)]


# -- 4. statement cache, :memory:, executemany ---------------------------------------------

def test_statement_cache_reuses_the_prepared_statement(connect):
    a = connect(autocommit=True)
    make_accounts(a)
    sql = "SELECT owner FROM acct WHERE id = ?"
    assert rows(a, sql, (1,)) == [("o1",)]
    prepared = a._session.cache[sql]
    assert rows(a, sql, (2,)) == [("o2",)]
    assert a._session.cache[sql] is prepared
    ins = "INSERT INTO acct VALUES (?, ?, 0)"
    a.execute(ins, (4, "o4"))
    prepared_ins = a._session.cache[ins]
    a.executemany(ins, [(5, "o5"), (6, "o6")])
    assert a._session.cache[ins] is prepared_ins
    # two cursors iterating the same SQL at once do not share one running statement
    c1 = a.execute("SELECT id FROM acct ORDER BY id")
    c2 = a.execute("SELECT id FROM acct ORDER BY id")
    assert c1.fetchone() == (1,)
    assert c2.fetchall() == [(i,) for i in range(1, 7)]
    assert c1.fetchall() == [(i,) for i in range(2, 7)]


def test_statement_cache_replans_after_ddl(connect):
    a = connect(autocommit=True)
    b = connect(autocommit=True)
    make_accounts(a)
    star = "SELECT * FROM acct ORDER BY id"
    by_bal = "SELECT id FROM acct WHERE bal = ?"
    assert rows(a, star)[0] == (1, "o1", 100)
    assert rows(a, by_bal, (100,)) == [(1,), (2,), (3,)]
    assert "full scan" in "\n".join(a._session.cache[by_bal].plan.root.explain())

    a.execute("ALTER TABLE acct ADD COLUMN note TEXT DEFAULT 'n'")
    assert rows(a, star)[0] == (1, "o1", 100, "n")
    a.execute("CREATE INDEX acct_bal ON acct(bal)")
    assert rows(a, by_bal, (100,)) == [(1,), (2,), (3,)]
    assert "index acct_bal" in "\n".join(a._session.cache[by_bal].plan.root.explain())

    b.execute("ALTER TABLE acct ADD COLUMN extra INTEGER DEFAULT 7")    # another connection's DDL
    assert rows(a, star)[0] == (1, "o1", 100, "n", 7)
    b.execute("DROP INDEX acct_bal")
    assert rows(a, by_bal, (100,)) == [(1,), (2,), (3,)]
    assert "full scan" in "\n".join(a._session.cache[by_bal].plan.root.explain())
    b.execute("DROP TABLE acct")
    b.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)")
    b.execute("INSERT INTO acct VALUES (9, 100)")
    assert rows(a, star) == [(9, 100)]
    assert rows(a, by_bal, (100,)) == [(9,)]
    # DDL inside a transaction: the cached statement follows the transaction's catalog
    a.execute("BEGIN")
    a.execute("ALTER TABLE acct ADD COLUMN z INTEGER")
    assert rows(a, star) == [(9, 100, None)]
    a.execute("ROLLBACK")
    assert rows(a, star) == [(9, 100)]


def test_memory_databases_are_private_per_connection(connect):
    a = connect(":memory:", autocommit=True)
    b = connect(":memory:", autocommit=True)
    a.execute("CREATE TABLE t(x INTEGER)")
    a.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(DatabaseError):
        b.execute("SELECT * FROM t")
    b.execute("CREATE TABLE t(y TEXT)")
    b.execute("INSERT INTO t VALUES ('b')")
    assert rows(a, "SELECT * FROM t") == [(1,)]
    assert rows(b, "SELECT * FROM t") == [("b",)]
    a.close()
    c = connect(":memory:", autocommit=True)
    assert rows(c, "SHOW TABLES") == []
    assert rows(b, "SELECT * FROM t") == [("b",)]


def test_failed_executemany_in_autocommit_leaves_none_of_its_rows(connect):
    a = connect(autocommit=True)
    _seed_unique(a)
    before = dump(a)
    params = [(10 + i, f"u{i}", i) for i in range(50)] + [(99, "b", 1)] + [(100, "late", 1)]
    with pytest.raises(IntegrityError):                  # row 51 repeats u = 'b'
        a.executemany("INSERT INTO t VALUES (?, ?, ?)", params)
    assert dump(a) == before
    with pytest.raises(DataError):
        a.executemany("UPDATE t SET n = ? WHERE id = ?", [(5, 1), ("five", 2)])
    assert dump(a) == before
    a.close()
    assert dump(connect(autocommit=True)) == before


def test_failed_executemany_in_autocommit_releases_the_writer_lock(connect):
    a = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    with pytest.raises(IntegrityError):
        a.executemany("INSERT INTO t VALUES (?)", [(1,), (1,)])
    b = connect(autocommit=True, busy_timeout=0.2)
    b.execute("INSERT INTO t VALUES (2)")
    assert not a.in_transaction


def test_executemany_in_default_mode_is_part_of_the_open_transaction(connect):
    seed = connect(autocommit=True)
    _seed_unique(seed)
    before = dump(seed)
    d = connect(busy_timeout=0.2)
    params = [(10 + i, f"u{i}", i) for i in range(50)]
    d.executemany("INSERT INTO t VALUES (?, ?, ?)", params)
    assert d.in_transaction
    assert rows(seed, "SELECT count(*) FROM t") == [(3,)]
    d.rollback()
    assert dump(seed) == before
    d.executemany("INSERT INTO t VALUES (?, ?, ?)", params)
    d.commit()
    assert rows(seed, "SELECT count(*) FROM t") == [(53,)]
    d.execute("DELETE FROM t WHERE id >= 10")
    with pytest.raises(IntegrityError):                  # a failure inside the open transaction
        d.executemany("INSERT INTO t VALUES (?, ?, ?)", [(200, "x", 1), (201, "a", 1)])
    assert d.in_transaction
    assert rows(d, "SELECT count(*) FROM t") == [(3,)]  # the DELETE stays, the batch is gone
    assert rows(seed, "SELECT count(*) FROM t") == [(53,)]
    d.commit()
    assert dump(seed) == before


def _rowcounts(conn, script):
    """(rowcount, lastrowid) after each step of ``script`` on one cursor."""
    cur = conn.cursor()
    out = []
    for kind, sql, params in script:
        try:
            if kind == "many":
                cur.executemany(sql, params)
            else:
                cur.execute(sql, params)
            out.append((cur.rowcount, cur.lastrowid))
        except (sqlite3.IntegrityError, IntegrityError):
            out.append(("IntegrityError", cur.lastrowid))
    return out


def test_rowcount_and_lastrowid_match_sqlite3(connect):
    script = [
        ("one", "INSERT INTO t VALUES (NULL, 'a')", ()),
        ("one", "INSERT INTO t(v) VALUES ('b')", ()),
        ("one", "INSERT INTO t VALUES (10, 'c'), (5, 'd')", ()),
        ("one", "INSERT INTO t(v) VALUES ('e')", ()),
        ("one", "UPDATE t SET v = v || '!' WHERE id > 3", ()),
        ("one", "DELETE FROM t WHERE id = 5", ()),
        ("one", "SELECT * FROM t", ()),
        ("one", "INSERT INTO t VALUES (1, 'dup')", ()),
        ("one", "INSERT INTO t(v) SELECT v FROM t WHERE id < 3", ()),
    ]
    many = [
        ("many", "INSERT INTO t VALUES (?, ?)", [(None, "m1"), (50, "m2"), (None, "m3")]),
        ("many", "UPDATE t SET v = ? WHERE id >= ?", [("x", 50), ("y", 1)]),
        ("many", "DELETE FROM t WHERE id = ?", [(50,), (999,)]),
        ("many", "INSERT INTO t(v) VALUES (?)", [("n1",), ("n2",)]),
    ]
    ref = sqlite3.connect(":memory:")
    ref.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    a = connect(autocommit=True)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    assert _rowcounts(a, script) == _rowcounts(ref, script)
    assert rows(a, "SELECT * FROM t ORDER BY id") == ref.execute("SELECT * FROM t ORDER BY id").fetchall()
    # rowcount after executemany is the total; lastrowid is checked separately below
    got = [rc for rc, _ in _rowcounts(a, many)]
    want = [rc for rc, _ in _rowcounts(ref, many)]
    assert got == want
    assert rows(a, "SELECT * FROM t ORDER BY id") == ref.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_executemany_leaves_lastrowid_as_sqlite3_does(connect):
    ref = sqlite3.connect(":memory:")
    a = connect(autocommit=True)
    out = []
    for conn in (ref, a):
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        cur = conn.cursor()
        cur.executemany("INSERT INTO t VALUES (?, ?)", [(None, "a"), (7, "b")])
        fresh = cur.lastrowid
        cur.execute("INSERT INTO t VALUES (20, 'c')")
        cur.executemany("INSERT INTO t(v) VALUES (?)", [("d",), ("e",)])
        out.append((fresh, cur.lastrowid))
    assert out[1] == out[0] == (None, 20)
