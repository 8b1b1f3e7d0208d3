"""The engine contract (docs/engine-api.md): every test runs against MemoryEngine and the LSM engine.

Tests marked with ``STAGES`` run three times: with the data still in the
memtable, after a flush, and after a flush and a full compaction, so the LSM
engine answers the same from its memtable, its level-0 files and its last level.
"""

from __future__ import annotations

import os
import random
import threading

import pytest

from tabledb.errors import ClosedError, DatabaseLockedError, InvalidArgumentError, InvalidTypeError
from tabledb.storage.batch import ColumnFamily, WriteBatch

STAGES = pytest.mark.parametrize("stage", ["memtable", "flushed", "compacted"])


def settle(db, stage: str) -> None:
    """Move everything written so far to where ``stage`` says."""
    if stage in ("flushed", "compacted"):
        db.flush()
    if stage == "compacted":
        for name in db.list_column_families():
            db.compact_range(cf=db.get_column_family(name))


def scan(db, *args, **kwargs) -> list[tuple[bytes, bytes]]:
    return list(db.scan(*args, **kwargs))


def keys(db, *args, **kwargs) -> list[bytes]:
    return [k for k, _ in db.scan(*args, **kwargs)]


def dump(db) -> tuple[int, dict[str, list[tuple[bytes, bytes]]]]:
    """The whole visible state: the latest sequence and every column family's contents."""
    return db.latest_sequence, {
        name: scan(db, cf=db.get_column_family(name)) for name in db.list_column_families()
    }


def put_all(db, items, cf=None) -> None:
    for key, value in items:
        db.put(key, value, cf=cf)


ABCDE = [(k, k.upper() * 2) for k in (b"a", b"b", b"c", b"d", b"e")]


# -- basics --------------------------------------------------------------------------------------


def test_new_database_is_empty(db):
    assert db.latest_sequence == 0
    assert db.list_column_families() == ["default"]
    assert db.get_column_family("default").id == 0
    assert db.get(b"a") is None
    assert scan(db) == []
    assert scan(db, reverse=True) == []


@STAGES
def test_put_get_delete_overwrite(db, stage):
    db.put(b"k1", b"v1")
    db.put(b"k2", b"v2")
    db.put(b"k3", b"v3")
    settle(db, stage)
    db.put(b"k1", b"v1-new")
    db.delete(b"k2")
    db.delete(b"missing")
    settle(db, stage)
    assert db.get(b"k1") == b"v1-new"
    assert db.get(b"k2") is None
    assert db.get(b"k3") == b"v3"
    assert db.get(b"missing") is None
    assert scan(db) == [(b"k1", b"v1-new"), (b"k3", b"v3")]
    db.put(b"k2", b"again")
    db.delete(b"k3")
    settle(db, stage)
    assert scan(db) == [(b"k1", b"v1-new"), (b"k2", b"again")]


def test_bytes_like_arguments_are_copied(db):
    key = bytearray(b"key")
    value = bytearray(b"value")
    db.put(key, value)
    key[0] = ord("X")
    value[0] = ord("X")
    db.put(memoryview(b"mv"), memoryview(b"view"))
    assert db.get(b"key") == b"value"
    assert db.get(bytearray(b"mv")) == b"view"
    got = db.get(b"key")
    assert type(got) is bytes
    assert all(type(k) is bytes and type(v) is bytes for k, v in db.scan())
    assert scan(db, bytearray(b"k"), memoryview(b"l")) == [(b"key", b"value")]


@STAGES
def test_empty_key_and_empty_value(db, stage):
    db.put(b"", b"empty key")
    db.put(b"k", b"")
    settle(db, stage)
    assert db.get(b"") == b"empty key"
    assert db.get(b"k") == b""
    assert scan(db) == [(b"", b"empty key"), (b"k", b"")]
    assert scan(db, b"", b"") == []
    assert scan(db, b"", b"\x00") == [(b"", b"empty key")]
    db.delete(b"")
    settle(db, stage)
    assert db.get(b"") is None
    assert db.get(b"k") == b""        # an empty value is a value, not a delete
    assert scan(db) == [(b"k", b"")]


BINARY_KEYS = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff", b"\x01", b"a", b"a\x00", b"a\xff",
               b"\x7f", b"\x80", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]


