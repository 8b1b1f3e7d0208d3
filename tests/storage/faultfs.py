"""A filesystem for tests that can lose power and fail I/O: ``FaultInjectionFS``.

It subclasses :class:`tabledb.storage.fs.FileSystem` and works on real files in
real directories, but it keeps its own account of what is *durable*:

- per file (an "inode": the data behind one or more names), how many bytes a
  ``sync`` made durable (``synced_len``);
- per directory, which names a ``sync_dir`` made durable (the *durable view*),
  next to the names that exist now (the *live view*).

``crash()`` simulates a power loss at this instant:

1. every lock handed out by ``lock()`` is released and every file opened for
   writing is closed without writing its user-space buffer (process memory is gone);
2. every file is cut back to its last synced length (unsynced bytes are gone);
3. with ``undo_dir_ops=True`` (the default, the POSIX worst case) every
   directory is put back to its durable view: files created since the last
   ``sync_dir`` of their folder disappear, and names removed or renamed since
   then come back with the durable bytes they had (kept in memory when they
   were unlinked). With ``undo_dir_ops=False`` the directory operations all
   survive (a filesystem that journals metadata in order), and only file data
   is lost.
4. the filesystem is dead: every later call through it (or through a file it
   opened) raises ``StorageIOError`` (EIO), so threads of the crashed engine
   cannot touch the files any more. Reopen with a fresh ``FaultInjectionFS``;
   on first use of a directory it takes every file there as durable.

What it does not model: torn sectors inside the synced part, reordering of
data within a file, durability of directories themselves (``makedirs`` is
permanent, and so is the removal of a directory by other means, such as the
SQL layer's ``shutil.rmtree`` of its bulk-write work directories), and syncs through a handle of a file already unlinked (its bytes
are captured at unlink time). Files it did not create and did not find when it
first looked at a directory (the LOCK file, say) are left alone.

Fault injection (each takes an optional ``match``: an ``fnmatch`` pattern on
the file's base name such as ``"*.log"``, or a ``callable(path) -> bool``):

- ``fail_writes_after(n)``: the next ``n`` appends succeed, later ones raise EIO;
- ``fail_syncs(after=0, times=None, dirs=False)``: syncs fail with EIO (a failed
  sync makes nothing durable); ``dirs=True`` fails ``sync_dir`` as well;
- ``enospc_after_bytes(n)``: ``n`` more bytes fit, then appends raise ENOSPC
  (the part of an append that still fits is written: a short write);
- ``clear_faults()``.

Injected errors are ``OSError`` raised inside the wrapped file and turned into
:class:`tabledb.errors.StorageIOError` there, as ``OSWritableFile`` does.

Thread-safety: every operation holds one lock, so a crash happens between two
whole operations and never in the middle of one.
"""

from __future__ import annotations

import errno as _errno
import fnmatch
import itertools
import os
import threading

from tabledb.errors import StorageIOError
from tabledb.storage.fs import FileSystem, OSRandomAccessFile

_inode_ids = itertools.count(1)


def _io_error(exc: OSError, what: str, path: str) -> StorageIOError:
    return StorageIOError(f"{what} failed for {path}: {exc.strerror or exc}", path=path, errno=exc.errno)


def _injected(err: int, what: str) -> OSError:
    return OSError(err, f"{os.strerror(err)} (injected {what})")


class _Inode:
    """The data of one file: its durable length, its live names, its durable bytes once unlinked."""

    __slots__ = ("id", "synced_len", "names", "saved")

    def __init__(self, synced_len: int = 0):
        self.id = next(_inode_ids)
        self.synced_len = synced_len
        self.names: set[str] = set()   # absolute paths it is live under
        self.saved: bytes | None = None  # its durable bytes, captured when the last name went

    def __repr__(self) -> str:
        return f"_Inode({self.id}, synced={self.synced_len}, names={sorted(self.names)})"


