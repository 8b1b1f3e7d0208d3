"""The same backups on S3, through a local moto server (pyarrow.fs's S3 filesystem; moto is in the
test extra). Skipped when moto is not installed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

import tabledb

from backup_helpers import archive_now, restored, table_state

pytest.importorskip("moto", reason="moto (the test extra) is needed for the S3 tests")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    cmd = [server, "-H", "127.0.0.1", "-p", str(port)] if os.path.exists(server) else \
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.skip("the moto server did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_target(s3_endpoint, monkeypatch, request):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import pyarrow.fs as pafs
    bucket = "tabledb-" + request.node.name.lower().replace("_", "-")[:40]
    uri = (f"s3://{bucket}/backups?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
           "&allow_bucket_creation=true")
    fs, _ = pafs.FileSystem.from_uri(uri)
    fs.create_dir(bucket)
    return uri


def test_backup_verify_restore_and_drop_on_s3(tmp_path, connect, s3_target):
    conn = connect(wal_archive_interval=0.2)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "s3" * 20) for i in range(800)])
    b1 = conn.execute(f"BACKUP DATABASE TO '{s3_target}'").fetchone()
    conn.execute("DELETE FROM t WHERE id < 100")
    middle = conn.execute("SELECT last_sequence()").fetchone()[0]
    middle_state = table_state(conn)
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "late") for i in range(1000, 1100)])
    b2 = conn.backup(s3_target)
    assert b2["kind"] == "incremental" and b2["parent_id"] == b1[0]
    conn.execute("UPDATE t SET v = 'last' WHERE id = 500")
    state = table_state(conn)
    archive_now(conn)
    shown = conn.execute(f"SHOW BACKUPS FROM '{s3_target}'").fetchall()
    assert [r[0] for r in shown] == [b1[0], b2["backup_id"]]
    report = conn.execute(f"VERIFY BACKUP FROM '{s3_target}'").fetchall()
    assert report and all(r[2] == "ok" for r in report)
    conn.execute(f"RESTORE DATABASE FROM '{s3_target}' INTO '{tmp_path / 'latest'}'").fetchall()
    with restored(tmp_path, "latest") as r:
        assert table_state(r) == state
    tabledb.restore(s3_target, str(tmp_path / "middle"), as_of=middle)
    with restored(tmp_path, "middle") as r:
        assert table_state(r) == middle_state
    conn.execute(f"DROP BACKUP '{b1[0]}' FROM '{s3_target}'").fetchall()
    assert all(r["status"] == "ok" for r in tabledb.verify_backup(s3_target))
    tabledb.restore(s3_target, str(tmp_path / "b2"), backup=b2["backup_id"])


def test_a_bulk_load_between_backups_restores_from_s3(tmp_path, connect, s3_target):
    """An ingested table (never in the WAL as rows) reaches the S3 archive beside the segment that
    logs it; the latest state and a sequence just before the load restore from S3 alone."""
    import pyarrow as pa
    conn = connect(wal_archive_interval=3600)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "before") for i in range(100)])
    conn.backup(s3_target)
    conn.execute("UPDATE t SET v = 'changed' WHERE id < 10")
    before_load = conn.execute("SELECT last_sequence()").fetchone()[0]
    before_state = table_state(conn)
    conn.ingest_arrow("t", pa.table({"id": pa.array(range(1000, 3000), pa.int64()),
                                     "v": pa.array([f"bulk{i}" for i in range(2000)])}))
    assert conn._db.engine.ingest_links(), "the load did not go through the ingest path"
    conn.execute("DELETE FROM t WHERE id BETWEEN 1000 AND 1099")
    state = table_state(conn)
    archive_now(conn)
    rows = tabledb.verify_backup(s3_target)
    assert any("/ingest/" in r["file"] for r in rows) and all(r["status"] == "ok" for r in rows), rows
    tabledb.restore(s3_target, str(tmp_path / "latest"))
    with restored(tmp_path, "latest") as r:
        assert table_state(r) == state
    tabledb.restore(s3_target, str(tmp_path / "before"), as_of=before_load)
    with restored(tmp_path, "before") as r:
        assert table_state(r) == before_state
