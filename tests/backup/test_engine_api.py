"""The engine's backup building blocks: db_id and epoch, seal_wal, wal_segments, hold_wal,
backup_view (consistent and pinned while writers go on), assemble (with WAL replay), and
recovery ignoring segments of another epoch."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from tabledb.errors import InvalidArgumentError
from tabledb.storage import Engine, WriteBatch
from tabledb.storage.batch import encode_batch
from tabledb.storage.log import WAL_MAGIC, LogWriter, read_log
from tabledb.storage.fs import DEFAULT_FS

OPTS = {"memtable_bytes": 8 << 10, "target_file_bytes": 16 << 10, "l0_compaction_trigger": 2,
        "level1_bytes": 64 << 10}


def key(i: int) -> bytes:
    return b"k%08d" % i


def fill(db, start, stop, value=b"v" * 40):
    for i in range(start, stop):
        db.put(key(i), value + b"%d" % i)


def copy_view(view, dest):
    os.makedirs(dest)
    for f in view.files:
        shutil.copyfile(f.path, os.path.join(dest, os.path.basename(f.path)))


def test_db_id_and_epoch_persist_and_checkpoint_gets_a_new_id(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, **OPTS) as db:
        db_id = db.db_id
        assert len(db_id) == 32 and db.epoch == 0
        fill(db, 0, 10)
        db.checkpoint(str(tmp_path / "cp"))
    with Engine.open(path, **OPTS) as db:
        assert db.db_id == db_id
    with Engine.open(str(tmp_path / "cp")) as cp:
        assert cp.db_id != db_id
        assert cp.get(key(3)) is not None


def test_seal_wal_starts_a_new_segment_without_flushing(tmp_path):
    with Engine.open(str(tmp_path / "db"), **OPTS) as db:
        assert db.seal_wal() is None            # nothing written yet
        db.put(b"a", b"1")
        active = db.wal_number
        sealed = db.seal_wal()
        assert sealed == active and db.wal_number > active
        assert db.stats()["memtable_bytes"] > 0  # not flushed
        records, torn, header = read_log(DEFAULT_FS, dict(db.wal_segments())[sealed], magic=WAL_MAGIC)
        assert len(records) == 1 and torn == 0 and header[2] == sealed
        db.put(b"b", b"2")
    with Engine.open(str(tmp_path / "db"), **OPTS) as db:   # both segments replay
        assert db.get(b"a") == b"1" and db.get(b"b") == b"2"


def test_hold_wal_keeps_sealed_segments_across_flushes_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, **OPTS) as db:
        db.put(b"x", b"0")
        db.hold_wal(db.wal_number)
        first = db.wal_number
        fill(db, 0, 400)        # several flushes: each seals a segment
        db.flush()
        held = [n for n, _ in db.wal_segments()]
        assert held and held[0] == first and len(held) >= 3
    with Engine.open(path, **OPTS) as db:
        assert db.wal_hold == first
        again = [n for n, _ in db.wal_segments()]
        assert set(held) <= set(again)
        # moving the hold up lets them go
        db.hold_wal(again[-1] + 1)
        assert [n for n, _ in db.wal_segments()] == []
        db.hold_wal(None)
        assert db.wal_hold == 0
    with pytest.raises(InvalidArgumentError):
        with Engine.open(path) as db:
            db.hold_wal(-1)


@pytest.mark.parametrize("flush", [False, True])
@pytest.mark.parametrize("background", [True, False])
def test_backup_view_is_a_consistent_cut_while_writers_go_on(tmp_path, background, flush):
    path = str(tmp_path / "db")
    db = Engine.open(path, background=background, **OPTS)
    fill(db, 0, 300)
    stop = threading.Event()
    written = []

    def writer():
        i = 300
        while not stop.is_set() and i < 3000:
            written.append(db.put(key(i), b"w%d" % i))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        views = []
        for n in range(3):
            with db.backup_view(flush=flush) as view:
                assert all(f.row[8] <= view.sequence for f in view.files)   # largest_seq
                assert flush == (view.wal_files == [])
                dest = str(tmp_path / f"copy{n}")
                copy_view(view, dest)
                records = [payload for _, path in view.wal_files
                           for _, payload in read_log(DEFAULT_FS, path, magic=WAL_MAGIC)[0]]
                views.append((view.sequence, dest, dict(view.column_families), [f.row for f in view.files],
                              view.next_file, view.db_id, view.epoch, records))
    finally:
        stop.set()
        t.join()
    for seq, dest, cfs, rows, next_file, db_id, epoch, records in views:
        Engine.assemble(dest, column_families=cfs, files=rows, last_sequence=seq, next_file=next_file,
                        epoch=epoch + 1, db_id=None, wal_records=records)
        with Engine.open(dest, create=False) as copy:
            assert copy.epoch == epoch + 1 and copy.db_id != db_id
            got = dict(copy.scan())
            # exactly the writes up to the view's sequence: keys 0..299 and the writer's prefix
            expect_n = 300 + sum(1 for s in written if s <= seq)
            assert len(got) == expect_n
            assert key(expect_n - 1) in got and key(expect_n) not in got
    db.close()


def test_backup_view_pins_its_files_against_compaction(tmp_path):
    with Engine.open(str(tmp_path / "db"), **OPTS) as db:
        fill(db, 0, 300)
        view = db.backup_view()
        assert view.wal_files      # the writes since the last flush
        paths = [f.path for f in view.files] + [p for _, p in view.wal_files]
        fill(db, 0, 300, value=b"new" * 20)
        db.compact_range()
        assert all(os.path.exists(p) for p in paths)
        view.release()
        db.compact_range()
        assert not all(os.path.exists(p) for p in paths)


def test_backup_view_hold_wal_keeps_what_follows(tmp_path):
    with Engine.open(str(tmp_path / "db"), **OPTS) as db:
        fill(db, 0, 50)
        with db.backup_view(hold_wal=True, flush=True) as view:
            assert db.wal_hold == view.wal_next
        fill(db, 50, 400)
        db.flush()
        numbers = [n for n, _ in db.wal_segments()]
        assert numbers[0] == view.wal_next


def test_assemble_replays_wal_records_with_their_sequences(tmp_path):
    path = str(tmp_path / "db")
    os.makedirs(path)
    records = [encode_batch(1, 1000, [(1, 0, b"a", b"1"), (1, 0, b"b", b"2")]),
               encode_batch(3, 2000, [(0, 0, b"a", b"")]),
               encode_batch(4, 3000, [(2, 0, b"a", b"b")])]
    out = Engine.assemble(path, column_families={0: "default"}, files=[], last_sequence=0, next_file=2,
                          epoch=7, wal_records=records)
    assert out["wal_records"] == 3
    with pytest.raises(InvalidArgumentError):
        Engine.assemble(path, column_families={0: "default"}, files=[], last_sequence=0, next_file=2, epoch=7)
    with Engine.open(path, create=False) as db:
        assert db.epoch == 7 and db.latest_sequence == 4
        assert dict(db.scan()) == {b"b": b"2"}


def test_recovery_never_replays_a_segment_of_another_epoch(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, **OPTS) as db:
        db.put(b"mine", b"1")
        number = db.wal_number + 100
    # a stray segment of epoch 5 (abandoned history) lands in the directory
    w = LogWriter(DEFAULT_FS.open_writable(os.path.join(path, f"{number:06d}.log")), magic=WAL_MAGIC,
                  file_number=number, epoch=5)
    w.add_record(encode_batch(50, 0, [(1, 0, b"ghost", b"boo")]))
    w.sync()
    w.close()
    with Engine.open(path, **OPTS) as db:
        assert db.get(b"ghost") is None and db.get(b"mine") == b"1"
        assert db.stats()["wal"]["abandoned_files"]
    assert os.path.exists(os.path.join(path, f"{number:06d}.log.abandoned"))


def test_recovery_of_a_long_wal_flushes_as_it_goes(tmp_path):
    path = str(tmp_path / "db")
    os.makedirs(path)
    records = [encode_batch(1 + i * 10, i, [(1, 0, key(i * 10 + j), b"x" * 100) for j in range(10)])
               for i in range(2000)]
    Engine.assemble(path, column_families={0: "default"}, files=[], last_sequence=0, next_file=2, epoch=1,
                    wal_records=records)
    with Engine.open(path, create=False, background=False, memtable_bytes=256 << 10) as db:
        assert db.stats()["levels"][0]["files"] + sum(lv["files"] for lv in db.stats()["levels"][1:]) > 3
        assert db.latest_sequence == 20000
        assert sum(1 for _ in db.scan()) == 20000


def test_write_batches_keep_commit_times(tmp_path):
    with Engine.open(str(tmp_path / "db"), **OPTS) as db:
        b = WriteBatch()
        b.put(b"a", b"1")
        db.write(b)
        with db.backup_view() as view:
            assert view.commit_time_us is not None and view.commit_time_us <= view.point_time_us
