"""VERIFY BACKUP and DROP BACKUP: check every byte of a backup; remove one without breaking the others.

``verify_backup(target, backup=None)`` returns one row per file: the backup's
metadata, each SSTable (size and CRC-32C against the metadata, every byte
re-read) and each archived WAL segment that follows it (every record's checksum;
header number and epoch), and each table a bulk ingest in those segments needs
(``wal/<db_id>/<epoch>/ingest/``: its size and footer CRC against the ingest
record, every block and the whole-file CRC). ``backup``: an id, "LATEST", or None for every backup
in the target (each file checked once). A status is 'ok', 'missing' or 'corrupt'.
A hole in the archived WAL's sequences is a row ``wal/<db_id>/<epoch>/
(sequences a..b)`` with status 'missing'.

``drop_backup(target, backup_id)`` removes the metadata first (the backup is
gone at once), then every SSTable it holds that no remaining backup holds, and
the WAL segments of its database that no remaining backup holds or can replay
(those before the oldest remaining archived backup's first segment), with the
ingested tables archived beside them. Objects that other
backups use are never touched, nor those of other databases.
"""

from __future__ import annotations

import os
import tempfile

from tabledb.errors import CorruptionError, InvalidArgumentError
from tabledb.backup.repository import (BackupError, Repository, decode_meta, ingest_dir, ingest_object, meta_object,
                                       os_errors_as_backup_errors, parse_ingest_name, wal_dir)
from tabledb.backup.restoring import is_ingest_record, list_segments, read_segment
from tabledb.storage.batch import BATCH_HEADER, decode_batch, ingest_ops
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.ingest import inspect_external_file

VERIFY_COLUMNS = ["file", "bytes", "status"]
VERIFY_TYPES = ["TEXT", "INTEGER", "TEXT"]


@os_errors_as_backup_errors
class VerifyReport(list):
    """The rows of VERIFY BACKUP (a list of {"file", "bytes", "status"}), plus ``ok`` (every status is
    'ok'), ``problems`` (the other rows) and ``backup_id`` (the backup checked, or "all")."""

    backup_id: str = "all"

    @property
    def problems(self) -> list[dict]:
        return [r for r in self if r["status"] != "ok"]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_backup(target, backup=None, progress=None) -> VerifyReport:
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("progress must be callable")
    repo = Repository.open(target)
    rows = VerifyReport()
    if backup is None:
        ids = repo.backup_ids()
    elif isinstance(backup, str) and backup.upper() == "LATEST":
        ids = repo.backup_ids()[-1:]
        if not ids:
            raise BackupError(f"no backups in {repo.target!r}")
    else:
        ids = [str(backup)]
        if repo.info(meta_object(ids[0])) is None:
            raise BackupError(f"no backup {ids[0]!r} in {repo.target!r}")
    if backup is not None:
        rows.backup_id = ids[0]
    metas = []
    for backup_id in ids:
        rel = meta_object(backup_id)
        data = repo.read_optional(rel)
        if data is None:
            rows.append({"file": rel, "bytes": 0, "status": "missing"})
            continue
        try:
            meta = decode_meta(data, repo.describe(rel))
        except CorruptionError:
            rows.append({"file": rel, "bytes": len(data), "status": "corrupt"})
            continue
        rows.append({"file": rel, "bytes": len(data), "status": "ok"})
        metas.append(meta)
    files: dict[str, dict] = {}
    lineages: dict[tuple[str, int], int] = {}
    for meta in metas:
        for f in meta["files"] + meta.get("wal_files", []):
            files.setdefault(f["path"], f)
        wal = meta.get("wal") or {}
        if wal.get("archived"):
            key = (meta["db_id"], meta["epoch"])
            first = (wal["next_segment"], meta["sequence"])
            lineages[key] = min(lineages.get(key, first), first)
    total = sum(f["size"] for f in files.values())
    segments = {key: list_segments(repo, key[0], key[1], first[0]) for key, first in lineages.items()}
    total += sum(size for segs in segments.values() for _, _, size in segs)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, total), total)

    for rel in sorted(files):
        f = files[rel]
        try:
            size, crc = repo.checksum(rel, progress=step)
        except FileNotFoundError:
            rows.append({"file": rel, "bytes": 0, "status": "missing"})
            continue
        ok = size == f["size"] and f"{crc:08x}" == f["crc32c"]
        rows.append({"file": rel, "bytes": size, "status": "ok" if ok else "corrupt"})
    with tempfile.TemporaryDirectory(prefix="tabledb-verify-") as workdir:
        for (db_id, epoch), segs in sorted(segments.items()):
            expected = lineages[(db_id, epoch)][1] + 1    # the oldest backup's sequence + 1
            for number, rel, size in segs:
                checked = rel in files          # a backup's own segment: its row is there already
                try:
                    records, _torn = read_segment(repo, rel, number, epoch, workdir, step)
                except FileNotFoundError:
                    if not checked:
                        rows.append({"file": rel, "bytes": 0, "status": "missing"})
                    continue
                except CorruptionError:
                    if not checked:
                        rows.append({"file": rel, "bytes": size, "status": "corrupt"})
                    expected = None
                    continue
                for _offset, payload in records:
                    first, _t, count = BATCH_HEADER.unpack_from(payload, 0)
                    if expected is not None and first + count <= expected:
                        continue
                    if expected is not None and first > expected:
                        rows.append({"file": f"{wal_dir(db_id, epoch)}/ (sequences {expected}..{first - 1})",
                                     "bytes": 0, "status": "missing"})
                    expected = first + count
                    if is_ingest_record(payload):
                        rows.extend(check_ingested(repo, db_id, epoch, number, payload, workdir, step))
                if not checked:
                    rows.append({"file": rel, "bytes": size, "status": "ok"})
    if progress is not None:
        progress(total, total)
    return rows


