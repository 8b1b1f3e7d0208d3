"""SSTable writer and reader: round trips against a plain Python model, and damage detection."""

from __future__ import annotations

import os
import random
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabledb.errors import ClosedError, CorruptionError, InvalidArgumentError, StorageIOError
from tabledb.storage import dbformat
from tabledb.storage.cache import BlockCache, TableCache
from tabledb.storage.dbformat import KIND_DELETE, KIND_PUT, MAX_SEQUENCE, pack_trailer
from tabledb.storage.fs import FileSystem
from tabledb.storage.sstable import (
    BLOCK_TRAILER_SIZE,
    FOOTER_SIZE,
    FORMAT_VERSION,
    MAGIC,
    SSTableReader,
    SSTableWriter,
    _FOOTER,
)

FS = FileSystem()


# ---------------------------------------------------------------------------
# Helpers and the model


def write_table(path, entries, fragments=(), *, file_number=1, **opts):
    """Write ``entries`` ((user_key, trailer, value), in internal order) and fragments to ``path``."""
    w = SSTableWriter(FS.open_writable(str(path)), file_number=file_number, **opts)
    for key, trailer, value in entries:
        w.add(key, trailer, value)
    if fragments:
        w.add_range_tombstones(fragments)
    return w.finish()


def open_table(path, *, file_number=1, block_cache=None):
    return SSTableReader.open(FS.open_readable(str(path)), file_number=file_number, block_cache=block_cache)


def internal_order(entries):
    return sorted(entries, key=lambda e: (e[0], -e[1]))


def model_get(entries, key, max_sequence):
    """The newest version of ``key`` visible at ``max_sequence``, as SSTableReader.get returns it."""
    for k, trailer, value in entries:
        if k == key and trailer >> 8 <= max_sequence:
            return trailer, value
    return None


def model_iter(entries, start=None, end=None, reverse=False):
    out = [(k, -t, v) for k, t, v in entries
           if (start is None or k >= start) and (end is None or k < end)]
    return out[::-1] if reverse else out


def make_entries(rng, n_keys, versions=3, value_size=20, key_size=8):
    """Random entries in internal order with up to ``versions`` versions per key."""
    keys = sorted({rng.randbytes(key_size) for _ in range(n_keys)})
    entries = []
    for key in keys:
        seqs = sorted(rng.sample(range(1, 10_000), rng.randint(1, versions)), reverse=True)
        for seq in seqs:
            kind = KIND_DELETE if rng.random() < 0.2 else KIND_PUT
            value = b"" if kind == KIND_DELETE else rng.randbytes(rng.randint(0, value_size))
            entries.append((key, pack_trailer(seq, kind), value))
    return entries


def check_against_model(reader, entries, probes=(), bounds=()):
    user_keys = sorted({e[0] for e in entries})
    seqs_by_key = {}
    for k, t, _ in entries:
        seqs_by_key.setdefault(k, []).append(t >> 8)
    for key in list(user_keys) + list(probes):
        candidates = {0, MAX_SEQUENCE}
        for s in seqs_by_key.get(key, []):
            candidates.update((s - 1, s, s + 1))
        for max_seq in sorted(candidates):
            assert reader.get(key, max_seq) == model_get(entries, key, max_seq), (key, max_seq)
    assert list(reader.iter_entries()) == model_iter(entries)
    assert list(reader.iter_entries(reverse=True)) == model_iter(entries, reverse=True)
    for start, end in bounds:
        for reverse in (False, True):
            assert list(reader.iter_entries(start, end, reverse=reverse)) == \
                model_iter(entries, start, end, reverse), (start, end, reverse)


# ---------------------------------------------------------------------------
# Round trips


@st.composite
def entry_sets(draw):
    keys = draw(st.lists(st.binary(max_size=4), unique=True, max_size=40))
    entries = []
    for key in keys:
        seqs = draw(st.lists(st.integers(0, 200), min_size=1, max_size=5, unique=True))
        for seq in sorted(seqs, reverse=True):
            kind = draw(st.sampled_from([KIND_PUT, KIND_PUT, KIND_DELETE]))
            value = b"" if kind == KIND_DELETE else draw(
                st.one_of(st.binary(max_size=10), st.binary(min_size=100, max_size=300)))
            entries.append((key, pack_trailer(seq, kind), value))
    return internal_order(entries)


