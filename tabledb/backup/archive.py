"""The WAL archiver: copies every sealed WAL segment of a database to its backup target.

Once a ``BACKUP ... WITH (wal_archive = true)`` (the default) has run, the
database keeps archiving: it remembers the target in the file ``BACKUP-ARCHIVE``
of its directory (JSON ``{"target": ..., "db_id": ...}``), asks the engine to
keep sealed WAL segments (``Engine.hold_wal``) until they are copied, and runs
one background thread per open engine that

* seals the active WAL segment every ``interval`` seconds when it holds any
  write (``Engine.seal_wal``), so a lost database loses at most that window;
* copies each sealed segment not yet copied to ``wal/<db_id>/<epoch>/<n>-<crc>.log``
  (first the tables bulk-ingested in it, which the engine keeps linked for the
  archive: ``Engine.ingest_links``, to ``wal/<db_id>/<epoch>/ingest/``) and then
  moves the engine's hold past it (``hold_wal(n + 1)``), which lets the engine
  delete it once flushed.

The hold is durable, so segments sealed while the archiver was not running
(the process stopped, the target was unreachable) stay in the database
directory; the archiver copies them when the database is opened again
(``resume``, called by ``tabledb.connect``). A database archives to one target
at a time: a backup with ``wal_archive = true`` to another target first
finishes copying to the old one, then moves archiving there; one with
``wal_archive = false`` to the target being archived stops archiving (the
engine's hold is dropped and ``BACKUP-ARCHIVE`` removed), to another target it
leaves archiving as it is.

Thread-safety: every public function may be called from any thread; one lock
per archiver serialises its uploads.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import weakref

import crc32c as _crc32c

from tabledb.errors import ClosedError, CorruptionError, Error
from tabledb.backup.repository import Repository, ingest_object, wal_object

ARCHIVE_FILE = "BACKUP-ARCHIVE"
DEFAULT_INTERVAL = 60.0

log = logging.getLogger("tabledb.backup")

_archivers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def config_path(engine) -> str:
    return os.path.join(engine.path, ARCHIVE_FILE)


def read_config(engine) -> dict | None:
    path = config_path(engine)
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path)
        return None
    if not isinstance(config, dict) or not isinstance(config.get("target"), str):
        return None
    if config.get("db_id") not in (None, engine.db_id):
        return None   # copied from another database (a checkpoint, say): not ours to follow
    return config


def write_config(engine, config: dict | None) -> None:
    """Replace (None: remove) the archive configuration, atomically and durably."""
    path = config_path(engine)
    if config is None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(config, sort_keys=True).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(engine.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Archiver:
    """Archives the sealed WAL segments of one engine to one target. Use :func:`start` / :func:`get`."""

    def __init__(self, engine, target: str, interval: float):
        self.engine = engine
        self.target = target
        self.interval = interval
        self.lock = threading.RLock()
        self.errors = 0
        self.last_error: Exception | None = None
        self.segments_copied = 0
        self._repo: Repository | None = None
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = Repository.open(self.target, create=True)
        return self._repo

    def start_thread(self) -> None:
        if self._thread is None and self.interval and self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="tabledb-wal-archiver", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _loop(self) -> None:
        engine = self.engine
        while not self._stopped:
            # Wait in short slices so that a closed engine lets its archiver go promptly.
            waited = 0.0
            while waited < self.interval and not self._stopped and not engine.closed:
                step = min(0.2, self.interval - waited)
                if self._wake.wait(step):
                    self._wake.clear()
                    break
                waited += step
            if self._stopped or engine.closed:
                return
            try:
                engine.seal_wal()
                self.copy_sealed()
            except ClosedError:
                return
            except Exception as exc:   # keep going: the target may come back; the hold keeps the segments
                self.errors += 1
                self.last_error = exc
                log.warning("WAL archiving to %s failed: %s", self.target, exc)

    def copy_sealed(self, up_to: int | None = None, progress=None, sent: list | None = None) -> list[int]:
        """Copy every held, sealed segment (numbered below ``up_to`` if given) to the target, oldest
        first, moving the engine's hold past each one. Returns the numbers copied; ``sent``, if
        given, gets ``(number, bytes)`` of every segment uploaded."""
        engine = self.engine
        done = []
        with self.lock:
            if self._stopped:
                return done
            db_id, epoch = engine.db_id, engine.epoch
            for number, path in engine.wal_segments():
                if self._stopped:
                    break
                hold = engine.wal_hold
                if not hold or number < hold:
                    continue   # not held: already copied (or archiving never held it)
                if up_to is not None and number >= up_to:
                    break
                if os.path.exists(path):
                    for _segment, table, link in engine.ingest_links(number):
                        self.copy_ingested(db_id, epoch, number, table, link, progress)
                    length, crc = wal_length(path)
                    name = wal_object(db_id, epoch, number, crc)
                    size, sent_crc = self.repo.upload(path, name, progress=progress, length=length)
                    if (size, sent_crc) != (length, crc):   # a sealed segment never changes: a failing disk
                        self.repo.delete(name)
                        raise OSError(f"WAL segment {path} changed while it was archived")
                    self.segments_copied += 1
                    if sent is not None:
                        sent.append((number, size))
                    done.append(number)
                engine.hold_wal(number + 1)
        return done


    def copy_ingested(self, db_id: str, epoch: int, segment: int, table: int, path: str, progress=None) -> None:
        """Copy an ingested table (kept linked by the engine) before the segment that logged it."""
        name = ingest_object(db_id, epoch, segment, table, footer_file_crc(path))
        info = self.repo.info(name)
        if info is not None and info.size == os.path.getsize(path):
            return        # copied before a crash or a failed segment upload
        self.repo.upload(path, name, progress=progress)


SST_FOOTER_BYTES = 68
SST_FILE_CRC_OFFSET = 48   # the footer's file_crc field (docs/format.md, "Footer")
_U32 = struct.Struct("<I")


def footer_file_crc(path: str) -> int:
    """The masked ``file_crc`` of an SSTable's footer (a CRC of every byte before the footer)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < SST_FOOTER_BYTES:
            raise CorruptionError("SSTable shorter than its footer", file=path, offset=0)
        f.seek(size - SST_FOOTER_BYTES + SST_FILE_CRC_OFFSET)
        return _U32.unpack(f.read(4))[0]


