"""Crash like it happens: power loss, SIGKILL, damaged files, the LOCK, failing I/O.

1. Power loss (tests/storage/faultfs.py): random writes, some synced, crash at
   random points (right after flushes too), reopen. Every write acknowledged
   with a sync is there, and the database equals the model after some prefix
   of the issued writes that includes the last synced one: no holes.
2. SIGKILL: a child process (crash_writer.py) writes numbered batches and
   prints each acknowledged one; we kill it at a random moment, reopen, and
   find every acknowledged batch, whole, and the batches present forming a
   prefix 0..k (per writer thread). TABLEDB_LONG_CRASH=1 runs 200+ cycles.
3. WAL damage: a torn tail loses exactly the last record and is reported; a
   bit flip in the last record is a torn tail; damage before valid records is
   a CorruptionError naming the WAL and the offset.
4. SSTable, CURRENT and MANIFEST damage: a CorruptionError naming the file,
   never wrong data.
5. The LOCK: a second process cannot open the database until the first closes it.
6. Failing I/O (EIO, ENOSPC, failed fsync): the failing call raises
   StorageIOError and nothing acknowledged is lost.
"""

from __future__ import annotations

import errno
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from faultfs import FaultInjectionFS
from tabledb.errors import (CorruptionError, DatabaseLockedError, Error, OperationalError,
                            StorageIOError)
from tabledb.storage import Engine, WriteBatch
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.log import WAL_MAGIC, MANIFEST_MAGIC, read_log
from tabledb.storage.sstable import FOOTER_SIZE, SSTableReader

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WRITER = os.path.join(HERE, "crash_writer.py")

# Small enough that a few dozen writes fill a memtable and a few flushes start a compaction.
TINY = {"memtable_bytes": 2048, "block_size": 256, "target_file_bytes": 8192,
        "l0_compaction_trigger": 2, "level1_bytes": 16384}

CFS = ("default", "aux")


def files(path, suffix) -> dict[str, int]:
    """``{name: size}`` of the files in ``path`` whose name ends with ``suffix``."""
    return {n: os.path.getsize(os.path.join(path, n)) for n in sorted(os.listdir(path)) if n.endswith(suffix)}


def abandon(db) -> None:
    """Let go of an engine whose filesystem crashed: its close() may fail, and that is fine."""
    try:
        db.close()
    except Error:
        pass


def cf_handles(db) -> dict:
    names = db.list_column_families()
    aux = db.get_column_family("aux") if "aux" in names else db.create_column_family("aux")
    return {"default": None, "aux": aux}


def dump(db, handles) -> dict:
    """The whole visible state as ``{(cf_name, key): value}``."""
    return {(name, k): v for name in CFS for k, v in db.scan(cf=handles[name])}


def same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


# =============================================================================================
# 1. Power loss