@STAGES
def test_binary_keys_sort_bytewise(db, stage):
    assert BINARY_KEYS == sorted(BINARY_KEYS)
    shuffled = list(BINARY_KEYS)
    random.Random(7).shuffle(shuffled)
    for i, key in enumerate(shuffled):
        db.put(key, b"v" + key + bytes([i]))
    settle(db, stage)
    expected = [(k, b"v" + k + bytes([shuffled.index(k)])) for k in BINARY_KEYS]
    assert scan(db) == expected
    assert scan(db, reverse=True) == expected[::-1]
    for key, value in expected:
        assert db.get(key) == value
    assert keys(db, end=b"\x00") == [b""]
    assert keys(db, b"\x00", b"\x01") == [b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff"]
    assert keys(db, b"\xff") == [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]
    assert keys(db, b"\xff\x00", b"\xff\xff\xff", reverse=True) == [b"\xff\xff", b"\xff\x00"]
    assert db.get(b"\x00\x02") is None
    assert db.get(b"\xff\xff\xff\xff") is None


@STAGES
def test_large_values(harness, stage):
    db = harness.open()
    rng = random.Random(1)
    big = {b"big1": rng.randbytes(1 << 20), b"big2": bytes(range(256)) * 4096, b"big3": b"\x00" * (1 << 20)}
    for key, value in big.items():
        db.put(key, value)
    db.put(b"small", b"s")
    settle(db, stage)
    for key, value in big.items():
        assert db.get(key) == value
    assert scan(db) == sorted([*big.items(), (b"small", b"s")])
    db.put(b"big2", b"shrunk")
    db.delete(b"big3")
    settle(db, stage)
    db = harness.reopen()
    assert db.get(b"big1") == big[b"big1"]
    assert scan(db, b"big2") == [(b"big2", b"shrunk"), (b"small", b"s")]


@STAGES
def test_many_keys(db, stage):
    items = [(b"key%05d" % i, b"value%d" % (i * 7)) for i in range(2000)]
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    put_all(db, shuffled)
    settle(db, stage)
    assert scan(db) == items
    for i in range(0, 2000, 3):
        db.delete(b"key%05d" % i)
    db.delete_range(b"key01000", b"key01500")
    settle(db, stage)
    expected = [(k, v) for i, (k, v) in enumerate(items) if i % 3 and not 1000 <= i < 1500]
    assert scan(db) == expected
    assert scan(db, reverse=True) == expected[::-1]
    assert db.get(b"key00001") == b"value7"
    assert db.get(b"key00003") is None
    assert db.get(b"key01201") is None
    assert db.get(b"key01501") == b"value10507"


# -- scans ---------------------------------------------------------------------------------------

SCAN_BOUNDS = [
    # (start, end, expected keys ascending)
    (None, None, [b"a", b"b", b"c", b"d", b"e"]),
    (b"c", None, [b"c", b"d", b"e"]),
    (b"bb", None, [b"c", b"d", b"e"]),
    (None, b"c", [b"a", b"b"]),
    (None, b"cc", [b"a", b"b", b"c"]),
    (b"b", b"d", [b"b", b"c"]),
    (b"a", b"e", [b"a", b"b", b"c", b"d"]),
    (b"", b"\xff", [b"a", b"b", b"c", b"d", b"e"]),
    (b"bb", b"cc", [b"c"]),
    (b"bb", b"bc", []),
    (b"c", b"c", []),
    (b"f", None, []),
    (None, b"a", []),
    (b"e", b"f", [b"e"]),
]


@STAGES
@pytest.mark.parametrize("start,end,expected", SCAN_BOUNDS)
def test_scan_bounds(db, stage, start, end, expected):
    put_all(db, ABCDE)
    settle(db, stage)
    values = dict(ABCDE)
    assert scan(db, start, end) == [(k, values[k]) for k in expected]
    assert scan(db, start, end, reverse=True) == [(k, values[k]) for k in reversed(expected)]
    assert scan(db, start=start, end=end, cf=None, snapshot=None, reverse=False) == [(k, values[k]) for k in expected]


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_start_after_end_raises_at_the_call(db, reverse):
    put_all(db, ABCDE)
    with pytest.raises(InvalidArgumentError):
        db.scan(b"d", b"b", reverse=reverse)       # raises before any next()
    with pytest.raises(InvalidArgumentError):
        db.scan(b"b\x00", b"b")
    assert keys(db) == [b"a", b"b", b"c", b"d", b"e"]


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_iterator_does_not_see_later_writes(db, reverse):
    put_all(db, ABCDE)
    started = db.scan(reverse=reverse)
    first = next(started)
    not_started = db.scan(b"b", b"e", reverse=reverse)
    db.put(b"0", b"before everything")
    db.put(b"bb", b"between")
    db.put(b"z", b"after everything")
    db.put(b"c", b"changed")
    db.delete(b"d")
    db.delete_range(b"a", b"b")
    batch = WriteBatch().put(b"cc", b"batched").delete(b"e")
    db.write(batch)
    expected = ABCDE[::-1] if reverse else ABCDE
    assert [first, *started] == expected
    assert list(not_started) == ([(b"d", b"DD"), (b"c", b"CC"), (b"b", b"BB")] if reverse
                                 else [(b"b", b"BB"), (b"c", b"CC"), (b"d", b"DD")])
    assert keys(db) == [b"0", b"b", b"bb", b"c", b"cc", b"z"]


def test_scan_iterator_does_not_see_writes_after_flush_and_compaction(db):
    items = [(b"k%04d" % i, b"v%d" % i) for i in range(300)]
    put_all(db, items)
    it = db.scan()
    assert next(it) == items[0]
    for i in range(300):
        db.put(b"k%04d" % i, b"new%d" % i)
    db.delete_range(b"k0100", b"k0200")
    db.flush()
    db.compact_range()
    assert list(it) == items[1:]


# -- range deletes -------------------------------------------------------------------------------


@STAGES
def test_delete_range_end_is_exclusive(db, stage):
    put_all(db, ABCDE)
    settle(db, stage)
    db.delete_range(b"b", b"d")
    settle(db, stage)
    assert keys(db) == [b"a", b"d", b"e"]
    assert db.get(b"b") is None and db.get(b"c") is None
    assert db.get(b"d") == b"DD"
    db.delete_range(b"", b"a\x00")        # covers b"a" itself
    settle(db, stage)
    assert keys(db) == [b"d", b"e"]


@STAGES
def test_overlapping_range_deletes(db, stage):
    items = [(bytes([c]), b"%d" % c) for c in range(ord("a"), ord("p") + 1)]
    put_all(db, items)
    settle(db, stage)
    db.delete_range(b"c", b"g")
    settle(db, stage)
    db.delete_range(b"e", b"j")
    db.delete_range(b"d", b"f")           # inside both
    db.delete_range(b"m", b"o")
    db.delete_range(b"l", b"n")
    settle(db, stage)
    assert keys(db) == [b"a", b"b", b"j", b"k", b"o", b"p"]
    assert keys(db, reverse=True) == [b"p", b"o", b"k", b"j", b"b", b"a"]
    assert keys(db, b"c", b"l") == [b"j", b"k"]


def test_delete_range_of_nothing(db):
    put_all(db, ABCDE)
    seq = db.latest_sequence
    assert db.delete_range(b"c", b"c") == seq          # empty range: no-op, no sequence used
    assert db.latest_sequence == seq
    assert db.delete_range(b"x", b"z") == seq + 1      # empty of keys, but a real operation
    assert keys(db) == [b"a", b"b", b"c", b"d", b"e"]


@STAGES
def test_puts_after_a_range_delete_are_visible(db, stage):
    put_all(db, ABCDE)
    settle(db, stage)
    db.delete_range(b"a", b"z")
    db.put(b"c", b"reborn")
    db.put(b"cc", b"new")
    settle(db, stage)
    assert scan(db) == [(b"c", b"reborn"), (b"cc", b"new")]
    db.delete_range(b"c", b"cc")
    db.put(b"b", b"B")
    settle(db, stage)
    assert scan(db) == [(b"b", b"B"), (b"cc", b"new")]
    assert db.get(b"a") is None and db.get(b"c") is None


def test_range_delete_hides_versions_in_every_level(db):
    """Versions spread over the memtable and several files are all hidden by one tombstone."""
    db.put(b"k1", b"old")
    db.flush()
    db.compact_range()
    db.put(b"k1", b"mid")
    db.put(b"k2", b"mid")
    db.flush()
    db.put(b"k1", b"new")
    db.put(b"k3", b"new")
    db.delete_range(b"k1", b"k3")
    assert scan(db) == [(b"k3", b"new")]
    db.flush()
    assert scan(db) == [(b"k3", b"new")]
    db.compact_range()
    assert scan(db) == [(b"k3", b"new")]
    assert db.get(b"k1") is None and db.get(b"k2") is None
    db.put(b"k2", b"back")
    assert scan(db) == [(b"k2", b"back"), (b"k3", b"new")]


@STAGES
def test_range_delete_affects_only_its_column_families(db, stage):
    cf_a = db.create_column_family("a")
    cf_b = db.create_column_family("b")
    cf_c = db.create_column_family("c")
    for cf in (None, cf_a, cf_b, cf_c):
        put_all(db, ABCDE, cf=cf)
    settle(db, stage)
    db.write(WriteBatch().delete_range(b"b", b"e", cf=cf_a).delete_range(b"a", b"c", cf=cf_b))
    settle(db, stage)
    assert keys(db, cf=cf_a) == [b"a", b"e"]
    assert keys(db, cf=cf_b) == [b"c", b"d", b"e"]
    assert scan(db, cf=cf_c) == ABCDE
    assert scan(db) == ABCDE
    assert db.get(b"c", cf=cf_a) is None
    assert db.get(b"c", cf=cf_c) == b"CC"
    db.delete_range(b"a", b"z", cf=cf_c)
    assert scan(db, cf=cf_c) == []
    assert scan(db) == ABCDE


# -- snapshots -----------------------------------------------------------------------------------


@STAGES
def test_snapshot_sees_the_state_at_its_creation(db, stage):
    cf = db.create_column_family("other")
    put_all(db, ABCDE)
    put_all(db, ABCDE, cf=cf)
    settle(db, stage)
    seq = db.latest_sequence
    snap = db.snapshot()
    assert snap.sequence == seq
    db.put(b"a", b"changed")
    db.delete(b"b")
    db.delete_range(b"c", b"e")
    db.put(b"d", b"reborn")
    db.put(b"f", b"new")
    db.delete_range(b"a", b"z", cf=cf)
    settle(db, stage)
    assert scan(db, snapshot=snap) == ABCDE
    assert scan(db, snapshot=snap, reverse=True) == ABCDE[::-1]
    assert scan(db, b"b", b"d", snapshot=snap) == ABCDE[1:3]
    assert scan(db, cf=cf, snapshot=snap) == ABCDE
    for key, value in ABCDE:
        assert db.get(key, snapshot=snap) == value
        assert db.get(key, cf=cf, snapshot=snap) == value
    assert db.get(b"f", snapshot=snap) is None
    assert scan(db) == [(b"a", b"changed"), (b"d", b"reborn"), (b"e", b"EE"), (b"f", b"new")]
    assert scan(db, cf=cf) == []
    snap.close()


@STAGES
def test_several_snapshots_each_see_their_own_state(db, stage):
    snaps = []
    for i in range(5):
        snaps.append((db.snapshot(), i))
        db.put(b"counter", b"%d" % i)
        db.put(b"key%d" % i, b"x")
        if i == 3:
            db.delete_range(b"key0", b"key2")
        settle(db, stage)
    for snap, i in snaps:
        expected_counter = None if i == 0 else b"%d" % (i - 1)
        assert db.get(b"counter", snapshot=snap) == expected_counter
        expected_keys = [b"key%d" % j for j in range(i) if i <= 3 or j >= 2]   # key0, key1 range-deleted at i == 3
        assert keys(db, b"key", snapshot=snap) == expected_keys
    assert keys(db, b"key") == [b"key2", b"key3", b"key4"]
    snaps[2][0].close()                         # releasing one leaves the others intact
    snap, i = snaps[3]
    assert db.get(b"counter", snapshot=snap) == b"2"
    for snap, _ in snaps:
        snap.close()


def test_snapshot_release(db):
    db.put(b"a", b"1")
    snap = db.snapshot()
    db.put(b"a", b"2")
    assert db.get(b"a", snapshot=snap) == b"1"
    snap.close()
    snap.close()                                 # idempotent
    with pytest.raises(ClosedError):
        db.get(b"a", snapshot=snap)
    with pytest.raises(ClosedError):
        db.scan(snapshot=snap)
    with db.snapshot() as snap2:
        db.put(b"a", b"3")
        assert db.get(b"a", snapshot=snap2) == b"2"
    with pytest.raises(ClosedError):
        db.get(b"a", snapshot=snap2)
    assert db.get(b"a") == b"3"


def test_snapshot_after_engine_close(harness):
    db = harness.open()
    db.put(b"a", b"1")
    snap = db.snapshot()
    db.close()
    with pytest.raises(ClosedError):
        db.get(b"a", snapshot=snap)
    snap.close()                                 # releasing after the engine closed is harmless


def test_snapshot_survives_compaction(db):
    items = [(b"k%04d" % i, b"v%d" % i) for i in range(500)]
    put_all(db, items)
    snap = db.snapshot()
    for i in range(500):
        db.put(b"k%04d" % i, b"w%d" % i)
    db.delete_range(b"k0000", b"k0250")
    db.flush()
    db.compact_range()
    assert scan(db, snapshot=snap) == items
    assert db.get(b"k0000", snapshot=snap) == b"v0"
    assert db.get(b"k0000") is None
    assert db.get(b"k0499") == b"w499"
    snap.close()
    db.compact_range()
    assert len(scan(db)) == 250


# -- write batches -------------------------------------------------------------------------------


@STAGES
def test_batch_is_atomic_across_column_families(db, stage):
    cf1 = db.create_column_family("one")
    cf2 = db.create_column_family("two")
    db.put(b"x", b"old")
    before = db.snapshot()
    batch = WriteBatch()
    batch.put(b"a", b"default-a").put(b"a", b"one-a", cf=cf1).put(b"a", b"two-a", cf=cf2)
    batch.delete(b"x").delete_range(b"a", b"b", cf=cf2).put(b"b", b"two-b", cf=cf2)
    assert len(batch) == 6
    seq = db.write(batch)
    assert seq == before.sequence + 6 == db.latest_sequence
    settle(db, stage)
    assert scan(db) == [(b"a", b"default-a")]
    assert scan(db, cf=cf1) == [(b"a", b"one-a")]
    assert scan(db, cf=cf2) == [(b"b", b"two-b")]
    assert scan(db, snapshot=before) == [(b"x", b"old")]
    assert scan(db, cf=cf1, snapshot=before) == []
    assert scan(db, cf=cf2, snapshot=before) == []
    before.close()


def test_batch_with_a_bad_column_family_applies_nothing(harness, db):
    cf = db.create_column_family("doomed")
    db.put(b"k", b"v")
    db.drop_column_family(cf)
    other = harness.open_at(os.path.join(harness.base, "other"))
    foreign = other.create_column_family("foreign")
    state = dump(db)
    for bad_cf in (cf, foreign):
        batch = WriteBatch().put(b"a", b"1").delete(b"k").put(b"b", b"2", cf=bad_cf).put(b"c", b"3")
        with pytest.raises(InvalidArgumentError):
            db.write(batch)
        assert dump(db) == state
    db.put(b"later", b"write")                 # nothing of the failed batches shows up later either
    assert scan(db) == [*state[1]["default"], (b"later", b"write")]
    assert db.latest_sequence == state[0] + 1


@STAGES
def test_order_inside_a_batch(db, stage):
    put_all(db, ABCDE)
    settle(db, stage)
    batch = WriteBatch()
    batch.put(b"p", b"1").delete(b"p")                     # put then delete: deleted
    batch.delete(b"a").put(b"a", b"A2")                    # delete then put: visible
    batch.delete_range(b"b", b"d").put(b"c", b"C2")        # range delete then put inside: visible
    batch.put(b"q", b"1").delete_range(b"q", b"r")         # put then range delete: deleted
    batch.put(b"e", b"E2").put(b"e", b"E3")                # last put wins
    db.write(batch)
    settle(db, stage)
    assert scan(db) == [(b"a", b"A2"), (b"c", b"C2"), (b"d", b"DD"), (b"e", b"E3")]
    assert db.get(b"p") is None and db.get(b"q") is None and db.get(b"b") is None


def test_batch_sequence_numbers(db):
    assert db.write(WriteBatch()) == 0                     # empty batch: nothing used
    assert db.latest_sequence == 0
    batch = WriteBatch().put(b"a", b"1").delete(b"b").delete_range(b"c", b"d")
    assert db.write(batch) == 3
    assert db.latest_sequence == 3
    batch.delete_range(b"x", b"x")                         # an empty range adds no operation
    assert len(batch) == 3
    assert db.write(batch) == 6                            # a batch can be written again
    assert db.write(WriteBatch()) == 6
    batch.clear()
    assert len(batch) == 0 and db.write(batch) == 6
    assert db.latest_sequence == 6


def test_sequence_numbers(harness):
    db = harness.open()
    assert db.latest_sequence == 0
    assert db.put(b"a", b"1") == 1
    assert db.delete(b"missing") == 2
    assert db.delete_range(b"a", b"b") == 3
    assert db.put(b"a", b"2", cf=db.create_column_family("cf")) == 4
    assert db.write(WriteBatch().put(b"x", b"1").put(b"y", b"1")) == 6
    assert db.latest_sequence == 6
    with db.snapshot() as snap:
        assert snap.sequence == 6
    assert db.stats()["sequence"] == 6
    db = harness.reopen()
    assert db.latest_sequence == 6
    assert db.put(b"b", b"1") == 7
    db.flush()
    db = harness.reopen()
    assert db.latest_sequence == 7
    assert db.put(b"c", b"1") == 8


def test_sync_argument(db):
    assert db.put(b"a", b"1", sync=True) == 1
    assert db.put(b"b", b"1", sync=False) == 2
    assert db.delete(b"a", sync=True) == 3
    assert db.delete_range(b"b", b"c", sync=False) == 4
    assert db.write(WriteBatch().put(b"c", b"1"), sync=True) == 5
    assert db.write(WriteBatch().put(b"d", b"1"), sync=False) == 6
    assert scan(db) == [(b"c", b"1"), (b"d", b"1")]


def test_concurrent_readers_see_whole_batches(db):
    cf = db.create_column_family("mirror")
    db.write(WriteBatch().put(b"a", b"0").put(b"b", b"0").put(b"a", b"0", cf=cf))
    errors = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            with db.snapshot() as snap:
                values = {v for _, v in db.scan(snapshot=snap)} | {db.get(b"a", cf=cf, snapshot=snap)}
            if len(values) != 1:
                errors.append(values)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 200):
            v = b"%d" % i
            db.write(WriteBatch().put(b"a", v).put(b"b", v).put(b"a", v, cf=cf))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    assert scan(db) == [(b"a", b"199"), (b"b", b"199")]


