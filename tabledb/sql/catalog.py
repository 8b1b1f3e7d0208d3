"""The catalog: tables, columns, constraints, indexes and views, kept in the engine.

The catalog lives in its own column family, ``catalog``, beside the data, and
every DDL statement writes its catalog records in the same write batch as its
data changes, so schema and rows always change together (and a backup or a
restore carries the schema of its moment).

Records (part of the file format; values are UTF-8 JSON objects)::

    key b"meta"              {"format": 1, "next_table_id": N}
    key b"table:" + name     {"id", "name", "columns": [...], "primary_key": [...],
                              "checks": [sql, ...], "indexes": [...], "rowid_alias": bool}
    key b"view:" + name      {"name", "sql", "columns": [...] | null}

``name`` is the lower-cased SQL name (names are case-insensitive, as in SQLite);
the record keeps the spelling the user gave. A column is
``{"name", "type", "not_null", "default": sql | null, "unique": bool}`` and an
index ``{"id", "name", "columns": [[column, descending], ...], "unique": bool}``.

In memory a :class:`Catalog` is immutable once published: a DDL statement
copies it (:meth:`Catalog.copy`), changes the copy and hands the changed
records to the transaction. Each copy gets a new ``version``, which plan caches
compare against.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from tabledb.errors import CorruptionError, ProgrammingError
from tabledb.sql import keys

CATALOG_CF = "catalog"
CATALOG_FORMAT = 1
META_KEY = b"meta"
TABLE_PREFIX = b"table:"
VIEW_PREFIX = b"view:"

_versions = itertools.count(1)


@dataclass
class Column:
    name: str
    type: str
    not_null: bool = False
    default: str | None = None  # SQL text of the DEFAULT expression
    unique: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "not_null": self.not_null,
                "default": self.default, "unique": self.unique}

    @classmethod
    def from_json(cls, d: dict) -> "Column":
        return cls(d["name"], d["type"], bool(d.get("not_null")), d.get("default"), bool(d.get("unique")))


@dataclass
class Index:
    id: int
    name: str
    columns: list[tuple[str, bool]]  # (column name, descending)
    unique: bool = False

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "columns": [[c, d] for c, d in self.columns],
                "unique": self.unique}

    @classmethod
    def from_json(cls, d: dict) -> "Index":
        return cls(d["id"], d["name"], [(c, bool(desc)) for c, desc in d["columns"]], bool(d.get("unique")))


@dataclass
class Table:
    """A table definition plus derived lookups (positions, key codecs).

    ``primary_key`` lists column names; empty means the table has a hidden
    int64 row id (its key column, not one of ``columns``). ``rowid_alias`` is
    True for a single ``INTEGER PRIMARY KEY`` column, which (as in SQLite) is
    assigned ``max + 1`` when a row gives it no value.
    """

    id: int
    name: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    rowid_alias: bool = False
    next_index_id: int = 1
    created_width: int = 0   # columns at CREATE TABLE; rows stored since then may lack later ones

    def __post_init__(self):
        self._derive()

    def _derive(self) -> None:
        self.positions = {c.name.lower(): i for i, c in enumerate(self.columns)}
        self.types = [c.type for c in self.columns]
        if self.primary_key:
            self.pk_positions = [self.positions[c.lower()] for c in self.primary_key]
            self.pk_types = [self.types[i] for i in self.pk_positions]
        else:
            self.pk_positions = []
            self.pk_types = list(keys.ROWID_TYPES)
        self.pk_codec = keys.KeyCodec(self.pk_types)
        self.row_prefix = keys.index_prefix(self.id, keys.PRIMARY_INDEX_ID)
        self.row_range = keys.index_range(self.id, keys.PRIMARY_INDEX_ID)
        self.key_range = keys.table_range(self.id)

    @property
    def hidden_rowid(self) -> bool:
        return not self.primary_key

    def column_index(self, name: str) -> int:
        try:
            return self.positions[name.lower()]
        except KeyError:
            raise ProgrammingError(f"no such column: {name}") from None

    def index_named(self, name: str) -> Index | None:
        low = name.lower()
        for index in self.indexes:
            if index.name.lower() == low:
                return index
        return None

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "columns": [c.to_json() for c in self.columns],
                "primary_key": list(self.primary_key), "checks": list(self.checks),
                "indexes": [i.to_json() for i in self.indexes], "rowid_alias": self.rowid_alias,
                "next_index_id": self.next_index_id, "created_width": self.created_width}

    @classmethod
    def from_json(cls, d: dict) -> "Table":
        return cls(d["id"], d["name"], [Column.from_json(c) for c in d["columns"]],
                   list(d.get("primary_key") or []), list(d.get("checks") or []),
                   [Index.from_json(i) for i in d.get("indexes") or []], bool(d.get("rowid_alias")),
                   int(d.get("next_index_id", 1)), int(d.get("created_width", 0)))

    def clone(self) -> "Table":
        return Table.from_json(self.to_json())


@dataclass
class View:
    name: str
    sql: str
    columns: list[str] | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "sql": self.sql, "columns": self.columns}

    @classmethod
    def from_json(cls, d: dict) -> "View":
        return cls(d["name"], d["sql"], d.get("columns"))


class Catalog:
    """One version of the schema. Treat a published catalog as read-only."""

    def __init__(self, tables: dict[str, Table] | None = None, views: dict[str, View] | None = None,
                 next_table_id: int = 1):
        self.tables: dict[str, Table] = tables or {}
        self.views: dict[str, View] = views or {}
        self.next_table_id = next_table_id
        self.version = next(_versions)

    # -- loading -------------------------------------------------------------
    @classmethod
    def load(cls, engine, cf, snapshot=None) -> "Catalog":
        """Read the catalog column family (``cf``) of ``engine``."""
        tables: dict[str, Table] = {}
        views: dict[str, View] = {}
        next_id = 1
        for key, value in engine.scan(None, None, cf=cf, snapshot=snapshot):
            try:
                record = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                raise CorruptionError(f"catalog record {key!r} is not valid JSON", file="catalog", offset=0) from None
            if key == META_KEY:
                if record.get("format", 1) > CATALOG_FORMAT:
                    raise CorruptionError(f"catalog format {record.get('format')} is newer than this tabledb",
                                          file="catalog", offset=0)
                next_id = int(record.get("next_table_id", 1))
            elif key.startswith(TABLE_PREFIX):
                table = Table.from_json(record)
                tables[table.name.lower()] = table
            elif key.startswith(VIEW_PREFIX):
                view = View.from_json(record)
                views[view.name.lower()] = view
        return cls(tables, views, next_id)

    def copy(self) -> "Catalog":
        return Catalog(dict(self.tables), dict(self.views), self.next_table_id)

    # -- lookups -------------------------------------------------------------
    def table(self, name: str) -> Table:
        table = self.tables.get(name.lower())
        if table is None:
            raise ProgrammingError(f"no such table: {name}")
        return table

    def find_index(self, name: str) -> tuple[Table, Index] | None:
        low = name.lower()
        for table in self.tables.values():
            for index in table.indexes:
                if index.name.lower() == low:
                    return table, index
        return None

    def name_taken(self, name: str) -> bool:
        low = name.lower()
        return low in self.tables or low in self.views

    # -- records -------------------------------------------------------------
    @staticmethod
    def table_key(name: str) -> bytes:
        return TABLE_PREFIX + name.lower().encode("utf-8")

    @staticmethod
    def view_key(name: str) -> bytes:
        return VIEW_PREFIX + name.lower().encode("utf-8")

    @staticmethod
    def encode(record: Any) -> bytes:
        return json.dumps(record.to_json() if hasattr(record, "to_json") else record,
                          separators=(",", ":"), sort_keys=True).encode("utf-8")

    def meta_record(self) -> bytes:
        return self.encode({"format": CATALOG_FORMAT, "next_table_id": self.next_table_id})
