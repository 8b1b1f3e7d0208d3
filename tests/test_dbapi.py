"""The DB-API 2.0 layer (tabledb.dbapi, tabledb.types): exact values and exact exception classes."""

from __future__ import annotations

import collections
import datetime as dt
import sys
import time
import types
from decimal import Decimal

import pytest

import tabledb
from tabledb import dbapi


@pytest.fixture
def conn():
    c = tabledb.connect(":memory:")
    yield c
    if not c.closed:
        c.close()


@pytest.fixture
def people(conn):
    conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)")
    conn.executemany("INSERT INTO people VALUES (?, ?, ?)", [(1, "ann", 31), (2, "bob", 42), (3, "cy", 23)])
    conn.commit()
    return conn


# -- the module ------------------------------------------------------------------------------

def test_module_globals():
    assert tabledb.apilevel == "2.0"
    assert tabledb.threadsafety == 1
    assert tabledb.paramstyle == "qmark"
    assert tabledb.connect is dbapi.connect


def test_exception_hierarchy():
    assert issubclass(tabledb.Warning, Exception)
    assert issubclass(tabledb.Error, Exception)
    assert not issubclass(tabledb.Warning, tabledb.Error)
    for name in ("InterfaceError", "DatabaseError"):
        assert issubclass(getattr(tabledb, name), tabledb.Error)
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError", "ProgrammingError",
                 "NotSupportedError"):
        assert issubclass(getattr(tabledb, name), tabledb.DatabaseError)


def test_exceptions_are_connection_attributes(conn):
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        assert getattr(conn, name) is getattr(tabledb, name) is getattr(dbapi, name)


def test_type_constructors():
    assert tabledb.Date(2002, 12, 25) == dt.date(2002, 12, 25)
    assert tabledb.Time(13, 45, 30) == dt.time(13, 45, 30)
    assert tabledb.Timestamp(2002, 12, 25, 13, 45, 30) == dt.datetime(2002, 12, 25, 13, 45, 30)
    ticks = time.mktime((2002, 12, 25, 13, 45, 30, 0, 0, -1))   # local time, as the FromTicks read it
    assert tabledb.DateFromTicks(ticks) == dt.date(2002, 12, 25)
    assert tabledb.TimeFromTicks(ticks) == dt.time(13, 45, 30)
    assert tabledb.TimestampFromTicks(ticks) == dt.datetime(2002, 12, 25, 13, 45, 30)
    assert tabledb.Binary(b"Something") == b"Something"
    assert tabledb.Binary(bytearray(b"ab")) == b"ab"
    assert type(tabledb.Binary(b"")) is bytes


def test_type_objects_compare_equal_to_their_type_codes():
    assert tabledb.STRING == "TEXT" and "TEXT" == tabledb.STRING
    assert tabledb.BINARY == "BLOB"
    for name in ("INTEGER", "REAL", "BOOLEAN"):
        assert tabledb.NUMBER == name
    assert tabledb.DATETIME == "DATE" and tabledb.DATETIME == "TIMESTAMP"
    assert tabledb.STRING != "BLOB" and tabledb.NUMBER != "TEXT" and tabledb.DATETIME != "INTEGER"
    assert tabledb.NUMBER != None  # noqa: E711 - a computed column's type code is None
    assert tabledb.ROWID != "INTEGER"    # only the row id's own code is a ROWID
    objects = [tabledb.STRING, tabledb.BINARY, tabledb.NUMBER, tabledb.DATETIME, tabledb.ROWID]
    for i, a in enumerate(objects):
        for j, b in enumerate(objects):
            assert (a == b) is (i == j)
    assert len(set(objects)) == 5
    assert repr(tabledb.STRING) == "tabledb.STRING"


# -- connecting and closing ------------------------------------------------------------------