@settings(max_examples=150, deadline=None)
@given(
    entries=entry_sets(),
    block_size=st.sampled_from([1, 16, 64, 4096]),
    compression=st.sampled_from([None, "zlib"]),
    probes=st.lists(st.binary(max_size=4), max_size=5),
    bounds=st.lists(st.tuples(st.none() | st.binary(max_size=4), st.none() | st.binary(max_size=4)),
                    max_size=4),
)
def test_round_trip_matches_model(entries, block_size, compression, probes, bounds):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "000001.sst")
        props = write_table(path, entries, block_size=block_size, compression=compression)
        with open_table(path, block_cache=BlockCache(1 << 20)) as reader:
            check_against_model(reader, entries, probes, bounds)
            assert reader.properties == props
            assert props.num_entries == len(entries)
            assert props.num_deletions == sum(1 for e in entries if e[1] & 0xFF == KIND_DELETE)
            if entries:
                assert props.smallest_key == entries[0][0]
                assert props.largest_key == entries[-1][0]
                assert props.smallest_seq == min(e[1] >> 8 for e in entries)
                assert props.largest_seq == max(e[1] >> 8 for e in entries)
            else:
                assert props.smallest_key is None and props.largest_key is None
            reader.verify()


def test_many_versions_straddle_blocks(tmp_path):
    # One entry per block: every version of b"k" sits in its own block.
    entries = [(b"a", pack_trailer(5, KIND_PUT), b"a5")]
    entries += [(b"k", pack_trailer(s, KIND_PUT if s % 3 else KIND_DELETE), b"" if s % 3 == 0 else b"k%d" % s)
                for s in range(60, 0, -2)]
    entries += [(b"z", pack_trailer(1, KIND_PUT), b"z1")]
    for block_size in (1, 30, 100):
        path = tmp_path / f"t{block_size}.sst"
        props = write_table(path, entries, block_size=block_size)
        if block_size == 1:
            assert props.num_data_blocks == len(entries)
        with open_table(path) as reader:
            check_against_model(reader, entries, probes=[b"", b"j", b"ka", b"zz"],
                                bounds=[(b"k", b"l"), (b"a", b"k"), (b"k", None), (None, b"k")])
            assert reader.get(b"k", 0) is None
            assert reader.get(b"k", 1) is None
            assert reader.get(b"k", 2) == (pack_trailer(2, KIND_PUT), b"k2")
            assert reader.get(b"k", 7) == (pack_trailer(6, KIND_DELETE), b"")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_random_tables_with_small_blocks(tmp_path, compression):
    rng = random.Random(7)
    entries = make_entries(rng, 500, versions=4, value_size=300)
    path = tmp_path / "t.sst"
    props = write_table(path, entries, block_size=256, compression=compression)
    assert props.num_data_blocks > 50
    probes = [rng.randbytes(8) for _ in range(50)]
    keys = sorted({e[0] for e in entries})
    bounds = [(rng.choice(keys), rng.choice(keys)) for _ in range(10)] + [(probes[0], probes[1]), (None, None)]
    with open_table(path) as reader:
        check_against_model(reader, entries, probes, bounds)
        reader.verify()


def test_empty_values_and_empty_key(tmp_path):
    entries = [(b"", pack_trailer(3, KIND_PUT), b""), (b"", pack_trailer(1, KIND_PUT), b"x"),
               (b"a", pack_trailer(2, KIND_PUT), b""), (b"b", pack_trailer(4, KIND_DELETE), b"")]
    path = tmp_path / "t.sst"
    write_table(path, entries, block_size=1)
    with open_table(path) as reader:
        assert reader.get(b"", 5) == (pack_trailer(3, KIND_PUT), b"")
        assert reader.get(b"", 2) == (pack_trailer(1, KIND_PUT), b"x")
        assert reader.get(b"a", 9) == (pack_trailer(2, KIND_PUT), b"")
        assert reader.get(b"b", 9) == (pack_trailer(4, KIND_DELETE), b"")
        check_against_model(reader, entries)


