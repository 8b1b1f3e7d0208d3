"""Backup statements and other connections' transactions: BACKUP, SHOW/VERIFY/DROP BACKUP and
RESTORE DATABASE take no writer lock; RESTORE TABLE writes like any write statement."""

from __future__ import annotations

import time

import pytest

import tabledb

from backup_helpers import table_state


def test_backup_statements_do_not_wait_for_another_connections_write_transaction(tmp_path, connect):
    target = str(tmp_path / "target")
    writer = connect(busy_timeout=0.2, autocommit=False)
    writer.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    writer.execute("INSERT INTO t VALUES (1, 'committed')")
    writer.commit()
    writer.execute("INSERT INTO t VALUES (2, 'not yet')")          # an open write transaction
    other = connect(busy_timeout=0.2, autocommit=False)
    started = time.monotonic()
    backup_id, kind = other.execute(f"BACKUP DATABASE TO '{target}'").fetchone()[:2]
    assert kind == "full"
    assert [r[0] for r in other.execute(f"SHOW BACKUPS FROM '{target}'").fetchall()] == [backup_id]
    assert all(r[2] == "ok" for r in other.execute(f"VERIFY BACKUP LATEST FROM '{target}'").fetchall())
    other.execute(f"RESTORE DATABASE FROM '{target}' INTO '{tmp_path / 'copy'}'")
    assert time.monotonic() - started < 30
    assert not other.in_transaction              # nothing of these opened a transaction
    writer.commit()                              # the writer was never in the way, nor stopped
    with tabledb.connect(str(tmp_path / "copy")) as copy:
        assert table_state(copy) == {"t": [(1, "committed")]}
    # RESTORE TABLE writes into the database: it waits for the writer like any write
    writer.execute("INSERT INTO t VALUES (3, 'open again')")
    with pytest.raises(tabledb.OperationalError, match="locked"):
        other.execute(f"RESTORE TABLE t AS t_old FROM '{target}'")
    writer.rollback()
    other.execute(f"RESTORE TABLE t AS t_old FROM '{target}'")
    other.commit()
    assert other.execute("SELECT * FROM t_old").fetchall() == [(1, "committed")]
    other.execute(f"DROP BACKUP '{backup_id}' FROM '{target}'")
    assert other.execute(f"SHOW BACKUPS FROM '{target}'").fetchall() == []


def test_backup_statements_refuse_the_sessions_own_uncommitted_writes(tmp_path, connect):
    conn = connect(autocommit=False)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(tabledb.OperationalError, match="inside a transaction"):
        conn.execute(f"BACKUP DATABASE TO '{tmp_path / 'target'}'")
    assert conn.in_transaction and conn.execute("SELECT * FROM t").fetchall() == [(1,)]   # nothing lost
    conn.commit()
    conn.execute(f"BACKUP DATABASE TO '{tmp_path / 'target'}'")


def test_statements_that_only_touch_the_target_run_inside_a_transaction_and_leave_it_open(tmp_path, connect):
    """SHOW BACKUPS, VERIFY BACKUP, RESTORE DATABASE ... INTO and DROP BACKUP neither read nor write
    this database: inside a transaction (after RESTORE TABLE, say) they run, and the transaction
    with its writes stays open, to commit or roll back as before."""
    target = str(tmp_path / "target")
    conn = connect(autocommit=False)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.commit()
    first = conn.execute(f"BACKUP DATABASE TO '{target}'").fetchone()[0]
    conn.execute("INSERT INTO t VALUES (2, 'b')")
    conn.commit()
    second = conn.execute(f"BACKUP DATABASE TO '{target}'").fetchone()[0]
    conn.execute(f"RESTORE TABLE t AS t_old FROM '{target}' BACKUP '{first}'")   # a write: the transaction opens
    conn.execute("INSERT INTO t VALUES (3, 'pending')")
    assert conn.in_transaction
    assert [r[0] for r in conn.execute(f"SHOW BACKUPS FROM '{target}'").fetchall()] == [first, second]
    assert all(r[2] == "ok" for r in conn.execute(f"VERIFY BACKUP LATEST FROM '{target}'").fetchall())
    conn.execute(f"RESTORE DATABASE FROM '{target}' BACKUP '{first}' INTO '{tmp_path / 'copy'}'")
    conn.execute(f"DROP BACKUP '{first}' FROM '{target}'")
    assert conn.in_transaction
    assert conn.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,), (3,)]
    conn.rollback()                       # the restored table and the pending row go together
    assert conn.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,)]
    assert "t_old" not in [r[0] for r in conn.execute("SHOW TABLES").fetchall()]
    with pytest.raises(tabledb.OperationalError, match="inside a transaction"):
        conn.execute("INSERT INTO t VALUES (4, 'x')") and conn.execute(f"BACKUP DATABASE TO '{target}'")
    conn.rollback()
    assert [r[0] for r in conn.execute(f"SHOW BACKUPS FROM '{target}'").fetchall()] == [second]
    with tabledb.connect(str(tmp_path / "copy")) as copy:
        assert table_state(copy) == {"t": [(1, "a")]}
