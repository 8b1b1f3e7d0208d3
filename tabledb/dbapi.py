"""The PEP 249 (DB-API 2.0) face of tabledb: connections, cursors and rows.

``tabledb.connect(path)`` opens (or creates) a database directory and returns
a :class:`Connection`; ``":memory:"`` gives a private in-memory database.

Transactions (as sqlite3): DML and DDL open a transaction implicitly and
``commit()`` ends it; ``autocommit=True`` commits every statement on its own;
``BEGIN`` starts an explicit transaction. ``with connection:`` commits when the
block succeeds and rolls back when it raises; it does not close the connection.
Closing a connection rolls back what is not committed and ends its cursors' results.
A connection dropped unclosed is closed the same way: when its last reference goes,
or, when the cyclic garbage collector finds it, soon after by a tabledb thread.

Parameters: ``?`` placeholders take a sequence, ``:name`` placeholders a
mapping (paramstyle ``qmark``, and named as in sqlite3). The SQL is tokenized,
so ``?`` and ``:name`` inside string literals, quoted identifiers and comments
are text, not placeholders. Values: None, int, float, str, bytes (bytearray,
memoryview), bool, datetime.date, datetime.datetime, Decimal (as REAL) and
datetime.time, which tabledb has no column type for: it is bound as its ISO
text ("13:45:30", "13:45:30.250000+01:00"), so it goes into TEXT columns.

Results: ``description`` holds 7-tuples ``(name, type_code, None, None, None,
None, None)``, whose type codes compare equal to the type objects of
:mod:`tabledb.types`; it is None after a statement that returns no rows, and
fetching then raises ProgrammingError. ``rowcount`` is -1 after a query and the
number of rows changed after DML (-1 when a DELETE removed a whole range
without counting it). ``lastrowid`` is the connection's last inserted row id
after a write statement run with execute(), as sqlite3's last_insert_rowid();
queries and executemany() leave it unchanged (as sqlite3 does). ``row_factory(cursor, row)``
shapes fetched rows: :class:`Row` indexes by position and by name.

Errors are the PEP 249 classes of :mod:`tabledb.errors`, also attributes of
every connection. Using a closed connection or cursor (closing a connection
twice included) raises ProgrammingError.

Thread-safety (``threadsafety = 1``): threads may share the module, not
connections or cursors; give each thread its own connection (they share the
database).
"""

from __future__ import annotations

import datetime as _dt
import os
import weakref
from itertools import islice
from collections.abc import Iterable, Iterator, Mapping

from tabledb.errors import (DatabaseError, DataError, Error, IntegrityError, InterfaceError, InternalError,
                            NotSupportedError, OperationalError, ProgrammingError, Warning)
from tabledb.sql.database import close_unreachable, open_database, release_database
from tabledb.sql.session import Result, Session, bind
from tabledb.types import (BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Date, DateFromTicks, Time,
                           TimeFromTicks, Timestamp, TimestampFromTicks, type_code)

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

__all__ = [
    "apilevel", "threadsafety", "paramstyle", "connect", "Connection", "Cursor", "Row",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks", "Binary",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
]


