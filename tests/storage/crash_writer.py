"""A child process for tests/storage/test_crash.py: writes until it is killed, or holds the LOCK.

    python crash_writer.py write PATH [--sync-mode M] [--threads T] [--keys K] [--memtable-bytes N]
        Each writer thread t writes numbered batches n = next, next+1, ... forever.
        Batch (t, n) is one WriteBatch of K keys ``t<t>/b<n>/<i>`` in the default
        column family, one key ``t<t>/b<n>`` in the family "aux", and the key
        ``t<t>/last`` = n; its values are ``value(t, n, i)``. After ``write()``
        returns the thread prints ``"<t> <n>"`` on stdout and flushes, so every
        printed batch is acknowledged. A thread starts after the batch that its
        ``t<t>/last`` key names (or at 0), so several runs on one directory keep
        numbering each thread's batches 0, 1, 2, ...

    python crash_writer.py hold PATH
        Opens the database, prints "ready", closes it when a line arrives on
        stdin, prints "closed", and exits at end of input.

    python crash_writer.py try PATH
        Tries to open the database once and prints "opened" or "locked <ErrorClass>".
"""

from __future__ import annotations

import argparse
import sys
import threading

from tabledb.errors import DatabaseLockedError
from tabledb.storage import Engine, WriteBatch

FILLER = b"~" * 48


def batch_key(t: int, n: int, i: int) -> bytes:
    return b"t%02d/b%08d/%d" % (t, n, i)


def aux_key(t: int, n: int) -> bytes:
    return b"t%02d/b%08d" % (t, n)


def last_key(t: int) -> bytes:
    return b"t%02d/last" % t


def value(t: int, n: int, i: int) -> bytes:
    return b"%d.%d.%d|" % (t, n, i) + FILLER


def write_forever(args) -> None:
    db = Engine.open(args.path, sync_mode=args.sync_mode, memtable_bytes=args.memtable_bytes,
                     target_file_bytes=32768, level1_bytes=131072, l0_compaction_trigger=3, block_size=1024)
    names = db.list_column_families()
    aux = db.get_column_family("aux") if "aux" in names else db.create_column_family("aux")
    out_lock = threading.Lock()
    out = sys.stdout

    def writer(t: int) -> None:
        last = db.get(last_key(t))
        n = 0 if last is None else int(last) + 1
        while True:
            batch = WriteBatch()
            for i in range(args.keys):
                batch.put(batch_key(t, n, i), value(t, n, i))
            batch.put(aux_key(t, n), value(t, n, -1), cf=aux)
            batch.put(last_key(t), b"%d" % n)
            db.write(batch)
            with out_lock:
                out.write(f"{t} {n}\n")
                out.flush()
            n += 1

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(args.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()   # forever: the parent kills us


def hold(args) -> None:
    db = Engine.open(args.path)
    print("ready", flush=True)
    sys.stdin.readline()
    db.close()
    print("closed", flush=True)
    sys.stdin.read()


def try_open(args) -> None:
    try:
        db = Engine.open(args.path)
    except DatabaseLockedError as exc:
        print(f"locked {type(exc).__name__}", flush=True)
        return
    db.close()
    print("opened", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["write", "hold", "try"])
    p.add_argument("path")
    p.add_argument("--sync-mode", default="commit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--memtable-bytes", type=int, default=16384)
    args = p.parse_args()
    {"write": write_forever, "hold": hold, "try": try_open}[args.mode](args)


if __name__ == "__main__":
    main()
