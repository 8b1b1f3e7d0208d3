"""The backup target: where backups live, and its layout (docs/format.md, "Backup target layout").

A target is a local directory, a ``file://`` URI, or any URI that
``pyarrow.fs.FileSystem.from_uri`` understands (``s3://bucket/prefix?endpoint_override=...``)::

    TABLEDB-BACKUP                               marker: {"format": "tabledb-backup", "version": 1}
    backups/<backup_id>.meta                     one per complete backup: its metadata, written last
    sst/<db_id>/<number:06d>-<file_crc:08x>.sst  SSTables, shared by every backup that holds them
    wal/<db_id>/<epoch>/<segment:06d>-<crc:08x>.log   archived WAL segments (point-in-time restore)
    wal/<db_id>/<epoch>/ingest/<segment:06d>-<number:06d>-<file_crc:08x>.sst
                                                 tables bulk-ingested while the WAL was archived: the
                                                 segment whose ingest record names them, their number
                                                 and footer file_crc (replayed with that record)

Objects appear whole or not at all: on a local filesystem an object is written
to ``<name>.tmp-<random>``, fsynced and renamed; an object store makes an object
visible only once its upload completes. So an object under its final name is
complete, and an interrupted backup leaves at most unreferenced objects (which
the next backup reuses after checking them) and stray ``.tmp-`` files.

A ``.meta`` file is two lines: the metadata as compact UTF-8 JSON, then the
CRC-32C of that line's bytes as 8 lowercase hex digits.

Thread-safety: a Repository may be used from several threads (pyarrow's
filesystems are thread-safe; nothing here keeps mutable state but caches of
immutable facts).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass

import crc32c as _crc32c
import pyarrow.fs as pafs

from tabledb.errors import CorruptionError, InvalidArgumentError, OperationalError

MARKER = "TABLEDB-BACKUP"
FORMAT = "tabledb-backup"
FORMAT_VERSION = 1
BACKUPS_DIR = "backups"
META_SUFFIX = ".meta"
CHUNK = 1 << 20

_BACKUP_ID = re.compile(r"^\d{8}T\d{6}-\d{4,}$")
_WAL_NAME = re.compile(r"^(\d+)-([0-9a-f]{8})\.log$")
_INGEST_NAME = re.compile(r"^(\d+)-(\d+)-([0-9a-f]{8})\.sst$")


class BackupError(OperationalError):
    """A backup operation could not be done (no such backup, bad target, ...)."""


def os_errors_as_backup_errors(fn):
    """Let an OSError (a filesystem or object store failure) leave ``fn`` as BackupError."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            raise BackupError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from exc
    return wrapper


def crc_hex(crc: int) -> str:
    return f"{crc:08x}"


def sst_object(db_id: str, number: int, file_crc: int) -> str:
    """The object name of an SSTable: its database, number and the whole-file CRC from its footer."""
    return f"sst/{db_id}/{number:06d}-{file_crc:08x}.sst"


def wal_dir(db_id: str, epoch: int) -> str:
    return f"wal/{db_id}/{epoch}"


def wal_object(db_id: str, epoch: int, number: int, crc: int) -> str:
    """The object name of an archived WAL segment: its number and the CRC-32C of its bytes."""
    return f"{wal_dir(db_id, epoch)}/{number:06d}-{crc:08x}.log"


def parse_wal_name(name: str) -> tuple[int, str] | None:
    """(segment number, CRC hex) of an archived segment's file name, else None."""
    m = _WAL_NAME.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


def ingest_dir(db_id: str, epoch: int) -> str:
    return f"{wal_dir(db_id, epoch)}/ingest"


def ingest_object(db_id: str, epoch: int, segment: int, number: int, file_crc: int) -> str:
    """The object name of a table ingested while the WAL was archived (see the module docstring)."""
    return f"{ingest_dir(db_id, epoch)}/{segment:06d}-{number:06d}-{file_crc:08x}.sst"


