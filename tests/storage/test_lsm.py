"""The LSM engine's internals: what the engine-neutral contract suite cannot see.

test_engine_contract.py and test_engine_model.py check answers (get, scan,
snapshots) against a model; these tests check *where the data is*: which
files exist in which level, what entries each SSTable holds (read back with
``SSTableReader``), which WAL segments and MANIFESTs are on disk, what the
caches hold and what the counters in ``stats()`` say.

Options are small (a few KiB memtable, 8 KiB files, 256-byte blocks) so that a
few hundred writes flush and compact, and the WAL is not fsynced per write
(``sync_mode="off"``) except in the tests about syncing. Tests run in the foreground
(``background=False``: flushes and compactions happen inline, at the same
points on every run) unless they are about the background threads.
"""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from collections import Counter

import pytest

from tabledb.errors import InvalidArgumentError
from tabledb.storage import Engine, WriteBatch
from tabledb.storage.compaction import level_target
from tabledb.storage.dbformat import (CURRENT, KIND_DELETE, KIND_PUT, LOCK, manifest_file_name, parse_file_name,
                                      table_file_name, wal_file_name)
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.sstable import SSTableReader

SMALL = {
    "memtable_bytes": 4096,
    "target_file_bytes": 8192,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "level1_bytes": 32768,
    "background": False,
    "sync_mode": "off",      # fsyncs would dominate the run time; the sync tests set their own mode
}


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def open_db(tmp_path):
    """``open_db(name="db", **overrides)``: an Engine at ``tmp_path/name`` with SMALL options; closed at teardown."""
    opened = []

    def open_(name: str = "db", **overrides) -> Engine:
        db = Engine.open(str(tmp_path / name), **{**SMALL, **overrides})
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.close()


def key(i: int) -> bytes:
    return b"k%05d" % i


def files_on_disk(path) -> dict[str, set]:
    """The engine files in ``path`` by kind ("sst", "log", "manifest" -> numbers; "other" -> names)."""
    out: dict[str, set] = {"sst": set(), "log": set(), "manifest": set(), "other": set()}
    for name in os.listdir(path):
        parsed = parse_file_name(name)
        if parsed is None:
            out["other"].add(name)
        else:
            out[parsed[0]].add(parsed[1])
    return out


def version_files(db, cf_id: int | None = None) -> dict[int, tuple[int, int, object]]:
    """file number -> (cf_id, level, FileMeta) for every file of the current version."""
    out = {}
    version = db.versions.current
    for cf in version.cfs:
        if cf_id is not None and cf != cf_id:
            continue
        for level in range(db.options.num_levels):
            for f in version.level_files(cf, level):
                assert f.number not in out, f"file {f.number} listed twice"
                out[f.number] = (cf, level, f)
    return out


def level_counts(db) -> list[int]:
    return [lv["files"] for lv in db.stats()["levels"]]


def open_table(path, number: int) -> SSTableReader:
    return SSTableReader.open(DEFAULT_FS.open_readable(os.path.join(path, table_file_name(number))),
                              file_number=number)


def table_entries(path, number: int) -> tuple[list[tuple[bytes, int, int, bytes]], list]:
    """((key, sequence, kind, value) entries, range tombstone fragments) of SSTable ``number``."""
    with open_table(path, number) as reader:
        entries = [(k, (-neg) >> 8, (-neg) & 0xFF, v) for k, neg, v in reader.iter_entries()]
        return entries, list(reader.range_tombstones)


def all_entries(db, cf_id: int = 0) -> tuple[list, list]:
    """Every entry and every tombstone fragment in the files of ``cf_id``'s current version."""
    entries, frags = [], []
    for number in version_files(db, cf_id):
        e, t = table_entries(db.path, number)
        entries += e
        frags += t
    return entries, frags


def versions_per_key(db, cf_id: int = 0) -> Counter:
    return Counter(k for k, *_ in all_entries(db, cf_id)[0])


def sst_bytes_on_disk(path) -> int:
    return sum(os.path.getsize(os.path.join(path, table_file_name(n))) for n in files_on_disk(path)["sst"])


def check_levels(db) -> None:
    """Levels >= 1 sorted and disjoint; every FileMeta agrees with its SSTable's properties."""
    version = db.versions.current
    for cf_id, levels in version.cfs.items():
        for level in range(1, len(levels)):
            files = version.level_files(cf_id, level)
            for a, b in zip(files, files[1:]):
                assert a.smallest <= a.largest and a.largest <= b.smallest, (level, a, b)
                assert a.largest < b.smallest or a.largest_exclusive, f"L{level} files {a.number}, {b.number} overlap"
        for level in range(len(levels)):
            for f in version.level_files(cf_id, level):
                with open_table(db.path, f.number) as reader:
                    p = reader.properties
                assert (p.cf_id, p.smallest_key, p.largest_key, p.largest_is_range_end, p.num_entries,
                        p.num_range_tombstones, p.smallest_seq, p.largest_seq) == (
                    cf_id, f.smallest, f.largest, f.largest_exclusive, f.entries, f.range_deletions,
                    f.smallest_seq, f.largest_seq)
                assert os.path.getsize(os.path.join(db.path, table_file_name(f.number))) == f.size


