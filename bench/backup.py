"""Backup benchmark: tabledb's BACKUP, incremental BACKUP, RESTORE and point-in-time restore, with
sqlite3's online backup as the yardstick, same rows, same run.

    .venv/bin/python bench/backup.py --n 1000000 [--json out.json] [--dir /tmp]

The table is ``t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)``, row ``i`` =
``(i, 'name-<i>', <seeded float>, 'tag-<i % 100>')``, loaded with executemany in
transactions of 10,000 rows into both databases (tabledb from ``tabledb.connect(dir)``
with its defaults, then ``compact_range`` to settle the levels as a database that has
been running would be; sqlite3 in WAL mode, synchronous=NORMAL). Phases:

    full          tabledb: ``conn.backup(target)`` into an empty directory; sqlite3:
                  ``Connection.backup`` into a new file. MB/s of each database's bytes
                  (tabledb: the SSTables copied; sqlite3: the database file).
    incremental   update 1% of the rows (random ids, one transaction), then back up again:
                  tabledb copies only new SSTables; the figure is bytes copied as a share of
                  the full backup's bytes (sqlite3 has no incremental backup: it copies all).
    restore       tabledb: ``tabledb.restore(target, path, backup=<full>)``, connect, read the
                  last row; sqlite3: copy the backup file, connect, read the last row.
    pitr          after the incremental backup, n more rows go in (the WAL archived); then
                  ``tabledb.restore(target, path, as_of=<last sequence>)`` replays them:
                  rows/s = rows replayed / (that restore's time - the plain restore's time).
    writers       one thread commits 100-row transactions in windows of ``--seconds`` seconds,
                  alone and while full backups (incremental = false, to a fresh target each)
                  run back to back in another thread, alternating 3 times: rows/s during
                  backups as a share of rows/s alone.

Every phase checks its answer (row counts; a sample of rows read back after restores).
Targets (from the issue): full >= 0.5x sqlite3 MB/s; incremental after 1% < 10% of the full
bytes; WAL replay >= 100k rows/s; writers during a backup > 0.7x.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tabledb  # noqa: E402
from tabledb.backup import archive  # noqa: E402
from bench.common import Timer, machine_info, render_table, trailer, write_json  # noqa: E402

BATCH = 10_000


def rows(lo: int, hi: int, seed: int = 1):
    rng = random.Random(seed + lo)
    return [(i, f"name-{i}", rng.random() * 100, f"tag-{i % 100}") for i in range(lo, hi)]


def load_tabledb(conn, lo, hi):
    for start in range(lo, hi, BATCH):
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows(start, min(hi, start + BATCH)))
        conn.commit()


def dir_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs)


def mb_s(nbytes, seconds) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else float("inf")


def check_sample(conn, n, seed=1):
    rng = random.Random(5)
    for i in rng.sample(range(n), min(20, n)):
        got = conn.execute("SELECT id, name, tag FROM t WHERE id = ?", (i,)).fetchone()
        assert got == (i, f"name-{i}", f"tag-{i % 100}"), (i, got)


def run(args) -> dict:
    n = args.n
    base = tempfile.mkdtemp(prefix="tabledb-bench-backup-", dir=args.dir)
    out: dict = {"n": n, "machine": machine_info()}
    try:
        # -- load both -------------------------------------------------------------
        db_path = os.path.join(base, "db")
        conn = tabledb.connect(db_path, wal_archive_interval=5.0)
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)")
        conn.commit()
        with Timer() as t_load:
            load_tabledb(conn, 0, n)
        conn._db.engine.compact_range()
        lite_path = os.path.join(base, "lite.db")
        lite = sqlite3.connect(lite_path)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("PRAGMA synchronous=NORMAL")
        lite.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)")
        for start in range(0, n, BATCH):
            lite.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows(start, min(n, start + BATCH)))
            lite.commit()
        lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["load_seconds_tabledb"] = t_load.seconds

        # -- full ------------------------------------------------------------------
        target = os.path.join(base, "target")
        with Timer() as t_full:
            full = conn.backup(target)
        lite_bk = os.path.join(base, "lite-backup.db")
        with Timer() as t_lite:
            dst = sqlite3.connect(lite_bk)
            lite.backup(dst)
            dst.close()
        lite_bytes = os.path.getsize(lite_bk)
        out["full"] = {"tabledb_bytes": full["bytes_total"], "tabledb_seconds": t_full.seconds,
                       "tabledb_mb_s": mb_s(full["bytes_copied"], t_full.seconds),
                       "sqlite3_bytes": lite_bytes, "sqlite3_seconds": t_lite.seconds,
                       "sqlite3_mb_s": mb_s(lite_bytes, t_lite.seconds)}
        out["full"]["ratio"] = out["full"]["tabledb_mb_s"] / out["full"]["sqlite3_mb_s"]

        # -- restore (of the full backup) --------------------------------------------
        last = (n - 1, f"name-{n - 1}")
        with Timer() as t_restore:
            tabledb.restore(target, os.path.join(base, "restored"), backup=full["backup_id"])
            r = tabledb.connect(os.path.join(base, "restored"))
            assert r.execute("SELECT id, name FROM t WHERE id = ?", (n - 1,)).fetchone() == last
        assert r.execute("SELECT count(*) FROM t").fetchone()[0] == n
        check_sample(r, n)
        r.close()
        with Timer() as t_lite_restore:
            shutil.copyfile(lite_bk, os.path.join(base, "lite-restored.db"))
            rl = sqlite3.connect(os.path.join(base, "lite-restored.db"))
            assert rl.execute("SELECT id, name FROM t WHERE id = ?", (n - 1,)).fetchone() == last
        rl.close()
        out["restore"] = {"tabledb_seconds": t_restore.seconds, "sqlite3_seconds": t_lite_restore.seconds,
                          "ratio": t_lite_restore.seconds / t_restore.seconds}

        # -- incremental after 1% ----------------------------------------------------------
        ids = random.Random(3).sample(range(n), max(1, n // 100))
        conn.executemany("UPDATE t SET score = -1, name = 'changed' WHERE id = ?", [(i,) for i in ids])
        conn.commit()
        with Timer() as t_inc:
            inc = conn.backup(target)
        out["incremental"] = {"changed_rows": len(ids), "bytes_copied": inc["bytes_copied"],
                              "files_copied": inc["files_copied"], "full_bytes": full["bytes_total"],
                              "share_of_full": inc["bytes_copied"] / full["bytes_total"],
                              "seconds": t_inc.seconds}

        # -- point-in-time restore replaying n rows of WAL -----------------------------------
        load_tabledb(conn, n, 2 * n)
        seq = conn.execute("SELECT last_sequence()").fetchone()[0]
        engine = conn._db.engine
        engine.seal_wal()       # what the archiver does every wal_archive_interval seconds, done now
        archive.get(engine).copy_sealed()
        pitr_path = os.path.join(base, "pitr")
        with Timer() as t_pitr:
            info = tabledb.restore(target, pitr_path, backup=inc["backup_id"], as_of=seq)
        with Timer() as t_plain:
            tabledb.restore(target, os.path.join(base, "plain"), backup=inc["backup_id"])
        p = tabledb.connect(pitr_path)
        assert p.execute("SELECT count(*) FROM t").fetchone()[0] == 2 * n
        check_sample(p, 2 * n)
        p.close()
        replay_seconds = max(1e-9, t_pitr.seconds - t_plain.seconds)
        out["pitr"] = {"rows_replayed": info["wal_rows"], "records": info["wal_records"],
                       "seconds": t_pitr.seconds, "plain_restore_seconds": t_plain.seconds,
                       "rows_per_s": info["wal_rows"] / replay_seconds}

        # -- writers during backups -----------------------------------------------------------------
        out["writers"] = writers_phase(conn, base, 3 * n, args.seconds)
        conn.close()
        lite.close()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return out


def writers_phase(conn, base, start_id, seconds, rounds: int = 3) -> dict:
    """Windows of ``seconds`` alone and during backups, alternating ``rounds`` times (the engine's
    own compaction makes a single window's rate swing; alternating spreads that over both sides)."""
    writer = tabledb.connect(conn.path)
    nxt = start_id

    def write_for(duration):
        nonlocal nxt
        first = nxt
        deadline = time.perf_counter() + duration
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            writer.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows(nxt, nxt + 100))
            writer.commit()
            nxt += 100
        return nxt - first, time.perf_counter() - t0

    backups = []

    def during_backups(duration):
        stop = threading.Event()

        def back_up():
            k = len(backups)
            while not stop.is_set():
                target = os.path.join(base, f"wtarget{k}")
                with Timer() as t:
                    conn.backup(target, incremental=False, wal_archive=False)
                backups.append(t.seconds)
                shutil.rmtree(target, ignore_errors=True)
                k += 1

        th = threading.Thread(target=back_up)
        th.start()
        try:
            return write_for(duration)
        finally:
            stop.set()
            th.join()

    alone = [0, 0.0]
    during = [0, 0.0]
    for _ in range(rounds):
        for acc, fn in ((alone, write_for), (during, during_backups)):
            n, s = fn(seconds)
            acc[0] += n
            acc[1] += s
    writer.close()
    rate_alone, rate_during = alone[0] / alone[1], during[0] / during[1]
    return {"rows_per_s_alone": rate_alone, "rows_per_s_during_backup": rate_during,
            "share": rate_during / rate_alone, "backups_during": len(backups), "rounds": rounds}