def _guard(fn):
    """Run ``fn`` so that only PEP 249 exceptions leave it."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Error:
            raise
        except RecursionError:
            raise OperationalError("statement is too deeply nested") from None
        except MemoryError:
            raise OperationalError("out of memory") from None
        except (ValueError, TypeError, ArithmeticError, KeyError, IndexError, AttributeError,
                UnicodeError, AssertionError) as exc:
            raise InternalError(f"{type(exc).__name__}: {exc}") from exc
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# -- parameters -----------------------------------------------------------------------

_Time = _dt.time


def _adapt(params):
    """``params`` with each datetime.time replaced by its ISO text (the same object if there is none)."""
    if isinstance(params, (tuple, list)):
        if _Time not in map(type, params):
            return params
        return [v.isoformat() if type(v) is _Time else v for v in params]
    if isinstance(params, Mapping):
        if _Time not in map(type, params.values()):
            return params
        return {k: v.isoformat() if type(v) is _Time else v for k, v in params.items()}
    return params   # None or another kind of sequence: the session checks it


def _adapt_each(seq_of_parameters: Iterable) -> Iterator:
    for params in seq_of_parameters:
        yield _adapt(params)


# -- connecting -----------------------------------------------------------------------

def connect(path, *, autocommit: bool = False, busy_timeout: float = 5.0, sync: bool | None = None,
            **options) -> "Connection":
    """Open the database at ``path``: a directory, created if missing, or ":memory:" for a
    private in-memory database.

    ``autocommit``: commit every statement on its own (default False: DML opens a
    transaction that ``commit()`` ends). ``busy_timeout``: seconds to wait for another
    connection's write transaction. ``sync``: False makes commits skip fsync.
    ``options`` go to the storage engine (e.g. ``sync_mode``, ``memtable_bytes``,
    ``block_cache_bytes``); an unknown one is a ProgrammingError.
    """
    if not isinstance(autocommit, bool):
        raise ProgrammingError("autocommit must be True or False")
    try:
        timeout = float(busy_timeout)
    except (TypeError, ValueError):
        raise ProgrammingError("busy_timeout must be a number of seconds") from None
    if "sync_mode" not in options and sync is False:
        options["sync_mode"] = "off"
    archive_interval = options.pop("wal_archive_interval", None)
    if archive_interval is not None and (isinstance(archive_interval, bool) or
                                         not isinstance(archive_interval, (int, float)) or archive_interval <= 0):
        raise ProgrammingError("wal_archive_interval must be a positive number of seconds")
    db = _guard(open_database)(path, options)
    connection = Connection(db, autocommit, timeout, sync)
    _resume_wal_archive(db, archive_interval)
    return connection


def _resume_wal_archive(db, interval) -> None:
    """If the database archives its WAL to a backup target, (re)start its archiver (tabledb.backup.archive)."""
    if interval is not None:
        db.wal_archive_interval = interval
    if db.memory or db.path is None:
        return
    from tabledb.backup.archive import ARCHIVE_FILE
    if not os.path.exists(os.path.join(db.path, ARCHIVE_FILE)):
        return
    from tabledb.backup import archive
    archive.resume(db.engine, getattr(db, "wal_archive_interval", None))


class Connection:
    """A connection to a database: one session, its transactions and its cursors.

    Not thread-safe: use a connection (and its cursors) from one thread at a time.
    """

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, db, autocommit: bool, busy_timeout: float, sync: bool | None):
        self._db = db
        self._closed = True    # until the session exists, so that __del__ does nothing
        try:
            self._session = Session(db, autocommit=autocommit, busy_timeout=busy_timeout, sync=sync)
        except BaseException:
            release_database(db)
            raise
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self._closed = False
        self.row_factory = None

    # -- state ---------------------------------------------------------------------------
    @property
    def autocommit(self) -> bool:
        """True: every statement commits on its own. Setting it True commits the open transaction."""
        self._check()
        return self._session.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._check()
        if not isinstance(value, bool):
            raise ProgrammingError("autocommit must be True or False")
        if value and self._in_transaction():
            self.commit()
        self._session.autocommit = value

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open (it has written, or BEGIN started it)."""
        self._check()
        return self._in_transaction()

    def _in_transaction(self) -> bool:
        session = self._session
        return session.explicit or session.in_transaction   # BEGIN opens one before any statement

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def path(self) -> str | None:
        """The database directory (None for an in-memory database)."""
        return self._db.path

    def _check(self) -> None:
        if self._closed:
            raise ProgrammingError("cannot operate on a closed connection")

    # -- DB-API ----------------------------------------------------------------------------
    def cursor(self) -> "Cursor":
        self._check()
        return Cursor(self)

    @_guard
    def commit(self) -> None:
        """Commit the open transaction (nothing to do when none is open)."""
        self._check()
        session = self._session
        if session.txn is not None or session.explicit:
            session.commit()

    @_guard
    def rollback(self) -> None:
        """Roll back the open transaction (nothing to do when none is open)."""
        self._check()
        self._session.rollback()

    def close(self) -> None:
        """Roll back what is not committed, end the cursors' results and release the database.
        A second close() raises ProgrammingError."""
        self._check()
        self._closed = True
        try:
            for cursor in list(self._cursors):
                cursor._reset()
            self._session.close()
        finally:
            release_database(self._db)

    def execute(self, sql: str, parameters=()) -> "Cursor":
        """A new cursor that has executed ``sql``."""
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable) -> "Cursor":
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, script: str) -> "Cursor":
        return self.cursor().executescript(script)

    def ingest_arrow(self, table_name: str, data, mode: str = "append"):
        """Load Arrow data (a table, record batches or an Arrow stream) into ``table_name``; see
        :func:`tabledb.arrow.ingest_arrow`."""
        self._check()
        from tabledb import arrow
        return arrow.ingest_arrow(self, table_name, data, mode)

    def backup(self, target, *, incremental: bool = True, wal_archive: bool = True, label: str | None = None,
               tables=None, progress=None) -> dict:
        """Back up the database to ``target`` (a directory or a pyarrow.fs URI) while writers go on,
        as ``BACKUP DATABASE`` (or ``BACKUP TABLE`` with ``tables``) does; returns its row as a dict
        (backup_id, kind, parent_id, sequence, created_at, files_copied, bytes_copied, files_total,
        bytes_total). Uncommitted writes of this connection are not in it.
        ``progress(done_bytes, total_bytes)`` is called as files are copied. See tabledb.backup."""
        self._check()
        if isinstance(tables, str):
            tables = [tables]
        from tabledb.backup.sql import backup_database
        return _guard(backup_database)(self._db, target, incremental=incremental, wal_archive=wal_archive,
                                       label=label, tables=list(tables) if tables is not None else None,
                                       progress=progress)

    def __enter__(self) -> "Connection":
        self._check()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        if exc_type is not None:
            self.rollback()
            return
        try:
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def __del__(self):
        # Roll back and release the database as close() does, but never block: the GC runs
        # finalizers in any thread, holding any lock, so the close may be left to the closer
        # thread (tabledb.sql.database.close_unreachable). The cursors are garbage too (each
        # holds its connection); their results close themselves.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            close_unreachable(self._session, self._db)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class Cursor:
    """Runs statements on its connection's session and holds the current result.

    ``_rows`` (the result's remaining rows, an iterator of tuples) and
    ``_result_types`` (the tabledb column types of the result) are read by
    :mod:`tabledb.arrow`; both are None when there is no result.
    """

    def __init__(self, connection: Connection):
        self.connection = connection
        self.arraysize = 1
        self.description: tuple | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.row_factory = connection.row_factory
        self._rows: Iterator | None = None
        self._result_types: list | None = None
        self._shape: tuple | None = None    # (names, lower-cased name -> position) for Row
        self._closed = False
        self._described: tuple | None = None   # (columns, types, description, result types) last built
        connection._cursors.add(self)

    def _check(self) -> Session:
        if self._closed:
            raise ProgrammingError("cannot operate on a closed cursor")
        connection = self.connection
        if connection._closed:
            raise ProgrammingError("cannot operate on a closed connection")
        return connection._session

    def _reset(self) -> None:
        """Drop the current result (closing its row iterator releases its snapshot)."""
        rows = self._rows
        self._rows = None
        self._result_types = None
        self.description = None
        self.rowcount = -1
        if rows is not None and hasattr(rows, "close"):
            rows.close()

    def _take(self, result: Result) -> "Cursor":
        columns = result.columns
        if columns is not None:
            types = result.types
            cache = self._described
            if cache is None or cache[0] is not columns or cache[1] is not types:
                description = tuple((name, type_code(t, name), None, None, None, None, None)
                                    for name, t in zip(columns, types))
                cache = self._described = (columns, types, description, list(types))
                self._shape = None
            self.description = cache[2]
            self._result_types = cache[3]
            self._rows = result.rows
        else:
            self.rowcount = result.rowcount
            if result.lastrowid is not None:
                self.lastrowid = result.lastrowid
        return self

    # -- executing --------------------------------------------------------------------------
    @_guard
    def execute(self, sql: str, parameters=()) -> "Cursor":
        """Run one statement. ``parameters``: a sequence for ``?``, a mapping for ``:name``."""
        session = self._check()
        self._reset()
        return self._take(session.execute(sql, _adapt(parameters)))

    @_guard
    def executemany(self, sql: str, seq_of_parameters: Iterable) -> "Cursor":
        """Run one DML statement once per parameter set: one plan, one transaction and one
        engine batch. ``rowcount`` is the total of rows changed. A failure undoes the whole call."""
        session = self._check()
        self._reset()
        result = session.executemany(sql, _adapt_each(seq_of_parameters))
        self.rowcount = result.rowcount   # lastrowid stays as it was, as with sqlite3
        return self

    @_guard
    def executescript(self, script: str) -> "Cursor":
        """Run ``;``-separated statements without parameters, as sqlite3 does: first commit
        the open transaction, then each statement outside a BEGIN ... COMMIT of the script
        commits on its own.

        The whole script is parsed and each statement checked (that it is a statement, that it
        has no placeholders) before anything happens, so such an error runs none of it and leaves
        the open transaction open; sqlite3 would have run the statements before it. Each statement
        is planned against the catalog only when it runs, so a script may create a table and then
        use it. A statement failing as it runs stops the script: those before it stay."""
        session = self._check()
        self._reset()
        if not isinstance(script, str):
            raise ProgrammingError("script must be a str")
        from tabledb.sql import dialect
        statements = [session.prepare_node(node) for node in dialect.parse(script)]
        for prepared in statements:
            if prepared.nparams:
                raise ProgrammingError("executescript() takes no parameters: the script has placeholders")
        if session.txn is not None or session.explicit:
            session.commit()
        autocommit = session.autocommit
        session.autocommit = True
        try:
            for prepared in statements:
                result = session.run(prepared, bind(prepared, ()))
                if result.rows is not None:
                    for _ in result.rows:
                        pass
        finally:
            session.autocommit = autocommit
        return self

    # -- fetching -----------------------------------------------------------------------------
    def _result_rows(self) -> Iterator:
        self._check()
        rows = self._rows
        if rows is None:
            raise ProgrammingError("no results to fetch: execute a query first")
        return rows

    @_guard
    def fetchone(self):
        """The next row, or None when the result is exhausted."""
        row = next(self._result_rows(), None)
        if row is None or self.row_factory is None:
            return row
        return self.row_factory(self, row)

    @_guard
    def fetchmany(self, size: int | None = None) -> list:
        """The next ``size`` rows (default ``arraysize``); fewer, or none, at the end."""
        rows = self._result_rows()
        n = self.arraysize if size is None else size
        if not isinstance(n, int) or n < 0:
            raise ProgrammingError(f"fetchmany size must be a non-negative int, not {n!r}")
        take = getattr(rows, "take", None)
        out = take(n) if take is not None else list(islice(rows, n))
        factory = self.row_factory
        if factory is None:
            return out
        return [factory(self, r) for r in out]

    @_guard
    def fetchall(self) -> list:
        """The remaining rows."""
        rows = self._result_rows()
        take = getattr(rows, "take", None)
        out = take() if take is not None else list(rows)
        factory = self.row_factory
        if factory is None:
            return out
        return [factory(self, r) for r in out]

    def __iter__(self) -> "Cursor":
        return self

    def __next__(self):
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def _row_shape(self) -> tuple:
        """(column names, lower-cased name -> first position) of the current result, for Row."""
        shape = self._shape
        if shape is None:
            names = tuple(d[0] for d in self.description or ())
            index: dict[str, int] = {}
            for i, name in enumerate(names):
                index.setdefault(name.lower(), i)
            shape = self._shape = (names, index)
        return shape

    # -- Arrow (tabledb.arrow does the work) -------------------------------------------------
    def fetch_arrow_table(self):
        """The remaining rows as a pyarrow.Table."""
        self._check()
        from tabledb import arrow
        return arrow.fetch_arrow_table(self)

    def fetch_record_batch(self, rows_per_batch: int = 1_000_000):
        """The remaining rows as a pyarrow.RecordBatchReader of ``rows_per_batch``-row batches."""
        self._check()
        from tabledb import arrow
        return arrow.fetch_record_batch(self, rows_per_batch)

    def __arrow_c_stream__(self, requested_schema=None):
        """The Arrow PyCapsule stream interface over the remaining rows."""
        self._check()
        from tabledb import arrow
        return arrow.arrow_c_stream(self, requested_schema)

    # -- the rest of PEP 249 ----------------------------------------------------------------
    def close(self) -> None:
        """Drop the result; the cursor is unusable afterwards (closing again does nothing)."""
        self._reset()
        self._closed = True

    def setinputsizes(self, sizes) -> None:
        """Accepted and ignored: tabledb needs no input sizes."""
        self._check()

    def setoutputsize(self, size, column=None) -> None:
        """Accepted and ignored: tabledb never truncates values."""
        self._check()

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Row:
    """A result row (``connection.row_factory = tabledb.Row``), as sqlite3.Row: indexes by
    position (negative and slices too) and by column name (case-insensitive; the first of
    equal names); ``keys()`` lists the names. Two rows are equal when their names and
    values are."""

    __slots__ = ("_names", "_index", "_values")

    def __init__(self, cursor, values):
        shape = cursor._row_shape() if isinstance(cursor, Cursor) else _shape_of(cursor)
        self._names, self._index = shape
        self._values = tuple(values)
        if len(self._values) != len(self._names):
            raise ProgrammingError("Row: the number of values does not match the cursor's description")

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key):
        if isinstance(key, str):
            i = self._index.get(key.lower())
            if i is None:
                raise IndexError(f"no column named {key!r}")
            return self._values[i]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator:
        return iter(self._values)

    def __reversed__(self) -> Iterator:
        return reversed(self._values)

    def __contains__(self, value) -> bool:
        return value in self._values

    def __eq__(self, other):
        if not isinstance(other, Row):
            return NotImplemented
        return self._names == other._names and self._values == other._values

    def __ne__(self, other):
        if not isinstance(other, Row):
            return NotImplemented
        return not self == other

    def __hash__(self) -> int:
        return hash((self._names, self._values))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._names, self._values))
        return f"<tabledb.Row ({inner})>"


def _shape_of(cursor) -> tuple:
    names = tuple(d[0] for d in cursor.description or ())
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.lower(), i)
    return names, index

