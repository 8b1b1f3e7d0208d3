"""Bulk ingestion of externally built SSTables: ``reserve_sequence``, ``sst_writer``, ``ingest``.

1. The contract, on both engines (``db``/``harness`` fixtures): ingest into an
   empty database and over data below, above and across the file's range, in the
   memtable, L0 or the last level; ingested values win over older ones, later
   writes win over ingested ones; snapshots; range tombstones and deletes inside
   a file; reopen; what is refused (unsorted keys, overlapping files, another
   column family, an unreserved sequence, a write into the range after the
   reservation) and that a refusal changes nothing.
2. The LSM engine only: where files land, damaged files, the sequence and WAL
   across a power loss, and a crash at every I/O operation of an ingest
   (tests/storage/faultfs.py): after reopen all files or none, no leftovers.
3. A hypothesis state machine: random puts, deletes, range deletes, ingests,
   flushes, compactions and reopens against a dict model, both engines.
4. The 100k-key figure: ingest against puts and batch writes (printed, not asserted).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from faultfs import FaultInjectionFS
from tabledb.errors import CorruptionError, Error, InvalidArgumentError, InvalidTypeError, StorageIOError
from tabledb.storage import Engine, WriteBatch

STAGES = pytest.mark.parametrize("stage", ["memtable", "flushed", "compacted"])


def settle(db, stage: str) -> None:
    """Move everything written so far to where ``stage`` says (as in test_engine_contract)."""
    if stage in ("flushed", "compacted"):
        db.flush()
    if stage == "compacted":
        for name in db.list_column_families():
            db.compact_range(cf=db.get_column_family(name))


def scan(db, *args, **kwargs) -> list[tuple[bytes, bytes]]:
    return list(db.scan(*args, **kwargs))


def build(db, path, items, cf=None, sequence=None, ranges=(), deletes=()) -> int:
    """Write an external table of ``items`` (plus range tombstones and point deletes) at a fresh
    (or the given) sequence; return the sequence."""
    seq = db.reserve_sequence() if sequence is None else sequence
    ops = sorted([(k, v) for k, v in items] + [(k, None) for k in deletes])
    with db.sst_writer(str(path), cf=cf, sequence=seq) as w:
        for start, end in ranges:
            w.delete_range(start, end)
        for k, v in ops:
            if v is None:
                w.delete(k)
            else:
                w.put(k, v)
    return seq


def ext(harness, name: str) -> str:
    """A path for an external file, outside the database directory."""
    d = os.path.join(harness.base, "external")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


# =============================================================================================
# 1. The contract, both engines


def test_ingest_into_an_empty_database(harness):
    db = harness.open()
    path = ext(harness, "a.sst")
    items = [(b"k%03d" % i, b"v%d" % i) for i in range(200)]
    seq = build(db, path, items)
    assert seq == 1 and db.latest_sequence == 1
    result = db.ingest([path])
    assert result["files"] == 1 and result["bytes"] > 0
    assert scan(db) == items
    assert db.get(b"k007") == b"v7" and db.get(b"k200") is None
    assert scan(db, b"k100", b"k110", reverse=True) == items[100:110][::-1]
    assert db.latest_sequence == 2             # the ingest record in the WAL takes one sequence per file
    assert not os.path.exists(path)            # move=True consumed the file
    stats = db.stats()
    assert stats["ingested_files"] == 1 and stats["ingested_bytes"] == result["bytes"]


@pytest.mark.parametrize("after", ["memtable", "flushed", "compacted"])
@STAGES
def test_ingested_values_win_over_older_and_lose_to_newer(harness, stage, after):
    """Old data below, inside and above the file's range, wherever it lives; after the ingest
    (and wherever that ends up), newer writes win over the ingested values."""
    db = harness.open()
    old = {b"a%02d" % i: b"old-a" for i in range(30)}              # below the range
    old.update({b"m%02d" % i: b"old-m" for i in range(0, 30, 2)})  # inside, interleaved
    old.update({b"z%02d" % i: b"old-z" for i in range(30)})        # above
    for k, v in old.items():
        db.put(k, v)
    settle(db, stage)
    new = [(b"m%02d" % i, b"new-m") for i in range(0, 30, 3)]
    build(db, ext(harness, "f.sst"), new)
    db.ingest([ext(harness, "f.sst")])
    want = dict(old)
    want.update(new)
    assert scan(db) == sorted(want.items())
    assert all(db.get(k) == v for k, v in want.items())
    db.put(b"m03", b"newest")
    db.delete(b"m06")
    db.delete_range(b"m09", b"m13")
    want[b"m03"] = b"newest"
    for k in [k for k in want if k == b"m06" or b"m09" <= k < b"m13"]:
        del want[k]
    settle(db, after)
    assert scan(db) == sorted(want.items())
    assert scan(db, reverse=True) == sorted(want.items(), reverse=True)
    assert all(db.get(k) == v for k, v in want.items())
    assert db.get(b"m06") is None and db.get(b"m09") is None and db.get(b"m12") is None


def test_snapshots_across_an_ingest(harness):
    db = harness.open()
    db.put(b"k1", b"old")
    before = db.snapshot()
    seq = build(db, ext(harness, "f.sst"), [(b"k1", b"new"), (b"k2", b"new")])
    assert before.sequence < seq
    db.ingest([ext(harness, "f.sst")])
    after = db.snapshot()
    db.put(b"k1", b"newest")
    assert scan(db, snapshot=before) == [(b"k1", b"old")]
    assert db.get(b"k2", snapshot=before) is None
    assert scan(db, snapshot=after) == [(b"k1", b"new"), (b"k2", b"new")]
    assert scan(db) == [(b"k1", b"newest"), (b"k2", b"new")]
    db.flush()
    db.compact_range()
    assert scan(db, snapshot=before) == [(b"k1", b"old")]
    assert scan(db, snapshot=after) == [(b"k1", b"new"), (b"k2", b"new")]
    assert scan(db) == [(b"k1", b"newest"), (b"k2", b"new")]
    before.close()
    after.close()


@STAGES
def test_range_tombstones_and_deletes_inside_an_ingested_file(harness, stage):
    """A file that clears [b, y) first, then loads: the old keys there go, its own puts (at the
    same sequence) stay; a point delete in the file hides an older value outside the range."""
    db = harness.open()
    for k in (b"a", b"b", b"c", b"d", b"x", b"y", b"z"):
        db.put(k, b"old-" + k)
    settle(db, stage)
    snap = db.snapshot()
    build(db, ext(harness, "f.sst"), [(b"c", b"new-c"), (b"e", b"new-e")], ranges=[(b"b", b"y")],
          deletes=[b"z"])
    db.ingest([ext(harness, "f.sst")])
    want = [(b"a", b"old-a"), (b"c", b"new-c"), (b"e", b"new-e"), (b"y", b"old-y")]
    assert scan(db) == want
    assert [db.get(k) for k in (b"b", b"c", b"d", b"x", b"z")] == [None, b"new-c", None, None, None]
    assert scan(db, snapshot=snap) == [(k, b"old-" + k) for k in (b"a", b"b", b"c", b"d", b"x", b"y", b"z")]
    db.put(b"d", b"newer-d")           # a write after the ingest wins over its tombstone
    settle(db, stage)
    assert scan(db) == sorted(want + [(b"d", b"newer-d")])
    assert scan(db, reverse=True) == sorted(want + [(b"d", b"newer-d")], reverse=True)
    snap.close()
    db.flush()
    db.compact_range()
    assert scan(db) == sorted(want + [(b"d", b"newer-d")])


def test_reopen_after_ingest(harness):
    db = harness.open()
    db.put(b"a", b"1")
    cf = db.create_column_family("cf1")
    seq = build(db, ext(harness, "f.sst"), [(b"k%d" % i, b"v") for i in range(50)], cf=cf)
    db.ingest([ext(harness, "f.sst")], cf=cf)
    db.put(b"b", b"2")
    db = harness.reopen()
    cf = db.get_column_family("cf1")
    assert scan(db, cf=cf) == [(b"k%d" % i, b"v") for i in sorted(range(50), key=lambda i: b"%d" % i)]
    assert scan(db) == [(b"a", b"1"), (b"b", b"2")]
    assert db.latest_sequence == seq + 2       # the ingest record, then the put
    assert db.reserve_sequence() == seq + 3


def test_reserved_sequences_are_never_reused(harness):
    db = harness.open()
    s1 = db.reserve_sequence()
    assert db.put(b"k", b"v") == s1 + 1
    s2 = db.reserve_sequence()
    assert s2 == s1 + 2 and db.latest_sequence == s2
    db = harness.reopen()
    assert db.latest_sequence == s2 and db.reserve_sequence() == s2 + 1


def test_writer_refuses_unsorted_keys(harness):
    db = harness.open()
    seq = db.reserve_sequence()
    path = ext(harness, "f.sst")
    with db.sst_writer(path, sequence=seq) as w:
        w.put(b"b", b"1")
        for bad in (b"a", b"b"):
            with pytest.raises(InvalidArgumentError):
                w.put(bad, b"2")
        with pytest.raises(InvalidArgumentError):
            w.delete(b"a")
        with pytest.raises(InvalidArgumentError):
            w.delete_range(b"z", b"y")
        with pytest.raises(InvalidTypeError):
            w.put("c", b"3")
        w.put(b"c", b"3")              # a refused key changes nothing: the writer goes on
    db.ingest([path])
    assert scan(db) == [(b"b", b"1"), (b"c", b"3")]


def test_put_many_is_put_for_each_pair(harness):
    db = harness.open()
    seq = db.reserve_sequence()
    path = ext(harness, "f.sst")
    keys = [b"k%04d" % i for i in range(500)]
    with db.sst_writer(path, sequence=seq) as w:
        w.put(b"a", b"first")
        w.put_many(keys[:250], [k + b"=v" for k in keys[:250]])
        with pytest.raises(InvalidArgumentError):
            w.put_many([b"z1", b"z0"], [b"", b""])           # not ascending: nothing of it added
        with pytest.raises(InvalidArgumentError):
            w.put_many([b"k0000"], [b""])                    # not above the last key
        with pytest.raises(InvalidArgumentError):
            w.put_many([b"x1", b"x2"], [b""])                # one value short
        w.put_many((bytearray(k) for k in keys[250:]), [k + b"=v" for k in keys[250:]])
        w.put_many([], [])
        w.put(b"z", b"last")
    db.ingest([path])
    assert scan(db) == [(b"a", b"first")] + [(k, k + b"=v") for k in keys] + [(b"z", b"last")]


def test_writer_refuses_a_sequence_not_handed_out(harness):
    db = harness.open()
    db.put(b"a", b"1")
    for bad in (0, 2, -1):
        with pytest.raises(InvalidArgumentError):
            db.sst_writer(ext(harness, "f.sst"), sequence=bad)
    with pytest.raises(InvalidTypeError):
        db.sst_writer(ext(harness, "f.sst"), sequence="1")


def test_a_writer_left_by_an_exception_leaves_no_file(harness):
    db = harness.open()
    seq = db.reserve_sequence()
    path = ext(harness, "f.sst")
    with pytest.raises(RuntimeError):
        with db.sst_writer(path, sequence=seq) as w:
            w.put(b"a", b"1")
            raise RuntimeError("the loader failed")
    if harness.kind == "lsm":
        assert not os.path.exists(path)
    with pytest.raises(InvalidArgumentError):
        db.ingest([path])


def test_overlapping_files_are_refused_and_nothing_changes(harness):
    db = harness.open()
    db.put(b"c", b"old")
    seq = db.reserve_sequence()
    a, b = ext(harness, "a.sst"), ext(harness, "b.sst")
    build(db, a, [(b"a", b"1"), (b"d", b"1")], sequence=seq)
    build(db, b, [(b"c", b"2"), (b"e", b"2")], sequence=seq)
    before = scan(db), db.latest_sequence
    with pytest.raises(InvalidArgumentError, match="overlap"):
        db.ingest([a, b])
    assert (scan(db), db.latest_sequence) == before
    assert os.path.exists(a) and os.path.exists(b)
    # A range tombstone counts towards a file's range too.
    c = ext(harness, "c.sst")
    build(db, c, [(b"x", b"3")], sequence=seq, ranges=[(b"b", b"c")])
    with pytest.raises(InvalidArgumentError, match="overlap"):
        db.ingest([a, c])
    assert scan(db) == before[0]


def test_several_files_in_one_ingest(harness):
    db = harness.open()
    for i in range(40):
        db.put(b"k%02d" % i, b"old")
    seq = db.reserve_sequence()
    paths = []
    for part in range(4):
        p = ext(harness, f"part{part}.sst")
        build(db, p, [(b"k%02d" % i, b"new") for i in range(part * 10, part * 10 + 5)], sequence=seq)
        paths.append(p)
    calls = []
    result = db.ingest(paths[::-1], move=False, progress=lambda done, total: calls.append((done, total)))
    assert result["files"] == 4
    assert scan(db) == [(b"k%02d" % i, b"new" if i % 10 < 5 else b"old") for i in range(40)]
    assert all(os.path.exists(p) for p in paths)       # move=False keeps the sources
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_the_column_family_must_match(harness):
    db = harness.open()
    cf = db.create_column_family("cf1")
    path = ext(harness, "f.sst")
    build(db, path, [(b"a", b"1")], cf=cf)
    with pytest.raises(InvalidArgumentError):
        db.ingest([path])
    db.ingest([path], cf=cf)
    assert scan(db, cf=cf) == [(b"a", b"1")] and scan(db) == []


def test_a_write_into_the_range_after_the_reservation_is_refused(harness):
    """The ingested entries are older than such a write, but would sit above it: refused."""
    db = harness.open()
    db.put(b"a", b"old")
    seq = db.reserve_sequence()
    path = ext(harness, "f.sst")
    build(db, path, [(b"a", b"new"), (b"c", b"new")], sequence=seq)
    db.put(b"b", b"written after the reservation")
    db.put(b"z", b"outside the range: fine")
    with pytest.raises(InvalidArgumentError):
        db.ingest([path])
    assert scan(db) == [(b"a", b"old"), (b"b", b"written after the reservation"), (b"z", b"outside the range: fine")]
    assert os.path.exists(path)
    # Flushed, the conflict is found just the same; a range delete counts too.
    db.flush()
    with pytest.raises(InvalidArgumentError):
        db.ingest([path])
    path2 = ext(harness, "g.sst")
    seq2 = build(db, path2, [(b"m", b"new")])
    db.delete_range(b"l", b"n")
    with pytest.raises(InvalidArgumentError):
        db.ingest([path2])
    # Writes elsewhere after the reservation are no obstacle, and later writes still win.
    path3 = ext(harness, "h.sst")
    build(db, path3, [(b"q", b"ingested")], sequence=seq2)
    db.ingest([path3])
    assert db.get(b"q") == b"ingested"


def test_empty_list_and_empty_file(harness):
    db = harness.open()
    db.put(b"a", b"1")
    assert db.ingest([])["files"] == 0
    path = ext(harness, "empty.sst")
    build(db, path, [])
    before = db.latest_sequence
    assert db.ingest([path])["files"] == 0
    assert scan(db) == [(b"a", b"1")] and db.latest_sequence == before
    with pytest.raises(InvalidTypeError):
        db.ingest(path)                       # a path, not a list of paths
    with pytest.raises(InvalidArgumentError):
        db.ingest([ext(harness, "missing.sst")])


# =============================================================================================
# 2. The LSM engine: placement, damage, power loss

TINY = {"memtable_bytes": 4096, "target_file_bytes": 8192, "block_size": 256, "l0_compaction_trigger": 4,
        "level1_bytes": 32768, "background": False}


def lsm(tmp_path, name="db", **options) -> Engine:
    return Engine.open(str(tmp_path / name), **{**TINY, **options})


def write_table(db, path, items, **kw) -> str:
    build(db, path, items, **kw)
    return str(path)


def levels_of(db, cf_id=0) -> list[list]:
    v = db.versions.current
    return [list(v.level_files(cf_id, lv)) for lv in range(db.options.num_levels)]


def test_files_land_at_the_deepest_level_nothing_above_overlaps(tmp_path):
    db = lsm(tmp_path, sync_mode="off", level1_bytes=8192)
    for i in range(600):
        db.put(b"m%04d" % i, b"x" * 40)
    db.compact_range()
    deepest = max(lv for lv, files in enumerate(levels_of(db)) if files)
    assert deepest >= 2
    # Disjoint from everything: the last level.
    r = db.ingest([write_table(db, tmp_path / "a.sst", [(b"a", b"1")])])
    assert r["levels"] == [db.options.num_levels - 1]
    # Overlapping the data (which sits at `deepest`): just above it.
    r = db.ingest([write_table(db, tmp_path / "b.sst", [(b"m0100", b"new")])])
    assert r["levels"] == [deepest - 1] and r["flushed"] is False
    # Overlapping an L0 file: L0, as its newest file.
    db.put(b"m0150", b"x")
    db.put(b"m0200", b"x")
    db.flush()
    r = db.ingest([write_table(db, tmp_path / "c.sst", [(b"m0160", b"new")])])
    assert r["levels"] == [0] and levels_of(db)[0][0].number == max(f.number for f in levels_of(db)[0])
    assert db.get(b"m0160") == b"new" and db.get(b"m0100") == b"new" and db.get(b"a") == b"1"
    db.close()


def test_an_overlapping_memtable_is_flushed_first_and_the_file_is_the_newest_in_l0(tmp_path):
    """The memtable holds an older version of a key of the file and a write made after the
    reservation (outside the file's range): its flush has the latest sequence, and the ingested
    file must still sort above it in L0, now and after a reopen."""
    db = lsm(tmp_path)
    db.put(b"b", b"old")
    seq = db.reserve_sequence()
    path = write_table(db, tmp_path / "f.sst", [(b"a", b"new"), (b"b", b"new"), (b"c", b"new")], sequence=seq)
    db.put(b"z", b"after the reservation")
    r = db.ingest([path])
    assert r["flushed"] and r["levels"] == [0]
    l0 = levels_of(db)[0]
    assert len(l0) == 2 and l0[0].smallest == b"a" and l0[0].largest_seq == seq + 2 and l0[1].largest_seq == seq + 1
    want = [(b"a", b"new"), (b"b", b"new"), (b"c", b"new"), (b"z", b"after the reservation")]
    assert db.get(b"b") == b"new" and scan(db) == want
    db.close()
    with Engine.open(str(tmp_path / "db"), **TINY) as db:
        assert db.get(b"b") == b"new" and scan(db) == want


def test_background_mode_waits_for_the_flush(tmp_path):
    db = lsm(tmp_path, background=True)
    for i in range(200):
        db.put(b"k%03d" % i, b"old" * 10)
    path = write_table(db, tmp_path / "f.sst", [(b"k%03d" % i, b"new") for i in range(0, 200, 7)])
    db.ingest([path])
    assert all(db.get(b"k%03d" % i) == (b"new" if i % 7 == 0 else b"old" * 10) for i in range(200))
    db.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, damage):
    db = lsm(tmp_path)
    db.put(b"k", b"old")
    seq = db.reserve_sequence()
    good = write_table(db, tmp_path / "good.sst", [(b"a", b"1")], sequence=seq)
    bad = write_table(db, tmp_path / "bad.sst", [(b"k%03d" % i, b"v" * 20) for i in range(100)], sequence=seq)
    data = bytearray(open(bad, "rb").read())
    if damage == "flip":
        data[200] ^= 0x01
    elif damage == "truncate":
        data = data[:-10]
    else:
        data = bytearray(b"not an sstable at all" * 10)
    open(bad, "wb").write(bytes(data))
    files_before = sorted(os.listdir(tmp_path / "db"))
    with pytest.raises(CorruptionError) as info:
        db.ingest([good, bad])
    assert info.value.file == bad
    assert scan(db) == [(b"k", b"old")] and os.path.exists(good)
    assert sorted(os.listdir(tmp_path / "db")) == files_before
    db.close()


def test_external_files_inside_the_database_directory(tmp_path):
    db = lsm(tmp_path)
    seq = db.reserve_sequence()
    with pytest.raises(InvalidArgumentError):
        db.sst_writer(str(tmp_path / "db" / "000999.sst"), sequence=seq)
    with pytest.raises(InvalidArgumentError):
        db.sst_writer(str(tmp_path / "db" / "CURRENT"), sequence=seq)
    path = write_table(db, tmp_path / "db" / "load-1.sst", [(b"a", b"1")], sequence=seq)
    db.ingest([path])
    assert db.get(b"a") == b"1" and not os.path.exists(path)
    db.close()


def test_move_across_filesystems_copies(tmp_path, monkeypatch):
    """A hard link that fails with EXDEV falls back to a copy; the source still goes."""
    import errno as errno_mod

    def no_link(src, dst):
        raise OSError(errno_mod.EXDEV, "cross-device link")

    db = lsm(tmp_path)
    path = write_table(db, tmp_path / "f.sst", [(b"a", b"1")])
    monkeypatch.setattr(os, "link", no_link)
    db.ingest([path])
    assert db.get(b"a") == b"1" and not os.path.exists(path)
    db.close()


def test_wal_writes_and_reservations_survive_power_loss_around_an_ingest(tmp_path):
    """The MANIFEST's last_sequence now runs ahead of the WAL (reservations, ingests): recovery must
    still replay every unflushed WAL record below it."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, sync_mode="commit", **TINY)
    db.put(b"before", b"1")                  # only in the WAL
    seq = db.reserve_sequence()
    ext_path = str(tmp_path / "f.sst")
    build(db, ext_path, [(b"x", b"ingested")], sequence=seq)
    db.put(b"during", b"2")                  # after the reservation, outside the range
    db.ingest([ext_path])
    db.put(b"after", b"3")
    s2 = db.reserve_sequence()
    fs.crash()
    try:
        db.close()
    except Error:
        pass
    with Engine.open(path, fs=FaultInjectionFS(), **TINY) as db:
        assert scan(db) == [(b"after", b"3"), (b"before", b"1"), (b"during", b"2"), (b"x", b"ingested")]
        assert db.latest_sequence == s2 and db.reserve_sequence() == s2 + 1


class CrashingFS(FaultInjectionFS):
    """Loses power just before its ``crash_at``-th operation after ``arm()`` (appends, syncs,
    directory changes and syncs, opens for writing), and fails that operation."""

    def __init__(self, undo_dir_ops: bool = True):
        super().__init__()
        self.crash_at = None
        self.ops = 0
        self.undo_dir_ops = undo_dir_ops

    def arm(self, crash_at) -> None:
        self.crash_at = crash_at
        self.ops = 0

    def _tick(self, what: str) -> None:
        if self.crash_at is None:
            return
        self.ops += 1
        if self.ops == self.crash_at:
            self.crash_at = None
            self.crash(undo_dir_ops=self.undo_dir_ops)
            raise StorageIOError(f"power lost before {what}", path=what)

    def _before_append(self, path):
        self._tick("append " + path)
        super()._before_append(path)

    def _before_sync(self, path, is_dir=False):
        self._tick("sync " + path)
        super()._before_sync(path, is_dir)

    def open_writable(self, path):
        self._tick("create " + path)
        return super().open_writable(path)

    def open_appendable(self, path):
        self._tick("open " + path)
        return super().open_appendable(path)

    def rename(self, src, dst):
        self._tick("rename " + src)
        super().rename(src, dst)

    def link(self, src, dst):
        self._tick("link " + src)
        super().link(src, dst)

    def remove(self, path):
        self._tick("remove " + path)
        super().remove(path)

    def sync_dir(self, path):
        self._tick("sync dir " + path)
        super().sync_dir(path)


def _crash_during_ingest(tmp_path, crash_at, move: bool, undo_dir_ops: bool):
    """One run: data in a flushed table, the WAL and the memtable, then an ingest of two files (one
    overlapping the memtable, so it flushes too), crashing at op ``crash_at`` (None: no crash).
    Returns (ops counted, state before, state with the ingest, state after reopen, leftovers)."""
    root = tmp_path / f"run{crash_at}"
    path = str(root / "db")
    os.makedirs(root / "ext")
    fs = CrashingFS(undo_dir_ops)
    db = Engine.open(path, fs=fs, sync_mode="commit", **TINY)
    batch = WriteBatch()
    for i in range(60):
        batch.put(b"k%02d" % i, b"old%d" % i)
    db.write(batch)
    db.flush()
    db.put(b"k05", b"in the memtable")
    db.put(b"q", b"outside")
    seq = db.reserve_sequence()
    a = build(db, str(root / "ext" / "a.sst"), [(b"k%02d" % i, b"A") for i in range(0, 20, 2)], sequence=seq)
    build(db, str(root / "ext" / "b.sst"), [(b"z%02d" % i, b"B") for i in range(10)], sequence=a,
          ranges=[(b"k40", b"k50")])
    before = dict(db.scan())
    fs.arm(crash_at if crash_at is not None else 10 ** 9)
    crashed = False
    try:
        db.ingest([str(root / "ext" / "a.sst"), str(root / "ext" / "b.sst")], move=move)
    except StorageIOError:
        crashed = True
    crashed = crashed or fs._dead   # a crash while removing the source does not fail the ingest
    ops = fs.ops
    if not crashed:
        with_ingest = dict(db.scan())
        fs.arm(1)
        try:
            db.put(b"never", b"x")     # crash now: the ingest itself must have been durable
        except StorageIOError:
            pass
    else:
        with_ingest = None
    try:
        db.close()
    except Error:
        pass
    db = Engine.open(path, fs=FaultInjectionFS(), **TINY)
    got = dict(db.scan())
    live = {f.number for f in db.versions.current.all_files()}
    on_disk = {int(n.split(".")[0]) for n in os.listdir(path) if n.endswith(".sst")}
    sources = {n: os.path.getsize(root / "ext" / n) for n in os.listdir(root / "ext")}
    db.close()
    return ops, crashed, before, with_ingest, got, on_disk - live, sources


@pytest.mark.parametrize("undo_dir_ops", [True, False], ids=["strict-dirs", "journaled-dirs"])
@pytest.mark.parametrize("move", [True, False], ids=["move", "copy"])
def test_power_loss_at_every_step_of_an_ingest_is_all_or_nothing(tmp_path, move, undo_dir_ops):
    ops, crashed, before, with_ingest, got, leftovers, sources = _crash_during_ingest(
        tmp_path, None, move, undo_dir_ops)
    assert not crashed and got == with_ingest and not leftovers and ops > 5
    assert before[b"k05"] == b"in the memtable" and with_ingest[b"k04"] == b"A" and b"k45" not in with_ingest
    outcomes = {"none": 0, "all": 0}
    for k in range(1, ops + 1):
        _, crashed, before_k, _, got, leftovers, sources = _crash_during_ingest(tmp_path, k, move, undo_dir_ops)
        assert crashed, k
        assert got in (before_k, with_ingest), f"crash at op {k}: a partial ingest"
        assert not leftovers, f"crash at op {k}: unreferenced tables {leftovers} survived the reopen"
        if got == before_k:
            outcomes["none"] += 1
            # Nothing ingested: the sources are still there, whole, for a retry.
            assert set(sources) == {"a.sst", "b.sst"} and all(sources.values()), (k, sources)
        else:
            outcomes["all"] += 1
    # (The reference run covers a crash right after ingest() returned: everything is there.)
    assert outcomes["none"], outcomes
    print(f"\ncrash points during one ingest ({'move' if move else 'copy'}, "
          f"{'strict' if undo_dir_ops else 'journaled'} dirs): {ops}; {outcomes}")


def test_a_failed_manifest_write_keeps_the_files_for_the_next_open(tmp_path):
    """The MANIFEST append fails: the engine cannot tell whether the edit is durable, so it keeps
    the tables, refuses writes, and the next open settles it."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, sync_mode="commit", **TINY)
    db.put(b"a", b"1")
    ext_path = str(tmp_path / "f.sst")
    build(db, ext_path, [(b"x", b"1")])
    fs.fail_syncs("MANIFEST-*")
    with pytest.raises(StorageIOError):
        db.ingest([ext_path])
    with pytest.raises(Error):
        db.put(b"b", b"2")
    fs.clear_faults()
    try:
        db.close()
    except Error:
        pass
    with Engine.open(path, **TINY) as db:
        assert db.get(b"a") == b"1" and db.get(b"x") in (None, b"1")
        live = {f.number for f in db.versions.current.all_files()}
        assert {int(n.split(".")[0]) for n in os.listdir(path) if n.endswith(".sst")} == live


@pytest.mark.parametrize("block_size", [1, 64, 256, 4096])
def test_add_run_writes_the_same_file_as_add(tmp_path, block_size):
    """SSTableWriter.add_run (the bulk path under put_many) cuts blocks exactly where add does."""
    import random

    from tabledb.storage.dbformat import KIND_PUT, pack_trailer
    from tabledb.storage.fs import DEFAULT_FS
    from tabledb.storage.sstable import SSTableWriter

    rng = random.Random(block_size)
    keys = sorted({bytes(rng.randrange(97, 123) for _ in range(rng.randint(1, 12))) for _ in range(3000)})
    values = [b"v" * rng.choice([0, 1, 5, 40, 300]) for _ in keys]
    trailer = pack_trailer(7, KIND_PUT)
    outputs = []
    for mode in ("add", "run"):
        path = str(tmp_path / f"{mode}.sst")
        w = SSTableWriter(DEFAULT_FS.open_writable(path), file_number=1, block_size=block_size, creation_time=1)
        if mode == "add":
            for k, v in zip(keys, values):
                w.add(k, trailer, v)
        else:
            i = 0
            while i < len(keys):     # runs of random lengths, with single adds between them
                j = i + rng.choice([0, 1, 3, 50, 700])
                w.add_run(keys[i:j], trailer, values[i:j])
                if j < len(keys):
                    w.add(keys[j], trailer, values[j])
                i = j + 1
        w.finish()
        outputs.append(open(path, "rb").read())
    assert outputs[0] == outputs[1]


# =============================================================================================
# 3. The model

LETTERS = "abcdefghij"
key_st = st.text(LETTERS, min_size=1, max_size=2).map(str.encode)
value_st = st.one_of(st.binary(max_size=6), st.binary(min_size=1, max_size=2).map(lambda b: b * 150))

MODEL_SETTINGS = settings(
    max_examples=int(os.environ.get("TABLEDB_INGEST_EXAMPLES", "30")),
    stateful_step_count=int(os.environ.get("TABLEDB_INGEST_STEPS", "30")),
    deadline=None,
    derandomize=os.environ.get("TABLEDB_MODEL_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class IngestMachine(RuleBasedStateMachine):
    """Puts, deletes, range deletes, ingests (with tombstones and deletes), flushes, compactions and
    reopens against a dict; a snapshot taken before each ingest must keep its view."""

    def __init__(self, make_harness):
        super().__init__()
        self.make_harness = make_harness
        self.harness = None
        self.db = None
        self.model: dict[bytes, bytes] = {}
        self.files = 0
        self.snap = None

    @initialize(background=st.booleans())
    def open_database(self, background):
        self.harness = self.make_harness(background=background)
        self.db = self.harness.open()

    def teardown(self):
        if self.snap is not None:
            self.snap[0].close()
        if self.harness is not None:
            self.harness.cleanup()
            shutil.rmtree(self.harness.base, ignore_errors=True)

    @rule(key=key_st, value=value_st)
    def put(self, key, value):
        self.db.put(key, value)
        self.model[key] = value

    @rule(key=key_st)
    def delete(self, key):
        self.db.delete(key)
        self.model.pop(key, None)

    @rule(a=key_st, b=key_st)
    def delete_range(self, a, b):
        a, b = min(a, b), max(a, b)
        self.db.delete_range(a, b)
        for k in [k for k in self.model if a <= k < b]:
            del self.model[k]

    @rule(items=st.dictionaries(key_st, st.one_of(st.none(), value_st), max_size=12),
          clear=st.one_of(st.none(), st.tuples(key_st, key_st)), split=st.booleans(), move=st.booleans())
    def ingest(self, items, clear, split, move):
        if self.snap is not None:
            self.snap[0].close()
        self.snap = (self.db.snapshot(), dict(self.model))
        seq = self.db.reserve_sequence()
        ordered = sorted(items.items())
        parts = [ordered[: len(ordered) // 2], ordered[len(ordered) // 2:]] if split and len(ordered) > 1 \
            else [ordered]
        paths = []
        for part in parts:
            self.files += 1
            path = os.path.join(self.harness.base, f"ingest{self.files}.sst")
            with self.db.sst_writer(path, sequence=seq) as w:
                if clear is not None and len(parts) == 1:
                    w.delete_range(min(clear), max(clear))
                for k, v in part:
                    if v is None:
                        w.delete(k)
                    else:
                        w.put(k, v)
            paths.append(path)
        self.db.ingest(paths, move=move)
        if clear is not None and len(parts) == 1:
            for k in [k for k in self.model if min(clear) <= k < max(clear)]:
                del self.model[k]
        for k, v in ordered:
            if v is None:
                self.model.pop(k, None)
            else:
                self.model[k] = v

    @rule()
    def flush(self):
        self.db.flush()

    @rule()
    def compact(self):
        self.db.compact_range()

    @rule()
    def reopen(self):
        if self.snap is not None:
            self.snap[0].close()
            self.snap = None
        self.db = self.harness.reopen()

    @rule(key=key_st)
    def get(self, key):
        assert self.db.get(key) == self.model.get(key)

    @invariant()
    def matches(self):
        if self.db is None:
            return
        assert list(self.db.scan()) == sorted(self.model.items())
        assert list(self.db.scan(reverse=True)) == sorted(self.model.items(), reverse=True)
        if self.snap is not None:
            snap, frozen = self.snap
            assert list(self.db.scan(snapshot=snap)) == sorted(frozen.items())


def test_ingest_matches_model(harness_factory):
    run_state_machine_as_test(lambda: IngestMachine(harness_factory), settings=MODEL_SETTINGS)


# =============================================================================================
# 4. 100k keys: ingest against puts and batch writes


def test_100k_key_ingest_is_much_faster_than_writes(tmp_path):
    n = 100_000
    items = [(b"user:%08d" % i, b"value-%08d-" % i + b"x" * 40) for i in range(n)]
    opts = {"sync_mode": "off", "background": False}

    with Engine.open(str(tmp_path / "ingest"), **opts) as db:
        t0 = time.perf_counter()
        seq = db.reserve_sequence()
        with db.sst_writer(str(tmp_path / "bulk.sst"), sequence=seq) as w:
            put = w.put
            for k, v in items:
                put(k, v)
        t_build = time.perf_counter() - t0
        db.ingest([str(tmp_path / "bulk.sst")])
        t_ingest = time.perf_counter() - t0
        assert db.get(items[12345][0]) == items[12345][1]

    keys = [k for k, _ in items]
    values = [v for _, v in items]
    with Engine.open(str(tmp_path / "ingest_many"), **opts) as db:
        t0 = time.perf_counter()
        seq = db.reserve_sequence()
        with db.sst_writer(str(tmp_path / "bulk2.sst"), sequence=seq) as w:
            for start in range(0, n, 10_000):
                w.put_many(keys[start:start + 10_000], values[start:start + 10_000])
        t_build_many = time.perf_counter() - t0
        db.ingest([str(tmp_path / "bulk2.sst")])
        t_ingest_many = time.perf_counter() - t0
        assert list(db.scan(items[500][0], items[510][0])) == items[500:510]

    with Engine.open(str(tmp_path / "batches"), **opts) as db:
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            batch = WriteBatch()
            for k, v in items[start:start + 1000]:
                batch.put(k, v)
            db.write(batch)
        t_batch_mem = time.perf_counter() - t0
        db.flush()
        t_batch = time.perf_counter() - t0
        assert db.get(items[12345][0]) == items[12345][1]

    with Engine.open(str(tmp_path / "puts"), **opts) as db:
        t0 = time.perf_counter()
        for k, v in items:
            db.put(k, v)
        t_puts_mem = time.perf_counter() - t0
        db.flush()
        t_puts = time.perf_counter() - t0

    with Engine.open(str(tmp_path / "synced_puts"), background=False) as db:   # the default: fsync each commit
        t0 = time.perf_counter()
        for k, v in items[:500]:
            db.put(k, v)
        t_synced_puts = (time.perf_counter() - t0) * n / 500

    print(f"\n100k keys (sync_mode off unless said): "
          f"ingest with put_many {t_ingest_many:.2f}s (writer {t_build_many:.2f}s), "
          f"with put {t_ingest:.2f}s (writer {t_build:.2f}s); "
          f"batch writes of 1000 {t_batch:.2f}s ({t_batch_mem:.2f}s before the flush), "
          f"single puts {t_puts:.2f}s ({t_puts_mem:.2f}s before the flush), "
          f"single puts fsynced (default sync_mode) ~{t_synced_puts:.0f}s (from 500); "
          f"ingest (put_many) is {t_batch / t_ingest_many:.1f}x faster than batches, "
          f"{t_puts / t_ingest_many:.1f}x than puts")


# ------------------------------------------------------------------ the WAL's reserve and ingest records


def _wal_ops(path: str) -> list[tuple[int, list]]:
    from tabledb.storage.batch import decode_batch
    from tabledb.storage.fs import DEFAULT_FS
    from tabledb.storage.log import WAL_MAGIC, read_log
    out = []
    for name in sorted(n for n in os.listdir(path) if n.endswith(".log")):
        records, _torn, _header = read_log(DEFAULT_FS, os.path.join(path, name), magic=WAL_MAGIC)
        for _offset, payload in records:
            first, _t, ops = decode_batch(payload)
            out.append((first, ops))
    return out


def test_the_wal_accounts_for_reserved_and_ingested_sequences(tmp_path):
    from tabledb.storage.batch import INGEST_OP
    from tabledb.storage.dbformat import KIND_INGEST, KIND_PUT, KIND_RESERVE
    db = lsm(tmp_path)
    cf = db.create_column_family("cf1")
    db.put(b"a", b"1")
    seq = db.reserve_sequence()
    path = write_table(db, tmp_path / "f.sst", [(b"k1", b"v"), (b"k2", b"v")], sequence=seq)
    db.put(b"b", b"2")
    size = os.path.getsize(path)
    with pytest.raises(InvalidArgumentError):
        db.ingest([path], cf=cf)                 # another family: refused before anything is logged
    db.ingest([path])
    db.put(b"c", b"3")
    records = _wal_ops(str(tmp_path / "db"))
    assert [first for first, _ in records] == [1, 2, 3, 4, 5]      # every sequence, once, in order
    assert [[op[0] for op in ops] for _, ops in records] == [[KIND_PUT], [KIND_RESERVE], [KIND_PUT],
                                                              [KIND_INGEST], [KIND_PUT]]
    (kind, cf_id, key, value), = records[3][1]
    number, file_seq, file_size, _crc = INGEST_OP.unpack(value)
    live = {f.number: f for f in db.versions.current.all_files()}
    assert cf_id == 0 and key == b"" and file_seq == seq and file_size == size and number in live
    assert db.latest_sequence == 5
    db.close()


def test_an_ingest_logged_in_the_wal_whose_manifest_edit_was_lost_is_finished_at_open(tmp_path):
    """The ingest record is fsynced before the MANIFEST edit. If the edit never becomes durable (its
    sync fails, then the power goes), the next open finds the record and the tables, and adds them
    above what was written before the ingest."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, sync_mode="commit", **TINY)
    db.put(b"k1", b"old")
    db.flush()
    db.put(b"q", b"before")                          # in the memtable, outside the file's range
    seq = db.reserve_sequence()
    ext_path = write_table(db, tmp_path / "f.sst", [(b"k1", b"new"), (b"k2", b"new")], sequence=seq)
    fs.fail_syncs("MANIFEST-*")
    with pytest.raises(StorageIOError):
        db.ingest([ext_path])
    fs.crash()
    try:
        db.close()
    except Error:
        pass
    with Engine.open(path, fs=FaultInjectionFS(), **TINY) as db:
        assert db.stats()["wal"]["recovered_ingests"] == 1
        assert scan(db) == [(b"k1", b"new"), (b"k2", b"new"), (b"q", b"before")]
        assert db.latest_sequence == seq + 1
        db.put(b"k2", b"newer")
        assert db.get(b"k2") == b"newer"
    with Engine.open(path, **TINY) as db:           # and it stays so (the open's own edit recorded it)
        assert db.stats()["wal"]["recovered_ingests"] == 0
        assert scan(db) == [(b"k1", b"new"), (b"k2", b"newer"), (b"q", b"before")]


def test_ingested_tables_are_linked_for_the_archive_while_the_wal_is_held(tmp_path):
    db = lsm(tmp_path)
    path = write_table(db, tmp_path / "f.sst", [(b"a", b"1")])
    db.ingest([path])
    assert db.ingest_links() == []                   # no archive: nothing kept
    db.hold_wal(db.wal_number)
    segment = db.wal_number
    path = write_table(db, tmp_path / "g.sst", [(b"b", b"1")])
    db.ingest([path])
    links = db.ingest_links()
    assert [(w, os.path.basename(p)) for w, _n, p in links] == [(segment, f"{segment:06d}-{links[0][1]:06d}.ingest")]
    assert os.path.samefile(links[0][2], os.path.join(str(tmp_path / "db"), f"{links[0][1]:06d}.sst"))
    db.compact_range()                               # the table goes from the tree; the link stays
    assert os.path.exists(links[0][2])
    sealed = db.seal_wal()
    db.hold_wal(sealed + 1)                          # the archiver copied the segment
    assert db.ingest_links() == [] and not os.path.exists(links[0][2])
    db.close()


def test_replay_applies_records_of_the_history_at_their_own_sequences(tmp_path):
    """What a restore does after an ingest: the records that followed it, from another copy's WAL."""
    src = lsm(tmp_path, "src")
    src.put(b"a", b"1")
    seq = src.reserve_sequence()
    path = write_table(src, tmp_path / "f.sst", [(b"k", b"bulk")], sequence=seq)
    src.ingest([path])
    batch = WriteBatch()
    batch.put(b"b", b"2").delete(b"a").delete_range(b"x", b"z")
    src.write(batch)
    src.put(b"c", b"3")
    records = _wal_ops(str(tmp_path / "src"))
    src.close()
    from tabledb.storage.batch import encode_batch
    payloads = [encode_batch(first, 1234, ops) for first, ops in records]
    dst = lsm(tmp_path, "dst")
    dst.replay(payloads[:2])                          # a put and a reserve record
    assert dst.latest_sequence == 2 and dst.get(b"a") == b"1"
    with pytest.raises(InvalidArgumentError, match="ingest"):
        dst.replay(payloads[2:3])                     # an ingest record needs its tables
    with pytest.raises(InvalidArgumentError, match="start at sequence 3"):
        dst.replay(payloads[3:])                      # a gap
    path = write_table(dst, tmp_path / "g.sst", [(b"k", b"bulk")], sequence=2)
    dst.ingest([path])
    assert dst.replay(payloads[3:]) == 7
    assert scan(dst) == [(b"b", b"2"), (b"c", b"3"), (b"k", b"bulk")]
    dst.close()
    with Engine.open(str(tmp_path / "dst"), **TINY) as db:   # the replayed records were logged
        assert scan(db) == [(b"b", b"2"), (b"c", b"3"), (b"k", b"bulk")] and db.latest_sequence == 7
