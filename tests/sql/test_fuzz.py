"""Garbage in, a tabledb.Error out, and the database untouched.

Statements here are random token streams, mutated valid statements, huge literals,
deeply nested expressions, bad parameters and writes that fail half way. For each
one the only outcomes allowed are success or an exception that is a ``tabledb.Error``
(a TypeError, RecursionError, KeyError or sqlglot error escaping is a bug), and after
every failed statement ``SHOW TABLES`` and every table's rows must be exactly what
they were before.

Statements that happen to succeed may change the database; the harness then builds
it afresh. The tests run in a temporary working directory, so a random
``COPY ... TO 'x'`` or ``BACKUP ... TO 'x'`` that parses writes nowhere that matters.
``TABLEDB_FUZZ_EXAMPLES`` scales the example counts, ``TABLEDB_FUZZ_RANDOM=1`` draws
fresh examples, and ``TABLEDB_DIFF_ENGINE=sqlite`` runs it all against SQLite.
"""

from __future__ import annotations

import datetime
import decimal
import os
import re
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .sqlgen import BLOB, INT, REAL, TEXT, Column, QueryBuilder, Schema, Table, engine_under_test

try:
    CONNECT, ENGINE_ERROR, ENGINE_NAME = engine_under_test()
except ImportError as exc:  # the SQL engine is not there yet
    pytest.skip(str(exc), allow_module_level=True)

SCALE = float(os.environ.get("TABLEDB_FUZZ_EXAMPLES", "1"))
pytestmark = pytest.mark.timeout(max(900, int(300 * SCALE)))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=os.environ.get("TABLEDB_FUZZ_RANDOM") != "1",
        database=None,
        report_multiple_bugs=False,    # shrink one failure, not each (minutes apiece)
        suppress_health_check=list(HealthCheck),
    )


# ----------------------------------------------------------------------------- the database

INT64_MIN = -(2**63)

SCHEMA = Schema((
    Table("t", (
        Column("k", INT),
        Column("v", TEXT, not_null=True),
        Column("r", REAL, check="r IS NULL OR r < 1000.0"),
        Column("b", BLOB),
        Column("u", INT, unique=True),
    ), ("k",), True),
    Table("w", (Column("a", INT), Column("b", TEXT), Column("c", REAL)), ("a", "b"), False),
))
T_ROWS = [(k, ["", "a", "b", "é", "x y", "日本"][k % 6], k * 10.0 if k % 4 else None,
           bytes([k]) if k % 3 else None, k * 3) for k in range(1, 13)]
T_ROWS.append((13, "min", 1.5, b"\xff", INT64_MIN))   # abs(u) and sum(u) overflow on this row
W_ROWS = [(1, "x", 0.5), (1, "y", None), (2, "x", 2.5), (3, "", -1.0), (INT64_MIN, "z", 0.0)]
SETUP = [
    SCHEMA.tables[0].create_sql(strict=False),
    "CREATE INDEX t_v ON t (v DESC)",
    "CREATE INDEX t_rb ON t (r, b)",
    SCHEMA.tables[1].create_sql(strict=False),
    "CREATE INDEX w_c ON w (c)",
]
ROW_DATA = {
    "t": [dict(zip("kvrbu", row)) for row in T_ROWS],
    "w": [dict(zip("abc", row)) for row in W_ROWS],
}


def row_key(row: tuple) -> tuple:
    rank = {type(None): 0, bool: 1, int: 1, float: 1, str: 2, bytes: 3}
    return tuple((rank.get(type(v), 4), repr(v) if rank.get(type(v), 4) == 4 or v is None else v) for v in row)


