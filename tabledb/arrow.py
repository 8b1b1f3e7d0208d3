"""Arrow for tabledb: results as pyarrow tables and streams, bulk loads from Arrow, COPY to and from files.

This layer sits on top of the SQL layer (it never reaches into the storage
engine except through the engine's public bulk-ingest calls) and is the only
part of tabledb that imports pyarrow.

Types (the same both ways)::

    INTEGER int64    REAL float64    TEXT string    BLOB binary
    BOOLEAN bool     DATE date32     TIMESTAMP timestamp[us] (naive, UTC)

Export
======
``fetch_arrow_table(cursor)``, ``fetch_record_batch(cursor, rows_per_batch)``
and ``arrow_c_stream(cursor)`` consume the rest of a cursor's result. Columns
whose type the planner knows get it; a computed column (type None) takes the
type of its values (ints and floats together: float64; other mixes: string; no
value at all: null). A stream must fix its schema before its first batch, so it
reads ahead until every computed column has shown a value; a later batch whose
values do not fit raises DataError naming the column.

Rows become columns in batches, never one value at a time in Python:

* rows of a plan (tuples): a batch of tuples is converted by pyarrow in one
  call as a struct array, then split into its columns (0.13 us a row for 4
  columns, against 0.28-0.44 for ``zip(*rows)`` then ``pa.array`` per column);
* stored rows of a table (``COPY t TO``, :func:`table_reader`, and cursors whose
  rows the session marks as a bare table scan, see :func:`_stored_scan`): the
  row bytes go into one BinaryArray; rows sharing a header (format version,
  column count, type tags: see :mod:`tabledb.sql.rowcodec`) share a layout, so
  each fixed-size value sits at one offset in every row and ``binary_slice``
  plus a reinterpretation of the bytes gives its column; TEXT and BLOB values
  are cut out of the same buffer by ``take`` over a "pieces" array whose offsets
  are every value boundary. 0.1 us a row for (INTEGER, TEXT, REAL, TEXT),
  against 0.7 us for ``decode_row`` and 0.13 for the columns. Rows whose layout
  is unusual (rows stored before ALTER TABLE ADD COLUMN, more than
  ``_MAX_LAYOUTS`` headers in a batch, damaged bytes) are decoded one by one
  with ``decode_row``, which also raises the CorruptionError that names the damage.

Ingest
======
``ingest_arrow(connection, name, data, mode)`` loads a ``pyarrow.Table``, a
``RecordBatch``, a ``RecordBatchReader`` or anything with ``__arrow_c_stream__``.

1. The Arrow schema is checked against the table: every incoming column must
   name a table column (case-insensitively) and its Arrow type must fit the
   column's type (``_FITS``); otherwise DataError naming the column, before
   anything is read. Table columns the data lacks get their DEFAULT.
2. Each batch is converted column by column with Arrow kernels, with the
   lossless rules of ``tabledb.sql.values.coerce_value`` (1.0 -> 1 but 1.5 is
   an error for INTEGER, NaN is an error for REAL, -0.0 is stored as 0.0,
   timestamps with a zone become UTC, ...), then NOT NULL is checked. Tables
   with CHECK constraints (and a partly NULL ``INTEGER PRIMARY KEY``) go row by
   row through :class:`~tabledb.sql.writer.TableWriter.prepare` instead.
3. Keys, stored rows and index entries are encoded with Arrow kernels too
   (``_VectorEncoder``, the same bytes as ``tabledb.sql.keys`` and a row
   ``rowcodec.decode_row`` reads back), batch by batch, and kept encoded.
4. Then, inside one statement (writer lock held, nothing written if anything
   fails):
   * the table is empty, or every new key sorts after its last row and it has
     no UNIQUE index: keys are sorted (Arrow ``sort_indices``) and checked for
     duplicates (IntegrityError). Outside a transaction, when the engine offers
     ``reserve_sequence``/``sst_writer``/``ingest``, the sorted rows and index
     entries are written as SSTables and ingested in one call
     (:mod:`tabledb.sql.bulk`); otherwise they are put into the transaction in
     key order without per-row reads;
   * otherwise every row is checked against the table (primary key and UNIQUE
     indexes) and put, in the order given.

``mode="create"`` creates the table from the Arrow schema (no primary key: a
hidden row id), ``"replace"`` drops and recreates it. Outside a transaction
both load into a fresh table under a temporary name, then drop the old table
and rename the new one in one transaction: readers see the old table or the
complete new one, never a part (a crash in between leaves the temporary table
behind, named ``__tabledb_ingest_*``). Inside a transaction, the DDL and the
rows join that transaction.

``ingest_arrow`` outside a transaction is its own transaction and commits;
inside one (BEGIN, or pending writes) its writes commit with it. ``COPY t FROM``
is a statement like INSERT: it joins the statement's transaction, so it never
takes the SSTable path. The encoded batches stay in memory (Arrow buffers,
about the size of the stored rows and index entries) until they are written:
the sort and the duplicate check need them all.

COPY
====
``COPY t TO 'file'``, ``COPY (SELECT ...) TO 'file'`` and ``COPY t FROM 'file'``
with ``WITH (format = 'parquet' | 'csv', header = true, delimiter = ',',
compression = 'snappy')``; the format defaults from the extension (.parquet,
.pq, .csv, .tsv). Files are written to a temporary name and renamed, so a
failed COPY leaves no partial file. In CSV, NULL is an empty field, the
empty string a quoted ``""`` and a BLOB ``\\x`` plus hex digits (PostgreSQL's
bytea text); a CSV file's columns are matched to the table's by the header
names (``header = false``: by position), and parsed as the table's types.

Errors: only tabledb's (PEP 249) exceptions leave this module; Arrow's
conversion errors become DataError naming the column.
"""

from __future__ import annotations

import csv as _csv
import datetime as _dt
import os
import sys
import uuid
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from tabledb.errors import (DataError, Error, IntegrityError, InvalidArgumentError, InvalidTypeError, OperationalError,
                            ProgrammingError)
from tabledb.sql import bulk as B
from tabledb.sql import keys as K
from tabledb.sql import rowcodec as R
from tabledb.sql import values as V
from tabledb.sql.rowcodec import decode_row

__all__ = ["ARROW_TYPES", "arrow_c_stream", "fetch_arrow_table", "fetch_record_batch", "ingest_arrow",
           "plan_copy", "table_reader"]

DEFAULT_BATCH_ROWS = 65536
_PUT_SLICE = 65536               # entries turned into Python bytes at a time when writing them
_MAX_LAYOUTS = 64                # distinct row headers in a batch beyond which rows are decoded one by one
_LITTLE_ENDIAN = sys.byteorder == "little"   # rows and Arrow buffers then share their number layout

ARROW_TYPES: dict[str, pa.DataType] = {
    "INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string(), "BLOB": pa.binary(),
    "BOOLEAN": pa.bool_(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us"),
}
_PYTHON_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary(),
                 _dt.date: pa.date32(), _dt.datetime: pa.timestamp("us")}
_NUMERIC = (pa.int64(), pa.float64(), pa.bool_())
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)


def _b(data: bytes) -> pa.Scalar:
    return pa.scalar(data, pa.binary())


_EMPTY = _b(b"")
_INT64_MIN = pa.scalar(-(1 << 63), pa.int64())
_MAX_INT32 = (1 << 31) - 1


# ================================================================== export: rows of a plan


def _result_columns(cursor) -> tuple[list[str], list[pa.DataType | None]]:
    """Column names and Arrow types (None: computed, to be inferred) of the cursor's result."""
    check = getattr(cursor, "_check", None)
    if check is not None:
        check()
    if getattr(cursor, "description", None) is None or getattr(cursor, "_rows", None) is None:
        raise ProgrammingError("no results to fetch: execute a query first")
    names = [d[0] for d in cursor.description]
    types = getattr(cursor, "_result_types", None)
    if types is None:
        types = [d[1] for d in cursor.description]
    return names, [ARROW_TYPES.get(t) if isinstance(t, str) else None for t in types]