def test_large_values_bigger_than_blocks(tmp_path):
    rng = random.Random(3)
    entries = [(b"k%03d" % i, pack_trailer(i + 1, KIND_PUT), rng.randbytes(rng.choice([10, 5000, 70_000])))
               for i in range(40)]
    path = tmp_path / "t.sst"
    props = write_table(path, entries, block_size=1024, compression="zlib")  # random bytes: stored raw
    assert props.raw_value_size == sum(len(e[2]) for e in entries)
    with open_table(path) as reader:
        check_against_model(reader, entries, bounds=[(b"k010", b"k020")])
        for key, trailer, value in entries:
            got = reader.get(key, MAX_SEQUENCE)
            assert got == (trailer, value) and type(got[1]) is bytes
        reader.verify()


def test_zlib_compression_shrinks_and_round_trips(tmp_path):
    entries = [(b"key%06d" % i, pack_trailer(i + 1, KIND_PUT), b"value %d " % i * 10) for i in range(3000)]
    plain = write_table(tmp_path / "plain.sst", entries)
    packed = write_table(tmp_path / "packed.sst", entries, compression="zlib")
    assert packed.compression == "zlib" and plain.compression is None
    assert packed.data_size < plain.data_size / 2
    with open_table(tmp_path / "packed.sst") as reader:
        assert reader.properties.compression == "zlib"
        check_against_model(reader, entries, bounds=[(b"key000100", b"key000200")])
        reader.verify()


def test_handed_out_keys_and_values_are_bytes(tmp_path):
    entries = [(b"a", pack_trailer(1, KIND_PUT), b"1"), (b"b", pack_trailer(2, KIND_PUT), b"22")]
    write_table(tmp_path / "t.sst", entries, compression="zlib")
    with open_table(tmp_path / "t.sst", block_cache=BlockCache(1 << 20)) as reader:
        for k, neg, v in list(reader.iter_entries()) + list(reader.iter_entries(reverse=True)):
            assert type(k) is bytes and type(v) is bytes and type(neg) is int
        assert type(reader.get(b"b", 9)[1]) is bytes


# ---------------------------------------------------------------------------
# Range tombstones and properties


def test_range_tombstones_round_trip_and_key_range(tmp_path):
    fragments = [(b"a", b"c", (9, 4)), (b"c", b"f", (9,)), (b"m", b"zz", (12, 7, 1))]
    entries = [(b"b", pack_trailer(5, KIND_PUT), b"v"), (b"d", pack_trailer(2, KIND_DELETE), b"")]
    props = write_table(tmp_path / "t.sst", entries, fragments, file_number=42, cf_id=3,
                        creation_time=1_700_000_000, bloom_bits_per_key=12)
    with open_table(tmp_path / "t.sst", file_number=42) as reader:
        assert reader.range_tombstones == fragments
        p = reader.properties
        assert p == props
        assert (p.file_number, p.cf_id, p.format_version) == (42, 3, FORMAT_VERSION)
        assert (p.num_entries, p.num_deletions, p.num_range_tombstones) == (2, 1, 3)
        assert (p.smallest_key, p.largest_key, p.largest_is_range_end) == (b"a", b"zz", True)
        assert (p.smallest_seq, p.largest_seq) == (1, 12)
        assert p.creation_time == 1_700_000_000
        assert p.bloom_bits_per_key == 12
        assert p.file_size == os.path.getsize(tmp_path / "t.sst")
        assert p.num_data_blocks == 1 and 0 < p.data_size < p.file_size
        reader.verify()


def test_key_range_when_point_keys_stick_out(tmp_path):
    fragments = [(b"c", b"e", (3,))]
    entries = [(b"a", pack_trailer(5, KIND_PUT), b"v"), (b"e", pack_trailer(6, KIND_PUT), b"w")]
    props = write_table(tmp_path / "t.sst", entries, fragments)
    # The tombstone end b"e" is exclusive, and the point key b"e" is in: largest is inclusive.
    assert (props.smallest_key, props.largest_key, props.largest_is_range_end) == (b"a", b"e", False)
    assert (props.smallest_seq, props.largest_seq) == (3, 6)


def test_tombstones_only_and_empty_tables(tmp_path):
    props = write_table(tmp_path / "t.sst", [], [(b"k", b"p", (5,))])
    assert (props.smallest_key, props.largest_key, props.largest_is_range_end) == (b"k", b"p", True)
    with open_table(tmp_path / "t.sst") as reader:
        assert reader.range_tombstones == [(b"k", b"p", (5,))]
        assert reader.get(b"k", MAX_SEQUENCE) is None
        assert list(reader.iter_entries()) == [] and list(reader.iter_entries(reverse=True)) == []
        reader.verify()
    props = write_table(tmp_path / "e.sst", [])
    assert (props.num_entries, props.smallest_key, props.largest_key, props.num_data_blocks) == (0, None, None, 0)
    with open_table(tmp_path / "e.sst") as reader:
        assert reader.range_tombstones == [] and reader.get(b"", MAX_SEQUENCE) is None
        assert list(reader.iter_entries(b"a", b"b")) == []
        reader.verify()


