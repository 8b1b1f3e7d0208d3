"""INSERT ... ON CONFLICT (target): the target must be the primary key or one UNIQUE constraint
(columns in any order), and only a conflict on it takes the action; differential against sqlite3."""

from __future__ import annotations

import sqlite3

import pytest

import tabledb

SCHEMA = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, u INTEGER UNIQUE, a INTEGER, b INTEGER, n INTEGER)",
    "CREATE UNIQUE INDEX t_ab ON t(a, b)",
    "CREATE INDEX t_n ON t(n)",
    "INSERT INTO t VALUES (1, 10, 1, 1, 0), (2, 20, 2, 2, 0), (3, NULL, 3, NULL, 0)",
]

STATEMENTS = [
    # the primary key as target
    "INSERT INTO t VALUES (1, 11, 5, 5, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1",
    "INSERT INTO t VALUES (1, 20, 5, 5, 1) ON CONFLICT (id) DO UPDATE SET n = 9",        # then u clashes
    "INSERT INTO t VALUES (4, 10, 5, 5, 1) ON CONFLICT (id) DO UPDATE SET n = 9",        # u: not the target
    "INSERT INTO t VALUES (4, 10, 5, 5, 1) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO t VALUES (2, 99, 7, 7, 1) ON CONFLICT (id) DO NOTHING",
    # a UNIQUE column
    "INSERT INTO t VALUES (5, 10, 6, 6, 1) ON CONFLICT (u) DO UPDATE SET n = excluded.id",
    "INSERT INTO t VALUES (2, 99, 6, 6, 1) ON CONFLICT (u) DO UPDATE SET n = 7",          # id: not the target
    "INSERT INTO t VALUES (1, 10, 6, 6, 1) ON CONFLICT (u) DO NOTHING",                  # both: u is one
    "INSERT INTO t VALUES (6, 20, 6, 6, 1) ON CONFLICT (u) DO NOTHING",
    "INSERT INTO t VALUES (7, NULL, 8, 8, 1) ON CONFLICT (u) DO NOTHING",                # NULLs never clash
    # a UNIQUE index of two columns, named in either order
    "INSERT INTO t VALUES (8, 80, 1, 1, 1) ON CONFLICT (a, b) DO UPDATE SET n = 42",
    "INSERT INTO t VALUES (9, 90, 2, 2, 1) ON CONFLICT (b, a) DO UPDATE SET n = 43 WHERE n = 0",
    "INSERT INTO t VALUES (9, 91, 2, 2, 1) ON CONFLICT (b, a) DO UPDATE SET n = 44 WHERE n = 0",
    "INSERT INTO t VALUES (10, 20, 9, 9, 1) ON CONFLICT (a, b) DO UPDATE SET n = 1",     # u: not the target
    "INSERT INTO t VALUES (11, 110, 3, NULL, 1) ON CONFLICT (a, b) DO NOTHING",          # NULL b: no clash
    # targets that name no constraint, or no column
    "INSERT INTO t VALUES (12, 120, 12, 12, 1) ON CONFLICT (a) DO NOTHING",
    "INSERT INTO t VALUES (12, 120, 12, 12, 1) ON CONFLICT (n) DO UPDATE SET n = 1",
    "INSERT INTO t VALUES (12, 120, 12, 12, 1) ON CONFLICT (id, u) DO NOTHING",
    "INSERT INTO t VALUES (12, 120, 12, 12, 1) ON CONFLICT (nope) DO NOTHING",
    # no target: any conflict
    "INSERT INTO t VALUES (1, 20, 1, 1, 1) ON CONFLICT DO NOTHING",
    "INSERT INTO t VALUES (13, 20, 13, 13, 1) ON CONFLICT DO UPDATE SET n = 77",
    # several rows, the second one clashing off target: the statement fails whole
    "INSERT INTO t VALUES (14, 140, 14, 14, 1), (15, 10, 15, 15, 1) ON CONFLICT (id) DO NOTHING",
]

# sqlite3 says OperationalError for a bad target; tabledb's bad SQL is ProgrammingError (PEP 249)
SAME_ERROR = {sqlite3.IntegrityError: tabledb.IntegrityError, sqlite3.OperationalError: tabledb.ProgrammingError}


def state(conn):
    return conn.execute("SELECT * FROM t ORDER BY id").fetchall()


@pytest.mark.parametrize("sql", STATEMENTS)
def test_on_conflict_target_matches_sqlite(sql):
    ref = sqlite3.connect(":memory:", isolation_level=None)
    ours = tabledb.connect(":memory:", autocommit=True)
    for stmt in SCHEMA:
        ref.execute(stmt)
        ours.execute(stmt)
    try:
        ref.execute(sql)
        want_error = None
    except sqlite3.Error as exc:
        want_error = (SAME_ERROR[type(exc)], str(exc))
    before = state(ours)
    if want_error is None:
        ours.execute(sql)
    else:
        with pytest.raises(want_error[0]) as info:
            ours.execute(sql)
        if want_error[0] is tabledb.IntegrityError:
            assert str(info.value) == want_error[1]
        assert state(ours) == before, "a failed statement changed the table"
    assert state(ours) == state(ref)
    # the indexes still agree with the rows
    for q in ("SELECT id FROM t WHERE u = 20", "SELECT id FROM t WHERE a = 1 AND b = 1",
              "SELECT id, n FROM t WHERE n = 1 ORDER BY id"):
        assert ours.execute(q).fetchall() == ref.execute(q).fetchall(), q


def test_a_bad_target_names_the_problem():
    conn = tabledb.connect(":memory:", autocommit=True)
    conn.execute(SCHEMA[0])
    with pytest.raises(tabledb.ProgrammingError, match="does not match any PRIMARY KEY or UNIQUE constraint"):
        conn.execute("INSERT INTO t VALUES (1, 1, 1, 1, 1) ON CONFLICT (a) DO NOTHING")
    assert state(conn) == []