def test_connect_creates_the_directory_and_persists(tmp_path):
    path = tmp_path / "a" / "db"
    c = tabledb.connect(str(path))
    assert path.is_dir()
    assert c.path == str(path.resolve())
    c.execute("CREATE TABLE t (x INTEGER)")
    c.execute("INSERT INTO t VALUES (1)")
    c.commit()
    c.execute("INSERT INTO t VALUES (2)")    # never committed
    c.close()
    c = tabledb.connect(path)                # a PathLike works too
    assert c.execute("SELECT x FROM t").fetchall() == [(1,)]
    c.close()


def test_memory_databases_are_private():
    a, b = tabledb.connect(":memory:"), tabledb.connect(":memory:")
    a.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(tabledb.ProgrammingError):
        b.execute("SELECT * FROM t")
    assert a.path is None
    a.close()
    b.close()


def test_connections_to_one_directory_share_it(tmp_path):
    a = tabledb.connect(str(tmp_path))
    b = tabledb.connect(str(tmp_path))
    a.execute("CREATE TABLE t (x INTEGER)")
    a.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(tabledb.ProgrammingError):   # not committed yet
        b.execute("SELECT x FROM t")
    a.commit()
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
    a.close()
    b.close()


def test_connect_rejects_bad_options():
    with pytest.raises(tabledb.ProgrammingError):
        tabledb.connect(":memory:", no_such_option=1)
    with pytest.raises(tabledb.ProgrammingError):
        tabledb.connect(":memory:", autocommit="yes")
    with pytest.raises(tabledb.ProgrammingError):
        tabledb.connect(":memory:", busy_timeout="soon")
    with pytest.raises(tabledb.ProgrammingError):
        tabledb.connect(42)


def test_connect_to_a_file_is_operational_error(tmp_path):
    (tmp_path / "file").write_text("not a database")
    with pytest.raises(tabledb.OperationalError):
        tabledb.connect(str(tmp_path / "file"))


def test_second_close_and_any_use_after_close_raise_error(conn):
    cur = conn.cursor()
    cur.execute("SELECT 1")
    conn.close()
    assert conn.closed
    with pytest.raises(tabledb.ProgrammingError):
        conn.close()
    uses = [conn.cursor, conn.commit, conn.rollback, lambda: conn.execute("SELECT 1"),
            lambda: conn.executemany("SELECT 1", []), lambda: conn.executescript("SELECT 1"),
            lambda: conn.in_transaction, lambda: conn.autocommit, lambda: setattr(conn, "autocommit", True),
            conn.__enter__, lambda: cur.execute("SELECT 1"), cur.fetchone, cur.fetchall, cur.fetchmany,
            lambda: cur.executemany("INSERT INTO t VALUES (?)", [(1,)])]
    for use in uses:
        with pytest.raises(tabledb.ProgrammingError):
            use()


def test_closed_cursor(conn):
    cur = conn.execute("SELECT 1")
    cur.close()
    cur.close()   # closing a cursor again does nothing
    for use in (lambda: cur.execute("SELECT 1"), cur.fetchone, cur.fetchall, cur.fetchmany,
                lambda: cur.executemany("SELECT 1", []), lambda: cur.executescript("SELECT 1"),
                lambda: cur.setinputsizes([1]), lambda: cur.setoutputsize(1), lambda: next(cur)):
        with pytest.raises(tabledb.ProgrammingError):
            use()
    assert conn.execute("SELECT 2").fetchone() == (2,)   # the connection is unaffected


