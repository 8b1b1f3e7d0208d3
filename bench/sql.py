"""SQL benchmark: tabledb against sqlite3 through DB-API, same workload, same process, same run.

    .venv/bin/python bench/sql.py --n 1000000 [--json out.json] [--repeat 3]
    .venv/bin/python bench/sql.py --n 20000 --only point,range      # some phases (the load runs untimed)
    .venv/bin/python bench/sql.py --n 100000 --sides sqlite3        # one side only

Both databases live on disk in one fresh temporary directory, and every phase
runs for tabledb and then for sqlite3, back to back, in this one process. The
table is ``t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)``; its
rows are generated on the fly from seeded arrays (nothing is stored, and the
bench holds about 13 bytes a row of its own): row ``i`` is
``(i, 'name-<i>', score[i], 'tag-<tag[i]>')`` with ``score`` uniform in
[0, 100) and ``tag`` one of 100 values. Phases, in the order they run:

    insert           ids 0..n-1 in key order (a bulk load), one executemany, one transaction
    point            --queries  SELECT * FROM t WHERE id = ?, random present ids, fetchone each
    range            --ranges   SELECT * FROM t WHERE id >= ? AND id < ? over 100 ids, fetchall
    count            SELECT count(*) FROM t WHERE score > 50 (a full scan; rate = rows scanned)
    groupby          SELECT tag, count(*), avg(score) FROM t GROUP BY tag (rate = rows scanned)
    update           executemany UPDATE t SET score = ? WHERE id = ? over 10% of the ids, random order, commit
    delete           DELETE FROM t WHERE id >= ? AND id < ? over 10% of the ids, one statement, commit
    insert_shuffled  as insert, ids in a seeded random order, into a fresh database (no target)
    autocommit       --syncs single-row INSERTs in autocommit mode, synced each, fresh database

Configurations: sqlite3 in WAL mode with synchronous=NORMAL and the legacy
implicit transactions (DML opens one, commit() ends it); tabledb from
``tabledb.connect(dir)`` with its defaults (``--tabledb-sync`` overrides). In
``autocommit`` sqlite3 runs with isolation_level=None and synchronous=FULL, an
fsync of the WAL per commit, and tabledb with ``connect(dir, autocommit=True)``
and its default (durable) sync. Timings of insert, update and delete include
the commit.

Every phase checks its answers against the generated data (rows found, values
of a sample, counts and averages, rows left after the delete, ...) and a wrong
answer fails that side's run: a broken engine cannot look fast. Rates are rows
a second (queries a second for point, and also reported for range); the
ratio is tabledb/sqlite3; the targets are the issue's.

Peak RSS is of the whole process, which holds both engines: before each side's
phase the kernel's high-water mark is reset (``/proc/self/clear_refs``), so a
side's figure is the highest the process reached while that side ran.
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
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Timer, current_rss_bytes, disk_usage, human_bytes, human_rate, machine_info, peak_rss_bytes,
    render_table, shuffled, trailer, write_json,
)

PHASES = ["insert", "point", "range", "count", "groupby", "update", "delete", "insert_shuffled", "autocommit"]
TABLE_PHASES = PHASES[:7]  # they share the bulk-loaded table; any of them needs "insert" to run first
DESCRIPTIONS = {
    "insert": "executemany, key order, 1 txn",
    "point": "SELECT by id, fetchone",
    "range": "SELECT 100-id range (rows fetched)",
    "count": "count(*) WHERE score > ? (rows scanned)",
    "groupby": "GROUP BY tag, count, avg (rows scanned)",
    "update": "executemany UPDATE 10% by id, 1 txn",
    "delete": "DELETE 10% id range, 1 stmt (rows deleted)",
    "insert_shuffled": "executemany, shuffled ids, 1 txn",
    "autocommit": "single-row INSERT, autocommit, synced",
}
TARGETS = {"insert": 0.2, "point": 0.3, "range": 0.3, "update": 0.2, "delete": 1.0, "autocommit": 0.8}

SCHEMA = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT)"
INSERT = "INSERT INTO t VALUES (?, ?, ?, ?)"
POINT = "SELECT * FROM t WHERE id = ?"
RANGE = "SELECT * FROM t WHERE id >= ? AND id < ?"
COUNT = "SELECT count(*) FROM t WHERE score > ?"
GROUPBY = "SELECT tag, count(*), avg(score) FROM t GROUP BY tag"
UPDATE = "UPDATE t SET score = ? WHERE id = ?"
DELETE = "DELETE FROM t WHERE id >= ? AND id < ?"
COUNT_RANGE = "SELECT count(*) FROM t WHERE id >= ? AND id < ?"
COUNT_ALL = "SELECT count(*) FROM t"

NAME_FORMAT = "name-%d"
TAGS = ["tag-%02d" % i for i in range(100)]
RANGE_LENGTH = 100
SCORE_THRESHOLD = 50.0
SAMPLE = 1000  # rows whose every column is checked after a load or an update
SCAN_ROWS_PER_MEASURE = 200_000  # count and groupby repeat their query until they have scanned about this many rows
MAX_SCAN_LOOPS = 10


class CheckError(AssertionError):
    """The engine gave a wrong answer; the run's figures for it are void."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckError(message)