class Harness:
    """One database for a whole test: dumps it, runs a statement, rebuilds it when a
    successful statement changed it."""

    def __init__(self, root: str):
        self.root = root
        self.n = 0
        self.conn = None
        self.baseline = None
        self.reset()

    def reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.n += 1
        path = os.path.join(self.root, f"db{self.n}")
        shutil.rmtree(os.path.join(self.root, f"db{self.n - 1}"), ignore_errors=True)
        self.conn = CONNECT(path)
        for sql in SETUP:
            self.conn.execute(sql)
        self.conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", T_ROWS[0])
        for row in T_ROWS[1:]:
            self.conn.execute("INSERT INTO t (k, v, r, b, u) VALUES (?, ?, ?, ?, ?)", row)
        for row in W_ROWS:
            self.conn.execute("INSERT INTO w VALUES (?, ?, ?)", row)
        self.baseline = self.dump()

    def dump(self) -> tuple:
        tables = sorted(tuple(r) for r in self.conn.execute("SHOW TABLES").fetchall())
        contents = []
        for (name, *_rest) in tables:
            rows = [tuple(r) for r in self.conn.execute(f"SELECT * FROM {name}").fetchall()]
            contents.append((name, sorted(rows, key=row_key)))
        return tuple(tables), tuple(contents)

    def run(self, sql, params=None, *, must_fail: bool = False) -> bool:
        """Run one statement; True if it succeeded. Fails the test on any exception that
        is not a tabledb.Error, and on a failed statement that changed the database."""
        before = self.baseline
        shown = f"{sql!r:.300}" + (f" params {params!r:.200}" if params is not None else "")
        try:
            cur = self.conn.execute(sql) if params is None else self.conn.execute(sql, params)
            if cur.description is not None:
                cur.fetchall()
        except ENGINE_ERROR as exc:
            try:
                after = self.dump()
            except Exception as dump_exc:  # noqa: BLE001 - any failure here is the finding
                raise AssertionError(f"the database is unreadable after {shown} failed with {exc!r}") from dump_exc
            assert after == before, f"{shown} failed ({exc!r}) but changed the database"
            return False
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{type(exc).__name__} (not a tabledb.Error) escaped from {shown}: {exc!r:.300}") from exc
        try:
            changed = self.dump() != before
        except Exception as dump_exc:  # noqa: BLE001
            raise AssertionError(f"the database is unreadable after {shown} succeeded") from dump_exc
        if changed:
            self.reset()
        assert not must_fail, f"{shown} succeeded but must fail"
        return True


@pytest.fixture(scope="module")
def db():
    root = tempfile.mkdtemp(prefix="tabledb-fuzz-")
    cwd = os.getcwd()
    os.chdir(root)          # where a stray COPY/BACKUP TO 'relative' lands
    harness = Harness(root)
    try:
        yield harness
    finally:
        harness.conn.close()
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


def test_harness_sees_the_rows(db):
    tables, contents = db.dump()
    assert [row[0] for row in tables] == ["t", "w"]
    assert [len(rows) for _, rows in contents] == [len(T_ROWS), len(W_ROWS)]


# ----------------------------------------------------------------------------- vocabulary

KEYWORDS = """SELECT FROM WHERE INSERT INTO VALUES UPDATE SET DELETE CREATE TABLE INDEX UNIQUE
PRIMARY KEY NOT NULL DEFAULT CHECK AND OR IN IS LIKE GLOB BETWEEN CASE WHEN THEN ELSE END CAST
AS JOIN LEFT INNER CROSS ON USING GROUP BY HAVING ORDER ASC DESC LIMIT OFFSET DISTINCT UNION ALL
INTERSECT EXCEPT EXISTS DROP ALTER ADD COLUMN RENAME TO BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE
EXPLAIN QUERY PLAN SHOW TABLES INDEXES DESCRIBE REPLACE IGNORE CONFLICT DO NOTHING WITH
RECURSIVE OVER PARTITION COLLATE ESCAPE NULLS FIRST LAST BACKUP RESTORE DATABASE COPY PRAGMA
VACUUM TRUNCATE RETURNING INTEGER REAL TEXT BLOB BOOLEAN DATE TIMESTAMP TRUE FALSE IF
TRANSACTION FILTER WINDOW ROWID""".split()
IDENTIFIERS = ["t", "w", "k", "v", "r", "b", "u", "a", "c", "t.k", "w.a", "nosuch", "x.y.z", '"t"', '"k k"',
               "`t`", "[t]", "count", "sum", "avg", "min", "max", "total", "group_concat", "abs",
               "coalesce", "nullif", "ifnull", "length", "lower", "upper", "substr", "replace",
               "trim", "round", "typeof", "random", "t_v", "sqlite_master"]
