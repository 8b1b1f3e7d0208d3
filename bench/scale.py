"""Scale: one big table through load, index build, compaction, scans, point reads and check, within a memory budget.

    .venv/bin/python bench/scale.py --n 10000000                 # the issue's run: ~1.2 GB on disk
    .venv/bin/python bench/scale.py --n 200000 --json out.json   # while developing
    .venv/bin/python bench/scale.py --n 1000000 --load sql --phases load,compact,scan

The table is ``t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload TEXT,
score REAL)``, row ``i`` = ``(i, (i * 7919) % n, 'name-<i>', 64 bytes of
seeded text, (i % 1000) / 8)``: about 105 bytes of values, so 10 million rows
make 1.2 GB of SSTables. Rows are generated batch by batch and never kept.

Phases (``--phases``, in this order):

    load     --batch rows at a time: ``ingest_arrow`` (``--load arrow``, the bulk path:
             SSTables built outside the write path) or ``executemany`` + commit (``--load sql``)
    index    CREATE INDEX t_k ON t(k): entries sorted externally, ingested as SSTables (tabledb/sql/bulk.py)
    compact  Engine.compact_range(): everything down to the last level
    scan     SELECT count(*), sum(score) FROM t (a full scan, checked), then the whole
             table as Arrow record batches (fetch_record_batch, checked)
    point    --points random SELECT * FROM t WHERE id = ? (checked)
    check    tabledb.check on the closed database (every checksum, row, index entry)
    backup   BACKUP DATABASE TO <path>/target (a full backup, every SSTable copied and checked)
    restore  tabledb.restore of that backup into <path>/restored (every byte checked, then the
             database assembled and opened), then count(*) and --points point reads on it

Memory: each phase runs in a process of its own (no phase inherits another's
heap), which opens the database, notes its RSS (the interpreter, sqlglot,
pyarrow, the open database: the fixed overhead), resets the kernel's
high-water mark (``/proc/self/clear_refs``) and runs the phase. The budget is
that start plus what the engine is configured to hold -- two memtables (the
active one and one being flushed) and the block cache -- plus ``--slack-mib``
(default 64) for the working set of one load call. A phase over budget is
marked ``OVER`` and the exit status is 1.
Nothing is written to docs/benchmarks.md; ``--json`` saves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa  # noqa: E402

import tabledb  # noqa: E402
from common import (current_rss_bytes, disk_usage, human_bytes, human_rate, machine_info, render_table,  # noqa: E402
                    trailer, write_json)

PHASES = ("load", "index", "compact", "scan", "point", "check", "backup", "restore")
PAYLOAD_BYTES = 64
MIB = 1 << 20


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: writing 5 to /proc/self/clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """VmHWM: the resident set's high-water mark since the last reset."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Rows:
    """Row ``i`` of the table, and Arrow batches of them."""

    def __init__(self, n: int, seed: int = 7):
        self.n = n
        alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
        rng = random.Random(seed)
        self.pool = bytes(rng.choice(alphabet) for _ in range(1 << 16)).decode()

    def payload(self, i: int) -> str:
        off = (i * 7919) % ((1 << 16) - PAYLOAD_BYTES)
        return self.pool[off:off + PAYLOAD_BYTES]

    def k(self, i: int) -> int:
        return (i * 7919) % self.n

    @staticmethod
    def score(i: int) -> float:
        return (i % 1000) / 8

    def row(self, i: int) -> tuple:
        return (i, self.k(i), f"name-{i}", self.payload(i), self.score(i))

    def batch(self, lo: int, hi: int) -> pa.RecordBatch:
        ids = range(lo, hi)
        return pa.record_batch({
            "id": pa.array(ids, pa.int64()),
            "k": pa.array([self.k(i) for i in ids], pa.int64()),
            "name": pa.array([f"name-{i}" for i in ids], pa.string()),
            "payload": pa.array([self.payload(i) for i in ids], pa.string()),
            "score": pa.array([self.score(i) for i in ids], pa.float64()),
        })

    def score_sum(self) -> float:
        full, rest = divmod(self.n, 1000)
        return full * sum(j / 8 for j in range(1000)) + sum(j / 8 for j in range(rest))


