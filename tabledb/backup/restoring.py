"""RESTORE: build a new database from a backup, then replay archived WAL to a point in time.

``restore_database(target, path, backup=None, as_of=None)``:

1. Choose the base backup and the stop point (``choose``):
   - a backup named (an id, or LATEST) and no ``as_of``: exactly that backup;
   - a backup named and ``as_of``: that backup, then the WAL up to ``as_of``;
   - no backup named, no ``as_of``: the newest backup, then all the WAL archived
     after it: the latest state the target holds;
   - no backup named, ``as_of`` a time: the newest backup cut at or before it;
     ``as_of`` a sequence: the newest backup of the newest backup's database
     whose sequence is at or below it; then the WAL up to ``as_of``.
2. Copy every SSTable of the base into ``path + ".restoring"``, checking each
   one's size and CRC-32C against the metadata, and read the base's own WAL
   segments (``wal_files``: its writes not yet in SSTables), checking each.
3. Download the archived WAL segments that follow the base (``wal/<db_id>/
   <epoch>/``, numbered from the backup's ``next_segment``), check each one's
   CRC-32C and every record's checksum and that sequences follow on without a gap, and pick the records
   after the base's sequence B up to the stop point: the last commit whose last
   sequence is <= the requested sequence, or whose commit time is <= the
   requested time (records are taken in log order; the first one past the point
   ends the replay).
4. ``Engine.assemble``: MANIFEST and CURRENT for the copied files, a new WAL epoch
   (the base's + 1) and a new database id, and one WAL segment of the new epoch
   holding the picked records up to the first bulk ingest among them; opening the
   engine replays them into SSTables. Only now is the database opened: every byte
   was checked before.
5. A bulk ingest (an ingest record: COPY FROM, ``ingest_arrow``) in the picked
   records: its tables were archived beside the segment that logged it
   (``wal/<db_id>/<epoch>/ingest/``); each is downloaded, checked (size, footer
   CRC, then every block by ``Engine.ingest``) and ingested at the record's
   sequence; the records after it are applied with ``Engine.replay``, up to the
   next ingest, and so on. Then the engine flushes and closes.
6. fsync and rename the directory to ``path``.

Any missing or damaged file raises CorruptionError naming it (the target and
the object) and removes the half-built directory: ``path`` is never left
half-made. ``path`` must not exist.

The WAL accounts for every sequence (reserve and ingest records, see
``tabledb/storage/batch.py``): a gap in the archive is a missing segment, and a
replay that would cross it stops with an error (restore to before it, or from a
backup taken after it). So does an ingest whose tables are not in the archive
(archiving was not running when it happened).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil

from tabledb.errors import CorruptionError, InvalidArgumentError, InvalidTypeError
from tabledb.backup.repository import (BackupError, Repository, ingest_object, os_errors_as_backup_errors,
                                       parse_wal_name, wal_dir)
from tabledb.storage import Engine
from tabledb.storage.batch import BATCH_HEADER, decode_batch, ingest_ops
from tabledb.storage.dbformat import KIND_INGEST
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.log import WAL_MAGIC, read_log

RESTORING_SUFFIX = ".restoring"


def normalize_as_of(as_of):
    """None | ("sequence", n) | ("time", microseconds since 1970 UTC). Naive datetimes are UTC."""
    if as_of is None:
        return None
    if isinstance(as_of, bool):
        raise InvalidTypeError("as_of must be a sequence number (int), a datetime or an ISO-8601 string")
    if isinstance(as_of, int):
        if as_of < 0:
            raise InvalidArgumentError("as_of sequence must be >= 0")
        return ("sequence", as_of)
    if isinstance(as_of, str):
        text = as_of.strip()
        try:
            as_of = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise InvalidArgumentError(f"invalid ISO-8601 timestamp {text!r}") from None
    if isinstance(as_of, _dt.datetime):
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=_dt.timezone.utc)
        delta = as_of - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return ("time", delta // _dt.timedelta(microseconds=1))
    if isinstance(as_of, _dt.date):
        return normalize_as_of(_dt.datetime(as_of.year, as_of.month, as_of.day))
    raise InvalidTypeError("as_of must be a sequence number (int), a datetime or an ISO-8601 string")


def _is_latest(backup) -> bool:
    return isinstance(backup, str) and backup.upper() == "LATEST"


def choose(repo: Repository, backup=None, as_of=None) -> tuple[dict, tuple | None, bool]:
    """(base metadata, stop point or None, replay?) for a restore; BackupError when none fits."""
    point = normalize_as_of(as_of)
    metas = repo.backups()
    if backup is not None and point is not None and _is_latest(backup):
        backup = None     # LATEST AS OF a point: the latest backup at or before it, then the WAL
    if backup is not None:
        if not isinstance(backup, str):
            backup = str(backup)
        if _is_latest(backup):
            if not metas:
                raise BackupError(f"no backups in {repo.target!r}")
            base = metas[-1]
        else:
            base = repo.read_meta(backup)
        if point is not None and not _at_or_before(base, point):
            raise BackupError(f"backup {base['backup_id']} was taken after the requested point; "
                              "name an older backup or none")
        return base, point, point is not None
    if not metas:
        raise BackupError(f"no backups in {repo.target!r}")
    if point is None:
        return metas[-1], None, True
    if point[0] == "sequence":
        lineage = metas[-1]["db_id"]
        candidates = [m for m in metas if m["db_id"] == lineage and _at_or_before(m, point)]
    else:
        candidates = sorted((m for m in metas if _at_or_before(m, point)),
                            key=lambda m: (m["point_time_us"], m["backup_id"]))
    if not candidates:
        what = f"sequence {point[1]}" if point[0] == "sequence" else _iso(point[1])
        raise BackupError(f"no backup in {repo.target!r} at or before {what}")
    return candidates[-1], point, True


def _at_or_before(meta: dict, point: tuple) -> bool:
    if point[0] == "sequence":
        return meta["sequence"] <= point[1]
    # The newest write in the backup committed at commit_time_us (when known): a backup cut later
    # than the point, with no write between, still holds exactly the state at the point.
    newest = meta.get("commit_time_us")
    return (newest if newest is not None else meta["point_time_us"]) <= point[1]


def _iso(us: int) -> str:
    from tabledb.backup.backup import iso_utc
    return iso_utc(us)


def fetch_files(repo: Repository, meta: dict, dest: str, step=None) -> int:
    """Copy the backup's SSTables into ``dest`` as NNNNNN.sst, checking size and CRC-32C of each."""
    total = 0
    for f in meta["files"]:
        number = f["row"][2]
        local = os.path.join(dest, f"{number:06d}.sst")
        try:
            size, crc = repo.download(f["path"], local, progress=step)
        except FileNotFoundError:
            raise CorruptionError("backup file missing", file=repo.describe(f["path"]), offset=0) from None
        if size != f["size"]:
            raise CorruptionError(f"backup file truncated or resized: {size} bytes, expected {f['size']}",
                                  file=repo.describe(f["path"]), offset=min(size, f["size"]))
        if f"{crc:08x}" != f["crc32c"]:
            raise CorruptionError("backup file corrupt: CRC-32C mismatch", file=repo.describe(f["path"]), offset=0)
        total += size
    return total


