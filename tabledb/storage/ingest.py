"""Bulk ingestion: SSTables built outside the engine and added to it whole (RocksDB's IngestExternalFile).

The life of an ingested file::

    seq = db.reserve_sequence()                  # S: durable in the MANIFEST, never handed out again
    with db.sst_writer(path, cf, sequence=seq) as w:   # an ExternalTableWriter
        w.delete_range(b"t1", b"t2")             # optional: clear the target range (at S)
        for key, value in rows:                  # keys strictly ascending
            w.put(key, value)                    # every entry at S
    db.ingest([path], cf)                        # verify, place, link or copy, one MANIFEST edit

Sequence numbers: every entry and range tombstone of a file written here
carries S. A range tombstone at S hides versions *below* S, so the file's own
puts at S stay visible ("clear the range, then load it"). Readers at a
sequence below S do not see the file; writes after the ingest win over it.

Where a file lands (``choose_level``): at the deepest level where it overlaps
no file of that level or of any level above it, so that everything older of
its key range lies below it; if it overlaps an L0 file, it becomes the newest
L0 file. Its FileMeta records ``largest_seq`` as the engine's last sequence at
ingestion (at least S): that orders it above every L0 file that existed then,
and is still an upper bound of its sequences, which is all the engine
assumes of ``largest_seq`` elsewhere.

What ``Engine.ingest`` checks before anything changes: every block checksum
and the entry order of each file (``SSTableReader.verify``), its column
family, that its sequences are already handed out (<= the latest sequence),
that the files do not overlap each other, and that no entry or tombstone of
the column family in a file's key range has a sequence >= the file's
smallest sequence (a write into the range after ``reserve_sequence``: the
ingested data could not be ordered against it). That last check looks at
what is in the tree; a write whose every trace compaction already removed (a
put and a later delete of one key, both gone at the bottom level) cannot be
found. Do not write into a range between reserving its sequence and ingesting.

All or nothing, across a crash: each file enters the directory under a
pending number (a hard link or a copy, fsynced), is renamed under the write
and compaction locks to a fresh number, the directory is fsynced, and then one
MANIFEST record names every file. Until that record is durable no MANIFEST
names any of them, and the next open deletes them as orphans (every table no
Version lists is deleted); once it is durable, the names and bytes it points
to were durable before it. A moved source is removed only afterwards, so a
failed ingest leaves it in place for a retry. The reserved sequence is a
MANIFEST edit too (``last_sequence``), which is why recovery replays every
WAL record of the segments at or above ``log_number`` whatever its sequence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tabledb.errors import InvalidArgumentError, InvalidTypeError
from tabledb.storage import dbformat
from tabledb.storage.batch import check_key, check_range
from tabledb.storage.compaction import merge_adjacent
from tabledb.storage.dbformat import KIND_DELETE, KIND_PUT, MAX_SEQUENCE
from tabledb.storage.rangedel import RangeTombstones
from tabledb.storage.sstable import SSTableReader, SSTableWriter, TableProperties
from tabledb.storage.version import FileMeta, Version

_BYTES = {bytes}
# Names an engine owns inside its directory; an external file must not take one.
_RESERVED_NAMES = (dbformat.CURRENT, dbformat.LOCK, dbformat.CURRENT + ".tmp")


def check_external_path(path, dbpath: str) -> str:
    """``path`` as a str; InvalidArgumentError if it would collide with a file the engine manages."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"an external file path must be a str or os.PathLike, not {type(path).__name__}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    if directory == os.path.abspath(dbpath) and (dbformat.parse_file_name(name) is not None
                                                  or name in _RESERVED_NAMES):
        raise InvalidArgumentError(f"{path} is a name the engine manages; pick another name for an external file")
    return path