def test_writer_rejects_bad_input(tmp_path):
    w = SSTableWriter(FS.open_writable(str(tmp_path / "t.sst")), file_number=1)
    w.add(b"b", pack_trailer(5, KIND_PUT), b"")
    with pytest.raises(InvalidArgumentError):
        w.add(b"a", pack_trailer(9, KIND_PUT), b"")          # key goes backwards
    with pytest.raises(InvalidArgumentError):
        w.add(b"b", pack_trailer(5, KIND_PUT), b"")          # same trailer twice
    with pytest.raises(InvalidArgumentError):
        w.add(b"b", pack_trailer(6, KIND_PUT), b"")          # newer after older
    with pytest.raises(InvalidArgumentError):
        w.add(b"c", pack_trailer(1, dbformat.KIND_RANGE_DELETE), b"")
    w.add(b"b", pack_trailer(4, KIND_DELETE), b"")
    with pytest.raises(InvalidArgumentError):
        w.add_range_tombstones([(b"c", b"a", (1,))])         # empty range
    with pytest.raises(InvalidArgumentError):
        w.add_range_tombstones([(b"a", b"d", (1,)), (b"c", b"e", (2,))])  # overlap
    with pytest.raises(InvalidArgumentError):
        w.add_range_tombstones([(b"a", b"d", (1, 2))])        # seqs ascending
    w.add_range_tombstones([(b"a", b"d", (2, 1))])
    with pytest.raises(InvalidArgumentError):
        w.add_range_tombstones([(b"c", b"e", (3,))])          # overlaps the earlier call
    assert w.num_entries == 2 and w.estimated_size > 0
    props = w.finish()
    assert props.num_entries == 2
    with pytest.raises(InvalidArgumentError):
        SSTableWriter(FS.open_writable(str(tmp_path / "u.sst")), file_number=2, compression="lz4")


def test_estimated_size_tracks_file_size(tmp_path):
    rng = random.Random(5)
    w = SSTableWriter(FS.open_writable(str(tmp_path / "t.sst")), file_number=1)
    for key, trailer, value in make_entries(rng, 2000, versions=1, value_size=100):
        w.add(key, trailer, value)
    estimate = w.estimated_size
    size = w.finish().file_size
    assert 0.9 * size <= estimate <= 1.2 * size


def test_abandon_closes_without_footer(tmp_path):
    w = SSTableWriter(FS.open_writable(str(tmp_path / "t.sst")), file_number=1, block_size=16)
    for i in range(100):
        w.add(b"%04d" % i, pack_trailer(1, KIND_PUT), b"x" * 10)
    w.abandon()
    with pytest.raises(CorruptionError):
        open_table(tmp_path / "t.sst")


# ---------------------------------------------------------------------------
# Bloom filter through the reader


def test_reader_bloom_has_no_false_negatives(tmp_path):
    rng = random.Random(11)
    entries = make_entries(rng, 3000, versions=1)
    write_table(tmp_path / "t.sst", entries)
    with open_table(tmp_path / "t.sst") as reader:
        assert all(reader.may_contain(k) for k, _, _ in entries)
        absent = [rng.randbytes(9) for _ in range(20_000)]
        assert sum(map(reader.may_contain, absent)) / len(absent) < 0.03


def test_bloom_disabled(tmp_path):
    entries = [(b"a", pack_trailer(1, KIND_PUT), b"1")]
    write_table(tmp_path / "t.sst", entries, bloom_bits_per_key=0)
    with open_table(tmp_path / "t.sst") as reader:
        assert reader.may_contain(b"anything")
        assert reader.get(b"anything", MAX_SEQUENCE) is None
        assert reader.get(b"a", MAX_SEQUENCE) == (pack_trailer(1, KIND_PUT), b"1")


# ---------------------------------------------------------------------------
# Caches with readers


