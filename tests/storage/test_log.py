"""The record log (WAL and MANIFEST format): fragmentation, torn tails, corruption in the middle."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from tabledb.errors import CorruptionError
from tabledb.storage.fs import FileSystem
from tabledb.storage.log import BLOCK_SIZE, HEADER_SIZE, WAL_MAGIC, MANIFEST_MAGIC, LogReader, LogWriter, read_log

FS = FileSystem()


def write_log(path, records, magic=WAL_MAGIC):
    w = LogWriter(FS.open_writable(str(path)), magic=magic, file_number=7, epoch=3)
    for r in records:
        w.add_record(r)
    w.sync()
    w.close()


def payloads(path, magic=WAL_MAGIC):
    records, torn, header = read_log(FS, str(path), magic=magic)
    return [p for _, p in records], torn, header


def test_header_and_small_records(tmp_path):
    p = tmp_path / "000007.log"
    write_log(p, [b"a", b"", b"hello" * 10])
    got, torn, header = payloads(p)
    assert got == [b"a", b"", b"hello" * 10]
    assert torn == 0
    assert header == (WAL_MAGIC, 1, 7, 3)


def test_records_span_blocks(tmp_path):
    rng = random.Random(1)
    recs = [rng.randbytes(rng.choice([0, 1, 100, BLOCK_SIZE - 7, BLOCK_SIZE, 3 * BLOCK_SIZE + 5]))
            for _ in range(40)]
    p = tmp_path / "x.log"
    write_log(p, recs)
    assert payloads(p)[0] == recs
    # Blocks are exactly 32 KiB: every block but the last is full.
    assert os.path.getsize(p) > 3 * BLOCK_SIZE


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 70000), max_size=12), st.data())
def test_any_truncation_is_a_clean_prefix(tmp_path_factory, sizes, data):
    """Cutting the file anywhere yields a prefix of the records and never raises."""
    d = tmp_path_factory.mktemp("trunc")
    recs = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    p = d / "t.log"
    write_log(p, recs)
    size = os.path.getsize(p)
    cut = data.draw(st.integers(0, size))
    with open(p, "r+b") as f:
        f.truncate(cut)
    got, torn, _ = payloads(p)
    assert got == recs[:len(got)]
    if cut == size:
        assert got == recs and torn == 0


def test_torn_tail_is_reported(tmp_path):
    p = tmp_path / "t.log"
    write_log(p, [b"x" * 100, b"y" * 100])
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size - 10)
    got, torn, _ = payloads(p)
    assert got == [b"x" * 100]
    assert torn == HEADER_SIZE + 100 - 10


def test_bit_flip_in_last_record_is_a_torn_tail(tmp_path):
    p = tmp_path / "t.log"
    write_log(p, [b"x" * 100, b"y" * 100])
    data = bytearray(p.read_bytes())
    data[-5] ^= 0x40
    p.write_bytes(bytes(data))
    got, torn, _ = payloads(p)
    assert got == [b"x" * 100]
    assert torn == HEADER_SIZE + 100


def test_damage_before_valid_records_is_corruption(tmp_path):
    p = tmp_path / "t.log"
    recs = [bytes([i]) * 1000 for i in range(100)]  # about 3 blocks
    write_log(p, recs)
    data = bytearray(p.read_bytes())
    off = 24 + HEADER_SIZE * 2 + 10 + 1000  # inside the second data record
    data[off] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        payloads(p)
    assert info.value.file == str(p)
    assert 0 < info.value.offset <= off


def test_zeroed_tail_is_the_end_of_the_log(tmp_path):
    # WAL segments are preallocated: zeros after the last record are unwritten space, not damage
    p = tmp_path / "t.log"
    write_log(p, [b"a" * 10])
    with open(p, "ab") as f:
        f.write(b"\x00" * 70000)
    got, torn, _ = payloads(p)
    assert got == [b"a" * 10]
    assert torn == 0


def test_record_cut_by_zeros_is_torn(tmp_path):
    p = tmp_path / "t.log"
    write_log(p, [b"a" * 10, b"b" * 100000])
    data = p.read_bytes()
    cut = len(data) - 40000                       # inside the long record's later fragments
    p.write_bytes(data[:cut] + b"\x00" * (len(data) - cut + 5000))
    got, torn, _ = payloads(p)
    assert got == [b"a" * 10]
    # the cut falls inside a fragment (a bad checksum): everything from the record's first
    # fragment to the end of the file is dropped
    assert torn == len(data) + 5000 - (7 + 24) - (7 + 10)


def test_zeros_in_the_middle_are_corruption(tmp_path):
    p = tmp_path / "t.log"
    write_log(p, [b"a" * 10, b"b" * 10, b"c" * 10])
    data = bytearray(p.read_bytes())
    first = 24 + 7 + 7                             # file header record, then record "a"
    data[first + 10:first + 10 + 17] = b"\x00" * 17  # zero record "b" entirely; "c" follows
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptionError):
        payloads(p)


def test_zeroed_header_before_non_zero_bytes_is_torn_to_the_last_of_them(tmp_path):
    # zeros over the last record's header are no clean end when its data (non-zero) follows
    p = tmp_path / "t.log"
    write_log(p, [b"a" * 10, b"b" * 100])
    data = bytearray(p.read_bytes())
    last = len(data) - (HEADER_SIZE + 100)
    data[last:last + 16] = b"\x00" * 16
    p.write_bytes(bytes(data) + b"\x00" * 5000)   # and the preallocated zeros after it
    got, torn, _ = payloads(p)
    assert got == [b"a" * 10]
    assert torn == HEADER_SIZE + 100               # up to the last non-zero byte, not the zeros after it
    f = FS.open_readable(str(p))
    try:
        reader = LogReader(f, magic=WAL_MAGIC)
        list(reader)
        assert (reader.torn_offset, reader.torn_kind) == (last, "damage")
    finally:
        f.close()


def _tail(path, *, preallocated):
    f = FS.open_readable(str(path))
    try:
        reader = LogReader(f, magic=MANIFEST_MAGIC, preallocated=preallocated)
        records = [p for _, p in reader]
        return records, reader.torn_bytes, reader.torn_offset, reader.torn_kind
    finally:
        f.close()


@pytest.mark.parametrize("how", ["cut-in-data", "cut-in-header", "cut-multi-block", "zeros", "zeros-in-data",
                                 "flip", "zeros-then-junk"])
def test_torn_tail_kinds(tmp_path, how):
    """What an interrupted append leaves ("cut", "zeros") and what it does not ("damage")."""
    p = tmp_path / "MANIFEST-000007"
    recs = [b"a" * 10, b"b" * 100] + ([b"c" * 70000] if how == "cut-multi-block" else [])
    write_log(p, recs, magic=MANIFEST_MAGIC)
    data = bytearray(p.read_bytes())
    start = 24 + HEADER_SIZE + HEADER_SIZE + 10     # the second record ("b")
    if how == "cut-in-data":
        data = data[:start + HEADER_SIZE + 40]
    elif how == "cut-in-header":
        data = data[:start + 3]
    elif how == "cut-multi-block":                  # the long record's FIRST fragment whole, the rest gone
        start += HEADER_SIZE + 100
        data = data[:BLOCK_SIZE + 100]
    elif how == "zeros":                            # a power loss kept the size, not the data
        data[start:] = b"\x00" * (len(data) - start)
    elif how == "zeros-in-data":                    # ... from inside the record
        data[start + HEADER_SIZE + 60:] = b"\x00" * (len(data) - start - HEADER_SIZE - 60)
    elif how == "flip":
        data[start + HEADER_SIZE + 50] ^= 0x08
    else:
        data[start:start + HEADER_SIZE] = b"\x00" * HEADER_SIZE
    p.write_bytes(bytes(data))
    kind = {"zeros": "zeros", "zeros-in-data": "zeros", "flip": "damage", "zeros-then-junk": "damage"}.get(how, "cut")
    records, torn, offset, got_kind = _tail(p, preallocated=False)
    assert records == recs[:1 if how != "cut-multi-block" else 2]
    assert (offset, got_kind) == (start, kind) and torn > 0
    # read as a preallocated log (a WAL), zeros to the end are its clean end
    records, torn, offset, got_kind = _tail(p, preallocated=True)
    if how == "zeros":
        assert records == recs[:1] and torn == 0 and got_kind is None
    else:
        assert (offset, got_kind) == (start, kind)


def test_wrong_magic(tmp_path):
    p = tmp_path / "m"
    write_log(p, [b"a"], magic=MANIFEST_MAGIC)
    with pytest.raises(CorruptionError, match="magic"):
        payloads(p, WAL_MAGIC)
