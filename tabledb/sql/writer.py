"""Writing rows: values to typed rows, rows to keys, index entries and constraint checks.

A :class:`TableWriter` is built once per (statement, table) and then turns
each row into engine writes inside the statement's transaction:

* ``prepare(values)``: defaults for missing columns, lossless conversion to
  the column types (``DataError`` naming the column), NOT NULL and CHECK
  (``IntegrityError``), and the row id for tables without a primary key (or a
  NULL ``INTEGER PRIMARY KEY``, as in SQLite: one more than the largest).
* ``insert(row)``: the primary key and UNIQUE indexes must be free (else
  ``IntegrityError``, or the conflict handler of INSERT OR REPLACE / IGNORE /
  ON CONFLICT decides), then the row and its index entries are written.
* ``delete(row)`` and ``update(old, new)`` keep every index in step.

Index entries (see :mod:`tabledb.sql.keys`): a UNIQUE index whose values
are all non-NULL stores ``index key -> primary key suffix``; every other entry
is ``index key + primary key suffix -> b""``.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlglot import exp

from tabledb.errors import IntegrityError
from tabledb.sql import dialect, keys
from tabledb.sql import values as V
from tabledb.sql.expressions import Compiler, Scope, Source
from tabledb.sql.rowcodec import encode_row

MISSING = object()   # a column the INSERT did not name (its DEFAULT applies)

_FIXED_CODES = {"INTEGER": ("q", 0x06), "REAL": ("d", 0x07), "TEXT": ("I", 0x0A), "BLOB": ("I", 0x0B)}


def row_encoder(types: list[str]) -> Callable[[Any], bytes]:
    """An encoder for rows of one table: the bytes of ``rowcodec.encode_row`` (format 1, with
    every integer as INT64), built for the column types so that a row without NULLs is one
    struct pack and a join. Rows with NULLs or other types go through ``encode_row``."""
    from tabledb.sql import rowcodec
    n = len(types)
    if n == 0 or n >= 255 or any(t not in _FIXED_CODES for t in types):
        return encode_row
    assert rowcodec.FORMAT_VERSION == 1 and rowcodec.TAG_INT64 == 0x06 and rowcodec.TAG_TEXT == 0x0A
    import struct
    head = bytes((rowcodec.FORMAT_VERSION, n)) + bytes(_FIXED_CODES[t][1] for t in types)
    packer = struct.Struct("<" + "".join(_FIXED_CODES[t][0] for t in types))
    names = [f"v{i}" for i in range(n)]
    checks, encodes, fields, var = [], [], [], []
    for i, t in enumerate(types):
        v = names[i]
        py = {"INTEGER": "int", "REAL": "float", "TEXT": "str", "BLOB": "bytes"}[t]
        checks.append(f"type({v}) is not {py}")
        if t == "TEXT":
            encodes.append(f"    d{i} = {v}.encode('utf-8')")
            fields.append(f"len(d{i})")
            var.append(f"d{i}")
        elif t == "BLOB":
            fields.append(f"len({v})")
            var.append(v)
        else:
            fields.append(v)
    src = ["def encode(row):",
           f"    {', '.join(names)}, = row",
           f"    if {' or '.join(checks)}:",
           "        return slow(row)",
           "    try:",
           *["    " + e for e in encodes],
           f"        return b''.join((head, pack({', '.join(fields)}){''.join(', ' + x for x in var)}))",
           "    except (UnicodeEncodeError, StructError):",
           "        return slow(row)  # raises the DataError that names the problem"]
    env = {"slow": encode_row, "head": head, "pack": packer.pack, "StructError": struct.error}
    exec("\n".join(src), env)  # noqa: S102 - generated from column types only
    return env["encode"]


class IndexWriter:
    __slots__ = ("index", "positions", "codec", "prefix", "unique", "label")

    def __init__(self, table, index):
        self.index = index
        self.positions = [table.positions[c.lower()] for c, _d in index.columns]
        self.codec = keys.KeyCodec([table.types[p] for p in self.positions], [d for _c, d in index.columns])
        self.prefix = keys.index_prefix(table.id, index.id)
        self.unique = index.unique
        self.label = ", ".join(f"{table.name}.{c}" for c, _d in index.columns)

    def entry(self, row: tuple, suffix: bytes) -> tuple[bytes, bytes, bool]:
        """(key, value, checks uniqueness) of this row's entry."""
        vals = [row[p] for p in self.positions]
        enc = self.prefix + self.codec.encode(vals)
        if self.unique and None not in vals:
            return enc, suffix, True
        return enc + suffix, b"", False


