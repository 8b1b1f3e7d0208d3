"""Online backups: writers go on during BACKUP, and every transaction written meanwhile is either
whole in the backup or in the WAL after it, never half."""

from __future__ import annotations

import threading
import time

import tabledb

from backup_helpers import archive_now, restored


def test_transactions_during_backups_are_whole_in_the_backup_or_after_it(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    conn.execute("CREATE TABLE t(g INTEGER, k INTEGER, v TEXT, PRIMARY KEY (g, k))")
    conn.execute("CREATE INDEX t_v ON t(v)")
    writer = connect(autocommit=False, busy_timeout=5)
    stop = threading.Event()
    committed = []
    errors = []

    def write():
        g = 0
        try:
            while not stop.is_set():
                writer.executemany("INSERT INTO t VALUES (?, ?, ?)", [(g, k, f"g{g}k{k}" * 5) for k in range(5)])
                writer.commit()
                committed.append(g)
                g += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    backups = []
    try:
        for _ in range(4):
            time.sleep(0.05)
            backups.append(conn.backup(target))
    finally:
        time.sleep(0.05)
        stop.set()
        t.join()
    assert not errors
    archive_now(conn)
    for n, b in enumerate(backups):
        tabledb.restore(target, str(tmp_path / f"r{n}"), backup=b["backup_id"])
        with restored(tmp_path, f"r{n}") as r:
            groups = {}
            for g, _k in r.execute("SELECT g, k FROM t").fetchall():
                groups[g] = groups.get(g, 0) + 1
            assert all(c == 5 for c in groups.values())                 # never half a transaction
            assert sorted(groups) == list(range(len(groups)))           # a prefix of the commits
            assert r.execute("SELECT count(*) FROM t WHERE v >= ''").fetchone()[0] == 5 * len(groups)
    tabledb.restore(target, str(tmp_path / "latest"))
    with restored(tmp_path, "latest") as r:
        got = sorted({g for (g,) in r.execute("SELECT g FROM t").fetchall()})
        assert got == committed
