"""BACKUP killed with SIGKILL mid-copy leaves no backup that looks complete; the next BACKUP
finishes the job (reusing the files already copied, after checking them) and RESTORE gives
back the database."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import tabledb

from backup_helpers import SMALL, restored, table_state

CHILD = os.path.join(os.path.dirname(__file__), "backup_child.py")


def run_and_kill(db, target, after_lines: int = 1, write: bool = False, delay: float = 0.0) -> list[str]:
    """Start backup_child.py and SIGKILL it once it printed ``after_lines`` progress lines (each is
    printed inside a copy, so the kill lands mid-file; from the second on, earlier files are whole)."""
    args = [sys.executable, CHILD, db, target] + (["write"] if write else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line.strip())
            if line.startswith("copied") and sum(1 for x in lines if x.startswith("copied")) >= after_lines:
                break
            if line.startswith("done"):
                break
        time.sleep(delay)     # the child sleeps 50 ms after each progress line
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(30)
        p.stdout.close()
    return lines


def test_backup_killed_then_backup_and_restore_again(tmp_path):
    db, target = str(tmp_path / "db"), str(tmp_path / "bk")
    conn = tabledb.connect(db, autocommit=True, **SMALL)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "v" * 40, i) for i in range(1500)])
    b1 = conn.backup(target)
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "w" * 40, i) for i in range(1500, 6000)])
    conn.execute("DELETE FROM t WHERE id % 10 = 0")
    conn._db.engine.compact_range()      # settled: reopening changes no file, so copies can be reused
    conn.close()
    rng = random.Random(7)
    for attempt in range(3):
        lines = run_and_kill(db, target, after_lines=rng.randint(2, 4), delay=rng.uniform(0, 0.03))
        assert lines[0] == "open" and "done" not in lines
        # the killed backup is not offered, and what is offered is whole
        assert [b["backup_id"] for b in tabledb.backup.list_backups(target)] == [b1["backup_id"]]
        assert all(r["status"] == "ok" for r in tabledb.verify_backup(target))
    conn = tabledb.connect(db, autocommit=True, **SMALL)
    state = table_state(conn)
    b2 = conn.backup(target)
    assert b2["kind"] == "incremental" and b2["parent_id"] == b1["backup_id"]
    # files the killed runs copied are reused, not copied again
    assert b2["files_copied"] < b2["files_total"] - 1
    conn.close()
    tabledb.restore(target, str(tmp_path / "r"), backup=b2["backup_id"])
    with restored(tmp_path, "r") as r:
        assert table_state(r) == state
    assert all(r["status"] == "ok" for r in tabledb.verify_backup(target))


def test_backup_killed_while_writers_write(tmp_path):
    db, target = str(tmp_path / "db"), str(tmp_path / "bk")
    conn = tabledb.connect(db, autocommit=True, **SMALL)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "v" * 40, i) for i in range(2000)])
    conn.close()
    lines = run_and_kill(db, target, write=True)
    assert "done" not in lines
    assert tabledb.backup.list_backups(target) == []
    conn = tabledb.connect(db, autocommit=True, **SMALL)      # every acknowledged write is there
    state = table_state(conn)
    b = conn.backup(target)
    conn.close()
    tabledb.restore(target, str(tmp_path / "r"), backup=b["backup_id"])
    with restored(tmp_path, "r") as r:
        assert table_state(r) == state
