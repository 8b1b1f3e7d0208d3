"""The LSM engine: WAL, memtables, SSTables in levels, flush and compaction in the background.

Write path: ``write`` encodes a batch as one WAL record, appends it and applies it
to the active memtables under one write lock; an fsync, when asked for, is
shared by every writer waiting for one (group commit). Its sequence numbers are
then published (``_visible_seq``): at once for an unsynced write (or one synced
in the lock, sync_mode "commit"), after the fsync returned for a group commit.
A write is never visible before it is durable if it asked to be; after a failed
fsync nothing more is published and writes are refused until a reopen (the
failed ones stay in the memtables, above every reader's sequence, and the
visible sequence counts as a snapshot for flush and compaction, so the versions
readers see are kept). When the active memtables outgrow ``memtable_bytes`` they are
frozen together with the WAL segment that holds them, a new segment starts,
and the flush thread turns each family's memtable into an L0 SSTable, records
that in the MANIFEST and deletes the old segment. At most one frozen set waits
for flushing; a writer that finds one already waiting stalls until it is done.

Read path: a reader takes the published sequence number first and then the
*super version* (active memtables, frozen memtables, Version) in one reference,
so it sees every write up to its sequence and nothing newer.

Bulk ingestion: ``reserve_sequence``, ``sst_writer`` and ``ingest`` add SSTables
built outside the write path, whole, in one MANIFEST edit (see ``ingest.py``).

Backup support: ``backup_view`` (a consistent set of SSTables plus sealed WAL segments, pinned
while writers go on), ``seal_wal``/``wal_segments``/``hold_wal`` (for a WAL archiver), and
``assemble`` (a database directory from backed-up files); ``tabledb.backup`` builds on them.

Files: ``<dir>/CURRENT``, ``MANIFEST-n``, ``n.log`` (WAL), ``n.sst``, ``LOCK``; while a WAL
archive holds segments, ``w-n.ingest`` (hard links to ingested tables, see ``ingest_links``).
"""

from __future__ import annotations

import collections
import heapq
import logging
import operator
import os
import threading
import time
from bisect import insort
from dataclasses import dataclass, fields
from itertools import chain, islice

from sortedcontainers import SortedList

from tabledb.errors import (ClosedError, CorruptionError, Error, InvalidArgumentError, InvalidTypeError,
                            OperationalError, StorageIOError)
from tabledb.storage import compaction as compaction_mod
from tabledb.storage import dbformat
from tabledb.storage import ingest as ingest_mod
from tabledb.storage.batch import (INGEST_OP, ColumnFamily, WriteBatch, check_key, check_range, decode_batch,
                                   encode_batch, ingest_ops)
from tabledb.storage.cache import BlockCache, TableCache
from tabledb.storage.dbformat import KIND_DELETE, KIND_INGEST, KIND_PUT, KIND_RANGE_DELETE, KIND_RESERVE
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.log import FILE_HEADER, HEADER_SIZE, MANIFEST_MAGIC, WAL_MAGIC, LogWriter, read_log, read_log_reader
from tabledb.storage.memtable import MemTable
from tabledb.storage.rangedel import RangeTombstones, visible_max_fragments
from tabledb.storage.snapshot import Snapshot, snapshot_sequence
from tabledb.storage.sstable import SSTableWriter
from tabledb.storage.version import FileMeta, Version, VersionEdit, VersionSet, new_db_id

log = logging.getLogger("tabledb.storage")

SYNC_MODES = ("group", "commit", "off")
EMPTY_LOG_BYTES = HEADER_SIZE + FILE_HEADER.size   # a log file holding only its header record
# Other names people use for the same modes (RocksDB's and SQLite's vocabulary).
SYNC_MODE_ALIASES = {"every": "commit", "always": "commit", "full": "commit", "sync": "commit",
                     "group_commit": "group", "none": "off", "never": "off", "no": "off"}


WAL_PREALLOCATE_BYTES = 1 << 20   # WAL space reserved ahead of the writes (see fs.OSWritableFile)


def _wal_has_records(fs, path: str) -> bool:
    """True when the WAL segment at ``path`` holds more than its header record. Its size cannot
    tell: a segment left by a crash ends in the zeros preallocated ahead of its writes."""
    if fs.file_size(path) <= EMPTY_LOG_BYTES:
        return False
    try:
        records, _torn, _header = read_log(fs, path, magic=WAL_MAGIC)
    except CorruptionError:
        return True
    return bool(records)


