"""Versions: which SSTables make up each column family, level by level, and the MANIFEST that logs them.

A :class:`Version` is immutable. Flushes and compactions describe their effect
as a :class:`VersionEdit`, which is appended to the MANIFEST (a record log, see
``log.py``, whose records are UTF-8 JSON objects) and then applied to produce
the next Version. Iterators keep the Version they started from alive (plain
Python references); a file is deleted only when no live Version lists it.

MANIFEST record (JSON object; every field optional):
    {"next_file": int, "last_sequence": int, "log_number": int, "epoch": int,
     "db_id": str, "wal_hold": int,
     "cf_add": [[id, name], ...], "cf_drop": [id, ...],
     "delete": [[cf_id, level, file_number], ...],
     "add": [[cf_id, level, file_number, size, smallest_hex, largest_hex,
              largest_exclusive, smallest_seq, largest_seq, entries, range_deletions, droppable], ...]}
The first record after the log header is a full snapshot of the state; CURRENT
holds the name of the live MANIFEST followed by a newline.

Durability and recovery
An edit is acted upon -- its Version installed, the files it made obsolete
deleted, the WAL segments it flushed dropped, the caller answered -- only after
its append and fsync returned. Recovery reads the MANIFEST strictly:

- Damage anywhere, the last record included (a whole fragment whose checksum,
  type or length is wrong, or junk after zeros), is :class:`CorruptionError`
  naming the MANIFEST and the record's offset: a crash does not write bad bytes
  into a whole record, so a synced edit was lost.
- An incomplete last record (the file ends inside it, or turns to zeros in
  it or where it should start) is what an interrupted append leaves: a kill -9
  during the write() of a multi-page edit, a power loss before its fsync
  returned, a failed write. Such an edit was never acted upon, so the version
  before it is one the database really was in -- and then nothing it needs is
  gone. That is checked (below); if it holds, the tail is dropped
  (``torn_tail``) and the engine renames every table the recovered version
  does not list to ``NNNNNN.sst.orphan`` instead of deleting it: open deletes
  no table on a recovery path that dropped MANIFEST bytes. If it does not
  hold, the lost bytes were synced and acted upon: CorruptionError naming the
  MANIFEST and the offset of the incomplete record.
- Always, the recovered version must be whole: every table it lists is on
  disk (a lost compaction or column family drop deleted its inputs), and so is
  the WAL segment its ``log_number`` names when an edit after the snapshot set
  it (such a segment exists before the edit naming it is written and is
  deleted only after a later edit moved ``log_number`` past it: a lost flush
  deleted it). Otherwise CorruptionError naming the MANIFEST: it lost edits (a
  cut at a record boundary leaves no other trace), or a file was deleted.

A cut whose lost edits left no such trace (nothing they made obsolete was
deleted yet) cannot be told from a crash mid-append: the database opens at the
older version, with the tables of those edits set aside, and says so
(``Engine.stats()["manifest"]``, a warning of ``tabledb check``).

A failed append or sync leaves the MANIFEST ending in part of an edit, or in a
whole edit that was never applied: the next edit goes to a new MANIFEST (the
current state as its snapshot), never after it.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import weakref
from bisect import bisect_left
from dataclasses import dataclass, field

from tabledb.errors import CorruptionError, Error
from tabledb.storage import dbformat
from tabledb.storage.log import MANIFEST_MAGIC, LogReader, LogWriter, read_log_reader

MAX_MANIFEST_BYTES = 4 << 20


@dataclass(frozen=True, eq=False)
class FileMeta:
    number: int
    size: int
    smallest: bytes
    largest: bytes
    largest_exclusive: bool
    smallest_seq: int
    largest_seq: int        # an upper bound of the file's sequences: exact, except for an ingested file,
                            # which records the latest sequence when it was ingested (L0 sorts by it)
    entries: int
    range_deletions: int
    # True when a bottom-level rewrite could drop something: the file holds point deletes,
    # range tombstones or more than one version of a key (kept for snapshots).
    droppable: bool = True

    def overlaps(self, start: bytes | None, last: bytes | None) -> bool:
        """True when the file's key range meets the inclusive range [start, last] (None = unbounded)."""
        if start is not None and (self.largest < start or (self.largest_exclusive and self.largest == start)):
            return False
        if last is not None and self.smallest > last:
            return False
        return True

    def to_json(self, cf_id: int, level: int) -> list:
        return [cf_id, level, self.number, self.size, self.smallest.hex(), self.largest.hex(),
                self.largest_exclusive, self.smallest_seq, self.largest_seq, self.entries, self.range_deletions,
                self.droppable]

    @staticmethod
    def from_json(row: list) -> tuple[int, int, "FileMeta"]:
        cf_id, level, number, size, smallest, largest, excl, sseq, lseq, entries, rdel = row[:11]
        droppable = bool(row[11]) if len(row) > 11 else True
        return cf_id, level, FileMeta(number, size, bytes.fromhex(smallest), bytes.fromhex(largest),
                                      bool(excl), sseq, lseq, entries, rdel, droppable)


