"""BACKUP: copy a consistent, pinned view of the database to a target, metadata last.

Steps (``backup_engine``):

1. Open the target (creating it and its marker on first use) and read the
   metadata of the backups already there.
2. With ``wal_archive``: make sure this database archives its WAL to the target
   (``archive.start``).
3. ``Engine.backup_view(hold_wal=wal_archive)``: the active WAL segment is sealed
   at sequence B; every write up to B is in the listed SSTables or in the sealed
   WAL segments not yet flushed (``wal_files``), none after; the files stay on
   disk while we copy, and writers go on (they wait only for the seal).
4. Copy each SSTable the target lacks to ``sst/<db_id>/<number>-<crc>.sst``. A
   file that an earlier backup of this database holds is not copied again
   (incremental) if the object is still there with its size; an object no backup
   names (left by an interrupted backup) is reused only if its bytes match the
   local file's, else copied again. ``incremental = false`` copies every file
   again (it repairs what VERIFY BACKUP found damaged).
5. With ``wal_archive``, first copy every segment the archive still holds up to
   B, oldest first (``Archiver.copy_sealed``; they include ``wal_files``), so the
   archive is continuous from the previous backup to this one whatever happens
   next; then copy ``wal_files`` (to ``wal/``, content-addressed like every
   archived segment: those already there are not copied again).
6. Write ``backups/<id>.meta`` last, whole (see ``repository``): until then no
   backup looks complete, and a crash leaves only objects the next backup reuses.

Nothing here knows SQL: a table backup passes the key ranges of its tables
(``key_ranges``) and their names; the catalog column family ("catalog") is read
as JSON records (its format is in docs/format.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time

import crc32c as _crc32c

from tabledb.errors import InvalidArgumentError, NotSupportedError
from tabledb.backup import archive
from tabledb.backup.archive import footer_file_crc, wal_length
from tabledb.backup.repository import (FORMAT, FORMAT_VERSION, BackupError, Repository, crc_hex,
                                       os_errors_as_backup_errors, sst_object, wal_object)

CATALOG_CF = "catalog"


def local_checksum(path: str) -> tuple[int, int]:
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(1 << 20)
            if not data:
                return size, crc
            crc = _crc32c.crc32c(data, crc)
            size += len(data)


def iso_utc(us: int) -> str:
    return _dt.datetime.fromtimestamp(us / 1e6, _dt.timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def read_catalog(engine, snapshot) -> list:
    """The catalog records ([key text, JSON value], ...) as of ``snapshot``; [] without a catalog."""
    if CATALOG_CF not in engine.list_column_families():
        return []
    cf = engine.get_column_family(CATALOG_CF)
    out = []
    for key, value in engine.scan(None, None, cf=cf, snapshot=snapshot):
        try:
            out.append([key.decode("utf-8"), json.loads(value)])
        except (UnicodeDecodeError, ValueError):
            out.append([key.decode("utf-8", "replace"), None])
    return out


def table_names(catalog: list) -> list[str]:
    return sorted((record["name"] for key, record in catalog
                   if key.startswith("table:") and isinstance(record, dict) and "name" in record),
                  key=str.lower)


def _overlaps(row: list, ranges) -> bool:
    smallest, largest = bytes.fromhex(row[4]), bytes.fromhex(row[5])
    for start, end in ranges:
        if (end is None or smallest < end) and largest >= start:
            return True
    return False


# While writers are active, the copy pauses PACE_FACTOR times as long as each chunk took, so a
# backup takes at most 1 / (1 + PACE_FACTOR) of the machine from them. On 2 cores (one process,
# one GIL) bench/backup.py's writers kept 0.62x of their rate with no pause, 0.67-0.72x at 3,
# 0.73-0.96x at 6 (2026-11-26; the writers' own compaction makes single runs swing). Idle: full speed.
PACE_FACTOR = 6.0


class Pacer:
    """``pace(seconds)`` after each copied chunk: sleeps when the engine took writes since the last call."""

    def __init__(self, engine, factor: float = PACE_FACTOR):
        self.engine = engine
        self.factor = factor
        self.last = engine.latest_sequence
        self.slept = 0.0

    def __call__(self, seconds: float) -> None:
        seq = self.engine.latest_sequence
        if seq != self.last and self.factor > 0:
            self.last = seq
            pause = min(seconds * self.factor, 0.5)
            self.slept += pause
            time.sleep(pause)


@os_errors_as_backup_errors
def backup_engine(engine, target, *, incremental: bool = True, wal_archive: bool = True, label: str | None = None,
                  tables: list[str] | None = None, key_ranges=None, progress=None,
                  archive_interval: float | None = None) -> dict:
    """Back up ``engine`` to ``target``; returns the backup's row (see ``BACKUP_COLUMNS``).

    ``tables``/``key_ranges``: a table backup holds the catalog and the default column
    family's SSTables that overlap ``key_ranges`` ([(start, end or None)], end exclusive);
    ``tables`` names the tables it promises. ``progress(done_bytes, total_bytes)`` is called
    as bytes are copied (total: the bytes this backup must copy).
    """
    if not hasattr(engine, "backup_view"):
        raise NotSupportedError("BACKUP needs an on-disk database (an in-memory one has no files to copy)")
    if label is not None and not isinstance(label, str):
        raise InvalidArgumentError("label must be a string")
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("progress must be callable")
    repo = Repository.open(target, create=True)
    db_id = engine.db_id
    earlier = [m for m in repo.backups() if m.get("db_id") == db_id]
    known: dict[str, tuple[int, str]] = {}
    for meta in earlier:
        for f in meta.get("files", ()):
            known[f["path"]] = (f["size"], f["crc32c"])
    archiver = archive.start(engine, repo.target, archive_interval) if wal_archive else None
    if not wal_archive and archive.current_target(engine) == repo.target:
        archive.stop(engine, release=True)   # wal_archive = false to the archive's target: stop archiving
    started_us = time.time_ns() // 1000
    pacer = Pacer(engine)
    with engine.backup_view(hold_wal=wal_archive) as view:
        cf_names = view.column_families
        catalog = read_catalog(engine, view.snapshot)
        # The snapshot was for the catalog only: a live snapshot slows every compaction down (each
        # key must be checked against it), and compaction shares the machine with the writers.
        view.snapshot.close()
        catalog_cf = next((cf_id for cf_id, name in cf_names.items() if name == CATALOG_CF), None)
        files = view.files
        if key_ranges is not None:
            files = [f for f in files if f.cf_id == catalog_cf or (f.cf_id == 0 and _overlaps(f.row, key_ranges))]
        fresh = not incremental          # copy every file again, whatever the target holds
        full = fresh or not earlier
        plan = []   # (BackupFile, object name)
        for f in files:
            name = sst_object(db_id, f.number, footer_file_crc(f.path))
            plan.append((f, name))
        total = sum(f.size for f, name in plan if full or name not in known or known[name][0] != f.size)
        total += sum(os.path.getsize(path) for _, path in view.wal_files if os.path.exists(path))
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, total), total)

        out_files = []
        copied = copied_bytes = 0
        for f, name in plan:
            entry = known.get(name)
            if not full and entry is not None and entry[0] == f.size:
                info = repo.info(name)       # an earlier backup holds it: still there? (a stat, not a read)
                if info is not None and info.size == f.size:
                    out_files.append({"path": name, "size": f.size, "crc32c": entry[1], "row": f.row})
                    continue
            crc = None
            if not fresh:
                info = repo.info(name)
                if info is not None and info.size == f.size:
                    # Left by an interrupted backup: reuse it if its bytes are the file's.
                    local = local_checksum(f.path)
                    remote = repo.checksum(name)
                    if local == remote:
                        crc = local[1]
                        step(f.size)
            if crc is None:
                size, crc = repo.upload(f.path, name, progress=step, pace=pacer)
                if size != f.size:
                    raise BackupError(f"{f.path} changed size while it was copied ({f.size} -> {size})")
                copied += 1
                copied_bytes += size
            out_files.append({"path": name, "size": f.size, "crc32c": crc_hex(crc), "row": f.row})
        # The archive first, oldest segment first (the segments it still holds include the view's
        # wal_files): a BACKUP that fails or is killed after this leaves no hole in wal/.
        through = None
        if archiver is not None:
            sent: list[tuple[int, int]] = []
            archiver.copy_sealed(up_to=view.wal_next, sent=sent)
            own = {number for number, _path in view.wal_files}
            for number, size in sent:      # this backup's own WAL files, copied here for the archive
                if number in own:
                    copied += 1
                    copied_bytes += size
            through = view.wal_next
        # The writes not yet in SSTables: the sealed WAL segments the view lists (content-addressed,
        # so a segment the archiver or an earlier backup copied is not copied again).
        out_wal = []
        for number, path in view.wal_files:
            length, crc = wal_length(path)
            name = wal_object(db_id, view.epoch, number, crc)
            info = repo.info(name)
            if fresh or info is None or info.size != length:
                size, sent = repo.upload(path, name, progress=step, length=length, pace=pacer)
                if (size, sent) != (length, crc):
                    raise BackupError(f"{path} changed while it was copied")
                copied += 1
                copied_bytes += size
            else:
                step(length)
            out_wal.append({"path": name, "number": number, "size": length, "crc32c": crc_hex(crc)})
        parent = earlier[-1]["backup_id"] if earlier and not full else None
        scope_tables = sorted(tables, key=str.lower) if tables is not None else table_names(catalog)
        backup_id = repo.new_backup_id(time.time())
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "backup_id": backup_id, "kind": "full" if full else "incremental", "parent_id": parent,
            "label": label, "scope": "tables" if tables is not None else "database", "tables": scope_tables,
            "db_id": db_id, "epoch": view.epoch, "sequence": view.sequence,
            "point_time_us": view.point_time_us, "commit_time_us": view.commit_time_us,
            "created_at": iso_utc(view.point_time_us), "started_us": started_us,
            "column_families": sorted([cf_id, name] for cf_id, name in cf_names.items()),
            "next_file": view.next_file,
            "files": out_files,
            "wal_files": out_wal,
            "wal": {"archived": wal_archive, "epoch": view.epoch, "next_segment": view.wal_next,
                    "through_segment": through},
            "catalog": catalog,
            "stats": {"files_copied": copied, "bytes_copied": copied_bytes,
                      "files_total": len(out_files) + len(out_wal),
                      "bytes_total": sum(f["size"] for f in out_files) + sum(f["size"] for f in out_wal)},
        }
        repo.write_meta(meta)
    if progress is not None:
        progress(total, total)
    return backup_row(meta)


BACKUP_COLUMNS = ["backup_id", "kind", "parent_id", "sequence", "created_at", "files_copied", "bytes_copied",
                  "files_total", "bytes_total"]
BACKUP_TYPES = ["TEXT", "TEXT", "TEXT", "INTEGER", "TEXT", "INTEGER", "INTEGER", "INTEGER", "INTEGER"]


def backup_row(meta: dict) -> dict:
    stats = meta["stats"]
    return {"backup_id": meta["backup_id"], "kind": meta["kind"], "parent_id": meta["parent_id"],
            "sequence": meta["sequence"], "created_at": meta["created_at"],
            "files_copied": stats["files_copied"], "bytes_copied": stats["bytes_copied"],
            "files_total": stats["files_total"], "bytes_total": stats["bytes_total"]}


SHOW_COLUMNS = ["backup_id", "kind", "parent_id", "label", "sequence", "created_at", "bytes_total", "tables"]
SHOW_TYPES = ["TEXT", "TEXT", "TEXT", "TEXT", "INTEGER", "TEXT", "INTEGER", "TEXT"]


@os_errors_as_backup_errors
def list_backups(target) -> list[dict]:
    """Every complete backup in ``target``, oldest first, as SHOW BACKUPS rows (dicts)."""
    repo = Repository.open(target)
    return [{"backup_id": m["backup_id"], "kind": m["kind"], "parent_id": m["parent_id"], "label": m.get("label"),
             "sequence": m["sequence"], "created_at": m["created_at"], "bytes_total": m["stats"]["bytes_total"],
             "tables": ", ".join(m.get("tables") or ())} for m in repo.backups()]
