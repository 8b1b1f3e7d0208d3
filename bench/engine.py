"""Storage engine benchmark: tabledb's LSM engine against RocksDB (via rocksdict), same workloads, same run.

    .venv/bin/python bench/engine.py --n 1000000 [--json out.json]
    .venv/bin/python bench/engine.py --n 20000 --engine stub        # the script itself, without our engine
    .venv/bin/python bench/engine.py --n 1000000 --only rocksdb     # one side only
    .venv/bin/python bench/engine.py --fill-10m                     # 10M random puts into ours; peak RSS

Each engine runs in its own child process (this script with a hidden
``--_child`` flag), so its peak RSS (``ru_maxrss``) is its own, and in its own
fresh temporary directory. 16-byte keys, ``--value-size`` byte values, both
generated on the fly (see bench/common.py). Workloads, in the order they run:

    fillseq      n puts in key order, fresh database
    fillbatch    n puts in random order, WriteBatch of 1,000 per write, fresh database
    fillrandom   n puts in random order, fresh database; this one is kept for the reads
      -> flush both, then compact_range over everything on both: the reads below
         measure the steady state "after full compaction"
    readrandom   --reads gets of present keys, random order
    readmissing  --reads gets of absent keys (they sort between present keys)
    seekscan     --seeks times: seek to a random present key, take the next 100 entries
    scanfull     iterate the whole database
    deleterange  delete_range over 10% of the key space, then get every key of that
                 range (ops = keys read back; time = delete_range + the gets)
    fillsync     --syncs puts with sync=True (an fsync each), fresh database

Every workload checks its answers (keys found, values of a sample, 100 items a
scan, ...) and a wrong answer fails the run: a broken engine cannot look fast.

Configuration kept comparable: write buffer (memtable) --memtable-mb on both;
no compression; 4 KiB blocks; 10-bit bloom filters; 32 MiB block cache;
500 open files; WAL on; no fsync per write except in fillsync.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    KEY_FORMAT, VALUE_POOL_BYTES, VALUE_STRIDE, Timer, Values, affine_permutation, current_rss_bytes,
    disk_usage, human_bytes, human_rate, key, machine_info, peak_rss_bytes, render_table,
    shuffled, trailer, write_json,
)

WORKLOADS = ["fillseq", "fillrandom", "fillbatch", "readrandom", "readmissing", "seekscan",
             "scanfull", "deleterange", "fillsync"]
FILLS = ["fillseq", "fillbatch", "fillrandom"]  # run order; fillrandom's database serves the reads
READS = ["readrandom", "readmissing", "seekscan", "scanfull", "deleterange"]  # run order; deleterange mutates
DESCRIPTIONS = {
    "fillseq": "puts, key order",
    "fillrandom": "puts, random order",
    "fillbatch": "puts in batches of 1,000",
    "readrandom": "gets, present keys",
    "readmissing": "gets, absent keys",
    "seekscan": "seek + next 100 (op = seek)",
    "scanfull": "full scan (op = entry)",
    "deleterange": "delete_range 10% + get each",
    "fillsync": "puts, fsync each",
}
BATCH_SIZE = 1000
SCAN_LENGTH = 100
SAMPLE = 1000  # keys whose values are checked exactly after each fill and after readrandom
BLOCK_CACHE_BYTES = 32 << 20
BLOCK_SIZE = 4096
BLOOM_BITS_PER_KEY = 10
MAX_OPEN_FILES = 500


class CheckError(AssertionError):
    """The engine gave a wrong answer; the run's figures for it are void."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckError(message)


# --- the two sides ------------------------------------------------------------
# Each side exposes the engine's own bound methods for the hot loops, so the
# benchmark adds no wrapper call to the per-operation cost of either engine.

