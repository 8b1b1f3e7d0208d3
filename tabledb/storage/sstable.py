"""SSTable: an immutable, sorted file of internal entries plus range tombstones.

The file format is in ``docs/format.md`` ("SSTable"), with a worked example.
In short, all integers little-endian::

    sstable     := data_block* tombstone_block filter_block index_block
                   properties_block footer
    block       := payload type:u8 crc:u32       # crc = masked CRC-32C of payload+type
    footer      := (offset:u64 size:u32) x 4     # tombstone, filter, index, properties
                   file_crc:u32 version:u32 footer_crc:u32 magic:8s    (68 bytes)

    data block payload (before optional zlib compression)
                := n:u32 key_off:u32*(n+1) trailer:u64*n value_off:u32*(n+1)
                   key_area value_area
    key_off and value_off are absolute positions in the payload: key i is
    payload[key_off[i]:key_off[i+1]], value i payload[value_off[i]:value_off[i+1]].

Entries are ``(user_key, trailer, value)`` with ``trailer = (sequence << 8) |
kind``, added in internal order (user key ascending, trailer descending).
Iterators hand out ``(user_key, -trailer, value)`` so that tuple order is
internal order (see :mod:`tabledb.storage.dbformat`).

Why this block layout: a point lookup unpacks the key offsets once per block
load (cached with the block) and binary-searches the raw block, slicing only
the keys it compares; a scan decodes a whole block with a few list
comprehensions over slices and one ``unpack_from`` of all trailers. No
per-entry varints, so no per-entry Python loop over bytes.

Damage of any kind raises :class:`tabledb.errors.CorruptionError` naming the
file and the offset of the damaged block (or of the footer). Data blocks are
checked when read from the file (not on block-cache hits); the footer and the
meta blocks when the reader opens; every byte by :meth:`SSTableReader.verify`.

Thread-safety: a reader is immutable after ``open`` and may be shared by
threads (reads use ``pread``). A writer is for one thread.
"""

from __future__ import annotations

import operator
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate, islice, pairwise, repeat

from tabledb.errors import ClosedError, CorruptionError, InvalidArgumentError
from tabledb.storage import bloom as _bloom
from tabledb.storage.dbformat import KIND_DELETE, KIND_PUT, MAX_SEQUENCE, crc32c, mask_crc

# The crc32c package function itself (what dbformat.crc32c wraps), called
# directly on the get path to save one Python frame. Same values.
from crc32c import crc32c as _crc32c_fast

# ---------------------------------------------------------------------------
# Format constants (part of the file format: do not change).

FORMAT_VERSION = 1
MAGIC = b"TBLDBsst"  # last 8 bytes of every SSTable

COMPRESSION_NONE = 0
COMPRESSION_ZLIB = 1
_COMPRESSION_CODES = {None: COMPRESSION_NONE, "zlib": COMPRESSION_ZLIB}
_COMPRESSION_NAMES = {COMPRESSION_NONE: None, COMPRESSION_ZLIB: "zlib"}

# Block trailer: compression type, masked CRC-32C of payload + type byte.
_BLOCK_TRAILER = struct.Struct("<BI")
BLOCK_TRAILER_SIZE = 5
assert _BLOCK_TRAILER.size == BLOCK_TRAILER_SIZE

# Footer: (offset, size) of the tombstone, filter, index and properties blocks
# (size excludes the 5-byte block trailer), masked CRC-32C of every byte before
# the footer, format version, masked CRC-32C of the 56 footer bytes before it,
# magic. The version and magic sit at fixed distances from the end in every version.
_FOOTER = struct.Struct("<QIQIQIQIIII8s")
FOOTER_SIZE = 68
assert _FOOTER.size == FOOTER_SIZE
_FOOTER_CRC_COVERS = 56

# Filter block header: number of 512-bit blocks, bits per key (k), hash scheme, reserved.
_FILTER_HEADER = struct.Struct("<IBBH")
assert _FILTER_HEADER.size == 8

# Properties block: fixed part, then smallest_key and largest_key bytes.
_PROPS = struct.Struct("<IQIQQQQQQQQQqBBHII")
assert _PROPS.size == 108
PROP_FLAG_HAS_KEY_RANGE = 1     # smallest_key / largest_key are meaningful
PROP_FLAG_LARGEST_IS_RANGE_END = 2  # largest_key is an exclusive range-tombstone end

_BIG_ENDIAN = sys.byteorder == "big"
_MASK_DELTA = 0xA282EAD8   # dbformat.mask_crc, inlined on the block-miss path
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U32_PAIR = struct.Struct("<II")

_MAX_U32 = 0xFFFFFFFF
# Memory of a cached block beyond its payload and 4 bytes per key offset: the bytes
# object, array and tuple headers and the cache's own bookkeeping.
_BLOCK_OVERHEAD = 400
_zlib_crc32 = zlib.crc32
_ZLIB_LEVEL = 1  # not part of the format; any level decompresses the same

_structs: dict[str, struct.Struct] = {}


def _cached_struct(fmt: str) -> struct.Struct:
    """A compiled ``Struct(fmt)``, kept in a small cache (cleared when it grows past 512)."""
    s = _structs.get(fmt)
    if s is None:
        if len(_structs) > 512:
            _structs.clear()
        s = _structs[fmt] = struct.Struct(fmt)
    return s


def _array_struct(code: str, n: int) -> struct.Struct:
    """``Struct("<{n}{code}")``: n integers of one type."""
    return _cached_struct(f"<{n}{code}")