def test_cursor_as_context_manager_closes_it(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchone()


def test_close_rolls_back(tmp_path):
    c = tabledb.connect(str(tmp_path))
    c.execute("CREATE TABLE t (x INTEGER)")
    c.commit()
    c.execute("INSERT INTO t VALUES (1)")
    c.close()
    c = tabledb.connect(str(tmp_path))
    assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    c.close()


# -- transactions --------------------------------------------------------------------------------

def test_commit_and_rollback(tmp_path):
    a = tabledb.connect(str(tmp_path))
    b = tabledb.connect(str(tmp_path))
    a.execute("CREATE TABLE t (x INTEGER)")
    a.commit()
    assert a.autocommit is False
    assert a.in_transaction is False
    a.execute("INSERT INTO t VALUES (1)")
    assert a.in_transaction is True
    assert b.execute("SELECT x FROM t").fetchall() == []
    a.commit()
    assert a.in_transaction is False
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
    a.execute("INSERT INTO t VALUES (2)")
    a.rollback()
    assert a.in_transaction is False
    assert a.execute("SELECT x FROM t").fetchall() == [(1,)]
    a.commit()     # nothing to commit: fine
    a.rollback()   # nothing to roll back: fine
    a.close()
    b.close()


def test_begin_opens_a_transaction_before_any_statement(conn):
    conn.execute("BEGIN")
    assert conn.in_transaction is True
    conn.commit()
    assert conn.in_transaction is False
    conn.execute("BEGIN")
    conn.rollback()
    assert conn.in_transaction is False
    conn.execute("BEGIN")    # not "within a transaction": the ones before were ended
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    conn.executescript("INSERT INTO t VALUES (1)")   # commits the open (empty) BEGIN first
    assert conn.in_transaction is False
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_autocommit(tmp_path):
    a = tabledb.connect(str(tmp_path), autocommit=True)
    b = tabledb.connect(str(tmp_path))
    assert a.autocommit is True
    a.execute("CREATE TABLE t (x INTEGER)")
    a.execute("INSERT INTO t VALUES (1)")
    assert a.in_transaction is False
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
    a.execute("BEGIN")
    a.execute("INSERT INTO t VALUES (2)")
    assert a.in_transaction is True
    a.rollback()
    a.autocommit = False
    a.execute("INSERT INTO t VALUES (3)")
    assert a.in_transaction is True
    a.autocommit = True            # commits the open transaction
    assert a.in_transaction is False
    assert b.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (3,)]
    with pytest.raises(tabledb.ProgrammingError):
        a.autocommit = 1
    a.close()
    b.close()


def test_context_manager_commits_or_rolls_back(tmp_path):
    c = tabledb.connect(str(tmp_path))
    other = tabledb.connect(str(tmp_path))
    with c as entered:
        assert entered is c
        c.execute("CREATE TABLE t (x INTEGER)")
        c.execute("INSERT INTO t VALUES (1)")
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
    with pytest.raises(ZeroDivisionError):
        with c:
            c.execute("INSERT INTO t VALUES (2)")
            1 / 0
    assert c.in_transaction is False
    assert c.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert not c.closed     # the with block does not close the connection
    c.close()
    other.close()


def test_writer_lock_timeout_is_operational_error(tmp_path):
    a = tabledb.connect(str(tmp_path))
    b = tabledb.connect(str(tmp_path), busy_timeout=0)
    a.execute("CREATE TABLE t (x INTEGER)")
    a.commit()
    a.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(tabledb.OperationalError):
        b.execute("INSERT INTO t VALUES (2)")
    a.close()
    b.close()


# -- executing and parameters -------------------------------------------------------------------

def test_execute_shortcut_returns_a_new_cursor(conn):
    cur = conn.execute("SELECT ? + 1", (1,))
    assert isinstance(cur, tabledb.Cursor)
    assert cur.connection is conn
    assert cur.fetchall() == [(2,)]
    assert conn.execute("SELECT 1") is not cur
    same = conn.cursor()
    assert same.execute("SELECT 1") is same


def test_qmark_and_named_parameters(conn):
    assert conn.execute("SELECT ?, ?", (1, "a")).fetchone() == (1, "a")
    assert conn.execute("SELECT ?, ?", [1, "a"]).fetchone() == (1, "a")
    assert conn.execute("SELECT :a, :b, :a", {"a": 1, "b": 2}).fetchone() == (1, 2, 1)
    assert conn.execute("SELECT :a", {"a": 1, "unused": 2}).fetchone() == (1,)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert conn.execute("SELECT 1", None).fetchone() == (1,)


