"""Arrow benchmark: tabledb against sqlite3 and DuckDB, moving a table to and from Arrow, same run.

    .venv/bin/python bench/arrow.py --n 1000000 [--json out.json] [--repeat 3]
    .venv/bin/python bench/arrow.py --n 100000 --only export --sides tabledb,duckdb

Every side works on disk in one fresh temporary directory, in this one process,
phase after phase, side after side. The data is one Arrow table of ``n`` rows,
``t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)``: row ``i`` is
``(i, 'name-<i>', score[i], 'tag-<i % 100>')`` with ``score`` seeded uniform in
[0, 100), built once before any timing. Phases, in the order they run:

    ingest        the n-row Arrow table into an empty table, committed.
                  tabledb: connection.ingest_arrow("t", table) (sorted SSTables built and
                  ingested when the engine offers it); sqlite3: the table's columns to
                  Python (to_pylist), executemany INSERT, commit; DuckDB: INSERT INTO t
                  SELECT * FROM the registered Arrow table.
    export        SELECT * FROM t to a pyarrow.Table.
                  tabledb: cursor.fetch_arrow_table(); sqlite3: fetchall(), then
                  pyarrow.Table.from_arrays over the columns; DuckDB: con.sql(...).to_arrow_table().
    export_scan   tabledb only: tabledb.arrow.table_reader(conn, "t").read_all(), the
                  batch decoder of stored rows that COPY t TO uses (and that
                  fetch_arrow_table uses once the session marks bare table scans).

Each phase checks its answer: the exported table must equal the source (after
sorting by id where the engine does not promise key order); after an ingest the
row count and a sample of rows read back through SQL must match. A wrong
answer fails that side's run. Rates are rows a second; ratios are tabledb's
rate over the other side's.

Configurations: sqlite3 in WAL mode with synchronous=NORMAL, one transaction;
DuckDB with its defaults (all cores it finds); tabledb from
``tabledb.connect(dir)`` with its defaults.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from bench.common import Timer, human_rate, machine_info, render_table, trailer, write_json  # noqa: E402

PHASES = ["ingest", "export", "export_scan"]
SIDES = ["tabledb", "sqlite3", "duckdb"]
DESCRIPTIONS = {
    "ingest": "Arrow table -> empty table, committed",
    "export": "SELECT * FROM t -> pyarrow.Table",
    "export_scan": "stored-row batches -> pyarrow.Table",
}
SCHEMA = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)"
DUCK_SCHEMA = "CREATE TABLE t(id BIGINT PRIMARY KEY, name VARCHAR, score DOUBLE, tag VARCHAR)"
SAMPLE = 1000


class CheckError(AssertionError):
    """A side gave a wrong answer; its figures for the run are void."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckError(message)


def progress(label: str, message: str) -> None:
    print(f"[{label}] {message}", file=sys.stderr, flush=True)


def make_source(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "name": pa.array(["name-%d" % i for i in range(n)], pa.string()),
        "score": pa.array([rng.random() * 100.0 for _ in range(n)], pa.float64()),
        "tag": pa.array(["tag-%02d" % (i % 100) for i in range(n)], pa.string()),
    })


def same_table(got: pa.Table, want: pa.Table, what: str) -> None:
    check(got.num_rows == want.num_rows, f"{what}: {got.num_rows} rows, expected {want.num_rows}")
    check(got.column_names == want.column_names, f"{what}: columns {got.column_names}")
    if got.num_rows and not got.column("id").equals(want.column("id")):
        got = got.sort_by("id")
    for name in want.column_names:
        a, b = got.column(name), want.column(name)
        check(a.type == b.type, f"{what}: column {name} is {a.type}, expected {b.type}")
        check(a.equals(b), f"{what}: column {name} differs from the source")


def check_sample(rows_of, source: pa.Table, seed: int, what: str) -> None:
    n = source.num_rows
    ids = random.Random(seed).sample(range(n), min(n, SAMPLE))
    for i in ids:
        got = rows_of(i)
        want = tuple(source.column(c)[i].as_py() for c in source.column_names)
        check(got is not None and tuple(got) == want, f"{what}: id {i} reads back as {got!r}, expected {want!r}")


# --- the sides ----------------------------------------------------------------------
# Each has open(path), ingest(table), export() -> pa.Table, count(), row(i), close().

