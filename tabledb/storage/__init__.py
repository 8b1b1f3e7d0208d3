"""tabledb's storage engine: an LSM tree of bytes, with a WAL, SSTables, levels and snapshots.

It knows bytes, never SQL. Start at :class:`Engine` (``engine.py``); the
interface both engines keep is in ``docs/engine-api.md``, and every on-disk
format is in ``docs/format.md``.
"""

from tabledb.storage.batch import ColumnFamily, WriteBatch
from tabledb.storage.engine import Engine, Options
from tabledb.storage.snapshot import Snapshot

__all__ = ["Engine", "Options", "Snapshot", "WriteBatch", "ColumnFamily"]