LITERALS = ["0", "1", "-1", "3.5", ".5", "1e10", "1e400", "-1e400", "1e-400", "9223372036854775807",
            "9223372036854775808", "-9223372036854775808", "100000000000000000000000000000", "0x10",
            "'str'", "''", "'it''s'", "'é'", "X'00'", "X'0'", "X'zz'", "x''", "NULL", "?", "?1", "?0",
            "?99999999999", ":name", "@x", "$y", "'\\'", "'%'", "'_'"]
PUNCTUATION = ["(", ")", "(", ")", ",", ",", ";", ".", "*", "+", "-", "/", "%", "||", "=", "==", "!=",
               "<>", "<", "<=", ">", ">=", "~", "&", "|", "<<", ">>", "--", "/*", "*/", "'", '"',
               "`", "[", "]", "->", "->>", "::", "{", "}", "\\", "\x00", "\n"]
VOCABULARY = KEYWORDS + IDENTIFIERS + LITERALS + PUNCTUATION
TOKENS = st.sampled_from(VOCABULARY)

JUNK_PARAMS = st.one_of(
    st.none(), st.integers(-3, 3), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5),
    st.binary(max_size=5), st.sampled_from(["\udcff", "a\udc80b", "\ud800", "a\x00b", 2**63, -(2**63) - 1,
                                             10**30, float("nan"), float("inf")]),
)

VALID = [
    "SELECT * FROM t WHERE k = 3",
    "SELECT k, v FROM t WHERE k BETWEEN 2 AND 5 ORDER BY k DESC LIMIT 2 OFFSET 1",
    "SELECT v, count(*), sum(r), avg(u), group_concat(v, '-') FROM t GROUP BY v HAVING count(*) > 1",
    "SELECT t.k, w.b FROM t JOIN w ON t.k = w.a WHERE w.c IS NOT NULL",
    "SELECT t.k, w.b FROM t LEFT JOIN w ON t.k = w.a AND w.b LIKE 'x%'",
    "SELECT DISTINCT v FROM t WHERE v IN ('a', 'b', NULL) OR k IN (SELECT a FROM w)",
    "SELECT k FROM t WHERE EXISTS (SELECT 1 FROM w WHERE w.a = t.k) UNION SELECT a FROM w",
    "SELECT CASE WHEN k % 2 = 0 THEN 'even' ELSE 'odd' END, CAST(k AS TEXT) || v FROM t",
    "SELECT abs(u), coalesce(r, 0), nullif(k, 1), length(b), substr(v, 2, 1), round(r, 1) FROM t",
    "SELECT (SELECT max(c) FROM w WHERE w.a = t.k) FROM t WHERE k > ?",
    "SELECT * FROM w WHERE a = ? AND b > ?",
    "INSERT INTO t (k, v, r, b, u) VALUES (100, 'new', 1.5, X'01', 1000)",
    "INSERT INTO t (k, v) VALUES (?, ?)",
    "INSERT OR REPLACE INTO w VALUES (1, 'x', 9.5)",
    "INSERT INTO w SELECT k + 100, v, r FROM t WHERE k < 4",
    "UPDATE t SET v = upper(v), r = r + 1 WHERE k BETWEEN 3 AND 6",
    "UPDATE w SET c = NULL WHERE a = 1 AND b = 'x'",
    "DELETE FROM t WHERE k > 10",
    "DELETE FROM w WHERE c < 1.0",
    "CREATE TABLE z (p INTEGER PRIMARY KEY, q TEXT DEFAULT 'd' CHECK (length(q) < 5))",
    "CREATE UNIQUE INDEX t_vu ON t (v, u)",
    "DROP TABLE w",
    "SELECT k FROM t INTERSECT SELECT a FROM w EXCEPT SELECT 2 ORDER BY 1",
    "SELECT count(DISTINCT v), total(r), min(b), max(v) FROM t WHERE v GLOB '[a-c]*'",
    "SHOW TABLES",
    "SELECT typeof(1 / 0), 7 / 2, -7 % 3, 'a' || NULL, X'ab' = X'AB'",
]


