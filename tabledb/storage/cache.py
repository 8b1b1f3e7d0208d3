"""The two caches in front of SSTable files: parsed blocks, and open readers.

``BlockCache`` holds parsed data blocks keyed by ``(file_number, block_offset)``
and bounded in bytes; ``TableCache`` holds open :class:`SSTableReader` objects
keyed by file number and bounded in count. Both are LRU and thread-safe (one
lock each, held only for dictionary work, never across I/O).

Lifetimes: a reader leaves the table cache by losing the cache's reference,
never by an explicit close, so a ``get`` or an iterator that still holds the
reader keeps working; CPython closes the file when the last reference goes
(``SSTableReader.__del__``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from tabledb.errors import ClosedError, InvalidArgumentError
from tabledb.storage import dbformat
from tabledb.storage.sstable import SSTableReader


class BlockCache:
    """A thread-safe LRU cache bounded by the sum of its entries' charges (bytes).

    Keys are ``(file_number, block_offset)`` tuples; values are whatever the
    caller stores (``SSTableReader`` stores a parsed block) and must not be None.
    ``charge`` is the caller's estimate of the entry's memory in bytes.
    """

    def __init__(self, capacity_bytes: int, admit_every: int = 1):
        if capacity_bytes < 0:
            raise InvalidArgumentError("capacity_bytes must be >= 0")
        if admit_every < 1:
            raise InvalidArgumentError("admit_every must be >= 1")
        self._capacity = capacity_bytes
        self._admit_every = admit_every
        self._lock = threading.Lock()
        self._entries: OrderedDict = OrderedDict()  # key -> value, least recently used first
        self._charges: dict = {}                     # key -> charge
        self._usage = 0
        self._hits = 0
        self._misses = 0
        self._full_inserts = 0
        self._declined = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def get(self, key):
        """The cached value for ``key`` (now most recently used), or None. Counts a hit or a miss."""
        # No lock on the hit path: a dict lookup and OrderedDict.move_to_end are each atomic
        # under the GIL, and an entry evicted in between only costs the LRU bump. The counters
        # are approximate under concurrency.
        value = self._entries.get(key)
        if value is None:
            self._misses += 1
            return None
        try:
            self._entries.move_to_end(key)
        except KeyError:
            pass
        self._hits += 1
        return value

    def insert(self, key, value, charge: int) -> None:
        """Cache ``value`` under ``key`` (replacing any old value), then evict LRU entries
        until usage is within capacity. An entry larger than the whole capacity is not cached."""
        if charge > self._capacity:
            self.erase(key)   # a replacement that cannot be cached still drops the old value
            return
        if self._admit_every > 1 and self._usage + charge > self._capacity:
            # Admission control once full: take one new block in ``admit_every``. Under uniform
            # access the hit rate is the cached fraction whatever the admission rate, while each
            # admission costs an eviction; a block read again and again still gets in soon.
            self._full_inserts += 1
            if self._full_inserts % self._admit_every:
                self._declined += 1
                return
        with self._lock:
            entries, charges = self._entries, self._charges
            old = charges.get(key)
            if old is not None:
                self._usage -= old
            entries[key] = value
            entries.move_to_end(key)
            charges[key] = charge
            self._usage += charge
            while self._usage > self._capacity:
                # popitem is one atomic step: lock-free readers may reorder entries meanwhile.
                oldest, _ = entries.popitem(last=False)
                self._usage -= charges.pop(oldest)

    def erase(self, key) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._usage -= self._charges.pop(key)

    def erase_file(self, file_number: int) -> None:
        """Drop every block of ``file_number``.

        A scan of the cache's keys: it runs when a file is deleted, far less often than
        inserts, which is why inserts keep no per-file index. (Blocks of a deleted file could
        also just age out: file numbers are never reused.)
        """
        with self._lock:
            for key in [k for k in self._charges if k[0] == file_number]:
                self._entries.pop(key, None)
                self._usage -= self._charges.pop(key)

    def stats(self) -> dict:
        with self._lock:
            return {
                "capacity": self._capacity,
                "usage": self._usage,
                "entries": len(self._entries),
                "hits": self._hits,
                "misses": self._misses,
                "declined": self._declined,
            }


class TableCache:
    """A thread-safe LRU of open ``SSTableReader`` objects, at most ``capacity`` of them.

    ``get`` opens ``<dirpath>/<table_file_name(n)>`` through ``fs.open_readable``
    on a miss; the file is opened outside the lock, so two threads missing on
    the same file may both open it, and the loser's reader is simply dropped.
    Errors from opening (``StorageIOError``, ``CorruptionError``) propagate and
    nothing is cached.
    """

    def __init__(self, fs, dirpath: str, capacity: int, block_cache: BlockCache | None):
        if capacity < 1:
            raise InvalidArgumentError("table cache capacity must be >= 1")
        self._fs = fs
        self._dirpath = dirpath
        self._capacity = capacity
        self._block_cache = block_cache
        self._lock = threading.Lock()
        self._readers: OrderedDict[int, SSTableReader] = OrderedDict()
        self._closed = False

    def get(self, file_number: int) -> SSTableReader:
        readers = self._readers
        reader = readers.get(file_number)   # lock-free hit path, as in BlockCache.get
        if reader is not None and not self._closed:
            if 2 * len(readers) > self._capacity:   # recency matters only once eviction is near
                try:
                    readers.move_to_end(file_number)
                except KeyError:
                    pass
            return reader
        with self._lock:
            if self._closed:
                raise ClosedError("table cache is closed")
        path = os.path.join(self._dirpath, dbformat.table_file_name(file_number))
        opened = SSTableReader.open(
            self._fs.open_readable(path), file_number=file_number, block_cache=self._block_cache
        )
        with self._lock:
            if self._closed:
                raise ClosedError("table cache is closed")
            reader = self._readers.get(file_number)
            if reader is not None:  # another thread opened it meanwhile
                self._readers.move_to_end(file_number)
                return reader
            self._readers[file_number] = opened
            while len(self._readers) > self._capacity:
                self._readers.popitem(last=False)  # dropped, not closed: users may still hold it
            return opened

    def evict(self, file_number: int) -> None:
        """Forget the reader of ``file_number`` (e.g. the file is being deleted) and its cached blocks."""
        with self._lock:
            self._readers.pop(file_number, None)
        if self._block_cache is not None:
            self._block_cache.erase_file(file_number)

    def __len__(self) -> int:
        return len(self._readers)

    def __contains__(self, file_number: int) -> bool:
        return file_number in self._readers

    def close(self) -> None:
        """Drop every reader; later ``get`` calls raise ClosedError."""
        with self._lock:
            self._closed = True
            self._readers.clear()