def new_db_id() -> str:
    """A fresh database id: 32 lowercase hex digits (a random UUID)."""
    return uuid.uuid4().hex


class LevelFiles:
    """The files of one level >= 1: sorted by key, not overlapping, with a search list."""

    __slots__ = ("files", "largests")

    def __init__(self, files: list[FileMeta]):
        self.files = files
        self.largests = [f.largest for f in files]

    def find(self, key: bytes) -> FileMeta | None:
        i = bisect_left(self.largests, key)
        files = self.files
        while i < len(files):
            f = files[i]
            if f.largest_exclusive and f.largest == key:
                i += 1
                continue
            return f if f.smallest <= key else None
        return None

    def overlapping(self, start: bytes | None, last: bytes | None) -> list[FileMeta]:
        """Files meeting the inclusive range [start, last]; a binary search finds the first."""
        files = self.files
        i = 0 if start is None else bisect_left(self.largests, start)
        out = []
        while i < len(files):
            f = files[i]
            if last is not None and f.smallest > last:
                break
            if f.overlaps(start, last):
                out.append(f)
            i += 1
        return out


class Version:
    """An immutable list of files per column family and level (L0 newest first)."""

    __slots__ = ("cfs", "deeper", "__weakref__")

    def __init__(self, cfs: dict[int, list]):
        # cfs[cf_id] = [l0_files (newest first), LevelFiles(L1), LevelFiles(L2), ...]
        self.cfs = cfs
        # deeper[cf_id] = the non-empty levels below L0, top down (what a point read walks)
        self.deeper = {cf_id: [lf for lf in levels[1:] if lf.files] for cf_id, levels in cfs.items()}

    def levels(self, cf_id: int) -> list:
        return self.cfs[cf_id]

    def all_files(self):
        for levels in self.cfs.values():
            yield from levels[0]
            for lf in levels[1:]:
                yield from lf.files

    def level_files(self, cf_id: int, level: int) -> list[FileMeta]:
        lv = self.cfs[cf_id][level]
        return lv if level == 0 else lv.files


@dataclass
class VersionEdit:
    add: list = field(default_factory=list)       # (cf_id, level, FileMeta)
    delete: list = field(default_factory=list)    # (cf_id, level, file_number)
    cf_add: list = field(default_factory=list)    # (cf_id, name)
    cf_drop: list = field(default_factory=list)   # cf_id
    next_file: int | None = None
    last_sequence: int | None = None
    log_number: int | None = None
    epoch: int | None = None
    db_id: str | None = None      # the database's id (a uuid4 hex), set at creation
    wal_hold: int | None = None   # keep sealed WAL segments numbered >= this (0: no hold); see Engine.hold_wal

    def encode(self) -> bytes:
        obj: dict = {}
        for name in ("next_file", "last_sequence", "log_number", "epoch", "db_id", "wal_hold"):
            value = getattr(self, name)
            if value is not None:
                obj[name] = value
        if self.cf_add:
            obj["cf_add"] = [[i, n] for i, n in self.cf_add]
        if self.cf_drop:
            obj["cf_drop"] = list(self.cf_drop)
        if self.delete:
            obj["delete"] = [list(d) for d in self.delete]
        if self.add:
            obj["add"] = [meta.to_json(cf, level) for cf, level, meta in self.add]
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, *, file: str, offset: int) -> "VersionEdit":
        try:
            obj = json.loads(data)
            edit = cls(next_file=obj.get("next_file"), last_sequence=obj.get("last_sequence"),
                       log_number=obj.get("log_number"), epoch=obj.get("epoch"),
                       db_id=obj.get("db_id"), wal_hold=obj.get("wal_hold"))
            if edit.db_id is not None and not isinstance(edit.db_id, str):
                raise ValueError("db_id must be a string")
            edit.cf_add = [(int(i), str(n)) for i, n in obj.get("cf_add", ())]
            edit.cf_drop = [int(i) for i in obj.get("cf_drop", ())]
            edit.delete = [tuple(int(x) for x in d) for d in obj.get("delete", ())]
            edit.add = [FileMeta.from_json(row) for row in obj.get("add", ())]
        except (ValueError, TypeError, KeyError) as exc:
            raise CorruptionError(f"malformed MANIFEST record: {exc}", file=file, offset=offset) from None
        return edit