class OurSide:
    """tabledb's engine (``--engine tabledb``), the in-memory reference (``memory``) or the bench's stand-in (``stub``)."""

    def __init__(self, engine: str, memtable_bytes: int):
        self.label = engine
        self.engine_cls, self.batch_cls = load_our_engine(engine)
        self.options = dict(sync_mode="off", memtable_bytes=memtable_bytes, block_cache_bytes=BLOCK_CACHE_BYTES,
                            block_size=BLOCK_SIZE, bloom_bits_per_key=BLOOM_BITS_PER_KEY, compression=None,
                            max_open_files=MAX_OPEN_FILES)

    def describe(self) -> dict:
        return {"engine": f"{self.engine_cls.__module__}.{self.engine_cls.__qualname__}",
                "options": dict(self.options)}

    def open(self, path: str) -> None:
        db = self.db = self.engine_cls.open(path, create=True, **self.options)
        self.put, self.get, self.write, self.delete_range = db.put, db.get, db.write, db.delete_range
        self.new_batch = self.batch_cls
        self.put_sync = functools.partial(db.put, sync=True)
        self.scan_all = db.scan
        self.scan_from = lambda start: db.scan(start, None)

    def flush(self) -> None:
        self.db.flush()

    def compact(self) -> None:
        self.db.compact_range()

    def close(self) -> None:
        self.db.close()


class RocksSide:
    """RocksDB through rocksdict, in raw mode (plain bytes in, bytes out; the default mode pickles)."""

    label = "rocksdb"

    def __init__(self, memtable_bytes: int):
        import rocksdict
        self.rocksdict = rocksdict
        self.memtable_bytes = memtable_bytes
        self.version = None

    def describe(self) -> dict:
        from importlib.metadata import version
        return {"engine": f"rocksdict {version('rocksdict')}, RocksDB {self.version or '?'}",
                "options": {"raw_mode": True, "create_if_missing": True, "write_buffer_size": self.memtable_bytes,
                            "compression": "none", "block_size": BLOCK_SIZE,
                            "bloom_filter_bits_per_key": BLOOM_BITS_PER_KEY,
                            "block_cache": BLOCK_CACHE_BYTES, "max_open_files": MAX_OPEN_FILES,
                            "WriteOptions.sync": "False (True in fillsync)", "WAL": "on"}}

    def open(self, path: str) -> None:
        r = self.rocksdict
        options = r.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(self.memtable_bytes)
        options.set_compression_type(r.DBCompressionType.none())
        options.set_max_open_files(MAX_OPEN_FILES)
        table = r.BlockBasedOptions()
        table.set_block_size(BLOCK_SIZE)
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
        table.set_block_cache(r.Cache(BLOCK_CACHE_BYTES))
        options.set_block_based_table_factory(table)
        db = self.db = r.Rdict(path, options)
        plain = r.WriteOptions()
        plain.sync = False
        db.set_write_options(plain)
        synced = r.WriteOptions()
        synced.sync = True
        self.put, self.get, self.write, self.delete_range = db.put, db.get, db.write, db.delete_range
        self.new_batch = functools.partial(r.WriteBatch, raw_mode=True)  # a non-raw batch is refused by a raw db
        self.put_sync = lambda k, v: db.put(k, v, synced)
        self.scan_all = db.items
        self.scan_from = lambda start: db.items(from_key=start)
        if self.version is None:
            self.version = rocksdb_version(path)

    def flush(self) -> None:
        self.db.flush()

    def compact(self) -> None:
        self.db.compact_range(None, None)

    def close(self) -> None:
        self.db.close()


def rocksdb_version(path: str) -> str | None:
    """RocksDB writes its version into the info LOG of every database it opens."""
    try:
        with open(os.path.join(path, "LOG"), errors="replace") as f:
            for line in islice(f, 50):
                if "RocksDB version:" in line:
                    return line.rsplit(":", 1)[1].strip()
    except OSError:
        pass
    return None


def load_our_engine(engine: str):
    """(engine class, write batch class) for ``--engine``; raises ImportError with advice when it is not there."""
    if engine == "tabledb":
        try:
            from tabledb.storage import Engine, WriteBatch
        except ImportError as exc:
            raise ImportError(f"tabledb.storage.Engine is not importable ({exc}); "
                              "try --engine memory, --engine stub or --only rocksdb") from None
        return Engine, WriteBatch
    from tabledb.storage.batch import WriteBatch
    if engine == "memory":
        try:
            from tabledb.storage.memory import MemoryEngine
        except ImportError as exc:
            raise ImportError(f"tabledb.storage.memory.MemoryEngine is not importable ({exc}); "
                              "try --engine stub") from None
        return MemoryEngine, WriteBatch
    if engine == "stub":
        return StubEngine, WriteBatch
    raise ValueError(f"unknown engine {engine!r}")


