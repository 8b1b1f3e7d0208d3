"""SQL case files: parse them, run them against an engine, rewrite their expectations.

A case file (``tests/sql/cases/*.test``) is a list of records separated by blank
lines, in the spirit of sqllogictest. Lines starting with ``#`` between records
are comments.

    # a comment
    statement ok
    CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)

    statement count 2
    INSERT INTO t VALUES (1, 'x'), (2, NULL)

    statement error IntegrityError UNIQUE constraint failed
    INSERT INTO t VALUES (1, 'y')

    query rowsort
    SELECT a, b FROM t
    ----
    (1, 'x')
    (2, None)

Records
    statement ok                      the SQL runs without error
    statement count N                 ... and the cursor's rowcount is N
    statement error CLASS [MESSAGE]   the SQL raises CLASS (an exception class name
                                      anywhere in its MRO, e.g. ProgrammingError also
                                      matches SQLSyntaxError) whose message contains
                                      MESSAGE, compared case-insensitively
    query [rowsort] [colnames]        the SQL's rows, one ``repr(tuple(row))`` a line
                                      after ``----``; ``rowsort`` sorts the rendered
                                      lines (otherwise order matters: use ORDER BY);
                                      ``colnames`` adds a first line
                                      ``columns ('a', 'b')`` from cursor.description
    connection commit                 call conn.commit()
    connection rollback               call conn.rollback()
    connection reopen                 close the connection (no commit) and open a new
                                      one on the same database
    halt                              stop reading the file here

The SQL of a record is every line up to the next blank line (or ``----`` in a
query). A line ``params <python literal>`` straight after the record's first line
gives the parameters for execute(); the literal may use ``datetime``.

Conditions, on their own lines just before a record:
    onlyif ENGINE     run the next record on ENGINE only
    skipif ENGINE     run the next record everywhere except on ENGINE
ENGINE is ``tabledb`` or ``sqlite3`` (the oracle: see test_cases.py).

File directives, before the first record:
    require ENGINE              the whole file runs on ENGINE only
    connection autocommit off   connect with sqlite3-style implicit transactions
                                (default: autocommit on, each statement commits)

Each file runs in one connection on a fresh database.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import os
import sqlite3
import traceback
from pathlib import Path
from typing import Any

ENGINES = ("tabledb", "sqlite3")


class CaseFileError(Exception):
    """The case file itself is malformed; the message names file and line."""


@dataclasses.dataclass
class Record:
    """One record of a case file. ``line`` is the 1-based line of its first line."""

    kind: str                      # statement, query, commit, rollback, reopen
    line: int
    sql: str = ""
    params: Any = ()
    onlyif: tuple[str, ...] = ()
    skipif: tuple[str, ...] = ()
    # statement
    expect: str = "ok"             # ok, count, error
    count: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    # query
    rowsort: bool = False
    colnames: bool = False
    expected: list[str] = dataclasses.field(default_factory=list)
    # 0-based [start, end) of the result lines in the file, for --rewrite
    result_span: tuple[int, int] | None = None

    def runs_on(self, engine: str) -> bool:
        if self.onlyif and engine not in self.onlyif:
            return False
        return engine not in self.skipif


@dataclasses.dataclass
class CaseFile:
    path: Path
    lines: list[str]
    records: list[Record]
    require: tuple[str, ...] = ()
    autocommit: bool = True


def _params(text: str, where: str) -> Any:
    namespace = {"datetime": datetime, "__builtins__": {}}
    try:
        value = eval(text, namespace)  # noqa: S307 - test data written by us
    except Exception as exc:  # pragma: no cover - a broken case file
        raise CaseFileError(f"{where}: bad params {text!r}: {exc}") from exc
    return value


def parse(path: Path) -> CaseFile:
    """Read a case file into records. Raises CaseFileError on a malformed file."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    case = CaseFile(path=path, lines=lines, records=[])
    onlyif: list[str] = []
    skipif: list[str] = []
    i = 0

    def where(index: int) -> str:
        return f"{path.name}:{index + 1}"

    def take_sql(start: int, stop_at_dashes: bool) -> tuple[str, int]:
        j = start
        body: list[str] = []
        while j < len(lines) and lines[j].strip() != "":
            if lines[j].strip() == "----":
                if not stop_at_dashes:
                    raise CaseFileError(f"{where(j)}: ---- after a statement")
                break
            body.append(lines[j])
            j += 1
        if not body:
            raise CaseFileError(f"{where(start - 1)}: record without SQL")
        return "\n".join(body), j

    while i < len(lines):
        raw = lines[i]
        text = raw.strip()
        words = text.split()
        if not text or text.startswith("#"):
            i += 1
            continue
        if words[0] in ("onlyif", "skipif"):
            if len(words) != 2 or words[1] not in ENGINES:
                raise CaseFileError(f"{where(i)}: expected '{words[0]} tabledb|sqlite3'")
            (onlyif if words[0] == "onlyif" else skipif).append(words[1])
            i += 1
            continue
        if words[0] == "require":
            if case.records or len(words) != 2 or words[1] not in ENGINES:
                raise CaseFileError(f"{where(i)}: 'require ENGINE' belongs before the first record")
            case.require = case.require + (words[1],)
            i += 1
            continue
        if words[0] == "halt":
            break
        conds = {"onlyif": tuple(onlyif), "skipif": tuple(skipif)}
        onlyif, skipif = [], []
        if words[0] == "connection":
            if words[1:] in (["autocommit", "off"], ["autocommit", "on"]):
                if case.records:
                    raise CaseFileError(f"{where(i)}: 'connection autocommit' belongs before the first record")
                case.autocommit = words[2] == "on"
            elif len(words) == 2 and words[1] in ("commit", "rollback", "reopen"):
                case.records.append(Record(kind=words[1], line=i + 1, **conds))
            else:
                raise CaseFileError(f"{where(i)}: unknown connection directive {text!r}")
            i += 1
            continue
        if words[0] not in ("statement", "query"):
            raise CaseFileError(f"{where(i)}: expected a record, got {text!r}")
        record = Record(kind=words[0], line=i + 1, **conds)
        if words[0] == "statement":
            if len(words) < 2 or words[1] not in ("ok", "count", "error"):
                raise CaseFileError(f"{where(i)}: expected 'statement ok|count N|error CLASS [MESSAGE]'")
            record.expect = words[1]
            if words[1] == "count":
                if len(words) != 3 or not words[2].lstrip("-").isdigit():
                    raise CaseFileError(f"{where(i)}: expected 'statement count N'")
                record.count = int(words[2])
            elif words[1] == "error":
                if len(words) < 3:
                    raise CaseFileError(f"{where(i)}: 'statement error' needs an error class")
                record.error_class = words[2]
                rest = text.split(None, 3)
                record.error_message = rest[3] if len(rest) > 3 else None
            elif len(words) != 2:
                raise CaseFileError(f"{where(i)}: unexpected words after 'statement ok'")
        else:
            for option in words[1:]:
                if option == "rowsort":
                    record.rowsort = True
                elif option == "colnames":
                    record.colnames = True
                elif option != "nosort":
                    raise CaseFileError(f"{where(i)}: unknown query option {option!r}")
        i += 1
        if i < len(lines) and lines[i].startswith("params "):
            record.params = _params(lines[i][len("params "):], where(i))
            i += 1
        record.sql, i = take_sql(i, stop_at_dashes=record.kind == "query")
        if record.kind == "query":
            if i >= len(lines) or lines[i].strip() != "----":
                raise CaseFileError(f"{where(record.line - 1)}: query without ----")
            i += 1
            start = i
            while i < len(lines) and lines[i].strip() != "":
                i += 1
            record.expected = lines[start:i]
            record.result_span = (start, i)
        case.records.append(record)
    return case