def _infer_type(values: Iterable) -> pa.DataType | None:
    """The Arrow type of a computed column's values; None if they are all NULL."""
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if not kinds:
        return None
    if len(kinds) == 1:
        return _PYTHON_TYPES.get(kinds.pop(), pa.string())
    if kinds <= {int, float, bool}:
        return pa.float64()
    return pa.string()


def _fill_types(rows: list, types: list) -> list:
    """``types`` with each None replaced by the type of that column's values in ``rows`` (if any)."""
    out = list(types)
    for i, t in enumerate(types):
        if t is None:
            out[i] = _infer_type([r[i] for r in rows])
    return out


_STRUCTS: dict[tuple, pa.DataType] = {}


def _struct_of(types: list[pa.DataType]) -> pa.DataType:
    key = tuple(types)
    st = _STRUCTS.get(key)
    if st is None:
        st = pa.struct([pa.field(f"c{i}", t) for i, t in enumerate(types)])
        if len(_STRUCTS) < 256:
            _STRUCTS[key] = st
    return st


def _rows_to_arrays(rows: list, types: list[pa.DataType], names: list[str]) -> list[pa.Array]:
    """Columns of ``rows`` (tuples) with the given types: one struct conversion in C when it works."""
    if len(types) > 1 and rows:
        try:
            return pa.array(rows, type=_struct_of(types)).flatten()
        except _CONVERSION_ERRORS:
            pass                              # a value that does not fit: find the column below
    columns = list(zip(*rows)) if rows else [()] * len(types)
    return [_column_array(list(c), t, n) for c, t, n in zip(columns, types, names)]


def _column_array(values: list, t: pa.DataType, name: str) -> pa.Array:
    try:
        return pa.array(values, type=t)
    except _CONVERSION_ERRORS as exc:
        error = exc
    found = _infer_type(values)
    if found is not None and found != t:
        try:
            return pa.array(values, type=found).cast(t)
        except _CONVERSION_ERRORS:
            pass
    if t == pa.string():
        return pa.array([V.to_text(v) for v in values], pa.string())
    raise DataError(f'column "{name}": its values do not fit Arrow type {t} ({error}); '
                    f"CAST the column in the query") from None


def _unify(batches: list[list[pa.Array]], names: list[str], declared: list) -> pa.Table:
    """One table from batches whose computed columns were typed batch by batch."""
    final = []
    for i, t in enumerate(declared):
        if t is not None:
            final.append(t)
            continue
        seen = {b[i].type for b in batches} - {pa.null()}
        if not seen:
            final.append(pa.null())
        elif len(seen) == 1:
            final.append(seen.pop())
        elif all(s in _NUMERIC for s in seen):
            final.append(pa.float64())
        else:
            final.append(pa.string())
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, final)])
    out = []
    for arrays in batches:
        fixed = []
        for i, (a, t) in enumerate(zip(arrays, final)):
            if a.type != t:
                try:
                    a = a.cast(t)
                except _CONVERSION_ERRORS as exc:
                    raise DataError(f'column "{names[i]}": cannot convert {a.type} values to {t}: {exc}') from None
            fixed.append(a)
        out.append(pa.RecordBatch.from_arrays(fixed, schema=schema))
    return pa.Table.from_batches(out, schema=schema)


def _stream(rows: Iterator, names: list[str], declared: list, rows_per_batch: int
            ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """(schema, batches) of a result, reading ahead only while a computed column has no type yet."""
    it = iter(rows)
    types = list(declared)
    head: list[list] = []
    while any(t is None for t in types):
        chunk = list(islice(it, rows_per_batch))
        if not chunk:
            break
        head.append(chunk)
        types = _fill_types(chunk, types)
        if len(chunk) < rows_per_batch:
            break
    types = [pa.null() if t is None else t for t in types]
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types)])

    def batch(chunk: list) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(_rows_to_arrays(chunk, types, names), schema=schema)

    def batches() -> Iterator[pa.RecordBatch]:
        while head:
            yield batch(head.pop(0))
        while True:
            chunk = list(islice(it, rows_per_batch))
            if not chunk:
                return
            yield batch(chunk)
    return schema, batches()


def _check_batch_rows(rows_per_batch) -> int:
    if type(rows_per_batch) is not int or rows_per_batch < 1:
        raise ProgrammingError("rows_per_batch must be a positive int")
    return rows_per_batch


def fetch_arrow_table(cursor) -> pa.Table:
    """The rest of the cursor's result as a ``pyarrow.Table`` (see the module docstring for types)."""
    names, declared = _result_columns(cursor)
    scan = _stored_scan(cursor)
    try:
        if scan is not None:
            schema, batches = scan
            return pa.Table.from_batches(list(batches), schema=schema)
        batches = []
        rows = cursor._rows
        while True:
            chunk = list(islice(rows, DEFAULT_BATCH_ROWS))
            if not chunk:
                break
            types = [pa.null() if t is None else t for t in _fill_types(chunk, declared)]
            batches.append(_rows_to_arrays(chunk, types, names))
        if not batches:
            return pa.schema([pa.field(n, t or pa.null()) for n, t in zip(names, declared)]).empty_table()
        return _unify(batches, names, declared)
    except Error:
        raise
    except _CONVERSION_ERRORS as exc:
        raise DataError(f"cannot build the Arrow table: {exc}") from None


def fetch_record_batch(cursor, rows_per_batch: int = DEFAULT_BATCH_ROWS) -> pa.RecordBatchReader:
    """The rest of the result as a ``pyarrow.RecordBatchReader`` of up to ``rows_per_batch`` rows a
    batch. It reads the cursor as it is read: at most a batch of rows is held (more only while a
    computed column is NULL in every row so far, to find its type)."""
    rows_per_batch = _check_batch_rows(rows_per_batch)
    names, declared = _result_columns(cursor)
    scan = _stored_scan(cursor, rows_per_batch)
    if scan is not None:
        schema, batches = scan
    else:
        schema, batches = _stream(cursor._rows, names, declared, rows_per_batch)
    return pa.RecordBatchReader.from_batches(schema, _mapped_errors(batches))


