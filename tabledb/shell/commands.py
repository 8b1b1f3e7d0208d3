"""The shell proper: scripts, statements, dot-commands, errors, progress bars, the prompt loop.

A :class:`Shell` wraps one DB-API connection (autocommit) and writes results to
its output. Input arrives as lines (a script, standard input, ``-c``, or what
the prompt returns): a line that starts with ``.`` between statements is a
dot-command; SQL runs statement by statement as each ``;`` arrives.

Errors: each becomes one line on stderr, ``ClassName: message``, prefixed with
``source:line:`` when it comes from a script (for a syntax error, the line of
the error itself). In a script the first error stops it (``.bail on``, the
default) by raising :class:`Bail`; at the prompt, the shell goes on.

Ctrl-C while a statement runs raises KeyboardInterrupt wherever Python is (never
inside a finalizer, where Python would drop it: tabledb/shell/interrupt.py): the
SQL layer undoes an interrupted write statement, an interrupted result is
closed (releasing its snapshot), and a transaction the shell did not see the
user begin is rolled back; the user's own BEGIN stays open.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from typing import Callable, Iterable, Iterator, TextIO

import tabledb
from tabledb.errors import DatabaseError, Error, SQLSyntaxError
from tabledb.shell import transfer
from tabledb.shell.interrupt import interruptible
from tabledb.shell.render import MODES, Settings, render
from tabledb.shell.reports import catalog_of, engine_stats, format_stats, schema_statements
from tabledb.shell.script import first_word, quote_identifier, quote_string, scan_sql

FETCH_BATCH = 512
MAX_READ_DEPTH = 16


class Bail(Exception):
    """A script stops at its first error (``.bail on``)."""


class Quit(Exception):
    """``.quit`` / ``.exit``."""


class ShellError(Error):
    """A dot-command that does not exist or was given the wrong arguments."""


DOT_COMMANDS: list[tuple[str, str, str]] = [
    # (name, usage, summary): .help prints them in this order, completion offers them (a summary's
    # second line, after \n, shows in .help only)
    (".backup", ".backup TARGET", "back the database up into the repository TARGET (a folder)"),
    (".backups", ".backups TARGET", "list the backups in TARGET"),
    (".bail", ".bail on|off", "stop a script at its first error (default on)"),
    (".changes", ".changes on|off", "row counts after statements (default on in a terminal)"),
    (".check", ".check", "verify this database: every checksum, row, index entry and the catalog"),
    (".exit", ".exit", "leave (also .quit, Ctrl-D)"),
    (".export", ".export TABLE FILE", "write TABLE to FILE (.csv or .parquet)"),
    (".headers", ".headers on|off", "show column names (default on in a terminal)"),
    (".help", ".help", "this list"),
    (".import", ".import FILE TABLE", "load FILE (.csv with a header, .parquet) into TABLE\n"
                                      "(created from the file's column types if missing)"),
    (".indexes", ".indexes [TABLE]", "list the indexes"),
    (".maxrows", ".maxrows N", "at most N rows in box/table/markdown mode (0: all)"),
    (".mode", ".mode MODE", "box|table|list|csv|json|line|markdown (default: box in a\n"
                            "terminal; list, values with | between them, otherwise)"),
    (".nullvalue", ".nullvalue TEXT", "how NULL prints (NULL in a terminal, else nothing)"),
    (".output", ".output [FILE]", "send results to FILE; no FILE: back to the screen"),
    (".quit", ".quit", "leave"),
    (".read", ".read FILE", "run the statements and dot-commands in FILE"),
    (".restore", ".restore TARGET PATH [AS-OF]", "restore a backup into the new database PATH (AS-OF:\n"
                                                 "an ISO time, a sequence number or a backup id)"),
    (".schema", ".schema [TABLE]", "the CREATE statements of tables, indexes and views"),
    (".separator", ".separator TEXT", "the separator of list mode (default |)"),
    (".show", ".show", "the current settings"),
    (".stats", ".stats", "engine statistics: levels, files, bytes, cache hit rate, WAL"),
    (".tables", ".tables", "list the tables and views"),
    (".timer", ".timer on|off", "print each statement's run time"),
    (".verify", ".verify TARGET [BACKUP]", "check a backup's files and checksums (default: newest)"),
]
_DOT_NAMES = frozenset(name for name, _, _ in DOT_COMMANDS)

_DML_VERBS = {"INSERT": "inserted", "REPLACE": "inserted", "UPDATE": "updated", "DELETE": "deleted",
              "COPY": "copied", "TRUNCATE": "deleted"}
_LONG_STATEMENTS = frozenset({"BACKUP", "RESTORE", "VERIFY", "COPY"})      # run under a progress bar
_READ_ONLY = frozenset({"SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})


def user_transaction_open(conn) -> bool:
    """True inside a transaction the user began (BEGIN or SAVEPOINT): Ctrl-C leaves it open."""
    return bool(getattr(conn._session, "explicit", False))


def _plural(n: int, noun: str = "row") -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _on_off(args: list[str], name: str) -> bool:
    if len(args) != 1 or args[0].lower() not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        raise ShellError(f"usage: {name} on|off")
    return args[0].lower() in ("on", "1", "true", "yes")


def _fetch(cur) -> Iterator[tuple]:
    while True:
        batch = cur.fetchmany(FETCH_BATCH)
        if not batch:
            return
        yield from batch


def _describe(result) -> str:
    """A backup API's result in a few words: its id if it has one."""
    if result is None:
        return ""
    for key in ("id", "backup_id", "name"):
        value = result.get(key) if isinstance(result, dict) else getattr(result, key, None)
        if value is not None:
            return str(value)
    return str(result)