def test_block_cache_fill_and_hits(tmp_path):
    entries = [(b"k%04d" % i, pack_trailer(i + 1, KIND_PUT), b"v" * 50) for i in range(1000)]
    props = write_table(tmp_path / "000007.sst", entries, file_number=7)
    cache = BlockCache(10 << 20)
    with open_table(tmp_path / "000007.sst", file_number=7, block_cache=cache) as reader:
        assert list(reader.iter_entries(fill_cache=False)) == model_iter(entries)
        s = cache.stats()
        assert s["entries"] == 0 and s["usage"] == 0 and s["misses"] == props.num_data_blocks
        assert reader.get(b"k0500", MAX_SEQUENCE) == (pack_trailer(501, KIND_PUT), b"v" * 50)
        assert cache.stats()["entries"] == 1
        assert reader.get(b"k0501", MAX_SEQUENCE) is not None  # same block
        assert cache.stats()["hits"] == 1
        list(reader.iter_entries())  # fill_cache=True
        s = cache.stats()
        assert s["entries"] == props.num_data_blocks
        assert props.data_size <= s["usage"] <= 2 * props.data_size + 500 * props.num_data_blocks
        # Cached blocks are served even when the file went away underneath.
        reader.close()
        assert reader.get(b"k0002", MAX_SEQUENCE) == (pack_trailer(3, KIND_PUT), b"v" * 50)
    uncached = open_table(tmp_path / "000007.sst", file_number=7)
    uncached.close()
    with pytest.raises(ClosedError):
        uncached.get(b"k0002", MAX_SEQUENCE)


def test_table_cache_opens_evicts_and_keeps_readers_in_use(tmp_path):
    for n in (1, 2, 3):
        entries = [(b"k%04d" % i, pack_trailer(i + 1, KIND_PUT), b"f%d" % n) for i in range(500)]
        write_table(tmp_path / dbformat.table_file_name(n), entries, file_number=n, block_size=256)
    blocks = BlockCache(1 << 20)
    tables = TableCache(FS, str(tmp_path), 2, blocks)
    r1 = tables.get(1)
    assert tables.get(1) is r1
    it = r1.iter_entries()
    assert next(it) == (b"k0000", -pack_trailer(1, KIND_PUT), b"f1")
    assert r1.get(b"k0100", MAX_SEQUENCE)[1] == b"f1"
    tables.get(2)
    tables.get(3)  # evicts 1 (least recently used), which we still hold
    assert 1 not in tables and len(tables) == 2
    assert sum(1 for _ in it) == 499        # the iterator keeps working
    assert r1.get(b"k0499", MAX_SEQUENCE)[1] == b"f1"
    assert tables.get(1) is not r1          # reopened
    # evict() also drops the file's blocks from the block cache.
    tables.get(2).get(b"k0001", MAX_SEQUENCE)
    before = blocks.stats()["entries"]
    tables.evict(2)
    assert 2 not in tables and blocks.stats()["entries"] < before
    assert all(key[0] != 2 for key in blocks._entries)
    with pytest.raises(StorageIOError):
        tables.get(99)
    tables.close()
    with pytest.raises(ClosedError):
        tables.get(1)


def test_reader_closes_file_when_dropped(tmp_path):
    write_table(tmp_path / "t.sst", [(b"a", pack_trailer(1, KIND_PUT), b"1")])
    f = FS.open_readable(str(tmp_path / "t.sst"))
    reader = SSTableReader.open(f, file_number=1)
    assert f._fd >= 0
    del reader
    assert f._fd == -1


# ---------------------------------------------------------------------------
# Corruption


def regions(path):
    """{name: (offset, length)} of every region of the file, from its footer and index."""
    data = open(path, "rb").read()
    foff = len(data) - FOOTER_SIZE
    (t_off, t_size, f_off, f_size, i_off, i_size, p_off, p_size, *_rest) = _FOOTER.unpack(data[foff:])
    with open_table(path) as reader:
        blocks = list(zip(reader._block_offsets, reader._block_sizes))
    out = {"data": (blocks[len(blocks) // 2][0], blocks[len(blocks) // 2][1] + BLOCK_TRAILER_SIZE)}
    for name, off, size in (("tombstones", t_off, t_size), ("filter", f_off, f_size),
                            ("index", i_off, i_size), ("properties", p_off, p_size)):
        out[name] = (off, size + BLOCK_TRAILER_SIZE)
    out["footer"] = (foff, FOOTER_SIZE)
    return out


def flip(path, pos, mask=0x40):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ mask]))