def check_directory(db) -> None:
    """The directory holds the current version's SSTables, the current MANIFEST, the live WAL segments."""
    on_disk = files_on_disk(db.path)
    assert on_disk["sst"] == set(version_files(db))
    assert on_disk["manifest"] == {db.versions.manifest_number}
    with open(os.path.join(db.path, CURRENT), "rb") as f:
        assert f.read() == (manifest_file_name(db.versions.manifest_number) + "\n").encode()
    assert on_disk["log"] == {db._wal_number} | {imm.wal_number for imm in db._imms}
    assert on_disk["other"] <= {CURRENT, LOCK}


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def settled(db) -> bool:
    """No flush waiting and no level whose compaction score (files or bytes over target) is >= 1."""
    s = db.stats()
    if s["background_error"]:
        pytest.fail(f"background error: {s['background_error']}")
    if s["immutable_memtable_bytes"]:
        return False
    o = db.options
    levels = s["levels"]
    if levels[0]["files"] >= o.l0_compaction_trigger:
        return False
    return all(levels[lv]["bytes"] < level_target(lv, o.level1_bytes, o.level_multiplier)
               for lv in range(1, o.num_levels - 1))


# -- 1. flush and WAL ----------------------------------------------------------------------------


def test_flush_writes_level0_file_and_deletes_the_old_wal_segment(open_db):
    db = open_db(l0_compaction_trigger=4)
    first_wal = db.stats()["wal"]["number"]
    assert files_on_disk(db.path)["log"] == {first_wal}
    assert files_on_disk(db.path)["sst"] == set()
    written = []
    while db.stats()["flushes"] == 0:
        written.append((key(len(written)), b"value-%d" % len(written) * 4))
        db.put(*written[-1])
        assert len(written) < 1000, "memtable never flushed"
    # The write that found the memtable full froze it first: it is the only one left in memory.
    s = db.stats()
    assert level_counts(db)[:2] == [1, 0]
    (number,) = version_files(db)
    entries, frags = table_entries(db.path, number)
    assert [(k, v) for k, _, _, v in entries] == written[:-1]
    assert [seq for _, seq, _, _ in entries] == list(range(1, len(written)))
    assert frags == []
    assert s["memtable_bytes"] > 0 and s["memtable_bytes"] < db.options.memtable_bytes
    # The budget charges each entry a fixed overhead besides its bytes: fewer raw bytes than the budget fill it.
    assert sum(len(k) + len(v) for k, v in written[:-1]) < db.options.memtable_bytes
    new_wal = s["wal"]["number"]
    assert new_wal > first_wal
    assert files_on_disk(db.path)["log"] == {new_wal}
    assert not os.path.exists(os.path.join(db.path, wal_file_name(first_wal)))
    check_directory(db)
    check_levels(db)


def test_explicit_flush_of_an_empty_memtable_writes_nothing(open_db):
    db = open_db()
    db.flush()
    assert db.stats()["flushes"] == 0 and files_on_disk(db.path)["sst"] == set()
    db.put(b"a", b"1")
    wal = db.stats()["wal"]["number"]
    db.flush()
    db.flush()
    assert db.stats()["flushes"] == 1 and level_counts(db)[0] == 1
    assert files_on_disk(db.path)["log"] == {db.stats()["wal"]["number"]} != {wal}


def test_flush_keeps_one_version_per_snapshot_stripe(open_db):
    db = open_db(memtable_bytes=1 << 20)
    db.put(b"a", b"1")                  # seq 1
    s1 = db.snapshot()
    db.put(b"a", b"2")                  # seq 2: shadowed by seq 3 for every reader
    db.put(b"a", b"3")                  # seq 3: what s2 sees
    s2 = db.snapshot()
    db.put(b"a", b"4")                  # seq 4
    db.delete(b"b")                     # seq 5: a delete is flushed (it may hide older data below)
    db.flush()
    (number,) = version_files(db)
    entries, _ = table_entries(db.path, number)
    assert [(k, seq, kind, v) for k, seq, kind, v in entries] == [
        (b"a", 4, KIND_PUT, b"4"), (b"a", 3, KIND_PUT, b"3"), (b"a", 1, KIND_PUT, b"1"), (b"b", 5, KIND_DELETE, b"")]
    assert [db.get(b"a", snapshot=s) for s in (s1, s2, None)] == [b"1", b"3", b"4"]
    s1.close()
    s2.close()
    db.put(b"c", b"x")
    db.compact_range()
    entries, _ = all_entries(db)
    assert [(k, seq, kind) for k, seq, kind, _ in entries] == [(b"a", 4, KIND_PUT), (b"c", 6, KIND_PUT)]


