"""Helpers for the backup tests: small engine options (many SSTables from few rows), table states."""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import pytest

import tabledb

# Small memtables and files: a few hundred rows make several SSTables and compactions.
SMALL = {"memtable_bytes": 16 << 10, "target_file_bytes": 32 << 10, "l0_compaction_trigger": 2,
         "level1_bytes": 128 << 10}


@pytest.fixture
def connect(tmp_path):
    """connect(name="db", **options): a connection to tmp_path/name, closed at the end of the test."""
    opened = []

    def _connect(name="db", **options):
        opts = {**SMALL, "autocommit": True, **options}
        conn = tabledb.connect(str(tmp_path / name), **opts)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if not conn.closed:
            conn.close()


def table_state(conn, tables=None) -> dict:
    """{table: sorted rows} for every table (or the named ones)."""
    names = tables or [r[0] for r in conn.execute("SHOW TABLES").fetchall()]
    return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr) for name in names}


def schema_state(conn) -> dict:
    """{table: (DESCRIBE rows, SHOW INDEXES rows)}."""
    out = {}
    for (name,) in conn.execute("SHOW TABLES").fetchall():
        out[name] = (conn.execute(f"DESCRIBE {name}").fetchall(),
                     conn.execute(f"SHOW INDEXES FROM {name}").fetchall())
    return out


def last_sequence(conn) -> int:
    return conn.execute("SELECT last_sequence()").fetchone()[0]


def now_utc() -> dt.datetime:
    """The current time, after a pause on each side so that commits before and after differ."""
    time.sleep(0.005)
    t = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.005)
    return t


def archive_now(conn) -> None:
    """Seal the active WAL segment and copy every sealed one to the archive target, now."""
    from tabledb.backup import archive
    engine = conn._db.engine
    engine.seal_wal()
    archive.get(engine).copy_sealed()


def wait_archived(conn, timeout: float = 20.0) -> None:
    """Wait until the archiver thread itself has sealed and copied every write made so far."""
    engine = conn._db.engine
    active = engine.wal_number
    deadline = time.monotonic() + timeout
    while engine.wal_hold <= active:
        assert time.monotonic() < deadline, "the WAL archiver did not copy the last writes in time"
        time.sleep(0.02)


@contextlib.contextmanager
def restored(tmp_path, name):
    """A connection to the restored database tmp_path/name, closed on exit.

    (Closed explicitly: a Connection left to the garbage collector can be finalized while
    another thread of this process holds the database registry's lock, and wait forever.)
    """
    conn = tabledb.connect(str(tmp_path / name), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()
