"""Child process of test_backup.py: the SQL workload with BACKUPs, or a RESTORE, that can SIGKILL itself
at a chosen I/O step.

    python backup_kill_child.py workload [--die-on KIND --die-at N] -- <workload.py arguments>
    python backup_kill_child.py restore TARGET PATH [--as-of-seq S] [--die-on KIND --die-at N]

A kill from the parent lands at a random moment; these hooks make it land exactly
in the step named, the N-th time it happens (N from the test's seed), so that every
step is hit whatever the machine's speed. The process then sends itself SIGKILL:
the same as a kill from outside at that instant (no buffer is flushed, nothing
cleaned up). When the N-th step never comes the child runs on normally.

Steps of a write to the backup target (``repository._LocalOutput`` and
``Repository._publish``), KIND ``any``, ``meta`` (``backups/*.meta``), ``sst``
or ``wal`` (objects under ``sst/``, ``wal/``; the WAL archiver's too):

    write     a chunk half written to the object's temporary file
    closed    the temporary file complete and fsynced, not yet renamed
    renamed   renamed to its name, its directory not yet fsynced (``_fsync_path``)

Steps of a restore, KIND ``download`` (the N-th chunk read from the target, half
written to the local copy), ``assemble`` (after ``Engine.assemble`` built the
database in ``PATH.restoring``), ``open`` (after ``Engine.open`` replayed its WAL),
``rename`` (just before ``PATH.restoring`` becomes ``PATH``), ``renamed`` (just
after, the parent directory not yet fsynced).

Prints ``start`` once the hooks are in place and, for a restore, ``done <sequence>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

_seen = {"n": 0}
_lock = threading.Lock()   # the WAL archiver's thread writes to the target too


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def step(matches: bool, die_at: int) -> bool:
    """Count a matching step; True when it is the one to die at."""
    if not matches or not die_at:
        return False
    with _lock:
        _seen["n"] += 1
        return _seen["n"] == die_at


def install_target_hooks(target: str, kind: str, die_at: int) -> None:
    from tabledb.backup import repository

    base = os.path.abspath(target)

    def wanted(rel: str) -> bool:
        if kind == "any":
            return True
        prefix = {"meta": repository.BACKUPS_DIR + "/", "sst": "sst/", "wal": "wal/"}[kind]
        return rel.startswith(prefix)

    def rel_of(full: str) -> str:
        return os.path.relpath(full, base).replace(os.sep, "/")

    class DyingOutput(repository._LocalOutput):
        def __init__(self, path: str):
            super().__init__(path)
            self.rel = rel_of(path.rsplit(".tmp-", 1)[0])

        def write(self, data) -> None:
            if step(wanted(self.rel), die_at):
                half = bytes(data)[:max(1, len(data) // 2)]
                self._f.write(half)
                die()
            super().write(data)

        def close(self) -> None:
            was_open = not self._f.closed
            super().close()
            if was_open and step(wanted(self.rel), die_at):
                die()

    fsync_path = repository._fsync_path

    def dying_fsync_path(path: str) -> None:
        # called by Repository._publish just after the rename, for the object's directory
        if step(wanted(rel_of(path) + "/"), die_at):
            die()
        fsync_path(path)

    repository._LocalOutput = DyingOutput
    repository._fsync_path = dying_fsync_path


def install_restore_hooks(kind: str, die_at: int) -> None:
    from tabledb.backup import repository
    from tabledb.storage import Engine

    if kind == "download":
        chunks = repository.Repository.chunks

        def dying_chunks(self, rel):
            for data in chunks(self, rel):
                if step(True, die_at):
                    yield data[:max(1, len(data) // 2)]   # the caller writes it; the next read dies
                    die()
                yield data
        repository.Repository.chunks = dying_chunks
    elif kind == "assemble":
        assemble = Engine.assemble

        def dying_assemble(*args, **kwargs):
            result = assemble(*args, **kwargs)
            if step(True, die_at):
                die()
            return result
        Engine.assemble = staticmethod(dying_assemble)
    elif kind == "open":
        open_ = Engine.open.__func__

        def dying_open(cls, *args, **kwargs):
            engine = open_(cls, *args, **kwargs)
            if step(True, die_at):
                die()
            return engine
        Engine.open = classmethod(dying_open)
    elif kind in ("rename", "renamed"):
        def dying(move):
            def dying_move(src, dst, *args, **kwargs):
                restoring = str(src).endswith(".restoring")
                if kind == "rename" and step(restoring, die_at):
                    die()
                move(src, dst, *args, **kwargs)
                if kind == "renamed" and step(restoring, die_at):
                    die()
            return dying_move
        os.rename = dying(os.rename)
        os.replace = dying(os.replace)
    elif kind != "none":
        raise SystemExit(f"unknown restore step {kind}")


def main() -> None:
    argv = sys.argv[1:]
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["workload", "restore"])
    p.add_argument("target", nargs="?")
    p.add_argument("path", nargs="?")
    p.add_argument("--as-of-seq", type=int, default=None)
    p.add_argument("--die-on", default="none")
    p.add_argument("--die-at", type=int, default=0)
    args = p.parse_args(argv)
    if args.mode == "workload":
        if args.die_on != "none":
            install_target_hooks(rest[rest.index("--backup-to") + 1], args.die_on, args.die_at)
        import workload
        print("start", flush=True)
        sys.argv = [os.path.join(HERE, "workload.py")] + rest
        workload.main()
        return
    import tabledb
    install_restore_hooks(args.die_on, args.die_at)
    print("start", flush=True)
    info = tabledb.restore(args.target, args.path, as_of=args.as_of_seq)
    print(f"done {info['sequence']}", flush=True)


if __name__ == "__main__":
    main()