def list_backups(conn, target: str) -> tuple[list[str], list[tuple]]:
    cur = conn.cursor()
    try:
        cur.execute(f"SHOW BACKUPS FROM {quote_string(target)}")
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        cur.close()


def parse_as_of(text: str) -> dict:
    """``.restore``'s last argument as keyword arguments: a sequence number (``as_of=int``), an
    ISO-8601 time (``as_of=datetime``, UTC unless it names a zone), else a backup id."""
    if text.isdigit():
        return {"as_of": int(text)}
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return {"backup": text}
    return {"as_of": moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)}


class Shell:
    """Runs SQL and dot-commands on one connection and writes their results.

    ``interactive`` picks the defaults (box, headers, row counts) and keeps errors from
    stopping the session; ``progress`` draws prompt-toolkit progress bars (needs a
    terminal). ``out``/``err`` default to sys.stdout/sys.stderr. Not thread-safe, like
    the connection it uses.
    """

    def __init__(self, conn, *, interactive: bool, out: TextIO | None = None, err: TextIO | None = None,
                 progress: bool = False):
        self.conn = conn
        self.interactive = interactive
        self.settings = Settings(interactive)
        self.progress_bars = progress
        self.errors = 0                         # errors reported so far (a script's exit status)
        self.output_file: TextIO | None = None  # .output FILE
        self._out, self._err = out, err
        self._tables: list[tuple[str, str]] | None = None
        self._columns: dict[str, dict[str, tuple[str, str]] | None] = {}
        self._targets: list[str] = []           # backup repositories named in this session, newest last
        self._depth = 0                         # .read nesting

    # -- streams ----------------------------------------------------------------------------
    @property
    def stdout(self) -> TextIO:
        return self.output_file or self._out or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._err or sys.stderr

    def _width(self) -> int | None:
        """The terminal's width when results go to one, else None."""
        try:
            if self.interactive and self.stdout.isatty():
                return shutil.get_terminal_size((100, 24)).columns
        except (AttributeError, ValueError, OSError):
            pass
        return None

    def report(self, exc: BaseException, where: str | None = None) -> None:
        """One line for an error: ``[where: ]ClassName: message``."""
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.strerror or message}: {exc.filename}"
        self.stderr.write(f"{where + ': ' if where else ''}{type(exc).__name__}: {message}\n")
        self.stderr.flush()

    def close(self) -> None:
        if self.output_file is not None:
            self.output_file.close()
            self.output_file = None

    # -- scripts ----------------------------------------------------------------------------
    def run_lines(self, lines: Iterable[str], source: str | None = None) -> None:
        """Run a script's lines: dot-commands, and each SQL statement as soon as its ``;`` arrives
        (an unfinished last statement runs at the end). ``source`` names the script in error
        lines (None at the prompt). Raises Bail at a script's first error under ``.bail on``,
        Quit on ``.quit``."""
        pending, pending_line = "", 1      # unfinished SQL, and the line it starts on
        for lineno, line in enumerate(lines, 1):
            if not line.endswith("\n"):
                line += "\n"
            if not pending.strip():
                pending, pending_line = "", lineno
                if line.lstrip().startswith("."):
                    self._guarded(lambda: self.run_dot(line.strip()), source, lineno)
                    continue
            pending += line
            scan = scan_sql(pending)
            for start, end in scan.spans:
                self._run_statement_at(pending, start, end, source, pending_line)
            pending_line += pending.count("\n", 0, scan.rest)
            pending = pending[scan.rest:]
        tail = scan_sql(pending)
        if not tail.tail_blank or tail.open_at is not None:
            self._run_statement_at(pending, 0, len(pending), source, pending_line)

    def run_text(self, text: str, source: str | None = None) -> None:
        self.run_lines(text.splitlines(), source)

    def _run_statement_at(self, text: str, start: int, end: int, source: str | None, first_line: int) -> None:
        statement = text[start:end]
        line = first_line + text.count("\n", 0, start + len(statement) - len(statement.lstrip()))
        self._guarded(lambda: self.run_sql(statement.strip()), source, line)

    def _guarded(self, action: Callable[[], None], source: str | None, line: int) -> None:
        try:
            action()
        except (Bail, Quit, KeyboardInterrupt, BrokenPipeError):    # the reader of our output left: stop
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes one line, never a traceback
            where = None
            if source is not None:
                if isinstance(exc, SQLSyntaxError) and exc.line:
                    line += exc.line - 1
                where = f"{source}:{line}"
            self.errors += 1
            self.report(exc, where)
            if source is not None and self.settings.bail:
                raise Bail() from None

    # -- SQL --------------------------------------------------------------------------------
    def run_sql(self, sql: str, label: str | None = None) -> None:
        """Run one statement and print its rows or its row count. BACKUP/RESTORE/VERIFY/COPY
        (or any statement given a ``label``) run under a progress bar. Ctrl-C stops it (see
        the module docstring); at the prompt the shell goes on, a script stops."""
        started = time.perf_counter()
        verb = first_word(sql)
        cur = self.conn.cursor()
        try:
            with interruptible():     # Ctrl-C never lost in a finalizer (tabledb/shell/interrupt.py)
                if label or verb in _LONG_STATEMENTS:
                    with self.progress(label or verb.lower()):
                        cur.execute(sql)
                else:
                    cur.execute(sql)
                if cur.description is not None:
                    self._print_result(cur)
                elif self.settings.changes and verb in _DML_VERBS:
                    n = cur.rowcount
                    self.stdout.write(f"rows {_DML_VERBS[verb]} (not counted)\n" if n < 0
                                      else f"{_plural(n)} {_DML_VERBS[verb]}\n")
        except KeyboardInterrupt:
            self._interrupted(cur)
            if not self.interactive:
                raise
            return
        finally:
            with contextlib.suppress(Exception):
                cur.close()
            if verb not in _READ_ONLY:
                self.forget_schema()
        if self.settings.timer:
            self.stdout.write(f"Run Time: {time.perf_counter() - started:.3f} s\n")
        self.stdout.flush()

    def _interrupted(self, cur) -> None:
        with contextlib.suppress(Exception):
            cur.close()
        with contextlib.suppress(Exception):
            if self.conn.in_transaction and not user_transaction_open(self.conn):
                self.conn.rollback()
        with contextlib.suppress(Exception):
            self.stdout.flush()
        if self.interactive:          # a script stops, and main() says so
            self.stderr.write("Interrupted\n")
            self.stderr.flush()

    def _print_result(self, cur) -> None:
        columns = [d[0] for d in cur.description]
        count, more = render(columns, _fetch(cur), self.settings, self.stdout, self._width())
        if more:
            self.stdout.write(f"(only the first {_plural(count)} are shown: .maxrows 0 shows them all)\n")
        elif self.settings.changes and self.settings.mode in ("box", "table"):
            self.stdout.write(f"({_plural(count)})\n")

    def query(self, sql: str) -> list[tuple]:
        """Run a statement of the shell's own and return its rows ([] if it has none)."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetchall() if cur.description is not None else []
        finally:
            cur.close()

    # -- the schema, for completion and .import ---------------------------------------------
    def forget_schema(self) -> None:
        self._tables = None
        self._columns.clear()

    def table_names(self) -> list[tuple[str, str]]:
        """[(name, "table" | "view")], cached until a statement that may change the schema."""
        if self._tables is None:
            try:
                tables = [(r[0], "table") for r in self.query("SHOW TABLES")]
                views = sorted(v.name for v in catalog_of(self.conn).views.values())
            except Exception:  # noqa: BLE001 - completion never fails loudly
                return []
            self._tables = tables + [(v, "view") for v in views]
        return self._tables

    def table_columns(self, table: str) -> dict[str, tuple[str, str]] | None:
        """{lower-cased column name: (name, SQL type)} of a table or view; None if there is none."""
        key = table.lower()
        if key not in self._columns:
            try:
                rows = self.query(f"DESCRIBE {quote_identifier(table)}")
            except Error:
                rows = None
            self._columns[key] = None if rows is None else {r[0].lower(): (r[0], r[1]) for r in rows}
        return self._columns[key]

    def columns(self, table: str) -> list[str]:
        return [name for name, _type in (self.table_columns(table) or {}).values()]

    def backup_ids(self, target: str | None) -> list[str]:
        """The backups in ``target`` (default: the repositories used in this session)."""
        for t in [target] if target else reversed(self._targets):
            try:
                return [str(r[0]) for r in list_backups(self.conn, t)[1]]
            except Exception:  # noqa: BLE001 - completion never fails loudly
                continue
        return []

    # -- progress bars ------------------------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[..., None]]:
        """Yield ``progress(done, total=None)``, drawing a prompt-toolkit progress bar (a no-op
        without a terminal). Ctrl-C in the bar interrupts the work with KeyboardInterrupt."""
        if not self.progress_bars:
            yield lambda done, total=None: None
            return
        from prompt_toolkit.shortcuts import ProgressBar
        with ProgressBar() as bar:
            counter = bar(label=label + " ", total=None)

            def update(done, total=None) -> None:
                counter.items_completed = done
                counter.total = total
                bar.invalidate()
            try:
                yield update
            except BaseException:
                counter.stopped = True
                raise
            if counter.total:
                counter.items_completed = counter.total
            counter.done = True

    # -- dot-commands ---------------------------------------------------------------------------
    def run_dot(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ShellError(f"cannot read the command: {exc}") from None
        if not words:
            return
        name, args = words[0].lower(), words[1:]
        if name not in _DOT_NAMES:
            raise ShellError(f"unknown command {words[0]!r}: .help lists them")
        started = time.perf_counter()
        getattr(self, "dot_" + name[1:])(args)
        if self.settings.timer and name not in (".timer", ".help", ".show"):
            self.stdout.write(f"Run Time: {time.perf_counter() - started:.3f} s\n")
        self.stdout.flush()

    @staticmethod
    def _usage(name: str) -> ShellError:
        return ShellError("usage: " + next(usage for n, usage, _ in DOT_COMMANDS if n == name))

    def dot_help(self, args: list[str]) -> None:
        width = max(len(usage) for _, usage, _ in DOT_COMMANDS) + 2
        for _, usage, summary in DOT_COMMANDS:
            self.stdout.write(usage.ljust(width) + summary.replace("\n", "\n" + " " * width) + "\n")

    def dot_quit(self, args: list[str]) -> None:
        raise Quit()

    dot_exit = dot_quit

    # settings
    def dot_mode(self, args: list[str]) -> None:
        if len(args) != 1 or args[0].lower() not in MODES:
            raise ShellError(f"usage: .mode {'|'.join(MODES)}")
        self.settings.mode = args[0].lower()

    def dot_headers(self, args: list[str]) -> None:
        self.settings.headers = _on_off(args, ".headers")

    def dot_timer(self, args: list[str]) -> None:
        self.settings.timer = _on_off(args, ".timer")

    def dot_changes(self, args: list[str]) -> None:
        self.settings.changes = _on_off(args, ".changes")

    def dot_bail(self, args: list[str]) -> None:
        self.settings.bail = _on_off(args, ".bail")

    def dot_nullvalue(self, args: list[str]) -> None:
        if len(args) > 1:
            raise self._usage(".nullvalue")
        self.settings.nullvalue = args[0] if args else ""

    def dot_separator(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self._usage(".separator")
        self.settings.separator = args[0].encode().decode("unicode_escape")   # .separator \t

    def dot_maxrows(self, args: list[str]) -> None:
        if len(args) != 1 or not args[0].isdigit():
            raise self._usage(".maxrows")
        self.settings.maxrows = int(args[0])

    def dot_show(self, args: list[str]) -> None:
        s = self.settings
        on = {True: "on", False: "off"}
        for key, value in (("mode", s.mode), ("headers", on[s.headers]), ("nullvalue", json.dumps(s.nullvalue)),
                           ("separator", json.dumps(s.separator)), ("maxrows", s.maxrows), ("timer", on[s.timer]),
                           ("changes", on[s.changes]), ("bail", on[s.bail]),
                           ("output", getattr(self.output_file, "name", "stdout")), ("database", self.conn.path)):
            self.stdout.write(f"{key.rjust(10)}: {value}\n")

    # scripts and output
    def dot_output(self, args: list[str]) -> None:
        if len(args) > 1:
            raise self._usage(".output")
        self.close()
        if args and args[0] not in ("stdout", "-"):
            self.output_file = open(os.path.expanduser(args[0]), "w", encoding="utf-8", newline="")

    def dot_read(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self._usage(".read")
        if self._depth >= MAX_READ_DEPTH:
            raise ShellError(f".read is nested more than {MAX_READ_DEPTH} deep")
        with open(os.path.expanduser(args[0]), encoding="utf-8") as f:
            self._depth += 1
            try:
                self.run_lines(f, source=args[0])
            except Bail:
                if not (self.interactive and self._depth == 1):
                    raise
                # at the prompt the file stops at its error and the session goes on
            finally:
                self._depth -= 1

    # the schema and the engine
    def dot_tables(self, args: list[str]) -> None:
        if args:
            raise self._usage(".tables")
        self.forget_schema()
        for name, _kind in self.table_names():
            self.stdout.write(name + "\n")

    def dot_indexes(self, args: list[str]) -> None:
        if len(args) > 1:
            raise self._usage(".indexes")
        self.run_sql("SHOW INDEXES" + (f" FROM {quote_identifier(args[0])}" if args else ""))

    def dot_schema(self, args: list[str]) -> None:
        if len(args) > 1:
            raise self._usage(".schema")
        for statement in schema_statements(catalog_of(self.conn), args[0] if args else None):
            self.stdout.write(statement + "\n")

    def dot_check(self, args: list[str]) -> None:
        if args:
            raise self._usage(".check")
        from tabledb.check import check_connection, format_report
        with self.progress("check") as progress:
            report = check_connection(self.conn, progress=progress)
        self.stdout.write(format_report(report))
        if not report["ok"]:
            raise DatabaseError(f"check found {len(report['problems']) + report['problems_not_listed']} problem(s)")

    def dot_stats(self, args: list[str]) -> None:
        if args:
            raise self._usage(".stats")
        self.stdout.write(format_stats(engine_stats(self.conn), self.conn.path))

    # files
    def dot_import(self, args: list[str]) -> None:
        if len(args) != 2:
            raise self._usage(".import")
        path, table = os.path.expanduser(args[0]), args[1]
        transfer.file_format(path)
        self.forget_schema()
        try:
            n = transfer.import_file(self, path, table)
        finally:
            self.forget_schema()
        if self.settings.changes:
            self.stdout.write(f"{_plural(n)} imported into {table}\n")

    def dot_export(self, args: list[str]) -> None:
        if len(args) != 2:
            raise self._usage(".export")
        self.run_sql(transfer.export_statement(args[0], os.path.expanduser(args[1])), label=f"export {args[0]}")

    # backup and restore
    def _remember(self, target: str) -> None:
        if target in self._targets:
            self._targets.remove(target)
        self._targets.append(target)

    def dot_backup(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self._usage(".backup")
        backup = self.conn.backup
        target = os.path.expanduser(args[0])
        with self.progress("backup") as progress:
            result = backup(target, progress=progress)
        self._remember(target)
        self.stdout.write(f"backup {_describe(result) or 'done'}, in {args[0]}\n")

    def dot_restore(self, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise self._usage(".restore")
        restore = tabledb.restore
        target, path = os.path.expanduser(args[0]), os.path.expanduser(args[1])
        choice = parse_as_of(args[2]) if len(args) == 3 else {}
        with self.progress("restore") as progress:
            result = restore(target, path, progress=progress, **choice)
        self._remember(target)
        self.stdout.write(f"restored {_describe(result) or 'the backup'} into {args[1]}\n")

    def dot_verify(self, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise self._usage(".verify")
        verify = tabledb.verify_backup
        target = os.path.expanduser(args[0])
        with self.progress("verify") as progress:
            result = verify(target, backup=args[1] if len(args) == 2 else None, progress=progress)
        self._remember(target)
        if result is not None and getattr(result, "ok", True) is False:
            raise DatabaseError(f"backup verification failed: {_describe(result)}")
        which = _describe(result) or (args[1] if len(args) == 2 else "latest")
        self.stdout.write(f"backup {which} in {args[0]}: verified\n")

    def dot_backups(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self._usage(".backups")
        target = os.path.expanduser(args[0])
        columns, rows = list_backups(self.conn, target)
        self._remember(target)
        render(columns, rows, self.settings, self.stdout, self._width())

    # -- the interactive loop -------------------------------------------------------------------
    def repl(self, session=None) -> None:
        """Prompt, run, repeat, until Ctrl-D or .quit. ``session``: a prompt-toolkit PromptSession
        (default: :func:`tabledb.shell.prompt.make_prompt_session`)."""
        if session is None:
            from tabledb.shell.prompt import make_prompt_session
            session = make_prompt_session(self)
        while True:
            try:
                text = session.prompt()
            except KeyboardInterrupt:       # Ctrl-C drops the input
                continue
            except EOFError:                # Ctrl-D leaves
                return
            try:
                self.run_lines(text.splitlines())
            except Quit:
                return
            except Bail:
                continue
            except KeyboardInterrupt:
                self.stderr.write("Interrupted\n")

