"""tabledb: an embedded SQL table store on its own LSM engine.

    import tabledb
    conn = tabledb.connect("path/to/db")      # a directory, created if missing
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (1, "one"))
    conn.commit()
    conn.execute("SELECT * FROM t").fetchall()
"""

from tabledb.dbapi import Connection, Cursor, apilevel, connect, paramstyle, threadsafety
from tabledb.errors import (CorruptionError, DatabaseError, DataError, Error, IntegrityError, InterfaceError,
                            InternalError, NotSupportedError, OperationalError, ProgrammingError, Warning)

__all__ = [
    "connect", "Connection", "Cursor", "apilevel", "paramstyle", "threadsafety",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError", "IntegrityError",
    "InternalError", "ProgrammingError", "NotSupportedError", "CorruptionError",
]