def test_placeholders_in_literals_identifiers_and_comments_are_text(conn):
    cur = conn.execute("SELECT 'is it? :no' AS \"q?:x\", ? -- a ? and :c in a comment\n", (5,))
    assert cur.fetchone() == ("is it? :no", 5)
    assert cur.description[0][0] == "q?:x"
    assert conn.execute("SELECT /* ? :x */ 'it''s ?', :y", {"y": 1}).fetchone() == ("it's ?", 1)
    conn.execute("CREATE TABLE t (a TEXT, b TEXT)")
    conn.execute("INSERT INTO t VALUES (?, 'thi%s :may ca%(u)se? troub:1e')", ("Cooper's",))
    assert conn.execute("SELECT a, b FROM t").fetchall() == [("Cooper's", "thi%s :may ca%(u)se? troub:1e")]


def test_parameter_errors(conn):
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT ?", ())             # too few
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT ?", (1, 2))         # too many
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT '?'", (1,))         # the ? in the literal is no placeholder
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT ?", {"a": 1})       # qmark needs a sequence
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT :a", (1,))          # named needs a mapping
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT :a", {"b": 1})      # missing name
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT ?, :a", (1,))       # mixed styles
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT ?", (object(),))    # unsupported type
    with pytest.raises(tabledb.DataError):
        conn.execute("SELECT ?", (2 ** 64,))     # out of INTEGER range


def test_parameter_value_types(conn):
    conn.execute("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB, o BOOLEAN, d DATE, ts TIMESTAMP)")
    row = (7, 2.5, "x", b"\x00\x01", True, dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3, 4, 5, 6))
    conn.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    conn.execute("INSERT INTO v (r, b) VALUES (?, ?)", (Decimal("1.25"), bytearray(b"ba")))
    conn.execute("INSERT INTO v (b) VALUES (?)", (memoryview(b"mv"),))
    assert conn.execute("SELECT * FROM v").fetchall() == [
        row, (None, 1.25, None, b"ba", None, None, None), (None, None, None, b"mv", None, None, None)]


def test_time_parameters_are_bound_as_iso_text(conn):
    conn.execute("CREATE TABLE t (k INTEGER, at TEXT)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (1, tabledb.Time(13, 45, 30)))
    conn.execute("INSERT INTO t VALUES (:k, :at)", {"k": 2, "at": dt.time(1, 2, 3, 250000)})
    conn.executemany("INSERT INTO t VALUES (?, ?)",
                     [(3, dt.time(4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=1)))), (4, "plain")])
    Pair = collections.namedtuple("Pair", "k at")
    conn.execute("INSERT INTO t VALUES (?, ?)", Pair(5, dt.time(23, 59)))
    conn.execute("INSERT INTO t VALUES (:k, :at)", types.MappingProxyType({"k": 6, "at": dt.time(0, 0)}))
    assert conn.execute("SELECT k, at FROM t ORDER BY k").fetchall() == [
        (1, "13:45:30"), (2, "01:02:03.250000"), (3, "04:05:06+01:00"), (4, "plain"), (5, "23:59:00"),
        (6, "00:00:00")]
    conn.execute("CREATE TABLE n (x INTEGER)")
    with pytest.raises(tabledb.DataError):   # ISO text is no INTEGER
        conn.execute("INSERT INTO n VALUES (?)", (dt.time(1, 2),))


