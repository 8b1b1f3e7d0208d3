"""MemoryEngine: a small in-memory engine that is obviously correct, the reference for the LSM engine.

It implements docs/engine-api.md with the plainest data model that can:

- per column family, ``versions``: user key -> list of ``(sequence, value)`` in
  commit order, where ``value`` is None for a point delete; and ``tombstones``:
  a list of range deletes ``(start, end, sequence)`` covering ``[start, end)``;
- one global sequence counter; operation i of a batch gets ``first + i``;
- a read at sequence S sees, for a key, its newest version with sequence <= S,
  unless a range delete with a sequence in (that version's sequence, S] covers
  the key;
- a scan computes the visible pairs at call time and sorts them, so it sees the
  state as of the call however writes interleave with its iteration.

Nothing is ever garbage-collected: old versions stay for the life of the state.
That is fine for tests, which is what this engine is for.

``MemoryEngine.open(path)`` keeps a process-wide registry keyed by the absolute
path: closing hands the state back to the registry, reopening takes it again
(snapshots do not survive, as for the LSM engine). ``open(None)`` is private.
While a path is open, opening it again raises DatabaseLockedError, as the LSM
engine's LOCK file does. ``checkpoint(dir)`` stores a deep copy under ``dir``.

Bulk ingestion (``reserve_sequence``, ``sst_writer``, ``ingest``): the writer
keeps its operations in a list, registered process-wide under the file's
absolute path when it closes (it also leaves a small marker file at the path,
so that ``move=True`` visibly consumes it); ``ingest`` applies them at the
writer's sequence, as if a batch had been written then, and then uses one new
sequence number per file with entries (the LSM engine's ingest record in the WAL).

Thread-safety: every public method takes the engine's one lock.
"""

from __future__ import annotations

import copy
import os
import threading

from tabledb.errors import ClosedError, DatabaseLockedError, InvalidArgumentError, InvalidTypeError, StorageIOError
from tabledb.storage.batch import ColumnFamily, WriteBatch, check_key, check_range
from tabledb.storage.snapshot import Snapshot, snapshot_sequence
from tabledb.storage.dbformat import KIND_DELETE, KIND_PUT, KIND_RANGE_DELETE

DEFAULT_BLOCK_CACHE_BYTES = 32 << 20
DEFAULT_NUM_LEVELS = 7


class _Family:
    """One column family's data: every version of every key, and its range deletes."""

    __slots__ = ("handle", "versions", "tombstones")

    def __init__(self, name: str, cf_id: int):
        self.handle = ColumnFamily(name, cf_id)
        self.versions: dict[bytes, list[tuple[int, bytes | None]]] = {}
        self.tombstones: list[tuple[bytes, bytes, int]] = []

    def visible(self, key: bytes, sequence: int) -> bytes | None:
        """The value of ``key`` as of ``sequence``, or None if absent or deleted."""
        for version_seq, value in reversed(self.versions.get(key, ())):
            if version_seq <= sequence:
                break
        else:
            return None
        for start, end, tomb_seq in self.tombstones:
            if version_seq < tomb_seq <= sequence and start <= key < end:
                return None
        return value


class _State:
    """Everything that survives close and reopen."""

    def __init__(self):
        self.families: dict[int, _Family] = {0: _Family("default", 0)}
        self.next_cf_id = 1
        self.sequence = 0
        self.ingested_files = 0
        self.ingested_bytes = 0


_registry_lock = threading.Lock()
_registry: dict[str, _State] = {}   # path -> state of every named database, open or closed
_open_paths: set[str] = set()
_external: dict[str, "_ExternalTable"] = {}   # absolute path -> a finished sst_writer's table (under _registry_lock)

_MARKER = b"tabledb MemoryEngine external table (its entries live in the process)\n"


class _ExternalTable:
    """What a MemoryEngine ``sst_writer`` wrote: ``ops`` are ``(kind, key, value)``, all at ``sequence``."""

    __slots__ = ("cf_id", "sequence", "ops", "smallest", "end", "size")

    def __init__(self, cf_id: int, sequence: int, ops: list, tombstones: list):
        self.cf_id = cf_id
        self.sequence = sequence
        self.ops = ops + [(KIND_RANGE_DELETE, s, e) for s, e in tombstones]
        bounds = [(k, k + b"\x00") for _, k, _ in ops] + list(tombstones)
        self.smallest = min((s for s, _ in bounds), default=None)   # None: empty
        self.end = max((e for _, e in bounds), default=None)          # exclusive
        self.size = sum(len(k) + len(v) for _, k, v in self.ops)