def _mapped_errors(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except Error:
        raise
    except _CONVERSION_ERRORS as exc:
        raise DataError(f"cannot build an Arrow batch: {exc}") from None


def arrow_c_stream(cursor, requested_schema=None):
    """The Arrow PyCapsule stream of the rest of the result (``Cursor.__arrow_c_stream__``), so
    that ``pyarrow.table(cursor)``, ``polars.from_arrow`` or DuckDB read a cursor directly.

    ``requested_schema`` (the Arrow PyCapsule protocol): None, or a PyCapsule of an ArrowSchema
    with the result's column names, to which each batch is cast (a safe cast). Anything else
    is an InvalidTypeError, a schema the result cannot take an InvalidArgumentError (both
    ProgrammingErrors), raised before a row is read; the result stays where it was. A value the
    cast cannot keep (an overflow) fails the stream's consumer as it reads that batch."""
    target = None
    if requested_schema is not None:
        names, declared = _result_columns(cursor)
        target = _requested_schema(requested_schema, names, declared)
    reader = fetch_record_batch(cursor)
    if target is None or reader.schema.equals(target):
        return reader.__arrow_c_stream__()
    try:
        return reader.cast(target).__arrow_c_stream__()
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as exc:
        # a computed column's type, known only now, that has no cast to the requested one
        raise InvalidArgumentError(f"cannot stream the result as the requested schema: {exc}") from None


def _requested_schema(capsule, names: list[str], declared: list) -> pa.Schema:
    """The pyarrow.Schema of an ArrowSchema PyCapsule, checked against the result's columns."""
    if type(capsule).__name__ != "PyCapsule":
        raise InvalidTypeError(f"requested_schema must be None or an ArrowSchema PyCapsule, "
                               f"not {type(capsule).__name__}")
    try:
        schema = pa.Schema._import_from_c_capsule(capsule)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InvalidTypeError(f"requested_schema is not an ArrowSchema PyCapsule of a schema: {exc}") from None
    if schema.names != names:
        raise InvalidArgumentError(f"requested_schema has the columns {schema.names}, the result {names}")
    for field, have in zip(schema, declared):
        if have is None or have == field.type:
            continue
        try:
            pa.array([], have).cast(field.type)   # no rows: only asks whether the cast exists
        except (pa.ArrowException, ValueError, TypeError, NotImplementedError):
            raise InvalidArgumentError(f"requested_schema: column {field.name!r} ({have}) cannot be cast "
                                       f"to {field.type}") from None
    return schema


# ================================================================== export: stored rows


def _stored_scan(cursor, rows_per_batch: int = DEFAULT_BATCH_ROWS):
    """(schema, batches) decoded straight from the stored rows, if the cursor's rows allow it.

    The protocol (to be offered by the session's result iterator): ``cursor._rows.stored_scan()``
    returns ``(reader, table, defaults, ranges)`` when the remaining rows are exactly the stored
    rows of ``table`` (all its columns in order, rows padded with ``defaults``) in the key ``ranges``
    read through ``reader`` (a Transaction), and nothing has been read from it yet; else None.
    After the batches are built the iterator is closed (which must release its snapshot).
    """
    rows = cursor._rows
    describe = getattr(rows, "stored_scan", None)
    if describe is None:
        return None
    found = describe()
    if found is None:
        return None
    reader, table, defaults, ranges = found
    schema = table_schema(table)

    def batches():
        try:
            yield from _stored_batches(reader, table, defaults, ranges, rows_per_batch, schema)
        finally:
            rows.close()
    return schema, batches()


def table_schema(table) -> pa.Schema:
    """The Arrow schema of a catalog table's columns (every field nullable, as in a query's result)."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in table.columns])


def _stored_batches(reader, table, defaults: tuple, ranges, rows_per_batch: int,
                    schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    decoder = _StoredRowDecoder(table.types, defaults, [c.name for c in table.columns])
    for start, end in ranges:
        it = reader.scan(start, end)
        while True:
            values = [v for _k, v in islice(it, rows_per_batch)]
            if not values:
                break
            yield pa.RecordBatch.from_arrays(decoder.decode(values), schema=schema)


def table_reader(connection, table_name: str, rows_per_batch: int = DEFAULT_BATCH_ROWS) -> pa.RecordBatchReader:
    """Every row of a table as a RecordBatchReader, decoded from the stored rows in batches (the
    fast path of ``SELECT * FROM t``). Inside a transaction it sees the transaction's writes;
    otherwise it is one engine scan of the latest committed state."""
    from tabledb.sql.expressions import Runtime
    from tabledb.sql.planner import Planner
    from tabledb.sql.txn import Transaction
    rows_per_batch = _check_batch_rows(rows_per_batch)
    check = getattr(connection, "_check", None)
    if check is not None:
        check()
    session = connection._session
    catalog = session.current_catalog()
    table = catalog.table(table_name)
    defaults = Planner(catalog, Runtime(session), {})._defaults(table)
    reader = session.txn if session.txn is not None else Transaction(session.engine, None)
    schema = table_schema(table)
    batches = _stored_batches(reader, table, defaults, [table.row_range], rows_per_batch, schema)
    return pa.RecordBatchReader.from_batches(schema, _mapped_errors(batches))


# --- the batch decoder of stored rows --------------------------------------------------------

_NULL, _CONST, _FIXED, _VAR = range(4)
_FIXED_TAGS = {   # row tag -> (bytes, Arrow type of those bytes)
    R.TAG_INT8: (1, pa.int8()), R.TAG_INT16: (2, pa.int16()), R.TAG_INT32: (4, pa.int32()),
    R.TAG_INT64: (8, pa.int64()), R.TAG_FLOAT64: (8, pa.float64()), R.TAG_DATE: (4, pa.date32()),
    R.TAG_TIMESTAMP: (8, pa.timestamp("us")),
}
_TAGS_OF_TYPE = {   # the row tags a column of each type may hold besides NULL
    "INTEGER": {R.TAG_INT8, R.TAG_INT16, R.TAG_INT32, R.TAG_INT64}, "REAL": {R.TAG_FLOAT64},
    "TEXT": {R.TAG_TEXT}, "BLOB": {R.TAG_BLOB}, "BOOLEAN": {R.TAG_FALSE, R.TAG_TRUE},
    "DATE": {R.TAG_DATE}, "TIMESTAMP": {R.TAG_TIMESTAMP},
}


class _Layout:
    """Where each column of rows with one header sits: (kind, info) per column, the length field
    offsets of the TEXT/BLOB columns, and the size of header plus fixed part."""

    __slots__ = ("columns", "var", "size")

    def __init__(self, columns: list, var: list[int], size: int):
        self.columns = columns
        self.var = var
        self.size = size


def _layout_of(header: bytes, types: list[str]) -> _Layout | None:
    """The layout of rows starting with ``header``; None when it is not a plain format-1 header of
    this table's types (the row-by-row decoder deals with those)."""
    if len(header) < 2 or header[0] != R.FORMAT_VERSION:
        return None
    n = header[1]
    if n == R.EXTENDED_COUNT or n > len(types) or len(header) != n + 2:
        return None
    pos = n + 2
    columns: list = []
    var: list[int] = []
    for i, tag in enumerate(header[2:]):
        if tag == R.TAG_NULL:
            columns.append((_NULL, None))
        elif tag not in _TAGS_OF_TYPE[types[i]]:
            return None
        elif tag == R.TAG_FALSE or tag == R.TAG_TRUE:
            columns.append((_CONST, tag == R.TAG_TRUE))
        elif tag == R.TAG_TEXT or tag == R.TAG_BLOB:
            columns.append((_VAR, len(var)))
            var.append(pos)
            pos += 4
        else:
            width, raw = _FIXED_TAGS[tag]
            columns.append((_FIXED, (pos, width, raw)))
            pos += width
    return _Layout(columns, var, pos)


_ARANGE = pa.array([], pa.int64())


def _arange(n: int) -> pa.Array:
    """0, 1, ..., n-1 as int64 (a slice of a cached array)."""
    global _ARANGE
    if len(_ARANGE) < n:
        size = max(n, 2 * len(_ARANGE), 1024)
        _ARANGE = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), size)), 1)
    return _ARANGE.slice(0, n)


def _interleave_index(m: int, k: int) -> pa.Array:
    """Indices that interleave k concatenated arrays of length m: j * m + r at position r * k + j."""
    r = _arange(m * k)
    q = pc.divide(r, k)
    return pc.add(pc.multiply(pc.subtract(r, pc.multiply(q, k)), m), q)


def _reinterpret(fixed: pa.Array, width: int, t: pa.DataType) -> pa.Array:
    """The bytes of ``fixed`` (a binary array whose values all have ``width`` bytes, as
    ``binary_slice`` returns it) read as an array of the fixed-width type ``t``."""
    if fixed.offset:
        fixed = pa.concat_arrays([fixed])
    return pa.Array.from_buffers(t, len(fixed), [None, fixed.buffers()[2]])