def _block_header_struct(n: int) -> struct.Struct:
    """The header of a data block of n entries: count, key offsets, trailers, value offsets."""
    return _cached_struct(f"<I{n + 1}I{n}Q{n + 1}I")


@dataclass
class TableProperties:
    """What a table holds, stored in its properties block (``file_size`` is measured, not stored).

    ``smallest_key``/``largest_key`` cover point entries and range tombstones:
    smallest = min(first key, first tombstone start), largest = max(last key,
    last tombstone end); ``largest_is_range_end`` says largest is an exclusive
    tombstone end. Both are None for a table with neither. Sequence numbers
    likewise cover both (0 and 0 when empty). ``num_range_tombstones`` counts
    fragments. ``data_size`` is the bytes of all data blocks on disk.
    """

    format_version: int
    file_number: int
    cf_id: int
    num_entries: int
    num_deletions: int
    num_range_tombstones: int
    num_data_blocks: int
    data_size: int
    raw_key_size: int
    raw_value_size: int
    smallest_key: bytes | None
    largest_key: bytes | None
    largest_is_range_end: bool
    smallest_seq: int
    largest_seq: int
    creation_time: int
    compression: str | None
    bloom_bits_per_key: int
    file_size: int = 0


def _encode_properties(p: TableProperties) -> bytes:
    flags = 0
    if p.smallest_key is not None:
        flags |= PROP_FLAG_HAS_KEY_RANGE
    if p.largest_is_range_end:
        flags |= PROP_FLAG_LARGEST_IS_RANGE_END
    smallest = p.smallest_key or b""
    largest = p.largest_key or b""
    return _PROPS.pack(
        p.format_version, p.file_number, p.cf_id, p.num_entries, p.num_deletions,
        p.num_range_tombstones, p.num_data_blocks, p.data_size, p.raw_key_size,
        p.raw_value_size, p.smallest_seq, p.largest_seq, p.creation_time,
        _COMPRESSION_CODES[p.compression], flags, p.bloom_bits_per_key,
        len(smallest), len(largest),
    ) + smallest + largest


def _decode_properties(payload: bytes) -> TableProperties:
    """REQUIRES: payload passed its checksum. Raises ValueError/struct.error on nonsense."""
    (version, file_number, cf_id, num_entries, num_deletions, num_tombstones, num_blocks,
     data_size, raw_key_size, raw_value_size, smallest_seq, largest_seq, creation_time,
     compression, flags, bloom_bits, smallest_len, largest_len) = _PROPS.unpack_from(payload, 0)
    if _PROPS.size + smallest_len + largest_len != len(payload):
        raise ValueError("properties block has the wrong length")
    if compression not in _COMPRESSION_NAMES or flags & ~3:
        raise ValueError("unknown compression or flags")
    smallest = payload[_PROPS.size:_PROPS.size + smallest_len]
    largest = payload[_PROPS.size + smallest_len:]
    has_range = bool(flags & PROP_FLAG_HAS_KEY_RANGE)
    return TableProperties(
        format_version=version, file_number=file_number, cf_id=cf_id,
        num_entries=num_entries, num_deletions=num_deletions,
        num_range_tombstones=num_tombstones, num_data_blocks=num_blocks,
        data_size=data_size, raw_key_size=raw_key_size, raw_value_size=raw_value_size,
        smallest_key=smallest if has_range else None,
        largest_key=largest if has_range else None,
        largest_is_range_end=bool(flags & PROP_FLAG_LARGEST_IS_RANGE_END),
        smallest_seq=smallest_seq, largest_seq=largest_seq, creation_time=creation_time,
        compression=_COMPRESSION_NAMES[compression], bloom_bits_per_key=bloom_bits,
    )


def _encode_keyed_block(count: int, keys: list[bytes], *arrays: tuple[str, list[int]]) -> bytes:
    """``count:u32 key_off:u32*(len(keys)+1) [array]* key_area``: the index and tombstone block
    layout (the index has one key per entry, the tombstone block two: start and end)."""
    offsets = [0, *accumulate(map(len, keys))]
    parts = [_U32.pack(count), _array_struct("I", len(offsets)).pack(*offsets)]
    for code, values in arrays:
        parts.append(_array_struct(code, len(values)).pack(*values))
    parts.extend(keys)
    return b"".join(parts)


# ---------------------------------------------------------------------------
# Writer