class ExternalTableWriter:
    """Builds one SSTable outside the engine; every entry carries ``sequence``. Made by ``Engine.sst_writer``.

    ``put``/``delete`` take keys in strictly ascending order (InvalidArgumentError
    otherwise); ``delete_range`` may come in any order, before or after them.
    ``close()`` (or leaving the ``with`` block) finishes the file: checksums as in
    every SSTable, then the file and its directory are fsynced. Leaving the ``with``
    block with an exception abandons the file and removes it. Not thread-safe.
    """

    def __init__(self, fs, path: str, *, cf_id: int, sequence: int, block_size: int,
                 bloom_bits_per_key: int, compression: str | None):
        self.path = path
        self.sequence = sequence
        self.cf_id = cf_id
        self.properties: TableProperties | None = None   # set by close()
        self._fs = fs
        self._put_trailer = dbformat.pack_trailer(sequence, KIND_PUT)
        self._delete_trailer = dbformat.pack_trailer(sequence, KIND_DELETE)
        self._tombstones = RangeTombstones()
        self._last_key: bytes | None = None
        self._writer = SSTableWriter(fs.open_writable(path), file_number=0, cf_id=cf_id, block_size=block_size,
                                     bloom_bits_per_key=bloom_bits_per_key, compression=compression)
        self._add = self._writer.add
        self._done = False

    def __enter__(self) -> "ExternalTableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def _check_next(self, key) -> bytes:
        if type(key) is not bytes:
            key = check_key(key)
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        last = self._last_key
        if last is not None and key <= last:
            raise InvalidArgumentError(f"keys must be strictly ascending: {key!r} after {last!r}")
        self._last_key = key
        return key

    def put(self, key, value) -> None:
        """Add ``key`` = ``value`` at the writer's sequence. REQUIRES: ``key`` above every earlier key."""
        key = self._check_next(key)
        if type(value) is not bytes:
            value = check_key(value, "value")
        self._add(key, self._put_trailer, value)

    def put_many(self, keys, values) -> None:
        """``put`` each pair of the sequences ``keys`` and ``values`` (lists of bytes: the fast path
        for a column of a batch). REQUIRES: keys strictly ascending, above every earlier key;
        on InvalidArgumentError nothing of the call was added."""
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        keys = keys if type(keys) is list else list(keys)
        values = values if type(values) is list else list(values)
        if not {*map(type, keys)} <= _BYTES:
            keys = [check_key(k) for k in keys]
        if not {*map(type, values)} <= _BYTES:
            values = [check_key(v, "value") for v in values]
        if keys and self._last_key is not None and keys[0] <= self._last_key:
            raise InvalidArgumentError(f"keys must be strictly ascending: {keys[0]!r} after {self._last_key!r}")
        self._writer.add_run(keys, self._put_trailer, values)
        if keys:
            self._last_key = keys[-1]

    def delete(self, key) -> None:
        """Add a point delete of ``key`` (hides older versions). REQUIRES: ``key`` above every earlier key."""
        self._add(self._check_next(key), self._delete_trailer, b"")

    def delete_range(self, start, end) -> None:
        """Add a range tombstone ``[start, end)`` at the writer's sequence: it hides the versions of
        those keys already in the database (below the sequence), not this file's own puts."""
        start, end = check_range(start, end)
        if self._done:
            raise InvalidArgumentError("the external table writer is closed")
        self._tombstones.add(start, end, self.sequence)

    @property
    def num_entries(self) -> int:
        return self._writer.num_entries

    def close(self) -> TableProperties:
        """Finish the file and make it durable; return its properties. Idempotent."""
        if self.properties is not None:
            return self.properties
        if self._done:
            raise InvalidArgumentError("the external table writer was abandoned")
        self._done = True
        try:
            if self._tombstones.count:
                self._writer.add_range_tombstones(merge_adjacent(self._tombstones.fragments()))
            props = self._writer.finish()
            self._fs.sync_dir(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            self._writer.abandon()
            self._fs.remove(self.path)
            raise
        self.properties = props
        return props

    def abandon(self) -> None:
        """Stop without finishing; the partial file is removed."""
        if self._done:
            return
        self._done = True
        self._writer.abandon()
        self._fs.remove(self.path)


@dataclass
class ExternalFile:
    """An input of ``Engine.ingest`` once verified."""

    path: str
    size: int
    props: TableProperties
    distinct_keys: int
    file_crc: int = 0          # the footer's masked CRC-32C of the bytes before it (the WAL's ingest op)

    @property
    def empty(self) -> bool:
        return self.props.smallest_key is None

    @property
    def smallest(self) -> bytes:
        return self.props.smallest_key

    @property
    def largest(self) -> bytes:
        return self.props.largest_key

    @property
    def largest_exclusive(self) -> bool:
        return bool(self.props.largest_is_range_end)

    @property
    def end(self) -> bytes:
        """The exclusive upper bound of the file's keys."""
        return self.largest if self.largest_exclusive else self.largest + b"\x00"

    def file_meta(self, number: int, largest_seq: int) -> FileMeta:
        p = self.props
        return FileMeta(number=number, size=self.size, smallest=self.smallest, largest=self.largest,
                        largest_exclusive=self.largest_exclusive, smallest_seq=p.smallest_seq,
                        largest_seq=max(p.largest_seq, largest_seq), entries=p.num_entries,
                        range_deletions=p.num_range_tombstones,
                        droppable=bool(p.num_deletions or p.num_range_tombstones
                                       or self.distinct_keys != p.num_entries))


def inspect_external_file(fs, path: str) -> ExternalFile:
    """Open and verify ``path`` (every block, entry order, whole-file CRC). CorruptionError names it."""
    if not fs.exists(path):
        raise InvalidArgumentError(f"external file {path} does not exist")
    reader = SSTableReader.open(fs.open_readable(path), file_number=0)
    try:
        distinct = reader.verify()
        size = reader.properties.file_size
        return ExternalFile(path, size, reader.properties, distinct, reader.file_crc)
    finally:
        reader.close()


def check_inputs(files: list[ExternalFile], cf_id: int, last_sequence: int) -> None:
    """InvalidArgumentError unless every file belongs to ``cf_id``, uses handed-out sequences,
    and no two files overlap."""
    for f in files:
        if f.props.cf_id != cf_id:
            raise InvalidArgumentError(f"{f.path} was built for column family id {f.props.cf_id}, "
                                       f"not {cf_id}")
        if f.props.largest_seq > last_sequence or f.props.largest_seq > MAX_SEQUENCE:
            raise InvalidArgumentError(f"{f.path} holds sequence {f.props.largest_seq}, above the latest "
                                       f"sequence {last_sequence}: reserve it with reserve_sequence() first")
    ordered = sorted((f for f in files if not f.empty), key=lambda f: f.smallest)
    for a, b in zip(ordered, ordered[1:]):
        if b.smallest < a.end:
            raise InvalidArgumentError(f"external files overlap: {a.path} and {b.path}")


def overlaps(f: FileMeta, lo: bytes, end: bytes) -> bool:
    """True when ``f``'s keys meet ``[lo, end)``."""
    if f.smallest >= end:
        return False
    return lo < f.largest if f.largest_exclusive else lo <= f.largest


def choose_level(version: Version, cf_id: int, f: ExternalFile) -> int:
    """The deepest level whose files and every level's above it miss ``f``'s key range (0 if L0 meets it)."""
    levels = version.cfs[cf_id]
    lo, end = f.smallest, f.end
    if any(overlaps(g, lo, end) for g in levels[0]):
        return 0
    for level in range(1, len(levels)):
        if any(overlaps(g, lo, end) for g in levels[level].overlapping(lo, f.largest)):
            return level - 1
    return len(levels) - 1


def memtable_overlaps(mem, lo: bytes, end: bytes) -> bool:
    """True when ``mem`` holds an entry or a range tombstone in ``[lo, end)``."""
    if mem.empty:
        return False
    if next(mem.iter_entries(lo, end), None) is not None:
        return True
    return bool(mem.tombstones.count and mem.tombstones.fragments(lo, end))


def newer_write_in_range(version: Version, cf_id: int, table, lo: bytes, end: bytes, min_seq: int) -> str | None:
    """Describe an entry or tombstone of ``cf_id``'s files in ``[lo, end)`` with a sequence >= ``min_seq``.

    None when there is none. Only files whose largest sequence reaches ``min_seq``
    are read, and of those only the blocks of the range.
    """
    levels = version.cfs[cf_id]
    candidates = list(levels[0]) + [g for lf in levels[1:] for g in lf.overlapping(lo, end)]
    for g in candidates:
        if g.largest_seq < min_seq or not overlaps(g, lo, end):
            continue
        reader = table(g.number)
        for s, e, seqs in reader.range_tombstones:
            if s < end and lo < e and seqs[0] >= min_seq:
                return f"a range delete [{s!r}, {e!r}) at sequence {seqs[0]}"
        for keys, trailers, _, _ in reader.iter_blocks(lo, end, fill_cache=False):
            if max(trailers) >> 8 >= min_seq:
                key, seq = next((k, t >> 8) for k, t in zip(keys, trailers) if t >> 8 >= min_seq)
                return f"{key!r} at sequence {seq}"
    return None
