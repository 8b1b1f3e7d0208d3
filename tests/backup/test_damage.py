"""A corrupt, a truncated and a missing file in the target: VERIFY BACKUP names each, RESTORE refuses
with an error naming the file and leaves nothing at the restore path; the same for archived WAL
segments and for the metadata itself."""

from __future__ import annotations

import os

import pytest

import tabledb
from tabledb.backup.repository import Repository
from tabledb.errors import CorruptionError, OperationalError

from backup_helpers import archive_now, restored, table_state


@pytest.fixture
def backed_up(tmp_path, connect):
    target = str(tmp_path / "bk")
    conn = connect(wal_archive_interval=0.2)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for start in range(0, 600, 50):      # transactions of 50 rows: memtables fill and flush as they go
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 50) for i in range(start, start + 50)])
    b1 = conn.backup(target)
    for k in range(3):
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "y") for i in range(1000 + 100 * k, 1100 + 100 * k)])
        archive_now(conn)       # one archived segment per round
    state = table_state(conn)
    return conn, target, b1, state


def sst_objects(target):
    out = []
    for root, _d, files in os.walk(os.path.join(target, "sst")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def wal_objects(target, after=None):
    """Archived WAL segments (those the backup ``after`` does not hold itself, if given)."""
    own = set()
    if after is not None:
        meta = Repository.open(target).read_meta(after["backup_id"])
        own = {os.path.join(target, f["path"]) for f in meta["wal_files"]}
    out = []
    for root, _d, files in os.walk(os.path.join(target, "wal")):
        out += [os.path.join(root, f) for f in files if os.path.join(root, f) not in own]
    return sorted(out)


def rel(target, path):
    return os.path.relpath(path, target)


def statuses(target, backup=None):
    return {r["file"]: r["status"] for r in tabledb.verify_backup(target, backup)}


def assert_restore_fails_naming(tmp_path, target, name, match, **kwargs):
    dest = str(tmp_path / "restored")
    with pytest.raises(CorruptionError, match=match) as info:
        tabledb.restore(target, dest, **kwargs)
    assert name in str(info.value) and name in info.value.file
    assert not os.path.exists(dest) and not os.path.exists(dest + ".restoring")


def test_everything_ok_to_begin_with(tmp_path, backed_up):
    conn, target, b1, state = backed_up
    report = tabledb.verify_backup(target)
    assert report and all(r["status"] == "ok" for r in report)
    kinds = {r["file"].split("/")[0] for r in report}
    assert kinds == {"backups", "sst", "wal"}
    tabledb.restore(target, str(tmp_path / "r"))
    with restored(tmp_path, "r") as r:
        assert table_state(r) == state


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing"])
def test_damaged_sstable(tmp_path, backed_up, damage):
    conn, target, b1, state = backed_up
    victim = sst_objects(target)[0]
    name = rel(target, victim)
    if damage == "corrupt":
        with open(victim, "r+b") as f:
            f.seek(os.path.getsize(victim) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x40]))
    elif damage == "truncated":
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) - 100)
    else:
        os.remove(victim)
    got = statuses(target)
    assert got[name] == ("missing" if damage == "missing" else "corrupt")
    assert sum(1 for s in got.values() if s != "ok") == 1
    rows = conn.execute(f"VERIFY BACKUP LATEST FROM '{target}'").fetchall()
    assert (name, 0, "missing") in rows if damage == "missing" else any(r[0] == name and r[2] == "corrupt"
                                                                          for r in rows)
    match = {"corrupt": "CRC-32C mismatch", "truncated": "truncated", "missing": "missing"}[damage]
    assert_restore_fails_naming(tmp_path, target, name, match)
    with pytest.raises(CorruptionError, match=match):
        conn.execute(f"RESTORE DATABASE FROM '{target}' INTO '{tmp_path / 'sqlpath'}'")
    assert not os.path.exists(tmp_path / "sqlpath")
    # the next backup copies the file again (a missing one even incrementally), and all is whole again
    conn.backup(target, incremental=damage == "missing")
    tabledb.restore(target, str(tmp_path / "again"), backup="LATEST")
    with restored(tmp_path, "again") as r:
        assert table_state(r) == state


def test_damaged_wal_segment(tmp_path, backed_up):
    conn, target, b1, state = backed_up
    segments = wal_objects(target, after=b1)
    assert len(segments) >= 3
    victim = max(segments, key=os.path.getsize)
    with open(victim, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    name = rel(target, victim)
    assert statuses(target)[name] == "corrupt"
    assert_restore_fails_naming(tmp_path, target, name, "corrupt")
    # the backup itself does not need the WAL
    tabledb.restore(target, str(tmp_path / "exact"), backup=b1["backup_id"])


def test_missing_wal_segment_is_a_gap(tmp_path, backed_up):
    conn, target, b1, state = backed_up
    segments = [s for s in wal_objects(target, after=b1) if os.path.getsize(s) > 100]   # holding records
    assert len(segments) >= 2
    os.remove(segments[0])
    got = statuses(target)
    assert any("sequences" in f and s == "missing" for f, s in got.items())
    dest = str(tmp_path / "restored")
    with pytest.raises(CorruptionError, match="not in the WAL archive"):
        tabledb.restore(target, dest)
    assert not os.path.exists(dest)
    tabledb.restore(target, dest, backup=b1["backup_id"])      # up to the gap still works


def test_damaged_metadata(tmp_path, backed_up):
    conn, target, b1, state = backed_up
    meta = os.path.join(target, "backups", b1["backup_id"] + ".meta")
    data = open(meta, "rb").read()
    with open(meta, "wb") as f:
        f.write(data.replace(b'"kind":"full"', b'"kind":"fool"'))
    assert statuses(target)[f"backups/{b1['backup_id']}.meta"] == "corrupt"
    assert tabledb.backup.list_backups(target) == []        # a damaged backup is not offered
    with pytest.raises(CorruptionError, match="checksum"):
        tabledb.restore(target, str(tmp_path / "r"), backup=b1["backup_id"])
    with pytest.raises(OperationalError, match="no backups"):
        tabledb.restore(target, str(tmp_path / "r"))
