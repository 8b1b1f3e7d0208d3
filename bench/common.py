"""Helpers shared by the benchmarks: workload data, memory and disk figures, machine facts, tables.

Workload data is generated, never stored, so that a benchmark process holds as
little of its own data as possible and its peak RSS is mostly the engine's:

* key of index ``i``: ``b"%016d" % (2 * i)``, 16 bytes. Present keys are even
  numbers; ``missing_key(i)`` (``2 * i + 1``) falls *between* present keys, so
  a lookup of an absent key cannot be answered from a file's key range alone.
* value of index ``i``: ``value_size`` bytes sliced from a seeded random pool at
  an offset derived from ``i`` -- deterministic, incompressible, and different
  for neighbouring keys.
* orders: a seeded shuffle of ``range(n)`` held in an ``array("I")`` (4 bytes a
  key), or for very large ``n`` an affine permutation ``i -> (a*i + b) mod n``
  that needs no memory at all.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import resource
import sys
import time
from array import array
from math import gcd

KEY_FORMAT = b"%016d"
VALUE_POOL_BYTES = 1 << 20
VALUE_STRIDE = 7919  # a prime: neighbouring indices get far-apart offsets in the pool


def key(i: int) -> bytes:
    """The (present) key of index ``i``."""
    return KEY_FORMAT % (i << 1)


def missing_key(i: int) -> bytes:
    """A key that is never written: it sorts between ``key(i)`` and ``key(i + 1)``."""
    return KEY_FORMAT % ((i << 1) | 1)


class Values:
    """Deterministic values: ``values.of(i)`` is always the same ``size`` bytes for the same ``i`` and seed."""

    __slots__ = ("pool", "size")

    def __init__(self, size: int, seed: int):
        self.size = size
        self.pool = random.Random(seed).randbytes(VALUE_POOL_BYTES + size)

    def of(self, i: int) -> bytes:
        offset = (i * VALUE_STRIDE) % VALUE_POOL_BYTES
        return self.pool[offset:offset + self.size]


def shuffled(n: int, seed: int) -> array:
    """A seeded random permutation of ``range(n)`` as a compact ``array("I")``."""
    order = array("I", range(n))
    random.Random(seed).shuffle(order)
    return order


def affine_permutation(n: int, seed: int) -> tuple[int, int]:
    """``(a, b)`` such that ``i -> (a*i + b) % n`` permutes ``range(n)``, in O(1) memory.

    Not a random permutation, but consecutive elements land far apart in the key
    space (``a`` is near the golden ratio times ``n``), which is what an LSM
    write path cares about.
    """
    a = int(n * 0.6180339887) | 1
    while gcd(a, n) != 1:
        a += 2
    b = random.Random(seed).randrange(n) if n else 0
    return a, b


# --- memory -------------------------------------------------------------------

def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    """Current resident set from /proc/self/status (0 where there is no /proc)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- disk ---------------------------------------------------------------------

def disk_usage(path: str) -> dict:
    """Apparent sizes (``st_size``) of every file under ``path``: total, and by kind (sst, log, other)."""
    usage = {"total": 0, "sst": 0, "log": 0, "other": 0, "files": 0}
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:  # a background job removed it meanwhile
                continue
            kind = "sst" if name.endswith(".sst") else "log" if name.endswith(".log") else "other"
            usage[kind] += size
            usage["total"] += size
            usage["files"] += 1
    return usage


# --- machine ------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info() -> dict:
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def trailer(info: dict) -> str:
    load = info.get("loadavg_1m")
    return (f"{info['date']} | {info['platform']} | {info['cpu']}, {info['cores']} cores | "
            f"{info['implementation']} {info['python']}"
            + (f" | load average at start {load:.2f}" if load is not None else ""))


# --- timing and output --------------------------------------------------------

class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    __slots__ = ("start", "seconds")

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def human_rate(ops_per_s: float | None) -> str:
    return "-" if ops_per_s is None else f"{ops_per_s:,.0f}"


def render_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A plain-text table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]

    def line(row):
        return " | ".join(str(cell).ljust(w) if c < left else str(cell).rjust(w)
                          for c, (cell, w) in enumerate(zip(row, widths)))

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