class Workload:
    """Random puts, deletes and batches over two column families, and the model that checks them.

    ``issued`` lists every write call since the last reopen as a list of
    ``(cf, key, value_or_None)``; ``base`` is the state the database was
    recovered to. ``synced`` is how many of ``issued`` had returned from a
    synced write: all of them must survive a power loss.
    """

    KEYS = [b"key%03d" % i for i in range(40)]

    def __init__(self, rng: random.Random, sync_mode: str):
        self.rng = rng
        self.sync_mode = sync_mode
        self.base: dict = {}
        self.issued: list[list] = []
        self.synced = 0
        self.serial = 0

    def _value(self, key: bytes) -> bytes:
        self.serial += 1
        return b"%s=%d." % (key, self.serial) + b"v" * self.rng.randint(10, 120)

    def _write(self):
        rng = self.rng
        cf = rng.choice(CFS) if rng.random() < 0.3 else "default"
        key = rng.choice(self.KEYS)
        return (cf, key, None if rng.random() < 0.2 else self._value(key))

    def step(self, db, handles) -> None:
        """Issue one random write call to ``db``."""
        rng = self.rng
        sync = rng.choice([True, False, False, None])
        if rng.random() < 0.25:
            writes = [self._write() for _ in range(rng.randint(2, 6))]
            batch = WriteBatch()
            for cf, key, value in writes:
                if value is None:
                    batch.delete(key, cf=handles[cf])
                else:
                    batch.put(key, value, cf=handles[cf])
            call = lambda: db.write(batch, sync=sync)  # noqa: E731
        else:
            writes = [self._write()]
            cf, key, value = writes[0]
            if value is None:
                call = lambda: db.delete(key, cf=handles[cf], sync=sync)  # noqa: E731
            else:
                call = lambda: db.put(key, value, cf=handles[cf], sync=sync)  # noqa: E731
        self.issued.append(writes)   # issued before the call: it may reach the disk and then crash
        call()
        if sync or (sync is None and self.sync_mode != "off"):
            self.synced = len(self.issued)

    def states(self):
        """``(p, state after base + issued[:p])`` for p = 0 .. len(issued)."""
        state = dict(self.base)
        yield 0, dict(state)
        for p, writes in enumerate(self.issued, 1):
            for cf, key, value in writes:
                if value is None:
                    state.pop((cf, key), None)
                else:
                    state[(cf, key)] = value
            yield p, dict(state)

    def check_recovered(self, got: dict) -> int:
        """Assert ``got`` is the model after a prefix that covers every synced write; return its length."""
        states = dict(self.states())
        must = states[self.synced]
        later: dict = {}
        for writes in self.issued[self.synced:]:
            for cf, key, value in writes:
                later.setdefault((cf, key), set()).add(value)
        for k in set(must) | set(got):
            allowed = {must.get(k)} | later.get(k, set())
            assert got.get(k) in allowed, (
                f"{k}: recovered {got.get(k)!r:.40}, but the synced value is {must.get(k)!r:.40} "
                f"and nothing newer matches (synced prefix {self.synced} of {len(self.issued)})")
        matches = [p for p, state in states.items() if state == got]
        assert matches, f"recovered state is no prefix of the issued writes ({len(self.issued)} issued)"
        assert max(matches) >= self.synced, f"prefixes {matches} all end before the last synced write {self.synced}"
        return max(matches)

    def reopened(self, got: dict) -> None:
        self.base = got
        self.issued = []
        self.synced = 0


def run_power_loss(tmp_path, seed: int, background: bool, undo_dir_ops: bool, cycles: int,
                   plans=("ops", "flush", "flush", "explicit", "during")) -> dict:
    """Write, crash, reopen and check, ``cycles`` times. Each cycle crashes by one of ``plans``:

    "ops": after a random number of writes; "flush": right after the k-th flush
    the engine finished on its own (k random); "explicit": right after a
    ``db.flush()`` call (with background threads, sometimes one that does not
    wait; a flush that waited must have made every write durable); "during":
    as soon as a frozen memtable is waiting (background only).
    """
    rng = random.Random(seed)
    sync_mode = ["commit", "group", "off"][seed % 3]
    path = str(tmp_path / "db")
    work = Workload(rng, sync_mode)
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, sync_mode=sync_mode, background=background, **TINY)
    handles = cf_handles(db)
    totals = {"writes": 0, "flushes": 0, "compactions": 0}
    for cycle in range(cycles):
        plan = rng.choice([p for p in plans if background or p != "during"])
        n_ops = rng.randint(20, 300)
        kth_flush = rng.randint(1, 12)
        for i in range(600):
            if plan in ("ops", "explicit") and i == n_ops:
                break
            if rng.random() < 0.01:
                db.compact_range()
            else:
                work.step(db, handles)
                totals["writes"] += 1
            st = db.stats()
            if plan == "flush" and st["flushes"] >= kth_flush:
                break
            if plan == "during" and i >= n_ops // 4 and st["immutable_memtable_bytes"]:
                break
        if plan == "explicit":
            wait = not background or rng.random() < 0.5
            db.flush(wait=wait)
            if wait:   # a finished flush made every write so far durable, synced or not
                work.synced = len(work.issued)
        st = db.stats()
        totals["flushes"] += st["flushes"]
        totals["compactions"] += st["compactions"]
        totals[plan] = totals.get(plan, 0) + 1
        fs.crash(undo_dir_ops=undo_dir_ops)
        abandon(db)
        fs = FaultInjectionFS()
        db = Engine.open(path, fs=fs, sync_mode=sync_mode, background=background, **TINY)
        handles = cf_handles(db)
        got = dump(db, handles)
        work.check_recovered(got)
        work.reopened(got)
    db.close()
    return totals


