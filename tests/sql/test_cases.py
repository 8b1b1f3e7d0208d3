"""Run the SQL case files in tests/sql/cases/ (format: tests/sql/casefile.py).

One test per file, each on a fresh database in one connection. A failure lists
every record that did not match, as ``file:line: SQL`` and a diff.

    pytest tests/sql/test_cases.py                      # against tabledb
    pytest tests/sql/test_cases.py -k joins             # one file
    pytest tests/sql/test_cases.py --rewrite            # accept actual output
    TABLEDB_CASES_ORACLE=sqlite3 pytest tests/sql/test_cases.py

TABLEDB_CASES_ORACLE=sqlite3 runs the files against Python's sqlite3 instead,
skipping ``onlyif tabledb`` / ``skipif sqlite3`` records and ``require tabledb``
files: every portable record must pass there too. With --rewrite it bootstraps
expected rows from SQLite.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .casefile import TARGETS, CaseFileError, oracle_name, parse, rewrite_requested, run_file

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES.glob("*.test"))
MAX_REPORTED = 25


@pytest.fixture
def rewrite(request) -> bool:
    try:
        flag = bool(request.config.getoption("rewrite"))
    except ValueError:  # conftest loaded after option parsing: only the env var
        flag = False
    return rewrite_requested(flag)


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_file(path: Path, tmp_path: Path, rewrite: bool):
    engine = oracle_name()
    case = parse(path)
    if case.require and engine not in case.require:
        pytest.skip(f"{path.name} requires {', '.join(case.require)}")
    target = TARGETS[engine](tmp_path, case.autocommit)
    result = run_file(case, target)
    failures = result.failures
    if rewrite and result.new_lines is not None:
        path.write_text("\n".join(result.new_lines) + "\n", encoding="utf-8")
        failures = result.unfixable
    if failures:
        shown = failures[:MAX_REPORTED]
        more = len(failures) - len(shown)
        report = "\n\n".join(shown) + (f"\n\n... and {more} more" if more else "")
        pytest.fail(f"{len(failures)} of {result.ran} records failed on {engine}:\n\n{report}",
                    pytrace=False)


# ------------------------------------------------- the harness itself, on sqlite3

HARNESS_CASE = """\
# a comment
statement ok
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)

statement count 9
INSERT INTO t VALUES (1, 'x'), (2, NULL)

statement error IntegrityError wrong message
INSERT INTO t VALUES (1, 'y')

statement ok
SELECT * FROM nosuch

onlyif tabledb
statement ok
TRUNCATE t

query rowsort colnames
SELECT b, a FROM t
----

query
params (2,)
SELECT a FROM t WHERE a = ?
----
(7,)
"""

HARNESS_REWRITTEN = """\
# a comment
statement ok
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)

statement count 2
INSERT INTO t VALUES (1, 'x'), (2, NULL)

statement error IntegrityError UNIQUE constraint failed: t.a
INSERT INTO t VALUES (1, 'y')

statement error ProgrammingError no such table: nosuch
SELECT * FROM nosuch

onlyif tabledb
statement ok
TRUNCATE t

query rowsort colnames
SELECT b, a FROM t
----
columns ('b', 'a')
('x', 1)
(None, 2)

query
params (2,)
SELECT a FROM t WHERE a = ?
----
(2,)
"""


def test_harness_rewrites_every_kind_of_record(tmp_path: Path):
    path = tmp_path / "harness.test"
    path.write_text(HARNESS_CASE, encoding="utf-8")
    result = run_file(parse(path), TARGETS["sqlite3"](tmp_path, autocommit=True))
    assert (result.ran, result.skipped, len(result.failures), result.unfixable) == (6, 1, 5, [])
    assert "\n".join(result.new_lines) + "\n" == HARNESS_REWRITTEN

    path.write_text(HARNESS_REWRITTEN, encoding="utf-8")
    again = run_file(parse(path), TARGETS["sqlite3"](tmp_path / "again", autocommit=True))
    assert again.failures == [] and again.new_lines is None


@pytest.mark.parametrize("text, message", [
    ("statement maybe\nSELECT 1\n", "statement ok|count N|error"),
    ("query\nSELECT 1\n", "query without ----"),
    ("statement ok\nSELECT 1\n----\n", "---- after a statement"),
    ("statement ok\n\n", "record without SQL"),
    ("statement ok\nSELECT 1\n\nrequire tabledb\n", "before the first record"),
    ("onlyif postgres\nstatement ok\nSELECT 1\n", "onlyif tabledb|sqlite3"),
])
def test_malformed_case_files_name_the_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.test"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CaseFileError, match=re.escape(message)) as info:
        parse(path)
    assert str(info.value).startswith("bad.test:")