class TabledbSide:
    label = "tabledb"

    def __init__(self, module):
        self.module = module
        self.conn = None

    def open(self, path: str) -> None:
        self.conn = self.module.connect(path)
        self.conn.execute(SCHEMA)
        self.conn.commit()

    def ingest(self, table: pa.Table) -> None:
        ingest = getattr(self.conn, "ingest_arrow", None)
        if ingest is not None:
            ingest("t", table)
        else:
            from tabledb import arrow
            arrow.ingest_arrow(self.conn, "t", table)
        self.conn.commit()

    def export(self) -> pa.Table:
        cur = self.conn.cursor()
        cur.execute("SELECT * FROM t")
        if hasattr(cur, "fetch_arrow_table"):
            return cur.fetch_arrow_table()
        from tabledb import arrow
        return arrow.fetch_arrow_table(cur)

    def export_scan(self) -> pa.Table:
        from tabledb import arrow
        return arrow.table_reader(self.conn, "t").read_all()

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM t").fetchone()[0]

    def row(self, i: int):
        return self.conn.execute("SELECT * FROM t WHERE id = ?", (i,)).fetchone()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def describe(self) -> str:
        return f"tabledb {getattr(self.module, '__version__', '?')}, connect(dir) with its defaults"


class SqliteSide:
    label = "sqlite3"

    def __init__(self):
        self.conn = None

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.conn = sqlite3.connect(os.path.join(path, "t.db"))
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        check(mode == "wal", f"sqlite3 refused WAL mode (journal_mode={mode})")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(SCHEMA)
        self.conn.commit()

    def ingest(self, table: pa.Table) -> None:
        columns = [table.column(c).to_pylist() for c in table.column_names]
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO t VALUES ({marks})", zip(*columns))
        self.conn.commit()

    def export(self) -> pa.Table:
        cur = self.conn.execute("SELECT * FROM t")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        columns = list(zip(*rows)) if rows else [()] * len(names)
        types = [pa.int64(), pa.string(), pa.float64(), pa.string()]
        return pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, types)], names=names)

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM t").fetchone()[0]

    def row(self, i: int):
        return self.conn.execute("SELECT * FROM t WHERE id = ?", (i,)).fetchone()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (Python sqlite3), journal_mode=WAL, synchronous=NORMAL"


class DuckdbSide:
    label = "duckdb"

    def __init__(self, module):
        self.duckdb = module
        self.conn = None

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.conn = self.duckdb.connect(os.path.join(path, "t.duckdb"))
        self.conn.execute(DUCK_SCHEMA)

    def ingest(self, table: pa.Table) -> None:
        self.conn.register("arrow_source", table)
        try:
            self.conn.execute("INSERT INTO t SELECT * FROM arrow_source")
        finally:
            self.conn.unregister("arrow_source")

    def export(self) -> pa.Table:
        return self.conn.sql("SELECT * FROM t").to_arrow_table()

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM t").fetchall()[0][0]

    def row(self, i: int):
        rows = self.conn.execute("SELECT * FROM t WHERE id = ?", [i]).fetchall()   # fetch to the end
        return rows[0] if rows else None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def describe(self) -> str:
        return f"DuckDB {self.duckdb.__version__}, its defaults (threads={os.cpu_count()} at most)"


# --- one run -------------------------------------------------------------------------

def entry(rows: int, seconds: float) -> dict:
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds > 0 else None}


def run_side(side, source: pa.Table, phases: list[str], root: str, seed: int, number: int) -> dict:
    result = {"phases": {}, "error": None}
    path = os.path.join(root, side.label)
    phase = "open"
    try:
        side.open(path)
        for phase in PHASES:
            if phase not in phases and not (phase == "ingest" and set(phases) - {"ingest"}):
                continue
            if phase == "export_scan" and not hasattr(side, "export_scan"):
                continue
            if phase == "ingest":
                with Timer() as t:
                    side.ingest(source)
                check(side.count() == source.num_rows, f"ingest: {side.count()} rows, expected {source.num_rows}")
                check_sample(side.row, source, seed, "ingest")
            else:
                with Timer() as t:
                    got = getattr(side, phase)()
                same_table(got, source, phase)
            if phase in phases:
                result["phases"][phase] = entry(source.num_rows, t.seconds)
                progress(side.label, f"run {number}: {phase:<12} {source.num_rows:>10,} rows {t.seconds:8.3f} s "
                                     f"{human_rate(source.num_rows / t.seconds):>12} rows/s")
            else:
                progress(side.label, f"run {number}: {phase} (setup, not reported) {t.seconds:.3f} s")
    except Exception as exc:  # noqa: BLE001 - reported with the figures gathered so far
        result["error"] = {"phase": phase, "type": type(exc).__name__, "message": str(exc),
                           "traceback": traceback.format_exc()}
        progress(side.label, f"FAILED in {phase}: {type(exc).__name__}: {exc}")
    finally:
        try:
            side.close()
        except Exception:  # noqa: BLE001
            pass
    return result