_FRAGMENT = struct.Struct("<IHB")   # crc, length, type: a log fragment header (docs/format.md)
_BLOCK = 32768


def wal_length(path: str) -> tuple[int, int]:
    """(length, CRC-32C) of the bytes of a WAL segment worth archiving: up to where its records end.

    The engine preallocates segments, so a sealed one may end in zeros; they are
    cut off when nothing but zeros follows the last fragment (otherwise the whole
    file is kept, damage and all, for the reader to judge).
    """
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    end = size
    pos = 0
    while pos + _FRAGMENT.size <= size:
        block_end = min(size, (pos // _BLOCK + 1) * _BLOCK)
        if block_end - pos < _FRAGMENT.size:
            pos = block_end
            continue
        crc, length, kind = _FRAGMENT.unpack_from(data, pos)
        if crc == 0 and length == 0 and kind == 0:
            if data.count(0, pos) == size - pos:
                end = pos
            break
        pos += _FRAGMENT.size + length
    return end, _crc32c.crc32c(memoryview(data)[:end])


def current_target(engine) -> str | None:
    """The target ``engine``'s WAL is archived to (running or configured), or None."""
    archiver = get(engine)
    if archiver is not None and not archiver._stopped:
        return archiver.target
    config = read_config(engine)
    return config["target"] if config is not None else None


def get(engine) -> Archiver | None:
    with _registry_lock:
        return _archivers.get(engine)


def start(engine, target: str, interval: float | None = None) -> Archiver:
    """Archive ``engine``'s WAL to ``target`` from now on (switching from another target after
    copying what that one still lacks), remember it in ``BACKUP-ARCHIVE``, and return the archiver."""
    with _registry_lock:
        current = _archivers.get(engine)
        if current is not None and current.target == target and not current._stopped:
            if interval is not None and interval != current.interval:
                current.interval = interval
            return current
        if current is not None:
            try:
                engine.seal_wal()          # the old target gets every write up to the switch
                current.copy_sealed()
            except Error as exc:
                log.warning("could not finish archiving to %s before moving to %s: %s", current.target, target, exc)
            current.stop()
        archiver = Archiver(engine, target, interval if interval is not None else
                            (current.interval if current is not None else DEFAULT_INTERVAL))
        _archivers[engine] = archiver
    write_config(engine, {"target": target, "db_id": engine.db_id})
    archiver.start_thread()
    return archiver


def resume(engine, interval: float | None = None) -> Archiver | None:
    """At open: if the database archives its WAL, start its archiver and copy what is pending.

    An unreachable target is logged, not raised: the hold keeps the segments for later.
    """
    config = read_config(engine)
    if config is None:
        return None
    with _registry_lock:
        current = _archivers.get(engine)
        if current is not None and not current._stopped:
            if interval is not None:
                current.interval = interval
            return current
        archiver = Archiver(engine, config["target"], interval if interval is not None else DEFAULT_INTERVAL)
        _archivers[engine] = archiver
    archiver.start_thread()
    archiver._wake.set()   # catch up now, in the archiver's thread
    return archiver


def stop(engine, release: bool = False) -> None:
    """Stop archiving ``engine``'s WAL. With ``release``, forget the target and drop the hold."""
    with _registry_lock:
        current = _archivers.pop(engine, None)
    if current is not None:
        current.stop()
        with current.lock:      # let a copy in progress finish: it moves the hold
            pass
    if release:
        write_config(engine, None)
        engine.hold_wal(None)