def test_concurrent_writers_get_distinct_sequences(db):
    results = {}

    def writer(n):
        results[n] = [db.put(b"w%d-%03d" % (n, i), b"%d" % i) for i in range(150)]

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sequences = [s for seqs in results.values() for s in seqs]
    assert sorted(sequences) == list(range(1, 601))
    assert all(seqs == sorted(seqs) for seqs in results.values())
    assert db.latest_sequence == 600
    assert len(scan(db)) == 600


# -- column families -----------------------------------------------------------------------------


def test_create_and_list_column_families(db):
    a = db.create_column_family("a")
    b = db.create_column_family("b")
    assert isinstance(a, ColumnFamily) and isinstance(b, ColumnFamily)
    assert (a.name, b.name) == ("a", "b")
    assert len({0, a.id, b.id}) == 3
    assert 0 < a.id < b.id
    assert db.list_column_families() == ["default", "a", "b"]
    assert db.get_column_family("a").id == a.id
    assert db.get_column_family("b").name == "b"
    assert db.get_column_family("default").name == "default"
    db.put(b"k", b"via default handle", cf=db.get_column_family("default"))
    assert db.get(b"k") == b"via default handle"


@STAGES
def test_column_families_isolate_data(db, stage):
    a = db.create_column_family("a")
    b = db.create_column_family("b")
    db.put(b"k", b"default")
    db.put(b"k", b"in a", cf=a)
    db.put(b"k", b"in b", cf=b)
    db.put(b"only-a", b"1", cf=a)
    settle(db, stage)
    db.delete(b"k", cf=a)
    settle(db, stage)
    assert scan(db) == [(b"k", b"default")]
    assert scan(db, cf=a) == [(b"only-a", b"1")]
    assert scan(db, cf=b) == [(b"k", b"in b")]
    assert db.get(b"only-a") is None
    assert db.get(b"only-a", cf=b) is None
    assert db.get(b"k", cf=a) is None