class SSTableWriter:
    """Writes one SSTable to ``file`` (an ``fs.WritableFile``), which it owns and closes.

    Call ``add`` for every entry in internal order, optionally
    ``add_range_tombstones``, then ``finish`` (which syncs and closes the file)
    or ``abandon`` (which closes it; the caller removes the file).
    """

    def __init__(self, file, *, file_number: int, cf_id: int = 0, block_size: int = 4096,
                 bloom_bits_per_key: int = 10, compression: str | None = None,
                 creation_time: int | None = None):
        if compression not in _COMPRESSION_CODES:
            raise InvalidArgumentError(f"unknown compression {compression!r}; use None or 'zlib'")
        if block_size < 1:
            raise InvalidArgumentError("block_size must be >= 1")
        if not 0 <= bloom_bits_per_key <= 1000:
            raise InvalidArgumentError("bloom_bits_per_key must be in [0, 1000]")
        self._file = file
        self._file_number = file_number
        self._cf_id = cf_id
        self._block_size = block_size
        self._bloom_bits_per_key = int(bloom_bits_per_key)
        self._compression = compression
        self._compression_code = _COMPRESSION_CODES[compression]
        self._creation_time = int(time.time()) if creation_time is None else int(creation_time)
        self._bloom = _bloom.BloomBuilder(self._bloom_bits_per_key)
        self._offset = 0   # bytes appended so far
        self._file_crc = 0  # CRC-32C (unmasked) of those bytes
        # The data block being built.
        self._keys: list[bytes] = []
        self._trailers: list[int] = []
        self._values: list[bytes] = []
        self._block_bytes = 0  # header + key and value bytes of the block being built
        # One index entry per finished data block.
        self._index_keys: list[bytes] = []
        self._index_offsets: list[int] = []
        self._index_sizes: list[int] = []
        self._index_key_bytes = 0
        self._last_key: bytes | None = None
        self._last_trailer = 0
        self._first_key: bytes | None = None
        self._num_entries = 0
        self._num_deletions = 0
        self._raw_key_size = 0
        self._raw_value_size = 0
        self._smallest_seq = MAX_SEQUENCE + 1
        self._largest_seq = -1
        self._fragments: list[tuple[bytes, bytes, tuple[int, ...]]] = []
        self._done = False

    @property
    def num_entries(self) -> int:
        return self._num_entries

    @property
    def estimated_size(self) -> int:
        """Bytes the file would have if finished now (a close upper-bound estimate)."""
        index = 16 * (len(self._index_keys) + 1) + self._index_key_bytes
        bloom = len(self._bloom) * self._bloom_bits_per_key // 8 + 64
        return self._offset + self._block_bytes + index + bloom + 512 + FOOTER_SIZE

    def add(self, user_key: bytes, trailer: int, value: bytes) -> None:
        """Append one entry. REQUIRES: ``(user_key, -trailer)`` greater than the previous entry's,
        kind PUT or DELETE, ``0 <= trailer < 2**64``."""
        if self._done:
            raise InvalidArgumentError("writer already finished or abandoned")
        last = self._last_key
        if last is not None and (user_key < last or (user_key == last and trailer >= self._last_trailer)):
            raise InvalidArgumentError(
                f"entries out of internal order: {user_key!r}@{trailer} after {last!r}@{self._last_trailer}")
        if trailer & 0xFF > KIND_PUT or not 0 <= trailer <= 0xFFFFFFFFFFFFFFFF:
            raise InvalidArgumentError(f"bad trailer {trailer}: kind must be PUT or DELETE")
        if user_key != last:
            self._bloom.add(user_key)
            if last is None:
                self._first_key = user_key
            self._last_key = user_key
        self._last_trailer = trailer
        self._keys.append(user_key)
        self._trailers.append(trailer)
        self._values.append(value)
        self._num_entries += 1
        if trailer & 0xFF == KIND_DELETE:
            self._num_deletions += 1
        self._block_bytes += 16 + len(user_key) + len(value)
        if self._block_bytes >= self._block_size:
            self._flush_data_block()

    def add_run(self, keys: list[bytes], trailer: int, values: list[bytes]) -> None:
        """Append ``len(keys)`` entries that share ``trailer``: ``add`` for each pair, in one pass
        of C-level loops. REQUIRES (checked): keys strictly ascending and above the previous
        entry's key, as many values as keys, kind PUT or DELETE. Keys and values must be bytes."""
        if self._done:
            raise InvalidArgumentError("writer already finished or abandoned")
        n = len(keys)
        if len(values) != n:
            raise InvalidArgumentError(f"{n} keys but {len(values)} values")
        if not n:
            return
        if trailer & 0xFF > KIND_PUT or not 0 <= trailer <= 0xFFFFFFFFFFFFFFFF:
            raise InvalidArgumentError(f"bad trailer {trailer}: kind must be PUT or DELETE")
        last = self._last_key
        if (last is not None and keys[0] <= last) or not all(map(operator.lt, keys, islice(keys, 1, None))):
            raise InvalidArgumentError("keys of a run must be strictly ascending and above the previous key")
        self._bloom.add_many(keys)
        if last is None:
            self._first_key = keys[0]
        self._last_key = keys[-1]
        self._last_trailer = trailer
        self._num_entries += n
        if trailer & 0xFF == KIND_DELETE:
            self._num_deletions += n
        # Cut blocks where ``add`` would: once 16 bytes per entry + key and value bytes reach the size.
        # ends[i]: the block's bytes after i more entries (were no block cut on the way)
        ends = list(map(operator.add, accumulate(map(operator.add, map(len, keys), map(len, values)),
                                                 initial=self._block_bytes), range(0, 16 * n + 1, 16)))
        start = 0
        while start < n:
            base = ends[start] - self._block_bytes        # the block's bytes before entry `start`
            cut = bisect_left(ends, base + self._block_size, start + 1)   # the entry that fills it
            stop = min(cut, n)
            self._keys.extend(keys[start:stop])
            self._trailers.extend(repeat(trailer, stop - start))
            self._values.extend(values[start:stop])
            self._block_bytes += ends[stop] - ends[start]
            if self._block_bytes >= self._block_size:
                self._flush_data_block()
            start = stop

    def add_range_tombstones(self, fragments) -> None:
        """Add range-tombstone fragments ``(start, end, seqs)``: keys in [start, end) deleted at each
        sequence in ``seqs``. REQUIRES: start < end, seqs non-empty and strictly descending,
        fragments sorted by start and not overlapping (also across calls)."""
        if self._done:
            raise InvalidArgumentError("writer already finished or abandoned")
        prev_end = self._fragments[-1][1] if self._fragments else None
        checked = []
        for start, end, seqs in fragments:
            seqs = tuple(seqs)
            if not isinstance(start, bytes) or not isinstance(end, bytes) or not start < end:
                raise InvalidArgumentError(f"bad range tombstone [{start!r}, {end!r})")
            if prev_end is not None and start < prev_end:
                raise InvalidArgumentError("range tombstone fragments overlap or are not sorted")
            if not seqs or any(a <= b for a, b in pairwise(seqs)) or not 0 <= seqs[-1] <= seqs[0] <= MAX_SEQUENCE:
                raise InvalidArgumentError(f"range tombstone seqs must be strictly descending: {seqs}")
            checked.append((start, end, seqs))
            prev_end = end
        self._fragments.extend(checked)

    # -- internals --

    def _append(self, data) -> None:
        self._file.append(data)
        self._file_crc = crc32c(data, self._file_crc)
        self._offset += len(data)

    def _write_block(self, payload: bytes, compress: bool) -> tuple[int, int]:
        """Write payload + trailer; return (offset, on-disk payload size)."""
        ctype = COMPRESSION_NONE
        if compress and self._compression_code == COMPRESSION_ZLIB:
            packed = zlib.compress(payload, _ZLIB_LEVEL)
            if len(packed) < len(payload) - (len(payload) >> 3):  # keep only if it saves >= 12.5%
                payload, ctype = packed, COMPRESSION_ZLIB
        if len(payload) > _MAX_U32:
            raise InvalidArgumentError("block larger than 4 GiB: a key or value is too large")
        offset = self._offset
        crc = mask_crc(crc32c(bytes((ctype,)), crc32c(payload)))
        self._append(payload)
        self._append(_BLOCK_TRAILER.pack(ctype, crc))
        return offset, len(payload)

    def _flush_data_block(self) -> None:
        keys, trailers, values = self._keys, self._trailers, self._values
        n = len(keys)
        key_offsets = list(accumulate(map(len, keys), initial=12 + 16 * n))
        value_offsets = list(accumulate(map(len, values), initial=key_offsets[-1]))
        if value_offsets[-1] > _MAX_U32:
            raise InvalidArgumentError("block larger than 4 GiB: a key or value is too large")
        header = _block_header_struct(n).pack(n, *key_offsets, *trailers, *value_offsets)
        payload = b"".join([header, *keys, *values])
        offset, size = self._write_block(payload, compress=True)
        self._index_keys.append(keys[-1])
        self._index_key_bytes += len(keys[-1])
        self._index_offsets.append(offset)
        self._index_sizes.append(size)
        self._raw_key_size += key_offsets[-1] - key_offsets[0]
        self._raw_value_size += value_offsets[-1] - value_offsets[0]
        seqs_lo, seqs_hi = min(trailers) >> 8, max(trailers) >> 8
        if seqs_lo < self._smallest_seq:
            self._smallest_seq = seqs_lo
        if seqs_hi > self._largest_seq:
            self._largest_seq = seqs_hi
        self._keys, self._trailers, self._values = [], [], []
        self._block_bytes = 0

    def finish(self) -> TableProperties:
        """Write the remaining data, the meta blocks and the footer; sync and close the file."""
        if self._done:
            raise InvalidArgumentError("writer already finished or abandoned")
        if self._keys:
            self._flush_data_block()
        data_size = self._offset

        # Range tombstones.
        frags = self._fragments
        tomb_keys = [k for start, end, _ in frags for k in (start, end)]
        seq_offsets = [0, *accumulate(len(s) for _, _, s in frags)]
        seqs = [s for _, _, ss in frags for s in ss]
        tomb = self._write_block(
            _encode_keyed_block(len(frags), tomb_keys, ("I", seq_offsets), ("Q", seqs)), compress=False)

        # Filter.
        k, nb, bits = self._bloom.finish()
        filt = self._write_block(_FILTER_HEADER.pack(nb, k, _bloom.HASH_SCHEME, 0) + bits, compress=False)

        # Index.
        index = self._write_block(
            _encode_keyed_block(len(self._index_keys), self._index_keys,
                                ("Q", self._index_offsets), ("I", self._index_sizes)),
            compress=False)

        # Properties.
        smallest_key = largest_key = None
        largest_is_range_end = False
        if self._first_key is not None:
            smallest_key, largest_key = self._first_key, self._last_key
        if frags:
            if smallest_key is None or frags[0][0] < smallest_key:
                smallest_key = frags[0][0]
            if largest_key is None or frags[-1][1] > largest_key:
                largest_key, largest_is_range_end = frags[-1][1], True
            self._smallest_seq = min(self._smallest_seq, min(s[-1] for _, _, s in frags))
            self._largest_seq = max(self._largest_seq, max(s[0] for _, _, s in frags))
        if self._largest_seq < 0:
            self._smallest_seq = self._largest_seq = 0
        props = TableProperties(
            format_version=FORMAT_VERSION, file_number=self._file_number, cf_id=self._cf_id,
            num_entries=self._num_entries, num_deletions=self._num_deletions,
            num_range_tombstones=len(frags), num_data_blocks=len(self._index_keys),
            data_size=data_size, raw_key_size=self._raw_key_size, raw_value_size=self._raw_value_size,
            smallest_key=smallest_key, largest_key=largest_key,
            largest_is_range_end=largest_is_range_end,
            smallest_seq=self._smallest_seq, largest_seq=self._largest_seq,
            creation_time=self._creation_time, compression=self._compression,
            bloom_bits_per_key=self._bloom_bits_per_key,
        )
        prop = self._write_block(_encode_properties(props), compress=False)

        # Footer.
        head = _FOOTER.pack(*tomb, *filt, *index, *prop, mask_crc(self._file_crc), FORMAT_VERSION,
                            0, MAGIC)[:_FOOTER_CRC_COVERS]
        self._append(head + _U32.pack(mask_crc(crc32c(head))) + MAGIC)
        self._done = True
        self._file.sync()
        self._file.close()
        props.file_size = self._offset
        return props

    def abandon(self) -> None:
        """Close the file without finishing it; the caller removes it."""
        if not self._done:
            self._done = True
            self._file.close()