def run_phase(args) -> dict:
    """In a child process: open the database, note the RSS, run one phase, report its figures."""
    name = args.phase_child
    path = os.path.join(args.path, "db")
    options = {"memtable_bytes": args.memtable_mib * MIB, "block_cache_bytes": args.block_cache_mib * MIB}
    rows = Rows(args.n)
    conn = tabledb.connect(path, **options)
    engine = conn._db.engine   # for flush, compact_range and stats only
    if name == "load":
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload TEXT, score REAL)")
        conn.commit()
    time.sleep(0.05)
    baseline = current_rss_bytes()
    reset_peak_rss()

    def load():
        for lo in range(0, args.n, args.batch):
            hi = min(args.n, lo + args.batch)
            if args.load == "arrow":
                conn.ingest_arrow("t", rows.batch(lo, hi))
            else:
                conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", (rows.row(i) for i in range(lo, hi)))
                conn.commit()
        engine.flush()
        return f"{args.load}, {args.batch:,} rows a call, {human_bytes(disk_usage(path)['total'])} on disk"

    def index():
        conn.execute("CREATE INDEX t_k ON t(k)")
        conn.commit()
        got = conn.execute("SELECT id FROM t WHERE k = ?", (rows.k(args.n // 2),)).fetchall()
        assert (args.n // 2,) in got, got
        return "CREATE INDEX over every row: external sort, then one ingest"

    def compact():
        engine.compact_range()
        levels = [lv for lv in engine.stats()["levels"] if lv["files"]]
        return (f"{human_bytes(disk_usage(path)['total'])} on disk right after, levels "
                + ", ".join(f"L{lv['level']}: {lv['files']}" for lv in levels))

    def scan():
        n, total = conn.execute("SELECT count(*), sum(score) FROM t").fetchone()
        assert n == args.n and abs(total - rows.score_sum()) < 1e-6 * max(1.0, total), (n, total)
        seen = 0
        for batch in conn.execute("SELECT * FROM t").fetch_record_batch(65536):
            if seen == 0:
                assert batch.column(0)[0].as_py() == 0 and batch.column(2)[0].as_py() == "name-0"
            seen += batch.num_rows
        assert seen == args.n, seen
        return "count + sum, then every row as Arrow batches"

    def point():
        rng = random.Random(3)
        cur = conn.cursor()
        for _ in range(args.points):
            i = rng.randrange(args.n)
            got = cur.execute("SELECT * FROM t WHERE id = ?", (i,)).fetchone()
            assert got == rows.row(i), (i, got)
        return f"{args.points:,} queries"

    def check_phase():
        from tabledb.check import check, format_report
        report = check(path)   # the open database: checked through its engine
        assert report["ok"], format_report(report)
        return f"{report['files']['tables']} tables, {human_bytes(report['files']['table_bytes'])} verified"

    target = os.path.join(args.path, "target")
    restored = os.path.join(args.path, "restored")

    def backup():
        shutil.rmtree(target, ignore_errors=True)
        row = conn.backup(target, incremental=False, wal_archive=False)
        return f"{row['files_copied']} files, {human_bytes(row['bytes_copied'])} copied"

    def restore():
        shutil.rmtree(restored, ignore_errors=True)
        out = tabledb.restore(target, restored)
        with tabledb.connect(restored, **options) as r:
            n, = r.execute("SELECT count(*) FROM t").fetchone()
            assert n == args.n, n
            rng = random.Random(5)
            cur = r.cursor()
            for _ in range(args.points):
                i = rng.randrange(args.n)
                got = cur.execute("SELECT * FROM t WHERE id = ?", (i,)).fetchone()
                assert got == rows.row(i), (i, got)
        shutil.rmtree(restored, ignore_errors=True)
        return f"{out['files']} files, {human_bytes(out['bytes'])} checked and assembled; count(*) and point reads"

    fn = {"load": load, "index": index, "compact": compact, "scan": scan, "point": point,
          "check": check_phase, "backup": backup, "restore": restore}[name]
    t0 = time.perf_counter()
    note = fn()
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    conn.close()
    return {"seconds": round(seconds, 2), "baseline_rss": baseline, "peak_rss": peak, "note": note}


ROWS_OF = {"load": 1, "index": 1, "compact": 1, "scan": 2, "check": 1, "backup": 1, "restore": 1}


def run(args) -> dict:
    """Run each phase in its own process (so that no phase inherits another's heap) and collect the figures."""
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    root = args.path or tempfile.mkdtemp(prefix="tabledb-scale-")
    if os.path.exists(os.path.join(root, "db")) and "load" in phases:
        shutil.rmtree(os.path.join(root, "db"))
    slack = args.slack_mib * MIB
    engine_budget = 2 * args.memtable_mib * MIB + args.block_cache_mib * MIB
    results = {"n": args.n, "path": root, "memtable_bytes": args.memtable_mib * MIB,
               "block_cache_bytes": args.block_cache_mib * MIB, "slack_bytes": slack, "phases": {},
               "machine": machine_info()}
    child_args = [f"--n={args.n}", f"--path={root}", f"--load={args.load}", f"--batch={args.batch}",
                  f"--points={args.points}", f"--memtable-mib={args.memtable_mib}",
                  f"--block-cache-mib={args.block_cache_mib}"]
    for name in PHASES:
        if name not in phases:
            continue
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--phase-child={name}", *child_args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"phase {name} failed:\n{out.stderr[-4000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["budget_rss"] = r["baseline_rss"] + engine_budget + slack
        r["over_budget"] = r["peak_rss"] > r["budget_rss"]
        count = args.points if name == "point" else ROWS_OF.get(name, 0) * args.n
        r["rows_per_s"] = count / r["seconds"] if count and r["seconds"] else None
        results["phases"][name] = r
        print(f"{name:8} {r['seconds']:9.1f} s  peak RSS {human_bytes(r['peak_rss']):>10} "
              f"(start {human_bytes(r['baseline_rss'])})  {r['note']}", flush=True)
    results["disk"] = disk_usage(os.path.join(root, "db"))
    if not args.keep and not args.path:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--path", help="a folder for the database (default: a fresh temporary one, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--phases", default="load,index,compact,scan,point,check,backup,restore")
    p.add_argument("--load", choices=("arrow", "sql"), default="arrow")
    p.add_argument("--batch", type=int, default=None,
                   help="rows per load call (default 250,000 for arrow; 2,000 for sql: one transaction "
                        "each, whose write set lives in memory until its commit)")
    p.add_argument("--points", type=int, default=20_000)
    p.add_argument("--memtable-mib", type=int, default=64)
    p.add_argument("--block-cache-mib", type=int, default=32)
    p.add_argument("--slack-mib", type=int, default=64)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--phase-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.batch is None:
        args.batch = 250_000 if args.load == "arrow" else 2_000
    if args.phase_child:
        print(json.dumps(run_phase(args)))
        return 0
    results = run(args)
    header = ["phase", "seconds", "rows/s", "peak RSS", "at start", "budget", ""]
    body = [[name, f"{r['seconds']:.1f}", human_rate(r["rows_per_s"]), human_bytes(r["peak_rss"]),
             human_bytes(r["baseline_rss"]), human_bytes(r["budget_rss"]), "OVER" if r["over_budget"] else "ok"]
            for name, r in results["phases"].items()]
    print()
    print(render_table(header, body))
    print(f"n = {results['n']:,}; on disk {human_bytes(results['disk']['total'])}; budget = RSS at start "
          f"(interpreter, libraries, open database) + 2 x memtable ({human_bytes(results['memtable_bytes'])}) "
          f"+ block cache ({human_bytes(results['block_cache_bytes'])}) + slack ({human_bytes(results['slack_bytes'])})")
    print(trailer(results["machine"]))
    if args.json:
        write_json(args.json, results)
    return 1 if any(r["over_budget"] for r in results["phases"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