def test_sql_errors_map_to_pep249_classes(conn):
    conn.execute("CREATE TABLE u (a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
    conn.execute("INSERT INTO u VALUES (1, 'x')")
    with pytest.raises(tabledb.IntegrityError):
        conn.execute("INSERT INTO u VALUES (1, 'y')")
    with pytest.raises(tabledb.IntegrityError):
        conn.execute("INSERT INTO u VALUES (2, NULL)")
    with pytest.raises(tabledb.DataError):
        conn.execute("INSERT INTO u VALUES ('abc', 'z')")
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELEC 1")
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT * FROM nope")
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute("SELECT 1; SELECT 2")
    with pytest.raises(tabledb.ProgrammingError):
        conn.execute(b"SELECT 1")
    assert conn.execute("SELECT b FROM u").fetchall() == [("x",)]   # failed statements changed nothing


def test_executemany(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cur = conn.cursor()
    assert cur.executemany("INSERT INTO t (name) VALUES (?)", [("a",), ("b",), ("c",)]) is cur
    assert cur.rowcount == 3
    assert cur.lastrowid is None      # executemany leaves it, as sqlite3 does
    assert cur.description is None
    cur.executemany("INSERT INTO t VALUES (:id, :name)", ({"id": i, "name": str(i)} for i in (10, 11)))
    assert cur.rowcount == 2
    assert cur.lastrowid is None
    cur.executemany("UPDATE t SET name = 'z' WHERE id > ?", [(2,), (10,)])
    assert cur.rowcount == 4   # 3 rows, then 1 row
    cur.executemany("INSERT INTO t (name) VALUES (?)", [])
    assert cur.rowcount == 0
    with pytest.raises(tabledb.ProgrammingError):
        cur.executemany("SELECT ?", [(1,)])
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchall()
    assert conn.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [
        (1, "a"), (2, "b"), (3, "z"), (10, "z"), (11, "z")]


def test_executemany_is_all_or_nothing(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.commit()
    with pytest.raises(tabledb.IntegrityError):
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (1,)])
    with pytest.raises(tabledb.ProgrammingError):
        conn.executemany("INSERT INTO t VALUES (?)", [(5,), (6, 7)])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_executescript(tmp_path):
    c = tabledb.connect(str(tmp_path))
    c.execute("CREATE TABLE before (x INTEGER)")
    assert c.in_transaction
    cur = c.executescript("""
        -- a script: statements separated by ';'
        CREATE TABLE t (x INTEGER);
        INSERT INTO t VALUES (1);
        INSERT INTO t VALUES (2);
        SELECT * FROM t;
        BEGIN;
        INSERT INTO t VALUES (3);
        ROLLBACK;
    """)
    assert isinstance(cur, tabledb.Cursor)
    assert cur.description is None
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchone()
    assert c.in_transaction is False       # the script committed the open transaction and its statements
    assert c.autocommit is False
    other = tabledb.connect(str(tmp_path))
    assert other.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    assert other.execute("SELECT count(*) FROM before").fetchone() == (0,)

    with pytest.raises(tabledb.IntegrityError):
        c.executescript("CREATE TABLE u (k INTEGER PRIMARY KEY); INSERT INTO u VALUES (1); "
                        "INSERT INTO u VALUES (1); INSERT INTO u VALUES (2)")
    assert other.execute("SELECT k FROM u").fetchall() == [(1,)]   # those before the failure stay
    with pytest.raises(tabledb.ProgrammingError):
        c.executescript("INSERT INTO u VALUES (5); SELEC 1")         # a syntax error runs nothing
    with pytest.raises(tabledb.ProgrammingError):
        c.executescript("INSERT INTO u VALUES (?)")                    # scripts take no parameters
    with pytest.raises(tabledb.ProgrammingError):
        c.executescript(42)
    assert other.execute("SELECT k FROM u").fetchall() == [(1,)]
    c.executescript("BEGIN; INSERT INTO u VALUES (7);")
    assert c.in_transaction is True       # the script's own transaction stays open
    c.commit()
    assert other.execute("SELECT k FROM u ORDER BY k").fetchall() == [(1,), (7,)]
    c.close()
    other.close()


# -- fetching -------------------------------------------------------------------------------------

def test_fetch_before_a_query_or_after_no_rows_raises(conn):
    cur = conn.cursor()
    for fetch in (cur.fetchone, cur.fetchall, cur.fetchmany, lambda: next(cur)):
        with pytest.raises(tabledb.ProgrammingError):
            fetch()
    cur.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchone()
    cur.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchall()
    with pytest.raises(tabledb.ProgrammingError):
        cur.execute("SELECT * FROM nope")
    with pytest.raises(tabledb.ProgrammingError):   # a failed execute leaves no result behind
        cur.fetchone()
    assert cur.description is None


def test_fetchone_fetchmany_fetchall_and_iteration(people):
    cur = people.cursor()
    assert cur.arraysize == 1
    cur.execute("SELECT id FROM people ORDER BY id")
    assert cur.fetchmany() == [(1,)]
    cur.arraysize = 5
    assert cur.fetchmany() == [(2,), (3,)]
    assert cur.fetchmany() == []
    assert cur.fetchone() is None
    assert cur.fetchall() == []
    cur.execute("SELECT id FROM people ORDER BY id")
    assert cur.fetchone() == (1,)
    assert cur.fetchmany(0) == []
    assert cur.fetchmany(1) == [(2,)]
    assert cur.fetchall() == [(3,)]
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchmany(-1)
    cur.execute("SELECT id FROM people ORDER BY id")
    assert iter(cur) is cur
    assert [r for r in cur] == [(1,), (2,), (3,)]
    assert [r for r in people.execute("SELECT name FROM people WHERE id > 1 ORDER BY id")] == [("bob",), ("cy",)]
    cur.execute("SELECT id FROM people WHERE id > 99")
    assert cur.fetchone() is None and cur.fetchall() == [] and cur.fetchmany(3) == []


def test_a_new_execute_replaces_the_result(people):
    cur = people.execute("SELECT id FROM people ORDER BY id")
    assert cur.fetchone() == (1,)
    cur.execute("SELECT name FROM people WHERE id = 3")
    assert cur.fetchall() == [("cy",)]


def test_description_and_type_codes(conn):
    conn.execute("CREATE TABLE v (i INTEGER PRIMARY KEY, r REAL, t TEXT, b BLOB, o BOOLEAN, d DATE, "
                 "ts TIMESTAMP, vc VARCHAR(20))")
    cur = conn.execute("SELECT i, r, t, b, o, d, ts, vc, i + 1 AS e, rowid FROM v")
    assert [d[0] for d in cur.description] == ["i", "r", "t", "b", "o", "d", "ts", "vc", "e", "rowid"]
    assert all(len(d) == 7 and d[2:] == (None,) * 5 for d in cur.description)
    codes = [d[1] for d in cur.description]
    assert codes[:8] == ["INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "DATE", "TIMESTAMP", "TEXT"]
    expected = [tabledb.NUMBER, tabledb.NUMBER, tabledb.STRING, tabledb.BINARY, tabledb.NUMBER,
                tabledb.DATETIME, tabledb.DATETIME, tabledb.STRING]
    for code, type_object in zip(codes, expected):
        assert code == type_object
        assert code != tabledb.ROWID
    assert codes[8] is None                      # a computed expression of no static type
    assert codes[9] == tabledb.ROWID and codes[9] == tabledb.NUMBER and codes[9] == "INTEGER"
    assert cur._result_types == ["INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "DATE", "TIMESTAMP", "TEXT",
                                 None, "INTEGER"]
    cur.execute("INSERT INTO v (t) VALUES ('x')")
    assert cur.description is None and cur._result_types is None and cur._rows is None
    cur.execute("SELECT count(*) AS n FROM v")
    assert cur.description == (("n", "INTEGER", None, None, None, None, None),)
    cur.execute("CREATE TABLE w (x INTEGER)")
    assert cur.description is None


def test_description_of_a_repeated_statement(people):
    cur = people.cursor()
    first = cur.execute("SELECT name FROM people WHERE id = ?", (1,)).description
    assert cur.fetchall() == [("ann",)]
    assert cur.execute("SELECT name FROM people WHERE id = ?", (2,)).description == first
    assert cur.fetchall() == [("bob",)]


def test_rowcount(people):
    cur = people.cursor()
    assert cur.rowcount == -1
    cur.execute("SELECT * FROM people")
    assert cur.rowcount == -1
    cur.fetchall()
    assert cur.rowcount == -1
    cur.execute("INSERT INTO people (name) VALUES ('dee')")
    assert cur.rowcount == 1
    cur.execute("UPDATE people SET age = age + 1 WHERE age > 30")
    assert cur.rowcount == 2
    cur.execute("UPDATE people SET age = 0 WHERE id = 99")
    assert cur.rowcount == 0
    cur.execute("DELETE FROM people WHERE id = 4")
    assert cur.rowcount == 1
    cur.execute("CREATE TABLE other (x INTEGER)")
    assert cur.rowcount == 0
    with pytest.raises(tabledb.IntegrityError):
        cur.execute("INSERT INTO people VALUES (1, 'dup', 1)")
    assert cur.rowcount == -1


def test_lastrowid(conn):
    conn.execute("CREATE TABLE hidden (name TEXT)")
    conn.execute("CREATE TABLE aliased (id INTEGER PRIMARY KEY, name TEXT)")
    cur = conn.cursor()
    assert cur.lastrowid is None
    cur.execute("INSERT INTO hidden VALUES ('a')")
    assert cur.lastrowid == 1
    cur.execute("INSERT INTO hidden VALUES ('b')")
    assert cur.lastrowid == 2
    cur.execute("INSERT INTO aliased VALUES (40, 'x')")
    assert cur.lastrowid == 40
    cur.execute("INSERT INTO aliased (name) VALUES ('y')")
    assert cur.lastrowid == 41
    cur.execute("SELECT * FROM aliased")    # a query leaves it
    assert cur.lastrowid == 41
    assert conn.execute("SELECT rowid FROM hidden WHERE name = 'b'").fetchone() == (2,)


def test_setinputsizes_and_setoutputsize_are_accepted(conn):
    cur = conn.cursor()
    assert cur.setinputsizes([10, None, tabledb.STRING]) is None
    assert cur.setoutputsize(5) is None
    assert cur.setoutputsize(5, 0) is None
    assert cur.execute("SELECT 'longer than five'").fetchone() == ("longer than five",)


def test_closing_the_connection_ends_open_results(people):
    cur = people.execute("SELECT id FROM people")
    assert cur.fetchone() == (1,)
    people.close()
    with pytest.raises(tabledb.ProgrammingError):
        cur.fetchone()


def test_a_cursor_reads_on_after_commit(people):
    cur = people.execute("SELECT id FROM people ORDER BY id")
    assert cur.fetchone() == (1,)
    people.execute("INSERT INTO people VALUES (9, 'zed', 1)")
    people.commit()
    assert cur.fetchall() == [(2,), (3,)]


# -- row factories ---------------------------------------------------------------------------------

def test_row_factory_row(people):
    people.row_factory = tabledb.Row
    cur = people.cursor()
    assert cur.row_factory is tabledb.Row
    row = cur.execute("SELECT id, name AS Name, age FROM people WHERE id = 2").fetchone()
    assert type(row) is tabledb.Row
    assert row[0] == 2 and row[1] == "bob" and row[-1] == 42
    assert row[0:2] == (2, "bob")
    assert row["id"] == 2 and row["name"] == "bob" and row["NAME"] == "bob" and row["Age"] == 42
    assert row.keys() == ["id", "Name", "age"]
    assert len(row) == 3
    assert list(row) == [2, "bob", 42]
    assert tuple(row) == (2, "bob", 42)
    assert "bob" in row
    assert dict(zip(row.keys(), row)) == {"id": 2, "Name": "bob", "age": 42}
    with pytest.raises(IndexError):
        row["missing"]
    with pytest.raises(IndexError):
        row[3]
    same = people.execute("SELECT id, name AS Name, age FROM people WHERE id = 2").fetchone()
    assert row == same and not (row != same) and hash(row) == hash(same)
    assert row != people.execute("SELECT id, name AS Name, age FROM people WHERE id = 1").fetchone()
    assert row != people.execute("SELECT id, name AS n, age FROM people WHERE id = 2").fetchone()
    assert row != (2, "bob", 42)    # as sqlite3.Row: a Row equals only Rows
    assert repr(row) == "<tabledb.Row (id=2, Name='bob', age=42)>"
    rows = people.execute("SELECT id FROM people ORDER BY id").fetchall()
    assert [r["id"] for r in rows] == [1, 2, 3]
    cur = people.execute("SELECT id FROM people ORDER BY id")
    assert [r["id"] for r in cur.fetchmany(2)] == [1, 2]
    assert [r["id"] for r in cur] == [3]


def test_row_factory_is_taken_when_the_cursor_is_made(people):
    before = people.cursor()
    people.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row)}
    after = people.cursor()
    assert before.execute("SELECT id FROM people WHERE id = 1").fetchone() == (1,)
    assert after.execute("SELECT id, name FROM people WHERE id = 1").fetchall() == [{"id": 1, "name": "ann"}]
    after.row_factory = None
    assert after.execute("SELECT id FROM people WHERE id = 1").fetchone() == (1,)
    before.row_factory = tabledb.Row
    assert before.execute("SELECT id FROM people WHERE id = 1").fetchone()["id"] == 1