@pytest.mark.parametrize("undo_dir_ops", [True, False], ids=["strict-dirs", "journaled-dirs"])
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_power_loss_keeps_synced_writes(tmp_path, seed, background, undo_dir_ops):
    """Unsynced file bytes are lost; with strict-dirs so is every directory change not followed
    by a sync_dir (the POSIX worst case), with journaled-dirs every directory change survives."""
    totals = run_power_loss(tmp_path, seed, background, undo_dir_ops=undo_dir_ops, cycles=10)
    assert totals["flushes"] > 0 and totals["compactions"] > 0, totals


def test_flushed_table_survives_power_loss(tmp_path):
    """Regression: the MANIFEST must not name a table whose directory entry is not durable yet
    (found by the strict model; fixed by the sync_dir in VersionSet.log_and_apply)."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False, sync_mode="commit")
    for i in range(10):
        db.put(b"k%d" % i, b"v%d" % i, sync=True)
    db.flush()
    sst = list(files(path, ".sst"))
    assert len(sst) == 1 and sst[0] in fs.durable_names(path)
    fs.crash()
    abandon(db)
    with Engine.open(path, fs=FaultInjectionFS(), background=False) as db:
        assert list(db.scan()) == [(b"k%d" % i, b"v%d" % i) for i in range(10)]


# =============================================================================================
# 2. SIGKILL


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Child:
    """A crash_writer.py process: its stdout read line by line with a deadline, stderr kept in a file."""

    def __init__(self, tmp_path, *args):
        self.err_path = str(tmp_path / f"child-{time.monotonic_ns()}.err")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([sys.executable, WRITER, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, env=child_env(), bufsize=0)
        self._buf = b""

    def stderr(self) -> str:
        self._err.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def lines(self, want: int, timeout: float = 60.0) -> list[str]:
        """Read ``want`` whole lines; fail if the child dies or stalls first."""
        out: list[str] = []
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while len(out) < want:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"child stalled after {len(out)} lines; stderr:\n{self.stderr()}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise AssertionError(f"child exited ({self.proc.wait()}) after {len(out)} lines; "
                                     f"stderr:\n{self.stderr()}")
            *whole, self._buf = (self._buf + chunk).split(b"\n")
            out.extend(line.decode() for line in whole)
        return out

    def kill(self) -> list[str]:
        """SIGKILL the child; return the whole lines it printed that were not read yet."""
        self.proc.send_signal(signal.SIGKILL)
        rest = self.proc.stdout.read()
        self.proc.wait()
        *whole, _partial = (self._buf + rest).split(b"\n")   # a line cut by the kill is not an ack
        self._buf = b""
        self.close()
        return [line.decode() for line in whole]

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._err.close()


def check_batches(path: str, threads: int, keys: int, acked: dict[int, int]) -> dict[int, int]:
    """Assert each thread's batches are whole and form a prefix 0..k covering every ack; return the k's."""
    import crash_writer as cw

    found = {}
    with Engine.open(path, background=False) as db:
        aux = db.get_column_family("aux")
        for t in range(threads):
            lo, hi = b"t%02d/b" % t, b"t%02d/c" % t
            batches: dict[int, dict] = {}
            for k, v in db.scan(lo, hi):
                _, n, i = k.split(b"/")
                batches.setdefault(int(n[1:]), {})[int(i)] = v
            aux_batches = {int(k.split(b"/")[1][1:]): v for k, v in db.scan(lo, hi, cf=aux)}
            numbers = sorted(batches)
            assert numbers == list(range(len(numbers))), f"thread {t}: batches present are not a prefix"
            assert sorted(aux_batches) == numbers, f"thread {t}: half-applied batch across families"
            for n in numbers:
                assert batches[n] == {i: cw.value(t, n, i) for i in range(keys)}, f"thread {t}: batch {n} torn"
                assert aux_batches[n] == cw.value(t, n, -1)
            last = db.get(cw.last_key(t))
            k = numbers[-1] if numbers else -1
            assert (int(last) if last is not None else -1) == k, f"thread {t}: last key disagrees"
            assert acked.get(t, -1) <= k, f"thread {t}: batch {acked[t]} was acknowledged but only 0..{k} survived"
            found[t] = k
        assert db.stats()["files"] == len(files(path, ".sst")), "tables of a killed flush or compaction were left"
    return found


def run_kill_cycles(tmp_path, *, cycles: int, sync_mode: str, threads: int, seed: int,
                    acks=(50, 2000), fresh_every: int | None = None) -> dict:
    rng = random.Random(seed)
    keys = 4
    path = str(tmp_path / "db")
    acked: dict[int, int] = {}
    total = killed_mid_flush = 0
    for cycle in range(cycles):
        if fresh_every and cycle % fresh_every == 0 and os.path.exists(path):
            shutil.rmtree(path)
            acked = {}
        child = Child(tmp_path, "write", path, "--sync-mode", sync_mode, "--threads", str(threads),
                      "--keys", str(keys), "--memtable-bytes", "16384")
        try:
            lines = child.lines(rng.randint(*acks))
            lines += child.kill()
        finally:
            child.close()
        for line in lines:
            t, n = map(int, line.split())
            assert n > acked.get(t, -1), f"thread {t} acknowledged batch {n} twice or out of order"
            acked[t] = n
        total += len(lines)
        if len(files(path, ".log")) > 1:
            killed_mid_flush += 1   # a frozen memtable's WAL segment was still waiting for its flush
        found = check_batches(path, threads, keys, acked)
        assert set(found) == set(range(threads))
    return {"acks": total, "sst": len(files(path, ".sst")), "killed_mid_flush": killed_mid_flush}


@pytest.mark.parametrize("sync_mode,threads", [("commit", 1), ("group", 4)])
def test_sigkill_keeps_acknowledged_batches(tmp_path, sync_mode, threads):
    result = run_kill_cycles(tmp_path, cycles=4, sync_mode=sync_mode, threads=threads,
                             seed=11 + threads)
    assert result["acks"] >= 4 * 50 and result["sst"] > 0, result


@pytest.mark.skipif(os.environ.get("TABLEDB_LONG_CRASH") != "1", reason="set TABLEDB_LONG_CRASH=1 (minutes)")
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("sync_mode,threads", [("commit", 1), ("group", 4)])
def test_sigkill_long(tmp_path, sync_mode, threads):
    seed = int(os.environ.get("TABLEDB_CRASH_SEED", "0")) or random.randrange(1 << 30)
    print(f"seed {seed}")
    result = run_kill_cycles(tmp_path, cycles=int(os.environ.get("TABLEDB_CRASH_CYCLES", "200")),
                             sync_mode=sync_mode, threads=threads, seed=seed, acks=(20, 2000), fresh_every=25)
    print(result)


# =============================================================================================
# 3. WAL damage


def wal_records(path: str) -> tuple[str, list[int], int]:
    """The one WAL that holds data: its path, its records' offsets, its size."""
    logs = files(path, ".log")
    assert len(logs) == 1, logs
    wal = os.path.join(path, next(iter(logs)))
    records, torn, _ = read_log(DEFAULT_FS, wal, magic=WAL_MAGIC)
    assert torn == 0
    return wal, [off for off, _ in records], os.path.getsize(wal)