def fetch_wal_files(repo: Repository, meta: dict, workdir: str, step=None) -> list[bytes]:
    """The records of the backup's own WAL segments (writes up to its sequence not in its SSTables)."""
    records: list[bytes] = []
    for f in meta.get("wal_files", ()):
        segment, _torn = read_segment(repo, f["path"], f["number"], meta["epoch"], workdir, step)
        records.extend(payload for _offset, payload in segment)
    return records


class WalPlan:
    """The archived WAL records to replay after a base backup (see ``plan_wal``)."""

    def __init__(self):
        self.records: list[bytes] = []
        self.last_sequence = 0
        self.commit_time_us: int | None = None
        self.segments = 0
        self.bytes = 0
        self.ops = 0
        self.count = 0
        self.archive_end = 0          # the last sequence the archive holds (after the base)
        self.ingests: dict[int, int] = {}   # index in records of an ingest record -> its segment


def is_ingest_record(payload: bytes) -> bool:
    """True for a WAL record that logs a bulk ingest (its first operation's kind byte)."""
    return len(payload) > BATCH_HEADER.size and payload[BATCH_HEADER.size] == KIND_INGEST


def list_segments(repo: Repository, db_id: str, epoch: int, first: int) -> list[tuple[int, str, int]]:
    """(number, object, size) of the archived segments of (db_id, epoch) numbered >= ``first``
    (one object per number: if a segment was archived twice, the first name)."""
    out = {}
    for obj in repo.list(wal_dir(db_id, epoch)):
        parsed = parse_wal_name(obj.path.rsplit("/", 1)[-1])
        if parsed is not None and parsed[0] >= first and parsed[0] not in out:
            out[parsed[0]] = (parsed[0], obj.path, obj.size)
    return [out[n] for n in sorted(out)]