def test_reopen_without_flush_replays_the_wal(open_db):
    db = open_db(memtable_bytes=1 << 20)
    for i in range(50):
        db.put(key(i), b"v%d" % i)
    batch = WriteBatch()
    batch.put(b"batch-a", b"1")
    batch.delete(key(3))
    batch.put(b"batch-b", b"2")
    db.write(batch)
    db.delete_range(key(10), key(20))
    assert db.latest_sequence == 54
    wal = db.stats()["wal"]["number"]
    db.close()
    on_disk = files_on_disk(db.path)
    assert on_disk["sst"] == set() and on_disk["log"] == {wal}
    assert os.path.getsize(os.path.join(db.path, wal_file_name(wal))) > 50 * 10

    db = open_db(memtable_bytes=1 << 20)
    s = db.stats()
    assert s["wal"]["recovered_records"] == 52      # 50 puts, one batch, one delete_range: one record each
    assert s["wal"]["torn_tail_bytes"] == 0
    assert db.latest_sequence == 54
    expected = {key(i): b"v%d" % i for i in range(50) if i != 3 and not 10 <= i < 20}
    expected.update({b"batch-a": b"1", b"batch-b": b"2"})
    assert dict(db.scan()) == expected
    # Recovery writes what it replayed to L0, so the replayed segment can go.
    assert level_counts(db)[0] == 1
    assert wal not in files_on_disk(db.path)["log"]
    (number,) = version_files(db)
    entries, frags = table_entries(db.path, number)
    # The flush keeps the tombstone but not what it covers, nor the put k3's delete shadows.
    assert [(k, kind) for k, _, kind, _ in entries] == sorted(
        [(b"batch-a", KIND_PUT), (b"batch-b", KIND_PUT), (key(3), KIND_DELETE)]
        + [(key(i), KIND_PUT) for i in range(50) if i != 3 and not 10 <= i < 20])
    assert frags == [(key(10), key(20), (54,))]
    check_directory(db)

    db.close()
    db = open_db(memtable_bytes=1 << 20)
    assert db.stats()["wal"]["recovered_records"] == 0
    assert dict(db.scan()) == expected and db.latest_sequence == 54


# -- 2. compaction -------------------------------------------------------------------------------


def test_level0_reaching_the_trigger_is_compacted_into_level1(open_db):
    db = open_db(l0_compaction_trigger=3, level1_bytes=1 << 20)
    history = []   # (flushes, L0 files, L1 files) each time the flush count changes
    i = 0
    while db.stats()["flushes"] < 7:
        db.put(key(i % 150), b"x" * 40)            # overlapping key ranges in every L0 file
        i += 1
        s = db.stats()
        if not history or history[-1][0] != s["flushes"]:
            history.append((s["flushes"], s["levels"][0]["files"], s["levels"][1]["files"]))
        assert s["levels"][0]["files"] < 3
    assert [h[:2] for h in history] == [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2), (6, 0), (7, 1)]
    assert all(h[2] == 0 for h in history[:3]) and all(h[2] >= 1 for h in history[3:])
    assert db.stats()["compactions"] == 2
    assert {lv for _, lv, _ in version_files(db).values()} == {0, 1}
    check_levels(db)
    check_directory(db)


def test_levels_are_sorted_and_disjoint_under_random_writes(open_db):
    db = open_db(level_multiplier=2)
    rng = random.Random(7)
    model = {}
    for n in range(4000):
        r = rng.random()
        k = key(rng.randrange(3000))
        if r < 0.8:
            v = b"%d-" % n * rng.randrange(1, 12)
            db.put(k, v)
            model[k] = v
        elif r < 0.9:
            db.delete(k)
            model.pop(k, None)
        else:
            end = key(int(k[1:]) + rng.randrange(1, 30))
            db.delete_range(k, end)
            for m in [m for m in model if k <= m < end]:
                del model[m]
        if n % 1000 == 999:
            check_levels(db)
    s = db.stats()
    assert s["compactions"] > 5 and s["levels"][2]["files"] > 0   # several levels in use
    check_levels(db)
    check_directory(db)
    assert dict(db.scan()) == model
    db.compact_range()
    check_levels(db)
    check_directory(db)
    assert dict(db.scan()) == model


def test_level_sizes_respect_targets_once_background_compaction_settles(open_db):
    db = open_db(background=True, memtable_bytes=8192, level1_bytes=16384, level_multiplier=2,
                 l0_compaction_trigger=2)
    rng = random.Random(3)
    model = {}
    for i in range(6000):
        k = key(rng.randrange(20000))
        model[k] = b"%d" % i * 8
        db.put(k, model[k], sync=False)
    db.flush()
    wait_until(lambda: settled(db), what="compactions to settle")
    s = db.stats()
    time.sleep(0.2)
    assert db.stats()["compactions"] == s["compactions"]     # nothing left to do: the threads are idle
    assert s["background_error"] is None
    assert s["levels"][0]["files"] < db.options.l0_compaction_trigger
    for lv in range(1, db.options.num_levels - 1):
        assert s["levels"][lv]["bytes"] < level_target(lv, 16384, 2), s["levels"]
    assert s["levels"][3]["bytes"] > 0          # ~150 KB of data needed levels beyond L2
    check_levels(db)
    assert dict(db.scan()) == model
    assert all(db.get(k) == v for k, v in model.items())


def test_compact_range_leaves_one_version_per_key(open_db):
    db = open_db(memtable_bytes=1 << 20, level1_bytes=1 << 20)   # files only from explicit flushes
    for round_ in range(3):
        for i in range(300):
            db.put(key(i), b"r%d-%d" % (round_, i))
        db.flush()
    assert level_counts(db)[:2] == [3, 0]
    assert versions_per_key(db) == Counter({key(i): 3 for i in range(300)})
    db.compact_range()
    counts = versions_per_key(db)
    assert counts == Counter({key(i): 1 for i in range(300)})
    entries, frags = all_entries(db)
    assert frags == []
    assert sorted((k, v) for k, _, _, v in entries) == [(key(i), b"r2-%d" % i) for i in range(300)]
    assert level_counts(db)[0] == 0 and level_counts(db)[2:] == [0] * 5
    check_levels(db)
    check_directory(db)