@pytest.fixture(scope="module")
def small_wal(tmp_path_factory):
    """A closed database whose data lives only in one WAL: 9 puts, then a batch of 3 puts as the last record."""
    path = str(tmp_path_factory.mktemp("wal") / "db")
    with Engine.open(path, background=False) as db:
        for i in range(9):
            db.put(b"k%d" % i, b"v%d" % i)
        batch = WriteBatch()
        for key in (b"x1", b"x2", b"x3"):
            batch.put(key, b"last-" + key)
        db.write(batch)
    assert not files(path, ".sst"), "close() must not flush: the data should be in the WAL"
    wal, offsets, size = wal_records(path)
    assert len(offsets) == 10 and size > offsets[-1]
    before_last = [(b"k%d" % i, b"v%d" % i) for i in range(9)]
    everything = sorted(before_last + [(k, b"last-" + k) for k in (b"x1", b"x2", b"x3")])
    return path, os.path.basename(wal), offsets, size, before_last, everything


def damaged_copy(tmp_path, src: str, name: str, *, cut: int | None = None, flip: int | None = None,
                 bit: int = 0x10) -> str:
    dst = str(tmp_path / f"db-{time.monotonic_ns()}")
    shutil.copytree(src, dst)
    target = os.path.join(dst, name)
    if cut is not None:
        os.truncate(target, cut)
    if flip is not None:
        with open(target, "r+b") as f:
            f.seek(flip)
            b = f.read(1)[0]
            f.seek(flip)
            f.write(bytes([b ^ bit]))
    return dst