class _StoredRowDecoder:
    """Stored rows (``rowcodec`` bytes) of one table to Arrow columns, a batch at a time."""

    def __init__(self, types: list[str], defaults: tuple, names: list[str]):
        self.types = list(types)
        self.width = len(types)
        self.defaults = tuple(defaults)
        self.names = names
        self.arrow = [ARROW_TYPES[t] for t in types]
        self._layouts: dict[bytes, _Layout | None] = {}

    def decode(self, values: list[bytes]) -> list[pa.Array]:
        arrays = self._vectorized(values) if _LITTLE_ENDIAN else None
        if arrays is not None:
            return arrays
        width, defaults = self.width, self.defaults
        rows = []
        for v in values:
            row = decode_row(v)
            if len(row) != width:
                row = row[:width] if len(row) > width else row + defaults[len(row):]
            rows.append(row)
        return _rows_to_arrays(rows, self.arrow, self.names)

    def _layout(self, header: bytes) -> _Layout | None:
        layout = self._layouts.get(header, False)
        if layout is False:
            layout = _layout_of(header, self.types)
            if len(self._layouts) < 1024:
                self._layouts[header] = layout
        return layout

    def _vectorized(self, values: list[bytes]) -> list[pa.Array] | None:
        first = values[0]
        if len(first) < 2 or first[0] != R.FORMAT_VERSION or first[1] == R.EXTENDED_COUNT:
            return None
        n = first[1]
        if n > self.width:
            return None
        try:
            arr = pa.array(values, pa.binary())
        except (pa.ArrowException, OverflowError):   # a batch of more than 2 GiB
            return None
        if not isinstance(arr, pa.BinaryArray):
            return None
        encoded = pc.dictionary_encode(pc.binary_slice(arr, 0, n + 2))
        headers = encoded.dictionary.to_pylist()
        if len(headers) > _MAX_LAYOUTS:
            return None
        layouts = [self._layout(h) for h in headers]
        if any(layout is None for layout in layouts):
            return None
        if len(layouts) == 1:
            columns = self._decode_group(arr, layouts[0])
        else:
            indices = encoded.indices
            parts = []
            for g, layout in enumerate(layouts):
                part = self._decode_group(arr.filter(pc.equal(indices, g)), layout)
                if part is None:
                    return None
                parts.append(part)
            # the groups were cut out in row order: put each row back where it was
            back = pc.inverse_permutation(pc.sort_indices(indices).cast(pa.int64()))
            columns = [pa.concat_arrays([p[i] for p in parts]).take(back) for i in range(n)]
        if columns is None:
            return None
        m = len(values)
        for i in range(n, self.width):             # rows stored before ALTER TABLE ADD COLUMN
            d = self.defaults[i]
            columns.append(pa.nulls(m, self.arrow[i]) if d is None else pa.repeat(pa.scalar(d, self.arrow[i]), m))
        return columns

    def _decode_group(self, arr: pa.BinaryArray, layout: _Layout) -> list[pa.Array] | None:
        m = len(arr)
        size = layout.size
        lengths = pc.binary_length(arr)
        if pc.min(lengths).as_py() < size:
            return None
        var_lengths = [_reinterpret(pc.binary_slice(arr, p, p + 4), 4, pa.int32()) for p in layout.var]
        try:
            total = pa.scalar(size, pa.int32())
            for vl in var_lengths:
                if pc.min(vl).as_py() < 0:
                    return None
                total = pc.add_checked(total, vl)
        except pa.ArrowInvalid:
            return None
        if not pc.all(pc.equal(lengths, total)).as_py():
            return None                            # damaged rows: decode_row says where
        texts = self._var_columns(arr, layout, var_lengths) if layout.var else []
        out = []
        for i, (kind, info) in enumerate(layout.columns):
            t = self.arrow[i]
            if kind == _NULL:
                out.append(pa.nulls(m, t))
            elif kind == _CONST:
                out.append(pa.repeat(pa.scalar(info, pa.bool_()), m))
            elif kind == _FIXED:
                pos, width, raw = info
                a = _reinterpret(pc.binary_slice(arr, pos, pos + width), width, raw)
                out.append(a if raw == t else a.cast(t))
            else:
                a = texts[info]
                if t == pa.string():
                    try:
                        a = a.cast(pa.string())
                    except pa.ArrowInvalid:        # not UTF-8: damaged
                        return None
                out.append(a)
        return out

    @staticmethod
    def _var_columns(arr: pa.BinaryArray, layout: _Layout, var_lengths: list[pa.Array]) -> list[pa.Array]:
        """The TEXT/BLOB values (as binary), one array per variable column."""
        k = len(layout.var)
        if k == 1:      # the one variable value is the rest of the row
            return [pc.binary_slice(arr, layout.size, _MAX_INT32)]
        m = len(arr)
        offsets = pa.Array.from_buffers(pa.int32(), m + 1, [None, arr.buffers()[1]], offset=arr.offset)
        starts = offsets.slice(0, m)
        bounds = [starts, pc.add(starts, pa.scalar(layout.size, pa.int32()))]
        for vl in var_lengths[:-1]:
            bounds.append(pc.add(bounds[-1], vl))
        # pieces per row: [row start, first value), each value; their offsets interleaved
        flat = pa.concat_arrays(bounds).take(_interleave_index(m, k + 1))
        piece_offsets = pa.concat_arrays([flat, offsets.slice(m, 1)])
        pieces = pa.Array.from_buffers(pa.binary(), m * (k + 1),
                                       [None, piece_offsets.buffers()[1], arr.buffers()[2]])
        rows = pc.multiply(_arange(m), k + 1)
        return [pieces.take(pc.add(rows, j + 1)) for j in range(k)]


# ================================================================== ingest: Arrow to tabledb types


def _kind(t: pa.DataType) -> str | None:
    """The family of an Arrow type, as far as tabledb's types are concerned."""
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "text"
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or getattr(pa.types, "is_binary_view", bool)(t)):
        return "blob"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return None


# Which Arrow families each column type accepts (values are then converted losslessly or rejected).
_FITS = {
    "INTEGER": {"int", "float", "decimal", "bool"}, "REAL": {"int", "float", "decimal", "bool"},
    "TEXT": {"text"}, "BLOB": {"blob"}, "BOOLEAN": {"bool", "int"},
    "DATE": {"date", "timestamp"}, "TIMESTAMP": {"timestamp", "date"},
}
_TYPE_OF_KIND = {"int": "INTEGER", "float": "REAL", "decimal": "REAL", "text": "TEXT", "blob": "BLOB",
                 "bool": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "null": "TEXT"}

_DAY_US = 86_400_000_000
_DATE_MIN = _dt.date.min.toordinal() - _dt.date(1970, 1, 1).toordinal()     # -719162
_DATE_MAX = _dt.date.max.toordinal() - _dt.date(1970, 1, 1).toordinal()     # 2932896
_TS_MIN = _DATE_MIN * _DAY_US
_TS_MAX = (_DATE_MAX + 1) * _DAY_US - 1


class _ValueError(Exception):
    """A batch value that its column cannot hold; becomes a DataError naming the column."""