def tokenize(sql: str) -> list[str]:
    return re.findall(r"'(?:[^']|'')*'|X'[0-9A-Fa-f]*'|\d+\.?\d*(?:e[-+]?\d+)?|\w+|\|\||<>|<=|>=|!=|\S", sql)


@st.composite
def mutated(draw) -> str:
    if draw(st.booleans()):
        tokens = tokenize(draw(st.sampled_from(VALID)))
    else:   # a statement from the differential grammar, over this schema
        builder = QueryBuilder(draw, SCHEMA, ROW_DATA)
        stmt = builder.query() if draw(st.booleans()) else builder.dml()[0]
        tokens = tokenize(stmt.sql)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "duplicate", "swap", "truncate", "insert", "replace"]))
        if not tokens:
            tokens = [draw(TOKENS)]
        i = draw(st.integers(0, len(tokens) - 1))
        j = draw(st.integers(0, len(tokens) - 1))
        if kind == "drop":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[i])
        elif kind == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "truncate":
            tokens = tokens[:i]
        elif kind == "insert":
            tokens.insert(i, draw(TOKENS))
        else:
            tokens[i] = draw(TOKENS)
    return " ".join(tokens)


def params_for(sql: str):
    """Parameters for ``sql``: usually as many as it has ``?``, now and then one more or less."""
    return st.integers(-1, 1).map(lambda d: max(0, sql.count("?") + d)).flatmap(
        lambda n: st.lists(JUNK_PARAMS, min_size=n, max_size=n).map(tuple))


# ----------------------------------------------------------------------------- tests


@fuzz_settings(150)
@given(tokens=st.lists(TOKENS, min_size=1, max_size=25), data=st.data())
def test_random_token_streams(db, tokens, data):
    sql = " ".join(tokens)
    db.run(sql, data.draw(params_for(sql)))


@fuzz_settings(150)
@given(sql=mutated(), data=st.data())
def test_mutated_statements(db, sql, data):
    db.run(sql, data.draw(params_for(sql)))


@fuzz_settings(40)
@given(data=st.data())
def test_valid_statements_with_junk_parameters(db, data):
    builder = QueryBuilder(data.draw, SCHEMA, ROW_DATA)
    stmt = builder.query() if data.draw(st.booleans()) else builder.dml()[0]
    db.run(stmt.sql, data.draw(params_for(stmt.sql)))


MB = 1 << 20
HUGE = [
    ("SELECT 1e400", None),
    ("SELECT -1e400, 1e400 - 1e400, 1e400 * 0", None),
    ("SELECT 100000000000000000000000000000, -100000000000000000000000000000", None),
    ("SELECT 9223372036854775808, -9223372036854775809, 9223372036854775807 + 1", None),
    ("SELECT -9223372036854775808 / -1, -9223372036854775808 % -1, abs(-9223372036854775808)", None),
    ("SELECT sum(u) FROM t", None),
    ("INSERT INTO t (k, v, r) VALUES (500, 'inf', 1e400)", None),
    ("INSERT INTO t (k, v) VALUES (100000000000000000000000000000, 'big')", None),
    ("SELECT ?", (10**30,)),
    ("SELECT ?", (-(2**63) - 1,)),
    ("SELECT * FROM t WHERE k = ?", (2**63,)),
    ("INSERT INTO t (k, v) VALUES (?, ?)", (10**30, "big")),
    ("INSERT INTO t (k, v, r) VALUES (?, ?, ?)", (600, "nan", float("nan"))),
    ("SELECT '" + "x" * MB + "'", None),
    ("SELECT length(?)", ("y" * MB,)),
    ("INSERT INTO t (k, v) VALUES (?, ?)", (700, "z" * MB)),
    ("INSERT INTO t (k, v, b) VALUES (?, ?, ?)", (701, "blob", b"\x00" * MB)),
    ("SELECT X'" + "ab" * MB + "'", None),
    ("SELECT " + "a" * 100_000, None),
    ('SELECT "' + "q" * 100_000 + '" FROM t', None),
    ("SELECT " + ", ".join(["1"] * 5000), None),
    ("SELECT * FROM t WHERE k IN (" + ", ".join(str(i) for i in range(20_000)) + ")", None),
    ("SELECT ?" + ", ?" * 4999, tuple(range(5000))),
]