def check_ingested(repo: Repository, db_id: str, epoch: int, segment: int, payload: bytes, workdir: str,
                   step=None) -> list[dict]:
    """A VERIFY row for each table the ingest record ``payload`` (in ``segment``) names."""
    rows = []
    for _cf_id, number, _seq, size, file_crc in ingest_ops(decode_batch(payload)[2]):
        rel = ingest_object(db_id, epoch, segment, number, file_crc)
        local = os.path.join(workdir, f"ingest-{number:06d}.sst")
        try:
            got, _crc = repo.download(rel, local, progress=step)
        except FileNotFoundError:
            rows.append({"file": rel, "bytes": 0, "status": "missing"})
            continue
        try:
            table = inspect_external_file(DEFAULT_FS, local)
            ok = got == size and table.file_crc == file_crc
        except CorruptionError:
            ok = False
        finally:
            os.remove(local)
        rows.append({"file": rel, "bytes": got, "status": "ok" if ok else "corrupt"})
    return rows


@os_errors_as_backup_errors
def drop_backup(target, backup_id) -> dict:
    """Remove ``backup_id`` from ``target``; returns {"backup_id", "files_removed", "bytes_removed"}."""
    repo = Repository.open(target)
    backup_id = str(backup_id)
    rel = meta_object(backup_id)
    data = repo.read_optional(rel)
    if data is None:
        raise BackupError(f"no backup {backup_id!r} in {repo.target!r}")
    try:
        meta = decode_meta(data, repo.describe(rel))
    except CorruptionError:
        meta = None   # its file list cannot be trusted: remove only the metadata
    repo.delete(rel)
    removed = 0
    removed_bytes = 0
    if meta is None:
        return {"backup_id": backup_id, "files_removed": 1, "bytes_removed": len(data)}
    remaining = repo.backups()
    used = {f["path"] for m in remaining for f in m["files"] + m.get("wal_files", [])}
    for f in meta["files"]:
        if f["path"] not in used and repo.delete(f["path"]):
            removed += 1
            removed_bytes += f["size"]
    # WAL segments (the backup's own and the archive of its database): one goes when no remaining
    # backup holds it and none can replay it (it precedes the oldest archived backup's first segment).
    lineage = [m for m in remaining if m["db_id"] == meta["db_id"] and m["epoch"] == meta["epoch"]
               and (m.get("wal") or {}).get("archived")]
    keep_from = min((m["wal"]["next_segment"] for m in lineage), default=None)
    for number, obj, size in list_segments(repo, meta["db_id"], meta["epoch"], 0):
        if (keep_from is None or number < keep_from) and obj not in used:
            if repo.delete(obj):
                removed += 1
                removed_bytes += size
    for obj in repo.list(ingest_dir(meta["db_id"], meta["epoch"])):
        parsed = parse_ingest_name(obj.path.rsplit("/", 1)[-1])
        if parsed is not None and (keep_from is None or parsed[0] < keep_from) and repo.delete(obj.path):
            removed += 1
            removed_bytes += obj.size
    return {"backup_id": backup_id, "files_removed": removed + 1, "bytes_removed": removed_bytes + len(data)}


DROP_COLUMNS = ["backup_id", "files_removed", "bytes_removed"]
DROP_TYPES = ["TEXT", "INTEGER", "INTEGER"]
