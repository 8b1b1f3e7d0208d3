"""Threads sharing one database, and a second process trying to open it.

1. Writers move money between accounts in transactions that read first (so a
   writer whose snapshot went stale must roll back and retry), each also
   appending a numbered history row and bumping a counter; readers check, in
   one snapshot, that the money adds up, that the counter equals the number of
   history rows and that an index scan counts what a full scan counts. After a
   bounded run the history, replayed serially in counter order, must give the
   balances in the table, and each writer's own list of acknowledged transfers
   must be exactly its rows in the history: the result of a serial execution.
2. A reader counting the rows of a table that another thread fills and empties
   in big transactions only ever sees all of them or none.
3. Another process opening the database gets OperationalError at once.

Small memtables keep flushes and compactions running under the threads.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import tabledb

OPTIONS = {"memtable_bytes": 32768, "target_file_bytes": 65536, "level1_bytes": 262144, "l0_compaction_trigger": 2}
ACCOUNTS = 40
START = 1000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def setup_bank(path: str) -> None:
    with tabledb.connect(path, **OPTIONS) as conn:
        conn.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        conn.execute("CREATE INDEX acct_balance ON acct(balance)")
        conn.execute("CREATE TABLE hist(seq INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, "
                     "writer INTEGER)")
        conn.execute("CREATE TABLE meta(k INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.executemany("INSERT INTO acct VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)])
        conn.execute("INSERT INTO meta VALUES (0, 0)")
    conn.close()


def writer(path: str, wid: int, stop: threading.Event, out: dict) -> None:
    rng = random.Random(wid)
    done, retries = [], 0
    conn = tabledb.connect(path, busy_timeout=10.0)
    try:
        while not stop.is_set():
            src, dst = rng.sample(range(ACCOUNTS), 2)
            amount = rng.randint(1, 50)
            try:
                conn.execute("BEGIN")   # the read below belongs to the transaction (as in sqlite3, a bare
                # SELECT would not: it would read its own snapshot, and the writes start a new one)
                (seq,) = conn.execute("SELECT seq FROM meta WHERE k = 0").fetchone()
                conn.execute("UPDATE acct SET balance = balance - ? WHERE id = ?", (amount, src))
                conn.execute("UPDATE acct SET balance = balance + ? WHERE id = ?", (amount, dst))
                conn.execute("INSERT INTO hist VALUES (?, ?, ?, ?, ?)", (seq + 1, src, dst, amount, wid))
                conn.execute("UPDATE meta SET seq = ? WHERE k = 0", (seq + 1,))
                conn.commit()
            except tabledb.OperationalError:   # locked, or the snapshot went stale: roll back and retry
                conn.rollback()
                retries += 1
                continue
            done.append((seq + 1, src, dst, amount))
            time.sleep(0.002)   # think time: the writer lock is not fair, a tight loop starves the others
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        out[f"writer{wid}-error"] = exc
    finally:
        conn.close()
    out[f"writer{wid}"] = (done, retries)


CONSISTENT = ("SELECT (SELECT sum(balance) FROM acct), (SELECT count(*) FROM acct), "
              "(SELECT count(*) FROM acct WHERE balance >= -1000000000), "
              "(SELECT count(*) FROM hist), (SELECT seq FROM meta WHERE k = 0)")


def reader(path: str, rid: int, stop: threading.Event, out: dict) -> None:
    conn = tabledb.connect(path)
    checks = 0
    try:
        while not stop.is_set():
            if checks % 2:   # one query, one snapshot
                total, n, by_index, hist, seq = conn.execute(CONSISTENT).fetchone()
            else:            # a read transaction: several statements, one snapshot
                conn.execute("BEGIN")
                total = conn.execute("SELECT sum(balance) FROM acct").fetchone()[0]
                n = conn.execute("SELECT count(*) FROM acct").fetchone()[0]
                by_index = len(conn.execute("SELECT id FROM acct WHERE balance >= -1000000000").fetchall())
                hist = conn.execute("SELECT count(*) FROM hist").fetchone()[0]
                seq = conn.execute("SELECT seq FROM meta WHERE k = 0").fetchone()[0]
                conn.execute("COMMIT")
            assert total == ACCOUNTS * START, f"money does not add up: {total}"
            assert n == by_index == ACCOUNTS, f"{n} rows, {by_index} through the index"
            assert hist == seq, f"{hist} history rows, counter {seq}: a transaction seen half done"
            checks += 1
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        out[f"reader{rid}-error"] = exc
    finally:
        conn.close()
    out[f"reader{rid}"] = checks


def run_threads(targets, seconds: float) -> dict:
    stop = threading.Event()
    out: dict = {}
    threads = [threading.Thread(target=fn, args=(*args, stop, out)) for fn, args in targets]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a thread hangs"
    errors = {k: v for k, v in out.items() if k.endswith("-error")}
    assert not errors, errors
    return out


def test_threads_match_a_serial_execution(tmp_path):
    path = str(tmp_path / "bank")
    setup_bank(path)
    writers, readers = 3, 2
    out = run_threads([(writer, (path, w)) for w in range(writers)] +
                      [(reader, (path, r)) for r in range(readers)], seconds=4.0)
    acked = {w: out[f"writer{w}"][0] for w in range(writers)}
    assert all(len(v) >= 5 for v in acked.values()), {w: len(v) for w, v in acked.items()}
    assert sum(out[f"writer{w}"][1] for w in range(writers)) > 0, "no writer ever met a stale snapshot"
    assert all(out[f"reader{r}"] >= 10 for r in range(readers)), out
    with tabledb.connect(path) as conn:
        hist = conn.execute("SELECT seq, src, dst, amount, writer FROM hist ORDER BY seq").fetchall()
        balances = dict(conn.execute("SELECT id, balance FROM acct").fetchall())
        seq = conn.execute("SELECT seq FROM meta").fetchone()[0]
    conn.close()
    # the serial model: replay the history in commit order
    assert [h[0] for h in hist] == list(range(1, seq + 1)), "history numbers are not 1..n"
    model = {i: START for i in range(ACCOUNTS)}
    for _seq, src, dst, amount, _w in hist:
        model[src] -= amount
        model[dst] += amount
    assert balances == model
    for w, done in acked.items():
        assert [h[:4] for h in hist if h[4] == w] == done, f"writer {w}: acknowledged transfers differ from history"


def test_readers_never_see_part_of_a_transaction(tmp_path):
    path = str(tmp_path / "db")
    batch = 2000
    with tabledb.connect(path, **OPTIONS) as conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, g INTEGER)")
        conn.execute("CREATE INDEX t_g ON t(g)")
    conn.close()

    def fill_and_empty(stop, out):
        c = tabledb.connect(path)
        rounds = 0
        try:
            while not stop.is_set():
                c.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "x" * 20, i % 7) for i in range(batch)])
                c.commit()
                c.execute("DELETE FROM t WHERE g >= 0")   # row by row, through the index
                c.commit()
                rounds += 1
        except BaseException as exc:  # noqa: BLE001
            out["writer-error"] = exc
        finally:
            c.close()
        out["rounds"] = rounds

    def count(stop, out):
        c = tabledb.connect(path)
        seen = set()
        try:
            while not stop.is_set():
                n, by_index = c.execute("SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM t WHERE g >= 0)"
                                        ).fetchone()
                seen.add((n, by_index))
        except BaseException as exc:  # noqa: BLE001
            out["reader-error"] = exc
        finally:
            c.close()
        out["seen"] = seen

    out = run_threads([(fill_and_empty, ()), (count, ())], seconds=3.0)
    assert out["rounds"] >= 2, out
    assert out["seen"] <= {(0, 0), (batch, batch)}, f"partial transactions seen: {sorted(out['seen'])[:5]}"


CHILD = """
import sys, time, tabledb
from tabledb.check import check
t0 = time.monotonic()
try:
    tabledb.connect(sys.argv[1])
    print("opened")
except tabledb.OperationalError as exc:
    print("OperationalError", round(time.monotonic() - t0, 3))
try:
    check(sys.argv[1])
    print("checked")
except tabledb.OperationalError as exc:
    print("OperationalError")
"""


def test_second_process_gets_operational_error_at_once(tmp_path):
    path = str(tmp_path / "db")
    conn = tabledb.connect(path, busy_timeout=30.0)
    try:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        conn.commit()
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=60,
                             env=env)
        lines = out.stdout.split("\n")
        assert lines[0].startswith("OperationalError"), out.stdout + out.stderr
        assert float(lines[0].split()[1]) < 1.0, "the second process waited instead of failing at once"
        assert lines[1] == "OperationalError", "tabledb check must not read a database another process has open"
    finally:
        conn.close()
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split("\n")[:2] == ["opened", "checked"], out.stdout + out.stderr