# ---------------------------------------------------------------------------
# Reader


class SSTableReader:
    """Reads one SSTable. Open with :meth:`open`; immutable and thread-safe afterwards.

    The reader owns its file: ``close()`` (or dropping the last reference)
    closes it. After ``close``, reads that need the file raise ClosedError.
    """

    __slots__ = (
        "path", "properties", "range_tombstones", "_file", "_file_number", "_block_cache",
        "_file_size", "_footer_offset", "_file_crc", "_handles",
        "_index_keys", "_block_offsets", "_block_sizes", "_num_blocks",
        "_bloom", "_bloom_blocks", "_bloom_nb", "_bloom_a", "_bloom_b", "_closed",
    )

    @classmethod
    def open(cls, file, *, file_number: int, block_cache=None) -> SSTableReader:
        """Open ``file`` (an ``fs.RandomAccessFile``): read and check the footer, index, filter,
        range tombstones and properties. Takes ownership of ``file`` (closed on failure too)."""
        self = cls.__new__(cls)
        self._file = file
        self._closed = False
        self.path = getattr(file, "path", "<unknown>")
        self._file_number = file_number
        self._block_cache = block_cache
        try:
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    # -- opening --

    def _corrupt(self, message: str, offset: int) -> CorruptionError:
        return CorruptionError(message, file=self.path, offset=offset)

    def _load(self) -> None:
        size = self._file.size()
        self._file_size = size
        if size < FOOTER_SIZE:
            raise self._corrupt(f"file of {size} bytes is too short for an sstable footer", 0)
        foff = size - FOOTER_SIZE
        self._footer_offset = foff
        footer = self._file.read(foff, FOOTER_SIZE)
        if len(footer) != FOOTER_SIZE:
            raise self._corrupt("truncated footer", foff)
        (tomb_off, tomb_size, filt_off, filt_size, index_off, index_size, prop_off, prop_size,
         file_crc, version, footer_crc, magic) = _FOOTER.unpack(footer)
        if magic != MAGIC:
            raise self._corrupt("bad magic number: not an sstable, or truncated", foff)
        if mask_crc(crc32c(footer[:_FOOTER_CRC_COVERS])) != footer_crc:
            raise self._corrupt("footer checksum mismatch", foff)
        if version != FORMAT_VERSION:
            raise self._corrupt(f"unsupported sstable format version {version}", foff)
        # The meta blocks are contiguous, in this order, between the data and the footer.
        t = BLOCK_TRAILER_SIZE
        if not (tomb_off + tomb_size + t == filt_off and filt_off + filt_size + t == index_off
                and index_off + index_size + t == prop_off and prop_off + prop_size + t == foff):
            raise self._corrupt("impossible block handles in footer", foff)
        self._file_crc = file_crc
        self._handles = ((tomb_off, tomb_size), (filt_off, filt_size), (index_off, index_size),
                         (prop_off, prop_size))

        payload = self._read_block(prop_off, prop_size)
        try:
            props = _decode_properties(payload)
        except (struct.error, ValueError) as exc:
            raise self._corrupt(f"bad properties block: {exc}", prop_off) from None
        if props.format_version != FORMAT_VERSION or props.data_size != tomb_off:
            raise self._corrupt("properties disagree with the footer", prop_off)
        props.file_size = size
        self.properties = props

        payload = self._read_block(tomb_off, tomb_size)
        try:
            self.range_tombstones = self._parse_tombstones(payload)
        except (struct.error, ValueError, IndexError) as exc:
            raise self._corrupt(f"bad range tombstone block: {exc}", tomb_off) from None
        if len(self.range_tombstones) != props.num_range_tombstones:
            raise self._corrupt("range tombstone count disagrees with properties", tomb_off)

        payload = self._read_block(filt_off, filt_size)
        try:
            nb, k, scheme, _ = _FILTER_HEADER.unpack_from(payload, 0)
            if scheme != _bloom.HASH_SCHEME or (nb and not 1 <= k <= _bloom.MAX_PROBES):
                raise ValueError(f"unknown filter scheme {scheme} or k {k}")
            self._bloom = _bloom.BloomFilter(k, nb, memoryview(payload)[_FILTER_HEADER.size:])
        except (struct.error, ValueError) as exc:
            raise self._corrupt(f"bad filter block: {exc}", filt_off) from None
        self._bloom_nb = self._bloom.num_blocks
        self._bloom_blocks = self._bloom.blocks
        self._bloom_a = self._bloom.table_a
        self._bloom_b = self._bloom.table_b

        payload = self._read_block(index_off, index_size)
        try:
            self._parse_index(payload, tomb_off)
        except (struct.error, ValueError, IndexError) as exc:
            raise self._corrupt(f"bad index block: {exc}", index_off) from None
        if self._num_blocks != props.num_data_blocks:
            raise self._corrupt("index block count disagrees with properties", index_off)

    def _parse_tombstones(self, payload: bytes) -> list:
        n = _U32.unpack_from(payload, 0)[0]
        pos = 4
        key_offsets = _array_struct("I", 2 * n + 1).unpack_from(payload, pos)
        pos += 4 * (2 * n + 1)
        seq_offsets = _array_struct("I", n + 1).unpack_from(payload, pos)
        pos += 4 * (n + 1)
        m = seq_offsets[n]
        seqs = _array_struct("Q", m).unpack_from(payload, pos)
        pos += 8 * m
        if pos + key_offsets[-1] != len(payload):
            raise ValueError("length mismatch")
        area = payload[pos:]
        keys = [area[a:b] for a, b in pairwise(key_offsets)]
        frags = []
        prev_end = None
        for i in range(n):
            start, end = keys[2 * i], keys[2 * i + 1]
            fseqs = seqs[seq_offsets[i]:seq_offsets[i + 1]]
            if not start < end or (prev_end is not None and start < prev_end) or not fseqs \
                    or any(a <= b for a, b in pairwise(fseqs)):
                raise ValueError("fragments out of order, overlapping or with bad seqs")
            frags.append((start, end, fseqs))
            prev_end = end
        return frags

    def _parse_index(self, payload: bytes, data_end: int) -> None:
        n = _U32.unpack_from(payload, 0)[0]
        pos = 4
        key_offsets = _array_struct("I", n + 1).unpack_from(payload, pos)
        pos += 4 * (n + 1)
        offsets = _array_struct("Q", n).unpack_from(payload, pos)
        pos += 8 * n
        sizes = _array_struct("I", n).unpack_from(payload, pos)
        pos += 4 * n
        if pos + key_offsets[-1] != len(payload):
            raise ValueError("length mismatch")
        area = payload[pos:]
        keys = [area[a:b] for a, b in pairwise(key_offsets)]
        # Data blocks tile [0, data_end) exactly, and their last keys never decrease.
        end = 0
        for off, size in zip(offsets, sizes):
            if off != end:
                raise ValueError(f"data block at {off} where {end} was expected")
            end = off + size + BLOCK_TRAILER_SIZE
        if end != data_end:
            raise ValueError("data blocks do not end where the tombstone block starts")
        if any(a > b for a, b in pairwise(keys)):
            raise ValueError("index keys out of order")
        self._index_keys = keys
        self._block_offsets = offsets
        self._block_sizes = sizes
        self._num_blocks = n

    # -- blocks --

    def _read_block(self, offset: int, size: int) -> bytes:
        """Read a block from the file, check its checksum, return its uncompressed payload."""
        buf, length = self._read_block_buffer(offset, size)
        return buf if len(buf) == length else buf[:length]

    def _read_block_buffer(self, offset: int, size: int) -> tuple[bytes, int]:
        """``(buffer, payload_length)``: the checked, uncompressed payload is ``buffer[:payload_length]``.

        An uncompressed block comes back with its 5 trailer bytes still attached, which saves a
        copy; its users only look at positions below ``payload_length``.
        """
        if self._closed:
            raise ClosedError(f"sstable {self.path} is closed")
        data = self._file.read(offset, size + BLOCK_TRAILER_SIZE)
        if len(data) != size + BLOCK_TRAILER_SIZE:
            raise self._corrupt("truncated block", offset)
        ctype, stored = _BLOCK_TRAILER.unpack_from(data, size)
        # The type byte directly follows the payload: one CRC call covers both.
        if mask_crc(_crc32c_fast(memoryview(data)[:size + 1])) != stored:
            raise self._corrupt("block checksum mismatch", offset)
        if ctype == COMPRESSION_NONE:
            return data, size
        if ctype == COMPRESSION_ZLIB:
            try:
                payload = zlib.decompress(memoryview(data)[:size])
            except zlib.error as exc:
                raise self._corrupt(f"cannot decompress block: {exc}", offset) from None
            return payload, len(payload)
        raise self._corrupt(f"unknown block compression type {ctype}", offset)

    def _parse_data_block(self, raw: bytes, offset: int, size: int | None = None) -> tuple:
        """The cached form of a data block: ``(raw, key_offsets, n, trailers_at, value_offsets_at,
        values_at)``. key_offsets is an ``array('I')`` of the n+1 key boundaries as absolute
        positions in raw: compact and contiguous, so a binary search touches few cache lines."""
        if size is None:
            size = len(raw)
        try:
            n = _U32.unpack_from(raw, 0)[0]
            key_area = 12 + 16 * n
            if n == 0 or key_area > size:
                raise ValueError
            ko = array("I")
            ko.frombytes(raw[4:8 + 4 * n])   # one copy, no Python loop
            if _BIG_ENDIAN:
                ko.byteswap()
            value_offsets_at = 8 + 12 * n
            values_at = ko[n]
            if (ko[0] != key_area or values_at > size
                    or _U32.unpack_from(raw, value_offsets_at)[0] != values_at
                    or _U32.unpack_from(raw, value_offsets_at + 4 * n)[0] != size):
                raise ValueError
        except (struct.error, ValueError):
            raise self._corrupt("malformed data block", offset) from None
        return (raw, ko, n, 8 + 4 * n, value_offsets_at, values_at)

    def _data_block(self, bi: int, fill_cache: bool = True) -> tuple:
        """Data block ``bi`` in its cached form, from the block cache or the file."""
        cache = self._block_cache
        if cache is not None:
            block = cache.get((self._file_number, self._block_offsets[bi]))
            if block is not None:
                return block
        return self._load_data_block(bi, fill_cache)

    def _load_data_block(self, bi: int, fill_cache: bool = True) -> tuple:
        """Read, check and parse data block ``bi``; add it to the block cache if ``fill_cache``.

        The common case (an uncompressed block) is inlined: this is the block-cache miss path
        of every point read.
        """
        offset = self._block_offsets[bi]
        size = self._block_sizes[bi]
        if self._closed:
            raise ClosedError(f"sstable {self.path} is closed")
        data = self._file.read(offset, size + BLOCK_TRAILER_SIZE)
        block = None
        if len(data) == size + BLOCK_TRAILER_SIZE and data[size] == COMPRESSION_NONE:
            crc = _crc32c_fast(memoryview(data)[:size + 1])
            if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF == _U32.unpack_from(data, size + 1)[0]:
                # _parse_data_block, inlined for its structural checks' common case
                n = _U32.unpack_from(data, 0)[0]
                key_area = 12 + 16 * n
                if 0 < n and key_area <= size:
                    ko = array("I")
                    ko.frombytes(data[4:8 + 4 * n])
                    if _BIG_ENDIAN:
                        ko.byteswap()
                    vo_at = 8 + 12 * n
                    values_at = ko[n]
                    if (ko[0] == key_area and values_at <= size and _U32.unpack_from(data, vo_at)[0] == values_at
                            and _U32.unpack_from(data, vo_at + 4 * n)[0] == size):
                        block = (data, ko, n, 8 + 4 * n, vo_at, values_at)
        if block is None:  # compressed or damaged: the general path decompresses or names the damage
            raw, length = self._read_block_buffer(offset, size)
            block = self._parse_data_block(raw, offset, length)
        if fill_cache and self._block_cache is not None:
            self._block_cache.insert((self._file_number, offset), block, size + 4 * block[2] + _BLOCK_OVERHEAD)
        return block

    # -- public reads --

    @property
    def file_number(self) -> int:
        return self._file_number

    @property
    def file_crc(self) -> int:
        """The footer's ``file_crc``: the masked CRC-32C of every byte before the footer."""
        return self._file_crc

    def may_contain(self, user_key: bytes) -> bool:
        """False only if no point entry of ``user_key`` is in the table (range tombstones aside)."""
        return self._bloom.may_contain(user_key)

    @staticmethod
    def _lower_bound(raw: bytes, ko, n: int, key: bytes) -> int:
        """Index of the first entry of a parsed block whose key is >= ``key``."""
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if raw[ko[mid]:ko[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def get(self, user_key: bytes, max_sequence: int) -> tuple[int, bytes] | None:
        """The newest version of ``user_key`` with sequence <= ``max_sequence``, as
        ``(trailer, value)`` (value b"" for a delete), or None. Range tombstones are not applied."""
        nb = self._bloom_nb
        if nb:  # BloomFilter.may_contain, inlined
            mask = self._bloom_a[(h2 := _zlib_crc32(user_key)) & 4095] | self._bloom_b[h2 >> 20]
            if self._bloom_blocks[_crc32c_fast(user_key) % nb] & mask != mask:
                return None
        bi = bisect_left(self._index_keys, user_key)
        if bi == self._num_blocks:
            return None
        cache = self._block_cache  # _data_block, inlined
        block = None if cache is None else cache.get((self._file_number, self._block_offsets[bi]))
        raw, ko, n, trailers_at, value_offsets_at, values_at = block or self._load_data_block(bi)
        # _lower_bound, inlined: this is every point read's hot path (as is the cache lookup above).
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if raw[ko[mid]:ko[mid + 1]] < user_key:
                lo = mid + 1
            else:
                hi = mid
        limit = (max_sequence << 8) | 0xFF
        while True:
            if lo == n:  # versions of user_key may continue in the next block
                bi += 1
                if bi == self._num_blocks:
                    return None
                raw, ko, n, trailers_at, value_offsets_at, values_at = self._data_block(bi)
                lo = 0
            if raw[ko[lo]:ko[lo + 1]] != user_key:
                return None
            trailer = _U64.unpack_from(raw, trailers_at + 8 * lo)[0]
            if trailer <= limit:
                a, b = _U32_PAIR.unpack_from(raw, value_offsets_at + 4 * lo)
                return trailer, raw[a:b]
            lo += 1

    def iter_entries(self, start: bytes | None = None, end: bytes | None = None,
                     reverse: bool = False, fill_cache: bool = True):
        """Yield ``(user_key, -trailer, value)`` for every entry with start <= user_key < end
        (None: unbounded), in internal order or its exact reverse. ``fill_cache=False`` reads
        blocks without adding them to the block cache (for compactions and scans)."""
        neg = operator.neg
        for keys, trailers, values, _ in self.iter_blocks(start, end, reverse, fill_cache):
            yield from zip(keys, map(neg, trailers), values)

    def iter_pairs(self, start: bytes | None = None, end: bytes | None = None, reverse: bool = False):
        """Lists of ``(user_key, value)``, a block at a time, for [start, end) (reversed with ``reverse``).

        Only for a table whose entries are all puts of distinct keys (no deletes, one
        version per key): then every entry is visible to any reader at or above its
        largest sequence, and a scan needs nothing but the pairs.
        """
        for bi, raw, ko, n, lo, hi, value_offsets_at in self._block_spans(start, end, reverse, True):
            vo = _array_struct("I", hi - lo + 1).unpack_from(raw, value_offsets_at + 4 * lo)
            pairs = [(raw[a:b], raw[c:d]) for (a, b), (c, d) in zip(pairwise(ko[lo:hi + 1]), pairwise(vo))]
            if reverse:
                pairs.reverse()
            yield pairs

    def _block_spans(self, start, end, reverse: bool, fill_cache: bool):
        """For each data block meeting [start, end): ``(bi, raw, key_offsets, n, lo, hi, value_offsets_at)``
        where entries lo..hi-1 of the block are in the range."""
        index_keys = self._index_keys
        nblocks = self._num_blocks
        if not nblocks or (start is not None and end is not None and start >= end):
            return
        first = 0 if start is None else bisect_left(index_keys, start)
        last = nblocks - 1 if end is None else min(bisect_left(index_keys, end), nblocks - 1)
        for bi in (range(last, first - 1, -1) if reverse else range(first, last + 1)):
            raw, ko, n, _, value_offsets_at, _ = self._data_block(bi, fill_cache)
            lo, hi = 0, n
            if start is not None and bi == first:
                lo = self._lower_bound(raw, ko, n, start)
            if end is not None and bi == last:
                hi = self._lower_bound(raw, ko, n, end)
            if lo < hi:
                yield bi, raw, ko, n, lo, hi, value_offsets_at

    def iter_blocks(self, start: bytes | None = None, end: bytes | None = None,
                    reverse: bool = False, fill_cache: bool = True):
        """Like ``iter_entries``, a block at a time: ``(keys, trailers, values, all_puts)``.

        The three lists are parallel and already clipped to [start, end) (and reversed for
        ``reverse``); ``all_puts`` is True when every entry of the block is a put, so a
        scan can hand out a block without looking at each entry.
        """
        for bi, raw, ko, n, lo, hi, value_offsets_at in self._block_spans(start, end, reverse, fill_cache):
            trailers_at = 8 + 4 * n
            keys = [raw[a:b] for a, b in pairwise(ko[lo:hi + 1])]
            trailers = _array_struct("Q", hi - lo).unpack_from(raw, trailers_at + 8 * lo)
            vo = _array_struct("I", hi - lo + 1).unpack_from(raw, value_offsets_at + 4 * lo)
            values = [raw[a:b] for a, b in pairwise(vo)]
            # The low byte of each little-endian trailer is its kind.
            all_puts = raw[trailers_at + 8 * lo:trailers_at + 8 * hi:8].count(KIND_PUT) == hi - lo
            if reverse:
                keys.reverse()
                trailers = trailers[::-1]
                values.reverse()
            yield keys, trailers, values, all_puts

    def verify(self) -> int:
        """Re-read every byte: every block checksum, the structure and order of every data block
        against the index and properties, and the whole-file CRC. CorruptionError on damage.

        Returns the number of distinct user keys (``num_entries`` less the older versions)."""
        props = self.properties
        prev = None
        num_entries = num_deletions = 0
        distinct = 0
        lt, le, eq, neg = operator.lt, operator.le, operator.eq, operator.neg
        for bi in range(self._num_blocks):
            offset = self._block_offsets[bi]
            raw, ko, n, trailers_at, value_offsets_at, values_at = self._parse_data_block(
                self._read_block(offset, self._block_sizes[bi]), offset)
            keys = [raw[a:b] for a, b in pairwise(ko)]
            trailers = _array_struct("Q", n).unpack_from(raw, trailers_at)
            kinds = raw[trailers_at:trailers_at + 8 * n:8]   # the low byte of each little-endian trailer
            value_offsets = _array_struct("I", n + 1).unpack_from(raw, value_offsets_at)
            order = list(zip(keys, map(neg, trailers)))
            # Pairwise checks as map() over two shifted views: C loops, not a Python frame per entry.
            if (not all(map(lt, order, islice(order, 1, None))) or (prev is not None and prev >= order[0])
                    or keys[-1] != self._index_keys[bi] or max(kinds) > KIND_PUT
                    or not all(map(le, ko, islice(ko, 1, None)))
                    or not all(map(le, value_offsets, islice(value_offsets, 1, None)))):
                raise self._corrupt("data block entries out of order or disagreeing with the index", offset)
            distinct += n - sum(map(eq, keys, islice(keys, 1, None))) - (prev is not None and prev[0] == keys[0])
            prev = order[-1]
            num_entries += n
            num_deletions += kinds.count(KIND_DELETE)
        if num_entries != props.num_entries or num_deletions != props.num_deletions:
            raise self._corrupt("entry counts disagree with properties", self._handles[3][0])
        for offset, size in self._handles:
            self._read_block(offset, size)
        crc = 0
        pos = 0
        chunk = 1 << 20
        while pos < self._footer_offset:
            n = min(chunk, self._footer_offset - pos)
            data = self._file.read(pos, n)
            if len(data) != n:
                raise self._corrupt("file truncated", pos)
            crc = crc32c(data, crc)
            pos += n
        if mask_crc(crc) != self._file_crc:
            raise self._corrupt("whole-file checksum mismatch", 0)
        return distinct

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> SSTableReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSTableReader({self.path!r}, file_number={self._file_number})"