class StubEngine:
    """A stand-in with the slice of the engine API the benchmark uses: a SortedDict, no files.

    Only there to exercise this script before the real engine lands; its
    figures say nothing about tabledb.
    """

    def __init__(self):
        from sortedcontainers import SortedDict
        self.data = SortedDict()

    @classmethod
    def open(cls, path, create=False, **options) -> "StubEngine":
        return cls()

    def put(self, key, value, cf=None, sync=None) -> None:
        self.data[bytes(key)] = bytes(value)

    def get(self, key, cf=None, snapshot=None):
        return self.data.get(key)

    def delete_range(self, start, end, cf=None, sync=None) -> None:
        data = self.data
        for k in list(data.irange(start, end, inclusive=(True, False))):
            del data[k]

    def write(self, batch, sync=None) -> None:
        from tabledb.storage.batch import KIND_DELETE, KIND_PUT
        for kind, _cf, k, v in batch.ops:
            if kind == KIND_PUT:
                self.data[k] = v
            elif kind == KIND_DELETE:
                self.data.pop(k, None)
            else:
                self.delete_range(k, v)

    def scan(self, start=None, end=None, cf=None, snapshot=None, reverse=False):
        data = self.data
        for k in data.irange(start, end, inclusive=(True, False)):
            yield k, data[k]

    def flush(self, cf=None, wait=True) -> None:
        pass

    def compact_range(self, start=None, end=None, cf=None) -> None:
        pass

    def close(self) -> None:
        self.data = None


# --- workloads ------------------------------------------------------------------
# Hot loops inline common.Values.of (offset = i * VALUE_STRIDE % VALUE_POOL_BYTES)
# and common.key (KEY_FORMAT % (i << 1)) to keep the benchmark's own cost per
# operation small next to the engines'.

def fill_sequential(side, n: int, values: Values) -> float:
    put, pool, size, fmt = side.put, values.pool, values.size, KEY_FORMAT
    with Timer() as t:
        for i in range(n):
            o = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
            put(fmt % (i << 1), pool[o:o + size])
    return t.seconds


def fill_random(side, order, values: Values) -> float:
    put, pool, size, fmt = side.put, values.pool, values.size, KEY_FORMAT
    with Timer() as t:
        for i in order:
            o = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
            put(fmt % (i << 1), pool[o:o + size])
    return t.seconds


def fill_batches(side, order, values: Values) -> float:
    new_batch, write, pool, size, fmt = side.new_batch, side.write, values.pool, values.size, KEY_FORMAT
    with Timer() as t:
        for first in range(0, len(order), BATCH_SIZE):
            batch = new_batch()
            bput = batch.put
            for i in order[first:first + BATCH_SIZE]:
                o = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
                bput(fmt % (i << 1), pool[o:o + size])
            write(batch)
    return t.seconds


def verify_sample(side, indices, values: Values, what: str) -> None:
    get = side.get
    for i in indices:
        got = get(key(i))
        check(got == values.of(i), f"{what}: get({key(i)!r}) returned {got[:20] if got else got!r}..., "
                                   f"expected the value written")


def read_present(side, order, reads: int) -> dict:
    get, fmt, found = side.get, KEY_FORMAT, 0
    with Timer() as t:
        for i in order[:reads]:
            if get(fmt % (i << 1)) is not None:
                found += 1
    check(found == reads, f"readrandom found {found} of {reads} present keys")
    return {"ops": reads, "seconds": t.seconds}


def read_missing(side, order, reads: int) -> dict:
    get, fmt, found = side.get, KEY_FORMAT, 0
    with Timer() as t:
        for i in order[:reads]:
            if get(fmt % ((i << 1) | 1)) is not None:
                found += 1
    check(found == 0, f"readmissing found {found} of {reads} absent keys")
    return {"ops": reads, "seconds": t.seconds}


def seek_scan(side, starts) -> dict:
    scan_from, fmt, bad = side.scan_from, KEY_FORMAT, []
    with Timer() as t:
        for s in starts:
            first = fmt % (s << 1)
            items = list(islice(scan_from(first), SCAN_LENGTH))
            if (len(items) != SCAN_LENGTH or items[0][0] != first
                    or items[-1][0] != fmt % ((s + SCAN_LENGTH - 1) << 1)):
                bad.append((s, len(items)))
    check(not bad, f"seekscan: {len(bad)} of {len(starts)} scans did not return the {SCAN_LENGTH} keys "
                   f"after their start (first bad: start index {bad[0][0]}, {bad[0][1]} items)" if bad else "")
    return {"ops": len(starts), "seconds": t.seconds, "entries": len(starts) * SCAN_LENGTH}


