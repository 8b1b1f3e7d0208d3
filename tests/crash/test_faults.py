"""Failing I/O under SQL transactions: failed writes, failed fsyncs, a full disk, at random points.

``tabledb.connect`` takes no filesystem (``fs`` is not one of the engine options
it passes through), so these tests build the SQL stack by hand around an engine
opened on ``FaultInjectionFS`` (tests/storage/faultfs.py): ``Database`` +
``Connection``, the same objects ``connect`` makes.

For each fault: random transactions run until commits fail. Every failure is an
``OperationalError``; the database stays readable (the rows are the model's,
indexes agree with full scans); a failed commit is never half applied. Then the
fault clears, the machine may lose power (``crash()``: every unsynced byte is
gone), and the reopened database holds every acknowledged transaction, each
failed one whole or not at all, and accepts writes again.

The engine stops taking writes after a WAL or background error until it is
reopened (docs/engine-api.md); a failed foreground flush does not stop it, and
the last test shows writes going on after such a fault clears, without a reopen.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil

import pytest

import tabledb
from tabledb.check import check_engine, format_report
from tabledb.dbapi import Connection
from tabledb.sql.database import Database
from tabledb.storage import Engine

from faultfs import FaultInjectionFS

from .workload import ENGINE_OPTIONS, Generator, Model, diff_states, index_checks, read_state, run_transaction


def open_conn(path: str, fs, **options) -> Connection:
    """A DB-API connection on an engine opened with ``fs`` (what tabledb.connect does, by hand)."""
    engine = Engine.open(path, fs=fs, **{**ENGINE_OPTIONS, **options})
    db = Database(path, engine, False)
    db.refs = 1
    return Connection(db, False, 5.0, None)


def close_quietly(conn) -> None:
    try:
        conn.close()
    except tabledb.Error:
        pass   # closing an engine whose files fail (or whose machine crashed) may fail


class History:
    """A base state, then transactions acknowledged or failed; the states a database may be in."""

    def __init__(self):
        self.base = Model()
        self.model = Model()          # base + every acknowledged transaction
        self.entries: list[tuple[list, bool]] = []   # (ops, acknowledged) in commit order, after base

    def allowed(self) -> list[Model]:
        """base + every acknowledged transaction + each failed one whole or not at all."""
        failed = [i for i, (_ops, acked) in enumerate(self.entries) if not acked]
        assert len(failed) <= 4
        models = []
        for keep in itertools.product([False, True], repeat=len(failed)):
            kept = {i for i, k in zip(failed, keep) if k}
            m = self.base.fork()
            try:
                for i, (ops, acked) in enumerate(self.entries):
                    if acked or i in kept:
                        for op in ops:
                            m.apply(op)
            except (KeyError, ValueError):
                continue   # failed transactions were made against the acknowledged state: not all compose
            models.append(m)
        return models

    def match(self, got: dict, when: str) -> Model:
        """The allowed model whose state ``got`` is; AssertionError if there is none."""
        for m in self.allowed():
            if m.state() == got:
                return m
        raise AssertionError(f"{when}: the database is not the acknowledged history (with each failed "
                             f"transaction whole or absent):\n{diff_states(got, self.model.state())}")

    def settle(self, m: Model) -> None:
        """``m`` (what a reopened database holds) is the history from now on."""
        self.base = m
        self.model = m
        self.entries = []


def run_until_failures(conn, history: History, gen: Generator, first_txid: int, *, max_tx: int,
                       max_failures: int) -> tuple[int, list[Exception]]:
    """Run random transactions, recording each; stop after ``max_failures`` failed commits or ``max_tx``."""
    failures = []
    txid = first_txid
    for _ in range(max_tx):
        txid += 1
        work = history.model.fork()
        ops = gen.transaction(work, txid)
        try:
            run_transaction(conn, ops)
        except tabledb.Error as exc:
            assert isinstance(exc, tabledb.OperationalError), f"a failing write raised {type(exc).__name__}: {exc}"
            history.entries.append((ops, False))
            failures.append(exc)
            if len(failures) >= max_failures:
                break
            continue
        history.entries.append((ops, True))
        history.model = work
    return txid, failures


def arm(fs: FaultInjectionFS, kind: str, rng: random.Random) -> None:
    if kind == "wal-eio":
        fs.fail_writes_after(rng.randint(0, 120), "*.log")
    elif kind == "wal-enospc":
        fs.enospc_after_bytes(rng.randint(0, 150_000), "*.log")
    elif kind == "sst-enospc":
        fs.enospc_after_bytes(rng.randint(0, 150_000), "*.sst")
    elif kind == "manifest-eio":
        fs.fail_writes_after(rng.randint(0, 20), "MANIFEST-*")
    elif kind == "any-enospc":
        fs.enospc_after_bytes(rng.randint(0, 300_000))
    elif kind == "any-eio":
        fs.fail_writes_after(rng.randint(0, 300))
    elif kind == "fsync":
        fs.fail_syncs(after=rng.randint(0, 150), dirs=rng.random() < 0.5)
    else:
        raise ValueError(kind)


KINDS = ["wal-eio", "wal-enospc", "sst-enospc", "manifest-eio", "any-enospc", "any-eio", "fsync"]


@pytest.mark.parametrize("power_loss", [False, True], ids=["process-survives", "power-loss"])
@pytest.mark.parametrize("kind", KINDS)
def test_fault_reports_operational_error_and_loses_nothing_acknowledged(tmp_path, kind, power_loss):
    run_fault_case(tmp_path / "db", kind, power_loss, seed=KINDS.index(kind) * 2 + power_loss + 1)


@pytest.mark.skipif(os.environ.get("TABLEDB_LONG_CRASH") != "1", reason="set TABLEDB_LONG_CRASH=1 (make crash)")
@pytest.mark.timeout(3600)
def test_faults_long(tmp_path):
    """Every kind of fault, with and without power loss, ``TABLEDB_FAULT_SEEDS`` seeds each (default 15)."""
    base = int(os.environ.get("TABLEDB_CRASH_SEED", "0")) or random.randrange(1 << 30)
    print(f"seed {base}")
    for i in range(int(os.environ.get("TABLEDB_FAULT_SEEDS", "15"))):
        for kind in KINDS:
            for power_loss in (False, True):
                path = tmp_path / f"db-{i}-{kind}-{power_loss}"
                run_fault_case(path, kind, power_loss, seed=base + i * 1000 + KINDS.index(kind) * 2 + power_loss)
                shutil.rmtree(path)


def run_fault_case(path, kind: str, power_loss: bool, seed: int) -> None:
    """Transactions, then the fault until commits fail, reads, (power loss,) reopen, more writes."""
    rng = random.Random(seed)
    gen = Generator(rng)
    path = str(path)
    history = History()
    fs = FaultInjectionFS()
    sync_mode = ["group", "commit"][seed % 2]
    conn = open_conn(path, fs, sync_mode=sync_mode)
    txid, failures = run_until_failures(conn, history, gen, 0, max_tx=30, max_failures=1)
    assert not failures, "no fault is armed yet"
    arm(fs, kind, rng)
    txid, failures = run_until_failures(conn, history, gen, txid, max_tx=400, max_failures=2)
    assert failures, f"seed {seed}: the {kind} fault never fired"

    # still readable: reads show acknowledged data, each failed transaction whole or absent
    index_checks(conn, history.match(read_state(conn), "read after the fault"), rng)

    fs.clear_faults()
    if power_loss:
        fs.crash()
    close_quietly(conn)
    conn = open_conn(path, FaultInjectionFS())
    recovered = history.match(read_state(conn), "after reopening")
    index_checks(conn, recovered, rng)
    report = check_engine(conn._db.engine)
    assert report["ok"], format_report(report)
    history.settle(recovered)

    # and takes writes again
    txid, failures = run_until_failures(conn, history, gen, txid + 1000, max_tx=25, max_failures=1)
    assert not failures, failures
    expected = history.model.state()
    assert read_state(conn) == expected
    conn.close()
    conn = open_conn(path, FaultInjectionFS())
    assert read_state(conn) == expected, diff_states(read_state(conn), expected)
    conn.close()


def test_foreground_flush_failure_clears_without_reopen(tmp_path):
    """With background=False a flush runs inside the commit that fills the memtable; a full disk
    fails that commit (nothing of it applied) and, once space is back, the same connection commits again."""
    rng = random.Random(7)
    gen = Generator(rng, ddl=0.02)
    path = str(tmp_path / "db")
    history = History()
    fs = FaultInjectionFS()
    conn = open_conn(path, fs, background=False)
    txid, _ = run_until_failures(conn, history, gen, 0, max_tx=20, max_failures=1)
    fs.enospc_after_bytes(0, "*.sst")
    txid, failures = run_until_failures(conn, history, gen, txid, max_tx=200, max_failures=3)
    assert failures and all(isinstance(f, tabledb.OperationalError) for f in failures)
    assert read_state(conn) == history.model.state(), "a failed commit left something behind"
    fs.clear_faults()
    history.settle(history.model)
    txid, failures = run_until_failures(conn, history, gen, txid, max_tx=60, max_failures=1)
    assert not failures, f"writes still fail after the fault cleared: {failures[0]}"
    expected = history.model.state()
    assert read_state(conn) == expected
    index_checks(conn, history.model, rng)
    conn.close()
    conn = open_conn(path, FaultInjectionFS(), background=False)
    assert read_state(conn) == expected
    conn.close()


def test_failed_group_commit_is_not_visible(tmp_path):
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    conn = open_conn(path, fs, sync_mode="group")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'acknowledged')")
    conn.commit()
    engine = conn._db.engine
    sequence = engine.latest_sequence
    fs.fail_syncs("*.log")
    conn.execute("INSERT INTO t VALUES (2, 'commit failed')")
    with pytest.raises(tabledb.OperationalError):
        conn.commit()
    reader = Connection(conn._db, False, 5.0, None)
    conn._db.refs += 1
    try:
        assert reader.execute("SELECT * FROM t").fetchall() == [(1, "acknowledged")], \
            "another connection sees a transaction whose commit failed and that a power loss would undo"
        assert engine.latest_sequence == sequence
        with pytest.raises(tabledb.OperationalError):   # no more writes until the database is reopened
            engine.put(b"k", b"v")
        assert engine.latest_sequence == sequence and engine.get(b"k") is None
    finally:
        reader.close()
        fs.crash()
        close_quietly(conn)
    conn = open_conn(path, FaultInjectionFS(), sync_mode="group")
    try:
        assert conn.execute("SELECT * FROM t").fetchall() == [(1, "acknowledged")]
    finally:
        conn.close()


def test_failed_group_commit_leaves_indexes_agreeing_with_rows(tmp_path):
    fs = FaultInjectionFS()
    conn = open_conn(str(tmp_path / "db"), fs, sync_mode="group")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, i % 3) for i in range(10)])
    conn.execute("CREATE INDEX t_a ON t(a)")
    conn.commit()
    fs.fail_syncs("*.log")
    conn.execute("DROP INDEX t_a")
    with pytest.raises(tabledb.OperationalError):
        conn.commit()
    try:
        assert "index t_a" in conn.execute("EXPLAIN SELECT id FROM t WHERE a = 1").fetchall()[1][0]
        assert conn.execute("SELECT id FROM t WHERE a = 1").fetchall() == [(1,), (4,), (7,)]
    finally:
        fs.crash()
        close_quietly(conn)
