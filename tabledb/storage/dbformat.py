"""Constants shared by every on-disk format of the engine, and the internal key.

Internal key
    Every version of a user key carries a *trailer*, a 64-bit integer
    ``(sequence << 8) | kind``: a 56-bit sequence number and an 8-bit kind.
    Among versions of one user key, the newest (largest trailer) comes first.

    In memory, an entry travels as the tuple ``(user_key, -trailer, value)``,
    so that plain tuple order is the internal order: user keys ascending, and
    for one user key the newest version first. Reverse iteration is the exact
    reverse of that order.

The kinds are part of the file format: do not change their values.
"""

from __future__ import annotations

import crc32c as _crc32c

# Kinds (part of the file format; do not change).
KIND_DELETE = 0
KIND_PUT = 1
KIND_RANGE_DELETE = 2
# Kinds that occur only in WAL records, never in memtables or tables (batch.py, ingest.py):
KIND_RESERVE = 3        # a sequence handed out by reserve_sequence for an external table
KIND_INGEST = 4         # an ingested table joined the tree (its number, sequence, size, footer CRC)

MAX_SEQUENCE = (1 << 56) - 1

# File names inside a database directory.
CURRENT = "CURRENT"
LOCK = "LOCK"


def pack_trailer(sequence: int, kind: int) -> int:
    return (sequence << 8) | kind


def trailer_sequence(trailer: int) -> int:
    return trailer >> 8


def trailer_kind(trailer: int) -> int:
    return trailer & 0xFF


def table_file_name(number: int) -> str:
    return f"{number:06d}.sst"


def wal_file_name(number: int) -> str:
    return f"{number:06d}.log"


def manifest_file_name(number: int) -> str:
    return f"MANIFEST-{number:06d}"


def ingest_link_name(wal_number: int, table_number: int) -> str:
    """A hard link to an ingested table, kept for the WAL archiver: the segment that logged the
    ingest, then the table's number (``000012-000015.ingest``). Not an engine file: the
    engine removes it when the archive hold moves past the segment."""
    return f"{wal_number:06d}-{table_number:06d}.ingest"


def parse_ingest_link(name: str) -> tuple[int, int] | None:
    """``(wal_number, table_number)`` of an ``ingest_link_name``, else None."""
    stem, dot, ext = name.partition(".")
    wal, dash, table = stem.partition("-")
    if dot and dash and ext == "ingest" and wal.isdigit() and table.isdigit():
        return int(wal), int(table)
    return None


def parse_file_name(name: str) -> tuple[str, int] | None:
    """``("sst" | "log" | "manifest", number)`` for an engine file name, else None."""
    if name.startswith("MANIFEST-") and name[9:].isdigit():
        return "manifest", int(name[9:])
    stem, dot, ext = name.partition(".")
    if dot and stem.isdigit() and ext in ("sst", "log"):
        return ext, int(stem)
    return None


# Checksums: CRC-32C (Castagnoli), hardware-accelerated by the crc32c package.
# Stored checksums are masked as in LevelDB, so that the CRC of data that itself
# contains CRCs does not degenerate.
_MASK_DELTA = 0xA282EAD8


def crc32c(data, value: int = 0) -> int:
    return _crc32c.crc32c(data, value)


def mask_crc(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
