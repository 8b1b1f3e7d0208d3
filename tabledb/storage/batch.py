"""Write batches: an ordered list of puts, deletes and range deletes applied atomically.

A batch may touch several column families; the engine gives its operations
consecutive sequence numbers, writes it to the WAL as one record and applies it
to the memtables under one lock, so readers see all of it or none of it.

WAL record payload of a batch (all integers little-endian, part of the file format):

    u64 first_sequence      sequence number of the first operation
    u64 commit_time_us      wall clock at commit, microseconds since the Unix epoch
    u32 count               number of operations
    count x operation:
        u8  kind            0 delete, 1 put, 2 range delete, 3 reserve, 4 ingest (dbformat.KIND_*)
        u32 cf_id           column family id (0 is "default")
        u32 key_length
        u32 value_length    for a range delete: length of the (exclusive) end key
        key bytes, value bytes

Operation i gets sequence number first_sequence + i.

Kinds 3 and 4 log bulk ingestion (``ingest.py``) and are never applied to a
memtable: a *reserve* op (cf 0, empty key and value) is the sequence that
``reserve_sequence`` handed out; an *ingest* op says that an external table
joined column family cf_id, its value ``INGEST_OP`` = (u64 table number, u64 the
table's sequence, u64 file size, u32 the footer's masked file_crc), its key
empty. An ingest record holds only ingest ops, one per table. With them the
WAL accounts for every sequence number, and an archived WAL can replay a
bulk load (``tabledb/backup/restoring.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tabledb.errors import CorruptionError, InvalidArgumentError, InvalidTypeError
from tabledb.storage.dbformat import KIND_DELETE, KIND_INGEST, KIND_PUT, KIND_RANGE_DELETE, KIND_RESERVE

BATCH_HEADER = struct.Struct("<QQI")
OP_HEADER = struct.Struct("<BIII")
INGEST_OP = struct.Struct("<QQQI")   # table number, sequence, size, footer file_crc (masked)
assert BATCH_HEADER.size == 20 and OP_HEADER.size == 13 and INGEST_OP.size == 28


@dataclass(frozen=True, eq=False)
class ColumnFamily:
    """A handle on a column family of one engine. Compare handles by ``id``."""

    name: str
    id: int

    def __repr__(self) -> str:
        return f"ColumnFamily({self.name!r}, id={self.id})"


def check_key(key, what: str = "key") -> bytes:
    """Return ``key`` as ``bytes``; raise InvalidTypeError for anything that is not bytes-like."""
    if type(key) is bytes:
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise InvalidTypeError(f"{what} must be bytes, not {type(key).__name__}")


def check_range(start, end) -> tuple[bytes, bytes]:
    start = check_key(start, "start")
    end = check_key(end, "end")
    if start > end:
        raise InvalidArgumentError(f"range start {start!r} is after its end {end!r}")
    return start, end


class WriteBatch:
    """Operations to apply atomically with ``Engine.write``. Not thread-safe.

    ``cf`` is a :class:`ColumnFamily` handle or None for the default family.
    Arguments are checked when added, so a bad batch never reaches the engine.
    """

    __slots__ = ("ops", "byte_size")

    def __init__(self):
        self.ops: list[tuple[int, ColumnFamily | None, bytes, bytes]] = []
        self.byte_size = 0

    def put(self, key, value, cf: ColumnFamily | None = None) -> "WriteBatch":
        key = check_key(key)
        value = check_key(value, "value")
        _check_cf(cf)
        self.ops.append((KIND_PUT, cf, key, value))
        self.byte_size += len(key) + len(value) + OP_HEADER.size
        return self

    def delete(self, key, cf: ColumnFamily | None = None) -> "WriteBatch":
        key = check_key(key)
        _check_cf(cf)
        self.ops.append((KIND_DELETE, cf, key, b""))
        self.byte_size += len(key) + OP_HEADER.size
        return self

    def delete_range(self, start, end, cf: ColumnFamily | None = None) -> "WriteBatch":
        """Delete every key in ``[start, end)``; an empty range (start == end) is a no-op."""
        start, end = check_range(start, end)
        _check_cf(cf)
        if start < end:
            self.ops.append((KIND_RANGE_DELETE, cf, start, end))
            self.byte_size += len(start) + len(end) + OP_HEADER.size
        return self

    def clear(self) -> None:
        self.ops.clear()
        self.byte_size = 0

    def __len__(self) -> int:
        return len(self.ops)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __repr__(self) -> str:
        return f"WriteBatch({len(self.ops)} ops, {self.byte_size} bytes)"


def _check_cf(cf) -> None:
    if cf is not None and not isinstance(cf, ColumnFamily):
        raise InvalidTypeError(f"cf must be a ColumnFamily handle or None, not {type(cf).__name__}")


def encode_batch(first_sequence: int, commit_time_us: int, ops) -> bytes:
    """Encode ``ops`` — tuples ``(kind, cf_id, key, value)`` — as one WAL record payload."""
    pack = OP_HEADER.pack
    parts = [BATCH_HEADER.pack(first_sequence, commit_time_us, len(ops))]
    append = parts.append
    for kind, cf_id, key, value in ops:
        append(pack(kind, cf_id, len(key), len(value)))
        append(key)
        append(value)
    return b"".join(parts)


def decode_batch(data: bytes, *, file: str = "?", offset: int = 0):
    """Decode a WAL record payload: ``(first_sequence, commit_time_us, [(kind, cf_id, key, value), ...])``.

    Raises CorruptionError (naming ``file`` and ``offset``, the record's position)
    when the payload is malformed; the record checksum makes that rare.
    """
    try:
        first_sequence, commit_time_us, count = BATCH_HEADER.unpack_from(data, 0)
        pos = BATCH_HEADER.size
        ops = []
        unpack = OP_HEADER.unpack_from
        hsize = OP_HEADER.size
        for _ in range(count):
            kind, cf_id, klen, vlen = unpack(data, pos)
            pos += hsize
            key = data[pos:pos + klen]
            pos += klen
            value = data[pos:pos + vlen]
            pos += vlen
            if kind > KIND_INGEST or pos > len(data) or (kind == KIND_INGEST and vlen != INGEST_OP.size):
                raise ValueError("bad operation")
            ops.append((kind, cf_id, key, value))
        if pos != len(data):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise CorruptionError(f"malformed write batch in WAL record: {exc}", file=file, offset=offset) from None
    return first_sequence, commit_time_us, ops


def ingest_ops(ops) -> list[tuple[int, int, int, int, int]]:
    """``(cf_id, number, sequence, size, file_crc)`` of each ingest op among decoded ``ops``."""
    return [(cf_id, *INGEST_OP.unpack(value)) for kind, cf_id, _key, value in ops if kind == KIND_INGEST]


__all__ = ["WriteBatch", "ColumnFamily", "encode_batch", "decode_batch", "ingest_ops", "check_key", "check_range",
           "KIND_PUT", "KIND_DELETE", "KIND_RANGE_DELETE", "KIND_RESERVE", "KIND_INGEST", "INGEST_OP"]
