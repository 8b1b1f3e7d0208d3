"""The transaction write set: buffered writes over an engine snapshot, with savepoints.

A SQL transaction reads one consistent engine state (a ``Snapshot``, or the
latest committed state at each call), keeps its own writes in memory (its reads
see them), and at COMMIT hands the engine one ``WriteBatch``. Statements are
atomic through savepoints, and SQL SAVEPOINT / ROLLBACK TO / RELEASE map onto
:meth:`Transaction.savepoint`, :meth:`~Transaction.rollback_to` and
:meth:`~Transaction.release`.

Data structures
===============
``_ops``   the op log, append-only, in exactly the ``WriteBatch.ops`` format
           ``(kind, cf, key, value_or_end)``. The engine applies a batch in
           order with rising sequence numbers (later ops win), so the log *is*
           the batch: ``write_batch()`` copies it without re-checking anything.
``_prev``  parallel to ``_ops``: for a point op, the log position of the
           previous op on the same key and family (None if the key had none),
           -1 for a range delete. It is the undo information for rollback.
per family (``_Family``, keyed by column family id):
  ``writes``  key -> log position of its newest point op (put or delete);
  ``ranges``  ``(start, end, position)`` of every local range delete, in log order;
  ``sorted``  a ``SortedList`` of the keys of ``writes``, built on the first scan
              that needs it and then brought up to date from the log
              (``synced``: the log length it reflects), so a transaction that
              never scans never sorts.

A key's local state is the op at ``writes[key]`` unless a range delete at a
later position covers it; a key without a local op is read from the engine
unless any local range delete covers it. A savepoint is the log length (and
the byte count); ``rollback_to`` walks the undone tail of the log backwards,
restoring ``writes`` from ``_prev`` and popping ``ranges``, then truncates.

A scan copies the local entries in its range when it is called and merges them
with engine scans of the parts of the range that no local range delete covers,
so it shows the state as of the call however the transaction is written to (or
rolled back) while it is consumed. Scans that need several engine scans take a
temporary engine snapshot (when the transaction reads the latest state) so that
they all see one state. The copy covers the whole range up front (0.45 us a
local key) even if only the first rows are read: a transaction that wrote a
million keys of a table pays about half a second on each scan of that table.

Microbenchmark (this machine, MemoryEngine, 200k random 16-byte keys, 100-byte
values; per operation, best of 3): put 0.44 us (overwrite 0.39); delete
0.38 us; get of a local key 0.18 us (a miss goes to the engine: 0.79 us on
MemoryEngine); savepoint + release 0.36 us; rollback_to 0.18 us per undone op;
write_batch() 0.003 us per op; full scan of 200k local keys 1.2 us a row the
first time (it sorts them), 0.87 us later; one put then a 100-row scan 98 us;
a scan of 200k engine rows with 1k local writes 1.60 us a row against 1.45 us
for the engine scan alone.

Thread-safety: none; a transaction belongs to one connection.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from tabledb.errors import InvalidArgumentError, InvalidTypeError
from tabledb.storage.batch import (
    KIND_DELETE, KIND_PUT, KIND_RANGE_DELETE, OP_HEADER, ColumnFamily, WriteBatch, check_key, check_range,
)

OP_OVERHEAD = OP_HEADER.size     # bytes a WriteBatch counts per op besides its key and value
_RANGE = -1                      # the _prev entry of a range delete


class _Family:
    """The local writes of one column family (see the module docstring)."""

    __slots__ = ("id", "writes", "ranges", "sorted", "synced")

    def __init__(self, cf_id: int):
        self.id = cf_id
        self.writes: dict[bytes, int] = {}
        self.ranges: list[tuple[bytes, bytes, int]] = []
        self.sorted: SortedList | None = None
        self.synced = 0


class Transaction:
    """Buffered writes over an engine snapshot. Not thread-safe (one connection uses it).

    ``engine`` is a ``tabledb.storage.Engine`` or ``MemoryEngine``; ``snapshot``
    an engine ``Snapshot`` that the caller owns and closes (after the
    transaction is done with it), or None to read the latest committed state at
    each call. Keys and values are ``bytes`` (bytearray/memoryview are copied);
    ``cf`` is None (the default family) or a ``ColumnFamily`` handle. The
    transaction never writes to the engine: commit is
    ``engine.write(txn.write_batch())``.
    """

    __slots__ = ("_engine", "_snapshot", "_ops", "_prev", "_default", "_families", "_savepoints",
                 "_next_token", "pending_bytes")

    def __init__(self, engine, snapshot=None):
        self._engine = engine
        self._snapshot = snapshot
        self._next_token = 1
        self.clear()

    def clear(self) -> None:
        """Drop every pending write and every savepoint."""
        self._ops: list[tuple] = []
        self._prev: list[int | None] = []
        self._default = _Family(0)
        self._families: dict[int, _Family] = {0: self._default}
        self._savepoints: list[tuple[int, int, int]] = []   # (token, log length, pending_bytes)
        self.pending_bytes = 0

    # -- writes ----------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, cf: ColumnFamily | None = None) -> None:
        if type(key) is not bytes:
            key = check_key(key)
        if type(value) is not bytes:
            value = check_key(value, "value")
        writes = (self._default if cf is None else self._family(cf)).writes
        ops = self._ops
        self._prev.append(writes.get(key))
        writes[key] = len(ops)
        ops.append((KIND_PUT, cf, key, value))
        self.pending_bytes += len(key) + len(value) + OP_OVERHEAD

    def delete(self, key: bytes, cf: ColumnFamily | None = None) -> None:
        if type(key) is not bytes:
            key = check_key(key)
        writes = (self._default if cf is None else self._family(cf)).writes
        ops = self._ops
        self._prev.append(writes.get(key))
        writes[key] = len(ops)
        ops.append((KIND_DELETE, cf, key, b""))
        self.pending_bytes += len(key) + OP_OVERHEAD

    def delete_range(self, start: bytes, end: bytes, cf: ColumnFamily | None = None) -> None:
        """Delete ``[start, end)``: engine keys and earlier local writes, not later ones. ``start == end`` is a no-op."""
        start, end = check_range(start, end)
        family = self._default if cf is None else self._family(cf)
        if start == end:
            return
        ops = self._ops
        family.ranges.append((start, end, len(ops)))
        self._prev.append(_RANGE)
        ops.append((KIND_RANGE_DELETE, cf, start, end))
        self.pending_bytes += len(start) + len(end) + OP_OVERHEAD

    # -- savepoints ------------------------------------------------------------------------------

    def savepoint(self) -> int:
        """Mark the current state; return a token for ``rollback_to`` / ``release``. Savepoints nest."""
        token = self._next_token
        self._next_token = token + 1
        self._savepoints.append((token, len(self._ops), self.pending_bytes))
        return token

    def rollback_to(self, token: int) -> None:
        """Undo every write made after ``savepoint()`` returned ``token``.

        The savepoint stays (as SQL ROLLBACK TO); newer ones are forgotten.
        An unknown or released token raises InvalidArgumentError.
        """
        index = self._find_savepoint(token)
        _, length, pending_bytes = self._savepoints[index]
        del self._savepoints[index + 1:]
        ops, prev, families = self._ops, self._prev, self._families
        for position in range(len(ops) - 1, length - 1, -1):
            kind, cf, key, _ = ops[position]
            family = families[0 if cf is None else cf.id]
            if kind == KIND_RANGE_DELETE:
                family.ranges.pop()
                continue
            previous = prev[position]
            if previous is None:
                del family.writes[key]
                if position < family.synced:
                    family.sorted.remove(key)
            else:
                family.writes[key] = previous
        for family in families.values():
            if family.synced > length:
                family.synced = length
        del ops[length:]
        del prev[length:]
        self.pending_bytes = pending_bytes

    def release(self, token: int) -> None:
        """Forget the savepoint ``token`` and every newer one; keep the writes."""
        del self._savepoints[self._find_savepoint(token):]

    def _find_savepoint(self, token: int) -> int:
        savepoints = self._savepoints
        for index in range(len(savepoints) - 1, -1, -1):
            if savepoints[index][0] == token:
                return index
        raise InvalidArgumentError(f"no savepoint {token!r} in this transaction")

    # -- the snapshot -----------------------------------------------------------------------------

    def rebase(self, snapshot) -> None:
        """Read at ``snapshot`` (None: the latest state) from now on; the caller owns and closes both
        snapshots. REQUIRES: no pending writes (InvalidArgumentError otherwise): for a statement
        that wrote into the engine directly, first thing in its transaction (a bulk ingest)."""
        if self._ops:
            raise InvalidArgumentError("cannot move a transaction with pending writes to another snapshot")
        self._snapshot = snapshot

    # -- commit ----------------------------------------------------------------------------------

    def write_batch(self) -> WriteBatch:
        """The pending writes as one ``WriteBatch`` (a copy: later writes do not change it)."""
        batch = WriteBatch()
        batch.ops = self._ops.copy()
        batch.byte_size = self.pending_bytes
        return batch

    def __len__(self) -> int:
        """The number of pending operations (0: nothing to commit)."""
        return len(self._ops)

    def __repr__(self) -> str:
        return f"Transaction({len(self._ops)} ops, {self.pending_bytes} bytes, {len(self._savepoints)} savepoints)"

    # -- reads -----------------------------------------------------------------------------------

    def get(self, key: bytes, cf: ColumnFamily | None = None) -> bytes | None:
        """The value of ``key`` as this transaction sees it, or None."""
        if type(key) is not bytes:
            key = check_key(key)
        if cf is None:
            family = self._default
        else:
            _check_cf(cf)
            family = self._families.get(cf.id)
        if family is not None:
            position = family.writes.get(key)
            if position is not None:
                if family.ranges and _deleted_after(family.ranges, key, position):
                    return None
                kind, _, _, value = self._ops[position]
                return value if kind == KIND_PUT else None
            for start, end, _ in family.ranges:
                if start <= key < end:
                    return None
        return self._engine.get(key, cf=cf, snapshot=self._snapshot)

    def get_local(self, key: bytes, cf: ColumnFamily | None = None) -> tuple[bool, bytes | None]:
        """What this transaction's own writes say about ``key``, without reading the engine.

        ``(True, value)``: written here; ``(True, None)``: deleted here (by a
        point or range delete); ``(False, None)``: untouched, the engine decides.
        """
        if type(key) is not bytes:
            key = check_key(key)
        if cf is None:
            family = self._default
        else:
            _check_cf(cf)
            family = self._families.get(cf.id)
            if family is None:
                return False, None
        position = family.writes.get(key)
        if position is not None:
            if family.ranges and _deleted_after(family.ranges, key, position):
                return True, None
            kind, _, _, value = self._ops[position]
            return True, (value if kind == KIND_PUT else None)
        for start, end, _ in family.ranges:
            if start <= key < end:
                return True, None
        return False, None

    def scan(self, start: bytes | None = None, end: bytes | None = None, cf: ColumnFamily | None = None,
             reverse: bool = False):
        """Iterate ``(key, value)`` for ``start <= key < end`` (None: unbounded), descending with ``reverse``.

        The iterator shows the state as of this call: writes (or rollbacks) made
        while it is consumed neither appear in it nor disturb it.
        """
        if start is not None and type(start) is not bytes:
            start = check_key(start, "start")
        if end is not None and type(end) is not bytes:
            end = check_key(end, "end")
        if start is not None and end is not None and start > end:
            raise InvalidArgumentError(f"range start {start!r} is after its end {end!r}")
        reverse = bool(reverse)
        if cf is None:
            family = self._default
        else:
            _check_cf(cf)
            family = self._families.get(cf.id)
        engine, snapshot = self._engine, self._snapshot
        if family is None or not (family.writes or family.ranges):
            return engine.scan(start, end, cf=cf, snapshot=snapshot, reverse=reverse)
        local = self._local_ops(family, start, end, reverse)
        if not family.ranges:
            engine_items = engine.scan(start, end, cf=cf, snapshot=snapshot, reverse=reverse)
        else:
            gaps = _gaps(family.ranges, start, end)
            if not gaps:
                engine_items = iter(())
            elif len(gaps) == 1:
                engine_items = engine.scan(gaps[0][0], gaps[0][1], cf=cf, snapshot=snapshot, reverse=reverse)
            else:
                if reverse:
                    gaps.reverse()
                own_snapshot = None
                if snapshot is None:
                    snapshot = own_snapshot = engine.snapshot()
                # Check the family now: the gap scans start lazily.
                first = engine.scan(gaps[0][0], gaps[0][1], cf=cf, snapshot=snapshot, reverse=reverse)
                engine_items = _scan_gaps(engine, first, gaps[1:], cf, snapshot, own_snapshot, reverse)
        if not local:
            return engine_items
        return _merge(engine_items, local, reverse)

    def _local_ops(self, family: _Family, start, end, reverse: bool) -> list[tuple]:
        """The newest local point op of every local key in ``[start, end)``, in scan order.

        A key that a later local range delete covers gets a delete op instead.
        """
        keys = family.sorted
        if keys is None:
            keys = family.sorted = SortedList(family.writes)
            family.synced = len(self._ops)
        elif family.synced < len(self._ops):
            self._sync(family)
        writes, ops = family.writes, self._ops
        in_range = keys.irange(start, end, (True, False), reverse)
        if not family.ranges:
            return [ops[writes[key]] for key in in_range]
        ranges = family.ranges
        result = []
        for key in in_range:
            position = writes[key]
            if _deleted_after(ranges, key, position):
                result.append((KIND_DELETE, None, key, b""))
            else:
                result.append(ops[position])
        return result

    def _sync(self, family: _Family) -> None:
        """Add to ``family.sorted`` the keys that entered ``family.writes`` since ``family.synced``."""
        ops, prev, cf_id = self._ops, self._prev, family.id
        first = family.synced
        single = len(self._families) == 1
        fresh = [op[2] for op, previous in zip(ops[first:], prev[first:])
                 if previous is None and (single or (0 if op[1] is None else op[1].id) == cf_id)]
        if fresh:
            family.sorted.update(fresh)
        family.synced = len(ops)

    def _family(self, cf) -> _Family:
        if not isinstance(cf, ColumnFamily):
            raise InvalidTypeError(f"cf must be a ColumnFamily handle or None, not {type(cf).__name__}")
        family = self._families.get(cf.id)
        if family is None:
            family = self._families[cf.id] = _Family(cf.id)
        return family


def _check_cf(cf) -> None:
    if not isinstance(cf, ColumnFamily):
        raise InvalidTypeError(f"cf must be a ColumnFamily handle or None, not {type(cf).__name__}")


def _deleted_after(ranges: list[tuple[bytes, bytes, int]], key: bytes, position: int) -> bool:
    """Whether a range delete logged after ``position`` covers ``key`` (``ranges`` is in log order)."""
    for index in range(len(ranges) - 1, -1, -1):
        start, end, range_position = ranges[index]
        if range_position < position:
            return False
        if start <= key < end:
            return True
    return False


def _gaps(ranges, start: bytes | None, end: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """The parts of ``[start, end)`` (None: unbounded) that no range in ``ranges`` covers, ascending."""
    low = b"" if start is None else start           # b"" is the smallest key: the same as unbounded
    covered = sorted((s, e) for s, e, _ in ranges if e > low and (end is None or s < end))
    gaps = []
    cursor = low
    for s, e in covered:
        if s > cursor:
            gaps.append((cursor, s))
        if e > cursor:
            cursor = e
    if end is None or cursor < end:
        gaps.append((cursor, end))
    return gaps


def _scan_gaps(engine, first, gaps, cf, snapshot, own_snapshot, reverse):
    """Chain engine scans of ``first`` then each gap; close ``own_snapshot`` (if any) when done."""
    try:
        yield from first
        for gap_start, gap_end in gaps:
            yield from engine.scan(gap_start, gap_end, cf=cf, snapshot=snapshot, reverse=reverse)
    finally:
        if own_snapshot is not None:
            own_snapshot.close()


def _merge(engine_items, local: list[tuple], reverse: bool):
    """Merge engine pairs with local ops (both in scan order); local ops win, local deletes hide."""
    local_iter = iter(local)
    op = next(local_iter)
    local_key = op[2]
    for key, value in engine_items:
        if reverse:
            while local_key > key:
                if op[0]:
                    yield local_key, op[3]
                op = next(local_iter, None)
                if op is None:
                    break
                local_key = op[2]
        else:
            while local_key < key:
                if op[0]:
                    yield local_key, op[3]
                op = next(local_iter, None)
                if op is None:
                    break
                local_key = op[2]
        if op is None:
            yield key, value
            yield from engine_items
            return
        if local_key == key:
            if op[0]:
                yield local_key, op[3]
            op = next(local_iter, None)
            if op is None:
                yield from engine_items
                return
            local_key = op[2]
        else:
            yield key, value
    if op[0]:
        yield local_key, op[3]
    for op in local_iter:
        if op[0]:
            yield op[2], op[3]


__all__ = ["Transaction"]