def parse_ingest_name(name: str) -> tuple[int, int, str] | None:
    """(segment, table number, footer file_crc hex) of an archived ingested table's name, else None."""
    m = _INGEST_NAME.match(name)
    return (int(m.group(1)), int(m.group(2)), m.group(3)) if m else None


def meta_object(backup_id: str) -> str:
    return f"{BACKUPS_DIR}/{backup_id}{META_SUFFIX}"


def encode_meta(meta: dict) -> bytes:
    body = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return body + b"\n" + crc_hex(_crc32c.crc32c(body)).encode() + b"\n"


def decode_meta(data: bytes, name: str) -> dict:
    """Check and parse a ``.meta`` file; CorruptionError (naming ``name``) when it is damaged."""
    lines = data.split(b"\n")
    if len(lines) != 3 or lines[2] != b"" or len(lines[1]) != 8:
        raise CorruptionError("backup metadata is not two lines (JSON, CRC)", file=name, offset=0)
    body, crc = lines[0], lines[1]
    if crc_hex(_crc32c.crc32c(body)).encode() != crc:
        raise CorruptionError("backup metadata checksum mismatch", file=name, offset=0)
    try:
        meta = json.loads(body)
    except ValueError:
        raise CorruptionError("backup metadata is not JSON", file=name, offset=0) from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("version"), int):
        raise CorruptionError("not tabledb backup metadata", file=name, offset=0)
    if meta["version"] > FORMAT_VERSION:
        raise CorruptionError(f"backup metadata version {meta['version']} is newer than this tabledb",
                              file=name, offset=0)
    return meta


@dataclass(frozen=True)
class ObjectInfo:
    path: str      # relative to the target
    size: int