def read_segment(repo: Repository, rel: str, number: int, epoch: int, workdir: str, step=None):
    """Download one archived segment, check its CRC-32C (in its name) and every record's checksum,
    and return ``(records, torn_bytes)``; CorruptionError names the object."""
    local = os.path.join(workdir, f"{number:06d}.log")
    try:
        _size, crc = repo.download(rel, local, progress=step)
    except FileNotFoundError:
        raise CorruptionError("archived WAL segment missing", file=repo.describe(rel), offset=0) from None
    parsed = parse_wal_name(rel.rsplit("/", 1)[-1])
    if parsed is None or parsed[1] != f"{crc:08x}":
        os.remove(local)
        raise CorruptionError("archived WAL segment corrupt: CRC-32C mismatch", file=repo.describe(rel), offset=0)
    try:
        records, torn, header = read_log(DEFAULT_FS, local, magic=WAL_MAGIC)
    except CorruptionError as exc:
        raise CorruptionError(f"archived WAL segment corrupt: {exc.args[0]}", file=repo.describe(rel),
                              offset=exc.offset) from None
    finally:
        try:
            os.remove(local)
        except OSError:
            pass
    if header is None or header[2] != number or header[3] != epoch:
        raise CorruptionError("archived WAL segment has the wrong header (number or epoch)",
                              file=repo.describe(rel), offset=0)
    return records, torn


def plan_wal(repo: Repository, meta: dict, point: tuple | None, workdir: str, step=None) -> WalPlan:
    """Pick the archived records after ``meta``'s sequence, up to ``point`` (None: all)."""
    plan = WalPlan()
    base_seq = meta["sequence"]
    plan.last_sequence = base_seq
    plan.archive_end = base_seq
    plan.commit_time_us = meta.get("commit_time_us")
    wal = meta.get("wal") or {}
    if not wal.get("archived") and point is None:
        return plan
    expected = base_seq + 1
    stopped = False
    for number, rel, size in list_segments(repo, meta["db_id"], meta["epoch"], wal.get("next_segment", 0)):
        records, _torn = read_segment(repo, rel, number, meta["epoch"], workdir, step)
        plan.segments += 1
        plan.bytes += size
        for offset, payload in records:
            if len(payload) < BATCH_HEADER.size:
                raise CorruptionError("malformed WAL record", file=repo.describe(rel), offset=offset)
            first, commit_us, count = BATCH_HEADER.unpack_from(payload, 0)
            last = first + count - 1
            if last < expected:
                continue            # already in the base backup's files
            if first != expected:
                gap = (f"sequences {expected}..{first - 1} are not in the WAL archive (a segment is missing, "
                       f"or a bulk ingest used them)")
                if point is None or (point[0] == "sequence" and point[1] >= expected) or (
                        point[0] == "time" and commit_us <= point[1]):
                    raise CorruptionError(f"cannot replay past sequence {expected - 1}: {gap}; restore to "
                                          f"AS OF SEQUENCE {expected - 1} or from a later backup",
                                          file=repo.describe(rel), offset=offset)
                stopped = True
                break
            if point is not None and ((point[0] == "sequence" and last > point[1])
                                      or (point[0] == "time" and commit_us > point[1])):
                stopped = True
                break
            if is_ingest_record(payload):
                plan.ingests[len(plan.records)] = number
            plan.records.append(payload)
            plan.count += 1
            plan.ops += count
            plan.last_sequence = last
            plan.commit_time_us = commit_us
            expected = last + 1
        plan.archive_end = expected - 1
        if stopped:
            break
    if point is not None and point[0] == "sequence" and not stopped and point[1] > plan.last_sequence:
        raise BackupError(f"the WAL archive of backup {meta['backup_id']} reaches sequence "
                          f"{plan.last_sequence}, not {point[1]}")
    return plan


