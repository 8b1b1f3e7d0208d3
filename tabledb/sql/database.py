"""One open database shared by every connection of this process to the same path.

The engine holds a LOCK file, so a process opens each database once; its
connections share the :class:`Database`: the engine, the committed catalog,
the writer lock that serialises write transactions, and the row id counters.
"""

from __future__ import annotations

import atexit
import gc
import os
import queue
import threading
import time

from tabledb.errors import InvalidArgumentError, OperationalError, ProgrammingError
from tabledb.sql import keys
from tabledb.sql.catalog import CATALOG_CF, Catalog

_registry: dict[str, "Database"] = {}
_registry_lock = threading.Lock()   # never taken by a finalizer: see close_unreachable

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
    _start_closer()   # for the connections nobody closes (close_unreachable)
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
    """Drop one reference to ``db``; the last one closes it."""
    with _registry_lock:
        _release_locked(db)


def _release_locked(db: Database) -> None:
    """REQUIRES: _registry_lock."""
    db.refs -= 1
    if db.refs <= 0:
        if db.path is not None:
            _registry.pop(db.path, None)
        db.close()


# -- connections nobody closed ---------------------------------------------------
#
# A finalizer (Connection.__del__) must close an unclosed connection -- roll back
# its transaction, release its writer lock and snapshot, drop its Database
# reference -- without ever blocking. The cyclic GC runs finalizers in whatever
# thread allocates: one holding _registry_lock or an engine lock, or an engine
# thread that open_database (starting it) or Engine.close (joining it) waits for.
# So close_unreachable closes inline only outside a collection (the last
# reference went in the thread that dropped it) and when _registry_lock is free at
# once; otherwise the close goes to the closer thread, which takes the locks as
# any caller does. Closes found during a collection are queued when it ends, so
# that the finalizers of the connection's results (same collection) ran first and
# nothing else touches the session while the closer closes it.

_orphans: queue.SimpleQueue = queue.SimpleQueue()   # (resource, db) to close; put() is finalizer-safe
_held: list = []             # found during the running collection
_collecting = False          # a collection is running (set by _on_gc)
_closer: threading.Thread | None = None
_closer_lock = threading.Lock()


def close_unreachable(resource, db: Database) -> None:
    """For finalizers: ``resource.close()``, then release ``db``. Never blocks; the close may
    happen later in the closer thread (see above)."""
    if _collecting:
        _held.append((resource, db))
    elif _registry_lock.acquire(blocking=False):
        try:
            try:
                resource.close()
            finally:
                _release_locked(db)
        finally:
            _registry_lock.release()
    else:
        _orphans.put((resource, db))


def _on_gc(phase: str, info: dict) -> None:
    global _collecting
    if phase == "start":
        _collecting = True
        return
    _collecting = False
    while _held:
        _orphans.put(_held.pop())


def _closer_loop() -> None:
    while True:
        item = _orphans.get()
        if item is None:
            return
        resource, db = item
        del item
        try:
            try:
                resource.close()
            finally:
                release_database(db)
        except Exception:  # noqa: BLE001 - as in a finalizer: there is no caller to tell
            pass
        del resource, db


def _start_closer() -> None:
    """Start the closer thread if it is not running (first connect; after a fork, in the child)."""
    global _closer
    if _closer is not None and _closer.is_alive():
        return
    with _closer_lock:
        if _closer is None or not _closer.is_alive():
            _closer = threading.Thread(target=_closer_loop, name="tabledb-closer", daemon=True)
            _closer.start()


def _finish_closes() -> None:
    """At exit: run the closes queued so far (the closer is a daemon thread)."""
    closer = _closer
    if closer is not None and closer.is_alive():
        _orphans.put(None)
        closer.join(timeout=10)


def _after_fork_in_child() -> None:
    global _orphans, _closer, _closer_lock, _collecting
    _orphans = queue.SimpleQueue()   # the parent's connections are not the child's to close
    _held.clear()
    _collecting = False
    _closer = None
    _closer_lock = threading.Lock()


gc.callbacks.append(_on_gc)
atexit.register(_finish_closes)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def max_row_key(reader, table) -> bytes | None:
    """The largest row key of ``table`` visible to ``reader`` (None: the table is empty)."""
    start, end = keys.index_range(table.id, keys.PRIMARY_INDEX_ID)
    for key, _value in reader.scan(start, end, reverse=True):
        return key
    return None
