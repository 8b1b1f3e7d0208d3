"""Snapshots: a read view fixed at a sequence number, shared by both engines.

A snapshot only pins a sequence number: reads through it skip newer versions,
and compaction keeps, for every live snapshot, the newest version it can see.
It does not pin files (iterators do that).
"""

from __future__ import annotations

from tabledb.errors import ClosedError, InvalidArgumentError, InvalidTypeError


class Snapshot:
    """A read view at ``sequence``. Release it with ``close()`` (idempotent) or a ``with`` block.

    The engine that made it must provide ``_release_snapshot(snapshot)``.
    """

    __slots__ = ("sequence", "_engine", "_closed")

    def __init__(self, engine, sequence: int):
        self.sequence = sequence
        self._engine = engine
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine._release_snapshot(self)

    release = close

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def drop(self) -> None:
        """``close()`` for finalizers: never blocks, where the engine offers that (the garbage
        collector may run a finalizer in a thread inside the engine's snapshot lock)."""
        if not self._closed:
            self._closed = True
            soon = getattr(self._engine, "_release_snapshot_soon", None)
            (soon or self._engine._release_snapshot)(self)

    def __del__(self):
        # A forgotten snapshot must not hold back compaction forever.
        try:
            self.drop()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Snapshot(sequence={self.sequence}{', closed' if self._closed else ''})"


def snapshot_sequence(engine, snapshot) -> int:
    """The sequence a read through ``snapshot`` of ``engine`` sees; checks the argument."""
    if not isinstance(snapshot, Snapshot):
        raise InvalidTypeError(f"snapshot must be a Snapshot or None, not {type(snapshot).__name__}")
    if snapshot._closed:
        raise ClosedError("the snapshot was released")
    if snapshot._engine is not engine:
        raise InvalidArgumentError("the snapshot belongs to another engine")
    return snapshot.sequence
