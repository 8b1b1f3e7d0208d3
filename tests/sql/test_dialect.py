"""tabledb's sqlglot dialect: our statements as real nodes, SQLite's SQL unchanged."""

from __future__ import annotations

import datetime

import pytest
import sqlglot
from sqlglot import exp

from tabledb.errors import ProgrammingError
from tabledb.sql import dialect as d
from tabledb.sql.dialect import (
    Backup,
    Copy,
    DropBackup,
    Explain,
    Release,
    Restore,
    Savepoint,
    ShowBackups,
    ShowIndexes,
    ShowTables,
    VerifyBackup,
    parse,
    parse_one,
)


def roundtrip(node: exp.Expr) -> None:
    """node -> SQL -> node gives the same tree, and the SQL is a fixed point."""
    text = node.sql(dialect="tabledb")
    again = parse_one(text)
    assert again == node, (text, repr(again), repr(node))
    assert again.sql(dialect="tabledb") == text


def names(tables: list[exp.Table]) -> list[str]:
    return [table.sql(dialect="tabledb") for table in tables]


# ---------------------------------------------------------------- registration


def test_registered_with_sqlglot():
    node = sqlglot.parse_one("SHOW TABLES", read="tabledb")
    assert isinstance(node, ShowTables)
    assert isinstance(parse_one("SHOW TABLES"), ShowTables)
    assert issubclass(d.TableDB, sqlglot.Dialect)


def test_our_nodes_are_expressions_not_commands():
    for sql in ("BACKUP DATABASE TO 'x'", "SHOW BACKUPS FROM 'x'", "EXPLAIN SELECT 1",
                "SAVEPOINT a", "RELEASE a", "DROP BACKUP 'b' FROM 'x'", "SHOW TABLES"):
        node = parse_one(sql)
        assert isinstance(node, exp.Expression)
        assert not isinstance(node, exp.Command)


# ---------------------------------------------------------------------- BACKUP


def test_backup_database_plain():
    node = parse_one("BACKUP DATABASE TO '/backups/db'")
    assert isinstance(node, Backup)
    assert node.args["kind"] == "DATABASE"
    assert node.args["tables"] == []
    assert node.args["target"] == "/backups/db"
    assert node.target == "/backups/db"
    assert node.options() == {}
    assert node.sql(dialect="tabledb") == "BACKUP DATABASE TO '/backups/db'"
    roundtrip(node)


def test_backup_database_with_options():
    node = parse_one(
        "backup Database to 's3://bucket/p?endpoint_override=http://127.0.0.1:5000' "
        "With (Incremental = false, WAL_ARCHIVE = TRUE, label = 'it''s nightly', "
        "keep = 7, ratio = 0.5, delta = -3, nothing = NULL)"
    )
    assert isinstance(node, Backup)
    assert node.target == "s3://bucket/p?endpoint_override=http://127.0.0.1:5000"
    assert node.options() == {
        "incremental": False,
        "wal_archive": True,
        "label": "it's nightly",
        "keep": 7,
        "ratio": 0.5,
        "delta": -3,
        "nothing": None,
    }
    assert type(node.options()["keep"]) is int
    roundtrip(node)


def test_backup_tables():
    node = parse_one("BACKUP TABLE t, main.u, \"Odd Name\" TO 'x' WITH (label = 'l')")
    assert isinstance(node, Backup)
    assert node.args["kind"] == "TABLE"
    assert names(node.args["tables"]) == ["t", "main.u", '"Odd Name"']
    assert node.table_names == ["t", "u", "Odd Name"]
    assert node.options() == {"label": "l"}
    roundtrip(node)
    single = parse_one("BACKUP TABLE t TO 'x'")
    assert single.table_names == ["t"]
    roundtrip(single)


# ------------------------------------------------------------- SHOW / VERIFY / DROP


def test_show_backups():
    node = parse_one("show backups from 'file:///tmp/b'")
    assert isinstance(node, ShowBackups)
    assert node.args == {"target": "file:///tmp/b"}
    assert node.sql(dialect="tabledb") == "SHOW BACKUPS FROM 'file:///tmp/b'"
    roundtrip(node)