def _normalize(arr, ttype: str) -> pa.Array:
    """``arr`` converted to the Arrow type of the tabledb type ``ttype`` with coerce_value's lossless
    rules; raises _ValueError (or an Arrow error) when a value does not fit."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    kind = _kind(arr.type)
    target = ARROW_TYPES[ttype]
    if kind == "null":
        return pa.nulls(len(arr), target)
    if ttype == "INTEGER":
        return arr.cast(pa.int64())           # a safe cast: 1.5, NaN, 2**63 are errors
    if ttype == "REAL":
        if kind == "int":
            # lossless only: the float must convert back to the same integer
            exact = arr.cast(pa.int64())
            f = exact.cast(pa.float64(), safe=False)
            if pc.any(pc.not_equal(f.cast(pa.int64(), safe=False), exact)).as_py():
                raise _ValueError("an integer that a REAL cannot hold exactly")
            return f
        f = arr.cast(pa.float64(), safe=kind != "decimal")
        if f.null_count < len(f) and pc.any(pc.is_nan(f)).as_py():
            raise _ValueError("NaN is not a value")
        # -0.0 is stored as 0.0 (they are equal), as coerce_value does
        return pc.if_else(pc.equal(f, 0.0), pa.scalar(0.0), f)
    if ttype == "TEXT":
        arr = arr.cast(pa.string())
        arr.validate(full=True)              # UTF-8
        return arr
    if ttype == "BLOB":
        return arr.cast(pa.binary())
    if ttype == "BOOLEAN":
        if kind == "int":
            lo, hi = pc.min_max(arr).values()
            if (lo.as_py() is not None and lo.as_py() < 0) or (hi.as_py() is not None and hi.as_py() > 1):
                raise _ValueError("only 0 and 1 are booleans")
        return arr.cast(pa.bool_())
    micros = _micros(arr, kind)
    if ttype == "DATE":
        days = pc.divide(micros, _DAY_US)
        if pc.any(pc.not_equal(pc.multiply(days, _DAY_US), micros)).as_py():
            raise _ValueError("a timestamp that is not midnight is not a DATE")
        return days.cast(pa.int32()).cast(pa.date32())
    return micros.cast(pa.timestamp("us"))


def _micros(arr: pa.Array, kind: str) -> pa.Array:
    """Microseconds since 1970-01-01 UTC (int64) of a date or timestamp array, range-checked."""
    if kind == "date":
        days = arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
        micros = pc.multiply(days, _DAY_US)
    else:
        raw = arr.cast(pa.int64())
        unit = arr.type.unit
        if unit == "us":
            micros = raw
        elif unit == "ns":
            micros = pc.divide(raw, 1000)
            if pc.any(pc.not_equal(pc.multiply(micros, 1000), raw)).as_py():
                raise _ValueError("nanoseconds would be lost (TIMESTAMP keeps microseconds)")
        else:
            micros = pc.multiply_checked(raw, 1000 if unit == "ms" else 1_000_000)
    lo, hi = pc.min_max(micros).values()
    if lo.as_py() is not None and (lo.as_py() < _TS_MIN or hi.as_py() > _TS_MAX):
        raise _ValueError("outside the years 1 to 9999")
    return micros


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns_sql(schema: pa.Schema) -> str:
    """The column list of a CREATE TABLE for an Arrow schema."""
    if len(schema) == 0:
        raise ProgrammingError("the data has no columns")
    parts = []
    for field in schema:
        kind = _kind(field.type)
        if kind is None:
            raise DataError(f'column "{field.name}": Arrow type {field.type} has no tabledb type')
        if not isinstance(field.name, str) or not field.name:
            raise ProgrammingError("every column needs a name")
        parts.append(f"{_quote(field.name)} {_TYPE_OF_KIND[kind]}")
    return ", ".join(parts)


# ================================================================== ingest: encoding with Arrow kernels

_ROW_TAG = {"INTEGER": R.TAG_INT64, "REAL": R.TAG_FLOAT64, "TEXT": R.TAG_TEXT, "BLOB": R.TAG_BLOB,
            "DATE": R.TAG_DATE, "TIMESTAMP": R.TAG_TIMESTAMP}
_ROW_WIDTH = {"INTEGER": 8, "REAL": 8, "DATE": 4, "TIMESTAMP": 8}
assert R.TAG_NULL == 0 and R.TAG_FALSE == 1 and R.TAG_TRUE == 2 and R.FORMAT_VERSION == 1


def _le_bytes(arr: pa.Array, width: int) -> pa.Array:
    """Each value of a fixed-width array as its ``width`` native (little-endian) bytes, in a binary
    array without nulls (a NULL's bytes are whatever its slot holds)."""
    fixed = pa.Array.from_buffers(pa.binary(width), len(arr), [None, arr.buffers()[1]], offset=arr.offset)
    return fixed.cast(pa.binary())


def _be_flipped(int64: pa.Array) -> pa.Array:
    """The 8-byte big-endian key payload of int64 values (sign bit flipped), as keys.py writes it."""
    return pc.binary_reverse(_le_bytes(pc.bit_wise_xor(int64, _INT64_MIN), 8))


def _invert(arr: pa.Array) -> pa.Array:
    """Every byte of a binary array (no nulls) inverted: the DESC form of ascending keys."""
    data = arr.buffers()[2]
    if data is None or data.size == 0:
        return arr
    flipped = pc.bit_wise_not(pa.Array.from_buffers(pa.uint8(), data.size, [None, data]))
    return pa.Array.from_buffers(pa.binary(), len(arr), [None, arr.buffers()[1], flipped.buffers()[1]],
                                 offset=arr.offset)


def _join(parts: list) -> pa.Array:
    """Concatenate binary arrays and scalars element-wise (adjacent scalars merged first)."""
    merged: list = []
    for p in parts:
        if isinstance(p, pa.Scalar) and merged and isinstance(merged[-1], pa.Scalar):
            merged[-1] = _b(merged[-1].as_py() + p.as_py())
        else:
            merged.append(p)
    if len(merged) == 1:
        return merged[0]
    return pc.binary_join_element_wise(*merged, _EMPTY)


def _key_column(col: pa.Array, ttype: str, descending: bool) -> pa.Array:
    """The key encoding (tabledb.sql.keys.encode_value) of every value of a normalized column."""
    if ttype == "INTEGER":
        enc = _join([_b(bytes([K.TAG_INTEGER])), _be_flipped(col)])
    elif ttype == "DATE":
        enc = _join([_b(bytes([K.TAG_DATE])), _be_flipped(col.cast(pa.int32()).cast(pa.int64()))])
    elif ttype == "TIMESTAMP":
        enc = _join([_b(bytes([K.TAG_TIMESTAMP])), _be_flipped(col.cast(pa.int64()))])
    elif ttype == "REAL":
        bits = pa.Array.from_buffers(pa.int64(), len(col), [None, col.buffers()[1]], offset=col.offset)
        ordered = pc.if_else(pc.less(bits, 0), pc.bit_wise_not(bits), pc.bit_wise_xor(bits, _INT64_MIN))
        enc = _join([_b(bytes([K.TAG_REAL])), pc.binary_reverse(_le_bytes(ordered, 8))])
    elif ttype == "BOOLEAN":
        enc = pc.if_else(col, _b(b"\x10\x01"), _b(b"\x10\x00"))
    else:
        tag = K.TAG_TEXT if ttype == "TEXT" else K.TAG_BLOB
        data = pc.replace_substring(col.cast(pa.binary()), b"\x00", b"\x00\xff")
        enc = _join([_b(bytes([tag])), data, _b(b"\x00\x01")])
    if col.null_count:
        enc = pc.if_else(pc.is_null(col), _b(K.NULL_ASC), enc)
    return _invert(enc) if descending else enc


class _Encoded:
    """One batch, encoded: row keys and stored rows (binary arrays, in the order given) and per
    secondary index (in ``table.indexes`` order) its entries' keys and values (None: all empty)."""

    __slots__ = ("keys", "values", "indexes")

    def __init__(self, keys: pa.Array, values: pa.Array, indexes: list[tuple[pa.Array, pa.Array | None]]):
        self.keys = keys
        self.values = values
        self.indexes = indexes


class _VectorEncoder:
    """Keys, rows and index entries of normalized columns, with Arrow kernels (see the module
    docstring). The rows are ``rowcodec`` format 1 with every integer as INT64, as the generated
    encoder of ``tabledb.sql.writer.row_encoder`` writes them."""

    def __init__(self, table):
        self.table = table
        self.types = list(table.types)
        self.head = bytes((R.FORMAT_VERSION, len(self.types)))
        self.indexes = []
        for index in table.indexes:
            positions = [table.positions[c.lower()] for c, _d in index.columns]
            self.indexes.append((K.index_prefix(table.id, index.id), positions,
                                 [d for _c, d in index.columns], index.unique))

    def encode(self, cols: list[pa.Array], rowids: pa.Array | None) -> _Encoded:
        table = self.table
        if rowids is not None:
            suffix = _key_column(rowids, "INTEGER", False)
        else:
            suffix = _join([_key_column(cols[p], self.types[p], False) for p in table.pk_positions])
        keys = _join([_b(table.row_prefix), suffix])
        indexes = []
        for prefix, positions, desc, unique in self.indexes:
            ikey = _join([_b(prefix)] + [_key_column(cols[p], self.types[p], d) for p, d in zip(positions, desc)])
            nulls = [pc.is_null(cols[p]) for p in positions if cols[p].null_count]
            if not unique:
                indexes.append((_join([ikey, suffix]), None))
            elif not nulls:
                indexes.append((ikey, suffix))     # a UNIQUE entry without NULLs: key -> primary key
            else:
                anynull = nulls[0]
                for more in nulls[1:]:
                    anynull = pc.or_(anynull, more)
                indexes.append((pc.if_else(anynull, _join([ikey, suffix]), ikey), pc.if_else(anynull, _EMPTY, suffix)))
        return _Encoded(keys, self.row_values(cols), indexes)

    def row_values(self, cols: list[pa.Array]) -> pa.Array:
        tags, fixed, var = [], [], []
        for col, t in zip(cols, self.types):
            isnull = pc.is_null(col) if col.null_count else None
            if t == "BOOLEAN":
                tag = pc.if_else(col, _b(bytes([R.TAG_TRUE])), _b(bytes([R.TAG_FALSE])))
                tags.append(pc.fill_null(tag, _b(bytes([R.TAG_NULL]))) if isnull is not None else tag)
                continue
            tag = _b(bytes([_ROW_TAG[t]]))
            tags.append(tag if isnull is None else pc.if_else(isnull, _b(bytes([R.TAG_NULL])), tag))
            if t == "TEXT" or t == "BLOB":
                data = col.cast(pa.binary())
                length = _le_bytes(pc.binary_length(data), 4)
                if isnull is not None:
                    length = pc.if_else(isnull, _EMPTY, length)
                    data = pc.fill_null(data, _EMPTY)
                fixed.append(length)
                var.append(data)
            else:
                b = _le_bytes(col, _ROW_WIDTH[t])
                fixed.append(b if isnull is None else pc.if_else(isnull, _EMPTY, b))
        return _join([_b(self.head)] + tags + fixed + var)


# ================================================================== ingest: one load


class _LoadPlan:
    """How the batches of one Arrow schema become encoded rows of one table (built per load)."""

    def __init__(self, session, table, planner, schema: pa.Schema):
        from tabledb.sql.writer import TableWriter
        self.session = session
        self.table = table
        self.writer = writer = TableWriter(session, table, planner)
        self.types = list(table.types)
        self.labels = writer.labels
        self.sources: list[int | None] = [None] * len(table.columns)
        self.names: list[str | None] = [None] * len(table.columns)
        for i, field in enumerate(schema):
            pos = table.positions.get(field.name.lower()) if isinstance(field.name, str) else None
            if pos is None:
                raise DataError(f'table {table.name} has no column named "{field.name}"')
            if self.sources[pos] is not None:
                raise DataError(f'column "{field.name}" appears twice in the data')
            kind = _kind(field.type)
            ttype = self.types[pos]
            if kind != "null" and kind not in _FITS[ttype]:
                raise DataError(f'column "{field.name}": Arrow type {field.type} does not fit '
                                f'{ttype} column "{self.labels[pos]}"')
            self.sources[pos] = i
            self.names[pos] = field.name
        self.alias = table.pk_positions[0] if table.rowid_alias else None
        if table.hidden_rowid or table.rowid_alias:
            # the row id counter of the table, kept in db.rowid_next while the load assigns ids
            nxt = session.next_rowid(table)
            session.db.rowid_next[table.id] = nxt
        self._constants: dict[int, Any] = {}
        self.vector = _LITTLE_ENDIAN and not table.checks and len(table.columns) < R.EXTENDED_COUNT
        self.encoder = _VectorEncoder(table)

    def _missing(self, pos: int, m: int) -> pa.Array:
        """The column the data lacks: its DEFAULT (evaluated once per load) or NULL."""
        if pos not in self._constants:
            fn = self.writer.defaults[pos]
            value = fn(None) if fn is not None else None
            if value is not None:
                value = V.coerce_value(value, self.types[pos], self.labels[pos])
            self._constants[pos] = value
        value = self._constants[pos]
        t = ARROW_TYPES[self.types[pos]]
        return pa.nulls(m, t) if value is None else pa.repeat(pa.scalar(value, t), m)

    def _take_ids(self, m: int) -> int:
        """The first of ``m`` new row ids (the table's largest + 1 onwards)."""
        session, table = self.session, self.table
        first = session.next_rowid(table)
        if first + m - 1 > K.INT64_MAX:
            raise IntegrityError(f"{table.name}: no row id left (the largest one is taken)")
        session.db.rowid_next[table.id] = first + m
        session.last_rowid = first + m - 1
        return first

    def encode(self, batch: pa.RecordBatch) -> _Encoded:
        m = batch.num_rows
        cols = []
        for pos, src in enumerate(self.sources):
            if src is None:
                cols.append(self._missing(pos, m))
                continue
            try:
                cols.append(_normalize(batch.column(src), self.types[pos]))
            except (_ValueError, pa.ArrowException, OverflowError) as exc:
                raise DataError(f'column "{self.names[pos]}": cannot store its values in {self.types[pos]} '
                                f'column "{self.labels[pos]}": {exc}') from None
        by_row = not self.vector
        rowids = None
        if self.alias is not None:
            ids = cols[self.alias]
            if ids.null_count == m:               # no ids given: number the rows
                cols[self.alias] = pc.add(_arange(m), self._take_ids(m))
            elif ids.null_count:
                by_row = True                     # some given, some not: SQLite's max + 1 row by row
            else:
                self.session.saw_rowid(self.table, pc.max(ids).as_py())
        elif self.table.hidden_rowid and not by_row:
            rowids = pc.add(_arange(m), self._take_ids(m))
        for pos, required in enumerate(self.writer.not_null):
            if required and cols[pos].null_count and not (by_row and pos == self.alias):
                raise IntegrityError(f"NOT NULL constraint failed: {self.labels[pos]}")
        if by_row:
            return self._encode_rows(cols)
        return self.encoder.encode(cols, rowids)

    def _encode_rows(self, cols: list[pa.Array]) -> _Encoded:
        """Row by row through TableWriter.prepare (CHECK constraints, row ids given in part)."""
        writer, session, table = self.writer, self.session, self.table
        plen = len(table.row_prefix)
        keys, values = [], []
        entries: list[tuple[list, list]] = [([], []) for _ in writer.indexes]
        alias = self.alias
        for vals in zip(*[c.to_pylist() for c in cols]):
            row = writer.prepare(list(vals))
            if writer.hidden:
                key = writer.key_of(row, session.next_rowid(table))
            else:
                key = writer.key_of(row)
                if alias is not None:
                    session.saw_rowid(table, row[alias])
            keys.append(key)
            values.append(writer.encode(row))
            suffix = key[plen:]
            for (ik, iv), iw in zip(entries, writer.indexes):
                k, v, _checks = iw.entry(row, suffix)
                ik.append(k)
                iv.append(v)
        return _Encoded(pa.array(keys, pa.binary()), pa.array(values, pa.binary()),
                        [(pa.array(ik, pa.binary()), pa.array(iv, pa.binary()) if iw.unique else None)
                         for (ik, iv), iw in zip(entries, writer.indexes)])


def _strictly_ascending(arr: pa.Array) -> bool:
    n = len(arr)
    return n < 2 or pc.all(pc.less(arr.slice(0, n - 1), arr.slice(1))).as_py()


def _sorted_unique(keys: pa.Array, values: pa.Array | None, label: str) -> tuple[pa.Array, pa.Array | None]:
    """``keys`` (and their values) in ascending order; IntegrityError naming ``label`` on a duplicate."""
    if _strictly_ascending(keys):
        return keys, values
    order = pc.sort_indices(keys)
    keys = keys.take(order)
    if values is not None:
        values = values.take(order)
    n = len(keys)
    if pc.any(pc.equal(keys.slice(0, n - 1), keys.slice(1))).as_py():
        raise IntegrityError(f"UNIQUE constraint failed: {label}")
    return keys, values


def _concat(arrays: list[pa.Array]) -> pa.Array:
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


def _pairs(keys: pa.Array, values: pa.Array | None) -> Iterator[tuple[list, list]]:
    """(keys, values) as Python lists, a slice at a time."""
    for start in range(0, len(keys), _PUT_SLICE):
        ks = keys.slice(start, _PUT_SLICE).to_pylist()
        vs = values.slice(start, _PUT_SLICE).to_pylist() if values is not None else [b""] * len(ks)
        yield ks, vs


def _store(session, plan: _LoadPlan, chunks: list[_Encoded], allow_files: bool) -> int:
    """Write the encoded batches (see the module docstring, step 4). Returns the rows written."""
    from tabledb.sql.database import max_row_key
    if not chunks:
        return 0
    table, writer = plan.table, plan.writer
    txn = session.txn
    keys = _concat([c.keys for c in chunks])
    values = _concat([c.values for c in chunks])
    indexes = [(_concat([c.indexes[i][0] for c in chunks]),
                None if chunks[0].indexes[i][1] is None else _concat([c.indexes[i][1] for c in chunks]))
               for i in range(len(table.indexes))]
    last = max_row_key(txn, table)
    pk_label = ", ".join(plan.labels[p] for p in table.pk_positions) or table.name
    bulk = last is None or (not any(i.unique for i in table.indexes) and pc.min(keys).as_py() > last)
    if bulk:
        streams = [_sorted_unique(keys, values, pk_label)]
        for (ikeys, ivalues), iw in sorted(zip(indexes, writer.indexes), key=lambda e: e[1].index.id):
            streams.append(_sorted_unique(ikeys, ivalues, iw.label))
        if allow_files and B.can_ingest_files(session):
            _ingest_files(session, streams)
        else:
            for ks, vs in (p for k, v in streams for p in _pairs(k, v)):
                deque(map(txn.put, ks, vs), 0)
        return len(keys)
    # rows that may meet existing ones: check each, in the order given
    get, put = txn.get, txn.put
    hidden = table.hidden_rowid
    plen = len(table.row_prefix)
    index_lists = [list(_pairs(k, v)) for k, v in indexes]
    for s, (ks, vs) in enumerate(_pairs(keys, values)):
        slices = [entries[s] for entries in index_lists]
        for r, (key, value) in enumerate(zip(ks, vs)):
            if not hidden and get(key) is not None:
                raise IntegrityError(f"UNIQUE constraint failed: {pk_label}")
            suffix = key[plen:]
            for (iks, ivs), iw in zip(slices, writer.indexes):
                ivalue = ivs[r]
                if ivalue:                         # a UNIQUE entry without NULLs: is it taken?
                    holder = get(iks[r])
                    if holder is not None and holder != suffix:
                        raise IntegrityError(f"UNIQUE constraint failed: {iw.label}")
            put(key, value)
            for iks, ivs in slices:
                put(iks[r], ivs[r])
    return len(keys)


def _ingest_files(session, streams: list[tuple[pa.Array, pa.Array | None]]) -> None:
    """Write the entries (``streams`` in ascending key order, each sorted) as SSTables of one new
    sequence number and hand them to the engine in one ``ingest`` call (all or nothing)."""
    with B.work_directory(session, "ingest-") as tmp, B.IngestWriter(session.engine, tmp) as out:
        for ks, vs in (p for k, v in streams for p in _pairs(k, v)):
            out.put_many(ks, vs)
        out.ingest()


def _load(session, table_name: str, reader: pa.RecordBatchReader, allow_files: bool) -> int:
    """Load every batch of ``reader`` into the table, inside the session's current statement."""
    from tabledb.sql.expressions import Runtime
    from tabledb.sql.planner import Planner
    catalog = session.current_catalog()
    low = table_name.lower()
    if low in catalog.views and low not in catalog.tables:
        raise ProgrammingError(f"cannot modify {table_name} because it is a view")
    table = catalog.table(table_name)
    plan = _LoadPlan(session, table, Planner(catalog, Runtime(session), {}), reader.schema)
    chunks = []
    try:
        for batch in reader:
            if batch.num_rows:
                chunks.append(plan.encode(batch))
        return _store(session, plan, chunks, allow_files)
    except Error:
        raise
    except OSError as exc:
        raise OperationalError(f"cannot read the data: {exc}") from None
    except _CONVERSION_ERRORS as exc:
        raise DataError(f"cannot load the data into {table.name}: {exc}") from None


# ================================================================== ingest: the public call

_MODES = ("append", "create", "replace")


def _as_reader(data) -> pa.RecordBatchReader:
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return data.to_reader()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]).to_reader()
    if hasattr(data, "__arrow_c_stream__"):
        try:
            return pa.RecordBatchReader.from_stream(data)
        except _CONVERSION_ERRORS as exc:
            raise ProgrammingError(f"cannot read the Arrow stream: {exc}") from None
    raise ProgrammingError(f"ingest_arrow needs a pyarrow.Table, RecordBatch, RecordBatchReader or an object "
                           f"with __arrow_c_stream__, not {type(data).__name__}")


