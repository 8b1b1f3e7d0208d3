"""``.import`` and ``.export``: tables from and to CSV and Parquet files.

``.import FILE TABLE`` reads the file with pyarrow, batch by batch, and reports
its progress as the batches are taken (CSV: bytes read; Parquet: rows of the
file's row count). The batches go to ``Connection.ingest_arrow`` (tabledb.arrow),
which creates TABLE from the file's types if it does not exist; in a build
without tabledb.arrow they go through ``executemany`` in one transaction
instead. Either way the import is all or nothing.

CSV follows COPY's conventions (docs: tabledb/arrow.py): the first row names
the columns, an empty field is NULL, ``""`` is the empty string, a BLOB is
``\\x`` and hex. Into an existing table, each column is read with the type of
the table column it names, so ``007`` stays ``'007'`` in a TEXT column.

``.export TABLE FILE`` is ``COPY TABLE TO 'FILE'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import TYPE_CHECKING, Callable, Iterator

from tabledb.errors import ProgrammingError
from tabledb.shell.script import quote_identifier, quote_string

if TYPE_CHECKING:
    import pyarrow as pa

    from tabledb.shell.commands import Shell

EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
BATCH_ROWS = 65536
CSV_BLOCK_BYTES = 1 << 20


def arrow_layer_available(conn) -> bool:
    """Whether this build has tabledb.arrow (COPY and Connection.ingest_arrow)."""
    return hasattr(conn, "ingest_arrow") and importlib.util.find_spec("tabledb.arrow") is not None


def file_format(path: str) -> str:
    fmt = EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ProgrammingError(f"cannot tell the format of {path!r}: name it .csv, .tsv, .parquet or .pq")
    return fmt


def _arrow_type(sql_type: str):
    import pyarrow as pa
    return {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string(), "BLOB": pa.string(),
            "BOOLEAN": pa.bool_(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us")}.get(sql_type)


def _sql_type(t) -> str:
    import pyarrow as pa
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "INTEGER"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "REAL"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    return "TEXT"


class FileBatches:
    """The record batches of a CSV or Parquet file, and how far reading has come.

    ``columns`` maps the lower-cased names of an existing table's columns to
    (name, SQL type); CSV columns are then read as those types.
    """

    def __init__(self, path: str, columns: dict[str, tuple[str, str]] | None):
        import pyarrow as pa
        self.path = path
        self._raw = open(path, "rb")
        self.blobs: list[int] = []
        if file_format(path) == "parquet":
            import pyarrow.parquet as pq
            source = pq.ParquetFile(self._raw)
            self.schema = source.schema_arrow
            self.total = source.metadata.num_rows
            self._batches = source.iter_batches(batch_size=BATCH_ROWS)
            self._rows = 0
            self._by_rows = True
            return
        import csv
        import pyarrow.csv as pcsv
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f, delimiter=delimiter), [])
        types = {}
        for i, name in enumerate(header):
            column = (columns or {}).get(name.lower())
            if column is not None and _arrow_type(column[1]) is not None:
                types[name] = _arrow_type(column[1])
                if column[1] == "BLOB":
                    self.blobs.append(i)
        reader = pcsv.open_csv(
            self._raw, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                quoted_strings_can_be_null=False))
        self.schema = reader.schema
        if self.blobs:
            self.schema = pa.schema([pa.field(f.name, pa.binary()) if i in self.blobs else f
                                     for i, f in enumerate(self.schema)])
        self.total = os.path.getsize(path)
        self._batches = reader
        self._by_rows = False

    @property
    def names(self) -> list[str]:
        return list(self.schema.names)

    def done(self) -> int:
        """Rows read (Parquet) or bytes read (CSV), to compare with ``total``."""
        return self._rows if self._by_rows else min(self._raw.tell(), self.total)

    def __iter__(self) -> Iterator["pa.RecordBatch"]:
        for batch in self._batches:
            if self.blobs:
                batch = _blobs_from_hex(batch, self.blobs, self.schema)
            if self._by_rows:
                self._rows += batch.num_rows
            yield batch

    def reader(self, progress: Callable[[int, int], None]) -> "pa.RecordBatchReader":
        """The batches as a RecordBatchReader that calls ``progress(done, total)`` after each one."""
        import pyarrow as pa

        def batches():
            for batch in self:
                yield batch
                progress(self.done(), self.total)
        return pa.RecordBatchReader.from_batches(self.schema, batches())

    def close(self) -> None:
        self._raw.close()


def _blobs_from_hex(batch, blobs: list[int], schema):
    """CSV BLOB fields written as ``\\x`` + hex (COPY's form) become bytes; others are the text's bytes."""
    import pyarrow as pa
    arrays = list(batch.columns)
    for i in blobs:
        arrays[i] = pa.array([None if v is None else bytes.fromhex(v[2:]) if v.startswith("\\x") else v.encode()
                              for v in arrays[i].to_pylist()], pa.binary())
    return pa.record_batch(arrays, schema=schema)


def import_file(shell: "Shell", path: str, table: str) -> int:
    """Load ``path`` into ``table`` (created from the file's types if missing); returns the rows loaded."""
    conn = shell.conn
    columns = shell.table_columns(table)
    source = FileBatches(path, columns)
    try:
        if columns is not None:
            unknown = [n for n in source.names if n.lower() not in columns]
            if unknown:
                raise ProgrammingError(f"{os.path.basename(path)} has columns that {table} lacks: {', '.join(unknown)}")
        with shell.progress(f"import {table}") as progress:
            progress(0, source.total)
            reader = source.reader(progress)
            if arrow_layer_available(conn):
                return conn.ingest_arrow(table, reader, mode="append" if columns is not None else "create")
            return _insert(shell, table, reader, create=columns is None)
    finally:
        source.close()


def _insert(shell: "Shell", table: str, reader, create: bool) -> int:
    """Without tabledb.arrow: CREATE TABLE (if ``create``) and executemany, in one transaction
    (or in the user's, if one is open)."""
    import decimal
    conn = shell.conn
    names = reader.schema.names
    own = not conn.in_transaction
    if own:
        shell.query("BEGIN")
    try:
        if create:
            cols = ", ".join(f"{quote_identifier(f.name)} {_sql_type(f.type)}" for f in reader.schema)
            shell.query(f"CREATE TABLE {quote_identifier(table)} ({cols})")
        sql = (f"INSERT INTO {quote_identifier(table)} ({', '.join(quote_identifier(n) for n in names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        count = 0
        for batch in reader:
            columns = []
            for column in batch.columns:
                values = column.to_pylist()
                if any(isinstance(v, decimal.Decimal) for v in values[:1]):
                    values = [None if v is None else float(v) for v in values]
                columns.append(values)
            rows = list(zip(*columns))
            if rows:
                conn.executemany(sql, rows)
                count += len(rows)
        if own:
            conn.commit()
        return count
    except BaseException:
        if own:
            with contextlib.suppress(Exception):
                conn.rollback()
        raise


def export_statement(table: str, path: str) -> str:
    """The COPY statement behind ``.export``."""
    file_format(path)
    return f"COPY {quote_identifier(table)} TO {quote_string(path)}"