class VersionSet:
    """The current Version, the column family names and the counters, persisted in the MANIFEST.

    Thread-safety: ``log_and_apply`` and the counters are guarded by one lock;
    ``current`` may be read without it (reference assignment is atomic).
    """

    def __init__(self, fs, dbpath: str, num_levels: int):
        self.fs = fs
        self.dbpath = dbpath
        self.num_levels = num_levels
        self.lock = threading.RLock()
        self.current = Version({})
        self.cf_names: dict[int, str] = {}
        self.next_file = 2
        self.last_sequence = 0
        self.log_number = 0
        self.epoch = 0
        self.db_id: str | None = None
        self.wal_hold = 0
        self.manifest_number = 0
        # (offset, bytes) of the incomplete last record that recovery dropped; None when there was none
        self.torn_tail: tuple[int, int] | None = None
        self._manifest: LogWriter | None = None
        self._manifest_failed = False   # an append or sync failed: start a new MANIFEST before the next edit
        self._live_versions: weakref.WeakSet = weakref.WeakSet()

    # -- numbers ---------------------------------------------------------------------------
    def new_file_number(self) -> int:
        with self.lock:
            n = self.next_file
            self.next_file += 1
            return n

    # -- recovery --------------------------------------------------------------------------
    def create_new(self) -> None:
        """Initialise an empty database: the default column family, a MANIFEST and CURRENT."""
        self.cf_names = {0: "default"}
        self.current = Version({0: self._empty_levels()})
        self.db_id = new_db_id()
        self._write_new_manifest()

    def recover(self) -> None:
        current_path = os.path.join(self.dbpath, dbformat.CURRENT)
        raw = self.fs.read_file(current_path)
        name = raw.decode("utf-8", "replace").strip()
        parsed = dbformat.parse_file_name(name)
        if not raw.endswith(b"\n") or parsed is None or parsed[0] != "manifest":
            raise CorruptionError(f"CURRENT does not name a MANIFEST: {raw[:64]!r}", file=current_path, offset=0)
        path = os.path.join(self.dbpath, name)
        if not self.fs.exists(path):
            raise CorruptionError(f"CURRENT names {name}, which is missing", file=current_path, offset=0)
        records, reader = read_log_reader(self.fs, path, magic=MANIFEST_MAGIC, preallocated=False)
        if reader.torn_bytes and reader.torn_kind == "damage":
            raise CorruptionError(f"damaged MANIFEST record ({reader.torn_reason}): an edit that was synced "
                                  "is lost", file=path, offset=reader.torn_offset)
        if not records:
            raise CorruptionError("MANIFEST holds no version", file=path, offset=0)
        cfs: dict[int, list[list[FileMeta]]] = {}
        added_at: dict[int, int] = {}   # table number -> offset of the record that added it
        log_set_at = None               # offset of the edit after the snapshot that set log_number
        for i, (offset, payload) in enumerate(records):
            edit = VersionEdit.decode(payload, file=path, offset=offset)
            self._apply_counters(edit)
            if edit.log_number is not None and edit.log_number == self.log_number:
                log_set_at = offset if i else None
            for cf_id, name_ in edit.cf_add:
                self.cf_names[cf_id] = name_
                cfs.setdefault(cf_id, [[] for _ in range(self.num_levels)])
            for cf_id in edit.cf_drop:
                self.cf_names.pop(cf_id, None)
                cfs.pop(cf_id, None)
            for cf_id, level, number in edit.delete:
                if cf_id in cfs:
                    cfs[cf_id][level] = [f for f in cfs[cf_id][level] if f.number != number]
            for cf_id, level, meta in edit.add:
                if cf_id in cfs:
                    cfs[cf_id][level].append(meta)
                    added_at[meta.number] = offset
        self.current = Version({cf: self._build_levels(levels) for cf, levels in cfs.items()})
        self._check_whole(path, reader, added_at, log_set_at)
        if reader.torn_bytes:
            self.torn_tail = (reader.torn_offset, reader.torn_bytes)
        self.manifest_number = parsed[1]
        if self.db_id is None:   # a database made before ids existed gets one now
            self.db_id = new_db_id()
        # Start a fresh MANIFEST on every open: it compacts the edit log.
        self._write_new_manifest()

    def _check_whole(self, path: str, reader: LogReader, added_at: dict, log_set_at: int | None) -> None:
        """Recovery: raise CorruptionError naming the MANIFEST unless every table the recovered
        version lists is on disk, and the WAL segment ``log_number`` names when an edit set it
        (see the module docstring)."""
        names = set(self.fs.listdir(self.dbpath))
        missing = sorted(f.number for f in self.current.all_files()
                         if dbformat.table_file_name(f.number) not in names)
        if missing:
            what = (f"it lists {len(missing)} table(s) that are missing, e.g. "
                    f"{dbformat.table_file_name(missing[0])}")
            offset = added_at.get(missing[0], 0)
        elif log_set_at is not None and self.log_number and dbformat.wal_file_name(self.log_number) not in names:
            what = f"the WAL segment it replays from ({dbformat.wal_file_name(self.log_number)}) is missing"
            offset = log_set_at
        else:
            return
        if reader.torn_bytes:
            raise CorruptionError(
                f"the MANIFEST ends in an incomplete record ({reader.torn_bytes} bytes: {reader.torn_reason}) "
                f"and the version before it is not whole: {what}. The edits from there on were synced and "
                "acted upon, and are lost", file=path, offset=reader.torn_offset)
        raise CorruptionError(f"the MANIFEST's version is not whole: {what} (recorded by the edit at offset "
                              f"{offset}); the MANIFEST lost later edits, or the file was removed",
                              file=path, offset=offset)

    def _apply_counters(self, edit: VersionEdit) -> None:
        if edit.next_file is not None:
            self.next_file = max(self.next_file, edit.next_file)
        if edit.last_sequence is not None:
            self.last_sequence = max(self.last_sequence, edit.last_sequence)
        if edit.log_number is not None:
            self.log_number = max(self.log_number, edit.log_number)
        if edit.epoch is not None:
            self.epoch = edit.epoch
        if edit.db_id is not None:
            self.db_id = edit.db_id
        if edit.wal_hold is not None:
            self.wal_hold = edit.wal_hold

    def _empty_levels(self) -> list:
        return [[]] + [LevelFiles([]) for _ in range(self.num_levels - 1)]

    def _build_levels(self, levels: list[list[FileMeta]]) -> list:
        l0 = sorted(levels[0], key=lambda f: (f.largest_seq, f.number), reverse=True)
        return [l0] + [LevelFiles(sorted(files, key=lambda f: f.smallest)) for files in levels[1:]]

    # -- the MANIFEST ------------------------------------------------------------------------
    def _snapshot_edit(self) -> VersionEdit:
        edit = VersionEdit(next_file=self.next_file, last_sequence=self.last_sequence,
                           log_number=self.log_number, epoch=self.epoch, db_id=self.db_id,
                           wal_hold=self.wal_hold)
        edit.cf_add = sorted(self.cf_names.items())
        for cf_id, levels in self.current.cfs.items():
            for level in range(self.num_levels):
                for meta in self.current.level_files(cf_id, level):
                    edit.add.append((cf_id, level, meta))
        return edit

    def _write_new_manifest(self) -> None:
        """Write the whole state to a new MANIFEST, then point CURRENT at it atomically."""
        number = self.next_file
        self.next_file += 1
        name = dbformat.manifest_file_name(number)
        path = os.path.join(self.dbpath, name)
        f = self.fs.open_writable(path)
        try:
            writer = LogWriter(f, magic=MANIFEST_MAGIC, file_number=number, epoch=self.epoch)
            writer.add_record(self._snapshot_edit().encode())
            writer.sync()
            self.fs.sync_dir(self.dbpath)
            self.fs.write_file_atomic(os.path.join(self.dbpath, dbformat.CURRENT), (name + "\n").encode())
        except BaseException:
            # CURRENT may name the old MANIFEST or this one: append to neither; the next edit tries again.
            self._manifest_failed = True
            try:
                f.close()
            except Exception:
                pass
            raise
        self._manifest_failed = False
        old, self._manifest = self._manifest, writer
        old_number, self.manifest_number = self.manifest_number, number
        if old is not None:
            try:
                old.close()
            except Error:
                pass   # after a failed append its buffer may not flush: the file goes anyway
        if old_number and old_number != number:
            self.fs.remove(os.path.join(self.dbpath, dbformat.manifest_file_name(old_number)))

    def log_and_apply(self, edit: VersionEdit) -> Version:
        """Make ``edit`` durable in the MANIFEST, then install the Version it yields."""
        with self.lock:
            if self._manifest_failed:
                # The last append or sync failed: the file may end in part of that edit, or in all
                # of it though it was never applied. Nothing goes after it: a new MANIFEST first.
                self._write_new_manifest()
            if edit.add:
                # New SSTables must be durable names in the directory before the MANIFEST names them.
                self.fs.sync_dir(self.dbpath)
            edit.next_file = self.next_file
            if edit.last_sequence is not None:
                edit.last_sequence = max(edit.last_sequence, self.last_sequence)
            new = self._apply(edit)
            try:
                self._manifest.add_record(edit.encode())
                self._manifest.sync()
            except BaseException:
                self._manifest_failed = True
                raise
            self._apply_counters(edit)
            self._install(new)
            for cf_id, name in edit.cf_add:
                self.cf_names[cf_id] = name
            for cf_id in edit.cf_drop:
                self.cf_names.pop(cf_id, None)
            if self._manifest.file.size() > MAX_MANIFEST_BYTES:
                try:
                    self._write_new_manifest()
                except Error:
                    pass   # the edit is durable in the old MANIFEST or in the new one; the next edit tries again
            return new

    def _install(self, version: Version) -> None:
        self._live_versions.add(self.current)
        self.current = version

    def _apply(self, edit: VersionEdit) -> Version:
        cfs = dict(self.current.cfs)
        for cf_id, _ in edit.cf_add:
            cfs[cf_id] = self._empty_levels()
        for cf_id in edit.cf_drop:
            cfs.pop(cf_id, None)
        changed: dict[int, list[list[FileMeta]]] = {}

        def levels_of(cf_id):
            if cf_id not in changed:
                cur = cfs[cf_id]
                changed[cf_id] = [list(cur[0])] + [list(lf.files) for lf in cur[1:]]
            return changed[cf_id]

        for cf_id, level, number in edit.delete:
            if cf_id in cfs:
                lv = levels_of(cf_id)
                lv[level] = [f for f in lv[level] if f.number != number]
        for cf_id, level, meta in edit.add:
            if cf_id in cfs:
                levels_of(cf_id)[level].append(meta)
        for cf_id, levels in changed.items():
            cfs[cf_id] = self._build_levels(levels)
        return Version(cfs)

    def live_file_numbers(self) -> set[int]:
        """Numbers of every SSTable that the current or any still-referenced Version lists."""
        live = {f.number for f in self.current.all_files()}
        for v in list(self._live_versions):
            live.update(f.number for f in v.all_files())
        return live

    def close(self) -> None:
        with self.lock:
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None
