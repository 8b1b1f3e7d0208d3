"""tabledb against SQLite: the same schema, rows and statements, the same answers.

Each example draws a schema and rows (tests/sql/sqlgen.py), runs the statements on
tabledb in a fresh directory and on ``sqlite3.connect(':memory:')`` with STRICT
tables, and compares statement by statement:

* rows exactly, in order when the query's ORDER BY covers every output column,
  otherwise as multisets; a REAL and an INTEGER never match each other, and REALs
  match within a relative 1e-9 (sums may add in another order);
* errors: where SQLite succeeds tabledb must too; where SQLite fails tabledb must
  raise a ``tabledb.Error`` (any subclass). Anything else tabledb raises fails.

Environment: ``TABLEDB_DIFF_EXAMPLES`` scales every test's example count (soak runs),
``TABLEDB_DIFF_RANDOM=1`` draws fresh examples instead of the fixed derandomized
ones, ``TABLEDB_DIFF_TOLERATE="message|message"`` lets tabledb errors that contain
one of these pass (to look past a known bug), and ``TABLEDB_DIFF_ENGINE=sqlite`` puts SQLite on both sides, which checks the
generators themselves (SQLite against SQLite never differs).
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .sqlgen import TYPES, Case, Ctx, QueryBuilder, Schema, Statement, dml_cases, engine_under_test, query_cases

try:
    CONNECT, ENGINE_ERROR, ENGINE_NAME = engine_under_test()
except ImportError as exc:  # the SQL engine is not there yet
    pytest.skip(str(exc), allow_module_level=True)

SCALE = float(os.environ.get("TABLEDB_DIFF_EXAMPLES", "1"))
# Differences by design (docs/sql.md): a value is stored only if it converts without loss,
# so 2**53 + 1 does not go into a REAL column (SQLite's STRICT rounds it).
BY_DESIGN = ["not exactly representable as a REAL"]
# SQL leaves evaluation order open: over tables, one engine may reach abs(-2**63) or an
# overflowing sum() on a row the other filters out first, so that error may go either way.
ORDER_DEPENDENT_ERRORS = ["integer overflow"]
# While hunting bugs past a known one: "msg1|msg2" lets tabledb errors containing these pass.
TOLERATE = [m for m in os.environ.get("TABLEDB_DIFF_TOLERATE", "").split("|") if m]


# Hypothesis gives up shrinking one failure after 5 minutes (examples here are slow to
# replay); the timeout lets it finish that, and soak runs get time in proportion.
pytestmark = pytest.mark.timeout(max(900, int(300 * SCALE)))


def diff_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=os.environ.get("TABLEDB_DIFF_RANDOM") != "1",
        database=None,
        report_multiple_bugs=False,    # shrink one failure, not each (minutes apiece)
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# ----------------------------------------------------------------------------- comparing


def same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))


RANK = {type(None): 0, int: 1, float: 1, str: 2, bytes: 3}


def row_key(row: tuple) -> tuple:
    return tuple((RANK.get(type(v), 4), v if type(v) in RANK and v is not None else 0) for v in row)


def same_rows(expected: list[tuple], got: list[tuple], ordered: bool) -> bool:
    if len(expected) != len(got):
        return False
    if ordered:
        return all(same_row(a, b) for a, b in zip(expected, got))
    try:
        expected_sorted, got_sorted = sorted(expected, key=row_key), sorted(got, key=row_key)
    except TypeError:
        expected_sorted, got_sorted = expected, got
    if all(same_row(a, b) for a, b in zip(expected_sorted, got_sorted)):
        return True
    # Near-equal floats may sort apart: match row by row instead.
    remaining = list(got)
    for row in expected:
        match = next((i for i, other in enumerate(remaining) if same_row(row, other)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


def run_reference(conn: sqlite3.Connection, stmt: Statement, sql: str):
    try:
        cur = conn.execute(sql, stmt.params)
        return "ok", [tuple(r) for r in cur.fetchall()] if cur.description is not None else None
    except sqlite3.Error as exc:
        return "error", exc


def run_engine(conn, stmt: Statement):
    try:
        cur = conn.execute(stmt.sql, stmt.params)
        return "ok", [tuple(r) for r in cur.fetchall()] if cur.description is not None else None
    except ENGINE_ERROR as exc:
        return "error", exc


def show(outcome) -> str:
    status, value = outcome
    if status == "error":
        return f"error {type(value).__name__}: {value}"
    if value is None:
        return "ok (no result set)"
    shown = value[:20]
    more = f" ... ({len(value)} rows)" if len(value) > 20 else ""
    return f"{len(value)} rows {shown!r}{more}"


def check_statement(reference, engine, stmt: Statement, *, strict: bool = True) -> bool:
    """Compare one statement; False if the two databases may differ from here on."""
    sql = stmt.sql + " STRICT" if stmt.kind == "ddl" and stmt.sql.startswith("CREATE TABLE ") else stmt.sql
    expected = run_reference(reference, stmt, sql)
    got = run_engine(engine, stmt)        # anything but ENGINE_ERROR propagates and fails
    where = f"\n  statement: {stmt!r}\n  sqlite:  {show(expected)}\n  {ENGINE_NAME}: {show(got)}"
    if not strict and any(m in str(outcome[1]) for outcome in (expected, got) if outcome[0] == "error"
                          for m in ORDER_DEPENDENT_ERRORS):
        return expected[0] == got[0] or stmt.kind == "query"
    if expected[0] == "error":
        assert got[0] == "error", "SQLite refused a statement that tabledb accepted" + where
        return True
    if got[0] == "error" and any(m in str(got[1]) for m in BY_DESIGN + TOLERATE):
        return stmt.kind == "query"
    assert got[0] == "ok", "tabledb refused a statement that SQLite accepted" + where
    if stmt.kind == "query":
        assert got[1] is not None, "a query without a result set" + where
        assert same_rows(expected[1], got[1], stmt.ordered), "different rows" + where
    return True


def check_case(case: Case, *, strict: bool = True) -> None:
    """Run ``case`` on both; ``strict=False`` lets ORDER_DEPENDENT_ERRORS go either way."""
    reference = sqlite3.connect(":memory:", isolation_level=None)
    with tempfile.TemporaryDirectory(prefix="tabledb-diff-") as tmp:
        path = os.path.join(tmp, "db")
        engine = CONNECT(path)
        try:
            for stmt in case.setup + case.statements:
                if stmt.kind == "reopen":     # tabledb closes and opens the directory again
                    if ENGINE_NAME != "sqlite":
                        engine.close()
                        engine = CONNECT(path)
                    continue
                if not check_statement(reference, engine, stmt, strict=strict):
                    return        # a write went one way here and the other way there
        finally:
            engine.close()
            reference.close()


# ----------------------------------------------------------------------------- tests


@st.composite
def expression_cases(draw) -> Case:
    """SELECTs of constant expressions only: the functions and operators on their own."""
    builder = QueryBuilder(draw, Schema(()))
    ctx = Ctx({tc: [] for tc in TYPES})
    statements = []
    for _ in range(draw(st.integers(1, 5))):
        classes = [draw(st.sampled_from(TYPES + ("bool",))) for _ in range(draw(st.integers(1, 3)))]
        sql = "SELECT " + ", ".join(builder.expr(tc, ctx, draw(st.integers(1, 4))) for tc in classes)
        statements.append(builder.finish(sql))
    return Case(Schema(()), [], statements)


@diff_settings(200)
@given(case=expression_cases())
def test_expressions_match_sqlite(case):
    check_case(case)


@diff_settings(120)
@given(case=query_cases())
def test_queries_match_sqlite(case):
    check_case(case, strict=False)


@diff_settings(80)
@given(case=dml_cases())
def test_writes_match_sqlite(case):
    check_case(case, strict=False)