@pytest.mark.parametrize("sql, params", HUGE, ids=[f"huge{i}" for i in range(len(HUGE))])
def test_huge_literals_and_values(db, sql, params):
    db.run(sql, params)


def nest(template: str, depth: int, core: str = "1") -> str:
    out = core
    for _ in range(depth):
        out = template.format(out)
    return out


DEEP = {
    "parens": "SELECT " + "(" * 2000 + "1" + ")" * 2000,
    "parens_where": "SELECT * FROM t WHERE " + "(" * 2000 + "k = 1" + ")" * 2000,
    "unary_minus": "SELECT " + "- " * 2000 + "1",
    "not": "SELECT " + "NOT " * 2000 + "1",
    "abs": "SELECT " + nest("abs({})", 2000),
    "coalesce": "SELECT " + nest("coalesce({}, 2)", 2000),
    "case": "SELECT " + nest("CASE WHEN k > 0 THEN {} ELSE 0 END", 1000, "k") + " FROM t",
    "plus_chain": "SELECT " + " + ".join(["1"] * 5000),
    "concat_chain": "SELECT " + " || ".join(["'a'"] * 5000),
    "and_chain": "SELECT * FROM t WHERE " + " AND ".join(f"k <> {i}" for i in range(3000)),
    "or_chain": "SELECT * FROM t WHERE " + " OR ".join(f"k = {i}" for i in range(3000)),
    "subqueries": nest("SELECT ({})", 300),
    "in_subqueries": "SELECT * FROM t WHERE k IN (" + nest("SELECT k FROM t WHERE k IN ({})", 200, "SELECT 1") + ")",
    "unions": " UNION ".join(f"SELECT {i}" for i in range(2000)),
    "joins": "SELECT count(*) FROM t AS x0" + "".join(f" JOIN t AS x{i} ON x{i}.k = x{i - 1}.k" for i in range(1, 64)),
    "update_parens": "UPDATE t SET r = " + "(" * 2000 + "r" + ")" * 2000 + " WHERE k = 1",
}


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_nesting_and_long_chains(db, name):
    db.run(DEEP[name])


class Opaque:
    pass


BAD_PARAMS = [
    ("SELECT ?", {"a": 1}), ("SELECT ?", Opaque()), ("SELECT ?", {1}), ("SELECT ?, ?", "ab"),
    ("SELECT ?", b"a"), ("SELECT ?", 5), ("SELECT ?", iter([1])), ("SELECT ?", [1]),
    ("SELECT ?", (Opaque(),)), ("SELECT ?", ([1],)), ("SELECT ?", ({"a": 1},)), ("SELECT ?", ((1, 2),)),
    ("SELECT ?", (decimal.Decimal("1.5"),)), ("SELECT ?", (complex(1, 2),)), ("SELECT ?", (datetime.date(2024, 1, 2),)),
    ("SELECT ?", (bytearray(b"x"),)), ("SELECT ?", (memoryview(b"x"),)), ("SELECT ?", (True,)),
    ("SELECT ?", ("\udcff",)), ("SELECT * FROM t WHERE v = ?", ("\udcff",)), ("SELECT ?", ("a\x00b",)),
    ("SELECT ?, ?", (1,)), ("SELECT ?", (1, 2)), ("SELECT 1", (1,)), ("SELECT ?", ()),
    ("SELECT :a", {"a": 1}), ("SELECT ?1, ?2", (1,)),
    ("INSERT INTO t (k, v) VALUES (?, ?)", (800, b"\xff\xfe")),         # bytes into TEXT
    ("INSERT INTO t (k, v) VALUES (?, ?)", (801, "\udcff")),            # a lone surrogate into TEXT
    ("INSERT INTO t (k, v, b) VALUES (?, ?, ?)", (802, "x", "text")),   # text into BLOB
    ("INSERT INTO t (k, v) VALUES (?, ?)", ("abc", "x")),               # text into INTEGER
    ("INSERT INTO t (k, v) VALUES (?, ?)", (1.5, "x")),                 # a fraction into INTEGER
    ("UPDATE t SET v = ? WHERE k = 1", (b"\x80",)),
    ("SELECT '\udcff'", None), ("SELECT * FROM t WHERE v = '\ud800'", None), ("SELECT 'a\x00b'", None),
    (None, None), (b"SELECT 1", None), (123, None), (["SELECT 1"], None), ("", None), ("   ", None),
    (";", None), ("SELECT 1; SELECT 2", None), ("SELECT 1;;", None), ("-- only a comment", None),
    ("/* unterminated", None), ("SELECT 'unterminated", None), ('SELECT "unterminated', None),
]


