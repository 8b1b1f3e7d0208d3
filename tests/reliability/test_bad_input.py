"""Wrong arguments to every public Python entry point: a tabledb.Error (PEP 249), and nothing changed.

SQL text itself is fuzzed in tests/sql/test_fuzz.py; this file covers the
Python surface around it: ``tabledb.connect``, ``Connection`` and ``Cursor``
methods, ``ingest_arrow`` and the Arrow fetches, ``tabledb.check``, and the
storage ``Engine``. Each case is one bad call; it must raise an exception that
is a ``tabledb.Error`` (a TypeError, ValueError or pyarrow error escaping is a
bug), and afterwards the database reads exactly as before. Calls with the
wrong number of arguments are Python's business (TypeError) and not listed.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import tabledb
from tabledb.check import check
from tabledb.storage import Engine, WriteBatch


class Unbindable:
    """A parameter value of no supported type whose conversions raise."""

    def __index__(self):
        raise RuntimeError("not an int")

    def __float__(self):
        raise RuntimeError("not a float")


def sql_state(conn) -> dict:
    """Everything a connection sees: its tables, their indexes and rows. (Whether a transaction is open
    may change: a failed DML statement leaves the transaction it opened open, as in sqlite3.)"""
    out = {}
    for (name,) in conn.execute("SHOW TABLES").fetchall():
        out[name] = (conn.execute(f"SHOW INDEXES FROM {name}").fetchall(),
                     conn.execute(f"SELECT * FROM {name}").fetchall())
    return out


@pytest.fixture
def conn(tmp_path):
    c = tabledb.connect(str(tmp_path / "db"))
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT NOT NULL, r REAL)")
    c.execute("CREATE INDEX t_a ON t(a)")
    c.executemany("INSERT INTO t VALUES (?, ?, ?)", [(1, "x", 1.5), (2, "y", None)])
    c.commit()
    yield c
    if not c.closed:
        c.close()


# (id, function of (conn, tmp_path)) -- each must raise a tabledb.Error and change nothing
CONNECT_CASES = [
    ("path-int", lambda c, d: tabledb.connect(3)),
    ("path-bytes", lambda c, d: tabledb.connect(b"db")),
    ("path-list", lambda c, d: tabledb.connect([str(d / "x")])),
    ("path-is-a-file", lambda c, d: tabledb.connect(_a_file(d))),
    ("autocommit-str", lambda c, d: tabledb.connect(str(d / "a"), autocommit="yes")),
    ("busy-timeout-str", lambda c, d: tabledb.connect(str(d / "b"), busy_timeout="soon")),
    ("unknown-option", lambda c, d: tabledb.connect(str(d / "c"), memtable=1)),
    ("memtable-negative", lambda c, d: tabledb.connect(str(d / "e"), memtable_bytes=-1)),
    ("memtable-str", lambda c, d: tabledb.connect(str(d / "f"), memtable_bytes="big")),
    ("sync-mode-bogus", lambda c, d: tabledb.connect(str(d / "g"), sync_mode="sometimes")),
    ("compression-bogus", lambda c, d: tabledb.connect(str(d / "h"), compression="lz4")),
    ("block-size-zero", lambda c, d: tabledb.connect(str(d / "i"), block_size=0)),
    ("num-levels-one", lambda c, d: tabledb.connect(str(d / "j"), num_levels=1)),
    ("nul-in-path", lambda c, d: tabledb.connect(str(d / "k\0l"))),
]

CONNECTION_CASES = [
    ("execute-sql-none", lambda c, d: c.execute(None)),
    ("execute-sql-int", lambda c, d: c.execute(1)),
    ("execute-sql-bytes", lambda c, d: c.execute(b"SELECT 1")),
    ("execute-two-statements", lambda c, d: c.execute("INSERT INTO t VALUES (3, 'z', 0); SELECT 1")),
    ("params-int", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", 3)),
    ("params-str", lambda c, d: c.execute("INSERT INTO t VALUES (?, ?, 0)", "ab")),
    ("params-set", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", {3})),
    ("params-too-many", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", (3, 4))),
    ("params-too-few", lambda c, d: c.execute("INSERT INTO t VALUES (?, ?, ?)", (3,))),
    ("params-mapping-for-qmark", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", {"a": 3})),
    ("params-sequence-for-named", lambda c, d: c.execute("INSERT INTO t VALUES (:i, 'z', 0)", [3])),
    ("params-missing-name", lambda c, d: c.execute("INSERT INTO t VALUES (:i, 'z', 0)", {"j": 3})),
    ("value-object", lambda c, d: c.execute("INSERT INTO t VALUES (3, ?, 0)", (object(),))),
    ("value-complex", lambda c, d: c.execute("INSERT INTO t VALUES (3, 'z', ?)", (1j,))),
    ("value-list", lambda c, d: c.execute("INSERT INTO t VALUES (3, ?, 0)", (["z"],))),
    ("value-unbindable", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", (Unbindable(),))),
    ("value-int-too-big", lambda c, d: c.execute("INSERT INTO t VALUES (?, 'z', 0)", (1 << 64,))),
    ("value-nan-real", lambda c, d: c.execute("INSERT INTO t VALUES (3, 'z', ?)", (float("nan"),))),
    ("value-lone-surrogate", lambda c, d: c.execute("INSERT INTO t VALUES (3, ?, 0)", ("\ud800",))),
    ("value-null-not-null", lambda c, d: c.execute("INSERT INTO t VALUES (3, ?, 0)", (None,))),
    ("value-wrong-type", lambda c, d: c.execute("INSERT INTO t VALUES (3, 'z', ?)", ("abc",))),
    ("executemany-int", lambda c, d: c.executemany("INSERT INTO t VALUES (?, 'z', 0)", 5)),
    ("executemany-none", lambda c, d: c.executemany("INSERT INTO t VALUES (?, 'z', 0)", None)),
    ("executemany-bad-row-last", lambda c, d: c.executemany("INSERT INTO t VALUES (?, ?, 0)",
                                                            [(3, "z"), (4, "w"), (5,)])),
    ("executemany-duplicate-key", lambda c, d: c.executemany("INSERT INTO t VALUES (?, 'z', 0)",
                                                             [(3,), (4,), (3,)])),
    ("executemany-query", lambda c, d: c.executemany("SELECT ?", [(1,)])),
    ("executescript-int", lambda c, d: c.executescript(5)),
    ("executescript-syntax", lambda c, d: c.executescript("INSERT INTO t VALUES (3, 'z', 0); INSERT INTO")),
    ("autocommit-set-str", lambda c, d: setattr(c, "autocommit", "on")),
    ("row-factory-not-callable", lambda c, d: (setattr(c, "row_factory", 5), c.execute("SELECT * FROM t").fetchone())),
    ("ingest-name-int", lambda c, d: c.ingest_arrow(5, pa.table({"id": [3], "a": ["z"]}))),
    ("ingest-name-empty", lambda c, d: c.ingest_arrow("", pa.table({"id": [3], "a": ["z"]}))),
    ("ingest-data-int", lambda c, d: c.ingest_arrow("t", 5)),
    ("ingest-data-list", lambda c, d: c.ingest_arrow("t", [(3, "z")])),
    ("ingest-data-dict", lambda c, d: c.ingest_arrow("t", {"id": [3], "a": ["z"]})),
    ("ingest-mode-bogus", lambda c, d: c.ingest_arrow("t", pa.table({"id": [3], "a": ["z"]}), mode="merge")),
    ("ingest-unknown-column", lambda c, d: c.ingest_arrow("t", pa.table({"id": [3], "nope": ["z"]}))),
    ("ingest-wrong-type", lambda c, d: c.ingest_arrow("t", pa.table({"id": ["3"], "a": ["z"]}))),
    ("ingest-null-in-not-null", lambda c, d: c.ingest_arrow("t", pa.table({"id": [3], "a": pa.array([None], pa.string())}))),
    ("ingest-duplicate-key", lambda c, d: c.ingest_arrow("t", pa.table({"id": [3, 1], "a": ["z", "w"]}))),
    ("ingest-no-such-table", lambda c, d: c.ingest_arrow("nope", pa.table({"id": [3]}))),
    ("ingest-create-existing", lambda c, d: c.ingest_arrow("t", pa.table({"id": [3]}), mode="create")),
]

CURSOR_CASES = [
    ("fetchone-before-execute", lambda c, d: c.cursor().fetchone()),
    ("fetchall-after-dml", lambda c, d: c.execute("UPDATE t SET r = 2 WHERE id = 99").fetchall()),
    ("fetchmany-negative", lambda c, d: c.execute("SELECT * FROM t").fetchmany(-1)),
    ("fetchmany-str", lambda c, d: c.execute("SELECT * FROM t").fetchmany("2")),
    ("arraysize-str", lambda c, d: _with_arraysize(c, "x").fetchmany()),
    ("fetch-arrow-before-execute", lambda c, d: c.cursor().fetch_arrow_table()),
    ("record-batch-zero-rows", lambda c, d: c.execute("SELECT * FROM t").fetch_record_batch(0)),
    ("record-batch-str", lambda c, d: c.execute("SELECT * FROM t").fetch_record_batch("10")),
    ("closed-cursor-execute", lambda c, d: _closed_cursor(c).execute("SELECT 1")),
    ("closed-connection-execute", lambda c, d: _closed_connection(d).execute("SELECT 1")),
    ("closed-connection-close", lambda c, d: _closed_connection(d).close()),
    ("closed-connection-commit", lambda c, d: _closed_connection(d).commit()),
    ("closed-connection-cursor", lambda c, d: _closed_connection(d).cursor()),
]

CHECK_CASES = [
    ("check-int", lambda c, d: check(5)),
    ("check-missing", lambda c, d: check(str(d / "missing"))),
    ("check-file", lambda c, d: check(_a_file(d))),
    ("check-empty-dir", lambda c, d: check(_a_dir(d))),
]


def _a_file(d) -> str:
    path = str(d / "a-file")
    with open(path, "w") as f:
        f.write("not a database")
    return path


def _a_dir(d) -> str:
    path = str(d / "empty-dir")
    os.makedirs(path, exist_ok=True)
    return path


def _with_arraysize(conn, size):
    cur = conn.execute("SELECT * FROM t")
    cur.arraysize = size
    return cur


def _closed_cursor(conn):
    cur = conn.cursor()
    cur.close()
    return cur


def _closed_connection(d):
    c = tabledb.connect(str(d / "other"))
    c.close()
    return c


@pytest.mark.parametrize("case", [pytest.param(fn, id=name) for name, fn in
                                  CONNECT_CASES + CONNECTION_CASES + CURSOR_CASES + CHECK_CASES])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["idle", "in-transaction"])
def test_bad_call_raises_pep249_error_and_changes_nothing(conn, tmp_path, case, in_transaction):
    if in_transaction:
        conn.execute("INSERT INTO t VALUES (10, 'pending', NULL)")
    before = sql_state(conn)
    with pytest.raises(tabledb.Error):
        case(conn, tmp_path)
    conn.row_factory = None
    assert sql_state(conn) == before
    conn.commit()
    again = tabledb.connect(str(tmp_path / "db"))   # the same shared database, a fresh session
    try:
        assert sql_state(again) == before
    finally:
        again.close()   # not left to __del__: see test_connection_finalizer_does_not_deadlock


# =============================================================================================
# The storage engine


@pytest.fixture
def engine(tmp_path):
    db = Engine.open(str(tmp_path / "engine"), background=False)
    db.put(b"a", b"1")
    aux = db.create_column_family("aux")
    db.put(b"b", b"2", cf=aux)
    db.flush()
    db.put(b"c", b"3")
    yield db
    db.close()
    while _open_engines:
        _open_engines.pop().close()


def engine_state(db) -> list:
    return [(n, list(db.scan(cf=db.get_column_family(n)))) for n in db.list_column_families()]


_open_engines: list = []


def _foreign(tmp_path):
    other = Engine.open(str(tmp_path / f"other{len(_open_engines)}"), background=False)
    _open_engines.append(other)
    cf = other.create_column_family("x")
    snap = other.snapshot()
    return other, cf, snap


def _released_snapshot(db):
    snap = db.snapshot()
    snap.close()
    return snap


ENGINE_CASES = [
    ("open-path-int", lambda db, d: Engine.open(5)),
    ("open-unknown-option", lambda db, d: Engine.open(str(d / "x1"), nope=1)),
    ("open-missing-no-create", lambda db, d: Engine.open(str(d / "x2"), create=False)),
    ("open-locked", lambda db, d: _open_twice_in_child(db.path)),
    ("put-key-str", lambda db, d: db.put("a", b"1")),
    ("put-value-int", lambda db, d: db.put(b"a", 1)),
    ("put-key-none", lambda db, d: db.put(None, b"1")),
    ("put-cf-name", lambda db, d: db.put(b"a", b"9", cf="aux")),
    ("put-cf-int", lambda db, d: db.put(b"a", b"9", cf=1)),
    ("put-cf-foreign", lambda db, d: db.put(b"a", b"9", cf=_foreign(d)[1])),
    ("get-key-str", lambda db, d: db.get("a")),
    ("get-snapshot-int", lambda db, d: db.get(b"a", snapshot=5)),
    ("get-snapshot-foreign", lambda db, d: db.get(b"a", snapshot=_foreign(d)[2])),
    ("get-snapshot-released", lambda db, d: db.get(b"a", snapshot=_released_snapshot(db))),
    ("delete-key-int", lambda db, d: db.delete(5)),
    ("delete-range-reversed", lambda db, d: db.delete_range(b"z", b"a")),
    ("delete-range-str", lambda db, d: db.delete_range("a", "z")),
    ("delete-range-none", lambda db, d: db.delete_range(None, b"z")),
    ("write-not-a-batch", lambda db, d: db.write([(b"a", b"9")])),
    ("write-batch-foreign-cf", lambda db, d: db.write(_batch(lambda b: (b.put(b"a", b"9"),
                                                                        b.put(b"q", b"9", cf=_foreign(d)[1]))))),
    ("batch-put-str", lambda db, d: WriteBatch().put("a", b"1")),
    ("batch-range-reversed", lambda db, d: WriteBatch().delete_range(b"z", b"a")),
    ("scan-start-str", lambda db, d: list(db.scan("a"))),
    ("scan-reversed-range", lambda db, d: list(db.scan(b"z", b"a"))),
    ("scan-cf-name", lambda db, d: list(db.scan(cf="aux"))),
    ("create-cf-int", lambda db, d: db.create_column_family(5)),
    ("create-cf-empty", lambda db, d: db.create_column_family("")),
    ("create-cf-existing", lambda db, d: db.create_column_family("aux")),
    ("get-cf-unknown", lambda db, d: db.get_column_family("nope")),
    ("drop-cf-default", lambda db, d: db.drop_column_family("default")),
    ("drop-cf-unknown", lambda db, d: db.drop_column_family("nope")),
    ("drop-cf-int", lambda db, d: db.drop_column_family(5)),
    ("flush-cf-name", lambda db, d: db.flush(cf="aux")),
    ("compact-str", lambda db, d: db.compact_range("a", "z")),
    ("compact-reversed", lambda db, d: db.compact_range(b"z", b"a")),
    ("compact-progress-int", lambda db, d: db.compact_range(progress=5)),
    ("checkpoint-int", lambda db, d: db.checkpoint(5)),
    ("checkpoint-exists", lambda db, d: db.checkpoint(str(d))),
    ("sst-writer-sequence-unissued", lambda db, d: db.sst_writer(str(d / "ext.sst"), sequence=10 ** 9)),
    ("sst-writer-sequence-str", lambda db, d: db.sst_writer(str(d / "ext.sst"), sequence="1")),
    ("sst-writer-path-int", lambda db, d: db.sst_writer(5, sequence=1)),
    ("sst-writer-managed-name", lambda db, d: db.sst_writer(os.path.join(db.path, "000999.sst"), sequence=1)),
    ("ingest-str", lambda db, d: db.ingest("x.sst")),
    ("ingest-missing-file", lambda db, d: db.ingest([str(d / "missing.sst")])),
    ("ingest-not-an-sst", lambda db, d: db.ingest([_junk(d)])),
    ("ingest-progress-int", lambda db, d: db.ingest([], progress=5)),
    ("use-after-close", lambda db, d: _closed_engine(d).get(b"a")),
]


def _batch(fill) -> WriteBatch:
    b = WriteBatch()
    fill(b)
    return b


def _junk(d) -> str:
    path = str(d / "junk.sst")
    with open(path, "wb") as f:
        f.write(b"junk" * 100)
    return path


def _closed_engine(d):
    db = Engine.open(str(d / "closed"), background=False)
    db.close()
    return db


def _open_twice_in_child(path: str):
    """Another process opening the database gets DatabaseLockedError at once (raised here, re-created)."""
    import subprocess
    import sys
    code = ("import sys; from tabledb.storage import Engine; from tabledb.errors import DatabaseLockedError\n"
            "try:\n    Engine.open(sys.argv[1])\nexcept DatabaseLockedError as e:\n    print('locked')\n")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    if out.stdout.strip() == "locked":
        raise tabledb.OperationalError("the child process got DatabaseLockedError")
    raise AssertionError(f"a second process opened a database in use: {out.stdout} {out.stderr}")


@pytest.mark.parametrize("case", [pytest.param(fn, id=name) for name, fn in ENGINE_CASES])
def test_bad_engine_call_raises_pep249_error_and_changes_nothing(engine, tmp_path, case):
    before = engine_state(engine)
    seq = engine.latest_sequence
    with pytest.raises(tabledb.Error):
        case(engine, tmp_path)
    assert engine_state(engine) == before
    assert engine.latest_sequence == seq


# =============================================================================================
# Bugs found (each was pinned as a strict xfail until fixed)


@pytest.mark.parametrize("script", [
    "INSERT INTO t VALUES (3, 'z', 0); SELEC",                       # parses, but is no statement
    "INSERT INTO t VALUES (3, 'z', 0); INSERT INTO t VALUES (4, ?, 0)",   # a placeholder
    "INSERT INTO t VALUES (3, 'z', 0); SELECT",                       # no result column
], ids=["not-a-statement", "placeholder", "empty-select"])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["idle", "in-transaction"])
def test_executescript_with_a_bad_statement_runs_none_of_it(conn, tmp_path, script, in_transaction):
    """Every statement is parsed and checked before the first runs (tabledb/dbapi.py Cursor.executescript);
    the open transaction is not committed either."""
    if in_transaction:
        conn.execute("INSERT INTO t VALUES (10, 'pending', NULL)")
    before = sql_state(conn)
    with pytest.raises(tabledb.ProgrammingError):
        conn.executescript(script)
    assert sql_state(conn) == before
    assert conn.in_transaction is in_transaction
    conn.rollback()
    again = tabledb.connect(str(tmp_path / "db"))
    try:
        assert sql_state(again)["t"][1] == [(1, "x", 1.5), (2, "y", None)]
    finally:
        again.close()


def test_executescript_plans_each_statement_when_it_runs(conn):
    """Checking up front must not plan against the catalog: a statement may use a table made before it."""
    conn.executescript("CREATE TABLE u(k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX u_v ON u(v); "
                       "INSERT INTO u VALUES (1, 'a'); INSERT INTO u SELECT id + 1, a FROM t; "
                       "UPDATE u SET v = upper(v) WHERE k > 1")
    assert conn.execute("SELECT * FROM u ORDER BY k").fetchall() == [(1, "a"), (2, "X"), (3, "Y")]
    with pytest.raises(tabledb.ProgrammingError):   # no such table, found as it runs: those before stay
        conn.executescript("INSERT INTO u VALUES (9, 'b'); INSERT INTO nope VALUES (1)")
    assert conn.execute("SELECT v FROM u WHERE k = 9").fetchall() == [("b",)]


def _schema_capsule(*fields):
    return pa.schema(list(fields)).__arrow_c_schema__()


@pytest.mark.parametrize("requested", [
    lambda: 5,
    lambda: "id",
    lambda: pa.schema([("id", pa.int64())]),                        # a Schema, not its capsule
    lambda: pa.field("id", pa.int64()).__arrow_c_schema__(),         # a capsule of no schema
    lambda: _schema_capsule(("id", pa.int64())),                    # other columns
    lambda: _schema_capsule(("id", pa.int64()), ("a", pa.list_(pa.int8())), ("r", pa.float64())),   # no cast
], ids=["int", "str", "schema-object", "field-capsule", "other-columns", "uncastable"])
def test_arrow_c_stream_bad_schema_is_pep249(conn, requested):
    """requested_schema is None or an ArrowSchema PyCapsule (the Arrow PyCapsule protocol); anything else,
    or one the result cannot be cast to, is a ProgrammingError before a row is read (tabledb/arrow.py)."""
    cur = conn.execute("SELECT * FROM t")
    with pytest.raises(tabledb.ProgrammingError):
        cur.__arrow_c_stream__(requested())
    assert cur.fetchall() == [(1, "x", 1.5), (2, "y", None)]


def test_arrow_c_stream_casts_to_the_requested_schema(conn):
    want = pa.schema([("id", pa.int32()), ("a", pa.large_string()), ("r", pa.float32())])
    cur = conn.execute("SELECT * FROM t")
    got = pa.RecordBatchReader._import_from_c_capsule(cur.__arrow_c_stream__(want.__arrow_c_schema__())).read_all()
    assert got.schema == want
    assert got.to_pylist() == [{"id": 1, "a": "x", "r": 1.5}, {"id": 2, "a": "y", "r": None}]


def test_verify_progress_not_callable(engine):
    """Checked before anything is read, as compact_range and ingest do (tabledb/storage/engine.py Engine.verify)."""
    calls = []
    with pytest.raises(tabledb.ProgrammingError):
        engine.verify(progress=5)
    assert engine.verify(progress=lambda done, total: calls.append((done, total)))["tables"] == len(calls)


def _run_child(code: str, path, timeout: float = 20):
    import subprocess
    import sys
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: a finalizer in another thread waits for the registry lock")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_connection_finalizer_does_not_deadlock(tmp_path):
    """The cyclic GC can run Connection.__del__ in any thread: here a thread that open_database would wait
    for while it holds the registry lock (as Engine.open waits for the threads it starts). The finalizer
    must not wait for the lock (tabledb/sql/database.py close_unreachable)."""
    code = ("import gc, sys, threading, tabledb\n"
            "from tabledb.sql import database\n"
            "c = tabledb.connect(sys.argv[1]); c.me = c; del c   # an open connection, now cyclic garbage\n"
            "with database._registry_lock:   # as open_database holds it while Engine.open starts threads\n"
            "    t = threading.Thread(target=gc.collect)   # a collection in the starting thread\n"
            "    t.start(); t.join()         # open_database waits for it (Thread.start waits to be started)\n"
            "c = tabledb.connect(sys.argv[1]); c.me = c; del c\n"
            "with database._registry_lock:\n"
            "    gc.collect()                # the same thread, the lock held (a finalizer inside open_database)\n"
            "c = tabledb.connect(sys.argv[1])\n"
            "with database._registry_lock:\n"
            "    del c                       # the last reference goes, the lock held\n"
            "print('ok')\n")
    _run_child(code, tmp_path / "db", timeout=5)


def test_collected_connection_is_rolled_back_and_released(tmp_path):
    """An unclosed connection found by the GC (in another thread, the registry lock held) is still closed:
    its transaction rolled back, its writer lock freed, and its Database closed with the last connection."""
    code = ("import gc, os, sys, threading, time, tabledb\n"
            "from tabledb.sql import database\n"
            "path = os.path.realpath(sys.argv[1])\n"
            "other = tabledb.connect(path, busy_timeout=10)\n"
            "other.execute('CREATE TABLE t(k INTEGER PRIMARY KEY)'); other.commit()\n"
            "c = tabledb.connect(path); c.execute('INSERT INTO t VALUES (1)')   # holds the writer lock\n"
            "c.me = c; del c\n"
            "with database._registry_lock:\n"
            "    t = threading.Thread(target=gc.collect); t.start(); t.join()\n"
            "other.execute('INSERT INTO t VALUES (2)'); other.commit()   # waits for the closer, not 10 s\n"
            "assert other.execute('SELECT k FROM t').fetchall() == [(2,)]   # row 1 was rolled back\n"
            "assert database._registry[path].refs == 1\n"
            "other.me = other; del other\n"
            "gc.collect()\n"
            "deadline = time.monotonic() + 10\n"
            "while path in database._registry and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "assert path not in database._registry   # the last connection gone: the database closed\n"
            "c = tabledb.connect(path); c.execute('INSERT INTO t VALUES (3)'); del c   # refcount: closed at once\n"
            "assert path not in database._registry\n"
            "print('ok')\n")
    _run_child(code, tmp_path / "db")