def _run_statement(session, work: Callable[[Any], int]) -> int:
    """Run ``work(session)`` as one write statement of the session (writer lock, savepoint, undone
    on failure), exactly as the session runs a planned DML statement."""
    from tabledb.sql.session import Prepared
    prepared = Prepared(None, {}, None, 0)
    prepared.plan = lambda s, _values: work(s)
    prepared.catalog_version = session.current_catalog().version
    return session.run(prepared, []).rowcount


def _own_transaction(session, work: Callable[[Any], int]) -> int:
    """``work`` as a statement; if no transaction was open, it is one and commits (or rolls back)."""
    was_open = session.in_transaction
    try:
        n = _run_statement(session, work)
    except BaseException:
        if not was_open and session.txn is not None and not session.explicit:
            session.rollback()
        raise
    if not was_open and session.txn is not None and not session.explicit:
        session.commit()
    return n


def _execute(session, sql: str) -> None:
    result = session.execute(sql, ())
    if result.rows is not None:
        deque(result.rows, 0)


def _execute_committed(session, sql: str) -> None:
    _execute(session, sql)
    if session.txn is not None and not session.explicit:
        session.commit()


def ingest_arrow(connection, table_name: str, data, mode: str = "append") -> int:
    """Load Arrow data into a table; returns the rows loaded. See the module docstring ("Ingest").

    ``mode``: "append" (the table exists), "create" (it must not; created from the Arrow schema)
    or "replace" (dropped if it exists, then created). Raises DataError naming the column when the
    schema or a value does not fit, IntegrityError for a duplicate key or a NOT NULL column without
    a value; then nothing is written.
    """
    check = getattr(connection, "_check", None)
    if check is not None:
        check()
    if mode not in _MODES:
        raise ProgrammingError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if not isinstance(table_name, str) or not table_name:
        raise ProgrammingError("table_name must be a non-empty str")
    reader = _as_reader(data)
    session = connection._session
    if session.closed:
        raise ProgrammingError("cannot operate on a closed database")
    try:
        if mode == "append":
            was_open = session.in_transaction
            return _own_transaction(session, lambda s: _load(s, table_name, reader, allow_files=not was_open))
        return _ingest_new_table(session, table_name, reader, mode)
    except Error:
        raise
    except OSError as exc:
        raise OperationalError(str(exc)) from None
    except _CONVERSION_ERRORS as exc:
        raise DataError(f"cannot load the data into {table_name}: {exc}") from None


