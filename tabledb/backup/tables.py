"""The SQL-aware part of backup: table backups, table-scope restores and RESTORE TABLE.

The other modules of ``tabledb.backup`` know only the storage engine; this one
knows the SQL keyspace (``tabledb.sql.keys``) and the catalog
(``tabledb.sql.catalog``), so it sits above them.

RESTORE TABLE t [AS new] FROM 'target' ...:
1. restore the chosen backup and point in time (same rules as RESTORE DATABASE)
   into a private directory beside the database;
2. read table ``t``'s catalog record there (its schema of that moment);
3. in the statement's transaction: give it a new table id (``next_table_id``),
   the new name, and index names that do not clash with the live ones (a
   clashing index ``i`` becomes ``<new>_i``; ``sqlite_autoindex_<t>_<n>``
   becomes ``sqlite_autoindex_<new>_<n>``); write its catalog record and every
   row and index entry, each key's table id rewritten (the rest of the key and
   every value stay as they are: no value holds a table id);
4. remove the private directory. The transaction commits as one batch, so the
   table appears whole or not at all. A taken name is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile

from tabledb.errors import ProgrammingError
from tabledb.backup import restoring as restore_mod
from tabledb.backup.repository import BackupError
from tabledb.sql import keys
from tabledb.sql.catalog import CATALOG_CF, TABLE_PREFIX, VIEW_PREFIX, Catalog, Table
from tabledb.storage import Engine, WriteBatch


def table_key_ranges(catalog: Catalog, names: list[str]) -> tuple[list[str], list[tuple[bytes, bytes]]]:
    """(names as spelled in the catalog, key ranges) of the tables ``names``; ProgrammingError if one is missing."""
    spelled, ranges = [], []
    for name in names:
        table = catalog.table(name)
        if table.name in spelled:
            continue
        spelled.append(table.name)
        ranges.append(keys.table_range(table.id))
    return spelled, ranges


def finish_table_scope(path: str, meta: dict) -> None:
    """After a restore of a table backup: drop every table (and view) the backup does not promise.

    A table backup's files may hold rows of other tables (an SSTable spans many), and the
    catalog holds their records: both go, so the restored database has exactly its tables.
    """
    if meta.get("scope") != "tables":
        return
    keep = {name.lower() for name in meta.get("tables") or ()}
    engine = Engine.open(path, create=False, background=False)
    try:
        if CATALOG_CF not in engine.list_column_families():
            return
        cf = engine.get_column_family(CATALOG_CF)
        batch = WriteBatch()
        for key, value in engine.scan(None, None, cf=cf):
            if key.startswith(TABLE_PREFIX):
                record = json.loads(value)
                if record["name"].lower() not in keep:
                    batch.delete(key, cf=cf)
                    start, end = keys.table_range(record["id"])
                    batch.delete_range(start, end)
            elif key.startswith(VIEW_PREFIX):
                batch.delete(key, cf=cf)
        if len(batch):
            engine.write(batch)
        engine.flush()
    finally:
        engine.close()


def restore(target, path, backup=None, as_of=None, progress=None) -> dict:
    """RESTORE DATABASE (the Python API ``tabledb.restore``): a table backup restores only its tables."""
    return restore_mod.restore_database(target, path, backup, as_of, progress, finish=finish_table_scope)


def _free_index_name(name: str, new_table: str, taken: set[str]) -> str:
    low = name.lower()
    if low.startswith("sqlite_autoindex_"):
        candidate = f"sqlite_autoindex_{new_table}_{name.rsplit('_', 1)[-1]}"
    else:
        candidate = name if low not in taken else f"{new_table}_{name}"
    base, n = candidate, 2
    while candidate.lower() in taken:
        candidate = f"{base}_{n}"
        n += 1
    return candidate


def restore_table(session, target, table_name: str, new_name: str | None = None, backup=None, as_of=None,
                  progress=None) -> dict:
    """RESTORE TABLE into ``session``'s open transaction (the caller commits). See the module doc."""
    live = session.current_catalog()
    dest_name = new_name or table_name
    if live.name_taken(dest_name):
        raise ProgrammingError(f"table {dest_name} already exists (restore it AS another name, or drop it first)")
    db_path = session.db.path
    if db_path:
        work = f"{db_path}-restore-{secrets.token_hex(4)}"
    else:
        work = os.path.join(tempfile.mkdtemp(prefix="tabledb-restore-"), "db")
    try:
        info = restore_mod.restore_database(target, work, backup, as_of, progress)
        engine = Engine.open(work, create=False, background=False)
        try:
            if CATALOG_CF not in engine.list_column_families():
                raise BackupError(f"backup {info['backup_id']} holds no catalog")
            cf = engine.get_column_family(CATALOG_CF)
            raw = engine.get(Catalog.table_key(table_name), cf=cf)
            if info["scope"] == "tables" and table_name.lower() not in {t.lower() for t in info["tables"]}:
                raw = None   # a table backup holds only some rows of the tables it does not name
            if raw is None:
                raise BackupError(f"table {table_name} is not in backup {info['backup_id']} at sequence "
                                  f"{info['sequence']}")
            old = Table.from_json(json.loads(raw))
            catalog = session.change_catalog()
            record = old.to_json()
            record["id"] = catalog.next_table_id
            record["name"] = dest_name
            taken = {i.name.lower() for t in catalog.tables.values() for i in t.indexes}
            for index in record["indexes"]:
                index["name"] = _free_index_name(index["name"], dest_name, taken)
                taken.add(index["name"].lower())
            table = Table.from_json(record)
            catalog.next_table_id += 1
            session.write_table(catalog, table)
            txn = session.txn
            old_prefix = keys.table_prefix(old.id)
            new_prefix = keys.table_prefix(table.id)
            rows_prefix = keys.index_prefix(old.id, keys.PRIMARY_INDEX_ID)
            cut = len(old_prefix)
            start, end = keys.table_range(old.id)
            rows = 0
            put = txn.put
            for key, value in engine.scan(start, end):
                put(new_prefix + key[cut:], value)
                if key.startswith(rows_prefix):
                    rows += 1
            session.db.rowid_next.pop(table.id, None)
        finally:
            engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not db_path:
            shutil.rmtree(os.path.dirname(work), ignore_errors=True)
    return {"table_name": dest_name, "rows": rows, "backup_id": info["backup_id"], "sequence": info["sequence"],
            "restored_to": info["restored_to"]}


RESTORE_TABLE_COLUMNS = ["table_name", "rows", "backup_id", "sequence", "restored_to"]
RESTORE_TABLE_TYPES = ["TEXT", "INTEGER", "TEXT", "INTEGER", "TEXT"]

__all__ = ["finish_table_scope", "restore", "restore_table", "table_key_ranges"]