def test_wal_intact(tmp_path, small_wal):
    src, name, offsets, size, before_last, everything = small_wal
    path = damaged_copy(tmp_path, src, name)
    with Engine.open(path, background=False) as db:
        assert list(db.scan()) == everything
        assert db.stats()["wal"]["torn_tail_bytes"] == 0


def test_wal_torn_tail_drops_exactly_the_last_record(tmp_path, small_wal):
    src, name, offsets, size, before_last, everything = small_wal
    last = offsets[-1]
    for cut in range(last, size):
        path = damaged_copy(tmp_path, src, name, cut=cut)
        with Engine.open(path, background=False) as db:
            assert list(db.scan()) == before_last, f"cut at {cut}"
            wal = db.stats()["wal"]
            assert wal["torn_tail_bytes"] == cut - last, f"cut at {cut}"
            if cut > last:
                assert [os.path.basename(p) for p in wal["torn_tail_files"]] == [name]
        shutil.rmtree(path)


def test_wal_bit_flip_in_last_record_drops_it(tmp_path, small_wal):
    src, name, offsets, size, before_last, everything = small_wal
    last = offsets[-1]
    for pos in range(last, size):
        path = damaged_copy(tmp_path, src, name, flip=pos, bit=1 << (pos % 8))
        with Engine.open(path, background=False) as db:
            assert list(db.scan()) == before_last, f"flip at {pos}"
            assert db.stats()["wal"]["torn_tail_bytes"] == size - last, f"flip at {pos}"
        shutil.rmtree(path)


def test_wal_damage_before_valid_records_is_corruption(tmp_path):
    """A WAL of several 32 KiB blocks; damage in the first block, valid records in later ones."""
    path = str(tmp_path / "db")
    with Engine.open(path, background=False) as db:
        for i in range(100):
            db.put(b"k%03d" % i, bytes([i]) * 1000)
    wal, offsets, size = wal_records(path)
    assert size > 3 * 32768
    victim = offsets[2]
    for pos in (victim, victim + 7 + 50):   # the fragment's checksum; its payload
        with open(wal, "r+b") as f:
            f.seek(pos)
            b = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([b ^ 0x04]))
        with open(wal, "rb") as f:
            damaged = f.read()
        with pytest.raises(CorruptionError) as info:
            Engine.open(path, background=False)
        assert same_file(info.value.file, wal)
        assert info.value.offset == victim
        assert os.path.basename(wal) in str(info.value) and f"offset {victim}" in str(info.value)
        with open(wal, "rb") as f:
            assert f.read() == damaged, "a failed open must leave the WAL as it found it"
        with open(wal, "r+b") as f:   # repair, for the next position
            f.seek(pos)
            f.write(bytes([damaged[pos] ^ 0x04]))
    with Engine.open(path, background=False) as db:
        assert len(list(db.scan())) == 100


def test_wal_damage_before_valid_records_in_the_same_block_is_corruption(tmp_path, small_wal):
    src, name, offsets, size, before_last, everything = small_wal
    victim = offsets[2]
    path = damaged_copy(tmp_path, src, name, flip=victim + 10)
    try:
        db = Engine.open(path, background=False)
    except CorruptionError as exc:
        assert same_file(exc.file, os.path.join(path, name)) and exc.offset == victim
        return
    with db:
        got = list(db.scan())
        torn = db.stats()["wal"]["torn_tail_bytes"]
    assert got == everything, (f"opened without error, kept {len(got)} of {len(everything)} keys: "
                               f"records 3..10 dropped as a {torn}-byte 'torn tail'")


# =============================================================================================
# 4. SSTable, CURRENT and MANIFEST damage


@pytest.fixture(scope="module")
def one_table(tmp_path_factory):
    """A closed database with exactly one SSTable (small blocks), its keys and its data size."""
    path = str(tmp_path_factory.mktemp("sst") / "db")
    items = {b"key%04d" % i: b"value-%d-" % i + b"x" * (i % 17) for i in range(300)}
    with Engine.open(path, background=False, block_size=256) as db:
        for k, v in items.items():
            db.put(k, v)
        db.flush()
    tables = files(path, ".sst")
    assert len(tables) == 1, tables
    name = next(iter(tables))
    reader = SSTableReader.open(DEFAULT_FS.open_readable(os.path.join(path, name)), file_number=int(name[:6]))
    props = reader.properties
    reader.close()
    assert props.num_data_blocks > 10
    return path, name, items, props.data_size, tables[name]