def _ingest_new_table(session, name: str, reader: pa.RecordBatchReader, mode: str) -> int:
    columns = _columns_sql(reader.schema)
    catalog = session.current_catalog()
    low = name.lower()
    if low in catalog.views:
        raise ProgrammingError(f"{name} is a view")
    exists = low in catalog.tables
    if mode == "create" and exists:
        raise ProgrammingError(f"table {name} already exists")
    if session.in_transaction:
        # everything joins the open transaction, under a savepoint: all of it stays, or none
        savepoint = _quote(f"__tabledb_ingest_{uuid.uuid4().hex[:16]}")
        _execute(session, f"SAVEPOINT {savepoint}")
        try:
            if exists:
                _execute(session, f"DROP TABLE {_quote(name)}")
            _execute(session, f"CREATE TABLE {_quote(name)} ({columns})")
            n = _own_transaction(session, lambda s: _load(s, name, reader, allow_files=False))
        except BaseException:
            if session.txn is not None:
                _execute(session, f"ROLLBACK TO {savepoint}")
                _execute(session, f"RELEASE {savepoint}")
            raise
        _execute(session, f"RELEASE {savepoint}")
        return n
    temp = f"__tabledb_ingest_{uuid.uuid4().hex[:16]}"
    _execute_committed(session, f"CREATE TABLE {_quote(temp)} ({columns})")
    try:
        n = _own_transaction(session, lambda s: _load(s, temp, reader, allow_files=True))
        session.begin()
        try:
            if mode == "replace" and low in session.current_catalog().tables:
                _execute(session, f"DROP TABLE {_quote(name)}")
            _execute(session, f"ALTER TABLE {_quote(temp)} RENAME TO {_quote(name)}")
            session.commit()
        except BaseException:
            session.rollback()
            raise
    except BaseException:
        try:
            _execute_committed(session, f"DROP TABLE IF EXISTS {_quote(temp)}")
        except Error:
            pass
        raise
    return n


