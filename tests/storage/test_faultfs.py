"""FaultInjectionFS (tests/storage/faultfs.py): what a simulated power loss keeps, and injected I/O errors."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from tabledb.errors import DatabaseLockedError, StorageIOError
from tabledb.storage.fs import FileSystem

from faultfs import FaultInjectionFS


def write(fs, path, *chunks, sync=True, flush=True):
    f = fs.open_writable(str(path))
    for c in chunks:
        f.append(c)
    if sync:
        f.sync()
    elif flush:
        f.flush()
    return f


def read(path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


# -- durability of file data ------------------------------------------------------------------

def test_only_synced_bytes_survive(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"synced-")
    f.append(b"flushed")
    f.flush()
    fs.sync_dir(str(tmp_path))
    assert read(tmp_path / "a") == b"synced-flushed"        # the OS has it ...
    assert fs.synced_bytes(str(tmp_path / "a")) == 7
    survived = fs.crash()
    assert read(tmp_path / "a") == b"synced-"               # ... the disk does not
    assert survived[str(tmp_path)] == {"a": 7}


def test_buffered_bytes_never_reach_the_os(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"x", sync=False, flush=False)
    fs.sync_dir(str(tmp_path))
    assert read(tmp_path / "a") == b""                      # still in the file object's buffer
    assert f.size() == 1
    fs.crash(undo_dir_ops=False)
    assert read(tmp_path / "a") == b""


def test_sync_after_more_appends_moves_the_durable_length(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"1" * 10)
    fs.sync_dir(str(tmp_path))
    f.append(b"2" * 5)
    f.sync()
    f.append(b"3" * 5)
    f.close()                                               # close flushes but does not sync
    assert read(tmp_path / "a") == b"1" * 10 + b"2" * 5 + b"3" * 5
    fs.crash()
    assert read(tmp_path / "a") == b"1" * 10 + b"2" * 5


def test_appendable_keeps_existing_durable_bytes(tmp_path):
    (tmp_path / "old").write_bytes(b"before")
    fs = FaultInjectionFS()                                 # finds "old": durable as it is
    f = fs.open_appendable(str(tmp_path / "old"))
    assert f.size() == 6
    f.append(b"-after")
    f.flush()
    fs.crash()
    assert read(tmp_path / "old") == b"before"


# -- durability of directory entries ------------------------------------------------------------

def test_new_file_needs_sync_dir(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "a", b"data").close()              # data synced, entry not
    assert fs.durable_names(str(tmp_path)) == set()
    fs.crash()
    assert read(tmp_path / "a") is None


def test_new_file_kept_without_undo(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "a", b"data").close()
    write(fs, tmp_path / "b", b"unsynced", sync=False).close()
    fs.crash(undo_dir_ops=False)
    assert read(tmp_path / "a") == b"data"
    assert read(tmp_path / "b") == b""


def test_unsynced_remove_is_undone(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "keep", b"k").close()
    write(fs, tmp_path / "gone", b"g").close()
    fs.sync_dir(str(tmp_path))
    fs.remove(str(tmp_path / "keep"))
    fs.remove(str(tmp_path / "gone"))
    fs.sync_dir(str(tmp_path))                              # "gone" is durably gone ...
    write(fs, tmp_path / "x", b"x").close()
    fs.sync_dir(str(tmp_path))
    fs.remove(str(tmp_path / "x"))                          # ... "x" is not
    fs.crash()
    assert sorted(os.listdir(tmp_path)) == ["x"]
    assert read(tmp_path / "x") == b"x"


def test_unsynced_rename_is_undone(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "CURRENT", b"old\n").close()
    write(fs, tmp_path / "tmp", b"new\n").close()
    fs.sync_dir(str(tmp_path))
    fs.rename(str(tmp_path / "tmp"), str(tmp_path / "CURRENT"))
    assert read(tmp_path / "CURRENT") == b"new\n"
    fs.crash()
    assert read(tmp_path / "CURRENT") == b"old\n"
    assert read(tmp_path / "tmp") == b"new\n"


def test_write_file_atomic_is_durable(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "CURRENT", b"old\n").close()
    fs.sync_dir(str(tmp_path))
    fs.write_file_atomic(str(tmp_path / "CURRENT"), b"new\n")
    fs.crash()
    assert sorted(os.listdir(tmp_path)) == ["CURRENT"]
    assert read(tmp_path / "CURRENT") == b"new\n"


def test_truncating_an_existing_file_may_be_undone(tmp_path):
    fs = FaultInjectionFS()
    write(fs, tmp_path / "a", b"first").close()
    fs.sync_dir(str(tmp_path))
    write(fs, tmp_path / "a", b"second").close()            # O_TRUNC and rewrite, no sync_dir
    fs.crash()
    assert read(tmp_path / "a") == b"first"


def test_hard_link_shares_data(tmp_path):
    fs = FaultInjectionFS()
    (tmp_path / "sub").mkdir()
    f = write(fs, tmp_path / "a", b"12345")
    fs.link(str(tmp_path / "a"), str(tmp_path / "sub" / "b"))
    fs.sync_dir(str(tmp_path))
    fs.sync_dir(str(tmp_path / "sub"))
    f.append(b"678")
    f.sync()
    f.close()
    fs.remove(str(tmp_path / "a"))
    fs.sync_dir(str(tmp_path))
    fs.crash()
    assert read(tmp_path / "a") is None
    assert read(tmp_path / "sub" / "b") == b"12345678"


def test_makedirs_then_files(tmp_path):
    fs = FaultInjectionFS()
    db = tmp_path / "db"
    fs.makedirs(str(db))
    write(fs, db / "a", b"a").close()
    fs.sync_dir(str(db))
    write(fs, db / "b", b"b").close()
    fs.crash()
    assert sorted(os.listdir(db)) == ["a"]


# -- after the crash ------------------------------------------------------------------------------

def test_everything_fails_after_a_crash(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"a")
    fs.sync_dir(str(tmp_path))
    r = fs.open_readable(str(tmp_path / "a"))
    fs.crash()
    for call in (lambda: f.append(b"more"), f.flush, f.sync, lambda: r.read(0, 1),
                 lambda: fs.open_writable(str(tmp_path / "b")), lambda: fs.listdir(str(tmp_path)),
                 lambda: fs.remove(str(tmp_path / "a")), lambda: fs.sync_dir(str(tmp_path)),
                 lambda: fs.rename(str(tmp_path / "a"), str(tmp_path / "c"))):
        with pytest.raises(StorageIOError) as info:
            call()
        assert info.value.errno == errno.EIO
    f.close()                                               # closing a dead file writes nothing
    assert read(tmp_path / "a") == b"a"
    with pytest.raises(RuntimeError):
        fs.crash()


def test_crash_releases_locks(tmp_path):
    fs = FaultInjectionFS()
    fs.lock(str(tmp_path / "LOCK"))
    with pytest.raises(DatabaseLockedError):
        FileSystem().lock(str(tmp_path / "LOCK"))
    fs.crash()
    FaultInjectionFS().lock(str(tmp_path / "LOCK")).release()


def test_fresh_fs_takes_existing_files_as_durable(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    fs = FaultInjectionFS()
    assert fs.synced_bytes(str(tmp_path / "a")) == 3
    assert fs.durable_names(str(tmp_path)) == {"a"}
    fs.crash()
    assert read(tmp_path / "a") == b"abc"


def test_crash_waits_for_an_operation_in_flight(tmp_path):
    """Operations are atomic with respect to crash(): a writer thread sees either success or EIO."""
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"")
    fs.sync_dir(str(tmp_path))
    outcome = []

    def writer():
        try:
            for i in range(100000):
                f.append(b"%08d" % i)
                f.sync()
        except StorageIOError as exc:
            outcome.append(exc.errno)

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 30
    while fs.stats["syncs"] < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    fs.crash()
    t.join()
    assert outcome == [errno.EIO]
    data = read(tmp_path / "a")
    assert len(data) % 8 == 0 and len(data) >= 8 * 19
    assert data == b"".join(b"%08d" % i for i in range(len(data) // 8))


# -- injected faults ---------------------------------------------------------------------------------

def test_fail_writes_after(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a.log", sync=False)
    other = write(fs, tmp_path / "b.sst", sync=False)
    fs.fail_writes_after(2, "*.log")
    f.append(b"1")
    f.append(b"2")
    other.append(b"sst is not matched")
    with pytest.raises(StorageIOError) as info:
        f.append(b"3")
    assert info.value.errno == errno.EIO and info.value.path == str(tmp_path / "a.log")
    with pytest.raises(StorageIOError):
        f.append(b"4")
    assert fs.stats["injected_faults"] == 2
    fs.clear_faults()
    f.append(b"5")
    f.close()
    other.close()
    assert read(tmp_path / "a.log") == b"125"


def test_fail_syncs(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", b"one", sync=True)
    fs.fail_syncs(after=1, times=1)
    f.append(b"two")
    f.sync()                                                # the one allowed
    f.append(b"three")
    with pytest.raises(StorageIOError) as info:
        f.sync()
    assert info.value.errno == errno.EIO
    assert fs.synced_bytes(str(tmp_path / "a")) == 6        # a failed sync made nothing durable
    f.sync()                                                # times=1: it works again
    assert fs.synced_bytes(str(tmp_path / "a")) == 11
    fs.sync_dir(str(tmp_path))                              # dirs=False: directories unaffected
    fs.fail_syncs(dirs=True)
    with pytest.raises(StorageIOError):
        fs.sync_dir(str(tmp_path))


def test_fail_syncs_match_callable(tmp_path):
    fs = FaultInjectionFS()
    fs.fail_syncs(lambda p: p.endswith("x"))
    write(fs, tmp_path / "a", b"ok")
    with pytest.raises(StorageIOError):
        write(fs, tmp_path / "x", b"no")


def test_enospc_after_bytes(tmp_path):
    fs = FaultInjectionFS()
    f = write(fs, tmp_path / "a", sync=False)
    fs.enospc_after_bytes(10)
    f.append(b"123456")
    with pytest.raises(StorageIOError) as info:
        f.append(b"abcdefgh")
    assert info.value.errno == errno.ENOSPC
    assert read(tmp_path / "a") == b"123456abcd"            # a short write reached the OS
    assert f.size() == 10
    with pytest.raises(StorageIOError):
        f.append(b"z")
    fs.clear_faults()
    f.append(b"z")
    f.close()
    assert read(tmp_path / "a") == b"123456abcdz"


def test_read_log(tmp_path):
    (tmp_path / "a").write_bytes(b"0123456789")
    fs = FaultInjectionFS()
    fs.read_log = []
    r = fs.open_readable(str(tmp_path / "a"))
    assert r.read(2, 3) == b"234"
    r.close()
    assert fs.read_log == [(str(tmp_path / "a"), 2, 3)]