# ------------------------------------------------------------------- engines


class Target:
    """One engine under test: opens connections and names its errors."""

    name = ""

    def __init__(self, directory: Path, autocommit: bool):
        self.directory = directory
        self.autocommit = autocommit
        self.conn = self.open()

    def open(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def reopen(self) -> None:
        self.close()
        self.conn = self.open()

    def error_matches(self, exc: BaseException, class_name: str) -> bool:
        return any(klass.__name__ == class_name for klass in type(exc).__mro__)

    def error_class_name(self, exc: BaseException) -> str:
        return type(exc).__name__


class TableDBTarget(Target):
    name = "tabledb"

    def open(self) -> Any:
        import tabledb

        if not hasattr(tabledb, "connect"):
            raise RuntimeError("tabledb.connect does not exist yet")
        return tabledb.connect(str(self.directory / "db"), autocommit=self.autocommit)

    def error_class_name(self, exc: BaseException) -> str:
        # Name the PEP 249 class, the one case files use, not a private subclass.
        for klass in type(exc).__mro__:
            if klass.__name__ in ("DataError", "OperationalError", "IntegrityError",
                                  "InternalError", "ProgrammingError", "NotSupportedError",
                                  "InterfaceError"):
                return klass.__name__
        return type(exc).__name__


# sqlite3 says OperationalError where tabledb says ProgrammingError (bad SQL,
# unknown names); these message fragments tell the two apart.
_SQLITE_PROGRAMMING = ("syntax error", "no such", "ambiguous column", "incomplete input",
                       "has no column", "columns but", "values for", "unrecognized token",
                       "misuse of", "wrong number of arguments", "already exists",
                       "must contain", "do not have the same number", "is not unique")


class SQLiteTarget(Target):
    """Python's sqlite3 as the oracle, tables created exactly as written."""

    name = "sqlite3"

    def open(self) -> Any:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.directory / "oracle.sqlite"),
                               isolation_level=None if self.autocommit else "DEFERRED")
        conn.execute("PRAGMA synchronous = OFF")
        return conn

    def error_matches(self, exc: BaseException, class_name: str) -> bool:
        if class_name == "ProgrammingError" and isinstance(exc, sqlite3.OperationalError):
            return True
        return super().error_matches(exc, class_name)

    def error_class_name(self, exc: BaseException) -> str:
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            if any(fragment in text for fragment in _SQLITE_PROGRAMMING):
                return "ProgrammingError"
        return type(exc).__name__


