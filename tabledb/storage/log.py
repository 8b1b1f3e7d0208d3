"""The record log: the file format of WAL segments and of the MANIFEST.

As in LevelDB (``doc/log_format.md``) a log file is a sequence of 32 KiB
blocks; a record is split into fragments that never cross a block boundary::

    fragment := checksum: u32 | length: u16 | type: u8 | data: length bytes
    checksum  = mask_crc(crc32c(type byte + data))       (little-endian)
    type      = FULL 1 | FIRST 2 | MIDDLE 3 | LAST 4

A block whose remaining space is under 7 bytes (a fragment header) is padded
with zeros. The first record of every log file is a header record::

    magic: 6 bytes (b"TDBWAL" or b"TDBMAN") | version: u16 | file_number: u64 | epoch: u64

Reading
- Zeros where a fragment header should be, with only zeros after them to the
  end of the file, end a preallocated log cleanly: WAL segments are
  preallocated ahead of their writes (a record begun before them is torn).
  Zeros over a header with non-zero bytes later in the file are no clean end
  but a torn tail, from the zeros (or the record they interrupt) to the last
  non-zero byte. A log that is not preallocated (the MANIFEST) has no zero
  tail: zeros where a record should be are a torn tail too.
- A damaged or incomplete fragment at the end of the file (a torn write: the
  process or the machine died mid-append) ends the log: the reader stops there
  and reports the number of bytes it dropped (``LogReader.torn_bytes``), where
  they start (``torn_offset``) and their shape (``torn_kind``): ``"cut"`` (the
  file ends inside a record), ``"zeros"`` (zeros from inside a record, or
  where one should start, to the end of the file) -- the two shapes an
  interrupted append leaves -- or ``"damage"`` (a whole fragment whose
  checksum, type or length is wrong, or junk after zeros). The WAL drops any torn tail; the MANIFEST accepts only the first two
  (see ``version.py``).
- Damage followed by at least one valid record is corruption in the middle of
  the log: :class:`CorruptionError` names the file and the offset of the first
  bad fragment. A log is never half-applied: records are only handed out whole.
"""

from __future__ import annotations

import struct

from tabledb.errors import CorruptionError
from tabledb.storage.dbformat import crc32c, mask_crc

BLOCK_SIZE = 32768
HEADER = struct.Struct("<IHB")
HEADER_SIZE = HEADER.size
assert HEADER_SIZE == 7

ZERO_TYPE = 0
FULL = 1
FIRST = 2
MIDDLE = 3
LAST = 4

FILE_HEADER = struct.Struct("<6sHQQ")
assert FILE_HEADER.size == 24
LOG_FORMAT_VERSION = 1
WAL_MAGIC = b"TDBWAL"
MANIFEST_MAGIC = b"TDBMAN"

# Precomputed CRC state after the type byte, so a fragment's checksum is one C call.
_TYPE_CRC = [crc32c(bytes([t])) for t in range(5)]
_ZERO_PAD = b"\x00" * HEADER_SIZE


class LogWriter:
    """Appends records to a ``WritableFile``. Not thread-safe: the engine serialises writers.

    ``add_record`` only buffers in user space; call ``flush`` (reaches the OS)
    or ``sync`` (reaches the disk) to make records survive a crash.
    """

    __slots__ = ("file", "_block_offset", "file_number")

    def __init__(self, file, *, magic: bytes, file_number: int, epoch: int = 0):
        self.file = file
        self.file_number = file_number
        self._block_offset = file.size() % BLOCK_SIZE
        if file.size() == 0:
            self.add_record(FILE_HEADER.pack(magic, LOG_FORMAT_VERSION, file_number, epoch))

    def add_record(self, data: bytes) -> int:
        """Append one record; returns the number of bytes written (headers and padding included)."""
        n = len(data)
        left = BLOCK_SIZE - self._block_offset
        if n + HEADER_SIZE <= left:  # fast path: the record fits the current block
            crc = mask_crc(crc32c(data, _TYPE_CRC[FULL]))
            self.file.append(HEADER.pack(crc, n, FULL) + data)
            self._block_offset += n + HEADER_SIZE
            if self._block_offset > BLOCK_SIZE - HEADER_SIZE:
                self._pad()
            return n + HEADER_SIZE
        return self._add_fragmented(data)

    def _pad(self) -> int:
        left = BLOCK_SIZE - self._block_offset
        if left:
            self.file.append(_ZERO_PAD[:left])
        self._block_offset = 0
        return left

    def _add_fragmented(self, data: bytes) -> int:
        written = 0
        view = memoryview(data)
        pos = 0
        first = True
        while True:
            left = BLOCK_SIZE - self._block_offset
            if left < HEADER_SIZE:
                written += self._pad()
                left = BLOCK_SIZE
            avail = left - HEADER_SIZE
            chunk = view[pos:pos + avail]
            pos += len(chunk)
            end = pos >= len(data)
            kind = FULL if first and end else FIRST if first else LAST if end else MIDDLE
            crc = mask_crc(crc32c(chunk, _TYPE_CRC[kind]))
            self.file.append(HEADER.pack(crc, len(chunk), kind) + bytes(chunk))
            self._block_offset += HEADER_SIZE + len(chunk)
            written += HEADER_SIZE + len(chunk)
            first = False
            if end:
                if self._block_offset > BLOCK_SIZE - HEADER_SIZE:
                    written += self._pad()
                return written

    def flush(self) -> None:
        self.file.flush()

    def sync(self) -> None:
        self.file.sync()

    def close(self) -> None:
        self.file.close()


