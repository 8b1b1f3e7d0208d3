"""``tabledb check PATH``: verify a database, byte by byte and row by row.

    from tabledb.check import check, format_report
    report = check("shop")                  # a dict; report["ok"] is False when anything is wrong
    print(format_report(report))

What it checks, in order:

1. **Checksums** (``Engine.verify``): every block and the whole-file CRC of every
   live SSTable, every record of the WAL segments and of the MANIFEST. Opening
   the database first reads CURRENT, the MANIFEST and the WAL, so damage there
   is found too.
2. **The catalog**: every record of the ``catalog`` column family is JSON of
   the right shape, sits under the key its name gives, table ids and index ids
   are distinct, every key and index column exists, every view's SQL parses.
3. **Rows**: every row key of every table decodes to its primary-key columns
   and every row value decodes (``rowcodec``) to no more columns than the
   table has, each of its column's type (NULL only where allowed), with the key
   columns equal to the key.
4. **Indexes**: every entry of every secondary index decodes, points at a row
   that exists, and is exactly the entry that row's values give; each index
   has as many entries as its table has rows (so no row lacks its entry).
5. **Orphans**: no SQL key lies outside the tables and indexes the catalog
   names (the left-overs of a DROP that did not finish). Keys under the index
   id a table's next CREATE INDEX takes are a *warning*: the entries of a bulk
   CREATE INDEX that a crash (or a BACKUP cut meanwhile) caught between its
   ingest and its commit, never read, and cleared by that next CREATE INDEX
   (see tabledb/sql/bulk.py).

Problems are listed, not raised: one damaged table does not hide the next.
Each is a dict ``{"kind", "message"}`` plus, where known, ``"file"`` and
``"offset"`` (corruption), ``"table"``, ``"index"`` and ``"key"`` (hex). A WAL
that ended in a torn record (a crash mid-write, dropped on open as documented),
or a MANIFEST that ended in an incomplete edit (its tables set aside), is a
*warning*: it does not make the report fail.

Nothing is changed. A database that no process has open is checked through a
scratch copy beside it (hard links to the SSTables, copies of CURRENT, the
MANIFEST and the WAL) whose recovery leaves the original untouched; the LOCK
of the original is held meanwhile, so another process cannot open it. A
database this process has open (the shell's ``.check``) is checked through its
open engine, under one snapshot. Another process holding it:
``DatabaseLockedError``.

``progress(done, total)`` is called as the check goes (``total`` = 1000; the
checksum pass is the first half, the row and index passes the second).
Cost: the checksum pass reads every byte once; the index pass does a point get
per index entry (about 10-20 us each here), so a 10-million-row table with two
indexes takes some minutes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time

from tabledb.errors import CorruptionError, Error, ProgrammingError, StorageIOError

PROGRESS_TOTAL = 1000
MAX_PROBLEMS_PER_OBJECT = 20     # per table, per index: the rest are counted, not listed

_PY_TYPES = {"INTEGER": int, "REAL": float, "TEXT": str, "BLOB": bytes, "BOOLEAN": bool,
             "DATE": _dt.date, "TIMESTAMP": _dt.datetime}


class _Report:
    """Collects problems and warnings; caps the listed problems of one object."""

    def __init__(self, path: str):
        self.data = {"path": path, "ok": True, "problems": [], "warnings": [], "files": None,
                     "catalog": None, "tables": {}, "problems_not_listed": 0, "seconds": 0.0}
        self._per_object: dict = {}

    def problem(self, kind: str, message: str, **where) -> None:
        self.data["ok"] = False
        obj = (where.get("table"), where.get("index"))
        n = self._per_object.get(obj, 0) + 1
        self._per_object[obj] = n
        if n > MAX_PROBLEMS_PER_OBJECT and obj != (None, None):
            self.data["problems_not_listed"] += 1
            return
        entry = {"kind": kind, "message": message}
        entry.update({k: v for k, v in where.items() if v is not None})
        self.data["problems"].append(entry)

    def corruption(self, exc: Error, **where) -> None:
        """A CorruptionError (names the file and offset), or another error met while reading (a file
        the MANIFEST names that is missing, say: a StorageIOError naming its path)."""
        if isinstance(exc, CorruptionError):
            self.problem("corruption", str(exc), file=exc.file, offset=exc.offset, **where)
        else:
            self.problem("io", f"{type(exc).__name__}: {exc}", file=getattr(exc, "path", None), **where)

    def warning(self, message: str) -> None:
        self.data["warnings"].append(message)


# =============================================================================================
# Entry points


def check(path, progress=None) -> dict:
    """Check the database in directory ``path``; return the report (see the module docstring).

    Raises ProgrammingError when ``path`` is not a database directory and
    DatabaseLockedError when another process has it open; every kind of damage
    is reported in the dict instead.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ProgrammingError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    real = os.path.realpath(os.fspath(path))
    from tabledb.sql import database
    with database._registry_lock:
        db = database._registry.get(real)
    if db is not None:   # open in this process: its engine is the only way in
        return check_engine(db.engine, progress=progress, path=real)
    if not os.path.isdir(real):
        raise ProgrammingError(f"{path} is not a database directory")
    from tabledb.storage import dbformat
    from tabledb.storage.fs import DEFAULT_FS
    names = os.listdir(real)
    engine_files = [n for n in names if dbformat.parse_file_name(n) is not None]
    if dbformat.CURRENT not in names:
        if not engine_files:
            raise ProgrammingError(f"{path} holds no tabledb database (no CURRENT file)")
        report = _Report(real)
        report.problem("corruption", f"CURRENT is missing beside {len(engine_files)} database files",
                       file=os.path.join(real, dbformat.CURRENT), offset=0)
        return report.data
    lock = DEFAULT_FS.lock(os.path.join(real, dbformat.LOCK))   # DatabaseLockedError if in use
    try:
        scratch = tempfile.mkdtemp(prefix=".tabledb-check-", dir=os.path.dirname(real))
        try:
            copy = os.path.join(scratch, "db")
            _scratch_copy(real, copy, [dbformat.CURRENT] + engine_files)
            return _check_copy(real, copy, progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        lock.release()


def check_connection(conn, progress=None) -> dict:
    """Check the database behind a DB-API connection (the shell's ``.check``): its committed state."""
    return check_engine(conn._db.engine, progress=progress, path=conn.path)


def _scratch_copy(src: str, dst: str, names: list[str]) -> None:
    """SSTables hard-linked (immutable), everything else copied (recovery rewrites it)."""
    os.makedirs(dst)
    for name in names:
        a, b = os.path.join(src, name), os.path.join(dst, name)
        if name.endswith(".sst"):
            try:
                os.link(a, b)
                continue
            except OSError:
                pass
        shutil.copyfile(a, b)


def _check_copy(real: str, copy: str, progress) -> dict:
    from tabledb.storage import Engine
    started = time.monotonic()

    def original(file):
        if isinstance(file, str) and file.startswith(copy):
            return real + file[len(copy):]
        return file

    try:
        engine = Engine.open(copy, create=False, background=False)
    except (CorruptionError, StorageIOError) as exc:
        report = _Report(real)
        report.corruption(exc)
        for entry in report.data["problems"]:
            entry["message"] = entry["message"].replace(copy, real)
            if "file" in entry:
                entry["file"] = original(entry["file"])
        report.data["seconds"] = round(time.monotonic() - started, 3)
        return report.data
    try:
        data = check_engine(engine, progress=progress, path=real)
        versions = getattr(engine, "versions", None)   # the LSM engine's VersionSet
        if versions is not None:
            live = {f.number for f in versions.current.all_files()}
            stray = sorted(n for n in os.listdir(real) if n.endswith(".sst") and int(n[:-4]) not in live)
            if stray:
                data["warnings"].append(
                    f"{len(stray)} table file(s) that the database does not use ({', '.join(stray[:5])}"
                    f"{', ...' if len(stray) > 5 else ''}): left by an interrupted flush or compaction and "
                    f"removed on the next open -- or lost from a damaged MANIFEST")
    finally:
        try:
            engine.close()
        except Error:
            pass
    for entry in data["problems"]:
        if "file" in entry:
            entry["file"] = original(entry["file"])
        entry["message"] = entry["message"].replace(copy, real)
    data["warnings"] = [w.replace(copy, real) for w in data["warnings"]]
    data["seconds"] = round(time.monotonic() - started, 3)
    return data


def check_engine(engine, progress=None, path: str | None = None) -> dict:
    """Check an open engine (LSM or MemoryEngine) holding a tabledb database; see :func:`check`."""
    started = time.monotonic()
    report = _Report(path if path is not None else getattr(engine, "path", None))
    tell = progress if progress is not None else (lambda done, total: None)

    # 1. checksums
    torn = engine.stats().get("wal", {}).get("torn_tail_bytes", 0)
    if torn:
        report.warning(f"the WAL ended in {torn} bytes of an incomplete record, dropped when the database was "
                       f"opened (a write cut short by a crash; it was never acknowledged if synced writes were on)")
    manifest = engine.stats().get("manifest", {})
    if manifest.get("torn_tail_bytes"):
        orphans = manifest.get("orphaned_files", [])
        report.warning(f"the MANIFEST ended in {manifest['torn_tail_bytes']} bytes of an incomplete edit, dropped "
                       f"when the database was opened (an append cut short by a crash: the edit was never acted "
                       f"upon); {len(orphans)} table(s) no version lists were kept as *.sst.orphan"
                       + (f" ({', '.join(os.path.basename(o) for o in orphans[:5])}"
                          f"{', ...' if len(orphans) > 5 else ''})" if orphans else ""))
    verify = getattr(engine, "verify", None)
    if verify is None:
        report.warning("an in-memory database: no files, no checksums")
    else:
        try:
            report.data["files"] = verify(progress=lambda done, total: tell(
                (done * (PROGRESS_TOTAL // 2)) // total if total else 0, PROGRESS_TOTAL))
        except Error as exc:
            report.corruption(exc)
    tell(PROGRESS_TOTAL // 2, PROGRESS_TOTAL)

    # 2-5. catalog, rows, indexes, orphans: one snapshot
    with engine.snapshot() as snap:
        catalog = _check_catalog(engine, snap, report)
        if catalog is not None:
            _check_tables(engine, snap, catalog, report,
                          lambda frac: tell(PROGRESS_TOTAL // 2 + int(frac * (PROGRESS_TOTAL // 2)), PROGRESS_TOTAL))
            _check_orphans(engine, snap, catalog, report)
    tell(PROGRESS_TOTAL, PROGRESS_TOTAL)
    report.data["seconds"] = round(time.monotonic() - started, 3)
    return report.data


# =============================================================================================
# The catalog


def _check_catalog(engine, snap, report: _Report):
    """The catalog (a tabledb.sql.catalog.Catalog) if it could be read, else None (problems recorded)."""
    from tabledb.sql import dialect
    from tabledb.sql.catalog import (CATALOG_CF, CATALOG_FORMAT, META_KEY, TABLE_PREFIX, VIEW_PREFIX, Catalog,
                                     Table, View)
    if CATALOG_CF not in engine.list_column_families():
        report.warning("no catalog: the database holds no tables")
        return Catalog()
    cf = engine.get_column_family(CATALOG_CF)
    tables: dict = {}
    views: dict = {}
    next_table_id = None
    try:
        for key, value in engine.scan(None, None, cf=cf, snapshot=snap):
            where = key.decode("utf-8", "replace")
            try:
                record = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                report.problem("catalog", f"catalog record {where!r} is not valid JSON")
                continue
            try:
                if key == META_KEY:
                    if record.get("format", 1) > CATALOG_FORMAT:
                        report.problem("catalog", f"catalog format {record.get('format')} is newer than this tabledb")
                    next_table_id = int(record.get("next_table_id", 1))
                elif key.startswith(TABLE_PREFIX):
                    table = Table.from_json(record)
                    if Catalog.table_key(table.name) != key:
                        report.problem("catalog", f"catalog record {where!r} holds table {table.name!r}")
                    tables[table.name.lower()] = table
                elif key.startswith(VIEW_PREFIX):
                    view = View.from_json(record)
                    if Catalog.view_key(view.name) != key:
                        report.problem("catalog", f"catalog record {where!r} holds view {view.name!r}")
                    dialect.parse_one(view.sql)
                    views[view.name.lower()] = view
                else:
                    report.problem("catalog", f"unknown catalog record {where!r}")
            except Error as exc:
                report.problem("catalog", f"catalog record {where!r}: {exc}")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                report.problem("catalog", f"catalog record {where!r} is malformed ({type(exc).__name__}: {exc})")
    except Error as exc:
        report.corruption(exc, table="(catalog)")
        return None
    ids: dict[int, str] = {}
    for table in tables.values():
        if table.id in ids:
            report.problem("catalog", f"tables {ids[table.id]} and {table.name} share the id {table.id}")
        ids[table.id] = table.name
        seen: dict[int, str] = {}
        for index in table.indexes:
            if index.id in seen or index.id == 0:
                report.problem("catalog", f"index {index.name} of {table.name} reuses the id {index.id}",
                               table=table.name)
            seen[index.id] = index.name
            if index.id >= table.next_index_id:
                report.problem("catalog", f"index {index.name} has id {index.id}, not below the table's "
                               f"next_index_id {table.next_index_id}", table=table.name)
            for column, _desc in index.columns:
                if column.lower() not in table.positions:
                    report.problem("catalog", f"index {index.name} names the missing column {column}",
                                   table=table.name)
    if tables and next_table_id is None:
        report.problem("catalog", "the catalog has tables but no meta record")
    elif tables and next_table_id <= max(ids):
        report.problem("catalog", f"next_table_id {next_table_id} is not above the largest table id {max(ids)}")
    catalog = Catalog(tables, views, next_table_id or 1)
    report.data["catalog"] = {"tables": len(tables), "views": len(views),
                              "indexes": sum(len(t.indexes) for t in tables.values())}
    return catalog


# =============================================================================================
# Rows and indexes


def _check_tables(engine, snap, catalog, report: _Report, step) -> None:
    tables = sorted(catalog.tables.values(), key=lambda t: t.id)
    units = sum(1 + len(t.indexes) for t in tables) or 1
    done = 0
    for table in tables:
        try:
            defaults = _defaults(catalog, table)
        except Exception as exc:  # noqa: BLE001 - a DEFAULT that no longer compiles
            report.problem("catalog", f"the defaults of {table.name} do not evaluate: {exc}", table=table.name)
            defaults = (None,) * len(table.columns)
        entry = {"rows": None, "indexes": {}}
        report.data["tables"][table.name] = entry
        entry["rows"] = _check_rows(engine, snap, table, defaults, report)
        done += 1
        step(done / units)
        for index in table.indexes:
            entry["indexes"][index.name] = _check_index(engine, snap, table, index, defaults, entry["rows"], report)
            done += 1
            step(done / units)


def _defaults(catalog, table) -> tuple:
    """The values a row stored before ALTER TABLE ADD COLUMN gets for the added columns (as reads pad)."""
    from tabledb.sql.expressions import Runtime
    from tabledb.sql.planner import Planner
    return Planner(catalog, Runtime())._defaults(table)


def _decode_row(table, defaults, key: bytes, value: bytes) -> tuple:
    """(row padded to the table's width, problem message or None). REQUIRES: key is in the table's row range."""
    from tabledb.sql.rowcodec import decode_row
    prefix = len(table.row_prefix)
    pk, pos = table.pk_codec.decode(key, prefix)
    if pos != len(key):
        return None, f"row key has {len(key) - pos} bytes after its primary key"
    row = decode_row(value)
    width = len(table.columns)
    if len(row) > width:
        return None, f"row has {len(row)} values for {width} columns"
    if len(row) < width:
        row = row + tuple(defaults[len(row):])
    for i, (v, col) in enumerate(zip(row, table.columns)):
        if v is None:
            if col.not_null or (i in table.pk_positions and not table.rowid_alias):
                return None, f"column {col.name} is NULL but NOT NULL"
            continue
        want = _PY_TYPES.get(col.type)
        if want is not None and type(v) is not want:
            return None, f"column {col.name} holds {type(v).__name__} {v!r:.40}, not {col.type}"
    if not table.hidden_rowid and tuple(row[p] for p in table.pk_positions) != pk:
        return None, f"key {pk!r:.60} does not match the row's primary key columns"
    return row, None


def _check_rows(engine, snap, table, defaults, report: _Report) -> int | None:
    start, end = table.row_range
    n = 0
    try:
        for key, value in engine.scan(start, end, snapshot=snap):
            n += 1
            try:
                _row, why = _decode_row(table, defaults, key, value)
            except CorruptionError as exc:
                why = f"row does not decode: {exc}"
            if why is not None:
                report.problem("row", why, table=table.name, key=key.hex())
    except Error as exc:
        report.corruption(exc, table=table.name)
        return None
    return n


def _check_index(engine, snap, table, index, defaults, rows: int | None, report: _Report) -> int | None:
    from tabledb.sql import keys
    from tabledb.sql.writer import IndexWriter
    where = {"table": table.name, "index": index.name}
    try:
        iw = IndexWriter(table, index)
    except (Error, KeyError) as exc:   # a column the catalog pass already reported missing
        report.problem("catalog", f"index {index.name} cannot be read: {exc}", **where)
        return None
    start, end = keys.index_range(table.id, index.id)
    n = 0
    try:
        for key, value in engine.scan(start, end, snapshot=snap):
            n += 1
            try:
                vals, pos = iw.codec.decode(key, len(iw.prefix))
            except CorruptionError as exc:
                report.problem("index", f"index entry does not decode: {exc}", key=key.hex(), **where)
                continue
            suffix = value if value else key[pos:]
            if not suffix:
                report.problem("index", "index entry holds no primary key", key=key.hex(), **where)
                continue
            row_key = table.row_prefix + suffix
            stored = engine.get(row_key, snapshot=snap)
            if stored is None:
                report.problem("index", f"index entry {vals!r:.60} points at a row that does not exist",
                               key=key.hex(), **where)
                continue
            try:
                row = _decode_row(table, defaults, row_key, stored)[0]
            except CorruptionError:
                row = None
            if row is None:
                continue   # the row pass reports it
            if iw.entry(row, suffix)[:2] != (key, value):
                report.problem("index", f"index entry {vals!r:.60} does not match its row's values "
                               f"{tuple(row[p] for p in iw.positions)!r:.60}", key=key.hex(), **where)
    except Error as exc:
        report.corruption(exc, **where)
        return None
    if rows is not None and n != rows:
        report.problem("index", f"{n} index entries for {rows} rows", **where)
    return n


def _check_orphans(engine, snap, catalog, report: _Report) -> None:
    """No SQL key outside the ranges of the catalog's tables and indexes (a warning for the range of
    each table's next index id: see the module docstring)."""
    from tabledb.sql import keys
    covered = []
    pending = []
    for table in catalog.tables.values():
        covered.append(keys.index_range(table.id, keys.PRIMARY_INDEX_ID))
        covered.extend(keys.index_range(table.id, i.id) for i in table.indexes)
        if all(i.id != table.next_index_id for i in table.indexes):   # else the catalog pass reported it
            pending.append((table, keys.index_range(table.id, table.next_index_id)))
            covered.append(pending[-1][1])
    covered.sort()
    for table, (start, end) in pending:
        try:
            for key, _value in engine.scan(start, end, snapshot=snap):
                report.warning(f"table {table.name}: keys under index id {table.next_index_id}, which no index has "
                               f"yet, from {key.hex()[:40]}: the entries of a CREATE INDEX that did not commit (a "
                               f"crash, or a backup taken meanwhile); never read, and the next CREATE INDEX on "
                               f"{table.name} (or DROP TABLE) clears them")
                break
        except Error as exc:
            report.corruption(exc)
    lo, hi = keys.all_tables_range()
    gaps, at = [], lo
    for start, end in covered:
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < hi:
        gaps.append((at, hi))
    for start, end in gaps:
        try:
            for key, _value in engine.scan(start, end, snapshot=snap):
                try:
                    table_id, index_id, _pos = keys.split_key(key)
                    what = f"table id {table_id}, index id {index_id}"
                except Error:
                    what = "not a valid SQL key"
                report.problem("orphan", f"keys that no table or index of the catalog owns ({what}), "
                               f"from {key.hex()[:40]}", key=key.hex())
                break
        except Error as exc:
            report.corruption(exc)


# =============================================================================================
# Printing


def format_report(report: dict) -> str:
    """The report as text: one line per problem and warning, then the summary."""
    lines = []
    for p in report["problems"]:
        where = []
        if "table" in p:
            where.append(f"table {p['table']}" + (f", index {p['index']}" if "index" in p else ""))
        if "file" in p:
            where.append(f"file {p['file']}" + (f", offset {p['offset']}" if "offset" in p else ""))
        if "key" in p:
            where.append(f"key {p['key'][:48]}")
        lines.append(f"problem ({p['kind']}): {p['message']}" + (f" [{'; '.join(where)}]" if where else ""))
    if report.get("problems_not_listed"):
        lines.append(f"... and {report['problems_not_listed']} more problems not listed")
    for w in report["warnings"]:
        lines.append(f"warning: {w}")
    files = report.get("files")
    if files:
        lines.append(f"checksums: {files['tables']} tables ({files['table_bytes']} bytes), "
                     f"{files['wal_segments']} WAL segments, {files['manifest']}")
    cat = report.get("catalog")
    if cat:
        lines.append(f"catalog: {cat['tables']} tables, {cat['indexes']} indexes, {cat['views']} views")
    for name, t in sorted(report["tables"].items()):
        idx = ", ".join(f"{i} {'?' if n is None else n}" for i, n in sorted(t["indexes"].items()))
        rows = "?" if t["rows"] is None else t["rows"]
        lines.append(f"  {name}: {rows} rows" + (f"; index entries: {idx}" if idx else ""))
    n = len(report["problems"]) + report.get("problems_not_listed", 0)
    verdict = "ok" if report["ok"] else f"{n} problem{'s' if n != 1 else ''}"
    lines.append(f"{report['path']}: {verdict} ({report['seconds']:.2f} s)")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """``tabledb check PATH [--json]``: print the report; exit status 0 if ok, 1 otherwise."""
    import argparse
    parser = argparse.ArgumentParser(prog="tabledb check", description="Verify every checksum, row, index entry "
                                     "and catalog record of a database; exit status 1 on problems.")
    parser.add_argument("path", help="database folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = check(args.path)
    except Error as exc:
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 0 if report["ok"] else 1


__all__ = ["check", "check_connection", "check_engine", "format_report", "main"]
