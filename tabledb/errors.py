"""One error root for tabledb, shaped as the PEP 249 exception hierarchy.

Every error tabledb raises derives from :class:`Error` (or :class:`Warning`).
The storage engine raises the storage-specific subclasses below; the DB-API
layer re-exports the PEP 249 names unchanged, so nothing needs translating at
the edge.

    Warning
    Error
    +-- InterfaceError
    +-- DatabaseError
        +-- DataError
        +-- OperationalError
        |   +-- StorageIOError        an I/O call failed (EIO, ENOSPC, ...)
        |   +-- DatabaseLockedError   another process holds the database
        |   +-- ClosedError           use after close()
        +-- IntegrityError
        +-- InternalError
        +-- ProgrammingError
        |   +-- SQLSyntaxError        SQL that does not parse: .line, .col
        |   +-- InvalidArgumentError  bad arguments to a public call (also a ValueError)
        |       +-- InvalidTypeError  wrong argument type (also a TypeError)
        +-- NotSupportedError
        +-- CorruptionError           a damaged file: names the file and the byte offset
"""

from __future__ import annotations


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    """Important warnings, such as data truncation on insert."""


class Error(Exception):
    """The root of every tabledb error."""


class InterfaceError(Error):
    """Misuse of the database interface rather than of the database."""


class DatabaseError(Error):
    """Errors that concern the database itself."""


class DataError(DatabaseError):
    """A value does not fit: out of range, wrong type for its column."""


class OperationalError(DatabaseError):
    """The database's operation failed: I/O, locking, resources."""


class IntegrityError(DatabaseError):
    """A constraint was violated."""


class InternalError(DatabaseError):
    """The database reached a state it should never reach."""


class ProgrammingError(DatabaseError):
    """Bad SQL or bad use of the API."""


class NotSupportedError(DatabaseError):
    """A feature that tabledb does not provide."""


class SQLSyntaxError(ProgrammingError):
    """SQL that does not parse. ``line`` and ``col`` are 1-based (None if unknown)."""

    def __init__(self, message: str, *, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.line = line
        self.col = col


class StorageIOError(OperationalError):
    """An operating-system I/O call failed; ``errno`` and ``path`` say which."""

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno


class DatabaseLockedError(OperationalError):
    """The database directory is held by another process (its LOCK file)."""


class ClosedError(OperationalError):
    """The engine, snapshot or iterator was used after it was closed."""


class InvalidArgumentError(ProgrammingError, ValueError):
    """A public call got an argument it cannot accept; nothing was changed."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """A public call got an argument of the wrong type; nothing was changed."""


class CorruptionError(DatabaseError):
    """A file's bytes are damaged: a checksum, magic number or length is wrong.

    ``file`` is the path of the damaged file and ``offset`` the byte offset in
    it where the damage was found (the start of the record or block that failed
    its check).
    """

    def __init__(self, message: str, *, file: str, offset: int):
        super().__init__(f"{message} (file {file}, offset {offset})")
        self.file = file
        self.offset = offset

    def __reduce__(self):  # keep file/offset when pickled across processes
        return (_rebuild_corruption, (self.args[0], self.file, self.offset))


def _rebuild_corruption(full_message: str, file: str, offset: int) -> CorruptionError:
    err = CorruptionError.__new__(CorruptionError)
    Exception.__init__(err, full_message)
    err.file = file
    err.offset = offset
    return err


__all__ = [
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError", "SQLSyntaxError",
    "StorageIOError", "DatabaseLockedError", "ClosedError", "InvalidArgumentError",
    "InvalidTypeError", "CorruptionError",
]