def test_create_existing_column_family_raises(db):
    db.create_column_family("a")
    state = dump(db)
    with pytest.raises(InvalidArgumentError):
        db.create_column_family("a")
    with pytest.raises(InvalidArgumentError):
        db.create_column_family("default")
    with pytest.raises(InvalidTypeError):
        db.create_column_family(b"bytes-name")
    assert dump(db) == state


def test_unknown_column_family_raises(harness, db):
    with pytest.raises(InvalidArgumentError):
        db.get_column_family("nope")
    with pytest.raises(InvalidArgumentError):
        db.drop_column_family("nope")
    db.create_column_family("mine")
    other = harness.open_at(os.path.join(harness.base, "other"))
    foreign = other.create_column_family("foreign")             # a name db does not have
    assert foreign.name not in db.list_column_families()
    state = dump(db)
    for call in (lambda: db.put(b"k", b"v", cf=foreign), lambda: db.get(b"k", cf=foreign),
                 lambda: db.scan(cf=foreign), lambda: db.delete(b"k", cf=foreign),
                 lambda: db.delete_range(b"a", b"b", cf=foreign), lambda: db.drop_column_family(foreign)):
        with pytest.raises(InvalidArgumentError):
            call()
    assert dump(db) == state


def test_drop_column_family(db):
    cf = db.create_column_family("temp")
    keep = db.create_column_family("keep")
    put_all(db, ABCDE, cf=cf)
    put_all(db, ABCDE, cf=keep)
    db.flush()
    db.drop_column_family(cf)
    assert db.list_column_families() == ["default", "keep"]
    state = dump(db)
    calls = [
        lambda: db.put(b"k", b"v", cf=cf), lambda: db.get(b"a", cf=cf), lambda: db.scan(cf=cf),
        lambda: db.delete(b"a", cf=cf), lambda: db.delete_range(b"a", b"z", cf=cf),
        lambda: db.write(WriteBatch().put(b"k", b"v", cf=cf)), lambda: db.flush(cf=cf),
        lambda: db.compact_range(cf=cf), lambda: db.get_column_family("temp"),
        lambda: db.drop_column_family(cf), lambda: db.drop_column_family("temp"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()
    assert dump(db) == state
    assert scan(db, cf=keep) == ABCDE


def test_drop_column_family_by_name(db):
    cf = db.create_column_family("temp")
    db.put(b"k", b"v", cf=cf)
    db.drop_column_family("temp")
    assert db.list_column_families() == ["default"]
    with pytest.raises(InvalidArgumentError):
        db.get(b"k", cf=cf)


def test_default_column_family_cannot_be_dropped(db):
    db.put(b"k", b"v")
    for cf in ("default", db.get_column_family("default")):
        with pytest.raises(InvalidArgumentError):
            db.drop_column_family(cf)
    assert db.list_column_families() == ["default"]
    assert db.get(b"k") == b"v"


def test_recreated_column_family_is_empty_and_new(db):
    old = db.create_column_family("cf")
    put_all(db, ABCDE, cf=old)
    db.drop_column_family(old)
    new = db.create_column_family("cf")
    assert new.id != old.id
    assert scan(db, cf=new) == []
    assert db.get(b"a", cf=new) is None
    with pytest.raises(InvalidArgumentError):                 # the old handle stays dead
        db.put(b"a", b"1", cf=old)
    db.put(b"z", b"1", cf=new)
    assert scan(db, cf=new) == [(b"z", b"1")]


@STAGES
def test_column_families_survive_reopen(harness, stage):
    db = harness.open()
    a = db.create_column_family("a")
    dropped = db.create_column_family("dropped")
    b = db.create_column_family("b")
    put_all(db, ABCDE, cf=a)
    db.put(b"k", b"v", cf=b)
    db.put(b"k", b"v", cf=dropped)
    settle(db, stage)
    db.drop_column_family(dropped)
    ids = {"a": a.id, "b": b.id}
    db = harness.reopen()
    assert db.list_column_families() == ["default", "a", "b"]
    assert {name: db.get_column_family(name).id for name in ("a", "b")} == ids
    assert scan(db, cf=db.get_column_family("a")) == ABCDE
    assert scan(db, cf=db.get_column_family("b")) == [(b"k", b"v")]
    c = db.create_column_family("c")
    assert c.id not in (0, a.id, b.id, dropped.id)
    again = db.create_column_family("dropped")
    assert again.id != dropped.id
    assert scan(db, cf=again) == []
    db = harness.reopen()
    assert db.list_column_families() == ["default", "a", "b", "c", "dropped"]


# -- bad arguments -------------------------------------------------------------------------------

BAD_CALLS = [
    # (name, call(db, cf), error)
    ("put str key", lambda db, cf: db.put("a", b"v"), InvalidTypeError),
    ("put str value", lambda db, cf: db.put(b"a", "v"), InvalidTypeError),
    ("put None key", lambda db, cf: db.put(None, b"v"), InvalidTypeError),
    ("put None value", lambda db, cf: db.put(b"a", None), InvalidTypeError),
    ("put int key", lambda db, cf: db.put(1, b"v"), InvalidTypeError),
    ("put int value", lambda db, cf: db.put(b"a", 1), InvalidTypeError),
    ("put list key", lambda db, cf: db.put([97], b"v"), InvalidTypeError),
    ("put str cf", lambda db, cf: db.put(b"a", b"v", cf="default"), InvalidTypeError),
    ("put int cf", lambda db, cf: db.put(b"a", b"v", cf=0), InvalidTypeError),
    ("delete str key", lambda db, cf: db.delete("a"), InvalidTypeError),
    ("delete None key", lambda db, cf: db.delete(None), InvalidTypeError),
    ("delete str cf", lambda db, cf: db.delete(b"a", cf="cf"), InvalidTypeError),
    ("delete_range str start", lambda db, cf: db.delete_range("a", b"z"), InvalidTypeError),
    ("delete_range None end", lambda db, cf: db.delete_range(b"a", None), InvalidTypeError),
    ("delete_range int end", lambda db, cf: db.delete_range(b"a", 5), InvalidTypeError),
    ("delete_range start > end", lambda db, cf: db.delete_range(b"z", b"a"), InvalidArgumentError),
    ("delete_range start > end in cf", lambda db, cf: db.delete_range(b"b", b"a", cf=cf), InvalidArgumentError),
    ("write None", lambda db, cf: db.write(None), InvalidTypeError),
    ("write list", lambda db, cf: db.write([(1, None, b"a", b"v")]), InvalidTypeError),
    ("get str key", lambda db, cf: db.get("a"), InvalidTypeError),
    ("get None key", lambda db, cf: db.get(None), InvalidTypeError),
    ("get int key", lambda db, cf: db.get(3), InvalidTypeError),
    ("get str cf", lambda db, cf: db.get(b"a", cf="cf"), InvalidTypeError),
    ("scan str start", lambda db, cf: db.scan("a"), InvalidTypeError),
    ("scan int end", lambda db, cf: db.scan(None, 5), InvalidTypeError),
    ("scan str cf", lambda db, cf: db.scan(cf="cf"), InvalidTypeError),
    ("scan start > end", lambda db, cf: db.scan(b"b", b"a", cf=cf), InvalidArgumentError),
    ("compact_range start > end", lambda db, cf: db.compact_range(b"b", b"a"), InvalidArgumentError),
    ("compact_range str start", lambda db, cf: db.compact_range("a", None), InvalidTypeError),
    ("create_column_family int", lambda db, cf: db.create_column_family(1), InvalidTypeError),
    ("create_column_family existing", lambda db, cf: db.create_column_family("cf"), InvalidArgumentError),
    ("get_column_family unknown", lambda db, cf: db.get_column_family("unknown"), InvalidArgumentError),
    ("drop_column_family default", lambda db, cf: db.drop_column_family("default"), InvalidArgumentError),
    ("drop_column_family unknown", lambda db, cf: db.drop_column_family("unknown"), InvalidArgumentError),
    ("drop_column_family int", lambda db, cf: db.drop_column_family(1), InvalidTypeError),
]


@pytest.mark.parametrize("name,call,error", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_and_change_nothing(db, name, call, error):
    cf = db.create_column_family("cf")
    put_all(db, ABCDE)
    put_all(db, ABCDE, cf=cf)
    db.delete_range(b"b", b"c", cf=cf)
    state = dump(db)
    with pytest.raises(error):
        call(db, cf)
    assert dump(db) == state
    assert db.put(b"after", b"ok") == state[0] + 1        # the engine still works, and nothing shows up later
    assert db.put(b"after", b"ok", cf=cf) == state[0] + 2
    sequence, families = state
    assert dump(db) == (sequence + 2, {name: sorted([*items, (b"after", b"ok")]) for name, items in families.items()})


def test_bad_batch_arguments_raise_when_added():
    batch = WriteBatch()
    for call in (lambda: batch.put("a", b"v"), lambda: batch.put(b"a", None), lambda: batch.delete(1),
                 lambda: batch.put(b"a", b"v", cf="default")):
        with pytest.raises(InvalidTypeError):
            call()
    with pytest.raises(InvalidArgumentError):
        batch.delete_range(b"z", b"a")
    assert len(batch) == 0


# -- open, close, reopen -------------------------------------------------------------------------


def test_close_is_idempotent_and_use_after_close_raises(harness):
    db = harness.open()
    cf = db.create_column_family("cf")
    db.put(b"a", b"1")
    snap = db.snapshot()
    db.close()
    db.close()
    calls = [
        lambda: db.put(b"a", b"v"), lambda: db.delete(b"a"), lambda: db.delete_range(b"a", b"b"),
        lambda: db.write(WriteBatch().put(b"a", b"v")), lambda: db.get(b"a"), lambda: db.scan(),
        lambda: db.get(b"a", snapshot=snap), lambda: db.snapshot(), lambda: db.latest_sequence,
        lambda: db.create_column_family("new"), lambda: db.get_column_family("cf"),
        lambda: db.list_column_families(), lambda: db.drop_column_family(cf), lambda: db.flush(),
        lambda: db.compact_range(), lambda: db.checkpoint(harness.track(os.path.join(harness.base, "cp"))), lambda: db.stats(),
        lambda: db.put(b"a", b"v", cf=cf),
    ]
    for call in calls:
        with pytest.raises(ClosedError):
            call()
    db = harness.open()
    assert db.get(b"a") == b"1"


def test_scan_iterator_after_close_raises(harness):
    db = harness.open()
    put_all(db, ABCDE)
    it = db.scan()
    assert next(it) == ABCDE[0]
    db.close()
    with pytest.raises(ClosedError):
        next(it)


def test_engine_is_a_context_manager(harness):
    with harness.open() as db:
        db.put(b"a", b"1")
    with pytest.raises(ClosedError):
        db.get(b"a")
    with harness.open() as db:
        assert db.get(b"a") == b"1"


def test_open_missing_without_create_raises(harness):
    with pytest.raises(InvalidArgumentError):
        harness.open(create=False)
    assert not os.path.exists(harness.path)
    harness.open().close()
    db = harness.open(create=False)
    assert db.list_column_families() == ["default"]


def test_second_open_of_an_open_database_is_locked(harness):
    db = harness.open()
    db.put(b"a", b"1")
    with pytest.raises(DatabaseLockedError):
        harness.open_at(harness.path)
    assert db.get(b"a") == b"1"
    db.close()
    assert harness.open().get(b"a") == b"1"


@pytest.mark.parametrize("flush", [False, True])
def test_data_survive_reopen(harness, flush):
    db = harness.open()
    cf = db.create_column_family("cf")
    rng = random.Random(11)
    expected = {}
    expected_cf = {}
    for i in range(400):
        key = b"k%03d" % rng.randrange(200)
        value = rng.randbytes(rng.randrange(40))
        db.put(key, value)
        expected[key] = value
        if i % 7 == 0:
            db.put(key, value + b"!", cf=cf)
            expected_cf[key] = value + b"!"
        if i % 13 == 0:
            victim = b"k%03d" % rng.randrange(200)
            db.delete(victim)
            expected.pop(victim, None)
        if flush and i % 100 == 50:
            db.flush()
    db.delete_range(b"k050", b"k080")
    db.delete_range(b"k000", b"k100", cf=cf)
    for key in [k for k in expected if b"k050" <= k < b"k080"]:
        del expected[key]
    for key in [k for k in expected_cf if k < b"k100"]:
        del expected_cf[key]
    if flush:
        db.flush()
    sequence = db.latest_sequence
    for _ in range(2):
        db = harness.reopen()
        assert db.latest_sequence == sequence
        assert scan(db) == sorted(expected.items())
        assert scan(db, cf=db.get_column_family("cf")) == sorted(expected_cf.items())
        assert db.get(b"k060") is None
    db.put(b"k060", b"back")
    db = harness.reopen()
    assert db.get(b"k060") == b"back"
    assert db.latest_sequence == sequence + 1


def test_data_survive_reopen_after_compaction(harness):
    db = harness.open()
    items = [(b"key%04d" % i, b"v%d" % i) for i in range(1000)]
    put_all(db, items)
    db.delete_range(b"key0100", b"key0900")
    db.flush()
    db.compact_range()
    db.put(b"key0500", b"after compaction")
    db = harness.reopen()
    assert scan(db) == [*items[:100], (b"key0500", b"after compaction"), *items[900:]]


def test_flush_and_compact_range_arguments(db):
    cf = db.create_column_family("cf")
    put_all(db, ABCDE)
    put_all(db, ABCDE, cf=cf)
    db.flush(cf=cf)
    db.flush(wait=False)
    db.flush(cf=None, wait=True)
    db.compact_range(b"b", b"d")
    db.compact_range(b"a", None, cf=cf)
    db.compact_range(None, b"c", cf=cf)
    db.compact_range(b"c", b"c")
    assert scan(db) == ABCDE
    assert scan(db, cf=cf) == ABCDE


# -- checkpoint and stats ------------------------------------------------------------------------


def test_checkpoint(harness):
    db = harness.open()
    cf = db.create_column_family("cf")
    put_all(db, ABCDE)
    db.flush()
    db.put(b"memtable-only", b"1")
    db.put(b"x", b"y", cf=cf)
    db.delete_range(b"b", b"d")
    state = dump(db)
    cp_path = harness.track(os.path.join(harness.base, "cp"))
    db.checkpoint(cp_path)
    db.put(b"after", b"checkpoint")
    db.drop_column_family(cf)
    cp = harness.open_at(cp_path, create=False)
    assert dump(cp) == state
    cp.put(b"only-in-checkpoint", b"1")
    assert db.get(b"only-in-checkpoint") is None
    assert db.get(b"after") == b"checkpoint"
    assert db.list_column_families() == ["default"]


def test_checkpoint_into_existing_directory_raises(harness):
    db = harness.open()
    db.put(b"a", b"1")
    existing = os.path.join(harness.base, "existing")
    os.mkdir(existing)
    with pytest.raises(InvalidArgumentError):
        db.checkpoint(existing)
    cp_path = harness.track(os.path.join(harness.base, "cp"))
    db.checkpoint(cp_path)
    with pytest.raises(InvalidArgumentError):
        db.checkpoint(cp_path)
    assert db.get(b"a") == b"1"


def test_stats(db):
    db.put(b"a", b"1")
    stats = db.stats()
    assert stats["sequence"] == 1
    assert isinstance(stats["memtable_bytes"], int) and stats["memtable_bytes"] >= 0
    assert isinstance(stats["levels"], list)
    for level in stats["levels"]:
        assert {"level", "files", "bytes"} <= set(level)
        assert all(isinstance(level[k], int) for k in ("level", "files", "bytes"))
    assert isinstance(stats["wal"]["torn_tail_bytes"], int)
    assert {"hits", "misses", "usage", "capacity"} <= set(stats["block_cache"])
    assert all(isinstance(stats["block_cache"][k], int) for k in ("hits", "misses", "usage", "capacity"))