@os_errors_as_backup_errors
def restore_database(target, path, backup=None, as_of=None, progress=None, *, finish=None) -> dict:
    """Restore into the new directory ``path``; returns what was restored (see ``RESTORE_COLUMNS``).

    ``finish(tmp_path, meta)``, if given, runs on the assembled database before the rename
    (the table-scope cleanup of ``tables.py``).
    """
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("progress must be callable")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"restore path must be a path, not {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise InvalidArgumentError(f"restore path {path} already exists")
    repo = Repository.open(target)
    meta, point, replay = choose(repo, backup, as_of)
    tmp = path + RESTORING_SUFFIX
    if os.path.exists(tmp):
        shutil.rmtree(tmp)          # left by an interrupted restore
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    total = sum(f["size"] for f in meta["files"]) + sum(f["size"] for f in meta.get("wal_files", ()))
    if replay:
        wal = meta.get("wal") or {}
        total += sum(s for _, _, s in list_segments(repo, meta["db_id"], meta["epoch"], wal.get("next_segment", 0)))
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, total), total)

    try:
        os.makedirs(tmp)
        nbytes = fetch_files(repo, meta, tmp, step)
        workdir = os.path.join(tmp, "wal-download")
        os.makedirs(workdir)
        base_records = fetch_wal_files(repo, meta, workdir, step)
        plan = WalPlan()
        plan.last_sequence = meta["sequence"]
        plan.commit_time_us = meta.get("commit_time_us")
        if replay:
            plan = plan_wal(repo, meta, point, workdir, step)
        cfs = {int(cf_id): name for cf_id, name in meta["column_families"]}
        split = min(plan.ingests, default=len(plan.records))
        Engine.assemble(tmp, column_families=cfs, files=[f["row"] for f in meta["files"]],
                        last_sequence=meta["sequence"], next_file=meta["next_file"], epoch=meta["epoch"] + 1,
                        db_id=None, wal_records=base_records + plan.records[:split])
        engine = Engine.open(tmp, create=False, background=False)
        try:
            if split < len(plan.records):
                replay_after_ingest(repo, meta, engine, plan, split, workdir, step)
                engine.flush()
        finally:
            engine.close()
        plan.records = []
        os.rmdir(workdir)
        if finish is not None:
            finish(tmp, meta)
        _fsync_dir(tmp)
        os.rename(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress is not None:
        progress(total, total)
    from tabledb.backup.backup import iso_utc
    return {"path": path, "backup_id": meta["backup_id"], "sequence": plan.last_sequence,
            "restored_to": iso_utc(plan.commit_time_us) if plan.commit_time_us else None,
            "files": len(meta["files"]), "bytes": nbytes, "wal_records": plan.count,
            "wal_rows": plan.ops, "scope": meta.get("scope", "database"), "tables": meta.get("tables") or []}


def replay_after_ingest(repo: Repository, meta: dict, engine, plan: WalPlan, start: int, workdir: str,
                        step=None) -> None:
    """Replay ``plan.records[start:]`` (the first an ingest record) into the open ``engine``:
    each ingest with its archived tables, the records between with ``Engine.replay``."""
    run: list[bytes] = []
    families = {engine.get_column_family(name).id: engine.get_column_family(name)
                for name in engine.list_column_families()}
    for i in range(start, len(plan.records)):
        payload = plan.records[i]
        segment = plan.ingests.get(i)
        if segment is None:
            run.append(payload)
            continue
        if run:
            engine.replay(run)
            run = []
        first, _commit_us, ops = decode_batch(payload)
        tables = ingest_ops(ops)
        local: dict[str, str] = {}
        for cf_id, number, _seq, size, file_crc in tables:
            rel = ingest_object(meta["db_id"], meta["epoch"], segment, number, file_crc)
            path = os.path.join(workdir, f"ingest-{number:06d}.sst")
            try:
                got, _crc = repo.download(rel, path, progress=step)
            except FileNotFoundError:
                raise CorruptionError(f"archived ingested table missing: the bulk load logged at sequence {first} "
                                      f"cannot be replayed (restore to AS OF SEQUENCE {first - 1} or from a later "
                                      "backup)", file=repo.describe(rel), offset=0) from None
            if got != size:
                raise CorruptionError(f"archived ingested table truncated or resized: {got} bytes, expected {size}",
                                      file=repo.describe(rel), offset=min(got, size))
            local[path] = rel
        if len({cf_id for cf_id, *_ in tables}) != 1 or tables[0][0] not in families:
            raise CorruptionError(f"the ingest record at sequence {first} names an unknown column family",
                                  file=repo.describe(wal_dir(meta["db_id"], meta["epoch"])), offset=0)
        try:
            engine.ingest(list(local), cf=families[tables[0][0]], move=True)
        except CorruptionError as exc:
            rel = local.get(exc.file, exc.file)
            raise CorruptionError(f"archived ingested table corrupt: {exc.args[0]}", file=repo.describe(rel),
                                  offset=exc.offset) from None
        if engine.latest_sequence != first + len(tables) - 1:
            raise CorruptionError(f"the replayed ingest took sequences up to {engine.latest_sequence}, the "
                                  f"archive says {first + len(tables) - 1}",
                                  file=repo.describe(wal_dir(meta["db_id"], meta["epoch"])), offset=0)
    if run:
        engine.replay(run)


RESTORE_COLUMNS = ["path", "backup_id", "sequence", "restored_to", "files", "bytes", "wal_records"]
RESTORE_TYPES = ["TEXT", "TEXT", "INTEGER", "TEXT", "INTEGER", "INTEGER", "INTEGER"]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
