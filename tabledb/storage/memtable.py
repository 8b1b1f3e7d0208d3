"""The memtable: recent writes in memory, sorted on demand, bounded in bytes.

Layout: a dict from user key to its versions, plus a ``SortedList`` of the keys
brought up to date lazily (new keys wait in a pending list until a scan or a
flush needs order). A key's versions are a tuple ``(trailer, value)`` when
there is one, or a list of such tuples, oldest first, when there are more.
Writers append, never rewrite, so a reader that holds an older reference still
sees consistent data. Range tombstones live beside it, fragmented.

Thread-safety: one writer at a time (the engine's write lock); any number of
readers alongside. ``approximate_bytes`` charges each entry with its key, value
and a fixed Python overhead, so the budget reflects real memory.
"""

from __future__ import annotations

import threading
from itertools import islice

from sortedcontainers import SortedList

from tabledb.storage.dbformat import KIND_RANGE_DELETE
from tabledb.storage.rangedel import RangeTombstones

ENTRY_OVERHEAD = 160   # bytes of Python objects per entry (dict slot, tuple, int, bytes headers, list slot)
VERSION_OVERHEAD = 96  # an extra version of an existing key

_SCAN_CHUNK = 128


class MemTable:
    __slots__ = ("_data", "_sorted", "_pending", "_lock", "tombstones", "approximate_bytes",
                 "first_sequence", "last_sequence", "entries")

    def __init__(self):
        self._data: dict[bytes, object] = {}
        self._sorted = SortedList()
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self.tombstones = RangeTombstones()
        self.approximate_bytes = 0
        self.first_sequence = 0
        self.last_sequence = 0
        self.entries = 0

    def __len__(self) -> int:
        return self.entries

    @property
    def empty(self) -> bool:
        return self.entries == 0

    def add(self, sequence: int, kind: int, key: bytes, value: bytes) -> None:
        """Record one operation. REQUIRES: the engine's write lock; sequences increase."""
        if not self.first_sequence:
            self.first_sequence = sequence
        self.last_sequence = sequence
        self.entries += 1
        if kind == KIND_RANGE_DELETE:
            self.tombstones.add(key, value, sequence)
            self.approximate_bytes += len(key) + len(value) + ENTRY_OVERHEAD
            return
        item = ((sequence << 8) | kind, value)
        data = self._data
        old = data.get(key)
        if old is None:
            data[key] = item
            self._pending.append(key)
            self.approximate_bytes += len(key) + len(value) + ENTRY_OVERHEAD
        elif type(old) is tuple:
            data[key] = [old, item]
            self.approximate_bytes += len(value) + VERSION_OVERHEAD
        else:
            old.append(item)
            self.approximate_bytes += len(value) + VERSION_OVERHEAD

    def get(self, key: bytes, max_sequence: int):
        """The newest version ``(trailer, value)`` with sequence <= max_sequence, or None."""
        v = self._data.get(key)
        if v is None:
            return None
        if type(v) is tuple:
            return v if (v[0] >> 8) <= max_sequence else None
        for item in reversed(v):
            if (item[0] >> 8) <= max_sequence:
                return item
        return None

    def _materialize(self) -> None:
        # REQUIRES: self._lock
        if self._pending:
            pending = self._pending
            self._pending = []
            self._sorted.update(pending)

    def _key_chunks(self, start, end, reverse: bool):
        """Sorted keys in [start, end), handed out in chunks so writers may go on between them."""
        inclusive = (True, False)
        lo, hi = start, end
        while True:
            with self._lock:
                self._materialize()
                it = self._sorted.irange(lo, hi, inclusive=inclusive, reverse=reverse)
                chunk = list(islice(it, _SCAN_CHUNK))
            if not chunk:
                return
            yield chunk
            if len(chunk) < _SCAN_CHUNK:
                return
            if reverse:
                hi = chunk[-1]
                inclusive = (inclusive[0], False)
            else:
                lo = chunk[-1]
                inclusive = (False, inclusive[1])

    def iter_entries(self, start=None, end=None, reverse: bool = False, max_sequence: int | None = None):
        """Entries ``(key, -trailer, value)`` in internal order (or its exact reverse).

        With ``max_sequence``, only the newest version <= max_sequence of each key
        is produced (older ones are shadowed); without it, every version.
        """
        data = self._data
        for chunk in self._key_chunks(start, end, reverse):
            for key in chunk:
                v = data[key]
                if type(v) is tuple:
                    if max_sequence is None or (v[0] >> 8) <= max_sequence:
                        yield key, -v[0], v[1]
                    continue
                if max_sequence is not None:
                    for item in reversed(v):
                        if (item[0] >> 8) <= max_sequence:
                            yield key, -item[0], item[1]
                            break
                    continue
                versions = v if reverse else reversed(v)
                for trailer, value in list(versions):
                    yield key, -trailer, value

    def iter_versions(self):
        """For flushing: ``(key, [(trailer, value), ...newest first])`` in key order."""
        data = self._data
        with self._lock:
            self._materialize()
            keys = list(self._sorted)
        for key in keys:
            v = data[key]
            if type(v) is tuple:
                yield key, (v,)
            else:
                yield key, v[::-1]