def exercise(path, entries, block_cache=None):
    """Open, read everything, verify. Returns the CorruptionError raised, or None."""
    try:
        with open_table(path, block_cache=block_cache) as reader:
            for key in sorted({e[0] for e in entries}):
                assert reader.get(key, MAX_SEQUENCE) == model_get(entries, key, MAX_SEQUENCE)
            assert list(reader.iter_entries()) == model_iter(entries)
            reader.verify()
    except CorruptionError as exc:
        return exc
    return None


@pytest.fixture
def sample_table(tmp_path):
    rng = random.Random(1)
    entries = make_entries(rng, 200, versions=2, value_size=40)
    fragments = [(b"\x10", b"\x20", (50, 7)), (b"\x80", b"\x90", (9,))]
    path = tmp_path / "000005.sst"
    write_table(path, entries, fragments, file_number=5, block_size=512)
    return path, entries


@pytest.mark.parametrize("region", ["data", "tombstones", "filter", "index", "properties", "footer"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_each_region_is_caught(sample_table, region, where):
    path, entries = sample_table
    offset, length = regions(path)[region]
    pos = {"first": offset, "middle": offset + length // 2, "last": offset + length - 1}[where]
    flip(path, pos)
    if region != "data":  # every region but the data blocks is checked at open
        with pytest.raises(CorruptionError) as info:
            open_table(path, file_number=5)
    else:
        with open_table(path, file_number=5) as reader:
            with pytest.raises(CorruptionError) as info:
                list(reader.iter_entries())
            assert info.value.offset == offset
            with pytest.raises(CorruptionError) as info:
                for key in sorted({e[0] for e in entries}):
                    assert reader.get(key, MAX_SEQUENCE) == model_get(entries, key, MAX_SEQUENCE)
            assert info.value.offset == offset
            with pytest.raises(CorruptionError) as info:
                reader.verify()
    assert info.value.file == str(path)
    assert info.value.offset == offset
    assert str(path) in str(info.value)


def test_every_single_byte_flip_is_caught_or_harmless(tmp_path):
    """Flip each byte of a small table in turn: a read either raises CorruptionError or returns the
    right answer, and verify() always raises."""
    entries = [(b"apple", pack_trailer(3, KIND_PUT), b"red"), (b"apple", pack_trailer(1, KIND_PUT), b"green"),
               (b"kiwi", pack_trailer(2, KIND_DELETE), b""), (b"pear", pack_trailer(4, KIND_PUT), b"yellow")]
    path = tmp_path / "000009.sst"
    for compression in (None, "zlib"):
        write_table(path, entries, [(b"b", b"c", (5,))], file_number=9, block_size=20, compression=compression)
        good = open(path, "rb").read()
        for pos in range(len(good)):
            damaged = bytearray(good)
            damaged[pos] ^= 0x01
            with open(path, "wb") as f:
                f.write(damaged)
            exc = exercise(path, entries)
            assert exc is not None, f"flip at {pos} went unnoticed"
            assert exc.file == str(path) and 0 <= exc.offset <= pos, (pos, exc)


@pytest.mark.parametrize("keep", [0, 1, 10, FOOTER_SIZE - 1, FOOTER_SIZE, "half", "minus1", "minus_footer"])
def test_truncated_file(sample_table, keep):
    path, entries = sample_table
    size = os.path.getsize(path)
    keep = {"half": size // 2, "minus1": size - 1, "minus_footer": size - FOOTER_SIZE}.get(keep, keep)
    os.truncate(path, keep)
    with pytest.raises(CorruptionError) as info:
        open_table(path)
    assert info.value.file == str(path)
    assert 0 <= info.value.offset <= max(0, keep - FOOTER_SIZE)


def test_bad_magic_and_version(tmp_path):
    entries = [(b"a", pack_trailer(1, KIND_PUT), b"1")]
    path = tmp_path / "t.sst"
    write_table(path, entries)
    data = bytearray(open(path, "rb").read())
    foff = len(data) - FOOTER_SIZE
    assert data[-8:] == MAGIC
    fields = list(_FOOTER.unpack(data[foff:]))
    # A future version, with a valid footer checksum: refused as unsupported.
    fields[9] = FORMAT_VERSION + 1
    head = _FOOTER.pack(*fields)[:56]
    fields[10] = dbformat.mask_crc(dbformat.crc32c(head))
    with open(path, "wb") as f:
        f.write(data[:foff] + _FOOTER.pack(*fields))
    with pytest.raises(CorruptionError, match="version") as info:
        open_table(path)
    assert info.value.offset == foff
    with open(path, "wb") as f:
        f.write(data[:-8] + b"NOTMAGIC")
    with pytest.raises(CorruptionError, match="magic") as info:
        open_table(path)
    assert info.value.offset == foff


def test_impossible_handles_with_valid_footer_checksum(tmp_path):
    path = tmp_path / "t.sst"
    write_table(path, [(b"a", pack_trailer(1, KIND_PUT), b"1")])
    data = open(path, "rb").read()
    foff = len(data) - FOOTER_SIZE
    fields = list(_FOOTER.unpack(data[foff:]))
    fields[6] = 1 << 40  # properties offset far past the end
    fields[10] = dbformat.mask_crc(dbformat.crc32c(_FOOTER.pack(*fields)[:56]))
    with open(path, "wb") as f:
        f.write(data[:foff] + _FOOTER.pack(*fields))
    with pytest.raises(CorruptionError, match="impossible") as info:
        open_table(path)
    assert info.value.offset == foff


def test_data_block_damage_not_hidden_by_cache_of_other_reader(sample_table):
    """A block is checked when it comes from the file; a cached copy from before the damage is
    served as it was (that is the cache's contract), a fresh reader without cache catches it."""
    path, entries = sample_table
    cache = BlockCache(1 << 20)
    with open_table(path, file_number=5, block_cache=cache) as reader:
        before = list(reader.iter_entries())
    offset, length = regions(path)["data"]
    flip(path, offset + 3)
    with open_table(path, file_number=5, block_cache=cache) as reader:
        assert list(reader.iter_entries()) == before
    with open_table(path, file_number=5) as reader:
        with pytest.raises(CorruptionError) as info:
            list(reader.iter_entries(reverse=True))
        assert info.value.offset == offset


def test_verify_checks_the_whole_file_crc(tmp_path):
    """A data block rewritten with a matching block checksum passes reads, but not verify()."""
    entries = [(b"a", pack_trailer(1, KIND_PUT), b"hello"), (b"b", pack_trailer(2, KIND_PUT), b"world")]
    path = tmp_path / "t.sst"
    write_table(path, entries)
    data = bytearray(open(path, "rb").read())
    with open_table(path) as reader:
        offset, size = reader._block_offsets[0], reader._block_sizes[0]
    pos = data.index(b"world", offset, offset + size)
    data[pos:pos + 5] = b"WORLD"
    data[offset + size + 1:offset + size + 5] = dbformat.mask_crc(
        dbformat.crc32c(bytes(data[offset:offset + size + 1]))).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(data)
    with open_table(path) as reader:
        assert reader.get(b"b", MAX_SEQUENCE) == (pack_trailer(2, KIND_PUT), b"WORLD")
        with pytest.raises(CorruptionError, match="whole-file") as info:
            reader.verify()
        assert info.value.offset == 0 and info.value.file == str(path)


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(st.binary(max_size=6), unique=True, max_size=60),
    block_size=st.sampled_from([1, 32, 4096]),
    compression=st.sampled_from([None, "zlib"]),
    bounds=st.tuples(st.none() | st.binary(max_size=6), st.none() | st.binary(max_size=6)),
    reverse=st.booleans(),
)
def test_iter_pairs_of_a_clean_table(keys, block_size, compression, bounds, reverse):
    """A table of puts of distinct keys: iter_pairs gives exactly the (key, value) pairs in range."""
    entries = internal_order([(k, pack_trailer(i + 1, KIND_PUT), b"v%d" % i) for i, k in enumerate(keys)])
    start, end = bounds
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "000001.sst")
        write_table(path, entries, block_size=block_size, compression=compression)
        with open_table(path, block_cache=BlockCache(1 << 20)) as reader:
            got = [pair for pairs in reader.iter_pairs(start, end, reverse) for pair in pairs]
    want = [(k, v) for k, _, v in entries if (start is None or k >= start) and (end is None or k < end)]
    assert got == (want[::-1] if reverse else want)