# --- memory ---------------------------------------------------------------------

def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset() -> int:
    """VmHWM: the highest RSS since the last reset (or since the start); ru_maxrss where there is no /proc."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


class PeakRss:
    """Per-phase peaks (``start`` resets the high-water mark, ``peak`` reads it) and the process's overall peak."""

    def __init__(self):
        self.overall = 0

    def start(self) -> None:
        self.overall = max(self.overall, peak_rss_since_reset())
        reset_peak_rss()

    def peak(self) -> int:
        peak = peak_rss_since_reset()
        self.overall = max(self.overall, peak)
        return peak

    def overall_peak(self) -> int:
        return max(self.overall, peak_rss_since_reset())


PEAK_RSS = PeakRss()


# --- the generated data ----------------------------------------------------------

class Workload:
    """The data and the query parameters of one run, all drawn from ``seed``; the model the answers are checked against.

    ``rows(ids)`` yields the rows of ``ids`` through C-level ``zip``/``map``, so
    that executemany's parameter stream costs both engines the same and little.
    """

    def __init__(self, n: int, seed: int, queries: int, ranges: int, syncs: int):
        rng = random.Random(seed)
        self.n = n
        self.scores = array("d", (rng.random() * 100.0 for _ in range(n)))
        self.tags = array("B", rng.choices(range(len(TAGS)), k=n))
        self.point_ids = array("I", (rng.randrange(n) for _ in range(queries)))
        span = max(1, n - RANGE_LENGTH + 1)
        self.range_starts = array("I", (rng.randrange(span) for _ in range(ranges)))
        updates = n // 10
        self.update_ids = array("I", rng.sample(range(n), updates))
        self.update_scores = array("d", (rng.random() * 100.0 for _ in range(updates)))
        self.delete_width = max(1, n // 10)
        self.delete_lo = rng.randrange(n - self.delete_width + 1)
        self.sync_ids = array("I", rng.sample(range(n), min(n, syncs)))
        self.sample = rng.sample(range(n), min(n, SAMPLE))
        self.seed = seed
        self._scan_model = None

    def rows(self, ids=None):
        ids = range(self.n) if ids is None else ids
        return zip(ids, map(NAME_FORMAT.__mod__, ids), map(self.scores.__getitem__, ids),
                   map(TAGS.__getitem__, map(self.tags.__getitem__, ids)))

    def row(self, i: int) -> tuple:
        return (i, NAME_FORMAT % i, self.scores[i], TAGS[self.tags[i]])

    def scan_model(self) -> tuple[int, dict]:
        """(rows with score > SCORE_THRESHOLD, {tag: (count, sum of scores)}) of the loaded table."""
        if self._scan_model is None:
            above = sum(1 for s in self.scores if s > SCORE_THRESHOLD)
            counts, sums = [0] * len(TAGS), [0.0] * len(TAGS)
            for s, g in zip(self.scores, self.tags):
                counts[g] += 1
                sums[g] += s
            self._scan_model = (above, {TAGS[g]: (counts[g], sums[g]) for g in range(len(TAGS)) if counts[g]})
        return self._scan_model

    def apply_update(self) -> None:
        for i, s in zip(self.update_ids, self.update_scores):
            self.scores[i] = s
        self._scan_model = None


# --- the two sides -----------------------------------------------------------------
# A side only knows how to open a connection; every phase then speaks plain DB-API.

class SqliteSide:
    label = "sqlite3"

    def __init__(self, cache_mb: int | None):
        self.cache_mb = cache_mb
        self.settings = {}

    def connect(self, path: str, synced_autocommit: bool = False):
        os.makedirs(path, exist_ok=True)
        conn = sqlite3.connect(os.path.join(path, "t.db"), isolation_level=None if synced_autocommit else "DEFERRED")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        check(mode == "wal", f"sqlite3 refused WAL mode (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous={'FULL' if synced_autocommit else 'NORMAL'}")
        if self.cache_mb is not None:
            conn.execute(f"PRAGMA cache_size=-{self.cache_mb * 1024}")
        if not self.settings:
            self.settings = {"cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
                             "page_size": conn.execute("PRAGMA page_size").fetchone()[0]}
        return conn

    def describe(self) -> str:
        cache = self.settings.get("cache_size")
        cache = f"{-cache} KiB" if isinstance(cache, int) and cache < 0 else f"{cache} pages"
        return (f"SQLite {sqlite3.sqlite_version} (Python sqlite3), journal_mode=WAL, synchronous=NORMAL "
                f"(FULL and isolation_level=None in autocommit), page_size {self.settings.get('page_size')}, "
                f"cache_size {cache}")


class TabledbSide:
    label = "tabledb"

    def __init__(self, module, sync: str | None):
        self.module = module
        self.options = {} if sync is None else {"sync": sync}

    def connect(self, path: str, synced_autocommit: bool = False):
        if synced_autocommit:
            return self.module.connect(path, autocommit=True)
        return self.module.connect(path, **self.options)

    def describe(self) -> str:
        version = getattr(self.module, "__version__", None)
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "defaults"
        return (f"version {version or '?'}, connect(dir) with {options}; "
                "connect(dir, autocommit=True) with the default sync in autocommit")


def load_tabledb():
    """The tabledb module when it has ``connect``; otherwise a reason (str) why not."""
    try:
        import tabledb
    except ImportError as exc:
        return f"tabledb is not importable ({exc})"
    if not callable(getattr(tabledb, "connect", None)):
        return "tabledb.connect does not exist yet"
    return tabledb


class SideRun:
    """One side's state through one run: its open connection, its figures, its first error."""

    def __init__(self, side, root: str):
        self.side = side
        self.label = side.label
        self.root = os.path.join(root, side.label)
        self.conn = self.cur = None
        self.result = {"phases": {}, "disk": {}, "rss": {}, "error": None}

    def open(self, name: str, synced_autocommit: bool = False) -> str:
        path = os.path.join(self.root, name)
        self.conn = self.side.connect(path, synced_autocommit)
        self.cur = self.conn.cursor()
        return path

    def close(self) -> None:
        conn, self.conn, self.cur = self.conn, None, None
        if conn is not None:
            conn.close()

    def fail(self, phase: str, exc: BaseException) -> None:
        self.result["error"] = {"phase": phase, "type": type(exc).__name__, "message": str(exc),
                                "traceback": traceback.format_exc()}
        progress(self.label, f"FAILED in {phase}: {type(exc).__name__}: {exc}")
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            self.conn = self.cur = None


def progress(label: str, message: str) -> None:
    print(f"[{label}] {message}", file=sys.stderr, flush=True)


# --- phases ---------------------------------------------------------------------------
# Each takes a SideRun and the Workload, times only the statements (and their
# commit), checks the answers outside the timing, and returns its entry.

def entry(rows: int, seconds: float, **extra) -> dict:
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds > 0 else None, **extra}