def test_snapshot_keeps_its_version_through_compaction(open_db):
    db = open_db(level1_bytes=1 << 20)
    for i in range(200):
        db.put(key(i), b"old%d" % i)
    snap = db.snapshot()
    for i in range(200):
        db.put(key(i), b"new%d" % i)
    db.compact_range()
    counts = versions_per_key(db)
    assert counts == Counter({key(i): 2 for i in range(200)})
    assert db.get(key(7), snapshot=snap) == b"old7" and db.get(key(7)) == b"new7"
    snap.close()
    # A compaction whose inputs span every file rewrites them all: the old versions go.
    db.put(key(0), b"new0")
    db.put(key(199), b"new199")
    db.compact_range()
    assert versions_per_key(db) == Counter({key(i): 1 for i in range(200)})
    assert dict(db.scan()) == {key(i): b"new%d" % i for i in range(200)}


def test_compact_range_after_snapshot_release_drops_the_old_versions(open_db):
    db = open_db(level1_bytes=1 << 20)
    for i in range(200):
        db.put(key(i), b"old%d" % i)
    snap = db.snapshot()
    for i in range(200):
        db.put(key(i), b"new%d" % i)
        db.delete(key(i + 1000))
    db.delete_range(key(5000), key(6000))
    db.compact_range()
    assert versions_per_key(db)[key(0)] == 2
    snap.close()
    db.compact_range()
    entries, frags = all_entries(db)
    assert frags == []
    assert sorted((k, kind, v) for k, _, kind, v in entries) == [(key(i), KIND_PUT, b"new%d" % i) for i in range(200)]