TARGETS = {"tabledb": TableDBTarget, "sqlite3": SQLiteTarget}


# -------------------------------------------------------------------- runner


def render(row: Any) -> str:
    return repr(tuple(row))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _describe(exc: BaseException) -> str:
    """``Class: message``; for a crash (not a DB-API error) also where it happened."""
    text = f"{type(exc).__name__}: {_first_line(exc)}"
    if not any(klass.__name__ == "Error" for klass in type(exc).__mro__):
        frames = traceback.format_exception(exc)
        text += "\n" + "".join(frames[-4:]).rstrip()
    return text


@dataclasses.dataclass
class Outcome:
    """What one record did: a failure text (None if it matched) and any rewrite."""

    failure: str | None = None
    header: str | None = None          # replacement for the record's first line
    result: list[str] | None = None    # replacement for its result lines


def run_record(target: Target, record: Record) -> Outcome:
    conn = target.conn
    if record.kind in ("commit", "rollback"):
        try:
            getattr(conn, record.kind)()
        except Exception as exc:
            return Outcome(failure=f"connection {record.kind} raised {_describe(exc)}")
        return Outcome()
    if record.kind == "reopen":
        target.reopen()
        return Outcome()

    error: BaseException | None = None
    rows: list[Any] = []
    names: tuple[str, ...] = ()
    rowcount = None
    try:
        cur = conn.execute(record.sql, record.params)
        rowcount = cur.rowcount
        if cur.description is not None:
            names = tuple(column[0] for column in cur.description)
            rows = cur.fetchall()
    except Exception as exc:  # every engine error is data here
        error = exc

    if record.kind == "query":
        if error is not None:
            return Outcome(failure=f"query raised {_describe(error)}")
        got = [render(row) for row in rows]
        if record.rowsort:
            got.sort()
        if record.colnames:
            got.insert(0, f"columns {names!r}")
        if got == record.expected:
            return Outcome()
        diff = "\n".join(difflib.unified_diff(record.expected, got, "expected", "got", lineterm="", n=2))
        return Outcome(failure=diff, result=got)

    actual_header = _statement_header(target, record, error, rowcount)
    if record.expect == "error":
        if error is not None and target.error_matches(error, record.error_class) and (
                record.error_message is None
                or record.error_message.lower() in str(error).lower()):
            return Outcome()
        got = _describe(error) if error is not None else "no error"
        return Outcome(failure=f"expected {record.error_class}"
                               f"{': ' + record.error_message if record.error_message else ''}"
                               f"\n     got {got}", header=actual_header)
    if error is not None:
        return Outcome(failure=f"raised {_describe(error)}", header=actual_header)
    if record.expect == "count" and rowcount != record.count:
        return Outcome(failure=f"expected rowcount {record.count}, got {rowcount}",
                       header=actual_header)
    return Outcome()