def test_sst_bit_flip_in_data_raises_corruption_never_wrong_data(tmp_path, one_table):
    src, name, items, data_size, size = one_table
    rng = random.Random(5)
    positions = [0, data_size - 1] + rng.sample(range(1, data_size - 1), 6)
    for pos in positions:
        path = damaged_copy(tmp_path, src, name, flip=pos)
        sst = os.path.join(path, name)
        fs = FaultInjectionFS()
        with Engine.open(path, fs=fs, background=False, block_size=256) as db:
            bad = 0
            for key, expected in items.items():
                fs.read_log = []
                try:
                    got = db.get(key)
                except CorruptionError as exc:
                    assert same_file(exc.file, sst), exc
                    got = exc
                touched = any(same_file(p, sst) and off <= pos < off + n for p, off, n in fs.read_log)
                if isinstance(got, CorruptionError):
                    bad += 1
                    assert touched, f"flip at {pos}: get({key!r}) raised without reading the damaged byte"
                else:
                    assert got == expected, f"flip at {pos}: get({key!r}) returned wrong data"
                    assert not touched, f"flip at {pos}: get({key!r}) read the damaged byte and did not notice"
            fs.read_log = None
            assert bad > 0, f"flip at {pos}: no read noticed the damage"
            for reverse in (False, True):
                with pytest.raises(CorruptionError) as info:
                    list(db.scan(reverse=reverse))
                assert same_file(info.value.file, sst)
            with pytest.raises(CorruptionError) as info:
                db.compact_range()
            assert same_file(info.value.file, sst)
        shutil.rmtree(path)