@pytest.mark.parametrize("n", [500, 3000], ids=["only-L1", "L1-and-L2"])
def test_deletes_and_range_tombstones_vanish_at_the_bottom(open_db, n):
    db = open_db(level_multiplier=2)
    for i in range(n):
        db.put(key(i), b"v%d" % i * 3)
    db.flush()
    db.compact_range()
    deepest = max(lv for _, lv, _ in version_files(db).values())
    assert deepest == 1 if n == 500 else deepest >= 2
    deleted = set()
    for i in range(0, n, 7):
        db.delete(key(i))
        deleted.add(key(i))
    for a in (n // 10, n // 3, n // 2):
        db.delete_range(key(a), key(a + 40))
        deleted.update(key(i) for i in range(a, a + 40))
    db.delete_range(key(n // 2 + 20), key(n + 100))        # past the last key
    deleted.update(key(i) for i in range(n // 2 + 20, n))
    db.delete(b"never-written")
    db.compact_range()
    entries, frags = all_entries(db)
    assert frags == []
    assert {kind for _, _, kind, _ in entries} == {KIND_PUT}
    assert sorted(k for k, *_ in entries) == sorted(key(i) for i in range(n) if key(i) not in deleted)
    assert all(f.range_deletions == 0 for _, _, f in version_files(db).values())
    assert level_counts(db)[0] == 0
    check_levels(db)
    check_directory(db)


def test_file_wholly_covered_by_a_newer_range_tombstone_is_dropped_unread(open_db):
    db = open_db(level1_bytes=1 << 20)
    for i in range(1000):
        db.put(key(i), b"%d" % i * 20)
    db.compact_range()
    l1 = db.versions.current.level_files(0, 1)
    assert len(l1) >= 8 and level_counts(db)[0] == 0
    covered = l1[2:6]
    db.delete_range(covered[0].smallest, covered[-1].largest + b"\x00")
    written_before = db.stats()["bytes_written"]
    db.compact_range()
    s = db.stats()
    assert s["files_dropped_by_tombstone"] == 4
    # The covered files left the version and the disk; the others were not touched (same file numbers),
    # and nothing was rewritten: the only bytes written are the flush of the tombstone itself.
    assert [f.number for f in db.versions.current.level_files(0, 1)] == [f.number for f in l1[:2] + l1[6:]]
    assert not {f.number for f in covered} & files_on_disk(db.path)["sst"]
    assert level_counts(db)[0] == 0
    assert s["bytes_written"] - written_before < 1024
    lo, hi = covered[0].smallest, covered[-1].largest
    assert [k for k, _ in db.scan()] == [key(i) for i in range(1000) if not lo <= key(i) <= hi]
    check_levels(db)
    check_directory(db)


def test_file_under_a_range_tombstone_stays_while_a_snapshot_needs_it(open_db):
    db = open_db(level1_bytes=1 << 20)
    for i in range(1000):
        db.put(key(i), b"%d" % i * 20)
    db.compact_range()
    l1 = db.versions.current.level_files(0, 1)
    covered = l1[2:6]
    snap = db.snapshot()
    db.delete_range(covered[0].smallest, covered[-1].largest + b"\x00")
    db.compact_range()
    assert db.stats()["files_dropped_by_tombstone"] == 0
    lo, hi = covered[0].smallest, covered[-1].largest
    gone = [key(i) for i in range(1000) if lo <= key(i) <= hi]
    assert [db.get(k) for k in gone] == [None] * len(gone)
    assert [db.get(k, snapshot=snap) for k in gone] == [b"%d" % int(k[1:]) * 20 for k in gone]
    # The covered keys are still on disk, and so is the tombstone that hides them.
    assert Counter(versions_per_key(db)[k] for k in gone) == Counter({1: len(gone)})
    frags = sorted(all_entries(db)[1])
    assert frags[0][0] == lo and frags[-1][1] == hi + b"\x00"
    assert all(a[1] == b[0] for a, b in zip(frags, frags[1:]))     # cut at file boundaries, no gap
    check_levels(db)


def test_sequential_inserts_move_files_down_without_rewriting(open_db):
    db = open_db(level1_bytes=16384, level_multiplier=2)
    levels_seen: dict[int, set] = {}
    for i in range(3000):
        db.put(key(i), b"v" * 30)
        for number, (_, level, _) in version_files(db).items():
            levels_seen.setdefault(number, set()).add(level)
    s = db.stats()
    assert s["trivial_moves"] > 0
    moved = [n for n, levels in levels_seen.items() if len(levels) > 1]
    assert moved
    # Only a trivial move changes a file's level, one level at a time (some happen between two looks).
    assert 0 < sum(max(lv) - min(lv) for lv in levels_seen.values()) <= s["trivial_moves"]
    # A moved file is the same file: its name, size and contents did not change on the way down.
    for number in set(moved) & set(version_files(db)):
        _, level, meta = version_files(db)[number]
        assert level >= 2 and os.path.getsize(os.path.join(db.path, table_file_name(number))) == meta.size
    check_levels(db)
    check_directory(db)
    assert [k for k, _ in db.scan()] == [key(i) for i in range(3000)]


def test_disk_usage_shrinks_after_deleting_most_keys(open_db):
    db = open_db(level1_bytes=1 << 20)
    for i in range(2000):
        db.put(key(i), os.urandom(50))
    db.compact_range()
    before = sst_bytes_on_disk(db.path)
    assert before == db.stats()["bytes"]
    db.delete_range(key(0), key(1800))
    db.compact_range()
    after = sst_bytes_on_disk(db.path)
    assert after == db.stats()["bytes"]
    assert after < before * 0.15, (before, after)
    assert [k for k, _ in db.scan()] == [key(i) for i in range(1800, 2000)]
    check_directory(db)


# -- 3. range tombstones at scale ----------------------------------------------------------------


def _check_model(db, model: dict, rng: random.Random, space: int) -> None:
    for i in range(space):
        assert db.get(key(i)) == model.get(key(i)), key(i)
    ordered = sorted(model.items())
    assert list(db.scan()) == ordered
    assert list(db.scan(reverse=True)) == ordered[::-1]
    for _ in range(20):
        a, b = sorted(rng.randrange(space + 1) for _ in range(2))
        want = [(k, v) for k, v in ordered if key(a) <= k < key(b)]
        assert list(db.scan(key(a), key(b))) == want
        assert list(db.scan(key(a), key(b), reverse=True)) == want[::-1]


@pytest.mark.parametrize("memtable_bytes", [64 << 20, 4096], ids=["in-memtable-then-flushed", "flushing-throughout"])
def test_thousands_of_small_range_deletes_match_a_dict_model(open_db, memtable_bytes):
    db = open_db(memtable_bytes=memtable_bytes, level_multiplier=2)
    rng = random.Random(11)
    space = 2000
    model: dict[bytes, bytes] = {}
    deletes = 0
    n = 0
    while deletes < 2000:
        n += 1
        if rng.random() < 0.5:
            a = rng.randrange(space)
            b = a + rng.randrange(1, 6)
            db.delete_range(key(a), key(b))
            for i in range(a, b):
                model.pop(key(i), None)
            deletes += 1
        else:
            for _ in range(rng.randrange(1, 4)):
                k = key(rng.randrange(space))
                model[k] = b"%d" % n
                db.put(k, model[k])
        if n % 1500 == 0:
            _check_model(db, model, rng, space)
    s = db.stats()
    if memtable_bytes > 1 << 20:
        assert s["files"] == 0                     # all 2,000 tombstones still in the memtable
        _check_model(db, model, rng, space)
        db.flush()
        (number,) = version_files(db)
        assert len(table_entries(db.path, number)[1]) > 500   # fragments of the flushed tombstones
    else:
        assert s["compactions"] > 0 and s["levels"][1]["files"] > 0
    _check_model(db, model, rng, space)
    db.compact_range()
    _check_model(db, model, rng, space)
    assert all_entries(db)[1] == []
    assert len(all_entries(db)[0]) == len(model)
    check_levels(db)


# -- 4. write stalls -----------------------------------------------------------------------------


def test_heavy_writes_with_tiny_memtable_stall_and_complete(open_db):
    db = open_db(background=True, memtable_bytes=2048, l0_compaction_trigger=2, l0_slowdown_trigger=3,
                 l0_stop_trigger=4, level1_bytes=16384, level_multiplier=2, sync_mode="off")
    stop_trigger = db.options.l0_stop_trigger
    seen_l0 = []
    done = threading.Event()

    def monitor():
        while not done.is_set():
            seen_l0.append(db.stats()["levels"][0]["files"])
            time.sleep(0.0005)

    def writer(t: int):
        for i in range(1500):
            db.put(b"t%d-%s" % (t, key(i)), b"%d" % i * 10)

    mon = threading.Thread(target=monitor)
    mon.start()
    writers = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    done.set()
    mon.join()
    assert not any(w.is_alive() for w in writers)
    s = db.stats()
    assert s["background_error"] is None
    assert isinstance(s["slowdowns"], int) and s["slowdowns"] >= 0
    assert isinstance(s["stall_seconds"], float) and s["stall_seconds"] >= 0
    assert s["flushes"] > 20 and s["compactions"] > 0
    # A writer waits for L0 to drop below the stop trigger before it adds data; one frozen memtable
    # may still be flushed after that, so L0 never holds more than stop_trigger + 1 files.
    assert max(seen_l0) <= stop_trigger + 1, Counter(seen_l0)
    expected = {b"t%d-%s" % (t, key(i)): b"%d" % i * 10 for t in range(2) for i in range(1500)}
    assert dict(db.scan()) == expected
    assert all(db.get(k) == v for k, v in expected.items())


# -- 5. caches -----------------------------------------------------------------------------------


def test_block_cache_stays_within_its_capacity(open_db):
    capacity = 16 << 10
    db = open_db(block_cache_bytes=capacity, level1_bytes=1 << 20)
    values = {key(i): os.urandom(40) for i in range(4000)}
    for k, v in values.items():
        db.put(k, v)
    db.compact_range()
    assert db.stats()["bytes"] > 10 * capacity
    rng = random.Random(5)
    keys = list(values)
    for round_ in range(20):
        for k in rng.sample(keys, 100):
            assert db.get(k) == values[k]
        a = rng.randrange(len(keys) - 200)
        assert list(db.scan(keys[a], keys[a + 200])) == [(k, values[k]) for k in keys[a:a + 200]]
        bc = db.stats()["block_cache"]
        assert bc["capacity"] == capacity
        assert 0 < bc["usage"] <= capacity, bc
    bc = db.stats()["block_cache"]
    assert bc["hits"] > 0 and bc["misses"] > 0
    assert bc["usage"] > capacity // 2          # the cache is used, not just bounded
    # Deleting a file drops its blocks and its reader; compaction reads around the caches.
    for k in keys:
        db.put(k, b"new")
    db.compact_range()
    assert db.stats()["block_cache"]["usage"] == 0 and len(db.table_cache) == 0
    assert db.get(keys[0]) == b"new" and db.stats()["block_cache"]["usage"] > 0


def _open_sst_fds(path) -> int:
    real = os.path.realpath(path)
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(real + os.sep) and target.endswith(".sst"):
            n += 1
    return n


def test_table_cache_holds_at_most_max_open_files_readers(open_db):
    db = open_db(max_open_files=3, level1_bytes=1 << 20)
    values = {key(i): b"%d" % i * 20 for i in range(3000)}
    for k, v in values.items():
        db.put(k, v)
    db.compact_range()
    assert db.stats()["files"] >= 10
    rng = random.Random(9)
    keys = list(values)
    for _ in range(500):
        k = rng.choice(keys)
        assert db.get(k) == values[k]
        assert len(db.table_cache) <= 3
    assert list(db.scan()) == sorted(values.items())
    assert len(db.table_cache) <= 3
    if os.path.isdir("/proc/self/fd"):
        gc.collect()
        assert _open_sst_fds(db.path) <= 3     # evicted readers closed their files


# -- 6. obsolete files ---------------------------------------------------------------------------


def test_directory_holds_exactly_the_live_files(open_db):
    db = open_db(level_multiplier=2)
    rng = random.Random(1)
    for n in range(3000):
        db.put(key(rng.randrange(2000)), b"%d" % n * 5)
        if n % 500 == 0:
            db.delete_range(key(n % 2000), key(n % 2000 + 50))
        if n % 300 == 0:
            check_directory(db)
    s = db.stats()
    assert s["compactions"] > 5 and s["flushes"] > 10
    check_directory(db)
    assert s["wal"]["number"] == db._wal_number
    db.compact_range()
    check_directory(db)
    db.close()
    # A table no MANIFEST names (say, the output of a compaction cut short) is removed at open.
    some = min(files_on_disk(db.path)["sst"])
    stray = os.path.join(db.path, table_file_name(some + 10000))
    os.link(os.path.join(db.path, table_file_name(some)), stray)
    db = open_db(level_multiplier=2)
    assert not os.path.exists(stray)
    check_directory(db)                     # reopening starts a new MANIFEST and deletes the old one


@pytest.mark.parametrize("finish", ["exhausted", "dropped"])
def test_scan_keeps_old_files_until_it_is_done(open_db, finish):
    db = open_db(level1_bytes=1 << 20)
    items = [(key(i), b"old%d" % i) for i in range(600)]
    for k, v in items:
        db.put(k, v)
    db.compact_range()
    old_files = set(version_files(db))
    it = db.scan()
    assert next(it) == items[0]
    for i in range(600):
        db.put(key(i), b"new%d" % i)
    db.compact_range()
    assert not old_files & set(version_files(db))       # the version moved on...
    assert old_files <= files_on_disk(db.path)["sst"]   # ...but the scan's files stay
    if finish == "exhausted":
        assert list(it) == items[1:]
    else:
        assert next(it) == items[1]
        del it
        gc.collect()
    assert old_files <= files_on_disk(db.path)["sst"]   # deleted at the next flush or compaction
    db.put(b"z", b"1")
    db.flush()
    assert not old_files & files_on_disk(db.path)["sst"]
    check_directory(db)
    assert dict(db.scan(key(0), key(600))) == {key(i): b"new%d" % i for i in range(600)}


# -- 7. checkpoint -------------------------------------------------------------------------------


def test_checkpoint_shares_sstables_by_hard_link(open_db, tmp_path):
    db = open_db(level1_bytes=1 << 20)
    for i in range(1000):
        db.put(key(i), b"%d" % i * 10)
    db.compact_range()
    db.put(b"in-memtable", b"1")
    cp_path = str(tmp_path / "cp")
    db.checkpoint(cp_path)
    on_disk = files_on_disk(cp_path)
    assert on_disk["log"] == set() and len(on_disk["manifest"]) == 1
    assert on_disk["other"] == {CURRENT}
    assert on_disk["sst"] == set(version_files(db)) and len(on_disk["sst"]) > 3
    for n in on_disk["sst"]:
        ours = os.stat(os.path.join(db.path, table_file_name(n)))
        theirs = os.stat(os.path.join(cp_path, table_file_name(n)))
        assert (theirs.st_ino, theirs.st_dev) == (ours.st_ino, ours.st_dev)
        assert theirs.st_nlink == 2
    # The database moves on and deletes its links; the checkpoint's files live on.
    for i in range(1000):
        db.put(key(i), b"new")
    db.compact_range()
    assert not on_disk["sst"] & files_on_disk(db.path)["sst"]
    cp = open_db("cp", create=False)
    assert cp.get(b"in-memtable") == b"1"
    assert dict(cp.scan(key(0), key(1000))) == {key(i): b"%d" % i * 10 for i in range(1000)}
    assert cp.latest_sequence == 1001
    check_directory(cp)


def test_checkpoint_during_writes_holds_a_prefix(open_db, tmp_path):
    db = open_db(background=True, sync_mode="off")
    acked = 0
    stop = threading.Event()
    errors = []

    def writer():
        nonlocal acked
        try:
            for i in range(30000):
                if stop.is_set():
                    return
                db.put(key(i), b"v%d" % i)
                acked = i + 1
        except Exception as exc:    # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    wait_until(lambda: acked >= 2000, what="writes before the checkpoint")
    before = acked
    db.checkpoint(str(tmp_path / "cp"))
    after = acked
    stop.set()
    t.join()
    assert not errors
    cp = open_db("cp", create=False, background=False)
    got = list(cp.scan())
    m = len(got)
    # Everything acknowledged before checkpoint() was called, and nothing with a hole in it.
    assert before <= m <= after + 1, (before, m, after)
    assert got == [(key(i), b"v%d" % i) for i in range(m)]
    assert cp.latest_sequence == m
    shared = files_on_disk(str(tmp_path / "cp"))["sst"] & files_on_disk(db.path)["sst"]
    for n in shared:
        assert os.stat(os.path.join(db.path, table_file_name(n))).st_ino == \
            os.stat(str(tmp_path / "cp" / table_file_name(n))).st_ino


# -- 8. column families --------------------------------------------------------------------------


def test_column_families_keep_separate_files(open_db):
    db = open_db(level1_bytes=1 << 20)
    a = db.create_column_family("a")
    b = db.create_column_family("b")
    for i in range(400):
        db.put(key(i), b"default%d" % i)
        db.put(key(i), b"a%d" % i, cf=a)
        db.put(key(i), b"b%d" % i, cf=b)
    db.flush()
    db.compact_range(cf=a)
    files = version_files(db)
    by_cf: dict[int, set] = {}
    for number, (cf_id, _, _) in files.items():
        by_cf.setdefault(cf_id, set()).add(number)
        with open_table(db.path, number) as reader:
            assert reader.properties.cf_id == cf_id
        prefix = {0: b"default", a.id: b"a", b.id: b"b"}[cf_id]
        assert all(v.startswith(prefix) for _, _, _, v in table_entries(db.path, number)[0])
    assert set(by_cf) == {0, a.id, b.id}
    assert {lv for cf_id, lv, _ in files.values() if cf_id == a.id} == {1}
    assert level_counts(db)[0] > 0                   # the other families' L0 files were not compacted
    check_levels(db)

    db.drop_column_family(b)
    on_disk = files_on_disk(db.path)["sst"]
    assert not by_cf[b.id] & on_disk
    assert by_cf[0] | by_cf[a.id] <= on_disk
    check_directory(db)
    db.close()
    db = open_db(level1_bytes=1 << 20)
    assert db.list_column_families() == ["default", "a"]
    assert files_on_disk(db.path)["sst"] == by_cf[0] | by_cf[a.id]
    assert db.get(key(5), cf=db.get_column_family("a")) == b"a5"


def test_one_wal_serves_every_column_family(open_db):
    db = open_db(memtable_bytes=1 << 20)
    a = db.create_column_family("a")
    batch = WriteBatch()
    batch.put(b"k", b"in default")
    batch.put(b"k", b"in a", cf=a)
    batch.delete_range(b"a", b"z", cf=a)
    batch.put(b"x", b"in a after the range delete", cf=a)
    db.write(batch)
    db.put(b"y", b"default again")
    wal = db.stats()["wal"]["number"]
    db.close()
    assert files_on_disk(db.path)["log"] == {wal} and files_on_disk(db.path)["sst"] == set()
    db = open_db(memtable_bytes=1 << 20)
    a = db.get_column_family("a")
    assert db.stats()["wal"]["recovered_records"] == 2
    assert dict(db.scan()) == {b"k": b"in default", b"y": b"default again"}
    assert dict(db.scan(cf=a)) == {b"x": b"in a after the range delete"}
    # Recovery flushed each family's replayed memtable to its own L0 file.
    assert sorted(cf_id for cf_id, lv, _ in version_files(db).values()) == [0, a.id]


def test_wal_records_of_a_dropped_family_are_skipped_on_recovery(open_db):
    db = open_db(memtable_bytes=1 << 20)
    gone = db.create_column_family("t")
    db.put(b"k", b"old family", cf=gone)
    db.drop_column_family(gone)
    again = db.create_column_family("t")
    assert again.id != gone.id
    db.put(b"k", b"new family", cf=again)
    db.put(b"k", b"default")
    db.close()
    db = open_db(memtable_bytes=1 << 20)
    assert db.stats()["wal"]["recovered_records"] == 3
    assert db.list_column_families() == ["default", "t"]
    assert dict(db.scan(cf=db.get_column_family("t"))) == {b"k": b"new family"}
    assert dict(db.scan()) == {b"k": b"default"}
    assert {cf_id for cf_id, _, _ in version_files(db).values()} == {0, again.id}


def test_wal_segment_older_than_the_manifest_is_ignored_and_deleted(open_db):
    db = open_db(memtable_bytes=1 << 20)
    for i in range(20):
        db.put(key(i), b"first")
    wal = db.stats()["wal"]["number"]
    with open(os.path.join(db.path, wal_file_name(wal)), "rb") as f:
        stale = f.read()
    db.flush()
    for i in range(20):
        db.put(key(i), b"second")
    db.close()
    # As if the process died after the flush was recorded but before the old segment was deleted.
    with open(os.path.join(db.path, wal_file_name(wal)), "wb") as f:
        f.write(stale)
    db = open_db(memtable_bytes=1 << 20)
    assert db.stats()["wal"]["recovered_records"] == 20        # the newer segment only
    assert dict(db.scan()) == {key(i): b"second" for i in range(20)}
    assert wal not in files_on_disk(db.path)["log"]
    check_directory(db)


# -- 9. group commit -----------------------------------------------------------------------------


def test_group_commit_shares_fsyncs_between_writers(open_db):
    db = open_db(sync_mode="group", memtable_bytes=64 << 20)
    threads, per_thread = 8, 200
    start = threading.Barrier(threads)

    def writer(t: int):
        start.wait()
        for i in range(per_thread):
            db.put(b"t%d-%s" % (t, key(i)), b"%d" % i, sync=True)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    syncs = db.stats()["wal"]["syncs"]
    assert 0 < syncs < threads * per_thread, syncs
    db.close()
    db = open_db(sync_mode="group", memtable_bytes=64 << 20)
    assert db.stats()["wal"]["recovered_records"] == threads * per_thread
    assert dict(db.scan()) == {b"t%d-%s" % (t, key(i)): b"%d" % i for t in range(threads) for i in range(per_thread)}


@pytest.mark.parametrize("mode, default_syncs", [("group", 1), ("commit", 1), ("off", 0)])
def test_sync_mode_decides_when_the_wal_is_synced(open_db, mode, default_syncs):
    db = open_db(sync_mode=mode, memtable_bytes=64 << 20)
    assert db.stats()["wal"]["sync_mode"] == mode
    base = db.stats()["wal"]["syncs"]
    for i in range(10):
        db.put(key(i), b"1")
    assert db.stats()["wal"]["syncs"] - base == 10 * default_syncs
    for i in range(10):
        db.put(key(i), b"2", sync=False)
    assert db.stats()["wal"]["syncs"] - base == 10 * default_syncs
    for i in range(10):
        db.delete(key(i), sync=True)
    assert db.stats()["wal"]["syncs"] - base == 10 * default_syncs + 10


# -- 10. options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"no_such_option": 1},
    {"memtable_size": 4096},
    {"sync_mode": "sometimes"},
    {"sync_mode": None},
    {"compression": "lz4"},
    {"memtable_bytes": 0},
    {"block_size": -1},
    {"max_open_files": 0},
    {"num_levels": 1},
    {"level_multiplier": 1},
])
def test_bad_options_raise_and_create_nothing(tmp_path, options):
    path = tmp_path / "db"
    with pytest.raises(InvalidArgumentError):
        Engine.open(str(path), **options)
    assert not path.exists()


def test_bad_options_on_reopen_leave_the_database_alone(open_db):
    db = open_db()
    db.put(b"a", b"1")
    db.close()
    before = sorted(os.listdir(db.path))
    with pytest.raises(InvalidArgumentError):
        Engine.open(db.path, sync_mode="sometimes")
    assert sorted(os.listdir(db.path)) == before
    db = open_db()
    assert db.get(b"a") == b"1"


def test_zlib_compression_round_trip_and_smaller_files(open_db):
    values = {key(i): (b"row %d of a compressible table; " % i) * 8 for i in range(1000)}
    sizes = {}
    for compression in (None, "zlib"):
        name = compression or "plain"
        db = open_db(name, compression=compression, level1_bytes=1 << 20)
        for k, v in values.items():
            db.put(k, v)
        db.compact_range()
        for number in files_on_disk(db.path)["sst"]:
            with open_table(db.path, number) as reader:
                assert reader.properties.compression == compression
                reader.verify()
        sizes[name] = sst_bytes_on_disk(db.path)
        db.close()
        db = open_db(name, compression=compression)
        assert dict(db.scan()) == values
        assert all(db.get(k) == v for k, v in list(values.items())[::37])
    assert sizes["zlib"] < sizes["plain"] / 3, sizes