class MemoryTableWriter:
    """The MemoryEngine's ``sst_writer``: same checks as the LSM engine's, entries kept in a list."""

    def __init__(self, path: str, cf_id: int, sequence: int):
        self.path = path
        self.cf_id = cf_id
        self.sequence = sequence
        self._ops: list = []
        self._tombstones: list = []
        self._last_key: bytes | None = None
        self._done = False
        self._closed = False

    def __enter__(self) -> "MemoryTableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def _next_key(self, key) -> bytes:
        key = check_key(key)
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        if self._last_key is not None and key <= self._last_key:
            raise InvalidArgumentError(f"keys must be strictly ascending: {key!r} after {self._last_key!r}")
        self._last_key = key
        return key

    def put(self, key, value) -> None:
        key = self._next_key(key)
        self._ops.append((KIND_PUT, key, check_key(value, "value")))

    def put_many(self, keys, values) -> None:
        keys, values = list(keys), list(values)
        if len(keys) != len(values):
            raise InvalidArgumentError(f"{len(keys)} keys but {len(values)} values")
        keys = [check_key(k) for k in keys]
        values = [check_key(v, "value") for v in values]
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        if any(a >= b for a, b in zip([self._last_key] + keys, keys) if a is not None):
            raise InvalidArgumentError("keys must be strictly ascending")
        for k, v in zip(keys, values):
            self._ops.append((KIND_PUT, k, v))
        if keys:
            self._last_key = keys[-1]

    def delete(self, key) -> None:
        self._ops.append((KIND_DELETE, self._next_key(key), b""))

    def delete_range(self, start, end) -> None:
        start, end = check_range(start, end)
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        if start < end:
            self._tombstones.append((start, end))

    @property
    def num_entries(self) -> int:
        return len(self._ops)

    def close(self) -> None:
        if self._closed:
            return
        if self._done:
            raise InvalidArgumentError("the external table writer was abandoned")
        self._done = self._closed = True
        try:
            with open(self.path, "wb") as f:
                f.write(_MARKER)
        except OSError as exc:
            raise StorageIOError(f"write failed for {self.path}: {exc.strerror or exc}", path=self.path,
                                 errno=exc.errno) from exc
        with _registry_lock:
            _external[os.path.abspath(self.path)] = _ExternalTable(self.cf_id, self.sequence, self._ops,
                                                                   self._tombstones)

    def abandon(self) -> None:
        self._done = True


