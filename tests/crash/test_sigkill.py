"""SIGKILL a process running random SQL transactions; after each reopen the database is the model.

The child (``workload.py run``) commits random transactions (inserts, range
updates and deletes, DDL, index builds) with synced commits and tiny memtables,
so flushes and compactions run all the time, and logs each transaction before
it starts and after ``commit()`` returns. We kill it at a random moment and
reopen. Since one connection commits in order, at most one transaction is in
flight, and the database must equal the model after every acknowledged
transaction, or after those and the one in flight, whole: a prefix of the
issued history, nothing acknowledged lost, nothing half there. Then every index
answers EXPLAIN-confirmed index queries exactly as a full scan does, and
``tabledb.check`` finds every checksum, row and index entry sound.

Fast: a few cycles in ``make test``. ``TABLEDB_LONG_CRASH=1`` (``make crash``):
``TABLEDB_CRASH_CYCLES`` cycles (default 200) per sync mode, a fresh database
every 25; ``TABLEDB_CRASH_SEED`` repeats a run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

import tabledb
from tabledb.check import check, format_report

from .workload import ENGINE_OPTIONS, diff_states, index_checks, model_of, read_history, read_state

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKLOAD = os.path.join(HERE, "workload.py")
LONG = os.environ.get("TABLEDB_LONG_CRASH") == "1"


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def count_acks(log: str) -> tuple[int, dict]:
    """Acknowledged transactions in ``log`` so far, and the latest engine stats an ack carried."""
    acks, stats = 0, {}
    try:
        with open(log, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0, stats
    for line in data[:data.rfind(b"\n") + 1].splitlines():
        if b'"t":"ack"' in line:
            acks += 1
            if b'"stats"' in line:
                stats = json.loads(line)["stats"]
    return acks, stats


def kill_after(tmp_path, path: str, log: str, *, seed: int, sync_mode: str, acks: int) -> dict:
    """Start the writer, let it acknowledge ``acks`` more transactions, wait a random few ms, SIGKILL it."""
    err_path = str(tmp_path / "child.err")
    before, _ = count_acks(log)
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, WORKLOAD, "run", path, log, "--seed", str(seed),
                                 "--sync-mode", sync_mode], stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env())
    try:
        deadline = time.monotonic() + 120
        while True:
            n, stats = count_acks(log)
            if n - before >= acks:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(err_path, errors="replace") as f:
                    raise AssertionError(f"writer {'exited ' + str(proc.returncode) if proc.poll() is not None else 'stalled'}"
                                         f" after {n - before} acks:\n{f.read()[-3000:]}")
            time.sleep(0.005)
        time.sleep(random.Random(seed).random() * 0.01)   # land anywhere in the next transaction
        wal_segments = len([n for n in os.listdir(path) if n.endswith(".log")])
    finally:
        proc.kill()
        proc.wait()
    return {"stats": stats, "mid_flush": wal_segments > 1}


def check_recovered(path: str, log: str, rng: random.Random) -> bool:
    """Reopen; the database must be the model of the acknowledged history, or of it plus the
    transaction in flight. Record which in the log; return whether the one in flight survived."""
    txs, whole = read_history(log)
    os.truncate(log, whole)   # a line cut by the kill is not part of the history
    unresolved = [tx for tx in txs if tx.committed is None]
    assert len(unresolved) <= 1 and (not unresolved or unresolved[0] is txs[-1]), \
        f"more than one transaction in flight: {[tx.id for tx in unresolved]}"
    before = model_of(txs)
    conn = tabledb.connect(path, **ENGINE_OPTIONS)
    try:
        got = read_state(conn)
        if got == before.state():
            committed, model = False, before
        else:
            after = model_of(txs, upto_unresolved=True)
            assert unresolved and got == after.state(), (
                f"recovered state is no prefix of the history (transaction {txs[-1].id if txs else 0} was "
                f"{'in flight' if unresolved else 'the last acknowledged'}); against the acknowledged state:\n"
                f"{diff_states(got, before.state())}")
            committed, model = True, after
        index_checks(conn, model, rng)
    finally:
        conn.close()
    report = check(path)
    assert report["ok"], format_report(report)
    if unresolved:
        with open(log, "a") as f:
            f.write(json.dumps({"t": "resolved", "id": unresolved[0].id, "committed": committed}) + "\n")
    return committed


def run_kill_cycles(tmp_path, *, cycles: int, seed: int, acks=(5, 150), fresh_every: int | None = None,
                    sync_modes=("group", "commit")) -> dict:
    rng = random.Random(seed)
    path, log = str(tmp_path / "db"), str(tmp_path / "history.jsonl")
    totals = {"cycles": 0, "acks": 0, "in_flight_kept": 0, "in_flight_lost": 0, "mid_flush": 0,
              "flushes": 0, "compactions": 0}
    for cycle in range(cycles):
        if fresh_every and cycle % fresh_every == 0 and cycle:
            shutil.rmtree(path, ignore_errors=True)
            os.remove(log)
        sync_mode = sync_modes[cycle % len(sync_modes)]
        before, _ = count_acks(log)
        result = kill_after(tmp_path, path, log, seed=rng.randrange(1 << 30), sync_mode=sync_mode,
                            acks=rng.randint(*acks))
        totals["acks"] += count_acks(log)[0] - before
        totals["mid_flush"] += result["mid_flush"]
        totals["flushes"] += result["stats"].get("flushes", 0)
        totals["compactions"] += result["stats"].get("compactions", 0)
        totals["cycles"] += 1
        kept = check_recovered(path, log, rng)
        totals["in_flight_kept" if kept else "in_flight_lost"] += 1
    return totals


def test_sigkill_sql_workload(tmp_path):
    totals = run_kill_cycles(tmp_path, cycles=6, seed=20240601)
    assert totals["acks"] >= 6 * 5 and totals["flushes"] > 0 and totals["compactions"] > 0, totals


@pytest.mark.skipif(not LONG, reason="set TABLEDB_LONG_CRASH=1 (make crash; minutes)")
@pytest.mark.timeout(7200)
def test_sigkill_sql_workload_long(tmp_path):
    seed = int(os.environ.get("TABLEDB_CRASH_SEED", "0")) or random.randrange(1 << 30)
    print(f"seed {seed}")
    cycles = int(os.environ.get("TABLEDB_CRASH_CYCLES", "200"))
    totals = run_kill_cycles(tmp_path, cycles=cycles, seed=seed, acks=(1, 400), fresh_every=25)
    print(totals)
    assert totals["cycles"] == cycles and totals["mid_flush"] > 0, totals


def test_kill_between_wal_preallocation_and_header_leaves_an_openable_database(tmp_path):
    path = str(tmp_path / "db")
    conn = tabledb.connect(path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    # what the kill leaves: the next segment, 1 MiB preallocated, its header still in the process's buffer
    with open(os.path.join(path, "999999.log"), "wb") as f:
        f.truncate(1 << 20)
    conn = tabledb.connect(path)
    try:
        assert conn.execute("SELECT * FROM t").fetchall() == [(1,)]
        assert not os.path.exists(os.path.join(path, "999999.log")), "the open keeps a segment holding nothing"
    finally:
        conn.close()