@dataclass
class Options:
    """Engine options; ``Engine.open(path, **options)`` takes any of these by name."""

    sync_mode: str = "group"            # "group": fsync each commit, one fsync shared by concurrent writers;
                                        # "commit": one fsync per commit; "off": no fsync unless sync=True
    memtable_bytes: int = 64 << 20      # active memtables (all families) above this are frozen and flushed
    block_cache_bytes: int = 32 << 20
    block_cache_admit_every: int = 4    # once the block cache is full, admit one new block in N:
                                        # an eviction costs about what a hit saves (see cache.py)
    max_open_files: int = 500
    block_size: int = 4096
    bloom_bits_per_key: int = 10
    compression: str | None = None      # None or "zlib"
    target_file_bytes: int = 64 << 20
    l0_compaction_trigger: int = 4
    l0_slowdown_trigger: int = 12
    l0_stop_trigger: int = 20
    level1_bytes: int = 256 << 20
    level_multiplier: int = 10
    num_levels: int = 7
    background: bool = True             # False: flush and compaction run inline in the writer (tests)
    fs: object = None                   # the filesystem layer (tabledb.storage.fs.FileSystem)

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "Options":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise InvalidArgumentError(f"unknown engine option(s): {', '.join(unknown)}")
        opts = cls(**kwargs)
        if isinstance(opts.sync_mode, str):
            opts.sync_mode = SYNC_MODE_ALIASES.get(opts.sync_mode.lower(), opts.sync_mode.lower())
        if opts.sync_mode not in SYNC_MODES:
            raise InvalidArgumentError(f"sync_mode must be one of {SYNC_MODES}, not {opts.sync_mode!r}")
        if opts.compression not in (None, "zlib"):
            raise InvalidArgumentError(f"compression must be None or 'zlib', not {opts.compression!r}")
        for name in ("memtable_bytes", "block_size", "target_file_bytes", "l0_compaction_trigger",
                     "level1_bytes", "max_open_files", "block_cache_admit_every"):
            value = getattr(opts, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(opts.num_levels, int) or opts.num_levels < 2:
            raise InvalidArgumentError("num_levels must be at least 2")
        if opts.level_multiplier < 2:
            raise InvalidArgumentError("level_multiplier must be at least 2")
        opts.l0_slowdown_trigger = max(opts.l0_slowdown_trigger, opts.l0_compaction_trigger)
        opts.l0_stop_trigger = max(opts.l0_stop_trigger, opts.l0_slowdown_trigger)
        return opts


class _Frozen:
    """Memtables frozen together with the WAL segment that holds them.

    ``version`` is the Version the flush of these memtables installed (set by the flush;
    ``backup_view`` waits for it: it holds every write up to the freeze and none after).
    """

    __slots__ = ("mems", "wal_number", "wal", "next_wal_number", "version")

    def __init__(self, mems, wal_number, wal, next_wal_number):
        self.mems = mems
        self.wal_number = wal_number
        self.wal = wal
        self.next_wal_number = next_wal_number
        self.version = None


@dataclass(frozen=True)
class BackupFile:
    """One SSTable of a :class:`BackupView`. ``row`` is its MANIFEST "add" row (docs/format.md)."""

    cf_id: int
    level: int
    number: int
    size: int
    path: str
    row: list


class BackupView:
    """A consistent, pinned description of the database for a backup (``Engine.backup_view``).

    Every write with a sequence <= ``sequence`` is in ``files``, and no later one.
    While the view is open its files stay on disk (it holds their Version) and
    ``snapshot`` reads the database as of ``sequence``. Close it with ``release()``
    or a ``with`` block.

    ``point_time_us``: the wall clock (microseconds since 1970, UTC) when the view was cut;
    every write in it committed at or before this instant, every later write after it.
    ``commit_time_us``: the commit time of the newest write in it (None if unknown).
    ``wal_next``: the WAL segment that the first write after ``sequence`` went (or goes)
    to: segments numbered below it hold only writes <= ``sequence``.
    ``wal_files``: ``[(number, path)]``, sealed WAL segments holding the writes up to ``sequence``
    that are not in ``files`` (replay them, in order, over the files); pinned like the files.
    ``column_families``: {cf_id: name}; ``next_file``: the file number counter at the cut.
    """

    def __init__(self, engine, *, sequence, point_time_us, commit_time_us, version, column_families,
                 next_file, wal_next, snapshot, wal_files=(), wal_pin=None):
        self.sequence = sequence
        self.point_time_us = point_time_us
        self.commit_time_us = commit_time_us
        self.db_id = engine.db_id
        self.epoch = engine.epoch
        self.column_families = column_families
        self.next_file = next_file
        self.wal_next = wal_next
        self.snapshot = snapshot
        self.wal_files = list(wal_files)
        self._engine = engine
        self._wal_pin = wal_pin
        self._version = version
        files = []
        for cf_id, levels in version.cfs.items():
            if cf_id not in column_families:
                continue
            for level in range(len(levels)):
                for f in version.level_files(cf_id, level):
                    files.append(BackupFile(cf_id, level, f.number, f.size,
                                            os.path.join(engine.path, dbformat.table_file_name(f.number)),
                                            f.to_json(cf_id, level)))
        self.files = files

    def release(self) -> None:
        """Let the files go (compaction may delete them) and close the snapshot. Idempotent."""
        self._version = None
        if self._wal_pin is not None:
            pin, self._wal_pin = self._wal_pin, None
            self._engine._release_wal_pin(pin)
        if self.snapshot is not None:
            self.snapshot.close()

    def __enter__(self) -> "BackupView":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _SuperVersion:
    __slots__ = ("mems", "imms", "version", "l0_files")

    def __init__(self, mems, imms, version):
        self.mems = mems          # cf_id -> MemTable (active)
        self.imms = imms          # tuple of cf_id -> MemTable dicts, newest first
        self.version = version
        self.l0_files = max((len(levels[0]) for levels in version.cfs.values()), default=0)


def _unhidden_ranges(tombs: RangeTombstones, newest_seq: int, start, end) -> list:
    """Sub-ranges of [start, end) not hidden from a source whose entries are all <= ``newest_seq``.

    ``tombs`` holds one (the newest visible) sequence per fragment, as built by
    ``visible_max_fragments``; a fragment with a newer sequence hides all of the source there.
    """
    ranges = []
    lo = start
    starts, seqs = tombs._starts, tombs._seqs
    for i in range(len(starts) - 1):
        piece = seqs[i]
        if not piece or piece[0] <= newest_seq:
            continue
        s, e = starts[i], starts[i + 1]
        if lo is None or s > lo:
            ranges.append((lo, s))
        if lo is None or e > lo:
            lo = e
    if end is None or lo is None or lo < end:
        ranges.append((lo, end))
    return [(a, b) for a, b in ranges if a is None or b is None or a < b]


class Engine:
    """An LSM key-value store in one directory. Thread-safe; one process at a time.

    See docs/engine-api.md for the contract every method keeps.
    """

    # ------------------------------------------------------------------ open / close
    def __init__(self, path: str, opts: Options, fs):
        self.path = path
        self.options = opts
        self.fs = fs
        self._closed = False
        self._bg_error: Exception | None = None
        self._write_lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._sv_lock = threading.Lock()
        self._bg_cv = threading.Condition(threading.Lock())
        self._compaction_lock = threading.Lock()
        self._snapshots = SortedList()
        self._snap_lock = threading.Lock()
        self._snaps_dropped: collections.deque = collections.deque()   # see _release_snapshot_soon
        self._pending_outputs: set[int] = set()
        self._tombstone_sets: dict[int, RangeTombstones] = {}
        self._busy_files: set[int] = set()
        self._wal_pins: list[int] = []   # WAL segments numbered >= a pin stay on disk (open backup views)
        self._compact_pointers: dict = {}
        self._imms: list[_Frozen] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._compaction_wanted = False
        self._wal_gen = 0
        self._synced_upto = (0, 0)
        # _last_seq: the last sequence handed out and applied to the memtables; _visible_seq: the
        # last one readers see. A write waiting for its group-commit fsync lies between the two.
        self._last_seq = self._visible_seq = 0
        self._last_commit_us: int | None = None   # commit time of the newest write (None: unknown)
        self._stats = {"wal_torn_tail_bytes": 0, "wal_torn_tail_files": [], "flushes": 0, "compactions": 0,
                       "trivial_moves": 0, "files_dropped_by_tombstone": 0, "stall_seconds": 0.0,
                       "slowdowns": 0, "bytes_written": 0, "bytes_compacted": 0, "wal_syncs": 0,
                       "recovered_records": 0, "recovered_ingests": 0, "ingested_files": 0, "ingested_bytes": 0,
                       "wal_abandoned_files": [], "wal_sealed": 0, "manifest_orphaned_files": []}
        self.block_cache = BlockCache(opts.block_cache_bytes, opts.block_cache_admit_every)
        self.table_cache = TableCache(fs, path, opts.max_open_files, self.block_cache)
        self.versions = VersionSet(fs, path, opts.num_levels)
        self._lock_file = None

    @classmethod
    def open(cls, path, create: bool = True, **options) -> "Engine":
        """Open (or with ``create``, create) the database in directory ``path``."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidTypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        path = os.fspath(path)
        opts = Options.from_kwargs(options)
        fs = opts.fs or DEFAULT_FS
        if not fs.exists(path):
            if not create:
                raise InvalidArgumentError(f"database {path} does not exist (create=False)")
            fs.makedirs(path)
            parent = os.path.dirname(os.path.abspath(path))
            fs.sync_dir(parent)
        elif not os.path.isdir(path):
            raise InvalidArgumentError(f"{path} is not a directory")
        engine = cls(path, opts, fs)
        engine._lock_file = fs.lock(os.path.join(path, dbformat.LOCK))
        try:
            engine._recover(create)
        except BaseException:
            engine._lock_file.release()
            engine.table_cache.close()
            engine.versions.close()
            raise
        if opts.background:
            engine._start_threads()
        return engine

    def _recover(self, create: bool) -> None:
        fs, path = self.fs, self.path
        if fs.exists(os.path.join(path, dbformat.CURRENT)):
            self.versions.recover()
        else:
            if not create:
                raise InvalidArgumentError(f"{path} holds no database (create=False)")
            self._check_no_orphaned_data()
            self.versions.create_new()
        self._cf_names = dict(self.versions.cf_names)
        mems = {cf_id: MemTable() for cf_id in self._cf_names}
        present = list(self._engine_files())
        # A file made after the MANIFEST last recorded next_file (a WAL segment started just
        # before a crash, say) must never have its number handed out again.
        self.versions.next_file = max([self.versions.next_file] + [n + 1 for _, n in present])
        # Replay every WAL segment the MANIFEST does not cover, oldest first.
        logs = sorted(n for kind, n in present if kind == "log" and n >= self.versions.log_number)
        last_seq = manifest_seq = self.versions.last_sequence
        recovered: list = []     # (cf_id, FileMeta) of level-0 tables written when the memtables filled up
        headerless: list[str] = []   # segments of zeros from the first byte: removed once recovery is done
        for i, number in enumerate(logs):
            wal_path = os.path.join(path, dbformat.wal_file_name(number))
            records, reader = read_log_reader(fs, wal_path, magic=WAL_MAGIC)
            torn, header = reader.torn_bytes, reader.header
            if header is None and not records and not torn:
                # Preallocated, then a crash before its header reached the disk: it holds no record,
                # for this replay or for a WAL archive (which would otherwise keep it held).
                headerless.append(wal_path)
                continue
            if header is not None and header[3] != self.versions.epoch:
                # A segment of another epoch is history this database abandoned (a restore started a
                # new epoch): never replay it. Renamed, not deleted, so nothing is lost by mistake.
                fs.rename(wal_path, wal_path + ".abandoned")
                self._stats["wal_abandoned_files"].append(wal_path)
                continue
            if torn:
                if i != len(logs) - 1 and any(
                        _wal_has_records(fs, os.path.join(path, dbformat.wal_file_name(n)))
                        for n in logs[i + 1:]):
                    raise CorruptionError("WAL segment ends in a damaged record but later segments follow",
                                          file=wal_path, offset=reader.torn_offset)
                self._stats["wal_torn_tail_bytes"] += torn
                self._stats["wal_torn_tail_files"].append(wal_path)
            budget = self.options.memtable_bytes
            since_check = 0
            for offset, payload in records:
                # Every record of a segment at or above log_number is unflushed: a flush records the
                # next segment's number. (The MANIFEST's last_sequence may lie above them: it also
                # holds sequences reserved for ingestion, so it says nothing about what is in tables.)
                first, commit_us, ops = decode_batch(payload, file=wal_path, offset=offset)
                seq = first
                if ops and ops[0][0] > KIND_RANGE_DELETE:
                    # A reserve or ingest record: nothing for a memtable. An ingest whose MANIFEST
                    # edit never landed (a crash between the two) is finished here.
                    seq += len(ops)
                    if ops[0][0] == KIND_INGEST and first > manifest_seq and self._recover_ingest(
                            number, ops, seq - 1, mems, recovered):
                        mems = {cf_id: MemTable() for cf_id in self._cf_names}
                for kind, cf_id, key, value in ops if seq == first else ():
                    mem = mems.get(cf_id)
                    if mem is not None:
                        mem.add(seq, kind, key, value)
                    seq += 1
                last_seq = max(last_seq, seq - 1)
                self._last_commit_us = commit_us
                self._stats["recovered_records"] += 1
                since_check += len(payload)
                if since_check >= budget >> 3 and sum(m.approximate_bytes for m in mems.values()) >= budget:
                    # A long WAL (a restore replays one) must not hold everything in memory at once.
                    for cf_id, mem in mems.items():
                        if not mem.empty:
                            recovered.append((cf_id, self._write_level0(cf_id, mem)))
                    mems = {cf_id: MemTable() for cf_id in self._cf_names}
                if since_check >= budget >> 3:
                    since_check = 0
        self._last_seq = self._visible_seq = last_seq
        # A fresh WAL segment; the recovered memtables go straight to L0 so old segments can go.
        self._wal_number = self.versions.new_file_number()
        self._wal = self._new_wal(self._wal_number)
        edit = VersionEdit(log_number=self._wal_number, last_sequence=last_seq)
        edit.add.extend((cf_id, 0, meta) for cf_id, meta in recovered)
        for cf_id, mem in mems.items():
            if not mem.empty:
                edit.add.append((cf_id, 0, self._write_level0(cf_id, mem)))
        self.versions.log_and_apply(edit)
        for wal_path in headerless:
            fs.remove(wal_path)
        self._pending_outputs.clear()
        self._mems = {cf_id: MemTable() for cf_id in self._cf_names}
        self._publish()
        if self.versions.torn_tail is not None:
            self._set_aside_unlisted_tables()
        self._delete_obsolete_files()

    def _set_aside_unlisted_tables(self) -> None:
        """Recovery dropped the MANIFEST's incomplete last edit (version.py): rename each table the
        recovered version does not list to ``NNNNNN.sst.orphan`` rather than delete it as obsolete.
        Most are outputs of the flush or compaction that edit recorded (their data is also in the
        WAL or in the inputs), but nothing proves that a table is not the only copy of its data."""
        live = {f.number for f in self.versions.current.all_files()}
        for kind, number in list(self._engine_files()):
            if kind == "sst" and number not in live:
                name = os.path.join(self.path, dbformat.table_file_name(number))
                self.fs.rename(name, name + ".orphan")
                self._stats["manifest_orphaned_files"].append(name + ".orphan")
        if self._stats["manifest_orphaned_files"]:
            self.fs.sync_dir(self.path)

    def _recover_ingest(self, wal_number: int, ops, last: int, mems, recovered: list) -> bool:
        """Recovery of an ingest record the MANIFEST does not know (its edit never landed): add
        its tables at level 0, above what was replayed before it, and return True (``mems``
        went to ``recovered``). The record was logged after its tables were durable under
        their final names, so they are there; if one is not (or has another size, or its
        column family is gone), the ingest is void and the record is skipped (False).
        """
        files = []
        for cf_id, number, _seq, size, _crc in ingest_ops(ops):
            path = os.path.join(self.path, dbformat.table_file_name(number))
            if cf_id not in self._cf_names or not self.fs.exists(path) or self.fs.file_size(path) != size:
                log.warning("%s: ingest record of table %d skipped: the table is not there", self.path, number)
                return False
            files.append((cf_id, number, path))
        for cf_id, mem in mems.items():
            if not mem.empty:
                recovered.append((cf_id, self._write_level0(cf_id, mem)))
        for cf_id, number, path in files:
            recovered.append((cf_id, ingest_mod.inspect_external_file(self.fs, path).file_meta(number, last)))
        if self.versions.wal_hold and wal_number >= self.versions.wal_hold:
            self._link_for_archive(wal_number, [number for _, number, _ in files])
        self._stats["recovered_ingests"] += 1
        return True

    def _check_no_orphaned_data(self) -> None:
        """Refuse to start afresh over data: CURRENT is gone but tables or WAL records remain.

        (A MANIFEST alone, or a WAL holding only its header, is what an interrupted
        creation leaves behind, and is overwritten.)
        """
        for kind, number in self._engine_files():
            name = dbformat.table_file_name(number) if kind == "sst" else dbformat.wal_file_name(number)
            if kind == "sst" or (kind == "log" and _wal_has_records(self.fs, os.path.join(self.path, name))):
                raise CorruptionError(f"CURRENT is missing, but the directory holds database files ({name})",
                                      file=os.path.join(self.path, dbformat.CURRENT), offset=0)

    def _engine_files(self):
        for name in self.fs.listdir(self.path):
            parsed = dbformat.parse_file_name(name)
            if parsed is not None:
                yield parsed

    def _new_wal(self, number: int) -> LogWriter:
        f = self.fs.open_writable(os.path.join(self.path, dbformat.wal_file_name(number)))
        preallocate = getattr(f, "preallocate", None)
        if preallocate is not None:
            preallocate(WAL_PREALLOCATE_BYTES)   # synced commits then rewrite allocated space only
        writer = LogWriter(f, magic=WAL_MAGIC, file_number=number, epoch=self.versions.epoch)
        writer.sync()
        self.fs.sync_dir(self.path)
        return writer

    def _start_threads(self) -> None:
        for target, name in ((self._flush_loop, "tabledb-flush"), (self._compaction_loop, "tabledb-compaction")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop background work, make the WAL durable and release the directory. Idempotent."""
        if self._closed:
            return
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        with self._bg_cv:
            self._stop = True
            self._bg_cv.notify_all()
        for t in self._threads:
            t.join()
        errors = []
        try:
            with self._write_lock:
                self._wal.sync()
                self._wal.close()
        except Error as exc:
            errors.append(exc)
        for imm in self._imms:
            try:
                if imm.wal is not None:
                    imm.wal.close()
            except Error:
                pass
        self.versions.close()
        self.table_cache.close()
        if self._lock_file is not None:
            self._lock_file.release()
        if errors:
            raise errors[0]

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the engine is closed")

    # ------------------------------------------------------------------ column families
    def _cf_id(self, cf) -> int:
        if cf is None:
            return 0
        if not isinstance(cf, ColumnFamily):
            raise InvalidTypeError(f"cf must be a ColumnFamily handle or None, not {type(cf).__name__}")
        if self._cf_names.get(cf.id) != cf.name:
            raise InvalidArgumentError(f"unknown column family {cf.name!r} (dropped, or from another database)")
        return cf.id

    def create_column_family(self, name: str) -> ColumnFamily:
        self._check_open()
        if not isinstance(name, str):
            raise InvalidTypeError(f"column family name must be a str, not {type(name).__name__}")
        if not name:
            raise InvalidArgumentError("column family name must not be empty")
        with self._write_lock:
            self._check_open()
            if name in self._cf_names.values():
                raise InvalidArgumentError(f"column family {name!r} already exists")
            cf_id = self.versions.new_file_number()
            edit = VersionEdit(cf_add=[(cf_id, name)])
            self.versions.log_and_apply(edit)
            names = dict(self._cf_names)
            names[cf_id] = name
            self._cf_names = names
            mems = dict(self._mems)
            mems[cf_id] = MemTable()
            self._mems = mems
            self._publish()
        return ColumnFamily(name, cf_id)

    def get_column_family(self, name: str) -> ColumnFamily:
        self._check_open()
        for cf_id, cf_name in self._cf_names.items():
            if cf_name == name:
                return ColumnFamily(name, cf_id)
        raise InvalidArgumentError(f"unknown column family {name!r}")

    def list_column_families(self) -> list[str]:
        self._check_open()
        return [self._cf_names[i] for i in sorted(self._cf_names)]

    def drop_column_family(self, cf) -> None:
        self._check_open()
        if isinstance(cf, str):
            cf = self.get_column_family(cf)
        cf_id = self._cf_id(cf)
        if cf_id == 0:
            raise InvalidArgumentError("the default column family cannot be dropped")
        with self._write_lock:
            self._check_open()
            self.versions.log_and_apply(VersionEdit(cf_drop=[cf_id]))
            names = dict(self._cf_names)
            del names[cf_id]
            self._cf_names = names
            mems = dict(self._mems)
            del mems[cf_id]
            self._mems = mems
            self._publish()
        self._delete_obsolete_files()

    # ------------------------------------------------------------------ writes
    def put(self, key, value, cf=None, sync=None) -> int:
        key = check_key(key)
        value = check_key(value, "value")
        return self._write(((KIND_PUT, self._cf_id(cf), key, value),), sync)

    def delete(self, key, cf=None, sync=None) -> int:
        key = check_key(key)
        return self._write(((KIND_DELETE, self._cf_id(cf), key, b""),), sync)

    def delete_range(self, start, end, cf=None, sync=None) -> int:
        start, end = check_range(start, end)
        cf_id = self._cf_id(cf)
        if start == end:
            self._check_open()
            return self._last_seq
        return self._write(((KIND_RANGE_DELETE, cf_id, start, end),), sync)

    def write(self, batch: WriteBatch, sync=None) -> int:
        """Apply ``batch`` atomically; returns the sequence number of its last operation."""
        if not isinstance(batch, WriteBatch):
            raise InvalidTypeError(f"write() takes a WriteBatch, not {type(batch).__name__}")
        cf_id = self._cf_id
        ops = [(kind, cf_id(cf), key, value) for kind, cf, key, value in batch.ops]
        if not ops:
            self._check_open()
            return self._last_seq
        return self._write(ops, sync)

    def _write(self, ops, sync) -> int:
        mode = self.options.sync_mode
        do_sync = (mode != "off") if sync is None else bool(sync)
        with self._write_lock:
            if self._closed:
                raise ClosedError("the engine is closed")
            if self._bg_error is not None:
                raise OperationalError(f"the engine stopped accepting writes after an error: {self._bg_error}")
            self._make_room()
            first = self._last_seq + 1
            now_us = time.time_ns() // 1000
            payload = encode_batch(first, now_us, ops)
            wal = self._wal
            try:
                wal.add_record(payload)
                if do_sync and mode != "group":
                    wal.sync()
                    self._stats["wal_syncs"] += 1
                else:
                    wal.flush()
            except StorageIOError as exc:
                self._bg_error = exc
                raise
            mems = self._mems
            seq = first
            for kind, cf_id, key, value in ops:
                mems[cf_id].add(seq, kind, key, value)
                seq += 1
            self._last_seq = seq - 1
            self._last_commit_us = now_us
            if (do_sync and mode == "group") or self._visible_seq != first - 1:
                # Readers see it once its group-commit fsync returned (_group_sync publishes it);
                # an unsynced write behind writes still waiting for theirs waits with them.
                target = (self._wal_gen, wal.file.size())
            else:
                self._visible_seq = seq - 1
                target = None
        if target is not None:
            self._group_sync(target)
        return seq - 1

    def _group_sync(self, target) -> None:
        """Make the WAL durable up to ``target`` ((generation, offset)), then visible to readers;
        one fsync serves every waiter.

        After a failed fsync nothing more becomes visible and this raises for every write it did
        not cover: their bytes may be gone from the page cache, and a later fsync that succeeds
        proves nothing about them. The writes stay in the memtables, above the visible sequence.
        (Any error that stopped the engine, a background one too, counts: the cause may have
        been the WAL's, and writers still waiting fail rather than guess.)
        """
        with self._sync_lock:
            if self._synced_upto >= target:
                return
            if self._bg_error is not None:
                raise OperationalError(f"the write is not durable: the WAL failed: {self._bg_error}")
            with self._write_lock:
                wal = self._wal
                reached = (self._wal_gen, wal.file.size())
                reached_seq = self._last_seq
                try:
                    wal.flush()
                except StorageIOError as exc:
                    self._bg_error = exc
                    raise
            try:
                wal.sync()
            except StorageIOError as exc:
                self._bg_error = exc
                raise
            except ValueError:
                pass  # the segment was rotated and closed; rotation synced it
            self._stats["wal_syncs"] += 1
            with self._write_lock:
                if reached_seq > self._visible_seq:
                    self._visible_seq = reached_seq
            if reached > self._synced_upto:
                self._synced_upto = reached

    def _make_room(self) -> None:
        """REQUIRES: the write lock. Freeze full memtables; slow down or stall while L0 piles up."""
        opts = self.options
        total = 0
        for mem in self._mems.values():
            total += mem.approximate_bytes
        if total >= opts.memtable_bytes:
            if not opts.background:
                self._freeze()
                self._flush_all_inline()
                self._compact_inline()
                return
            if self._imms:
                t0 = time.monotonic()
                with self._bg_cv:
                    while self._imms and self._bg_error is None and not self._stop:
                        self._bg_cv.wait(0.1)
                self._stats["stall_seconds"] += time.monotonic() - t0
                if self._bg_error is not None:
                    raise OperationalError(f"background flush failed: {self._bg_error}")
            self._freeze()
            return
        if not opts.background:
            return
        l0 = self._sv.l0_files
        if l0 >= opts.l0_slowdown_trigger:
            t0 = time.monotonic()
            if l0 >= opts.l0_stop_trigger:
                with self._bg_cv:
                    self._compaction_wanted = True
                    self._bg_cv.notify_all()
                    while self._sv.l0_files >= opts.l0_stop_trigger and self._bg_error is None and not self._stop:
                        self._bg_cv.wait(0.1)
            else:
                self._stats["slowdowns"] += 1
                time.sleep(0.001)
            self._stats["stall_seconds"] += time.monotonic() - t0

    def _freeze(self) -> None:
        """REQUIRES: the write lock. Freeze the active memtables and start a new WAL segment."""
        if all(m.empty for m in self._mems.values()):
            return
        new_number = self.versions.new_file_number()
        new_wal = self._new_wal(new_number)
        old = self._wal
        try:
            self._sync_and_publish(old)  # an older segment is always whole on disk: only the newest may have a torn tail
        except BaseException:
            # The engine stops taking writes (_bg_error); let go of the new segment's handle. Its
            # file holds a header and no record, harmless to the next open's replay.
            try:
                new_wal.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        frozen = _Frozen(self._mems, self._wal_number, old, new_number)
        self._synced_upto = (self._wal_gen, old.file.size())
        self._wal_gen += 1
        self._wal = new_wal
        self._wal_number = new_number
        self._mems = {cf_id: MemTable() for cf_id in self._cf_names}
        with self._bg_cv:
            self._imms.insert(0, frozen)
            self._publish()
            self._bg_cv.notify_all()

    def _sync_and_publish(self, wal: LogWriter) -> None:
        """REQUIRES: the write lock. Sync ``wal``, the active segment or the one being sealed: every
        write is then durable, so make them all visible (unless an earlier WAL failure stopped that
        for good)."""
        try:
            wal.sync()
        except StorageIOError as exc:
            self._bg_error = exc
            raise
        if self._bg_error is None:
            self._visible_seq = self._last_seq

    def _publish(self) -> None:
        """Install a new super version from the current memtables and Version."""
        with self._sv_lock:
            self._sv = _SuperVersion(self._mems, tuple(f.mems for f in self._imms), self.versions.current)

    # ------------------------------------------------------------------ ingestion
    def reserve_sequence(self) -> int:
        """Hand out a fresh sequence number S for an external table (``sst_writer``), as a one-op write would.

        S is durable before this returns (a reserve record in the WAL, fsynced, and the
        MANIFEST's last_sequence): after a crash the engine never hands it out again, and
        the WAL accounts for it. Snapshots taken before this call never see data ingested at S.
        """
        with self._write_lock:
            self._check_writable()
            seq = self._last_seq + 1
            try:
                self._log_synced(encode_batch(seq, time.time_ns() // 1000, ((KIND_RESERVE, 0, b"", b""),)))
                self.versions.log_and_apply(VersionEdit(last_sequence=seq))
            except StorageIOError as exc:
                self._bg_error = exc
                raise
            self._last_seq = self._visible_seq = seq   # the synced record made every write before it durable
        return seq

    def _log_synced(self, payload: bytes) -> None:
        """REQUIRES: the write lock. Append a record to the WAL and fsync it (reserve and ingest
        records: rare, and they must be durable before what follows them)."""
        self._wal.add_record(payload)
        self._wal.sync()
        self._stats["wal_syncs"] += 1

    def sst_writer(self, path, cf=None, *, sequence: int) -> ingest_mod.ExternalTableWriter:
        """A builder for an SSTable at ``path`` whose entries all carry ``sequence`` (from
        ``reserve_sequence``), for ``ingest``. ``path`` may be outside or inside the database
        directory, but not a name the engine manages. See ``ingest.ExternalTableWriter``."""
        path = ingest_mod.check_external_path(path, self.path)
        cf_id = self._cf_id(cf)
        self._check_open()
        if type(sequence) is not int:
            raise InvalidTypeError(f"sequence must be an int, not {type(sequence).__name__}")
        if not 0 < sequence <= self._last_seq:
            raise InvalidArgumentError(f"sequence {sequence} was not handed out (latest is {self._last_seq}): "
                                       "take one from reserve_sequence()")
        opts = self.options
        return ingest_mod.ExternalTableWriter(self.fs, path, cf_id=cf_id, sequence=sequence,
                                              block_size=opts.block_size,
                                              bloom_bits_per_key=opts.bloom_bits_per_key,
                                              compression=opts.compression)

    def ingest(self, paths, cf=None, move: bool = True, progress=None) -> dict:
        """Add the SSTables at ``paths`` to column family ``cf`` atomically: all of them or none.

        Each file is verified (CorruptionError names it), checked (InvalidArgumentError:
        another column family, a sequence not yet handed out, files overlapping each
        other, a write into a file's key range at or after its sequence), linked
        (``move=True``: a hard link, a copy across filesystems; the source is removed
        once the ingest is durable) or copied (``move=False``) into the directory under a
        new number and fsynced. Then, under the write lock: memtables overlapping a file
        are flushed; each file goes to the deepest level where neither that level nor any
        above it overlaps it (else it becomes the newest L0 file); one MANIFEST edit adds
        them all. ``progress(done_bytes, total_bytes)`` is called as files are verified
        and as they are linked or copied (total is twice the input bytes). Returns ``{"files", "bytes",
        "levels" (per path; None for a file with no entries), "flushed"}``.
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise InvalidTypeError("ingest takes a list of paths")
        if progress is not None and not callable(progress):
            raise InvalidTypeError("progress must be callable")
        paths = [ingest_mod.check_external_path(p, self.path) for p in paths]
        cf_id = self._cf_id(cf)
        self._check_open()
        result = {"files": 0, "bytes": 0, "levels": [None] * len(paths), "flushed": False}
        if not paths:
            return result
        if len({os.path.abspath(p) for p in paths}) != len(paths):
            raise InvalidArgumentError("the same file is listed twice")
        total = 2 * sum(self.fs.file_size(p) for p in paths if self.fs.exists(p))
        done = 0

        def step(nbytes: int) -> None:
            nonlocal done
            done = min(total, done + nbytes)
            if progress is not None:
                progress(done, total)

        inputs = []
        for p in paths:
            f = ingest_mod.inspect_external_file(self.fs, p)
            inputs.append(f)
            step(f.size)
        ingest_mod.check_inputs(inputs, cf_id, self._last_seq)
        staged: dict[int, tuple[ingest_mod.ExternalFile, int]] = {}   # index in paths -> (file, number)
        committed = False
        try:
            for i, f in enumerate(inputs):
                if not f.empty:
                    staged[i] = (f, self._stage_external(f.path, move))
                step(f.size)
            if staged:
                with self._write_lock:
                    self._check_writable()
                    if cf_id not in self._cf_names:
                        raise InvalidArgumentError("the column family was dropped during the ingest")
                    result["flushed"] = self._flush_for_ingest(cf_id, [f for f, _ in staged.values()])
                    with self._compaction_lock:
                        staged = self._install_ingested(cf_id, staged, result)
                        committed = True
        finally:
            if not committed:
                for _, number in staged.values():
                    self._discard_staged(number)
        if move:
            for p in paths:
                try:
                    self.fs.remove(p)
                except Error:
                    pass   # the data is in: a source left behind is only clutter
        result["files"] = len(staged)
        result["bytes"] = sum(f.size for f, _ in staged.values())
        self._stats["ingested_files"] += result["files"]
        self._stats["ingested_bytes"] += result["bytes"]
        return result

    def _check_writable(self) -> None:
        if self._closed:
            raise ClosedError("the engine is closed")
        if self._bg_error is not None:
            raise OperationalError(f"the engine stopped accepting writes after an error: {self._bg_error}")

    def _stage_external(self, src: str, move: bool) -> int:
        """Link (``move``) or copy ``src`` into the directory under a new, pending number; fsync it."""
        number = self.versions.new_file_number()
        self._pending_outputs.add(number)
        dst = os.path.join(self.path, dbformat.table_file_name(number))
        if move:
            self.fs.link(src, dst)
            f = self.fs.open_appendable(dst)   # the bytes behind a link must be durable too
            try:
                f.sync()
            finally:
                f.close()
        else:
            self.fs.copy_file(src, dst)
        return number

    def _discard_staged(self, number: int) -> None:
        try:
            self.fs.remove(os.path.join(self.path, dbformat.table_file_name(number)))
        except Error:
            pass   # an unreferenced table: the next open deletes it
        self._pending_outputs.discard(number)

    def _flush_for_ingest(self, cf_id: int, files) -> bool:
        """REQUIRES: the write lock. Flush every memtable when one of ``cf_id``'s overlaps a file
        (a key written before the files' sequence must not shadow them from a memtable)."""
        mems = [self._mems[cf_id]] + [fz.mems[cf_id] for fz in self._imms if cf_id in fz.mems]
        if not any(ingest_mod.memtable_overlaps(m, f.smallest, f.end) for m in mems for f in files):
            return False
        self._freeze()
        if not self.options.background:
            self._flush_all_inline()
            return True
        with self._bg_cv:
            self._bg_cv.notify_all()
            while self._imms and self._bg_error is None and not self._stop:
                self._bg_cv.wait(0.1)
        if self._bg_error is not None:
            raise OperationalError(f"background flush failed: {self._bg_error}")
        if self._imms:
            raise ClosedError("the engine is closing")
        return True

    def _install_ingested(self, cf_id: int, staged: dict, result: dict) -> dict:
        """REQUIRES: the write and compaction locks. Check, place and commit the staged files.

        Each gets a fresh number here (a rename), so it sorts after every L0 file a flush
        just made, and ``largest_seq`` = the latest sequence, so it sorts above them in L0.
        Returns ``staged`` with the final numbers.
        """
        version = self.versions.current
        table = self.table_cache.get
        for f, _ in staged.values():
            newer = ingest_mod.newer_write_in_range(version, cf_id, table, f.smallest, f.end, f.props.smallest_seq)
            if newer is not None:
                raise InvalidArgumentError(
                    f"{f.path}: the column family holds {newer}, written at or after the file's sequence "
                    f"{f.props.smallest_seq} (after reserve_sequence); reserve a new sequence and rebuild the file")
        # The ingest record takes one sequence per table, after every write before it.
        first = self._last_seq + 1
        last = self._last_seq + len(staged)
        edit = VersionEdit(last_sequence=last)
        for i in list(staged):
            f, number = staged[i]
            new_number = self.versions.new_file_number()
            self._pending_outputs.add(new_number)
            try:
                self.fs.rename(os.path.join(self.path, dbformat.table_file_name(number)),
                               os.path.join(self.path, dbformat.table_file_name(new_number)))
            except BaseException:
                self._pending_outputs.discard(new_number)
                raise
            staged[i] = (f, new_number)   # the caller removes this name if anything below fails
            self._pending_outputs.discard(number)
            level = ingest_mod.choose_level(version, cf_id, f)
            edit.add.append((cf_id, level, f.file_meta(new_number, last)))
            result["levels"][i] = level
        final = dict(staged)
        now_us = time.time_ns() // 1000
        record = encode_batch(first, now_us, [(KIND_INGEST, cf_id, b"", INGEST_OP.pack(number, f.props.smallest_seq,
                                                                                      f.size, f.file_crc))
                                              for f, number in final.values()])
        try:
            # The WAL record first, once the tables are durable under their final names: from then
            # on the ingest happened (recovery finishes it if the MANIFEST edit below never lands).
            self.fs.sync_dir(self.path)
            self._log_synced(record)
        except StorageIOError as exc:
            self._bg_error = exc
            raise
        try:
            self.versions.log_and_apply(edit)
        except BaseException as exc:
            # The edit may or may not be durable: keep its files (pending) until the next open decides.
            self._bg_error = exc if isinstance(exc, Error) else OperationalError(str(exc))
            staged.clear()
            raise
        self._last_seq = self._visible_seq = last   # the synced record made every write before it durable
        self._last_commit_us = now_us
        if self.versions.wal_hold:
            self._link_for_archive(self._wal_number, [number for _, number in final.values()])
        with self._bg_cv:
            self._publish()
            for _, number in final.values():
                self._pending_outputs.discard(number)
            self._compaction_wanted = True
            self._bg_cv.notify_all()
        return final

    def _link_for_archive(self, wal_number: int, numbers) -> None:
        """Keep a hard link to each ingested table for the WAL archiver (``ingest_links``): the
        tree may compact a table away before the archiver copies the segment that logged it."""
        try:
            for number in numbers:
                link = os.path.join(self.path, dbformat.ingest_link_name(wal_number, number))
                if not self.fs.exists(link):
                    self.fs.link(os.path.join(self.path, dbformat.table_file_name(number)), link)
            self.fs.sync_dir(self.path)
        except Error as exc:
            # The ingest is in; only the archive lacks the table, and a restore across it says so.
            log.warning("%s: could not keep ingested tables for the WAL archive: %s", self.path, exc)

    def ingest_links(self, wal_number: int | None = None) -> list[tuple[int, int, str]]:
        """The ingested tables kept for the WAL archiver, as ``(wal_number, table_number, path)``,
        oldest first; only those logged in segment ``wal_number`` if given. The links go when
        the WAL hold moves past their segment (``hold_wal``)."""
        self._check_open()
        out = []
        for name in self.fs.listdir(self.path):
            parsed = dbformat.parse_ingest_link(name)
            if parsed is not None and (wal_number is None or parsed[0] == wal_number):
                out.append((parsed[0], parsed[1], os.path.join(self.path, name)))
        return sorted(out)

    # ------------------------------------------------------------------ reads
    @property
    def latest_sequence(self) -> int:
        self._check_open()
        return self._visible_seq

    def snapshot(self) -> Snapshot:
        self._check_open()
        with self._snap_lock:
            self._drop_released_snapshots()
            seq = self._visible_seq
            self._snapshots.add(seq)
        return Snapshot(self, seq)

    def _release_snapshot(self, snapshot: Snapshot) -> None:
        with self._snap_lock:
            self._drop_released_snapshots()
            try:
                self._snapshots.remove(snapshot.sequence)
            except ValueError:
                pass

    def _release_snapshot_soon(self, snapshot: Snapshot) -> None:
        """Release from a finalizer (Snapshot.__del__): never blocks. The garbage collector runs
        finalizers in whatever thread allocates, possibly one inside a ``_snap_lock`` block (this
        one: the Lock is not reentrant); so the release goes to ``_snaps_dropped`` (a deque:
        append is atomic), drained here if the lock is free, else by its next holder."""
        self._snaps_dropped.append(snapshot.sequence)
        if self._snap_lock.acquire(blocking=False):
            try:
                self._drop_released_snapshots()
            finally:
                self._snap_lock.release()

    def _drop_released_snapshots(self) -> None:
        """REQUIRES: _snap_lock."""
        while self._snaps_dropped:
            try:
                self._snapshots.remove(self._snaps_dropped.popleft())
            except (ValueError, IndexError):
                pass

    def _read_sequence(self, snapshot) -> int:
        return self._visible_seq if snapshot is None else snapshot_sequence(self, snapshot)

    def get(self, key, cf=None, snapshot=None) -> bytes | None:
        """The value of ``key``, or None. Safe to call from any thread."""
        if type(key) is not bytes:
            key = check_key(key)
        cf_id = 0 if cf is None else self._cf_id(cf)
        if self._closed:
            raise ClosedError("the engine is closed")
        seq = self._visible_seq if snapshot is None else self._read_sequence(snapshot)
        sv = self._sv
        try:
            mem = sv.mems[cf_id]
            levels = sv.version.cfs[cf_id]
        except KeyError:
            raise InvalidArgumentError("unknown column family (dropped while the read started)") from None
        r = mem.get(key, seq)
        tomb = mem.tombstones.max_covering_seq(key, seq) if mem.tombstones.count else 0
        if r is not None or tomb:
            return r[1] if r is not None and (r[0] >> 8) >= tomb and (r[0] & 0xFF) == KIND_PUT else None
        for imm in sv.imms:
            mem = imm.get(cf_id)
            if mem is None:
                continue
            r = mem.get(key, seq)
            tomb = mem.tombstones.max_covering_seq(key, seq) if mem.tombstones.count else 0
            if r is not None or tomb:
                return r[1] if r is not None and (r[0] >> 8) >= tomb and (r[0] & 0xFF) == KIND_PUT else None
        # The L0 and deeper-level loops below repeat one body on purpose: this is the hot path of
        # every point read, and a helper call per probed file costs a measurable share of it.
        table = self.table_cache.get
        for f in levels[0]:
            if key < f.smallest or key > f.largest:
                continue
            reader = table(f.number)
            tomb = self._file_tombstones(f.number, reader).max_covering_seq(key, seq) if f.range_deletions else 0
            r = reader.get(key, seq)
            if r is not None or tomb:
                return r[1] if r is not None and (r[0] >> 8) >= tomb and (r[0] & 0xFF) == KIND_PUT else None
        for lf in sv.version.deeper[cf_id]:
            f = lf.find(key)
            if f is None:
                continue
            reader = table(f.number)
            tomb = self._file_tombstones(f.number, reader).max_covering_seq(key, seq) if f.range_deletions else 0
            r = reader.get(key, seq)
            if r is not None or tomb:
                return r[1] if r is not None and (r[0] >> 8) >= tomb and (r[0] & 0xFF) == KIND_PUT else None
        return None

    def _file_tombstones(self, number: int, reader) -> RangeTombstones:
        """The range tombstones of SSTable ``number`` as a searchable set (built once per file)."""
        rt = self._tombstone_sets.get(number)
        if rt is None:
            rt = RangeTombstones.from_fragments(reader.range_tombstones)
            self._tombstone_sets[number] = rt
        return rt

    def scan(self, start=None, end=None, cf=None, snapshot=None, reverse: bool = False):
        """Iterate ``(key, value)`` for ``start <= key < end`` in key order (descending with ``reverse``)."""
        if start is not None:
            start = check_key(start, "start")
        if end is not None:
            end = check_key(end, "end")
        if start is not None and end is not None and start > end:
            raise InvalidArgumentError(f"range start {start!r} is after its end {end!r}")
        cf_id = self._cf_id(cf)
        self._check_open()
        seq = self._read_sequence(snapshot)
        sv = self._sv
        if cf_id not in sv.mems or cf_id not in sv.version.cfs:
            raise InvalidArgumentError("unknown column family (dropped while the scan started)")
        return self._scan(sv, cf_id, seq, start, end, bool(reverse), snapshot)

    def _scan(self, sv, cf_id, seq, start, end, reverse, snapshot):
        """Build the scan's sources and return its generator.

        Each generator gets ``sv`` (and ``snapshot``) as an argument: holding them keeps the
        memtables and the Version, so its files, alive for as long as the scan runs.
        """
        mem_sources = []
        block_sources = []
        frags = []
        for mem in [sv.mems[cf_id]] + [imm[cf_id] for imm in sv.imms if cf_id in imm]:
            if mem.entries:
                mem_sources.append(mem.iter_entries(start, end, reverse, seq))
                if mem.tombstones.count:
                    frags.append(mem.tombstones.fragments(start, end))
        levels = sv.version.cfs[cf_id]
        table = self.table_cache.get
        l0 = [f for f in levels[0] if f.overlaps(start, end) and (end is None or f.smallest < end)]
        deeper = []
        for lf in levels[1:]:
            files = [f for f in lf.overlapping(start, end) if end is None or f.smallest < end]
            if files:
                deeper.append(files)
        for f in chain(l0, *deeper):
            if f.range_deletions:
                frags.append(table(f.number).range_tombstones)
        tombs = visible_max_fragments(frags, seq, start, end) if frags else None
        if not mem_sources and tombs is None and len(l0) + len(deeper) == 1:
            files = l0 or deeper[0]
            if all(not f.droppable and f.largest_seq <= seq for f in files):
                # One source of clean files (puts of distinct keys, all visible): only pairs.
                return self._scan_clean(files, start, end, reverse, sv, snapshot)
        for f in l0:
            block_sources.append(self._level_blocks([f], start, end, reverse, tombs))
        for files in deeper:
            block_sources.append(self._level_blocks(files, start, end, reverse, tombs))
        if not mem_sources and len(block_sources) == 1:
            return self._scan_blocks(block_sources[0], seq, reverse, tombs, sv, snapshot)
        sources = mem_sources + [self._block_entries(b) for b in block_sources]
        if not sources:
            return iter(())
        merged = sources[0] if len(sources) == 1 else heapq.merge(*sources, reverse=reverse)
        if reverse:
            return self._dedupe_reverse(merged, seq, tombs, sv, snapshot)
        return self._dedupe_forward(merged, seq, tombs, sv, snapshot)

    def _level_blocks(self, files, start, end, reverse, tombs):
        """Blocks of ``files`` (one level, in key order) within [start, end).

        Key ranges that a visible tombstone newer than everything in a file hides are
        skipped without reading them, so a scan past a large deleted range costs a few
        index lookups rather than a walk over every deleted entry.
        """
        table = self.table_cache.get
        for f in (reversed(files) if reverse else files):
            reader = table(f.number)
            if tombs is None:
                yield from reader.iter_blocks(start, end, reverse)
                continue
            ranges = _unhidden_ranges(tombs, f.largest_seq, start, end)
            for lo, hi in (reversed(ranges) if reverse else ranges):
                yield from reader.iter_blocks(lo, hi, reverse)

    def _scan_clean(self, files, start, end, reverse, _sv, _snapshot):
        table = self.table_cache.get
        for f in (reversed(files) if reverse else files):
            for pairs in table(f.number).iter_pairs(start, end, reverse):
                for item in pairs:
                    if self._closed:
                        raise ClosedError("the engine was closed during the scan")
                    yield item

    @staticmethod
    def _block_entries(blocks):
        neg = operator.neg
        for keys, trailers, values, _ in blocks:
            yield from zip(keys, map(neg, trailers), values)

    def _scan_blocks(self, blocks, seq, reverse, tombs, _sv, _snapshot):
        """Scan one sorted source of SSTable blocks.

        A block whose entries are all visible puts of distinct keys, none shared
        with its neighbours, goes out whole (``zip(keys, values)``); any other
        block goes entry by entry through the same rules as ``_dedupe_*``.
        """
        limit = (seq << 8) | 0xFF
        covering = tombs.max_covering_seq if tombs else None
        eq = operator.eq
        it = iter(blocks)
        nxt = next(it, None)
        prev_last = None
        last_key = None               # forward: the key already decided
        cur_key, cur = None, None     # reverse: the key being gathered and its newest visible version
        while nxt is not None:
            keys, trailers, values, all_puts = nxt
            # Reverse order needs to know whether the next block continues this block's last key
            # (its newer versions); forward order never does: the newest version comes first.
            nxt = next(it, None) if reverse else True
            if self._closed:
                raise ClosedError("the engine was closed during the scan")
            if (covering is None and all_puts and max(trailers) <= limit and keys[0] != prev_last
                    and (not reverse or nxt is None or nxt[0][0] != keys[-1])
                    and not any(map(eq, keys, islice(keys, 1, None)))):
                if cur is not None:
                    if (cur[0] & 0xFF) == KIND_PUT:
                        yield cur_key, cur[1]
                    cur = None
                for item in zip(keys, values):
                    if self._closed:   # as cheap as `yield from` here, and an iterator dies with its engine
                        raise ClosedError("the engine was closed during the scan")
                    yield item
                last_key = cur_key = keys[-1]
            elif not reverse:
                for key, trailer, value in zip(keys, trailers, values):
                    if key == last_key or trailer > limit:
                        continue
                    last_key = key
                    if (trailer & 0xFF) == KIND_PUT and (covering is None or (trailer >> 8) >= covering(key, seq)):
                        yield key, value
            else:
                for key, trailer, value in zip(keys, trailers, values):
                    if key != cur_key:
                        if cur is not None and (cur[0] & 0xFF) == KIND_PUT and (
                                covering is None or (cur[0] >> 8) >= covering(cur_key, seq)):
                            yield cur_key, cur[1]
                        cur_key, cur = key, None
                    if trailer <= limit:
                        cur = (trailer, value)
            prev_last = keys[-1]
            if not reverse:
                nxt = next(it, None)
        if cur is not None and (cur[0] & 0xFF) == KIND_PUT and (
                covering is None or (cur[0] >> 8) >= covering(cur_key, seq)):
            yield cur_key, cur[1]

    def _dedupe_forward(self, merged, seq, tombs, _sv, _snapshot):
        last_key = None
        covering = tombs.max_covering_seq if tombs else None
        for key, neg, value in merged:
            if self._closed:
                raise ClosedError("the engine was closed during the scan")
            if key == last_key:
                continue
            trailer = -neg
            if (trailer >> 8) > seq:
                continue
            last_key = key
            if (trailer & 0xFF) == KIND_PUT and (covering is None or (trailer >> 8) >= covering(key, seq)):
                yield key, value

    def _dedupe_reverse(self, merged, seq, tombs, _sv, _snapshot):
        covering = tombs.max_covering_seq if tombs else None
        cur_key = None
        cur = None
        for key, neg, value in merged:
            if self._closed:
                raise ClosedError("the engine was closed during the scan")
            if key != cur_key:
                if cur is not None:
                    trailer = cur[0]
                    if (trailer & 0xFF) == KIND_PUT and (covering is None or (trailer >> 8) >= covering(cur_key, seq)):
                        yield cur_key, cur[1]
                cur_key = key
                cur = None
            trailer = -neg
            if (trailer >> 8) <= seq:
                cur = (trailer, value)   # versions of one key arrive oldest first: keep the newest visible
        if cur is not None:
            trailer = cur[0]
            if (trailer & 0xFF) == KIND_PUT and (covering is None or (trailer >> 8) >= covering(cur_key, seq)):
                yield cur_key, cur[1]

    # ------------------------------------------------------------------ flush
    def flush(self, cf=None, wait: bool = True) -> None:
        """Write the memtables out as SSTables (all families: one WAL serves them all)."""
        if cf is not None:
            self._cf_id(cf)
        self._check_open()
        with self._write_lock:
            self._freeze()
            if not self.options.background:
                self._flush_all_inline()
                return
        if wait:
            with self._bg_cv:
                while self._imms and self._bg_error is None:
                    self._bg_cv.wait(0.1)
            if self._bg_error is not None:
                raise OperationalError(f"background flush failed: {self._bg_error}")

    def _flush_all_inline(self) -> None:
        if not self._imms:
            return
        while self._imms:
            self._flush_one(self._imms[-1])
        self._delete_obsolete_files()

    def _flush_loop(self) -> None:
        while True:
            with self._bg_cv:
                while not self._imms and not self._stop:
                    self._bg_cv.wait()
                if self._stop:
                    return
                frozen = self._imms[-1]
            try:
                self._flush_one(frozen)
                # Let the flushed set go before looking for obsolete files: it holds the Version its
                # flush installed (and its memtables), and a compaction that replaced that Version's
                # files meanwhile found them still in use. Kept until the next flush, they would
                # stay on disk (and the memtables in memory) for as long as writes pause.
                frozen = None
                self._delete_obsolete_files()
            except Exception as exc:  # keep the error for writers; stop flushing
                self._bg_error = exc
                with self._bg_cv:
                    self._bg_cv.notify_all()
                return

    def _flush_one(self, frozen: _Frozen) -> None:
        edit = VersionEdit(log_number=frozen.next_wal_number)
        last_seq = 0
        for cf_id, mem in frozen.mems.items():
            if mem.empty or cf_id not in self._cf_names:
                continue
            edit.add.append((cf_id, 0, self._write_level0(cf_id, mem)))
            last_seq = max(last_seq, mem.last_sequence)
        edit.last_sequence = last_seq
        frozen.version = self.versions.log_and_apply(edit)
        with self._bg_cv:
            self._imms.remove(frozen)
            self._publish()
            for _, _, meta in edit.add:
                self._pending_outputs.discard(meta.number)
            self._stats["flushes"] += 1
            self._compaction_wanted = True
            self._bg_cv.notify_all()
        # Drop the sealed segment rather than close it: a group-commit fsync may still hold it
        # (taking _sync_lock here would deadlock with a writer stalled on this flush), and the
        # file closes when its last user lets go. _freeze synced it, so nothing is buffered.
        # The caller deletes the obsolete files once it has let ``frozen`` go.
        frozen.wal = None

    def _write_level0(self, cf_id: int, mem: MemTable) -> FileMeta:
        number = self.versions.new_file_number()
        self._pending_outputs.add(number)
        snapshots = self._snapshot_list()
        tombs = mem.tombstones if mem.tombstones.count else None
        writer = self._new_table(number, cf_id)
        multi = False
        try:
            for key, versions in mem.iter_versions():
                kept = 0
                for trailer, value in compaction_mod.collapse_versions(versions, snapshots, tombs, key, False):
                    writer.add(key, trailer, value)
                    kept += 1
                multi = multi or kept > 1
            if tombs:
                writer.add_range_tombstones(compaction_mod.collapse_tombstones(tombs.fragments(), snapshots, False))
            props = writer.finish()
        except BaseException:
            writer.abandon()
            raise
        self._stats["bytes_written"] += props.file_size
        return self._file_meta(number, props, multi)

    def _new_table(self, number: int, cf_id: int) -> SSTableWriter:
        opts = self.options
        f = self.fs.open_writable(os.path.join(self.path, dbformat.table_file_name(number)))
        return SSTableWriter(f, file_number=number, cf_id=cf_id, block_size=opts.block_size,
                             bloom_bits_per_key=opts.bloom_bits_per_key, compression=opts.compression)

    @staticmethod
    def _file_meta(number: int, props, multi_version: bool) -> FileMeta:
        return FileMeta(number=number, size=props.file_size, smallest=props.smallest_key,
                        largest=props.largest_key, largest_exclusive=bool(props.largest_is_range_end),
                        smallest_seq=props.smallest_seq, largest_seq=props.largest_seq,
                        entries=props.num_entries, range_deletions=props.num_range_tombstones,
                        droppable=bool(multi_version or props.num_deletions or props.num_range_tombstones))

    def _snapshot_list(self) -> list[int]:
        """The sequences flushes and compactions must keep a view of: every snapshot's, and the
        visible sequence while writes above it are not visible (their fsync is pending, or failed:
        then they never will be), so that what readers see keeps its versions."""
        visible = self._visible_seq
        with self._snap_lock:
            self._drop_released_snapshots()
            snapshots = list(self._snapshots)
        if visible < self._last_seq and visible not in snapshots:
            insort(snapshots, visible)
        return snapshots

    # ------------------------------------------------------------------ compaction
    def _compaction_loop(self) -> None:
        while True:
            with self._bg_cv:
                while not self._compaction_wanted and not self._stop:
                    self._bg_cv.wait(1.0)
                if self._stop:
                    return
                self._compaction_wanted = False
            try:
                while not self._stop and self._compact_once():
                    pass
            except Exception as exc:
                self._bg_error = exc
                with self._bg_cv:
                    self._bg_cv.notify_all()
                return

    def _compact_inline(self) -> None:
        while self._compact_once():
            pass

    def _compact_once(self) -> bool:
        """Run the most urgent compaction of any family; False when none is due."""
        with self._compaction_lock:
            c = None
            version = self.versions.current
            for cf_id in list(version.cfs):
                c = compaction_mod.pick_compaction(version, cf_id, self.options, self._compact_pointers,
                                                   self._busy_files)
                if c is not None:
                    break
            del version   # a Version held here would keep the inputs from being deleted
            if c is None:
                return False
            self._run_compaction(c)
        return True

    def compact_range(self, start=None, end=None, cf=None, progress=None) -> None:
        """Flush, then compact every file overlapping ``[start, end]`` down to the last non-empty level.

        ``progress``, if given, is called as ``progress(done_bytes, total_bytes)`` after each
        compaction step (total_bytes is the size of the files in the range when it started).
        """
        if progress is not None and not callable(progress):
            raise InvalidTypeError("progress must be callable")
        if start is not None:
            start = check_key(start, "start")
        if end is not None:
            end = check_key(end, "end")
        if start is not None and end is not None and start > end:
            raise InvalidArgumentError(f"range start {start!r} is after its end {end!r}")
        cf_ids = [self._cf_id(cf)] if cf is not None else None
        self.flush()
        with self._compaction_lock:
            todo = cf_ids or list(self.versions.current.cfs)
            version = self.versions.current
            total = sum(f.size for cf_id in todo if cf_id in version.cfs
                        for level in range(len(version.cfs[cf_id]))
                        for f in version.level_files(cf_id, level) if f.overlaps(start, end))
            del version
            done = [0]

            def step(nbytes: int) -> None:
                done[0] = min(total, done[0] + nbytes)
                if progress is not None:
                    progress(done[0], total)

            for cf_id in todo:
                self._compact_range_cf(cf_id, start, end, step)
            if progress is not None:
                progress(total, total)

    def _compact_range_cf(self, cf_id: int, start, end, step=lambda nbytes: None) -> None:
        """Push everything overlapping the range down, level by level, to the deepest non-empty level.

        Files of the deepest level that nothing above overlapped are rewritten in place, so
        versions, deletes and tombstones kept for since-released snapshots go too.
        """
        version = self.versions.current
        if cf_id not in version.cfs:
            return
        num_levels = len(version.cfs[cf_id])
        deepest = max([1] + [lv for lv in range(num_levels) if version.level_files(cf_id, lv)])
        fresh: set[int] = set()
        for level in range(0, deepest):
            version = self.versions.current
            if level == 0:
                files = list(version.level_files(cf_id, 0))   # all of L0: L1 must never be newer than L0
            else:
                files = [f for f in version.level_files(cf_id, level) if f.overlaps(start, end)]
            if not files:
                continue
            lo, hi = compaction_mod.key_range(files)
            c = compaction_mod.build_compaction(version, cf_id, level, files, lo, hi, set(),
                                                output_level=level + 1)
            c.trivial_move = False   # a manual compaction rewrites, so deletes and tombstones can go
            version = None           # let the inputs go once the compaction is installed
            fresh = {meta.number for meta in self._run_compaction(c)}
            step(sum(f.size for f in files))
        # Rewrite each run of adjacent stale files on its own: merging runs that lie on either
        # side of a fresh file would make outputs that overlap it within the level.
        runs: list[list[FileMeta]] = [[]]
        for f in self.versions.current.level_files(cf_id, deepest):
            if f.overlaps(start, end) and f.number not in fresh and f.droppable:
                runs[-1].append(f)
            elif runs[-1]:
                runs.append([])
        for stale in runs:
            if not stale:
                continue
            version = self.versions.current
            lo, hi = compaction_mod.key_range(stale)
            c = compaction_mod.build_compaction(version, cf_id, deepest, stale, lo, hi, set(), output_level=deepest)
            c.trivial_move = False
            version = None
            self._run_compaction(c)
            step(sum(f.size for f in stale))

    def _run_compaction(self, c: compaction_mod.Compaction) -> list[FileMeta]:
        """Merge ``c``'s inputs into new files of its output level, install them, return them."""
        edit = VersionEdit()
        if c.trivial_move:
            f = c.inputs[0]
            edit.delete.append((c.cf_id, c.level, f.number))
            edit.add.append((c.cf_id, c.output_level, f))
            self.versions.log_and_apply(edit)
            self._stats["trivial_moves"] += 1
            self._after_install()
            return [f]
        snapshots = self._snapshot_list()
        table = self.table_cache.get
        inputs = c.all_inputs
        for f in inputs:
            self._busy_files.add(f.number)
        outputs: list[FileMeta] = []
        try:
            frag_lists = [table(f.number).range_tombstones for f in inputs if f.range_deletions]
            tombs = RangeTombstones()
            for frags in frag_lists:
                for s, e, seqs in frags:
                    for q in seqs:
                        tombs.add(s, e, q)
            live_inputs = []
            for f in inputs:
                if tombs.count and self._wholly_deleted(f, tombs, snapshots):
                    c.dropped.append(f)
                    continue
                live_inputs.append(f)
            # Tombstones must stay with the data they may still hide (unless dropped at the bottom).
            fragments = compaction_mod.collapse_tombstones(tombs.fragments(), snapshots, c.bottommost)
            sources = [table(f.number).iter_entries(fill_cache=False) for f in live_inputs]
            merged = heapq.merge(*sources) if len(sources) != 1 else sources[0]
            outputs = self._write_compaction_outputs(c, merged, fragments, snapshots, tombs)
        finally:
            for f in inputs:
                self._busy_files.discard(f.number)
        for f in c.inputs:
            edit.delete.append((c.cf_id, c.level, f.number))
        for f in c.lower:
            edit.delete.append((c.cf_id, c.output_level, f.number))
        for meta in outputs:
            edit.add.append((c.cf_id, c.output_level, meta))
        self.versions.log_and_apply(edit)
        for meta in outputs:
            self._pending_outputs.discard(meta.number)
        self._stats["compactions"] += 1
        self._stats["files_dropped_by_tombstone"] += len(c.dropped)
        self._stats["bytes_compacted"] += sum(f.size for f in inputs)
        self._after_install()
        return outputs

    def _after_install(self) -> None:
        with self._bg_cv:
            self._publish()
            self._bg_cv.notify_all()
        self._delete_obsolete_files()

    @staticmethod
    def _wholly_deleted(f: FileMeta, tombs, snapshots) -> bool:
        """True when one tombstone newer than all of ``f`` covers its whole key range, with no snapshot between."""
        t = tombs.covers_range(f.smallest, f.largest, f.largest_seq)
        if not t:
            return False
        st = compaction_mod.stripe_of(snapshots, t)
        return compaction_mod.stripe_of(snapshots, f.smallest_seq) == st

    def _write_compaction_outputs(self, c, merged, fragments, snapshots, tombs) -> list[FileMeta]:
        """Write ``merged`` entries as files of at most ``target_file_bytes``; tombstones go with their keys."""
        outputs: list[FileMeta] = []
        target = self.options.target_file_bytes
        writer = None
        number = 0
        multi = False
        frag_i = 0
        bottommost = c.bottommost
        collapse = compaction_mod.collapse_versions
        tomb_arg = tombs if tombs.count else None

        def finish(next_key):
            nonlocal writer, frag_i
            # Attach the fragments that start before the next file's first key (clipped there).
            mine = []
            while frag_i < len(fragments):
                s, e, seqs = fragments[frag_i]
                if next_key is not None and s >= next_key:
                    break
                if next_key is not None and e > next_key:
                    mine.append((s, next_key, seqs))
                    fragments[frag_i] = (next_key, e, seqs)
                    break
                mine.append((s, e, seqs))
                frag_i += 1
            if mine:
                writer.add_range_tombstones(compaction_mod.merge_adjacent(mine))
            props = writer.finish()
            self._stats["bytes_written"] += props.file_size
            outputs.append(self._file_meta(number, props, multi))
            writer = None

        def start_writer():
            nonlocal writer, number, multi
            multi = False
            number = self.versions.new_file_number()
            self._pending_outputs.add(number)
            writer = self._new_table(number, c.cf_id)

        try:
            group_key = None
            group: list = []
            # Without snapshots or tombstones a lone put needs no collapsing: the common case.
            simple = not snapshots and tomb_arg is None
            since_check = 0
            for key, neg, value in chain(merged, ((None, 0, b""),)):
                if key == group_key:
                    group.append((-neg, value))
                    continue
                if group:
                    if simple and len(group) == 1 and (group[0][0] & 0xFF == KIND_PUT or not bottommost):
                        kept = group
                    else:
                        kept = list(collapse(group, snapshots, tomb_arg, group_key, bottommost))
                    if kept:
                        if writer is None:
                            start_writer()
                            since_check = 0
                        elif since_check >= 32:   # the size estimate costs more than an add
                            since_check = 0
                            if writer.estimated_size >= target:
                                finish(group_key)
                                start_writer()
                        since_check += 1
                        for trailer, v in kept:
                            writer.add(group_key, trailer, v)
                        if len(kept) > 1:
                            multi = True
                group_key = key
                group = [(-neg, value)]
            if frag_i < len(fragments):
                if writer is None:
                    start_writer()
            if writer is not None:
                finish(None)
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
        return outputs

    # ------------------------------------------------------------------ files
    def _delete_obsolete_files(self) -> None:
        """Remove SSTables no live Version lists, WAL segments already flushed, and old MANIFESTs."""
        present = list(self._engine_files())   # list first: a file made later is pending or live below
        with self.versions.lock:
            live = self.versions.live_file_numbers()
            pending = set(self._pending_outputs)
            log_number = self.versions.log_number
            wal_hold = self.versions.wal_hold
            manifest = self.versions.manifest_number
        active_wals = {self._wal_number} | {f.wal_number for f in list(self._imms)}
        # Flushed segments numbered >= keep_from stay: the archiver's hold, or an open backup view's pin
        # (a pin of 0 keeps every segment).
        keep_from = min(([wal_hold] if wal_hold else []) + list(self._wal_pins), default=None)
        for kind, number in present:
            if kind == "sst" and number not in live and number not in pending:
                self.table_cache.evict(number)
                self._tombstone_sets.pop(number, None)
                self.fs.remove(os.path.join(self.path, dbformat.table_file_name(number)))
            elif kind == "log" and number < log_number and number not in active_wals and not (
                    keep_from is not None and number >= keep_from):
                self.fs.remove(os.path.join(self.path, dbformat.wal_file_name(number)))
            elif kind == "manifest" and number != manifest:
                self.fs.remove(os.path.join(self.path, dbformat.manifest_file_name(number)))

    def verify(self, progress=None) -> dict:
        """Re-read every live file and check every checksum; raise CorruptionError on damage.

        Covers each SSTable of the current version (every block and the whole-file CRC),
        the WAL segments not yet flushed and the MANIFEST. Returns what was checked:
        ``{"tables": n, "table_bytes": b, "wal_segments": n, "manifest": name}``.
        ``progress(done_bytes, total_bytes)`` is called after each table (InvalidTypeError,
        before anything is read, if it is not callable).
        """
        if progress is not None and not callable(progress):
            raise InvalidTypeError("progress must be callable")
        self._check_open()
        version = self.versions.current
        files = list(version.all_files())
        total = sum(f.size for f in files)
        done = 0
        for f in files:
            self.table_cache.get(f.number).verify()
            done += f.size
            if progress is not None:
                progress(done, total)
        with self._write_lock:
            self._wal.flush()
            wal_numbers = sorted({self._wal_number} | {fz.wal_number for fz in self._imms})
        for number in wal_numbers:
            read_log(self.fs, os.path.join(self.path, dbformat.wal_file_name(number)), magic=WAL_MAGIC)
        manifest = dbformat.manifest_file_name(self.versions.manifest_number)
        read_log(self.fs, os.path.join(self.path, manifest), magic=MANIFEST_MAGIC)
        return {"tables": len(files), "table_bytes": total, "wal_segments": len(wal_numbers), "manifest": manifest}

    def checkpoint(self, dest) -> None:
        """Write an openable copy of the database at ``dest`` (which must not exist); hard links SSTables."""
        if not isinstance(dest, (str, os.PathLike)):
            raise InvalidTypeError(f"checkpoint directory must be a path, not {type(dest).__name__}")
        dest = os.fspath(dest)
        self._check_open()
        if self.fs.exists(dest):
            raise InvalidArgumentError(f"checkpoint directory {dest} already exists")
        self.flush()
        with self.versions.lock:
            version = self.versions.current
            cf_names = dict(self._cf_names)
            last_seq = max([self.versions.last_sequence]
                           + [f.largest_seq for f in version.all_files()])
            next_file = self.versions.next_file
        tmp = dest + ".tmp-checkpoint"
        self.fs.makedirs(tmp)
        for f in version.all_files():
            name = dbformat.table_file_name(f.number)
            self.fs.link(os.path.join(self.path, name), os.path.join(tmp, name))
        vs = VersionSet(self.fs, tmp, self.options.num_levels)
        vs.cf_names = cf_names
        vs.current = version
        vs.last_sequence = last_seq
        vs.next_file = next_file
        vs.log_number = next_file
        vs.epoch = self.versions.epoch
        vs.db_id = new_db_id()   # a copy lives on as a database of its own: its backups must not mix with ours
        vs._write_new_manifest()
        vs.close()
        self.fs.sync_dir(tmp)
        self.fs.rename(tmp, dest)
        self.fs.sync_dir(os.path.dirname(os.path.abspath(dest)))


    # ------------------------------------------------------------------ backup support
    # Small building blocks for tabledb.backup (docs/engine-api.md, "Backup support"):
    # a consistent pinned view of the files, WAL segments kept for an archiver, and a way
    # to assemble a database directory from backed-up SSTables.

    @property
    def db_id(self) -> str:
        """This database's id: 32 hex digits, made at creation, kept in the MANIFEST.
        A checkpoint or a restored copy gets a new one."""
        self._check_open()
        return self.versions.db_id

    @property
    def epoch(self) -> int:
        """The WAL epoch: every WAL segment's header carries it, and recovery replays only
        segments of the current epoch (a restored database starts a new one)."""
        self._check_open()
        return self.versions.epoch

    @property
    def wal_number(self) -> int:
        """The number of the active (unsealed) WAL segment."""
        self._check_open()
        return self._wal_number

    def seal_wal(self) -> int | None:
        """Seal the active WAL segment (fsync it, start a new one) without flushing the memtables.

        Returns the sealed segment's number, or None when it holds no record (nothing is
        sealed then). A sealed segment never changes again; once its writes are flushed it
        is deleted, unless ``hold_wal`` keeps it.
        """
        with self._write_lock:
            self._check_writable()
            return self._seal_locked()

    def _seal_locked(self) -> int | None:
        """REQUIRES: the write lock. ``seal_wal``'s work."""
        old = self._wal
        if old.file.size() <= EMPTY_LOG_BYTES:
            return None
        new_number = self.versions.new_file_number()
        new_wal = self._new_wal(new_number)
        self._sync_and_publish(old)
        self._synced_upto = (self._wal_gen, old.file.size())
        self._wal_gen += 1
        sealed = self._wal_number
        self._wal = new_wal
        self._wal_number = new_number
        self._stats["wal_sealed"] += 1
        try:
            old.close()   # synced above; a group-commit fsync that still holds it finds it closed and skips
        except Error:
            pass
        return sealed

    def wal_segments(self) -> list[tuple[int, str]]:
        """The sealed WAL segments still in the directory, oldest first, as ``(number, path)``.

        The active segment is not listed. Every listed segment is complete and synced; its
        records' sequences follow those of the segment before it.
        """
        self._check_open()
        with self._write_lock:
            active = self._wal_number
        numbers = sorted(n for kind, n in self._engine_files() if kind == "log" and n < active)
        return [(n, os.path.join(self.path, dbformat.wal_file_name(n))) for n in numbers]

    @property
    def wal_hold(self) -> int:
        """The WAL hold (see ``hold_wal``); 0 when there is none."""
        self._check_open()
        return self.versions.wal_hold

    def hold_wal(self, number: int | None) -> None:
        """Keep every sealed WAL segment numbered >= ``number`` after its writes are flushed,
        until a later call moves the hold up (an archiver copied them); None (or 0) drops the hold.

        The hold is durable (a MANIFEST edit), so held segments survive close and reopen.
        """
        if number is not None and (type(number) is not int or number < 0):
            raise InvalidArgumentError(f"hold_wal takes a segment number or None, not {number!r}")
        with self._write_lock:
            self._check_writable()
            self.versions.log_and_apply(VersionEdit(wal_hold=number or 0))
        for wal_number, _table, path in self.ingest_links():
            if not number or wal_number < number:
                try:
                    self.fs.remove(path)
                except Error:
                    pass   # removed again at the next move of the hold
        self._delete_obsolete_files()

    def backup_view(self, hold_wal: bool = False, flush: bool = False, attempts: int = 5) -> BackupView:
        """A :class:`BackupView`: the database as of a sequence B, pinned (its files stay on disk until
        the view is released), with a snapshot at B. Writers go on meanwhile.

        Without ``flush`` (the default) the active WAL segment is sealed at B and the view is the
        current SSTables plus ``wal_files``, the sealed segments whose writes are not yet in them
        (every write up to B is in one or the other, none after): writers wait only for the seal.
        With ``flush`` the memtables are flushed first and the SSTables alone hold every write up to
        B (``wal_files`` is empty); writers wait for the freeze. Either way, segments numbered
        ``wal_next`` and up hold the writes after B.

        ``hold_wal``: also make sure, in the same step, that those segments are kept
        (``hold_wal(view.wal_next)`` unless a lower hold exists already).

        With ``flush``, a bulk ingest that lands between the freeze and the flush would put data
        newer than B into the files: the view is then cut again (up to ``attempts`` times).
        """
        self._check_open()
        for _ in range(max(1, attempts)):
            target = None
            wal_files: list[tuple[int, str]] = []
            with self._write_lock:
                self._check_writable()
                if flush:
                    self._freeze()
                else:
                    self._seal_locked()
                seq = self._last_seq
                point_us = time.time_ns() // 1000
                commit_us = self._last_commit_us
                cf_names = dict(self._cf_names)
                wal_next = self._wal_number
                with self._snap_lock:
                    self._drop_released_snapshots()
                    self._snapshots.add(seq)
                snapshot = Snapshot(self, seq)
                if hold_wal and not (0 < self.versions.wal_hold <= wal_next):
                    self.versions.log_and_apply(VersionEdit(wal_hold=wal_next))
                if flush and not self.options.background:
                    self._flush_all_inline()
                elif flush and self._imms:
                    target = self._imms[0]   # the newest frozen set: flushed after all older ones
                if not flush:
                    # Pin every segment first: a flush that moves log_number on after we read it must
                    # find the pin when it deletes segments (it reads the pins after log_number).
                    self._wal_pins.append(0)
                with self.versions.lock:     # a flush installs its files and moves log_number together
                    version = self.versions.current if target is None else None
                    log_number = self.versions.log_number
                    next_file = self.versions.next_file
                if not flush:
                    self._wal_pins.remove(0)
                    self._wal_pins.append(log_number)
                    numbers = sorted(n for kind, n in self._engine_files()
                                     if kind == "log" and log_number <= n < wal_next)
                    wal_files = [(n, os.path.join(self.path, dbformat.wal_file_name(n))) for n in numbers]
            if target is not None:
                with self._bg_cv:
                    while target in self._imms and self._bg_error is None and not self._stop:
                        self._bg_cv.wait(0.1)
                if self._bg_error is not None:
                    snapshot.close()
                    raise OperationalError(f"background flush failed: {self._bg_error}")
                if target.version is None:
                    snapshot.close()
                    raise ClosedError("the engine is closing")
                version = target.version
            if all(f.largest_seq <= seq for f in version.all_files()):
                return BackupView(self, sequence=seq, point_time_us=point_us, commit_time_us=commit_us,
                                  version=version, column_families=cf_names, next_file=next_file,
                                  wal_next=wal_next, snapshot=snapshot, wal_files=wal_files,
                                  wal_pin=None if flush else log_number)
            snapshot.close()
        raise OperationalError("backup_view: bulk ingests kept landing while the view was cut; try again")

    def replay(self, records) -> int:
        """Apply WAL record payloads from this database's own history -- a restore replaying an
        archived WAL after the ingest that ``ingest`` replayed -- at their own sequence numbers
        and commit times; returns the latest sequence.

        Each record must follow on: its first sequence is ``latest_sequence + 1``
        (InvalidArgumentError otherwise, and nothing of that record is applied). Reserve
        records are taken as they are; an ingest record is refused (it needs its tables:
        replay it with ``ingest``). Operations on a column family the engine lacks are
        dropped. The records go to the WAL unsynced; ``flush`` or a synced write makes
        them durable.
        """
        with self._write_lock:
            self._check_writable()
            before = self._last_seq
            for payload in records:
                first, commit_us, ops = decode_batch(payload)
                if first != self._last_seq + 1:
                    raise InvalidArgumentError(f"a replayed record must start at sequence {self._last_seq + 1}, "
                                               f"not {first}")
                if ops and ops[0][0] == KIND_INGEST:
                    raise InvalidArgumentError("an ingest record is replayed with ingest() and its tables")
                self._make_room()
                try:
                    self._wal.add_record(payload)
                except StorageIOError as exc:
                    self._bg_error = exc
                    raise
                if ops and ops[0][0] != KIND_RESERVE:
                    mems = self._mems
                    seq = first
                    for kind, cf_id, key, value in ops:
                        mem = mems.get(cf_id)
                        if mem is not None:
                            mem.add(seq, kind, key, value)
                        seq += 1
                self._last_seq = first + len(ops) - 1
                self._last_commit_us = commit_us
            try:
                self._wal.flush()
            except StorageIOError as exc:
                self._bg_error = exc
                raise
            if self._visible_seq == before:
                self._visible_seq = self._last_seq
            elif self._visible_seq < self._last_seq:
                self._sync_and_publish(self._wal)   # writes before these still wait for their group-commit fsync
            return self._last_seq

    def _release_wal_pin(self, number: int) -> None:
        with self._write_lock:
            try:
                self._wal_pins.remove(number)
            except ValueError:
                pass

    @staticmethod
    def assemble(path, *, column_families: dict, files: list, last_sequence: int, next_file: int,
                 epoch: int, db_id: str | None = None, wal_records=(), num_levels: int = 7, fs=None) -> dict:
        """Make ``path`` (an existing directory holding the SSTables ``files`` names, as ``NNNNNN.sst``)
        a database: write a MANIFEST and CURRENT, and the WAL records to replay when it opens.

        ``column_families``: {cf_id: name} (must include 0, "default"); ``files``: MANIFEST "add" rows
        (``[cf_id, level, number, size, ...]``, docs/format.md); ``last_sequence``: the newest sequence
        in the files; ``next_file``: above every file number used; ``epoch``: the WAL epoch the
        database starts (a restore passes a new one); ``db_id``: None for a new id.
        ``wal_records``: WAL record payloads (encoded write batches, ``batch.encode_batch``), written to
        one new segment of ``epoch``; ``Engine.open`` replays them with their own sequence numbers.
        Every file is fsynced, then the directory. Returns ``{"files", "wal_records", "wal_number"}``.
        The database is usable only once this returns: a crash before leaves no CURRENT.
        """
        fs = fs or DEFAULT_FS
        path = os.fspath(path)
        if fs.exists(os.path.join(path, dbformat.CURRENT)):
            raise InvalidArgumentError(f"{path} already holds a database")
        if column_families.get(0) != "default":
            raise InvalidArgumentError("column family 0 must be 'default'")
        levels: dict[int, list[list[FileMeta]]] = {cf_id: [[] for _ in range(num_levels)]
                                                    for cf_id in column_families}
        top = next_file
        for row in files:
            cf_id, level, meta = FileMeta.from_json(row)
            if cf_id not in levels or not 0 <= level < num_levels:
                raise InvalidArgumentError(f"file {meta.number}: unknown column family {cf_id} or level {level}")
            name = os.path.join(path, dbformat.table_file_name(meta.number))
            if not fs.exists(name) or fs.file_size(name) != meta.size:
                raise InvalidArgumentError(f"{name} is missing or not {meta.size} bytes")
            levels[cf_id][level].append(meta)
            top = max(top, meta.number + 1)
            last_sequence = max(last_sequence, meta.largest_seq)
        wal_number = top
        writer = LogWriter(fs.open_writable(os.path.join(path, dbformat.wal_file_name(wal_number))),
                           magic=WAL_MAGIC, file_number=wal_number, epoch=epoch)
        count = 0
        try:
            for payload in wal_records:
                writer.add_record(payload)
                count += 1
            writer.sync()
        finally:
            writer.close()
        vs = VersionSet(fs, path, num_levels)
        vs.cf_names = dict(column_families)
        vs.current = Version({cf_id: vs._build_levels(lv) for cf_id, lv in levels.items()})
        vs.last_sequence = last_sequence
        vs.next_file = wal_number + 1
        vs.log_number = wal_number
        vs.epoch = epoch
        vs.db_id = db_id or new_db_id()
        for row in files:   # the SSTables' bytes must be durable before a MANIFEST names them
            f = fs.open_appendable(os.path.join(path, dbformat.table_file_name(row[2])))
            try:
                f.sync()
            finally:
                f.close()
        fs.sync_dir(path)
        vs._write_new_manifest()
        vs.close()
        fs.sync_dir(path)
        return {"files": len(files), "wal_records": count, "wal_number": wal_number}

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict:
        self._check_open()
        sv = self._sv
        version = sv.version
        levels = []
        for level in range(self.options.num_levels):
            files = [f for cf_id in version.cfs for f in version.level_files(cf_id, level)]
            levels.append({"level": level, "files": len(files), "bytes": sum(f.size for f in files)})
        mem_bytes = sum(m.approximate_bytes for m in sv.mems.values())
        imm_bytes = sum(m.approximate_bytes for imm in sv.imms for m in imm.values())
        out = {
            "sequence": self._visible_seq,
            "memtable_bytes": mem_bytes,
            "immutable_memtable_bytes": imm_bytes,
            "memtable_budget": self.options.memtable_bytes,
            "levels": levels,
            "files": sum(lv["files"] for lv in levels),
            "bytes": sum(lv["bytes"] for lv in levels),
            "column_families": {name: cf_id for cf_id, name in self._cf_names.items()},
            "snapshots": len(self._snapshots) - len(self._snaps_dropped),   # less those a finalizer let go
            "wal": {"number": self._wal_number, "bytes": self._wal.file.size(),
                    "torn_tail_bytes": self._stats["wal_torn_tail_bytes"],
                    "torn_tail_files": list(self._stats["wal_torn_tail_files"]),
                    "syncs": self._stats["wal_syncs"], "sync_mode": self.options.sync_mode,
                    "recovered_records": self._stats["recovered_records"],
                    "recovered_ingests": self._stats["recovered_ingests"],
                    "abandoned_files": list(self._stats["wal_abandoned_files"]),
                    "sealed": self._stats["wal_sealed"], "hold": self.versions.wal_hold},
            "torn_tail_bytes": self._stats["wal_torn_tail_bytes"],
            "manifest": {"number": self.versions.manifest_number,
                         "torn_tail_bytes": (self.versions.torn_tail or (0, 0))[1],
                         "orphaned_files": list(self._stats["manifest_orphaned_files"])},
            "block_cache": self.block_cache.stats(),
            "table_cache": {"open": len(self.table_cache), "capacity": self.options.max_open_files},
            "background_error": None if self._bg_error is None else str(self._bg_error),
        }
        for key in ("flushes", "compactions", "trivial_moves", "files_dropped_by_tombstone", "stall_seconds",
                    "slowdowns", "bytes_written", "bytes_compacted", "ingested_files", "ingested_bytes"):
            out[key] = self._stats[key]
        return out

    def __repr__(self) -> str:
        return f"Engine({self.path!r}{', closed' if self._closed else ''})"