class _Dir:
    __slots__ = ("live", "durable")

    def __init__(self):
        self.live: dict[str, _Inode] = {}      # name -> inode, as the directory is now
        self.durable: dict[str, _Inode] = {}   # name -> inode, as of the last sync_dir


class _Rule:
    """One armed fault: which files, and how many more operations (or bytes) pass before it fires."""

    __slots__ = ("match", "budget", "times", "err", "dirs")

    def __init__(self, match, budget, times=None, err=_errno.EIO, dirs=False):
        self.match = match
        self.budget = budget      # operations (or bytes) that still succeed
        self.times = times        # failures left (None: forever)
        self.err = err
        self.dirs = dirs

    def applies(self, path: str) -> bool:
        m = self.match
        if m is None:
            return True
        if callable(m):
            return bool(m(path))
        return fnmatch.fnmatch(os.path.basename(path), m)


class FaultWritableFile:
    """An append-only file with its own user-space buffer; every call goes through its ``FaultInjectionFS``.

    Same contract as ``OSWritableFile``: ``append`` buffers (up to ``buffer_size``),
    ``flush`` hands the buffer to the OS, ``sync`` makes it durable, ``close``
    flushes without syncing.
    """

    __slots__ = ("path", "_fs", "_inode", "_fd", "_buf", "_size", "_os_size", "_buffer_size")

    def __init__(self, fs: "FaultInjectionFS", path: str, inode: _Inode, fd: int, size: int,
                 buffer_size: int = 1 << 16):
        self.path = path
        self._fs = fs
        self._inode = inode
        self._fd = fd
        self._buf = bytearray()
        self._size = size
        self._os_size = size
        self._buffer_size = buffer_size

    def append(self, data) -> None:
        fs = self._fs
        with fs._lock:
            fs._check_alive(self.path)
            self._check_open()
            data = bytes(data)
            fs.stats["appends"] += 1
            try:
                fs._before_append(self.path)
                fit = fs._bytes_that_fit(self.path, len(data))
                if fit < len(data):
                    self._buf += data[:fit]
                    self._size += fit
                    self._write_out()
                    fs.stats["injected_faults"] += 1
                    raise _injected(_errno.ENOSPC, "ENOSPC")
                self._buf += data
                self._size += len(data)
                if len(self._buf) >= self._buffer_size:
                    self._write_out()
            except OSError as exc:
                raise _io_error(exc, "write", self.path) from exc

    def _write_out(self) -> None:
        """REQUIRES: the fs lock. Hand the buffer to the OS."""
        data = bytes(self._buf)
        self._buf.clear()
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:])
                done += n
                self._os_size += n
                self._fs.stats["bytes_to_os"] += n
        finally:
            if done < len(data):   # keep what the OS did not take, as a BufferedWriter does
                self._buf[:0] = data[done:]

    def flush(self) -> None:
        fs = self._fs
        with fs._lock:
            fs._check_alive(self.path)
            self._check_open()
            try:
                self._write_out()
            except OSError as exc:
                raise _io_error(exc, "write", self.path) from exc

    def sync(self) -> None:
        fs = self._fs
        with fs._lock:
            fs._check_alive(self.path)
            self._check_open()
            fs.stats["syncs"] += 1
            try:
                self._write_out()
                fs._before_sync(self.path)
                os.fsync(self._fd)
            except OSError as exc:
                raise _io_error(exc, "fsync", self.path) from exc
            self._inode.synced_len = self._os_size

    def close(self) -> None:
        fs = self._fs
        with fs._lock:
            if self._fd < 0:
                return
            if fs._dead:   # the process is gone: its buffer never reaches the OS
                self._drop()
                return
            try:
                self._write_out()
            except OSError as exc:
                self._drop()
                raise _io_error(exc, "close", self.path) from exc
            self._drop()

    def _drop(self) -> None:
        """REQUIRES: the fs lock. Close the descriptor, forget the buffer."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._buf.clear()
        self._fs._open_files.discard(self)

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"I/O operation on closed file {self.path}")

    def size(self) -> int:
        return self._size


class FaultReadableFile:
    """``OSRandomAccessFile`` that stops working once its filesystem crashed."""

    __slots__ = ("path", "_fs", "_inner")

    def __init__(self, fs: "FaultInjectionFS", inner: OSRandomAccessFile):
        self.path = inner.path
        self._fs = fs
        self._inner = inner

    def read(self, offset: int, n: int) -> bytes:
        fs = self._fs
        fs._check_alive(self.path)
        if fs.read_log is not None:
            fs.read_log.append((self.path, offset, n))
        return self._inner.read(offset, n)

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        self._inner.close()


class FaultInjectionFS(FileSystem):
    """A real filesystem that tracks durability, can ``crash()``, and can fail I/O on purpose.

    See the module docstring for the crash model. ``stats`` counts appends,
    syncs, directory syncs, bytes handed to the OS and injected faults. Set
    ``read_log`` to a list to record ``(path, offset, n)`` of every read of a
    file opened with ``open_readable``.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._dirs: dict[str, _Dir] = {}
        self._open_files: set[FaultWritableFile] = set()
        self._locks: list = []
        self._dead = False
        self._write_rules: list[_Rule] = []
        self._sync_rules: list[_Rule] = []
        self._space_rules: list[_Rule] = []
        self.read_log: list | None = None   # set to [] to record (path, offset, n) of every read
        self.stats = {"appends": 0, "syncs": 0, "dir_syncs": 0, "bytes_to_os": 0, "injected_faults": 0,
                      "crashes": 0}

    # ------------------------------------------------------------------ bookkeeping
    def _check_alive(self, path: str) -> None:
        if self._dead:
            raise StorageIOError(f"I/O on {path} after a simulated crash", path=path, errno=_errno.EIO)

    def _dir(self, dirpath: str) -> _Dir:
        """REQUIRES: the lock. The tracking record of ``dirpath``; on first use every file in it is durable."""
        d = self._dirs.get(dirpath)
        if d is None:
            d = _Dir()
            try:
                names = os.listdir(dirpath)
            except FileNotFoundError:
                names = []
            for name in names:
                full = os.path.join(dirpath, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    inode = _Inode(os.path.getsize(full))
                    inode.names.add(full)
                    d.live[name] = inode
            d.durable = dict(d.live)
            self._dirs[dirpath] = d
        return d

    def _split(self, path: str) -> tuple[str, str, _Dir]:
        full = os.path.abspath(path)
        dirpath, name = os.path.split(full)
        return full, name, self._dir(dirpath)

    def _durable_bytes(self, inode: _Inode) -> bytes:
        """REQUIRES: the lock. The first ``synced_len`` bytes of ``inode``."""
        if inode.saved is not None and not inode.names:
            return inode.saved[:inode.synced_len]
        for full in inode.names:
            try:
                with open(full, "rb") as f:
                    data = f.read(inode.synced_len)
            except FileNotFoundError:   # removed behind our back
                continue
            return data + b"\x00" * (inode.synced_len - len(data))
        return b""

    def _unlink_name(self, d: _Dir, name: str, full: str) -> None:
        """REQUIRES: the lock. ``name`` leaves the live view; keep its bytes if it was its last name."""
        inode = d.live.pop(name, None)
        if inode is None:
            return
        if len(inode.names) == 1 and inode.synced_len and inode.saved is None:
            inode.saved = self._durable_bytes(inode)
        inode.names.discard(full)

    # ------------------------------------------------------------------ faults
    def fail_writes_after(self, n: int, match=None, *, err: int = _errno.EIO) -> None:
        """Let ``n`` more appends (to matching files) succeed, then fail every later one with ``err``."""
        with self._lock:
            self._write_rules.append(_Rule(match, n, err=err))

    def fail_syncs(self, match=None, *, after: int = 0, times: int | None = None, dirs: bool = False,
                   err: int = _errno.EIO) -> None:
        """Fail syncs of matching files (after ``after`` successes, ``times`` times or forever);
        ``dirs=True`` fails ``sync_dir`` of matching directories too."""
        with self._lock:
            self._sync_rules.append(_Rule(match, after, times=times, err=err, dirs=dirs))

    def enospc_after_bytes(self, n: int, match=None) -> None:
        """Let ``n`` more bytes be appended (to matching files), then fail with ENOSPC."""
        with self._lock:
            self._space_rules.append(_Rule(match, n, err=_errno.ENOSPC))

    def clear_faults(self) -> None:
        with self._lock:
            self._write_rules.clear()
            self._sync_rules.clear()
            self._space_rules.clear()

    def _before_append(self, path: str) -> None:
        for rule in self._write_rules:
            if rule.applies(path):
                if rule.budget > 0:
                    rule.budget -= 1
                else:
                    self.stats["injected_faults"] += 1
                    raise _injected(rule.err, "write failure")

    def _bytes_that_fit(self, path: str, n: int) -> int:
        fit = n
        for rule in self._space_rules:
            if rule.applies(path):
                fit = min(fit, rule.budget)
        for rule in self._space_rules:
            if rule.applies(path):
                rule.budget -= fit
        return fit

    def _before_sync(self, path: str, is_dir: bool = False) -> None:
        for rule in self._sync_rules:
            if is_dir and not rule.dirs:
                continue
            if not rule.applies(path):
                continue
            if rule.budget > 0:
                rule.budget -= 1
                continue
            if rule.times is None or rule.times > 0:
                if rule.times is not None:
                    rule.times -= 1
                self.stats["injected_faults"] += 1
                raise _injected(rule.err, "sync failure")

    # ------------------------------------------------------------------ FileSystem
    def open_writable(self, path: str) -> FaultWritableFile:
        with self._lock:
            self._check_alive(path)
            full, name, d = self._split(path)
            old = d.live.get(name)
            if old is not None and len(old.names) == 1 and old.synced_len:
                old.saved = self._durable_bytes(old)   # read before O_TRUNC: they may survive a crash
            try:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as exc:
                raise _io_error(exc, "open for writing", path) from exc
            self._unlink_name(d, name, full)   # truncating is replacing the file
            inode = _Inode()
            inode.names.add(full)
            d.live[name] = inode
            f = FaultWritableFile(self, path, inode, fd, 0)
            self._open_files.add(f)
            return f

    def open_appendable(self, path: str) -> FaultWritableFile:
        with self._lock:
            self._check_alive(path)
            full, name, d = self._split(path)
            try:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                size = os.fstat(fd).st_size
            except OSError as exc:
                raise _io_error(exc, "open for writing", path) from exc
            inode = d.live.get(name)
            if inode is None:
                inode = _Inode()
                inode.names.add(full)
                d.live[name] = inode
            f = FaultWritableFile(self, path, inode, fd, size)
            self._open_files.add(f)
            return f

    def open_readable(self, path: str) -> FaultReadableFile:
        self._check_alive(path)
        return FaultReadableFile(self, OSRandomAccessFile(path))

    def read_file(self, path: str) -> bytes:
        self._check_alive(path)
        return super().read_file(path)

    def exists(self, path: str) -> bool:
        self._check_alive(path)
        return super().exists(path)

    def file_size(self, path: str) -> int:
        self._check_alive(path)
        return super().file_size(path)

    def listdir(self, path: str) -> list[str]:
        self._check_alive(path)
        return super().listdir(path)

    def makedirs(self, path: str) -> None:
        with self._lock:
            self._check_alive(path)
            super().makedirs(path)
            self._dir(os.path.abspath(path))

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._check_alive(src)
            sfull, sname, sd = self._split(src)
            dfull, dname, dd = self._split(dst)
            replaced = dd.live.get(dname)
            if replaced is not None and replaced is not sd.live.get(sname) and len(replaced.names) == 1 \
                    and replaced.synced_len and replaced.saved is None:
                replaced.saved = self._durable_bytes(replaced)   # read before the rename overwrites it
            try:
                os.replace(sfull, dfull)
            except OSError as exc:
                raise _io_error(exc, "rename", src) from exc
            inode = sd.live.pop(sname, None)
            if inode is None:   # a file we never saw: take it as it is now
                inode = _Inode(os.path.getsize(dfull))
            inode.names.discard(sfull)
            if dd.live.get(dname) is not inode:
                self._unlink_name(dd, dname, dfull)
            inode.names.add(dfull)
            dd.live[dname] = inode

    def remove(self, path: str) -> None:
        with self._lock:
            self._check_alive(path)
            full, name, d = self._split(path)
            self._unlink_name(d, name, full)
            super().remove(full)

    def link(self, src: str, dst: str) -> None:
        with self._lock:
            self._check_alive(src)
            sfull, sname, sd = self._split(src)
            dfull, dname, dd = self._split(dst)
            try:
                os.link(sfull, dfull)
            except OSError as exc:
                raise _io_error(exc, "link", src) from exc
            inode = sd.live.get(sname)
            if inode is None:
                inode = _Inode(os.path.getsize(sfull))
                inode.names.add(sfull)
                sd.live[sname] = inode
            inode.names.add(dfull)
            dd.live[dname] = inode

    def sync_dir(self, path: str) -> None:
        with self._lock:
            self._check_alive(path)
            full = os.path.abspath(path)
            d = self._dir(full)
            self.stats["dir_syncs"] += 1
            try:
                self._before_sync(full, is_dir=True)
            except OSError as exc:
                raise _io_error(exc, "fsync directory", path) from exc
            super().sync_dir(full)
            d.durable = dict(d.live)

    def lock(self, path: str):
        with self._lock:
            self._check_alive(path)
            lk = super().lock(path)
            self._locks.append(lk)
            return lk

    # ------------------------------------------------------------------ inspection
    def synced_bytes(self, path: str) -> int:
        """How many bytes of the file now at ``path`` are durable."""
        with self._lock:
            full, name, d = self._split(path)
            inode = d.live.get(name)
            return 0 if inode is None else inode.synced_len

    def durable_names(self, dirpath: str) -> set[str]:
        """The names a crash would leave in ``dirpath`` (with ``undo_dir_ops=True``)."""
        with self._lock:
            return set(self._dir(os.path.abspath(dirpath)).durable)

    def live_names(self, dirpath: str) -> set[str]:
        with self._lock:
            return set(self._dir(os.path.abspath(dirpath)).live)

    # ------------------------------------------------------------------ power loss
    def crash(self, *, undo_dir_ops: bool = True) -> dict[str, dict[str, int]]:
        """Lose power now (see the module docstring). Returns ``{dir: {name: surviving bytes}}``."""
        with self._lock:
            if self._dead:
                raise RuntimeError("this FaultInjectionFS already crashed; open a fresh one")
            self._dead = True
            self.stats["crashes"] += 1
            for lk in self._locks:
                lk.release()
            self._locks.clear()
            for f in list(self._open_files):
                f._drop()
            plans = {}
            for dirpath, d in self._dirs.items():
                target = d.durable if undo_dir_ops else d.live
                plans[dirpath] = (d, {name: self._durable_bytes(inode) for name, inode in target.items()})
            result = {}
            for dirpath, (d, contents) in plans.items():
                if not os.path.isdir(dirpath):
                    result[dirpath] = {}     # removed behind our back (see the module docstring): stays so
                    continue
                for name in d.live:
                    try:
                        os.remove(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        pass
                for name, data in contents.items():
                    # A new file each time: a stray descriptor of the dead process cannot reach it.
                    with open(os.path.join(dirpath, name), "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                result[dirpath] = {name: len(data) for name, data in contents.items()}
            return result