class LogReader:
    """Reads the records of one log file in order, checking every checksum.

    Iterate to get ``(offset, payload)`` pairs; ``offset`` is the file offset of
    the record's first fragment. After iteration, ``torn_bytes`` is how many
    bytes of damaged or incomplete tail were dropped (0: none), ``torn_offset``
    where they start, ``torn_kind`` and ``torn_reason`` what they were (see the
    module docstring), and ``header`` holds the file header ``(magic, version,
    file_number, epoch)``. ``preallocated``: whether zeros to the end of the file
    are a clean end (WAL segments) or a torn tail (the MANIFEST).
    """

    def __init__(self, file, *, magic: bytes, preallocated: bool = True):
        self.file = file
        self.path = file.path
        self.magic = magic
        self.preallocated = preallocated
        self.torn_bytes = 0
        self.torn_offset: int | None = None
        self.torn_kind: str | None = None     # "cut" | "zeros" | "damage"
        self.torn_reason = ""
        self.header: tuple | None = None
        self._size = file.size()
        # zeros from offset 0 with nothing valid after: a segment preallocated but killed before
        # its header was written; it holds no record (header stays None)
        self._zero_from_start = False

    def __iter__(self):
        first = True
        for offset, payload in self._records():
            if first:
                self._check_header(offset, payload)
                first = False
                continue
            yield offset, payload
        if first and self._size and not self.torn_bytes and not self._zero_from_start:
            raise CorruptionError("log file has no header record", file=self.path, offset=0)

    def _check_header(self, offset: int, payload: bytes) -> None:
        if len(payload) != FILE_HEADER.size:
            raise CorruptionError("bad log file header", file=self.path, offset=offset)
        magic, version, number, epoch = FILE_HEADER.unpack(payload)
        if magic != self.magic:
            raise CorruptionError(f"bad log magic {magic!r}, expected {self.magic!r}", file=self.path, offset=offset)
        if version != LOG_FORMAT_VERSION:
            raise CorruptionError(f"unsupported log format version {version}", file=self.path, offset=offset)
        self.header = (magic, version, number, epoch)

    def _records(self):
        size = self._size
        parts: list[bytes] = []
        record_offset = 0
        block_start = 0
        unpack = HEADER.unpack_from
        while block_start < size:
            block = self.file.read(block_start, BLOCK_SIZE)
            pos = 0
            blen = len(block)
            while pos + HEADER_SIZE <= blen:
                crc, length, kind = unpack(block, pos)
                frag_off = block_start + pos
                end = pos + HEADER_SIZE + length
                if kind == ZERO_TYPE and length == 0 and crc == 0 and not self._valid_fragment_after(frag_off):
                    # The log ends here. Zeros to the end: space preallocated and never written,
                    # a clean end (a record begun before it is torn). Non-zero bytes after the
                    # zeros: a torn tail up to the last of them.
                    start = record_offset if parts else frag_off
                    last = self._last_nonzero(frag_off)
                    if last >= 0:
                        self._torn(start, last + 1 - start, "damage", "zeros over a fragment header, "
                                   "non-zero bytes after them")
                    elif parts:
                        self._torn(start, frag_off - start, "cut", "a record cut short, zeros after it")
                    elif not self.preallocated:
                        self._torn(start, size - start, "zeros", "zeros where a record should be")
                    elif frag_off == 0:
                        self._zero_from_start = True
                    return
                if end > blen or kind > LAST or kind == ZERO_TYPE:
                    if end > blen and blen < BLOCK_SIZE:
                        self._damage(frag_off, record_offset if parts else frag_off,
                                     "fragment runs past the end of the file", "cut")
                    elif end > blen:
                        self._damage(frag_off, record_offset if parts else frag_off, "fragment runs past its block")
                    else:
                        self._damage(frag_off, record_offset if parts else frag_off, f"bad fragment type {kind}",
                                     self._damage_kind(frag_off, frag_off + HEADER_SIZE))
                    return
                data = block[pos + HEADER_SIZE:end]
                if mask_crc(crc32c(data, _TYPE_CRC[kind])) != crc:
                    self._damage(frag_off, record_offset if parts else frag_off, "fragment checksum mismatch",
                                 self._damage_kind(frag_off, block_start + end))
                    return
                pos = end
                if kind == FULL:
                    if parts:
                        self._damage(frag_off, record_offset, "record interrupted by a FULL fragment")
                        return
                    yield frag_off, data
                elif kind == FIRST:
                    if parts:
                        self._damage(frag_off, record_offset, "record interrupted by a FIRST fragment")
                        return
                    parts = [data]
                    record_offset = frag_off
                else:
                    if not parts:
                        self._damage(frag_off, frag_off, "fragment without a FIRST")
                        return
                    parts.append(data)
                    if kind == LAST:
                        yield record_offset, b"".join(parts)
                        parts = []
            if blen < BLOCK_SIZE:
                # Short final block: any bytes after the last whole fragment are a torn header.
                if pos < blen:
                    self._damage(block_start + pos, record_offset if parts else block_start + pos,
                                 "truncated fragment header", "cut")
                    return
                break
            block_start += BLOCK_SIZE
        if parts:  # the file ended inside a record: a torn tail
            self._torn(record_offset, size - record_offset, "cut", "the file ends inside a record")

    def _damage(self, bad_offset: int, record_offset: int, why: str, kind: str = "damage") -> None:
        """Damage at ``bad_offset``: a torn tail if nothing valid follows, otherwise corruption."""
        if self._valid_fragment_after(bad_offset):
            raise CorruptionError(f"corrupt log record: {why}", file=self.path, offset=bad_offset)
        self._torn(record_offset, self._size - record_offset, kind, why)

    def _damage_kind(self, frag_off: int, frag_end: int) -> str:
        """``"zeros"`` when the bad fragment at ``frag_off`` (ending at ``frag_end``) turns to zeros
        inside it and stays zero to the end of the file -- what a power loss leaves when the file's
        size reached the disk and its last page did not -- else ``"damage"``."""
        return "zeros" if self._last_nonzero(frag_off) < min(frag_end, self._size) - 1 else "damage"

    def _torn(self, offset: int, nbytes: int, kind: str, why: str) -> None:
        self.torn_offset = offset
        self.torn_bytes = nbytes
        self.torn_kind = kind
        self.torn_reason = why

    def _last_nonzero(self, start: int) -> int:
        """The offset of the last non-zero byte at or after ``start``; -1 when there are only zeros."""
        end = self._size
        while end > start:
            lo = max(start, end - BLOCK_SIZE)
            kept = self.file.read(lo, end - lo).rstrip(b"\x00")
            if kept:
                return lo + len(kept) - 1
            end = lo
        return -1

    def _valid_fragment_after(self, offset: int) -> bool:
        """True when a fragment with a right checksum starts anywhere after ``offset``.

        In the damaged block every later position is tried (the damaged header's length
        cannot be trusted); in later blocks, fragments always start at the block start.
        """
        block_start = offset // BLOCK_SIZE * BLOCK_SIZE
        block = self.file.read(block_start, BLOCK_SIZE)
        for pos in range(offset - block_start + 1, len(block) - HEADER_SIZE + 1):
            if self._fragment_at(block, pos):
                return True
        block_start += BLOCK_SIZE
        while block_start < self._size:
            if self._fragment_at(self.file.read(block_start, BLOCK_SIZE), 0):
                return True
            block_start += BLOCK_SIZE
        return False

    @staticmethod
    def _fragment_at(block: bytes, pos: int) -> bool:
        if len(block) - pos < HEADER_SIZE:
            return False
        crc, length, kind = HEADER.unpack_from(block, pos)
        if not FULL <= kind <= LAST or pos + HEADER_SIZE + length > len(block):
            return False
        data = block[pos + HEADER_SIZE:pos + HEADER_SIZE + length]
        return mask_crc(crc32c(data, _TYPE_CRC[kind])) == crc


def read_log(fs, path: str, *, magic: bytes):
    """Return ``(records, torn_bytes, header)`` for the whole log at ``path`` (read as preallocated)."""
    records, reader = read_log_reader(fs, path, magic=magic)
    return records, reader.torn_bytes, reader.header


def read_log_reader(fs, path: str, *, magic: bytes, preallocated: bool = True):
    """Return ``(records, reader)``: the whole log at ``path`` and the spent :class:`LogReader`, for its
    ``header`` and where a torn tail starts (``torn_offset``), how long it is and its shape."""
    f = fs.open_readable(path)
    try:
        reader = LogReader(f, magic=magic, preallocated=preallocated)
        return list(reader), reader
    finally:
        f.close()