@pytest.mark.parametrize(
    "sql, backup, latest",
    [
        ("VERIFY BACKUP FROM 'x'", None, None),
        ("VERIFY BACKUP LATEST FROM 'x'", None, True),
        ("verify backup latest from 'x'", None, True),
        ("VERIFY BACKUP '20261125T150000-abcd' FROM 'x'", "20261125T150000-abcd", None),
        ("VERIFY BACKUP b1 FROM 'x'", "b1", None),
        ('VERIFY BACKUP "b 2" FROM \'x\'', "b 2", None),
        ("VERIFY BACKUP 42 FROM 'x'", "42", None),
        ("VERIFY BACKUP 'LATEST' FROM 'x'", "LATEST", None),  # a quoted id, not the keyword
    ],
)
def test_verify_backup(sql, backup, latest):
    node = parse_one(sql)
    assert isinstance(node, VerifyBackup)
    assert node.args["backup"] == backup
    assert node.args.get("latest") == latest
    assert node.target == "x"
    roundtrip(node)


def test_drop_backup():
    for sql, backup in [("DROP BACKUP '20261125T150000-abcd' FROM 'x'", "20261125T150000-abcd"),
                        ("drop backup b7 from 'x'", "b7"), ("DROP BACKUP 7 FROM 'x'", "7")]:
        node = parse_one(sql)
        assert isinstance(node, DropBackup)
        assert node.args == {"backup": backup, "target": "x"}
        roundtrip(node)
    assert parse_one("DROP BACKUP b FROM 'x'").sql(dialect="tabledb") == "DROP BACKUP 'b' FROM 'x'"


def test_a_bare_backup_id_as_backup_returns_it():
    """20261125T195258-0001 unquoted: tokenized as a number, a word, a dash and a number, glued back."""
    bid = "20261125T195258-0001"
    assert parse_one(f"DROP BACKUP {bid} FROM 'x'").args["backup"] == bid
    assert parse_one(f"VERIFY BACKUP {bid} FROM 'x'").args["backup"] == bid
    node = parse_one(f"RESTORE DATABASE FROM 'x' BACKUP {bid} AS OF SEQUENCE 5 INTO 'p'")
    assert node.args["backup"] == bid and node.args["as_of_sequence"] == 5
    assert parse_one(f"RESTORE TABLE t FROM 'x' BACKUP {bid}").args["backup"] == bid
    # tokens apart are not one id
    with pytest.raises(ProgrammingError):
        parse_one("DROP BACKUP 20261125 T1 FROM 'x'")


def test_show_tables_and_indexes():
    assert isinstance(parse_one("SHOW TABLES"), ShowTables)
    assert parse_one("show tables").args == {}
    plain = parse_one("SHOW INDEXES")
    assert isinstance(plain, ShowIndexes) and plain.args.get("this") is None
    node = parse_one("show indexes FROM t")
    assert isinstance(node, ShowIndexes) and node.this.name == "t"
    assert isinstance(parse_one("SHOW INDEX FROM t"), ShowIndexes)
    for sql in ("SHOW TABLES", "SHOW INDEXES", "SHOW INDEXES FROM t"):
        assert parse_one(sql).sql(dialect="tabledb") == sql
        roundtrip(parse_one(sql))


def test_describe():
    for sql in ("DESCRIBE t", "describe t", "DESC t", "DESC TABLE t", "DESCRIBE TABLE t"):
        node = parse_one(sql)
        assert isinstance(node, exp.Describe)
        assert isinstance(node.this, exp.Table) and node.this.name == "t"
        assert node.sql(dialect="tabledb") == "DESCRIBE t"
        roundtrip(node)


# --------------------------------------------------------------------- RESTORE


def test_restore_database_minimal():
    node = parse_one("RESTORE DATABASE FROM 'x' INTO '/tmp/new'")
    assert isinstance(node, Restore)
    assert node.args == {"kind": "DATABASE", "target": "x", "path": "/tmp/new"}
    assert node.table_name is None and node.new_name is None and node.as_of_datetime() is None
    roundtrip(node)


def test_restore_database_all_clauses():
    node = parse_one(
        "RESTORE DATABASE FROM 'x' BACKUP '20261125T150000-abcd' "
        "AS OF TIMESTAMP '2026-11-25T15:30:00Z' INTO 'p'"
    )
    assert node.args == {
        "kind": "DATABASE",
        "target": "x",
        "backup": "20261125T150000-abcd",
        "as_of_timestamp": "2026-11-25T15:30:00Z",
        "path": "p",
    }
    assert node.as_of_datetime() == datetime.datetime(2026, 11, 25, 15, 30, tzinfo=datetime.timezone.utc)
    roundtrip(node)

    seq = parse_one("restore database from 'x' latest as of sequence 1234 into 'p'")
    assert seq.args == {"kind": "DATABASE", "target": "x", "latest": True,
                        "as_of_sequence": 1234, "path": "p"}
    roundtrip(seq)

    backup_latest = parse_one("RESTORE DATABASE FROM 'x' BACKUP LATEST INTO 'p'")
    assert backup_latest.args.get("latest") is True and backup_latest.args.get("backup") is None
    roundtrip(backup_latest)

    plain_time = parse_one("RESTORE DATABASE FROM 'x' AS OF TIMESTAMP '2026-11-25 15:30:00' INTO 'p'")
    assert plain_time.as_of_datetime() == datetime.datetime(2026, 11, 25, 15, 30)