def run_once(sides, source, args, number: int) -> dict:
    root = tempfile.mkdtemp(prefix="bench-arrow-", dir=args.dir)
    try:
        return {side.label: run_side(side, source, args.phases, root, args.seed, number) for side in sides}
    finally:
        if args.keep:
            progress("bench", f"databases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --- the report ---------------------------------------------------------------------

def median_rate(runs: list[dict], label: str, phase: str):
    values = [r[label]["phases"][phase]["rows_per_s"] for r in runs
              if label in r and phase in r[label]["phases"]]
    return statistics.median(values) if values else None


def summarize(runs, labels, phases) -> dict:
    summary = {}
    for phase in phases:
        row = {label: median_rate(runs, label, phase) for label in labels}
        ours = row.get("tabledb")
        for other in ("sqlite3", "duckdb"):
            theirs = row.get(other)
            row[f"tabledb/{other}"] = ours / theirs if ours and theirs else None
        summary[phase] = row
    if "export_scan" in summary and "export" in phases:
        # the other sides have one export: compare tabledb's scan path against it
        for other in ("sqlite3", "duckdb"):
            theirs = summary["export"].get(other)
            ours = summary["export_scan"].get("tabledb")
            summary["export_scan"][f"tabledb/{other}"] = ours / theirs if ours and theirs else None
    return summary


def report(args, labels, summary, runs, sides, info) -> str:
    lines = [f"Arrow benchmark: n={args.n:,} rows, {len(runs)} run(s){', medians' if len(runs) > 1 else ''}; "
             f"rates are rows/s."]
    header = ["phase", "what", *[f"{label} rows/s" for label in labels]]
    ratios = [f"tabledb/{o}" for o in ("sqlite3", "duckdb") if "tabledb" in labels and o in labels]
    header += ratios
    rows = []
    for phase in args.phases:
        s = summary[phase]
        cells = []
        for label in labels:
            value = s.get(label)
            if value is None:
                errors = [r[label]["error"] for r in runs if r[label]["error"]]
                cells.append("FAILED" if any(e["phase"] == phase for e in errors) else "-")
            else:
                cells.append(human_rate(value))
        rows.append([phase, DESCRIPTIONS[phase], *cells,
                     *["-" if s.get(r) is None else f"{s[r]:.3g}" for r in ratios]])
    lines.append(render_table(header, rows, left=2))
    if "export_scan" in args.phases:
        lines.append("export_scan ratios compare tabledb's scan path with the other sides' export.")
    lines.append("")
    for side in sides:
        lines.append(f"{side.label}: {side.describe()}")
    for i, run in enumerate(runs, 1):
        for label in labels:
            err = run[label]["error"]
            if err:
                lines.append(f"{label}: run {i} FAILED in {err['phase']}: {err['type']}: {err['message']}")
    lines += ["", trailer(info)]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--n", type=int, default=1_000_000, help="rows in the table (default 1,000,000)")
    p.add_argument("--only", metavar="PHASE,...", default=",".join(PHASES),
                   help=f"comma list out of: {','.join(PHASES)} (default all; exports load the table untimed)")
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma list out of: {','.join(SIDES)} (default all)")
    p.add_argument("--repeat", type=int, default=1, help="run everything k times and report the medians")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dir", help="where the temporary databases go (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown:
        p.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    args.phases = [x for x in PHASES if x in phases]
    labels = [x.strip() for x in args.sides.split(",") if x.strip()]
    if not labels or any(x not in SIDES for x in labels):
        p.error(f"--sides takes some of {', '.join(SIDES)}")
    args.labels = [x for x in SIDES if x in labels]
    if args.n < 1 or args.repeat < 1:
        p.error("--n and --repeat must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sides = []
    for label in args.labels:
        if label == "tabledb":
            import tabledb
            sides.append(TabledbSide(tabledb))
        elif label == "sqlite3":
            sides.append(SqliteSide())
        else:
            try:
                import duckdb
            except ImportError:
                print("error: duckdb is not installed (pip install -e '.[bench]'); try --sides tabledb,sqlite3",
                      file=sys.stderr)
                return 2
            sides.append(DuckdbSide(duckdb))
    info = machine_info()
    with Timer() as t:
        source = make_source(args.n, args.seed)
    progress("bench", f"source table of {args.n:,} rows built in {t.seconds:.2f} s")
    runs = [run_once(sides, source, args, i + 1) for i in range(args.repeat)]
    summary = summarize(runs, args.labels, args.phases)
    print(report(args, args.labels, summary, runs, sides, info))
    if args.json:
        write_json(args.json, {"machine": info, "args": {k: v for k, v in vars(args).items()},
                               "sides": {side.label: side.describe() for side in sides},
                               "summary": summary, "runs": runs})
    return 1 if any(result["error"] for run in runs for result in run.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
