"""Bulk writes past the transaction: sorted entries as SSTables handed to ``Engine.ingest`` in one call.

Two statements write this way: ``ingest_arrow`` (tabledb/arrow.py: the rows and
index entries of a load) and ``CREATE [UNIQUE] INDEX`` on a table that already
holds rows (:func:`build_index`). Both only when :func:`can_ingest_files`: the
engine offers ``reserve_sequence``/``sst_writer``/``ingest``, and the statement
runs outside an explicit transaction with nothing written yet (an autocommit
statement, or the first write of an implicit transaction, without SAVEPOINTs).
The statement holds the database's writer lock throughout, so nothing else
writes between its reads and its ingest.

Files
=====
:class:`IngestWriter` takes ascending ``(key, value)`` slices, writes them as
SSTables of one reserved sequence number (a new file once ``target_bytes`` of
keys and values went into one), and ingests them all at once. With ``clear=(lo,
hi)`` the files also carry range tombstones that together cover ``[lo, hi)``
exactly -- file i clears from its own first key (``lo`` for the first) to the
next file's first key (``hi`` for the last) -- so that the files never overlap
each other and the ingest hides whatever older versions that range held.
Temporary files live in :func:`work_directory`, a fresh directory inside the
database directory (so the ingest can hard-link them), removed at the end
whatever happens. A crash leaves it behind (``ingest-*``, ``index-*``); nothing
reads it, and the next bulk write removes it (it holds the writer lock, and only
one process opens a database, so no other bulk write can be using it).

CREATE INDEX
============
:func:`build_index` reads the table at the statement's snapshot in primary-key
order, computes each row's entry with the same :class:`~tabledb.sql.writer.IndexWriter`
the transactional path uses (:func:`index_entries`: byte for byte the same
entries), and sorts them externally (:class:`ExternalSorter`): entries are
collected up to :func:`run_budget` bytes (estimated as Python holds them),
sorted, and spilled as a run file; the runs are then merged (``heapq.merge``,
at most ``MERGE_FANIN`` at a time) into the SSTables. For a UNIQUE index two
equal keys next to each other in the merged stream are a violation (entries
with a NULL end in the row's primary key, so they never collide, as in SQLite):
IntegrityError, nothing is ingested.

The entries become reachable only when the catalog record that names the index
commits, after the ingest, in the statement's transaction. If the process dies
in between, they are orphans under an index id that no catalog names (so is a
BACKUP cut in between: it does not take the writer lock), and the next CREATE
INDEX on that table takes the same id (``next_index_id`` is part of the
uncommitted record). Both paths therefore clear the index's key range first:
here the files' range tombstones (``clear``), in the transactional path a
``delete_range`` in the batch before the entries. Orphans are never read;
``tabledb.check`` reports them until then. If the statement fails after the
ingest, or its transaction rolls back, the session range-deletes what it
ingested (``Session.ingested``).

Run file format (temporary, never outlives the statement)::

    run    := entry*
    entry  := key_len:u32le value_len:u32le key value

Memory: one run (``run_budget``: half the engine's ``memtable_bytes``, at most
``RUN_BYTES``; the memtable takes no writes meanwhile), then, while merging, a
read buffer of ``READ_BYTES`` per run merged and one output slice (and the
SSTable writer's own: its bloom filter takes 8 bytes a key of the open file).
"""

from __future__ import annotations

import contextlib
import heapq
import operator
import os
import shutil
import struct
import tempfile
from itertools import islice
from typing import Iterable, Iterator

from tabledb.errors import CorruptionError, IntegrityError, StorageIOError
from tabledb.sql import keys
from tabledb.sql.expressions import Runtime
from tabledb.sql.plan import RowDecoder
from tabledb.sql.planner import Planner
from tabledb.sql.writer import IndexWriter

