"""PEP 249 type objects and type constructors.

A result column's type code (``cursor.description[i][1]``) is its tabledb type
name, a ``str``: "INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "DATE" or
"TIMESTAMP", or None for a computed expression whose type the planner does not
know. The type objects compare equal to the type codes they stand for:

    STRING    TEXT
    BINARY    BLOB
    NUMBER    INTEGER, REAL, BOOLEAN
    DATETIME  DATE, TIMESTAMP
    ROWID     a column named ``rowid`` (the hidden row id, or the INTEGER PRIMARY
              KEY it aliases); its code is :data:`ROWID_CODE`, which is also
              "INTEGER" and so equals NUMBER too

The constructors build the Python values tabledb binds and returns:
``Date`` -> datetime.date (a DATE), ``Timestamp`` -> datetime.datetime (a
TIMESTAMP, naive = UTC), ``Binary`` -> bytes (a BLOB). tabledb has no TIME
column type: ``Time`` builds a datetime.time, which the DB-API layer binds as
its ISO text ("HH:MM:SS[.ffffff][+HH:MM]"), so it goes into TEXT columns.
The ``...FromTicks`` constructors read ticks (seconds since the epoch) in local
time, as PEP 249's reference implementation does.
"""

from __future__ import annotations

import datetime as _dt
import time as _time

__all__ = [
    "DBAPITypeObject", "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID", "ROWID_CODE",
    "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks", "Binary",
    "type_code",
]


class RowidCode(str):
    """The type code of a row id column: the string "INTEGER" that also equals ROWID."""

    __slots__ = ()


ROWID_CODE = RowidCode("INTEGER")


class DBAPITypeObject:
    """A PEP 249 type object: equal to each type code of its group (and to itself only among type objects)."""

    __slots__ = ("name", "type_names")

    def __init__(self, name: str, *type_names: str):
        self.name = name
        self.type_names = frozenset(type_names)

    def __eq__(self, other):
        if isinstance(other, DBAPITypeObject):
            return other is self
        if isinstance(other, str):
            if self is ROWID:
                return type(other) is RowidCode
            return other.upper() in self.type_names
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash((DBAPITypeObject, self.name))

    def __repr__(self) -> str:
        return f"tabledb.{self.name}"


STRING = DBAPITypeObject("STRING", "TEXT")
BINARY = DBAPITypeObject("BINARY", "BLOB")
NUMBER = DBAPITypeObject("NUMBER", "INTEGER", "REAL", "BOOLEAN")
DATETIME = DBAPITypeObject("DATETIME", "DATE", "TIMESTAMP")
ROWID = DBAPITypeObject("ROWID")


def type_code(type_name: str | None, column_name: str):
    """The ``description`` type code of a result column of tabledb type ``type_name``."""
    if type_name == "INTEGER" and column_name.lower() == "rowid":
        return ROWID_CODE
    return type_name


# -- constructors -------------------------------------------------------------------

Date = _dt.date
Time = _dt.time
Timestamp = _dt.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> _dt.date:  # noqa: N802 - the PEP 249 name
    return Date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> _dt.time:  # noqa: N802 - the PEP 249 name
    return Time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> _dt.datetime:  # noqa: N802 - the PEP 249 name
    return Timestamp(*_time.localtime(ticks)[:6])