@pytest.mark.parametrize("sql, params", BAD_PARAMS, ids=[f"bad{i}" for i in range(len(BAD_PARAMS))])
def test_bad_arguments(db, sql, params):
    db.run(sql, params)


# Writes that SQLite refuses part way through: nothing of them may stay behind.
FAILING_WRITES = [
    "UPDATE t SET u = 7",                                               # UNIQUE, second row
    "UPDATE t SET u = CASE WHEN k = 9 THEN 3 ELSE u END",               # UNIQUE, one row late
    "UPDATE t SET k = CASE WHEN k = 5 THEN 12 ELSE k END",               # PRIMARY KEY, mid-way
    "UPDATE t SET v = NULL WHERE k > 3",                                # NOT NULL
    "UPDATE t SET v = CASE WHEN k = 7 THEN X'00' ELSE v || '!' END",    # BLOB into TEXT, mid-way
    "UPDATE t SET r = k * 100.0",                                       # CHECK from k = 10
    "UPDATE t SET r = abs(u)",                                          # integer overflow, last row
    "UPDATE w SET b = 'x' WHERE a = 1",                                 # composite key clash
    "DELETE FROM t WHERE k > 0 AND abs(u) >= 0",                        # integer overflow on k = 13
    "INSERT INTO t (k, v) VALUES (100, 'a'), (101, 'b'), (1, 'dup')",   # last row clashes
    "INSERT INTO t (k, v, u) VALUES (102, 'a', 5000), (103, 'b', 5000)",
    "INSERT INTO t (k, v) SELECT k + 1000, v FROM t UNION ALL SELECT 1, 'x'",
    "INSERT INTO w SELECT 9, 'q', r FROM t",                            # the key repeats
    "INSERT INTO t (k, v, r) VALUES (104, 'a', 5000.0)",                # CHECK
    "INSERT INTO t (k) VALUES (105)",                                   # NOT NULL v
    "INSERT INTO t (k, v) SELECT k + 2000, CASE WHEN k = 12 THEN NULL ELSE v END FROM t",
]


@pytest.mark.parametrize("sql", FAILING_WRITES, ids=[f"write{i}" for i in range(len(FAILING_WRITES))])
def test_failing_write_changes_nothing(db, sql):
    db.run(sql, must_fail=True)


def test_failing_writes_in_a_row_then_the_data_is_intact(db):
    for sql in FAILING_WRITES:
        db.run(sql, must_fail=True)
    assert db.dump() == db.baseline


@pytest.mark.parametrize("sql", FAILING_WRITES, ids=[f"write{i}" for i in range(len(FAILING_WRITES))])
def test_failing_write_inside_a_transaction_keeps_the_transaction(db, sql):
    """BEGIN; a write that works; one that fails: the first stays, in the transaction
    and after COMMIT."""
    conn = db.conn
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO w VALUES (77, 'txn', 7.5)")
        expected = db.dump()
        with pytest.raises(ENGINE_ERROR):
            conn.execute(sql)
        assert db.dump() == expected, f"{sql!r} failed inside a transaction and changed it"
        conn.execute("COMMIT")
        assert db.dump() == expected, f"COMMIT after {sql!r} failed lost or added rows"
    finally:
        db.reset()