def scan_full(side, n: int) -> dict:
    count, k = 0, None
    with Timer() as t:
        for count, (k, _v) in enumerate(side.scan_all(), 1):
            pass
    check(count == n, f"scanfull returned {count} entries, expected {n}")
    check(k == key(n - 1), f"scanfull ended at {k!r}, expected {key(n - 1)!r}")
    first = next(iter(side.scan_all()))[0]
    check(first == key(0), f"scanfull started at {first!r}, expected {key(0)!r}")
    return {"ops": count, "seconds": t.seconds}


def delete_range_then_read(side, n: int, seed: int) -> dict:
    width = max(1, n // 10)
    lo = random.Random(seed).randrange(0, n - width + 1)
    hi = lo + width
    start, end = key(lo), key(hi)
    get, fmt, found = side.get, KEY_FORMAT, 0
    order = shuffled(width, seed)
    with Timer() as t_delete:
        side.delete_range(start, end)
    with Timer() as t_read:
        for j in order:
            if get(fmt % ((lo + j) << 1)) is not None:
                found += 1
    check(found == 0, f"deleterange: {found} of {width} keys in [{start!r}, {end!r}) still readable")
    with Timer() as t_seek:
        after = next(iter(side.scan_from(start)), None)
    expected = key(hi) if hi < n else None
    check((after[0] if after else None) == expected,
          f"deleterange: a scan from {start!r} starts at {after[0] if after else None!r}, expected {expected!r}")
    if lo > 0:
        check(get(key(lo - 1)) is not None, f"deleterange also deleted {key(lo - 1)!r}, before the range")
    return {"ops": width, "seconds": t_delete.seconds + t_read.seconds,
            "delete_range_seconds": t_delete.seconds, "seek_past_range_seconds": t_seek.seconds}


def fill_synced(side, indices, values: Values) -> dict:
    put_sync, pool, size, fmt = side.put_sync, values.pool, values.size, KEY_FORMAT
    with Timer() as t:
        for i in indices:
            o = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
            put_sync(fmt % (i << 1), pool[o:o + size])
    verify_sample(side, indices, values, "fillsync")
    return {"ops": len(indices), "seconds": t.seconds}


# --- one side's run, in its own process ---------------------------------------------

def progress(label: str, message: str) -> None:
    print(f"[{label}] {message}", file=sys.stderr, flush=True)


def close_quietly(side) -> None:
    """After a failure: release the database if one is open, so its directory can go."""
    db = getattr(side, "db", None)
    if db is not None:
        try:
            db.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass


def run_side(side, args, workloads: list[str]) -> dict:
    n, seed = args.n, args.seed
    values = Values(args.value_size, seed)
    result = {"label": side.label, "workloads": {}, "disk": {}, "phases": {}, "error": None}
    root = tempfile.mkdtemp(prefix=f"bench-engine-{side.label}-", dir=args.dir)
    result["dir"] = root
    fill_order = shuffled(n, seed + 1)
    result["rss_baseline"] = current_rss_bytes()  # interpreter, imports and the bench's own arrays
    current = None

    def discard(path):
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)

    def record(name, entry):
        entry["ops_per_s"] = entry["ops"] / entry["seconds"] if entry["seconds"] > 0 else None
        entry["peak_rss_after"] = peak_rss_bytes()
        result["workloads"][name] = entry
        progress(side.label, f"{name:<12} {entry['ops']:>10,} ops {entry['seconds']:8.2f} s "
                             f"{human_rate(entry['ops_per_s']):>12} ops/s  peak RSS {human_bytes(entry['peak_rss_after'])}")

    try:
        needs_read_db = any(w in workloads for w in READS)
        sample = random.Random(seed + 2).sample(range(n), min(n, SAMPLE))
        for name in FILLS:
            timed = name in workloads
            if not timed and not (name == "fillrandom" and needs_read_db):
                continue
            current = name
            path = os.path.join(root, name)
            side.open(path)
            if name == "fillseq":
                seconds = fill_sequential(side, n, values)
            elif name == "fillbatch" or not timed:  # untimed set-up for the reads: the quickest fill
                seconds = fill_batches(side, fill_order, values)
            else:
                seconds = fill_random(side, fill_order, values)
            if timed:
                record(name, {"ops": n, "seconds": seconds})
            else:
                result["phases"]["setup_fill_s"] = seconds
            with Timer() as t:
                side.flush()
            result["phases"][f"{name}_flush_s"] = t.seconds
            result["disk"][f"{name}_flushed"] = disk_usage(path)
            verify_sample(side, sample, values, f"{name}, after flush")
            if name != "fillrandom" or not needs_read_db:
                side.close()
                discard(path)

        if needs_read_db:
            current = "compaction"
            path = os.path.join(root, "fillrandom")
            with Timer() as t:
                side.compact()
            result["phases"]["compact_s"] = t.seconds
            result["disk"]["fillrandom_compacted"] = disk_usage(path)
            progress(side.label, f"flush {result['phases']['fillrandom_flush_s']:.2f} s, "
                                 f"full compaction {t.seconds:.2f} s, "
                                 f"{human_bytes(result['disk']['fillrandom_compacted']['total'])} on disk")
            verify_sample(side, sample, values, "after compaction")
            reads = min(n, args.reads or n)
            read_order = shuffled(n, seed + 3)
            for name in READS:
                if name not in workloads:
                    continue
                current = name
                if name == "readrandom":
                    entry = read_present(side, read_order, reads)
                    verify_sample(side, sample, values, "readrandom")
                elif name == "readmissing":
                    entry = read_missing(side, read_order, reads)
                elif name == "seekscan":
                    seeks = args.seeks if args.seeks is not None else max(1, min(n // 10, 10_000))
                    rng = random.Random(seed + 4)
                    starts = [rng.randrange(n - SCAN_LENGTH + 1) for _ in range(seeks)]
                    entry = seek_scan(side, starts)
                elif name == "scanfull":
                    entry = scan_full(side, n)
                else:
                    entry = delete_range_then_read(side, n, seed + 5)
                record(name, entry)
            del read_order
            side.close()
            discard(path)

        if "fillsync" in workloads:
            current = "fillsync"
            path = os.path.join(root, "fillsync")
            side.open(path)
            syncs = min(n, args.syncs or 2000)
            record("fillsync", fill_synced(side, random.Random(seed + 6).sample(range(n), syncs), values))
            side.close()
            discard(path)
    except Exception as exc:  # noqa: BLE001 - report it with the figures gathered so far
        result["error"] = {"workload": current, "type": type(exc).__name__, "message": str(exc),
                           "traceback": traceback.format_exc()}
        progress(side.label, f"FAILED in {current}: {type(exc).__name__}: {exc}")
        close_quietly(side)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.keep:
        progress(side.label, f"databases kept in {root}")
    result["peak_rss"] = peak_rss_bytes()
    return result


def run_fill_10m(side, args) -> dict:
    """Fill ``--fill-count`` random keys with single puts into a fresh database; report peak RSS."""
    count, seed = args.fill_count, args.seed
    values = Values(args.value_size, seed)
    pool, size, fmt, put = values.pool, values.size, KEY_FORMAT, None
    a, b = affine_permutation(count, seed)
    root = tempfile.mkdtemp(prefix=f"bench-fill10m-{side.label}-", dir=args.dir)
    result = {"label": side.label, "ops": count, "rss_baseline": current_rss_bytes(), "error": None,
              "progress": []}
    try:
        side.open(root)
        put = side.put
        step = max(1, min(1_000_000, count // 10))
        with Timer() as total:
            for first in range(0, count, step):
                with Timer() as t:
                    for j in range(first, min(count, first + step)):
                        i = (a * j + b) % count
                        o = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
                        put(fmt % (i << 1), pool[o:o + size])
                done = min(count, first + step)
                point = {"done": done, "ops_per_s": (done - first) / t.seconds, "rss": current_rss_bytes(),
                         "peak_rss": peak_rss_bytes()}
                result["progress"].append(point)
                progress(side.label, f"{done:>12,} puts {human_rate(point['ops_per_s']):>10} ops/s  "
                                     f"RSS {human_bytes(point['rss'])}  peak {human_bytes(point['peak_rss'])}")
        result["seconds"] = total.seconds
        result["ops_per_s"] = count / total.seconds
        with Timer() as t:
            side.flush()
        result["flush_s"] = t.seconds
        result["disk"] = disk_usage(root)
        sample = random.Random(seed + 2).sample(range(count), min(count, SAMPLE))
        verify_sample(side, sample, values, "fill-10m")
        side.close()
    except Exception as exc:  # noqa: BLE001
        result["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        progress(side.label, f"FAILED: {type(exc).__name__}: {exc}")
        close_quietly(side)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result["peak_rss"] = peak_rss_bytes()
    return result


def child_main(args, workloads: list[str]) -> int:
    memtable_bytes = args.memtable_mb << 20
    side = RocksSide(memtable_bytes) if args._child == "rocksdb" else OurSide(args.engine, memtable_bytes)
    if args.fill_10m:
        result = run_fill_10m(side, args)
    else:
        result = run_side(side, args, workloads)
    result["config"] = side.describe()
    write_json(args._result, result)
    return 0


# --- the parent: run the sides, print the report --------------------------------------

def spawn(side: str, argv: list[str]) -> dict:
    fd, out = tempfile.mkstemp(prefix=f"bench-engine-{side}-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--_child", side, "--_result", out])
        with open(out) as f:
            text = f.read()
        if proc.returncode != 0 or not text:
            return {"label": side, "workloads": {}, "disk": {},
                    "error": {"workload": None, "type": "ChildFailed",
                              "message": f"child process exited with status {proc.returncode}"}}
        return json.loads(text)
    finally:
        os.unlink(out)


def ratio(ours, theirs) -> str:
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.3g}"


def report(args, workloads, ours: dict | None, rocks: dict | None, info: dict) -> str:
    our_label = ours["label"] if ours else ("tabledb" if args.engine == "tabledb" else args.engine)
    lines = [f"Engine benchmark: n={args.n:,}, {16}-byte keys, {args.value_size}-byte values, "
             f"memtable {args.memtable_mb} MiB; reads run after flush + full compact_range of both (steady state)."]
    rows = []
    for name in WORKLOADS:
        if name not in workloads:
            continue
        cells = []
        for side in (ours, rocks):
            if side is None:
                cells.append(None)
                continue
            entry = side["workloads"].get(name)
            if entry is None:
                err = side.get("error")
                cells.append(None if not err else "FAILED" if err.get("workload") == name else "not run")
            else:
                cells.append(entry["ops_per_s"])
        fmt = [c if isinstance(c, str) else human_rate(c) for c in cells]
        ops = next((s["workloads"][name]["ops"] for s in (ours, rocks) if s and name in s["workloads"]), None)
        rows.append([name, DESCRIPTIONS[name], f"{ops:,}" if ops else "-", fmt[0], fmt[1],
                     ratio(*(c if not isinstance(c, str) else None for c in cells))])
    lines.append(render_table(["workload", "what", "ops", f"{our_label} ops/s", "rocksdb ops/s",
                               f"{our_label}/rocksdb"], rows, left=2))

    def get(side, *path):
        value = side
        for p in path:
            if not isinstance(value, dict) or p not in value:
                return None
            value = value[p]
        return value

    resource_rows = []
    for label, path in [("disk after fillrandom + flush", ("disk", "fillrandom_flushed", "total")),
                        ("disk after full compaction", ("disk", "fillrandom_compacted", "total")),
                        ("peak RSS (whole child process)", ("peak_rss",)),
                        ("RSS before opening the engine", ("rss_baseline",))]:
        a, b = get(ours, *path), get(rocks, *path)
        if a is None and b is None:
            continue
        resource_rows.append([label, human_bytes(a), human_bytes(b), ratio(a, b)])
    for label, key_ in [("flush after fillrandom, s", "fillrandom_flush_s"), ("full compaction, s", "compact_s")]:
        a, b = get(ours, "phases", key_), get(rocks, "phases", key_)
        if a is not None or b is not None:
            resource_rows.append([label, "-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}",
                                  ratio(a, b)])
    if resource_rows:
        lines += ["", render_table(["", our_label, "rocksdb", f"{our_label}/rocksdb"], resource_rows)]
    extra = []
    for side in (ours, rocks):
        if side is None:
            continue
        dr = side["workloads"].get("deleterange")
        if dr:
            extra.append(f"{side['label']}: delete_range call {dr['delete_range_seconds'] * 1e3:.2f} ms, "
                         f"first scan past the deleted range {dr['seek_past_range_seconds'] * 1e3:.2f} ms")
        if side.get("config"):
            extra.append(f"{side['label']}: {side['config']['engine']}")
        if side.get("error"):
            err = side["error"]
            extra.append(f"{side['label']}: FAILED in {err.get('workload')}: {err['type']}: {err['message']}")
    if extra:
        lines += [""] + extra
    if args.engine == "stub" and ours:
        lines.append("NOTE: 'stub' is the bench's in-memory stand-in (a SortedDict), not tabledb.")
    lines += ["", trailer(info)]
    return "\n".join(lines)


def report_fill(args, result: dict, info: dict) -> str:
    target = args.rss_target_mb * 1_000_000
    lines = [f"fill-10m: {result['ops']:,} random puts, {args.value_size}-byte values, memtable "
             f"{args.memtable_mb} MiB, engine {result.get('config', {}).get('engine', result['label'])}"]
    if result.get("error"):
        err = result["error"]
        lines.append(f"FAILED: {err['type']}: {err['message']}")
    else:
        lines.append(f"{human_rate(result['ops_per_s'])} puts/s over {result['seconds']:.1f} s; flush "
                     f"{result['flush_s']:.1f} s; {human_bytes(result['disk']['total'])} on disk")
    peak = result["peak_rss"]
    lines.append(f"peak RSS {peak / 1e6:.0f} MB ({human_bytes(peak)}); before opening the engine "
                 f"{human_bytes(result['rss_baseline'])}; target < {args.rss_target_mb} MB: "
                 f"{'PASS' if peak < target else 'FAIL'}")
    lines += ["", trailer(info)]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="keys per fill (default 1,000,000)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma list out of: {','.join(WORKLOADS)} (default all)")
    p.add_argument("--value-size", type=int, default=100, help="value bytes (default 100)")
    p.add_argument("--memtable-mb", type=int, default=64,
                   help="our memtable_bytes and RocksDB's write_buffer_size, MiB (default 64)")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--engine", choices=["tabledb", "memory", "stub"], default="tabledb",
                   help="our side: the LSM engine (default), the in-memory reference, or the bench's stand-in")
    p.add_argument("--only", choices=["ours", "rocksdb"], help="run one side only")
    p.add_argument("--reads", type=int, help="gets in readrandom and readmissing (default n)")
    p.add_argument("--seeks", type=int, help="seeks in seekscan (default min(n/10, 10,000))")
    p.add_argument("--syncs", type=int, help="synced puts in fillsync (default min(n, 2,000))")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dir", help="where the temporary databases go (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    p.add_argument("--fill-10m", action="store_true",
                   help="instead: fill --fill-count random keys into our engine only and report peak RSS")
    p.add_argument("--fill-count", type=int, default=10_000_000,
                   help="keys --fill-10m puts (default 10,000,000; smaller to try the mode out)")
    p.add_argument("--rss-target-mb", type=int, default=400,
                   help="--fill-10m passes when peak RSS stays under this many MB (10^6 bytes; default 400)")
    p.add_argument("--_child", choices=["ours", "rocksdb"], help=argparse.SUPPRESS)
    p.add_argument("--_result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.n < 1 or args.value_size < 1 or args.memtable_mb < 1:
        p.error("--n, --value-size and --memtable-mb must be positive")
    if "seekscan" in workloads and args.n < SCAN_LENGTH:
        p.error(f"seekscan needs --n >= {SCAN_LENGTH}")
    return args, workloads


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, workloads = parse_args(argv)
    if args._child:
        return child_main(args, workloads)
    sides = ["ours"] if args.fill_10m else [s for s in ("ours", "rocksdb") if args.only in (None, s)]
    if "ours" in sides:
        try:
            load_our_engine(args.engine)
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if "rocksdb" in sides:
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            print("error: rocksdict is not installed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
            return 2
    info = machine_info()
    results = {side: spawn(side, argv) for side in sides}
    if args.fill_10m:
        text = report_fill(args, results["ours"], info)
    else:
        text = report(args, workloads, results.get("ours"), results.get("rocksdb"), info)
    print(text)
    if args.json:
        write_json(args.json, {"machine": info, "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                               "workloads": workloads, "results": results})
    return 1 if any(r.get("error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