# ================================================================== COPY

_COPY_OPTIONS = {"format", "header", "delimiter", "compression"}
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}


def _copy_options(path: str, options: dict) -> dict:
    unknown = sorted(set(options) - _COPY_OPTIONS)
    if unknown:
        raise ProgrammingError(f"unknown COPY option(s): {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(_COPY_OPTIONS))})")
    fmt = options.get("format")
    ext = os.path.splitext(path)[1].lower()
    if fmt is None:
        fmt = _EXTENSIONS.get(ext)
        if fmt is None:
            raise ProgrammingError(f"COPY cannot tell the format of {path!r}: add WITH (format = 'parquet') "
                                   f"or WITH (format = 'csv')")
    if not isinstance(fmt, str) or fmt.lower() not in ("parquet", "csv"):
        raise ProgrammingError(f"COPY format must be 'parquet' or 'csv', not {fmt!r}")
    header = options.get("header", True)
    if isinstance(header, str) and header.lower() in ("true", "false"):
        header = header.lower() == "true"
    if header not in (True, False, 0, 1):
        raise ProgrammingError(f"COPY header must be true or false, not {header!r}")
    delimiter = options.get("delimiter", "\t" if ext == ".tsv" else ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ProgrammingError("COPY delimiter must be one character")
    compression = options.get("compression", "snappy")
    if not isinstance(compression, str):
        raise ProgrammingError("COPY compression must be a codec name such as 'snappy', 'zstd' or 'none'")
    return {"format": fmt.lower(), "header": bool(header), "delimiter": delimiter, "compression": compression}


def _copy_table_name(node) -> str | None:
    """The table of ``COPY t ...``; None for ``COPY (query) ...``."""
    from tabledb.sql import dialect
    source = node.this
    return source.name if isinstance(source, dialect.exp.Table) else None


def plan_copy(session, node, planner):
    """Plan ``COPY t TO|FROM 'file' [WITH (...)]`` and ``COPY (query) TO 'file'``; returns
    ``run(session, values) -> rows copied``, run inside the statement's transaction."""
    path = node.file
    opts = _copy_options(path, node.options())
    name = _copy_table_name(node)
    catalog = planner.catalog
    if node.is_import:
        if name is None:
            raise ProgrammingError("COPY ... FROM loads a table, not a query")
        if name.lower() in catalog.views and name.lower() not in catalog.tables:
            raise ProgrammingError(f"cannot modify {name} because it is a view")
        catalog.table(name)

        def run_import(session, values: list) -> int:
            table = session.current_catalog().table(name)
            try:
                reader = _open_input(path, opts, table)
            except OSError as exc:
                raise OperationalError(f"COPY cannot read {path!r}: {exc}") from None
            except _CONVERSION_ERRORS as exc:
                raise DataError(f"COPY cannot read {path!r}: {exc}") from None
            return _load(session, name, reader, allow_files=False)
        return run_import
    if name is not None and name.lower() in catalog.tables:
        table = catalog.table(name)
        defaults = planner._defaults(table)
        schema = table_schema(table)

        def run_table(session, values: list) -> int:
            batches = _stored_batches(session.txn, table, defaults, [table.row_range], DEFAULT_BATCH_ROWS, schema)
            return _write_output(path, opts, schema, batches)
        return run_table
    if name is not None:
        from tabledb.sql import dialect
        query = dialect.parse_one(f"SELECT * FROM {_quote(name)}")
    else:
        query = node.this
    qplan = planner.plan_query(query)
    rt = planner.rt
    declared = [ARROW_TYPES.get(t) if isinstance(t, str) else None for t in qplan.types]

    def run_query(session, values: list) -> int:
        rt.params = values
        rt.generation += 1
        rt.reader = session.txn
        schema, batches = _stream(qplan.root.rows(), list(qplan.columns), declared, DEFAULT_BATCH_ROWS)
        return _write_output(path, opts, schema, batches)
    return run_query


def _write_output(path: str, opts: dict, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    """Write the batches to ``path`` (through a temporary file renamed at the end)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    count = 0
    try:
        if opts["format"] == "parquet":
            import pyarrow.parquet as pq
            with pq.ParquetWriter(tmp, schema, compression=opts["compression"]) as out:
                for batch in batches:
                    out.write_batch(batch)
                    count += batch.num_rows
        else:
            import pyarrow.csv as pcsv
            options = pcsv.WriteOptions(include_header=opts["header"], delimiter=opts["delimiter"])
            schema, batches = _csv_blobs_out(schema, batches)
            with pcsv.CSVWriter(tmp, schema, write_options=options) as out:
                for batch in batches:
                    out.write_batch(batch)
                    count += batch.num_rows
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, Error):
            raise
        if isinstance(exc, OSError):
            raise OperationalError(f"COPY cannot write {path!r}: {exc}") from None
        if isinstance(exc, _CONVERSION_ERRORS):
            raise DataError(f"COPY cannot write {path!r}: {exc}") from None
        raise
    return count


def _open_input(path: str, opts: dict, table) -> pa.RecordBatchReader:
    if opts["format"] == "parquet":
        import pyarrow.parquet as pq
        source = pq.ParquetFile(path)
        return pa.RecordBatchReader.from_batches(source.schema_arrow,
                                                 source.iter_batches(batch_size=DEFAULT_BATCH_ROWS))
    import pyarrow.csv as pcsv
    names = [c.name for c in table.columns]
    delimiter = opts["delimiter"]
    if opts["header"]:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            file_names = next(_csv.reader(f, delimiter=delimiter), [])
    else:
        file_names = names
    types = {}
    blobs = []
    for i, fname in enumerate(file_names):
        pos = table.positions.get(fname.lower())
        if pos is not None:
            types[fname] = ARROW_TYPES[table.types[pos]]
            if table.types[pos] == "BLOB":
                types[fname] = pa.string()        # written as \x + hex: see _csv_blobs_out
                blobs.append(i)
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=None if opts["header"] else names),
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
        convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                            quoted_strings_can_be_null=False))
    return _csv_blobs_in(reader, blobs) if blobs else reader


def _csv_blobs_out(schema: pa.Schema, batches: Iterator[pa.RecordBatch]):
    """CSV holds text: BLOB columns are written as ``\\x`` + lower-case hex (PostgreSQL's bytea form)."""
    blobs = [i for i, f in enumerate(schema) if pa.types.is_binary(f.type)]
    if not blobs:
        return schema, batches
    out = schema
    for i in blobs:
        out = out.set(i, pa.field(schema[i].name, pa.string()))

    def convert():
        for batch in batches:
            cols = list(batch.columns)
            for i in blobs:
                cols[i] = pa.array([None if v is None else "\\x" + v.hex() for v in cols[i].to_pylist()],
                                   pa.string())
            yield pa.RecordBatch.from_arrays(cols, schema=out)
    return out, convert()


def _csv_blobs_in(reader: pa.RecordBatchReader, blobs: list[int]) -> pa.RecordBatchReader:
    """The BLOB columns of a CSV file back to bytes: ``\\x`` + hex, or else the text's UTF-8 bytes."""
    schema = reader.schema
    for i in blobs:
        schema = schema.set(i, pa.field(schema[i].name, pa.binary()))

    def unhex(v: str | None, name: str) -> bytes | None:
        if v is None:
            return None
        if v.startswith("\\x"):
            try:
                return bytes.fromhex(v[2:])
            except ValueError:
                raise DataError(f'column "{name}": {v[:40]!r} is not \\x followed by hex digits') from None
        return v.encode("utf-8")

    def convert():
        for batch in reader:
            cols = list(batch.columns)
            for i in blobs:
                name = schema[i].name
                cols[i] = pa.array([unhex(v, name) for v in cols[i].to_pylist()], pa.binary())
            yield pa.RecordBatch.from_arrays(cols, schema=schema)
    return pa.RecordBatchReader.from_batches(schema, convert())