def test_restore_table():
    node = parse_one("RESTORE TABLE t AS t_restored FROM 'x' BACKUP b1 AS OF SEQUENCE 9")
    assert isinstance(node, Restore)
    assert node.args["kind"] == "TABLE"
    assert node.table_name == "t" and node.new_name == "t_restored"
    assert node.args["backup"] == "b1" and node.args["as_of_sequence"] == 9
    assert "path" not in node.args
    roundtrip(node)

    plain = parse_one("RESTORE TABLE t FROM 'x'")
    assert plain.table_name == "t" and plain.new_name is None
    assert set(plain.args) == {"kind", "this", "target"}
    roundtrip(plain)

    latest = parse_one("Restore Table t From 'x' Latest As Of Timestamp '2026-01-02'")
    assert latest.args["latest"] is True and latest.args["as_of_timestamp"] == "2026-01-02"
    roundtrip(latest)


# ---------------------------------------------------------------------- EXPLAIN


def test_explain_wraps_the_parsed_statement():
    node = parse_one("EXPLAIN SELECT a FROM t WHERE id = 1")
    assert isinstance(node, Explain)
    assert node.this == sqlglot.parse_one("SELECT a FROM t WHERE id = 1", read="sqlite")
    assert not node.args.get("query_plan")
    roundtrip(node)

    qp = parse_one("explain query plan DELETE FROM t WHERE id < 5")
    assert qp.args["query_plan"] is True and isinstance(qp.this, exp.Delete)
    assert qp.sql(dialect="tabledb") == "EXPLAIN QUERY PLAN DELETE FROM t WHERE id < 5"
    roundtrip(qp)

    inner = parse_one("EXPLAIN RESTORE TABLE t FROM 'x'")
    assert isinstance(inner.this, Restore)


# ---------------------------------------------------------------- transactions


def test_transactions_use_sqlglot_nodes():
    for sql in ("BEGIN", "begin transaction", "BEGIN IMMEDIATE", "BEGIN DEFERRED TRANSACTION"):
        assert isinstance(parse_one(sql), exp.Transaction)
    assert parse_one("BEGIN EXCLUSIVE").this == "EXCLUSIVE"
    for sql in ("COMMIT", "commit transaction", "END", "END TRANSACTION"):
        assert isinstance(parse_one(sql), exp.Commit)
    rollback = parse_one("ROLLBACK")
    assert isinstance(rollback, exp.Rollback) and rollback.args.get("savepoint") is None
    for sql in ("ROLLBACK TO SAVEPOINT sp1", "ROLLBACK TO sp1", "rollback transaction to savepoint sp1"):
        node = parse_one(sql)
        assert isinstance(node, exp.Rollback) and node.args["savepoint"].name == "sp1"
        roundtrip(node)
    for sql in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
        roundtrip(parse_one(sql))


def test_savepoint_and_release():
    node = parse_one("SAVEPOINT sp1")
    assert isinstance(node, Savepoint) and node.this == exp.to_identifier("sp1")
    roundtrip(node)
    quoted = parse_one('savepoint "my point"')
    assert quoted.this.name == "my point" and quoted.this.quoted
    roundtrip(quoted)
    for sql in ("RELEASE sp1", "RELEASE SAVEPOINT sp1", "release savepoint sp1"):
        rel = parse_one(sql)
        assert isinstance(rel, Release) and rel.this.name == "sp1"
        assert rel.sql(dialect="tabledb") == "RELEASE SAVEPOINT sp1"
        roundtrip(rel)


# ------------------------------------------------------------------------- COPY


def test_copy_export_and_import():
    out = parse_one("COPY t TO 'out.parquet'")
    assert isinstance(out, Copy) and isinstance(out, exp.Copy)
    assert out.this.name == "t" and out.file == "out.parquet"
    assert out.is_import is False and out.options() == {}
    assert out.sql(dialect="tabledb") == "COPY t TO 'out.parquet'"
    roundtrip(out)

    inp = parse_one("copy t from 'in.csv' with (FORMAT = 'csv', header = true, delimiter = ';')")
    assert inp.is_import is True and inp.file == "in.csv"
    assert inp.options() == {"format": "csv", "header": True, "delimiter": ";"}
    assert inp.sql(dialect="tabledb") == \
        "COPY t FROM 'in.csv' WITH (format = 'csv', header = TRUE, delimiter = ';')"
    roundtrip(inp)

    query = parse_one("COPY (SELECT a FROM t WHERE a > 1) TO 'q.csv'")
    assert isinstance(query.this, exp.Subquery) and query.file == "q.csv"
    roundtrip(query)


