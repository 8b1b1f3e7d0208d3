"""One open database shared by every connection of this process to the same path.

The engine holds a LOCK file, so a process opens each database once; its
connections share the :class:`Database`: the engine, the committed catalog,
the writer lock that serialises write transactions, and the row id counters.
"""

from __future__ import annotations

import os
import threading
import time

from tabledb.errors import InvalidArgumentError, OperationalError, ProgrammingError
from tabledb.sql import keys
from tabledb.sql.catalog import CATALOG_CF, Catalog

_registry: dict[str, "Database"] = {}
_registry_lock = threading.RLock()   # a Connection finalized during open_database re-enters it

ENGINE_OPTIONS = {
    "sync_mode", "memtable_bytes", "block_cache_bytes", "block_cache_admit_every", "max_open_files",
    "block_size", "bloom_bits_per_key", "compression", "target_file_bytes", "l0_compaction_trigger",
    "l0_slowdown_trigger", "l0_stop_trigger", "level1_bytes", "level_multiplier", "num_levels", "background",
}


class Database:
    """Engine + committed catalog + writer lock. Use :func:`open_database`."""

    def __init__(self, path: str | None, engine, memory: bool):
        self.path = path
        self.engine = engine
        self.memory = memory
        self.refs = 0
        self.catalog_cf = _catalog_cf(engine)
        self.catalog = Catalog.load(engine, self.catalog_cf)
        self._writer = threading.Condition()
        self._writer_owner = None
        self.rowid_next: dict[int, int] = {}
        self.lock = threading.RLock()   # guards catalog publication and rowid counters

    # -- the writer lock -------------------------------------------------------
    def acquire_writer(self, owner, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._writer:
            while self._writer_owner is not None and self._writer_owner is not owner:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OperationalError("database is locked (another connection is writing)")
                self._writer.wait(remaining)
            self._writer_owner = owner

    def release_writer(self, owner) -> None:
        with self._writer:
            if self._writer_owner is owner:
                self._writer_owner = None
                self._writer.notify()

    def publish(self, catalog: Catalog) -> None:
        with self.lock:
            self.catalog = catalog

    def close(self) -> None:
        self.engine.close()


def _catalog_cf(engine):
    if CATALOG_CF in engine.list_column_families():
        return engine.get_column_family(CATALOG_CF)
    return engine.create_column_family(CATALOG_CF)


def open_database(path, options: dict) -> Database:
    """The shared Database of ``path`` (``":memory:"`` or None: a private in-memory one)."""
    engine_options = {k: v for k, v in options.items() if k in ENGINE_OPTIONS}
    unknown = set(options) - ENGINE_OPTIONS
    if unknown:
        raise ProgrammingError(f"unknown option(s): {', '.join(sorted(unknown))}")
    if path is None or path == ":memory:":
        from tabledb.storage.memory import MemoryEngine
        db = Database(None, MemoryEngine.open(None), True)
        db.refs = 1
        return db
    if not isinstance(path, (str, os.PathLike)):
        raise ProgrammingError(f"database path must be a str or os.PathLike, not {type(path).__name__}")
    real = os.path.realpath(os.fspath(path))
    with _registry_lock:
        db = _registry.get(real)
        if db is None:
            if os.path.exists(real) and not os.path.isdir(real):
                raise OperationalError(f"unable to open database: {path} is not a directory")
            from tabledb.storage import Engine
            try:
                engine = Engine.open(real, create=True, **engine_options)
            except InvalidArgumentError as exc:
                raise ProgrammingError(str(exc)) from exc
            db = Database(real, engine, False)
            _registry[real] = db
        db.refs += 1
        return db


def release_database(db: Database) -> None:
    with _registry_lock:
        db.refs -= 1
        if db.refs <= 0:
            if db.path is not None:
                _registry.pop(db.path, None)
            db.close()


def max_row_key(reader, table) -> bytes | None:
    """The largest row key of ``table`` visible to ``reader`` (None: the table is empty)."""
    start, end = keys.index_range(table.id, keys.PRIMARY_INDEX_ID)
    for key, _value in reader.scan(start, end, reverse=True):
        return key
    return None