def _statement_header(target: Target, record: Record, error: BaseException | None,
                      rowcount: int | None) -> str:
    if error is None:
        return f"statement count {rowcount}" if record.expect == "count" else "statement ok"
    if (record.expect == "error" and target.error_matches(error, record.error_class)
            and record.error_message
            and record.error_message.lower() in str(error).lower()):
        return f"statement error {record.error_class} {record.error_message}"
    name = (record.error_class if record.expect == "error"
            and target.error_matches(error, record.error_class)
            else target.error_class_name(error))
    message = _first_line(error)
    return f"statement error {name} {message}".rstrip()


@dataclasses.dataclass
class FileResult:
    failures: list[str]
    unfixable: list[str]               # failures that --rewrite cannot fix
    ran: int
    skipped: int
    new_lines: list[str] | None        # the rewritten file, if anything changed


def run_file(case: CaseFile, target: Target) -> FileResult:
    """Run every record that applies to ``target``; collect failures and rewrites."""
    failures: list[str] = []
    unfixable: list[str] = []
    header_changes: dict[int, str] = {}
    result_changes: dict[tuple[int, int], list[str]] = {}
    ran = skipped = 0
    try:
        for record in case.records:
            if not record.runs_on(target.name):
                skipped += 1
                continue
            ran += 1
            outcome = run_record(target, record)
            if outcome.failure is None:
                continue
            sql = record.sql.replace("\n", "\n    ")
            failures.append(f"{case.path.name}:{record.line}: {sql}\n{outcome.failure}")
            if outcome.header is None and outcome.result is None:
                unfixable.append(failures[-1])
            if outcome.header is not None:
                header_changes[record.line - 1] = outcome.header
            if outcome.result is not None and record.result_span is not None:
                result_changes[record.result_span] = outcome.result
    finally:
        target.close()

    new_lines = None
    if header_changes or result_changes:
        new_lines = []
        spans = {start: (end, rows) for (start, end), rows in result_changes.items()}
        i = 0
        while i < len(case.lines):
            if i in spans:
                end, rows = spans.pop(i)
                new_lines.extend(rows)
                if end > i:
                    i = end
                    continue
            new_lines.append(header_changes.get(i, case.lines[i]))
            i += 1
        for _end, rows in spans.values():  # a query with no result lines, at the end
            new_lines.extend(rows)
    return FileResult(failures=failures, unfixable=unfixable, ran=ran, skipped=skipped, new_lines=new_lines)


def rewrite_requested(config_flag: bool) -> bool:
    return config_flag or os.environ.get("TABLEDB_REWRITE", "") not in ("", "0")


def oracle_name() -> str:
    name = os.environ.get("TABLEDB_CASES_ORACLE", "") or "tabledb"
    if name not in TARGETS:
        raise CaseFileError(f"TABLEDB_CASES_ORACLE={name!r}: expected one of {sorted(TARGETS)}")
    return name