# -------------------------------------------------------------------- many / empty


def test_multiple_statements_return_a_list():
    trees = parse("BEGIN; INSERT INTO t VALUES (1); SAVEPOINT a;\nBACKUP DATABASE TO 'x'; COMMIT;")
    assert [type(tree) for tree in trees] == [exp.Transaction, exp.Insert, Savepoint, Backup, exp.Commit]
    assert parse("") == []
    assert parse(" ; ;") == []
    assert len(parse("SELECT 1;; SELECT 2")) == 2
    with pytest.raises(ProgrammingError):
        parse_one("SELECT 1; SELECT 2")
    with pytest.raises(ProgrammingError):
        parse_one("")


# ------------------------------------------------------------------ ordinary SQL


ORDINARY_SQL = [
    "SELECT 1",
    "SELECT a, b AS c FROM t AS x WHERE a > 1 AND b IS NOT NULL ORDER BY 2 DESC NULLS LAST LIMIT 10 OFFSET 5",
    "SELECT DISTINCT tag, count(*), sum(score), avg(score), total(score), group_concat(DISTINCT name) "
    "FROM t GROUP BY tag HAVING count(*) > 1",
    "SELECT CASE WHEN a = 1 THEN 'x' ELSE 'y' END, CASE a WHEN 1 THEN 2 END, CAST(a AS TEXT) FROM t",
    "SELECT * FROM t WHERE a BETWEEN 1 AND 5 AND b IN (1, 2) "
    "AND c IN (SELECT c FROM u) AND EXISTS (SELECT 1)",
    "SELECT a || b, name LIKE 'a%', name GLOB 'a*', abs(-1), coalesce(a, 0), "
    "nullif(a, 1), ifnull(a, 2) FROM t",
    "SELECT length(s), lower(s), upper(s), substr(s, 1, 2), replace(s, 'a', 'b'), "
    "trim(s), round(x, 2), typeof(x) FROM t",
    "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c ON c.id = b.id CROSS JOIN d, e WHERE e.x = a.x",
    "SELECT (SELECT max(x) FROM u WHERE u.id = t.id) FROM (SELECT * FROM t) AS s",
    "SELECT a FROM t UNION ALL SELECT a FROM u EXCEPT SELECT a FROM v INTERSECT SELECT a FROM w",
    "SELECT 7 / 2, 1 / 0, a % 3 FROM t",
    "INSERT INTO t (b, a) VALUES (1, 'x'), (2, 'y')",
    "INSERT INTO t SELECT * FROM u",
    "INSERT OR REPLACE INTO t VALUES (1, 2)",
    "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
    "INSERT INTO t (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = excluded.n",
    "UPDATE t SET a = a + 1, b = 'x' WHERE id = 3",
    "DELETE FROM t WHERE id >= 10 AND id < 20",
    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "score REAL DEFAULT 0, tag VARCHAR(10) CHECK (tag <> ''), b BLOB, ok BOOLEAN, d DATE, ts TIMESTAMP)",
    "CREATE TABLE p (a INT, b TEXT, PRIMARY KEY (a, b))",
    "CREATE TABLE c AS SELECT * FROM t",
    "CREATE UNIQUE INDEX i ON t (a, b DESC)",
    "CREATE INDEX IF NOT EXISTS j ON t (a)",
    "CREATE VIEW v AS SELECT a FROM t",
    "ALTER TABLE t ADD COLUMN z INTEGER",
    "ALTER TABLE t RENAME TO u",
    "DROP TABLE IF EXISTS t",
    "DROP INDEX IF EXISTS i",
    "DROP VIEW IF EXISTS v",
    "TRUNCATE TABLE t",
    "SELECT * FROM t WHERE name = ? AND id = :id",
    "SELECT explain, show, backup, restore, verify, savepoint, release FROM t",
]


@pytest.mark.parametrize("sql", ORDINARY_SQL)
def test_ordinary_sql_parses_as_sqlite_does(sql):
    ours = parse(sql)
    theirs = sqlglot.parse(sql, read="sqlite")
    assert ours == theirs
    assert [tree.sql(dialect="tabledb") for tree in ours] == [tree.sql(dialect="sqlite") for tree in theirs]