def check_rowcount(what: str, rowcount, expected: int) -> None:
    # PEP 249 allows -1 ("not determined"); any other figure must be right.
    check(rowcount in (expected, -1), f"{what}: rowcount {rowcount}, expected {expected}")


def check_sample(run: SideRun, wl: Workload, ids, what: str) -> None:
    execute = run.cur.execute
    for i in ids:
        got = execute(POINT, (i,)).fetchone()
        got = tuple(got) if got is not None else None
        check(got == wl.row(i), f"{what}: id {i} reads back as {got!r}, expected {wl.row(i)!r}")


def create_and_load(run: SideRun, wl: Workload, name: str, ids=None) -> dict:
    path = run.open(name)
    run.cur.execute(SCHEMA)
    run.conn.commit()
    with Timer() as t:
        run.cur.executemany(INSERT, wl.rows(ids))
        run.conn.commit()
    check_rowcount(f"{name}: executemany INSERT", run.cur.rowcount, wl.n)
    run.result["disk"][f"{name}_after_load"] = disk_usage(path)
    check_sample(run, wl, wl.sample, name)
    return entry(wl.n, t.seconds)


def phase_insert(run: SideRun, wl: Workload) -> dict:
    return create_and_load(run, wl, "main")


def phase_point(run: SideRun, wl: Workload) -> dict:
    execute, sql, found = run.cur.execute, POINT, 0
    with Timer() as t:
        for i in wl.point_ids:
            if execute(sql, (i,)).fetchone() is not None:
                found += 1
    check(found == len(wl.point_ids), f"point: found {found} of {len(wl.point_ids)} present ids")
    check_sample(run, wl, wl.point_ids[:SAMPLE], "point")
    return entry(found, t.seconds, queries=len(wl.point_ids), queries_per_s=len(wl.point_ids) / t.seconds)