class Repository:
    """A backup target opened through pyarrow.fs. Paths given to methods are relative ('sst/...')."""

    def __init__(self, target: str, fs: pafs.FileSystem, base: str):
        self.target = target
        self.fs = fs
        self.base = base.rstrip("/")
        self.local = isinstance(fs, pafs.LocalFileSystem)

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, target, create: bool = False) -> "Repository":
        """Open ``target``; with ``create``, make it (and its marker) if missing.

        Without ``create`` a target that holds no marker raises BackupError.
        """
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        if not isinstance(target, str) or not target:
            raise InvalidArgumentError(f"backup target must be a non-empty path or URI, not {target!r}")
        if "://" in target:
            try:
                fs, base = pafs.FileSystem.from_uri(target)
            except (ValueError, OSError, TypeError) as exc:
                raise BackupError(f"cannot open backup target {target!r}: {exc}") from None
        else:
            target = os.path.abspath(target)      # the archiver remembers it: it must not depend on the cwd
            fs, base = pafs.LocalFileSystem(), target
        repo = cls(target, fs, base)
        marker = repo.read_optional(MARKER)
        if marker is None:
            if not create:
                raise BackupError(f"no tabledb backups at {target!r} (it has no {MARKER} marker)")
            if repo.local:
                os.makedirs(repo.base, exist_ok=True)
            repo.write_atomic(MARKER, json.dumps({"format": FORMAT, "version": FORMAT_VERSION}).encode() + b"\n")
        else:
            try:
                info = json.loads(marker)
                ok = info.get("format") == FORMAT
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                raise BackupError(f"{target!r} is not a tabledb backup target (bad {MARKER} marker)")
            if info.get("version", 1) > FORMAT_VERSION:
                raise BackupError(f"backup target {target!r} has format version {info['version']}, "
                                  f"newer than this tabledb ({FORMAT_VERSION})")
        return repo

    def full(self, rel: str) -> str:
        return f"{self.base}/{rel}" if self.base else rel

    def describe(self, rel: str) -> str:
        """A name for ``rel`` fit for an error message: the target and the object."""
        return f"{self.target.rstrip('/')}/{rel}"

    # -- reading ------------------------------------------------------------------------
    def info(self, rel: str) -> ObjectInfo | None:
        fi = self.fs.get_file_info(self.full(rel))
        if fi.type != pafs.FileType.File:
            return None
        return ObjectInfo(rel, fi.size)

    def list(self, rel_dir: str, recursive: bool = False) -> list[ObjectInfo]:
        """Objects under ``rel_dir`` (not directories), sorted by path; [] when it does not exist."""
        sel = pafs.FileSelector(self.full(rel_dir), allow_not_found=True, recursive=recursive)
        out = []
        prefix = self.base + "/" if self.base else ""
        for fi in self.fs.get_file_info(sel):
            if fi.type != pafs.FileType.File:
                continue
            path = fi.path[len(prefix):] if fi.path.startswith(prefix) else fi.path
            if ".tmp-" in path.rsplit("/", 1)[-1]:
                continue
            out.append(ObjectInfo(path, fi.size))
        out.sort(key=lambda o: o.path)
        return out

    def read(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.full(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if self.info(rel) is None:
                raise FileNotFoundError(self.describe(rel)) from None
            raise BackupError(f"cannot read {self.describe(rel)}: {exc}") from None

    def read_optional(self, rel: str) -> bytes | None:
        if self.info(rel) is None:
            return None
        try:
            return self.read(rel)
        except FileNotFoundError:
            return None

    def chunks(self, rel: str):
        """The bytes of ``rel`` in chunks of about 1 MiB. FileNotFoundError when it is missing."""
        if self.info(rel) is None:
            raise FileNotFoundError(self.describe(rel))
        with self.fs.open_input_stream(self.full(rel)) as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    return
                yield data

    def checksum(self, rel: str, progress=None) -> tuple[int, int]:
        """(size, CRC-32C) of ``rel``, reading every byte."""
        crc = 0
        size = 0
        for data in self.chunks(rel):
            crc = _crc32c.crc32c(data, crc)
            size += len(data)
            if progress is not None:
                progress(len(data))
        return size, crc

    def download(self, rel: str, local_path: str, progress=None) -> tuple[int, int]:
        """Copy ``rel`` to ``local_path`` (created; fsynced); returns (size, CRC-32C) of what was read."""
        crc = 0
        size = 0
        with open(local_path, "wb") as out:
            for data in self.chunks(rel):
                out.write(data)
                crc = _crc32c.crc32c(data, crc)
                size += len(data)
                if progress is not None:
                    progress(len(data))
            out.flush()
            os.fsync(out.fileno())
        return size, crc

    # -- writing ------------------------------------------------------------------------
    def _ensure_parent(self, rel: str) -> None:
        if self.local:
            os.makedirs(os.path.dirname(self.full(rel)), exist_ok=True)

    def _open_output(self, rel: str):
        """(stream, temp name or None): local objects go to a temp name first."""
        self._ensure_parent(rel)
        if self.local:
            tmp = f"{rel}.tmp-{secrets.token_hex(4)}"
            return _LocalOutput(self.full(tmp)), tmp
        return self.fs.open_output_stream(self.full(rel)), None

    def _publish(self, rel: str, tmp: str | None) -> None:
        if tmp is None:
            return
        full = self.full(rel)
        os.replace(self.full(tmp), full)       # the bytes were synced when the stream closed
        _fsync_path(os.path.dirname(full))

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Write the object ``rel`` whole: readers see the old object (or none) or the new one."""
        stream, tmp = self._open_output(rel)
        try:
            stream.write(data)
        except BaseException:
            stream.close()
            self._discard(tmp)
            raise
        stream.close()
        self._publish(rel, tmp)

    def upload(self, local_path: str, rel: str, progress=None, length: int | None = None,
               pace=None) -> tuple[int, int]:
        """Copy the local file (its first ``length`` bytes if given) to object ``rel``, replacing it;
        returns (size, CRC-32C) of the bytes sent. ``pace(seconds)``, if given, is called after each
        chunk with the time the chunk took (it may sleep to leave the machine to others)."""
        stream, tmp = self._open_output(rel)
        crc = 0
        size = 0
        try:
            with open(local_path, "rb") as src:
                while True:
                    started = time.perf_counter()
                    want = CHUNK if length is None else min(CHUNK, length - size)
                    data = src.read(want) if want > 0 else b""
                    if not data:
                        break
                    stream.write(data)
                    crc = _crc32c.crc32c(data, crc)
                    size += len(data)
                    if progress is not None:
                        progress(len(data))
                    if pace is not None:
                        pace(time.perf_counter() - started)
        except BaseException:
            stream.close()
            self._discard(tmp)
            raise
        stream.close()
        self._publish(rel, tmp)
        return size, crc

    def _discard(self, tmp: str | None) -> None:
        if tmp is not None:
            try:
                self.fs.delete_file(self.full(tmp))
            except OSError:
                pass

    def delete(self, rel: str) -> bool:
        try:
            self.fs.delete_file(self.full(rel))
            return True
        except FileNotFoundError:
            return False
        except OSError:
            if self.info(rel) is None:
                return False
            raise

    # -- backups --------------------------------------------------------------------------
    def backup_ids(self) -> list[str]:
        """Ids of the backups whose metadata is present, oldest first (ids sort by time)."""
        ids = []
        for obj in self.list(BACKUPS_DIR):
            name = obj.path.rsplit("/", 1)[-1]
            if name.endswith(META_SUFFIX):
                ids.append(name[:-len(META_SUFFIX)])
        return sorted(ids)

    def read_meta(self, backup_id: str) -> dict:
        """The metadata of ``backup_id``; BackupError when absent, CorruptionError when damaged."""
        rel = meta_object(backup_id)
        data = self.read_optional(rel)
        if data is None:
            raise BackupError(f"no backup {backup_id!r} in {self.target!r}")
        meta = decode_meta(data, self.describe(rel))
        if meta.get("backup_id") != backup_id:
            raise CorruptionError(f"backup metadata names another backup ({meta.get('backup_id')!r})",
                                  file=self.describe(rel), offset=0)
        return meta

    def backups(self, skip_damaged: bool = True) -> list[dict]:
        """Metadata of every backup, oldest first. A damaged one is left out (``skip_damaged``) or raises."""
        out = []
        for backup_id in self.backup_ids():
            try:
                out.append(self.read_meta(backup_id))
            except CorruptionError:
                if not skip_damaged:
                    raise
        return out

    def write_meta(self, meta: dict) -> None:
        self.write_atomic(meta_object(meta["backup_id"]), encode_meta(meta))

    def new_backup_id(self, now_s: float) -> str:
        """A fresh id sorting after every id in the target: UTC time to the second, then a counter."""
        import datetime as _dt
        stamp = _dt.datetime.fromtimestamp(now_s, _dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        existing = self.backup_ids()
        counter = 1
        if existing:
            last = existing[-1]
            last_stamp, _, last_counter = last.partition("-")
            if last_stamp >= stamp:
                stamp = last_stamp
                counter = int(last_counter) + 1 if last_counter.isdigit() else 1
        return f"{stamp}-{counter:04d}"


SYNC_EVERY = 4 << 20


class _LocalOutput:
    """A local object being written: synced every ``SYNC_EVERY`` bytes and on close.

    Syncing as it goes keeps little unsynced data in the page cache, so a database writer's
    commit fsync on the same disk never waits behind a whole SSTable's worth of dirty pages.
    """

    def __init__(self, path: str):
        self._f = open(path, "wb", buffering=0)
        self._unsynced = 0

    def write(self, data) -> None:
        # An unbuffered file's write() is one write(2): on a disk filling up it writes what fits and
        # returns the short count (the next call raises ENOSPC). Ignoring the count would publish
        # the object cut short under its name.
        view = memoryview(data).cast("B")
        while view:
            view = view[self._f.write(view):]
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            os.fdatasync(self._f.fileno())
            self._unsynced = 0

    def close(self) -> None:
        if self._f.closed:
            return
        try:
            os.fsync(self._f.fileno())
        finally:
            self._f.close()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_backup_id(text: str) -> bool:
    return bool(_BACKUP_ID.match(text))