class TableWriter:
    """Row writes for one table within one statement (see the module docstring)."""

    def __init__(self, session, table, planner):
        self.session = session
        self.table = table
        self.planner = planner
        self.ncols = len(table.columns)
        self.row_prefix = table.row_prefix
        self.pk_codec = table.pk_codec
        self.pk_positions = table.pk_positions
        self.hidden = table.hidden_rowid
        self.rowid_alias = table.rowid_alias
        self.indexes = [IndexWriter(table, i) for i in table.indexes]
        self.labels = [f"{table.name}.{c.name}" for c in table.columns]
        self.types = list(table.types)
        self.not_null = [c.not_null or (table.primary_key and i in table.pk_positions and not table.rowid_alias)
                         for i, c in enumerate(table.columns)]
        source = Source(table.name, [c.name for c in table.columns], list(table.types), table=table)
        self.scope = Scope([source], None)
        self.source = source
        comp = Compiler(planner, self.scope, {source: 0}, planner.rt)
        self.checks: list[tuple[Callable, str]] = []
        for text in table.checks:
            node = dialect.parse_one(text)
            self.checks.append((comp.compile(node), text))
        empty = Compiler(planner, Scope([], None), {}, planner.rt)
        self.defaults: list[Callable | None] = []
        for c in table.columns:
            self.defaults.append(empty.compile(dialect.parse_one(c.default)) if c.default is not None else None)
        self.encode = row_encoder(self.types)
        if self.ncols <= 200:
            self.prepare = self._generated_prepare()

    def _generated_prepare(self) -> Callable[[list], list]:
        """``prepare`` as straight-line code for this table's columns (no per-column loop)."""
        fast = {"INTEGER": "type({v}) is int and -0x8000000000000000 <= {v} <= 0x7FFFFFFFFFFFFFFF",
                "TEXT": "type({v}) is str", "REAL": "type({v}) is float and {v} == {v}",
                "BLOB": "type({v}) is bytes", "BOOLEAN": "type({v}) is bool"}
        n = self.ncols
        names = [f"v{i}" for i in range(n)]
        lines = ["def prepare(values):", f"    {', '.join(names)}, = values"]
        for i, v in enumerate(names):
            lines.append(f"    if {v} is MISSING:")
            lines.append(f"        {v} = defaults[{i}](None) if defaults[{i}] is not None else None")
            cond = fast.get(self.types[i])
            test = f"{v} is not None" + (f" and not ({cond.format(v=v)})" if cond else "")
            lines.append(f"    if {test}:")
            lines.append(f"        {v} = coerce({v}, types[{i}], labels[{i}])")
        if self.rowid_alias:
            v = names[self.pk_positions[0]]
            lines.append(f"    if {v} is None:")
            lines.append(f"        {v} = session.next_rowid(table)")
        for i, v in enumerate(names):
            if self.not_null[i]:
                lines.append(f"    if {v} is None:")
                lines.append(f"        raise IntegrityError('NOT NULL constraint failed: ' + labels[{i}])")
        lines.append(f"    row = [{', '.join(names)}]")
        if self.checks:
            lines.append("    check(row)")
        lines.append("    return row")
        env = {"MISSING": MISSING, "defaults": self.defaults, "coerce": V.coerce_value, "types": self.types,
               "labels": self.labels, "session": self.session, "table": self.table,
               "IntegrityError": IntegrityError, "check": self._check}
        exec("\n".join(lines), env)  # noqa: S102 - generated from the table definition only
        return env["prepare"]

    def _check(self, row: list) -> None:
        t = tuple(row)
        for fn, text in self.checks:
            r = fn(t)
            if r is not None and not V.truth(r):
                raise IntegrityError(f"CHECK constraint failed: {text}")

    # -- building a row --------------------------------------------------------
    def prepare(self, values: list) -> list:
        """A complete, typed, checked row (a list of column values)."""
        row = list(values)
        types = self.types
        coerce = V.coerce_value
        for i in range(self.ncols):
            v = row[i]
            if v is MISSING:
                d = self.defaults[i]
                v = d(None) if d is not None else None
            if v is not None:
                t = types[i]
                tv = type(v)
                if not ((tv is int and t == "INTEGER" and -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF)
                        or (tv is str and t == "TEXT") or (tv is float and t == "REAL" and v == v)):
                    v = coerce(v, t, self.labels[i])
            row[i] = v
        if self.rowid_alias:
            p = self.pk_positions[0]
            if row[p] is None:
                row[p] = self.session.next_rowid(self.table)
        for i in range(self.ncols):
            if row[i] is None and self.not_null[i]:
                raise IntegrityError(f"NOT NULL constraint failed: {self.labels[i]}")
        if self.checks:
            t = tuple(row)
            for fn, text in self.checks:
                r = fn(t)
                if r is not None and not V.truth(r):
                    raise IntegrityError(f"CHECK constraint failed: {text}")
        return row

    def key_of(self, row, rowid: int | None = None) -> bytes:
        if self.hidden:
            return self.row_prefix + self.pk_codec.encode((rowid,))
        return self.row_prefix + self.pk_codec.encode([row[p] for p in self.pk_positions])

    # -- writes ------------------------------------------------------------------
    def conflicts(self, txn, row, key: bytes) -> tuple[bool, list[bytes]]:
        """(primary key taken, row keys of other rows holding this row's UNIQUE values)."""
        taken = not self.hidden and self._exists(txn, key)
        others = []
        suffix = key[len(self.row_prefix):]
        for iw in self.indexes:
            if not iw.unique:
                continue
            ikey, _v, checks = iw.entry(row, suffix)
            if checks:
                holder = txn.get(ikey)
                if holder is not None and holder != suffix:
                    others.append(self.row_prefix + holder)
        return taken, others

    def unique_holder(self, txn, row, key: bytes, index_id: int, pk_taken: bool) -> bytes | None:
        """The row key of the stored row holding this new row's values of the UNIQUE index
        ``index_id`` (the row under the same primary key, too, when ``pk_taken``)."""
        suffix = key[len(self.row_prefix):]
        for iw in self.indexes:
            if iw.index.id == index_id:
                ikey, _v, checks = iw.entry(row, suffix)
                holder = txn.get(ikey) if checks else None
                if holder is not None and (holder != suffix or pk_taken):
                    return self.row_prefix + holder
                return None
        return None

    def _exists(self, txn, key: bytes) -> bool:
        session = self.session
        session.inserts += 1
        if session.inserts < 64:
            return txn.get(key) is not None
        smax = session.snapshot_max_key(self.table)
        if smax is None or key > smax:
            found, value = txn.get_local(key)
            return found and value is not None
        return txn.get(key) is not None

    def unique_error(self, row, key: bytes, pk_taken: bool) -> IntegrityError:
        if pk_taken:
            cols = ", ".join(self.labels[p] for p in self.pk_positions)
            return IntegrityError(f"UNIQUE constraint failed: {cols}")
        suffix = key[len(self.row_prefix):]
        for iw in self.indexes:
            if iw.unique:
                ikey, _v, checks = iw.entry(row, suffix)
                if checks:
                    holder = self.session.txn.get(ikey)
                    if holder is not None and holder != suffix:
                        return IntegrityError(f"UNIQUE constraint failed: {iw.label}")
        return IntegrityError(f"UNIQUE constraint failed: {self.table.name}")

    def write(self, txn, row, key: bytes) -> None:
        """Write the row and its index entries (no checks)."""
        txn.put(key, self.encode(row))
        if self.indexes:
            suffix = key[len(self.row_prefix):]
            for iw in self.indexes:
                ikey, value, _c = iw.entry(row, suffix)
                txn.put(ikey, value)

    def delete(self, txn, row, key: bytes) -> None:
        txn.delete(key)
        if self.hidden or self.rowid_alias:
            # as SQLite, the next automatic row id is max + 1 again
            self.session.db.rowid_next.pop(self.table.id, None)
        if self.indexes:
            suffix = key[len(self.row_prefix):]
            for iw in self.indexes:
                ikey, _value, _c = iw.entry(row, suffix)
                txn.delete(ikey)

    def read(self, txn, key: bytes) -> list | None:
        """The stored row at ``key`` (padded for added columns), or None."""
        from tabledb.sql.rowcodec import decode_row
        value = txn.get(key)
        if value is None:
            return None
        row = list(decode_row(value))
        if len(row) < self.ncols:
            row.extend(self.planner._defaults(self.table)[len(row):])
        return row

    def insert(self, txn, row: list, mode: str = "abort") -> tuple[bool, bytes]:
        """Insert a prepared row; ``mode`` is "abort", "replace" or "ignore".
        Returns (inserted, key)."""
        if not self.indexes and not self.hidden:
            # the common case, inlined: a primary key and no secondary indexes
            key = self.row_prefix + self.pk_codec.encode([row[p] for p in self.pk_positions])
            session = self.session
            session.inserts += 1
            if session.inserts < 64:
                smax = b""    # a few rows: a point get is cheaper than finding the table's last key
            else:
                smax = session._snapshot_max.get(self.table.id, False)
                if smax is False:
                    smax = session.snapshot_max_key(self.table)
            if smax is None or (smax and key > smax):
                found, value = txn.get_local(key)
                taken = found and value is not None
            else:
                taken = txn.get(key) is not None
            if not taken:
                txn.put(key, self.encode(row))
                if self.rowid_alias:
                    v = row[self.pk_positions[0]]
                    session = self.session
                    session.last_rowid = v
                    nxt = session.db.rowid_next.get(self.table.id)
                    if nxt is not None and v >= nxt:
                        session.db.rowid_next[self.table.id] = v + 1
                return True, key
        rowid = None
        if self.hidden:
            rowid = self.session.next_rowid(self.table)
        key = self.key_of(row, rowid)
        taken, others = self.conflicts(txn, row, key)
        if taken or others:
            if mode == "ignore":
                return False, key
            if mode != "replace":
                raise self.unique_error(row, key, taken)
            if taken:
                old = self.read(txn, key)
                if old is not None:
                    self.delete(txn, old, key)
            for okey in others:
                if okey == key:
                    continue
                old = self.read(txn, okey)
                if old is not None:
                    self.delete(txn, old, okey)
        self.write(txn, row, key)
        if self.rowid_alias:
            self.session.saw_rowid(self.table, row[self.pk_positions[0]])
        elif self.hidden:
            self.session.last_rowid = rowid
        return True, key

    def update(self, txn, old: list, old_key: bytes, new: list) -> bytes:
        """Replace ``old`` (at ``old_key``) with the prepared row ``new``; returns the new key."""
        if self.hidden:
            new_key = old_key
        else:
            new_key = self.key_of(new)
        suffix_old = old_key[len(self.row_prefix):]
        if new_key != old_key:
            if txn.get(new_key) is not None:
                raise self.unique_error(new, new_key, True)
            txn.delete(old_key)
        suffix_new = new_key[len(self.row_prefix):]
        for iw in self.indexes:
            okey, _ov, _oc = iw.entry(old, suffix_old)
            nkey, nvalue, checks = iw.entry(new, suffix_new)
            if okey == nkey and suffix_old == suffix_new:
                continue
            if checks:
                holder = txn.get(nkey)
                if holder is not None and holder != suffix_old and holder != suffix_new:
                    raise IntegrityError(f"UNIQUE constraint failed: {iw.label}")
            txn.delete(okey)
            txn.put(nkey, nvalue)
        txn.put(new_key, self.encode(new))
        if self.rowid_alias:
            self.session.saw_rowid(self.table, new[self.pk_positions[0]])
        return new_key


def constant_default(node: exp.Expr) -> Any:
    """Reject defaults that read columns (SQLite requires constant defaults)."""
    if node.find(exp.Column) is not None:
        from tabledb.errors import ProgrammingError
        raise ProgrammingError("default value of column is not constant")
    return node