def test_sst_truncated_raises_corruption(tmp_path, one_table):
    src, name, items, data_size, size = one_table
    for cut in (0, 1, data_size // 2, data_size, size - FOOTER_SIZE, size - 1):
        path = damaged_copy(tmp_path, src, name, cut=cut)
        sst = os.path.join(path, name)
        try:
            db = Engine.open(path, background=False, block_size=256)
        except CorruptionError as exc:
            assert same_file(exc.file, sst)
            continue
        with db:
            with pytest.raises(CorruptionError) as info:
                list(db.scan())
            assert same_file(info.value.file, sst), f"cut at {cut}"
            for key, expected in list(items.items())[::7]:
                try:
                    assert db.get(key) == expected, f"cut at {cut}: wrong data for {key!r}"
                except CorruptionError as exc:
                    assert same_file(exc.file, sst)
        shutil.rmtree(path)


@pytest.mark.parametrize("content", [b"", b"\x00\xffgarbage\x17\n", b"MANIFEST-000002", b"MANIFEST-999999\n",
                                     b"000003.log\n"],
                         ids=["empty", "garbage", "no-newline", "missing-manifest", "not-a-manifest"])
def test_damaged_current(tmp_path, one_table, content):
    src, name, items, data_size, size = one_table
    path = damaged_copy(tmp_path, src, name)
    current = os.path.join(path, "CURRENT")
    if content == b"MANIFEST-000002":   # a real MANIFEST name, without its newline
        content = open(current, "rb").read().rstrip(b"\n")
    with open(current, "wb") as f:
        f.write(content)
    with pytest.raises(CorruptionError) as info:
        Engine.open(path, background=False)
    assert same_file(info.value.file, current)


def test_missing_current_beside_tables_is_not_a_new_database(tmp_path, one_table):
    src, name, items, data_size, size = one_table
    path = damaged_copy(tmp_path, src, name)
    os.remove(os.path.join(path, "CURRENT"))
    try:
        db = Engine.open(path, background=False)
    except CorruptionError:
        assert name in os.listdir(path), "the tables must be left alone"
        return
    with db:
        n = len(list(db.scan()))
    assert n == len(items), (f"opened as a new, empty database ({n} of {len(items)} keys); "
                             f"{name} deleted: {name not in os.listdir(path)}")


def manifest_of(path: str) -> str:
    with open(os.path.join(path, "CURRENT")) as f:
        return os.path.join(path, f.read().strip())


@pytest.mark.parametrize("damage", ["header", "snapshot", "empty", "cut-in-snapshot"])
def test_damaged_manifest(tmp_path, one_table, damage):
    src, name, items, data_size, size = one_table
    path = damaged_copy(tmp_path, src, name)
    manifest = manifest_of(path)
    records, torn, _ = read_log(DEFAULT_FS, manifest, magic=MANIFEST_MAGIC)
    assert torn == 0 and records
    snapshot = records[0][0]
    with open(manifest, "r+b") as f:
        if damage == "header":
            f.seek(7 + 3)
        elif damage == "snapshot":
            f.seek(snapshot + 7 + 5)
        if damage in ("header", "snapshot"):
            b = f.read(1)[0]
            f.seek(f.tell() - 1)
            f.write(bytes([b ^ 0x01]))
        else:
            f.truncate(0 if damage == "empty" else snapshot + 20)
    with pytest.raises(CorruptionError) as info:
        Engine.open(path, background=False)
    assert same_file(info.value.file, manifest)


def test_damaged_manifest_edit_before_valid_edits(tmp_path):
    path = str(tmp_path / "db")
    with Engine.open(path, background=False) as db:
        for round_ in range(3):
            for i in range(50):
                db.put(b"r%d-%03d" % (round_, i), b"v")
            db.flush()   # each flush appends one edit to the MANIFEST
    manifest = manifest_of(path)
    records, _, _ = read_log(DEFAULT_FS, manifest, magic=MANIFEST_MAGIC)
    assert len(records) >= 3
    victim = records[1][0]
    with open(manifest, "r+b") as f:
        f.seek(victim + 7 + 3)
        b = f.read(1)[0]
        f.seek(victim + 7 + 3)
        f.write(bytes([b ^ 0x01]))
    try:
        db = Engine.open(path, background=False)
    except CorruptionError as exc:
        assert same_file(exc.file, manifest) and exc.offset == victim
        return
    with db:
        n = len(list(db.scan()))
    assert n == 150, f"opened without error and {150 - n} of 150 flushed keys are gone"


# =============================================================================================
# 5. The LOCK


def test_lock_held_by_another_process(tmp_path):
    path = str(tmp_path / "db")
    Engine.open(path).close()
    holder = Child(tmp_path, "hold", path)
    try:
        assert holder.lines(1) == ["ready"]
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            Engine.open(path)
        assert time.monotonic() - t0 < 1.0, "a locked database must fail at once, not wait"
        assert isinstance(info.value, OperationalError)
        holder.send("close")
        assert holder.lines(1) == ["closed"]
        with Engine.open(path) as db:
            db.put(b"k", b"v")
    finally:
        holder.close()


def test_lock_seen_from_another_process(tmp_path):
    path = str(tmp_path / "db")
    db = Engine.open(path)
    try:
        child = Child(tmp_path, "try", path)
        try:
            assert child.lines(1) == ["locked DatabaseLockedError"]
        finally:
            child.close()
    finally:
        db.close()
    child = Child(tmp_path, "try", path)
    try:
        assert child.lines(1) == ["opened"]
    finally:
        child.close()


# =============================================================================================
# 6. Failing I/O


def test_wal_write_error(tmp_path):
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False)
    db.put(b"a", b"1")
    fs.fail_writes_after(0, "*.log")
    with pytest.raises(StorageIOError) as info:
        db.put(b"b", b"2")
    assert info.value.errno == errno.EIO and info.value.path.endswith(".log")
    with pytest.raises(OperationalError):   # the engine stops taking writes after a WAL error
        db.put(b"c", b"3")
    fs.clear_faults()
    db.close()
    with Engine.open(path, background=False) as db:
        assert list(db.scan()) == [(b"a", b"1")]


def test_wal_enospc_mid_record(tmp_path):
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False)
    for i in range(5):
        db.put(b"k%d" % i, b"v%d" % i)
    fs.enospc_after_bytes(20, "*.log")
    with pytest.raises(StorageIOError) as info:
        db.put(b"big", b"x" * 500)
    assert info.value.errno == errno.ENOSPC
    fs.clear_faults()
    abandon(db)
    with Engine.open(path, background=False) as db:
        assert list(db.scan()) == [(b"k%d" % i, b"v%d" % i) for i in range(5)]
        assert db.stats()["wal"]["torn_tail_bytes"] > 0   # the 20 bytes that fit


def test_failed_fsync_loses_nothing_acknowledged(tmp_path):
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False, sync_mode="commit")
    for i in range(5):
        db.put(b"k%d" % i, b"v%d" % i)
    fs.fail_syncs("*.log")
    with pytest.raises(StorageIOError) as info:
        db.put(b"unacked", b"x")
    assert info.value.errno == errno.EIO
    fs.crash()
    abandon(db)
    with Engine.open(path, fs=FaultInjectionFS(), background=False) as db:
        got = dict(db.scan())
    assert {k: v for k, v in got.items() if k != b"unacked"} == {b"k%d" % i: b"v%d" % i for i in range(5)}