SST_TARGET_BYTES = 64 << 20   # an ingested SSTable is closed once this many key+value bytes went in
RUN_BYTES = 32 << 20          # the most a sort run may hold (estimated bytes of Python objects)
ENTRY_OVERHEAD = 104          # a (key, value) tuple in a list, besides the bytes: tuple, slot, key object
VALUE_OVERHEAD = 40           # a non-empty value's bytes object header (b"" is shared)
MERGE_FANIN = 64              # runs merged at once; more are merged in passes
READ_BYTES = 128 << 10        # read buffer of each run being merged
SLICE = 8192                  # entries handed to the SSTable writer at a time

_ENTRY = struct.Struct("<II")                 # a run entry's header: key length, value length
_WORK_PREFIXES = ("ingest-", "index-")       # names of the work directories in a database directory


def can_ingest_files(session) -> bool:
    """True when a statement of ``session`` may write through SSTables and ``ingest`` (see the module docstring)."""
    engine = session.engine
    return (all(hasattr(engine, name) for name in ("reserve_sequence", "sst_writer", "ingest"))
            and session.txn is not None and len(session.txn) == 0 and not session.explicit and not session.savepoints)


@contextlib.contextmanager
def work_directory(session, prefix: str) -> Iterator[str]:
    """A fresh directory for temporary files (inside the database directory; the system's temporary
    directory for a database without one), removed with everything in it on leaving. Work
    directories that a crashed process left in the database directory are removed first.
    REQUIRES: the writer lock; ``prefix`` one of ``_WORK_PREFIXES``."""
    assert prefix in _WORK_PREFIXES
    base = session.db.path
    if base:
        for name in os.listdir(base):
            if name.startswith(_WORK_PREFIXES) and os.path.isdir(os.path.join(base, name)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=base) if base else tempfile.mkdtemp(prefix="tabledb-" + prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ================================================================== SSTables and the ingest

class IngestWriter:
    """Ascending entries -> SSTables at one reserved sequence -> one ``engine.ingest`` (see the module docstring).

    ::

        with IngestWriter(engine, directory, clear=(lo, hi)) as out:
            out.put_many(keys, values)      # lists of bytes; keys ascending across calls
            out.ingest()                    # finishes the last file, ingests them all

    Leaving the ``with`` block before ``ingest()`` (or by an exception) abandons the open
    file; the finished ones stay in ``directory`` for its owner to remove. REQUIRES: nothing
    writes into the keys written here (or ``clear``) until ``ingest`` returns.
    """

    def __init__(self, engine, directory: str, *, clear: tuple[bytes, bytes] | None = None,
                 target_bytes: int | None = None):
        self.engine = engine
        self.directory = directory
        self.clear = clear
        self.target_bytes = SST_TARGET_BYTES if target_bytes is None else target_bytes
        self.sequence = engine.reserve_sequence()
        self.paths: list[str] = []
        self.entries = 0
        self._open = None            # the open file's writer (ExternalTableWriter)
        self._put_many = None
        self._size = 0               # key and value bytes in the open file
        self._cleared_to = clear[0] if clear is not None else None

    def __enter__(self) -> "IngestWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        current, self._open = self._open, None
        if current is not None:
            current.abandon()

    def put_many(self, ks: list, vs: list) -> None:
        """Add ``ks[i] = vs[i]``. REQUIRES: ``ks`` ascending, above every key added before."""
        if not ks:
            return
        if self._open is None or self._size >= self.target_bytes:
            self._next_file(ks[0])
        self._put_many(ks, vs)
        self._size += sum(map(len, ks)) + sum(map(len, vs))
        self.entries += len(ks)

    def _next_file(self, first_key: bytes) -> None:
        if self._open is not None:
            self._finish(first_key)
        self.paths.append(os.path.join(self.directory, f"{len(self.paths) + 1:06d}.sst"))
        writer = self.engine.sst_writer(self.paths[-1], sequence=self.sequence)
        self._open = writer
        put_many = getattr(writer, "put_many", None)
        self._put_many = put_many if put_many is not None else (lambda ks, vs: [*map(writer.put, ks, vs)])
        self._size = 0

    def _finish(self, end: bytes | None) -> None:
        """Close the open file; with ``clear``, it clears the range from where the last file stopped to ``end``."""
        current, self._open = self._open, None
        try:
            if self.clear is not None and self._cleared_to < end:
                current.delete_range(self._cleared_to, end)
                self._cleared_to = end
        except BaseException:
            current.abandon()
            raise
        current.close()

    def ingest(self) -> dict | None:
        """Finish the last file and ingest every file in one call (all or nothing). None when no
        entry was added (nothing is ingested, not even ``clear``)."""
        if self._open is None:
            return None
        self._finish(self.clear[1] if self.clear is not None else None)
        return self.engine.ingest(self.paths)


# ================================================================== external sort

class ExternalSorter:
    """Sorts ``(key, value)`` pairs of bytes within ``budget`` bytes of memory (see the module docstring).

    ``add`` them in any order, then iterate ``merged()`` once: every pair, ascending
    (by key, then value). Runs are spilled to files in ``directory`` (the caller removes
    it). ``count`` is the pairs added, ``peak_bytes``/``peak_entries`` the most one run
    held (estimated bytes, pairs), ``spilled`` the run files written.
    """

    def __init__(self, directory: str, budget: int):
        self.directory = directory
        self.budget = budget
        self.runs: list[str] = []
        self.spilled = 0
        self.peak_bytes = 0
        self.peak_entries = 0
        self._buffer: list[tuple[bytes, bytes]] = []
        self._bytes = 0
        self._done = 0           # pairs in the runs

    @property
    def count(self) -> int:
        return self._done + len(self._buffer)

    def add(self, key: bytes, value: bytes) -> None:
        cost = ENTRY_OVERHEAD + len(key) + (len(value) + VALUE_OVERHEAD if value else 0)
        if self._bytes + cost > self.budget and self._buffer:
            self._spill()
        self._buffer.append((key, value))
        self._bytes += cost

    def _note_peak(self) -> None:
        if self._bytes > self.peak_bytes:
            self.peak_bytes = self._bytes
            self.peak_entries = len(self._buffer)

    def _spill(self) -> None:
        self._note_peak()
        self._buffer.sort()
        self.runs.append(self._write_run(self._buffer))
        self._done += len(self._buffer)
        self._buffer = []
        self._bytes = 0

    def _write_run(self, pairs: Iterable[tuple[bytes, bytes]]) -> str:
        path = os.path.join(self.directory, f"run-{self.spilled + 1:06d}")
        self.spilled += 1
        pack = _ENTRY.pack
        try:
            with open(path, "wb") as f:
                it = iter(pairs)
                while True:
                    chunk = list(islice(it, SLICE))
                    if not chunk:
                        break
                    f.write(b"".join([b for k, v in chunk for b in (pack(len(k), len(v)), k, v)]))
        except OSError as exc:
            raise StorageIOError(f"cannot write the sort run {path}: {exc.strerror or exc}", path=path,
                                 errno=exc.errno) from exc
        return path

    def merged(self) -> Iterator[tuple[bytes, bytes]]:
        """Every pair added, ascending: the sorted buffer when nothing was spilled; otherwise the
        buffer is spilled too (the merge then holds no run in memory beside what it writes), and
        the runs are merged, in passes of ``MERGE_FANIN`` first if there are more."""
        if not self.runs:
            self._note_peak()
            buffer, self._buffer = self._buffer, []
            self._done += len(buffer)
            self._bytes = 0
            buffer.sort()
            yield from buffer
            return
        if self._buffer:
            self._spill()
        while len(self.runs) > MERGE_FANIN:
            group, self.runs = self.runs[:MERGE_FANIN], self.runs[MERGE_FANIN:]
            self.runs.append(self._write_run(heapq.merge(*map(_read_run, group))))
            for path in group:
                os.remove(path)
        yield from heapq.merge(*map(_read_run, self.runs))


def _read_run(path: str) -> Iterator[tuple[bytes, bytes]]:
    """The pairs of a run file, read ``READ_BYTES`` at a time."""
    unpack = _ENTRY.unpack_from
    head = _ENTRY.size
    try:
        with open(path, "rb") as f:
            buf, pos = b"", 0
            while True:
                chunk = f.read(READ_BYTES)
                if not chunk:
                    break
                buf = buf[pos:] + chunk
                pos, n = 0, len(buf)
                while pos + head <= n:
                    klen, vlen = unpack(buf, pos)
                    k = pos + head
                    end = k + klen + vlen
                    if end > n:
                        break
                    yield buf[k:k + klen], buf[k + klen:end]
                    pos = end
            if pos != len(buf):
                raise CorruptionError(f"sort run {path} ends inside an entry", file=path, offset=pos)
    except OSError as exc:
        raise StorageIOError(f"cannot read the sort run {path}: {exc.strerror or exc}", path=path,
                             errno=exc.errno) from exc


def run_budget(engine) -> int:
    """The memory one sort run may take: half the engine's ``memtable_bytes`` (at least 1 MiB), at most
    ``RUN_BYTES``."""
    memtable = getattr(getattr(engine, "options", None), "memtable_bytes", None)
    if isinstance(memtable, int) and memtable > 0:
        return min(RUN_BYTES, max(1 << 20, memtable // 2))
    return RUN_BYTES


# ================================================================== CREATE INDEX

def index_entries(session, table, iw, rows: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes, bool]]:
    """``(key, value, checks uniqueness)`` of the entry of ``iw`` (an ``IndexWriter`` of ``table``) for
    each stored row ``(key, value)`` of ``table``: ``IndexWriter.entry``, the bytes an INSERT writes."""
    decode = RowDecoder(table, Planner(session.current_catalog(), Runtime(session), {})._defaults(table)).make()
    entry = iw.entry
    plen = len(table.row_prefix)
    for key, value in rows:
        yield entry(decode(key, value), key[plen:])


def build_index(session, table, index) -> int:
    """Write the entries of ``index`` (a new index of ``table``, not yet in the catalog) for every row
    as SSTables and ingest them (see the module docstring). Returns the entries ingested; 0 when the
    table has no rows (nothing is ingested). IntegrityError on a UNIQUE violation, with nothing ingested.

    REQUIRES: ``can_ingest_files(session)``; the caller then commits the catalog record naming the index.
    """
    engine = session.engine
    start, end = table.row_range
    iw = IndexWriter(table, index)
    with work_directory(session, "index-") as tmp:
        sorter = ExternalSorter(tmp, run_budget(engine))
        add = sorter.add
        # the transaction's snapshot, or (autocommit: it reads the latest state) one of our own for the scan
        own = engine.snapshot() if session.snapshot is None else None
        try:
            for key, value, _checks in index_entries(session, table, iw,
                                                     engine.scan(start, end, snapshot=own or session.snapshot)):
                add(key, value)
        finally:
            if own is not None:
                own.close()
        if not sorter.count:
            return 0
        merged = sorter.merged()
        unique = index.unique
        last = None
        with IngestWriter(engine, tmp, clear=keys.index_range(table.id, index.id)) as out:
            while True:
                chunk = list(islice(merged, SLICE))
                if not chunk:
                    break
                ks = [k for k, _v in chunk]
                if unique and (ks[0] == last or any(map(operator.eq, ks, islice(ks, 1, None)))):
                    raise IntegrityError(f"UNIQUE constraint failed: {iw.label}")
                last = ks[-1]
                out.put_many(ks, [v for _k, v in chunk])
            out.ingest()
        return out.entries