def _registry_key(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    return os.path.abspath(os.fspath(path))


class _ScanIterator:
    """Iterates over pairs computed when the scan was called; raises ClosedError once the engine is closed."""

    __slots__ = ("_engine", "_items")

    def __init__(self, engine: "MemoryEngine", items: list[tuple[bytes, bytes]]):
        self._engine = engine
        self._items = iter(items)

    def __iter__(self) -> "_ScanIterator":
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        if self._engine._closed:
            raise ClosedError("scan iterator used after its engine was closed")
        return next(self._items)


class MemoryEngine:
    """The in-memory reference engine. Open with :meth:`open`; see docs/engine-api.md."""

    def __init__(self, state: _State, key: str | None, options: dict):
        self._state = state
        self._key = key
        self._options = options
        self._lock = threading.RLock()
        self._closed = False
        self._snapshots: set[Snapshot] = set()

    @classmethod
    def open(cls, path=None, create: bool = True, **options) -> "MemoryEngine":
        """Open the database named ``path`` (None: a private one). Options are accepted and ignored."""
        if path is None:
            return cls(_State(), None, options)
        key = _registry_key(path)
        with _registry_lock:
            if key in _open_paths:
                raise DatabaseLockedError(f"database is locked: {key} is already open")
            state = _registry.get(key)
            if state is None:
                if not create:
                    raise InvalidArgumentError(f"database {key} does not exist and create=False")
                state = _registry[key] = _State()
            _open_paths.add(key)
        return cls(state, key, options)

    @classmethod
    def destroy(cls, path) -> None:
        """Forget the closed database named ``path`` (tests call this to free memory)."""
        key = _registry_key(path)
        with _registry_lock:
            if key in _open_paths:
                raise DatabaseLockedError(f"database is locked: {key} is open")
            _registry.pop(key, None)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the engine (idempotent). Its state stays in the registry for the next open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._snapshots.clear()
            self._state = None
            if self._key is not None:
                with _registry_lock:
                    _open_paths.discard(self._key)

    def __enter__(self) -> "MemoryEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("engine used after close()")

    # -- writes ----------------------------------------------------------------------------------

    def put(self, key, value, cf: ColumnFamily | None = None, sync: bool | None = None) -> int:
        return self.write(WriteBatch().put(key, value, cf), sync)

    def delete(self, key, cf: ColumnFamily | None = None, sync: bool | None = None) -> int:
        return self.write(WriteBatch().delete(key, cf), sync)

    def delete_range(self, start, end, cf: ColumnFamily | None = None, sync: bool | None = None) -> int:
        """Delete ``[start, end)``. ``start == end`` uses no sequence number and returns the latest one."""
        return self.write(WriteBatch().delete_range(start, end, cf), sync)

    def write(self, batch: WriteBatch, sync: bool | None = None) -> int:
        """Apply ``batch`` atomically; return the last sequence used (the latest one if it is empty)."""
        if not isinstance(batch, WriteBatch):
            raise InvalidTypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        _check_sync(sync)
        with self._lock:
            self._check_open()
            ops = [(kind, self._family(cf), key, value) for kind, cf, key, value in batch.ops]
            sequence = self._state.sequence
            for kind, family, key, value in ops:
                sequence += 1
                if kind == KIND_PUT:
                    family.versions.setdefault(key, []).append((sequence, value))
                elif kind == KIND_DELETE:
                    family.versions.setdefault(key, []).append((sequence, None))
                elif kind == KIND_RANGE_DELETE:
                    family.tombstones.append((key, value, sequence))
                else:  # pragma: no cover - WriteBatch builds only the three kinds
                    raise AssertionError(f"unknown operation kind {kind}")
            self._state.sequence = sequence
            return sequence

    # -- ingestion -------------------------------------------------------------------------------

    def reserve_sequence(self) -> int:
        """Use one sequence number, as a one-op write would, and return it."""
        with self._lock:
            self._check_open()
            self._state.sequence += 1
            return self._state.sequence

    def sst_writer(self, path, cf: ColumnFamily | None = None, *, sequence: int) -> MemoryTableWriter:
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidTypeError(f"an external file path must be a str or os.PathLike, not {type(path).__name__}")
        with self._lock:
            self._check_open()
            family = self._family(cf)
            if type(sequence) is not int:
                raise InvalidTypeError(f"sequence must be an int, not {type(sequence).__name__}")
            if not 0 < sequence <= self._state.sequence:
                raise InvalidArgumentError(f"sequence {sequence} was not handed out (latest is "
                                           f"{self._state.sequence}): take one from reserve_sequence()")
            return MemoryTableWriter(os.fspath(path), family.handle.id, sequence)

    def ingest(self, paths, cf: ColumnFamily | None = None, move: bool = True, progress=None) -> dict:
        """Apply the tables written by ``sst_writer`` at ``paths`` at their sequences, all or none."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise InvalidTypeError("ingest takes a list of paths")
        if progress is not None and not callable(progress):
            raise InvalidTypeError("progress must be callable")
        for p in paths:
            if not isinstance(p, (str, os.PathLike)):
                raise InvalidTypeError(f"an external file path must be a str or os.PathLike, not {type(p).__name__}")
        keys = [os.path.abspath(os.fspath(p)) for p in paths]
        with self._lock:
            self._check_open()
            family = self._family(cf)
            result = {"files": 0, "bytes": 0, "levels": [None] * len(keys), "flushed": False}
            if not keys:
                return result
            if len(set(keys)) != len(keys):
                raise InvalidArgumentError("the same file is listed twice")
            tables = []
            with _registry_lock:
                for key in keys:
                    table = _external.get(key)
                    if table is None or not os.path.exists(key):
                        raise InvalidArgumentError(f"external file {key} does not exist (or was not written by "
                                                   "this engine kind's sst_writer)")
                    tables.append(table)
            for key, t in zip(keys, tables):
                if t.cf_id != family.handle.id:
                    raise InvalidArgumentError(f"{key} was built for column family id {t.cf_id}, "
                                               f"not {family.handle.id}")
                if t.sequence > self._state.sequence:
                    raise InvalidArgumentError(f"{key} holds sequence {t.sequence}, above the latest sequence")
            ordered = sorted((t for t in tables if t.smallest is not None), key=lambda t: t.smallest)
            for a, b in zip(ordered, ordered[1:]):
                if b.smallest < a.end:
                    raise InvalidArgumentError("external files overlap")
            for key, t in zip(keys, tables):
                if t.smallest is None:
                    continue
                for k, versions in family.versions.items():
                    if t.smallest <= k < t.end and versions[-1][0] >= t.sequence:
                        raise InvalidArgumentError(f"{key}: {k!r} was written at or after the file's sequence")
                for s, e, q in family.tombstones:
                    if s < t.end and t.smallest < e and q >= t.sequence:
                        raise InvalidArgumentError(f"{key}: a range delete was written at or after the file's "
                                                   "sequence")
            total = 2 * sum(t.size for t in tables)
            done = 0
            for t in tables:
                for kind, k, v in t.ops:
                    if kind == KIND_RANGE_DELETE:
                        family.tombstones.append((k, v, t.sequence))
                    else:
                        family.versions.setdefault(k, []).append((t.sequence, v if kind == KIND_PUT else None))
                done += 2 * t.size
                if progress is not None:
                    progress(done, total)
            if move:
                with _registry_lock:
                    for key in keys:
                        _external.pop(key, None)
                for key in keys:
                    try:
                        os.remove(key)
                    except OSError:
                        pass
            result["files"] = sum(1 for t in tables if t.smallest is not None)
            result["bytes"] = sum(t.size for t in tables if t.smallest is not None)
            self._state.sequence += result["files"]
            self._state.ingested_files += result["files"]
            self._state.ingested_bytes += result["bytes"]
            return result

    # -- reads -----------------------------------------------------------------------------------

    def get(self, key, cf: ColumnFamily | None = None, snapshot: Snapshot | None = None) -> bytes | None:
        key = check_key(key)
        with self._lock:
            self._check_open()
            family = self._family(cf)
            return family.visible(key, self._read_sequence(snapshot))

    def scan(self, start=None, end=None, cf: ColumnFamily | None = None, snapshot: Snapshot | None = None,
             reverse: bool = False):
        """Iterate ``(key, value)`` for ``start <= key < end`` as of the call (or the snapshot).

        Arguments are checked at the call, not at the first ``next``.
        """
        start, end = _check_bounds(start, end)
        with self._lock:
            self._check_open()
            family = self._family(cf)
            sequence = self._read_sequence(snapshot)
            items = []
            for key in family.versions:
                if (start is None or key >= start) and (end is None or key < end):
                    value = family.visible(key, sequence)
                    if value is not None:
                        items.append((key, value))
        items.sort(reverse=bool(reverse))
        return _ScanIterator(self, items)

    @property
    def latest_sequence(self) -> int:
        with self._lock:
            self._check_open()
            return self._state.sequence

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._check_open()
            snap = Snapshot(self, self._state.sequence)
            self._snapshots.add(snap)
            return snap

    def _release_snapshot(self, snap: Snapshot) -> None:
        with self._lock:
            self._snapshots.discard(snap)

    def _read_sequence(self, snapshot) -> int:
        return self._state.sequence if snapshot is None else snapshot_sequence(self, snapshot)

    # -- column families -------------------------------------------------------------------------

    def _family(self, cf) -> _Family:
        if cf is None:
            return self._state.families[0]
        if not isinstance(cf, ColumnFamily):
            raise InvalidTypeError(f"cf must be a ColumnFamily handle or None, not {type(cf).__name__}")
        family = self._state.families.get(cf.id)
        if family is None or family.handle.name != cf.name:
            raise InvalidArgumentError(f"unknown or dropped column family {cf!r}")
        return family

    def _family_by_name(self, name: str) -> _Family:
        for family in self._state.families.values():
            if family.handle.name == name:
                return family
        raise InvalidArgumentError(f"unknown column family {name!r}")

    def create_column_family(self, name: str) -> ColumnFamily:
        if not isinstance(name, str):
            raise InvalidTypeError(f"column family name must be a str, not {type(name).__name__}")
        if not name:
            raise InvalidArgumentError("column family name must not be empty")
        with self._lock:
            self._check_open()
            if any(f.handle.name == name for f in self._state.families.values()):
                raise InvalidArgumentError(f"column family {name!r} already exists")
            family = _Family(name, self._state.next_cf_id)
            self._state.next_cf_id += 1
            self._state.families[family.handle.id] = family
            return family.handle

    def get_column_family(self, name: str) -> ColumnFamily:
        if not isinstance(name, str):
            raise InvalidTypeError(f"column family name must be a str, not {type(name).__name__}")
        with self._lock:
            self._check_open()
            return self._family_by_name(name).handle

    def list_column_families(self) -> list[str]:
        with self._lock:
            self._check_open()
            return [self._state.families[i].handle.name for i in sorted(self._state.families)]

    def drop_column_family(self, cf) -> None:
        """Drop ``cf`` (a handle or a name) and its data; its id is never reused."""
        with self._lock:
            self._check_open()
            if isinstance(cf, str):
                family = self._family_by_name(cf)
            elif isinstance(cf, ColumnFamily):
                family = self._family(cf)
            else:
                raise InvalidTypeError(f"cf must be a ColumnFamily handle or a name, not {type(cf).__name__}")
            if family.handle.id == 0:
                raise InvalidArgumentError('the "default" column family cannot be dropped')
            del self._state.families[family.handle.id]

    # -- maintenance -----------------------------------------------------------------------------

    def flush(self, cf: ColumnFamily | None = None, wait: bool = True) -> None:
        """Nothing to flush; checks its arguments like the LSM engine."""
        with self._lock:
            self._check_open()
            if cf is not None:
                self._family(cf)

    def compact_range(self, start=None, end=None, cf: ColumnFamily | None = None) -> None:
        """Nothing to compact; checks its arguments like the LSM engine."""
        _check_bounds(start, end)
        with self._lock:
            self._check_open()
            if cf is not None:
                self._family(cf)

    def checkpoint(self, dir) -> None:
        """Register a deep copy of the state under ``dir``, which must not exist (on disk or in the registry)."""
        key = _registry_key(dir)
        with self._lock:
            self._check_open()
            with _registry_lock:
                if key in _registry or os.path.exists(key):
                    raise InvalidArgumentError(f"checkpoint directory {key} already exists")
                _registry[key] = copy.deepcopy(self._state)

    def stats(self) -> dict:
        with self._lock:
            self._check_open()
            data_bytes = sum(
                len(key) + len(value or b"")
                for family in self._state.families.values()
                for key, versions in family.versions.items()
                for _, value in versions
            ) + sum(len(s) + len(e) for f in self._state.families.values() for s, e, _ in f.tombstones)
            num_levels = self._options.get("num_levels", DEFAULT_NUM_LEVELS)
            return {
                "engine": "memory",
                "sequence": self._state.sequence,
                "memtable_bytes": data_bytes,
                "levels": [{"level": level, "files": 0, "bytes": 0} for level in range(num_levels)],
                "wal": {"torn_tail_bytes": 0},
                "block_cache": {"hits": 0, "misses": 0, "usage": 0,
                                "capacity": self._options.get("block_cache_bytes", DEFAULT_BLOCK_CACHE_BYTES)},
                "column_families": len(self._state.families),
                "snapshots": len(self._snapshots),
                "ingested_files": self._state.ingested_files,
                "ingested_bytes": self._state.ingested_bytes,
            }

    def __repr__(self) -> str:
        return f"MemoryEngine({self._key!r}{', closed' if self._closed else ''})"


def _check_bounds(start, end) -> tuple[bytes | None, bytes | None]:
    """Check optional range bounds (None = unbounded) as the scan and compact_range calls take them."""
    if start is not None and end is not None:
        return check_range(start, end)
    return (None if start is None else check_key(start, "start"),
            None if end is None else check_key(end, "end"))


def _check_sync(sync) -> None:
    if sync is not None and not isinstance(sync, bool):
        raise InvalidTypeError(f"sync must be True, False or None, not {type(sync).__name__}")


__all__ = ["MemoryEngine", "Snapshot"]