def test_row_with_duplicate_names_takes_the_first(conn):
    conn.row_factory = tabledb.Row
    row = conn.execute("SELECT 1 AS a, 2 AS A").fetchone()
    assert row["a"] == 1 and row.keys() == ["a", "A"]


# -- the Arrow hooks ------------------------------------------------------------------------------------

def test_arrow_hooks_delegate_to_tabledb_arrow(people, monkeypatch):
    calls = []
    fake = types.ModuleType("tabledb.arrow")
    fake.fetch_arrow_table = lambda cursor: calls.append(("table", cursor)) or "T"
    fake.fetch_record_batch = lambda cursor, rows_per_batch: calls.append(("batch", cursor, rows_per_batch)) or "R"
    fake.arrow_c_stream = lambda cursor, requested_schema: calls.append(("stream", cursor, requested_schema)) or "S"
    fake.ingest_arrow = lambda connection, table_name, data, mode: calls.append(
        ("ingest", connection, table_name, data, mode)) or 7
    monkeypatch.setitem(sys.modules, "tabledb.arrow", fake)
    monkeypatch.setattr(tabledb, "arrow", fake, raising=False)
    cur = people.execute("SELECT id FROM people")
    assert cur.fetch_arrow_table() == "T"
    assert cur.fetch_record_batch(rows_per_batch=10) == "R"
    assert cur.__arrow_c_stream__() == "S"
    assert cur.__arrow_c_stream__(requested_schema="schema") == "S"
    assert people.ingest_arrow("people", "data") == 7
    assert people.ingest_arrow("people", "data", mode="replace") == 7
    assert calls == [("table", cur), ("batch", cur, 10), ("stream", cur, None), ("stream", cur, "schema"),
                     ("ingest", people, "people", "data", "append"),
                     ("ingest", people, "people", "data", "replace")]
    assert cur._result_types == ["INTEGER"] and next(cur._rows) == (1,)
    cur.close()
    for hook in (cur.fetch_arrow_table, lambda: cur.fetch_record_batch(5), cur.__arrow_c_stream__):
        with pytest.raises(tabledb.ProgrammingError):
            hook()
    people.close()
    with pytest.raises(tabledb.ProgrammingError):
        people.ingest_arrow("people", "data")