def report(out: dict) -> str:
    f, inc, r, p, w = out["full"], out["incremental"], out["restore"], out["pitr"], out["writers"]
    table = [
        ["full backup MB/s", f"{f['tabledb_mb_s']:.1f}", f"{f['sqlite3_mb_s']:.1f}", f"{f['ratio']:.2f}x",
         ">= 0.5x"],
        ["incremental after 1% (share of full bytes)", f"{inc['share_of_full'] * 100:.2f}%", "100%", "", "< 10%"],
        ["restore (copy + open + read a row) s", f"{r['tabledb_seconds']:.2f}", f"{r['sqlite3_seconds']:.2f}",
         f"{r['ratio']:.2f}x", ""],
        ["point-in-time restore: WAL replay rows/s", f"{p['rows_per_s']:,.0f}", "", "", ">= 100,000"],
        ["writer rows/s during a backup (share of alone)", f"{w['rows_per_s_during_backup']:,.0f}", "",
         f"{w['share']:.2f}x", "> 0.7x"],
    ]
    lines = [f"bench/backup.py --n {out['n']}", "",
             render_table(["phase", "tabledb", "sqlite3", "ratio", "target"], table), "",
             f"full: tabledb {f['tabledb_bytes'] / 1e6:.1f} MB in {f['tabledb_seconds']:.2f} s; "
             f"sqlite3 {f['sqlite3_bytes'] / 1e6:.1f} MB in {f['sqlite3_seconds']:.2f} s",
             f"incremental: {inc['changed_rows']} rows changed, {inc['files_copied']} files, "
             f"{inc['bytes_copied'] / 1e6:.2f} MB in {inc['seconds']:.2f} s",
             f"pitr: {p['rows_replayed']} rows in {p['records']} WAL records, restore {p['seconds']:.2f} s "
             f"(plain restore {p['plain_restore_seconds']:.2f} s)",
             f"writers: {w['rows_per_s_alone']:,.0f} rows/s alone, {w['backups_during']} backups during "
             f"{w['rounds']} windows",
             "", trailer(out["machine"])]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each writer window (6 of them)")
    ap.add_argument("--dir", default=None, help="where the temporary databases go")
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    out = run(args)
    print(report(out))
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
