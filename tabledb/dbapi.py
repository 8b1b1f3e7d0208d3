"""The PEP 249 (DB-API 2.0) face of tabledb: connections and cursors.

``tabledb.connect(path)`` opens (or creates) a database directory and returns
a :class:`Connection`. As with sqlite3, DML and DDL open a transaction
implicitly and ``commit()`` ends it; ``autocommit=True`` commits every
statement on its own. Errors are the PEP 249 classes of :mod:`tabledb.errors`.

Thread-safety (``threadsafety = 1``): threads may share the module, not
connections; give each thread its own connection (they share the database).
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from tabledb import errors
from tabledb.errors import (DatabaseError, DataError, Error, IntegrityError, InterfaceError, InternalError,
                            NotSupportedError, OperationalError, ProgrammingError, Warning)
from tabledb.sql.database import open_database, release_database
from tabledb.sql.session import Result, Session

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"


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
    wrapper.__doc__ = fn.__doc__
    return wrapper


def connect(path=":memory:", *, autocommit: bool = False, busy_timeout: float = 5.0, sync: bool | None = None,
            **options) -> "Connection":
    """Open the database at ``path`` (a directory, created if missing; ":memory:" for a private
    in-memory database). ``options`` go to the storage engine (e.g. ``sync_mode``, ``memtable_bytes``,
    ``block_cache_bytes``)."""
    if not isinstance(autocommit, bool):
        raise ProgrammingError("autocommit must be True or False")
    try:
        timeout = float(busy_timeout)
    except (TypeError, ValueError):
        raise ProgrammingError("busy_timeout must be a number of seconds") from None
    if "sync_mode" not in options and sync is False:
        options["sync_mode"] = "off"
    db = _guard(open_database)(path, options)
    return Connection(db, autocommit, timeout, sync)


class Connection:
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
        self._session = Session(db, autocommit=autocommit, busy_timeout=busy_timeout, sync=sync)
        self._closed = False
        self.row_factory = None
        self._lock = threading.RLock()

    # -- properties -------------------------------------------------------------
    @property
    def autocommit(self) -> bool:
        return self._session.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._check()
        if not isinstance(value, bool):
            raise ProgrammingError("autocommit must be True or False")
        if value and self._session.in_transaction:
            self.commit()
        self._session.autocommit = value

    @property
    def in_transaction(self) -> bool:
        return not self._closed and self._session.in_transaction

    @property
    def path(self):
        return self._db.path

    def _check(self) -> None:
        if self._closed:
            raise ProgrammingError("cannot operate on a closed connection")

    # -- DB-API ---------------------------------------------------------------------
    def cursor(self) -> "Cursor":
        self._check()
        return Cursor(self)

    @_guard
    def commit(self) -> None:
        self._check()
        if self._session.txn is not None:
            self._session.commit()

    @_guard
    def rollback(self) -> None:
        self._check()
        self._session.rollback()

    def close(self) -> None:
        if self._closed:
            raise ProgrammingError("cannot operate on a closed connection")
        try:
            self._session.close()
        finally:
            self._closed = True
            release_database(self._db)

    def execute(self, sql: str, parameters=()) -> "Cursor":
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters) -> "Cursor":
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, script: str) -> "Cursor":
        return self.cursor().executescript(script)

    def __enter__(self) -> "Connection":
        self._check()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class Cursor:
    def __init__(self, connection: Connection):
        self.connection = connection
        self.arraysize = 1
        self.description = None
        self.rowcount = -1
        self.lastrowid = None
        self._rows = None
        self._closed = False
        self.row_factory = None

    def _check(self) -> Session:
        if self._closed:
            raise ProgrammingError("cannot operate on a closed cursor")
        self.connection._check()
        return self.connection._session

    def _reset(self) -> None:
        rows = self._rows
        self._rows = None
        if rows is not None and hasattr(rows, "close"):
            rows.close()

    def _take(self, result: Result) -> "Cursor":
        if result.columns is not None:
            self.description = tuple((name, t, None, None, None, None, None)
                                     for name, t in zip(result.columns, result.types))
            self._rows = result.rows
            self.rowcount = -1
        else:
            self.description = None
            self._rows = None
            self.rowcount = result.rowcount
        if result.lastrowid is not None:
            self.lastrowid = result.lastrowid
        return self

    @_guard
    def execute(self, sql: str, parameters=()) -> "Cursor":
        session = self._check()
        self._reset()
        return self._take(session.execute(sql, parameters))

    @_guard
    def executemany(self, sql: str, seq_of_parameters: Iterable) -> "Cursor":
        session = self._check()
        self._reset()
        result = session.executemany(sql, seq_of_parameters)
        self.description = None
        self.rowcount = result.rowcount
        if result.lastrowid is not None:
            self.lastrowid = result.lastrowid
        return self

    @_guard
    def executescript(self, script: str) -> "Cursor":
        session = self._check()
        self._reset()
        if not isinstance(script, str):
            raise ProgrammingError("script must be a str")
        from tabledb.sql import dialect
        if session.txn is not None and not session.autocommit:
            session.commit()
        for node in dialect.parse(script):
            sql = node.sql(dialect=dialect.TableDB) if not isinstance(node, str) else node
            result = session.execute(sql, ())
            if result.rows is not None:
                for _ in result.rows:
                    pass
        if session.txn is not None and not session.explicit and not session.autocommit:
            session.commit()
        self.description = None
        return self

    def _fetch_iter(self):
        self._check()
        if self._rows is None:
            raise ProgrammingError("no results to fetch: execute a query first")
        return self._rows

    def _convert(self, row):
        factory = self.row_factory or self.connection.row_factory
        if factory is None:
            return row
        return factory(self, row)

    @_guard
    def fetchone(self):
        rows = self._fetch_iter()
        for row in rows:
            return self._convert(row)
        return None

    @_guard
    def fetchmany(self, size: int | None = None) -> list:
        rows = self._fetch_iter()
        n = self.arraysize if size is None else size
        out = []
        for row in rows:
            out.append(self._convert(row))
            if len(out) >= n:
                break
        return out

    @_guard
    def fetchall(self) -> list:
        rows = self._fetch_iter()
        if self.row_factory is None and self.connection.row_factory is None:
            return list(rows)
        return [self._convert(r) for r in rows]

    def __iter__(self):
        return self

    def __next__(self):
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        self._reset()
        self._closed = True

    def setinputsizes(self, sizes) -> None:
        pass

    def setoutputsize(self, size, column=None) -> None:
        pass

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ = (errors, Any)