def phase_range(run: SideRun, wl: Workload) -> dict:
    execute, sql, rows, length = run.cur.execute, RANGE, 0, RANGE_LENGTH
    with Timer() as t:
        for s in wl.range_starts:
            rows += len(execute(sql, (s, s + length)).fetchall())
    expected = sum(min(wl.n, s + length) - s for s in wl.range_starts)
    check(rows == expected, f"range: fetched {rows} rows, expected {expected}")
    for s in wl.range_starts[:20]:
        got = sorted(tuple(r) for r in execute(sql, (s, s + length)).fetchall())
        want = [wl.row(i) for i in range(s, min(wl.n, s + length))]
        check(got == want, f"range: [{s}, {s + length}) returned other rows than those inserted")
    queries = len(wl.range_starts)
    return entry(rows, t.seconds, queries=queries, queries_per_s=queries / t.seconds)


def scan_loops(n: int) -> int:
    return max(1, min(MAX_SCAN_LOOPS, SCAN_ROWS_PER_MEASURE // max(1, n)))


def phase_count(run: SideRun, wl: Workload) -> dict:
    execute, sql, threshold, answers = run.cur.execute, COUNT, (SCORE_THRESHOLD,), []
    loops = scan_loops(wl.n)
    with Timer() as t:
        for _ in range(loops):
            answers.append(execute(sql, threshold).fetchone()[0])
    expected = wl.scan_model()[0]
    check(all(a == expected for a in answers), f"count: {answers[0]} rows with score > {SCORE_THRESHOLD}, "
                                                f"expected {expected}")
    return entry(wl.n * loops, t.seconds, queries=loops, matched=expected)


def phase_groupby(run: SideRun, wl: Workload) -> dict:
    execute, sql, answers = run.cur.execute, GROUPBY, []
    loops = scan_loops(wl.n)
    with Timer() as t:
        for _ in range(loops):
            answers.append(execute(sql).fetchall())
    expected = wl.scan_model()[1]
    for got in answers:
        groups = {tag: (count, avg) for tag, count, avg in got}
        check(len(groups) == len(got) == len(expected) and groups.keys() == expected.keys(),
              f"groupby: {len(got)} groups, expected {len(expected)}")
        for tag, (count, total) in expected.items():
            g_count, g_avg = groups[tag]
            check(g_count == count and abs(g_avg - total / count) <= 1e-9 * max(1.0, abs(total / count)),
                  f"groupby: tag {tag!r} gives count {g_count}, avg {g_avg!r}; expected {count}, {total / count!r}")
    return entry(wl.n * loops, t.seconds, queries=loops, groups=len(expected))


def phase_update(run: SideRun, wl: Workload) -> dict:
    with Timer() as t:
        run.cur.executemany(UPDATE, zip(wl.update_scores, wl.update_ids))
        run.conn.commit()
    check_rowcount("update: executemany UPDATE", run.cur.rowcount, len(wl.update_ids))
    execute = run.cur.execute
    for i, s in zip(wl.update_ids[:SAMPLE], wl.update_scores[:SAMPLE]):
        got = execute(POINT, (i,)).fetchone()
        want = (i, NAME_FORMAT % i, s, TAGS[wl.tags[i]])
        check(got is not None and tuple(got) == want, f"update: id {i} reads back as {got!r}, expected {want!r}")
    return entry(len(wl.update_ids), t.seconds)


def phase_delete(run: SideRun, wl: Workload) -> dict:
    lo, width, n = wl.delete_lo, wl.delete_width, wl.n
    hi = lo + width
    with Timer() as t:
        run.cur.execute(DELETE, (lo, hi))
        run.conn.commit()
    check_rowcount("delete", run.cur.rowcount, width)
    execute = run.cur.execute
    left = execute(COUNT_RANGE, (lo, hi)).fetchone()[0]
    check(left == 0, f"delete: {left} rows of [{lo}, {hi}) are still there")
    around = execute(COUNT_RANGE, (lo - width, hi + width)).fetchone()[0]
    expected = min(lo, width) + min(n - hi, width)
    check(around == expected, f"delete: {around} rows left in [{lo - width}, {hi + width}), expected {expected} "
                              "(rows next to the range went too, or came back)")
    for i in (lo - 1, hi):
        if 0 <= i < n:
            got = execute(POINT, (i,)).fetchone()
            check(got is not None and got[0] == i, f"delete: id {i}, just outside the range, is gone")
    return entry(width, t.seconds)


def phase_insert_shuffled(run: SideRun, wl: Workload) -> dict:
    result = create_and_load(run, wl, "shuffled", shuffled(wl.n, wl.seed + 1))
    run.close()
    shutil.rmtree(os.path.join(run.root, "shuffled"), ignore_errors=True)
    return result


def phase_autocommit(run: SideRun, wl: Workload) -> dict:
    path = os.path.join(run.root, "autocommit")
    setup = run.side.connect(path)  # the table is created in the usual mode, then reopened in autocommit mode
    setup.cursor().execute(SCHEMA)
    setup.commit()
    setup.close()
    run.open("autocommit", synced_autocommit=True)
    execute, sql = run.cur.execute, INSERT
    rows = list(wl.rows(wl.sync_ids))
    with Timer() as t:
        for row in rows:
            execute(sql, row)
    run.close()
    run.open("autocommit")  # a new connection sees only what was committed
    count = run.cur.execute(COUNT_ALL).fetchone()[0]
    check(count == len(rows), f"autocommit: {count} rows after {len(rows)} autocommitted INSERTs")
    check_sample(run, wl, wl.sync_ids[:SAMPLE], "autocommit")
    run.close()
    run.result["disk"]["autocommit"] = disk_usage(path)
    shutil.rmtree(path, ignore_errors=True)
    return entry(len(rows), t.seconds)


PHASE_FUNCTIONS = {
    "insert": phase_insert, "point": phase_point, "range": phase_range, "count": phase_count,
    "groupby": phase_groupby, "update": phase_update, "delete": phase_delete,
    "insert_shuffled": phase_insert_shuffled, "autocommit": phase_autocommit,
}


# --- one run: every phase, side after side ------------------------------------------------

def run_once(sides: list, args, phases: list[str], number: int) -> dict:
    wl = Workload(args.n, args.seed, args.queries, args.ranges, args.syncs)
    root = tempfile.mkdtemp(prefix="bench-sql-", dir=args.dir)
    runs = [SideRun(side, root) for side in sides]
    needed = set(phases)
    if needed & set(TABLE_PHASES):
        needed.add("insert")
    last_table_phase = max((PHASES.index(p) for p in needed if p in TABLE_PHASES), default=-1)
    try:
        for index, phase in enumerate(PHASES):
            if phase not in needed:
                continue
            for run in runs:
                if run.result["error"]:
                    continue
                PEAK_RSS.start()
                rss_before = current_rss_bytes()
                try:
                    result = PHASE_FUNCTIONS[phase](run, wl)
                except Exception as exc:  # noqa: BLE001 - report it with the figures gathered so far
                    run.fail(phase, exc)
                    continue
                finally:
                    run.result["rss"][phase] = {"before": rss_before, "peak": PEAK_RSS.peak()}
                if phase in phases:
                    run.result["phases"][phase] = result
                    progress(run.label, f"run {number}: {phase:<15} {result['rows']:>10,} rows "
                                        f"{result['seconds']:8.3f} s {human_rate(result['rows_per_s']):>12} rows/s")
                else:
                    progress(run.label, f"run {number}: {phase} (setup, not reported) {result['seconds']:.3f} s")
            if phase == "update":
                wl.apply_update()
            if index == last_table_phase:
                for run in runs:
                    if run.conn is not None:
                        run.close()
                        run.result["disk"]["main_at_end"] = disk_usage(os.path.join(run.root, "main"))
    finally:
        for run in runs:
            if run.conn is not None:
                try:
                    run.close()
                except Exception:  # noqa: BLE001
                    pass
        if args.keep:
            progress("bench", f"databases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for run in runs:
        run.result["peak_rss"] = max((r["peak"] for r in run.result["rss"].values()), default=None)
    return {run.label: run.result for run in runs}


# --- the report ---------------------------------------------------------------------------

def median_of(runs: list[dict], label: str, phase: str, field: str):
    values = [r[label]["phases"][phase][field] for r in runs
              if label in r and phase in r[label]["phases"] and r[label]["phases"][phase].get(field) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], labels: list[str], phases: list[str]) -> dict:
    summary = {}
    for phase in phases:
        row = {"target": TARGETS.get(phase)}
        for label in labels:
            row[label] = {"rows_per_s": median_of(runs, label, phase, "rows_per_s"),
                          "queries_per_s": median_of(runs, label, phase, "queries_per_s"),
                          "rows": median_of(runs, label, phase, "rows")}
        ours = row.get("tabledb", {}).get("rows_per_s")
        theirs = row.get("sqlite3", {}).get("rows_per_s")
        row["ratio"] = ours / theirs if ours and theirs else None
        row["pass"] = None if row["ratio"] is None or row["target"] is None else row["ratio"] >= row["target"]
        summary[phase] = row
    return summary


def cell_rate(runs, label, phase, summary_row) -> str:
    if label not in runs[0]:
        return "not run"
    value = summary_row[label]["rows_per_s"]
    if value is not None:
        return human_rate(value)
    errors = [r[label]["error"] for r in runs if r[label]["error"]]
    return "FAILED" if any(e["phase"] == phase for e in errors) else "not run" if errors else "-"


def report(args, labels, phases, runs, summary, sides, info, note) -> str:
    order = "key order" + (", and shuffled in insert_shuffled" if "insert_shuffled" in phases else "")
    lines = [f"SQL benchmark: n={args.n:,} rows (ids 0..n-1, loaded in {order}), "
             f"{len(runs)} run(s){', medians' if len(runs) > 1 else ''}; rates are rows/s."]
    rows = []
    for phase in phases:
        s = summary[phase]
        count = next((s[label]["rows"] for label in labels if s[label]["rows"]), None)
        target = s["target"]
        verdict = "-" if s["pass"] is None else "pass" if s["pass"] else "FAIL"
        rows.append([phase, DESCRIPTIONS[phase], f"{count:,.0f}" if count else "-",
                     cell_rate(runs, "tabledb", phase, s) if "tabledb" in labels else "not run",
                     cell_rate(runs, "sqlite3", phase, s) if "sqlite3" in labels else "not run",
                     "-" if s["ratio"] is None else f"{s['ratio']:.3g}",
                     "-" if target is None else f">= {target:g}", verdict])
    lines.append(render_table(["phase", "what", "rows", "tabledb rows/s", "sqlite3 rows/s",
                               "tabledb/sqlite3", "target", "pass/fail"], rows, left=2))

    notes = []
    for phase in ("point", "range"):
        if phase in phases:
            qps = [f"{label} {human_rate(summary[phase][label]['queries_per_s'])}" for label in labels]
            notes.append(f"{phase}: queries/s " + ", ".join(qps))
    if notes:
        lines += [""] + notes

    last = runs[-1]

    def get(label, *path):
        value = last.get(label)
        for p in path:
            if not isinstance(value, dict) or p not in value:
                return None
            value = value[p]
        return value

    resource_rows = []
    for what, path in [("disk, main table after load (committed, open)", ("disk", "main_after_load", "total")),
                       ("disk, main table at end (closed)", ("disk", "main_at_end", "total")),
                       ("disk, shuffled load (committed, open)", ("disk", "shuffled_after_load", "total")),
                       ("disk, autocommit table (closed)", ("disk", "autocommit", "total")),
                       ("peak RSS of the process while it ran", ("peak_rss",))]:
        values = [get(label, *path) for label in labels]
        if all(v is None for v in values):
            continue
        a, b = (get("tabledb", *path), get("sqlite3", *path))
        resource_rows.append([what, *(human_bytes(v) for v in values),
                              *([f"{a / b:.3g}" if a and b else "-"] if len(labels) == 2 else [])])
    if resource_rows:
        header = ["last run", *labels, *(["tabledb/sqlite3"] if len(labels) == 2 else [])]
        lines += ["", render_table(header, resource_rows)]
    lines.append(f"process peak RSS overall {human_bytes(PEAK_RSS.overall_peak())} (both engines, the bench's "
                 f"arrays and the interpreter)")

    lines.append("")
    for side in sides:
        lines.append(f"{side.label}: {side.describe()}")
    for i, run in enumerate(runs, 1):
        for label in labels:
            err = run[label]["error"]
            if err:
                lines.append(f"{label}: run {i} FAILED in {err['phase']}: {err['type']}: {err['message']}")
    if note:
        lines.append(f"NOTE: {note}")
    lines += ["", trailer(info)]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--n", type=int, default=1_000_000, help="rows in the table (default 1,000,000)")
    p.add_argument("--only", metavar="PHASE,...", default=",".join(PHASES),
                   help=f"comma list out of: {','.join(PHASES)} (default all)")
    p.add_argument("--sides", default="tabledb,sqlite3", help="comma list out of: tabledb,sqlite3 (default both)")
    p.add_argument("--repeat", type=int, default=1, help="run everything k times, fresh databases each time, "
                                                         "and report the medians (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--queries", type=int, help="point selects (default min(n, 100,000))")
    p.add_argument("--ranges", type=int, help="100-row range selects (default min(10,000, max(1, n/10)))")
    p.add_argument("--syncs", type=int, help="autocommitted single-row INSERTs (default min(n, 5,000))")
    p.add_argument("--tabledb-sync", choices=["group", "commit", "off"],
                   help="sync= for tabledb's main connection (default: the library's default)")
    p.add_argument("--sqlite-cache-mb", type=int, help="PRAGMA cache_size for sqlite3 (default: SQLite's, 2 MiB)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dir", help="where the temporary databases go (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown:
        p.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    args.phases = [x for x in PHASES if x in phases]  # always in run order
    labels = [x.strip() for x in args.sides.split(",") if x.strip()]
    if not labels or any(x not in ("tabledb", "sqlite3") for x in labels):
        p.error("--sides takes tabledb, sqlite3 or both")
    args.labels = [x for x in ("tabledb", "sqlite3") if x in labels]
    if args.n < 1 or args.repeat < 1:
        p.error("--n and --repeat must be positive")
    args.queries = min(args.n, 100_000) if args.queries is None else args.queries
    args.ranges = min(10_000, max(1, args.n // 10)) if args.ranges is None else args.ranges
    args.syncs = min(args.n, 5_000) if args.syncs is None else min(args.n, args.syncs)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    note = None
    sides = []
    if "tabledb" in args.labels:
        module = load_tabledb()
        if isinstance(module, str):
            args.labels.remove("tabledb")
            if not args.labels:
                print(f"error: {module}; try --sides sqlite3", file=sys.stderr)
                return 2
            note = f"{module}: ran sqlite3 only."
            print(f"{note} tabledb's half runs unchanged once tabledb.connect lands.", file=sys.stderr)
        else:
            sides.append(TabledbSide(module, args.tabledb_sync))
    if "sqlite3" in args.labels:
        sides.append(SqliteSide(args.sqlite_cache_mb))
    info = machine_info()
    info["rss_at_start"] = current_rss_bytes()
    runs = [run_once(sides, args, args.phases, i + 1) for i in range(args.repeat)]
    summary = summarize(runs, args.labels, args.phases)
    print(report(args, args.labels, args.phases, runs, summary, sides, info, note))
    if args.json:
        write_json(args.json, {
            "machine": info,
            "args": {k: v for k, v in vars(args).items() if k not in ("phases", "labels")},
            "phases": args.phases, "sides": {side.label: side.describe() for side in sides},
            "targets": TARGETS, "summary": summary, "runs": runs, "note": note,
            "process_peak_rss": PEAK_RSS.overall_peak(),
        })
    return 1 if any(result["error"] for run in runs for result in run.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