def test_failed_group_fsync_is_never_visible(tmp_path):
    """sync_mode="group" applies a write to the memtable before its fsync; readers must not see it
    until the fsync returned, and never once it failed -- not after a flush or a compaction either,
    which must keep the version readers do see."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False, sync_mode="group")
    db.put(b"k", b"old")
    db.put(b"j", b"1")
    seq = db.latest_sequence
    fs.fail_syncs("*.log")
    batch = WriteBatch()
    batch.put(b"k", b"new")
    batch.delete_range(b"a", b"z")
    with pytest.raises(StorageIOError):
        db.write(batch)
    with pytest.raises(OperationalError):
        db.put(b"later", b"x")   # the engine stopped taking writes
    expected = {b"j": b"1", b"k": b"old"}

    def visible():
        assert db.latest_sequence == seq
        assert db.get(b"k") == b"old" and db.get(b"later") is None
        assert dict(db.scan()) == expected and dict(db.scan(reverse=True)) == expected
        with db.snapshot() as snap:
            assert snap.sequence == seq and db.get(b"k", snapshot=snap) == b"old"

    visible()
    fs.clear_faults()
    db.flush()            # the memtable holding the failed writes becomes a table
    visible()
    db.compact_range()    # and is compacted: "old" is what readers see, so it stays
    visible()
    abandon(db)


def test_table_write_error_during_flush(tmp_path):
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, fs=fs, background=False, sync_mode="off", **TINY)
    acked = {}
    fs.fail_writes_after(0, "*.sst")
    failed = None
    for i in range(200):
        key, value = b"k%03d" % i, b"v" * 50 + b"%d" % i
        try:
            db.put(key, value)
        except StorageIOError as exc:
            assert exc.errno == errno.EIO and exc.path.endswith(".sst")
            failed = key
            break
        acked[key] = value
    assert failed is not None, "a flush should have been needed"
    assert db.get(failed) is None, "a call that raises changes nothing"
    assert dict(db.scan()) == acked
    fs.clear_faults()
    for i in range(200, 260):
        key, value = b"k%03d" % i, b"w%d" % i
        db.put(key, value)
        acked[key] = value
    db.flush()
    assert dict(db.scan()) == acked
    db.close()
    with Engine.open(path, background=False, **TINY) as db:
        assert dict(db.scan()) == acked
        assert db.stats()["files"] == len(files(path, ".sst")), "an abandoned table file was left behind"


@pytest.mark.parametrize("shape", ["cut", "zeros", "zeros-after-a-fragment"])
def test_wal_torn_before_a_later_segment_is_corruption_at_the_torn_record(tmp_path, shape):
    """A sealed segment is whole on disk; one that ends in a torn record while a later segment holds
    records is damage: CorruptionError names the segment and the offset where the torn record starts
    (not its size minus the torn bytes: a preallocated segment has zeros after the records)."""
    path = str(tmp_path / "db")
    with Engine.open(path, background=False) as db:
        for i in range(5):
            db.put(b"a%d" % i, bytes([i]) * 300)
        db.put(b"big", b"x" * 40000)     # the last record: two fragments, across the first block's end
        first = db.seal_wal()
        db.put(b"b", b"after")
    wal = os.path.join(path, "%06d.log" % first)
    records, torn, _ = read_log(DEFAULT_FS, wal, magic=WAL_MAGIC)
    assert torn == 0 and len(records) >= 5
    victim = records[-1][0]
    with open(wal, "r+b") as f:
        size = os.path.getsize(wal)
        if shape == "cut":
            f.truncate(victim + 20)
        elif shape == "zeros":   # the record's tail and everything after it zero, the file's size unchanged
            f.seek(victim + 20)
            f.write(bytes(size - victim - 20))
        else:                    # its first fragment whole, zeros from the second fragment's header on
            assert victim < 32768
            f.seek(32768)
            f.write(bytes(size - 32768))
    with pytest.raises(CorruptionError) as info:
        Engine.open(path, background=False)
    assert same_file(info.value.file, wal) and info.value.offset == victim, (info.value.file, info.value.offset)
    assert "later segments follow" in str(info.value)