# ----------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "sql, line, col",
    [
        ("BACKUP DATABASE 'x'", 1, 17),
        ("BACKUP 'x'", 1, 8),
        ("BACKUP DATABASE TO x", 1, 20),
        ("BACKUP TABLE TO 'x'", 1, 17),
        ("BACKUP DATABASE TO 'x' WITH (a = b)", 1, 34),
        ("BACKUP DATABASE TO 'x' WITH (a = 1, a = 2)", 1, 37),
        ("BACKUP DATABASE TO 'x' WITH (a 1)", 1, 32),
        ("BACKUP DATABASE TO 'x' WITH (a = 1", 1, 35),
        ("BACKUP DATABASE TO 'x' junk", 1, 24),
        ("RESTORE DATABASE FROM 'x' AS OF SEQUENCE abc INTO 'p'", 1, 42),
        ("RESTORE DATABASE FROM 'x' AS OF SEQUENCE 1.5 INTO 'p'", 1, 42),
        ("RESTORE DATABASE FROM 'x' AS OF TIMESTAMP 'yesterday' INTO 'p'", 1, 43),
        ("RESTORE DATABASE FROM 'x' AS OF 5 INTO 'p'", 1, 33),
        ("RESTORE DATABASE FROM 'x'", 1, 26),
        ("RESTORE TABLE t FROM 'x' INTO 'p'", 1, 26),
        ("RESTORE t FROM 'x'", 1, 9),
        ("VERIFY BACKUP FROM", 1, 19),
        ("VERIFY 'x'", 1, 8),
        ("SHOW BACKUPS 'x'", 1, 14),
        ("SHOW", 1, 5),
        ("SHOW GRANTS", 1, 6),
        ("DROP BACKUP FROM 'x'", 1, 13),
        ("DROP BACKUP LATEST FROM 'x'", 1, 13),
        ("EXPLAIN", 1, 8),
        ("SAVEPOINT", 1, 10),
        ("RELEASE SAVEPOINT 'x'", 1, 19),
        ("COPY t 'f.csv'", 1, 8),
        ("COPY t TO f", 1, 11),
        ("SELECT 1;\nSELECT * FROM t WHERE", 2, 22),
        ("SELECT 1;\n\n  restore table t from", 3, 23),
        ("SELECT 'unterminated", 1, 8),
        ("SELECT 1 /* open comment", 1, 10),
        ("SELECT 1;\n  SELECT \"open", 2, 10),
    ],
)
def test_syntax_errors_carry_line_and_column(sql, line, col):
    with pytest.raises(ProgrammingError) as info:
        parse(sql)
    error = info.value
    assert isinstance(error, d.SQLSyntaxError)
    assert not isinstance(error, sqlglot.errors.SqlglotError)
    assert (error.line, error.col) == (line, col), str(error)
    assert f"line {line}, column {col}" in str(error)


def test_sqlglot_errors_never_escape():
    for sql in ("SELECT (", "))", "INSERT INTO", "CREATE TABLE (", "SELECT * FROM t WHERE a = = 1",
                "WITH", "BACKUP", "RESTORE", "COPY", "SELECT 'a", "DESCRIBE", "SHOW INDEXES FROM"):
        with pytest.raises(ProgrammingError):
            parse(sql)


MUTATION_SEEDS = [
    "BACKUP TABLE t, u TO 'x' WITH (incremental = true, label = 'a')",
    "RESTORE DATABASE FROM 'x' BACKUP 'b' AS OF TIMESTAMP '2026-01-01T00:00:00' INTO 'p'",
    "RESTORE TABLE t AS u FROM 'x' LATEST AS OF SEQUENCE 5",
    "VERIFY BACKUP LATEST FROM 'x'; DROP BACKUP b FROM 'x'; SHOW BACKUPS FROM 'x'",
    "EXPLAIN QUERY PLAN SELECT a FROM t WHERE b IN (1, 2) ORDER BY a",
    "COPY t FROM 'f.csv' WITH (format = 'csv', header = true)",
    "BEGIN; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s; COMMIT",
]


def test_mutated_statements_only_raise_programming_error():
    """Drop, duplicate or swap tokens of valid statements: a tree or a ProgrammingError."""
    import random

    rng = random.Random(1234)
    for _ in range(600):
        words = rng.choice(MUTATION_SEEDS).split(" ")
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0:
            del words[i]
        elif op == 1:
            words.insert(i, words[j])
        elif op == 2:
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = words[i][: rng.randrange(len(words[i]) + 1)]
        sql = " ".join(words)
        try:
            trees = parse(sql)
        except ProgrammingError:
            continue
        for tree in trees:  # whatever parsed must also generate and re-parse
            parse(tree.sql(dialect="tabledb"))
