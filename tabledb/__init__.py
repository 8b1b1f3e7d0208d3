"""tabledb: an embedded SQL table store on its own LSM engine, with a DB-API 2.0 interface.

    import tabledb
    conn = tabledb.connect("path/to/db")      # a directory, created if missing
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (1, "one"))
    conn.commit()
    conn.execute("SELECT * FROM t").fetchall()
"""

from tabledb.backup import restore, verify_backup
from tabledb.dbapi import Connection, Cursor, Row, apilevel, connect, paramstyle, threadsafety
from tabledb.errors import (CorruptionError, DatabaseError, DataError, Error, IntegrityError, InterfaceError,
                            InternalError, NotSupportedError, OperationalError, ProgrammingError, Warning)
from tabledb.types import (BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Date, DateFromTicks, Time,
                           TimeFromTicks, Timestamp, TimestampFromTicks)

__all__ = [
    "connect", "restore", "verify_backup", "Connection", "Cursor", "Row", "apilevel", "paramstyle", "threadsafety",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError", "IntegrityError",
    "InternalError", "ProgrammingError", "NotSupportedError", "CorruptionError",
    "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks", "Binary",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
]
