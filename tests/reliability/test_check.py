"""``tabledb.check``: a sound database passes; each kind of damage is found and named.

Byte damage (checksums) is swept file by file in tests/crash/test_corruption.py;
here the damage is logical, written below the SQL layer with the engine itself
(bytes with right checksums that the SQL layer would never write): missing,
dangling and wrong index entries, rows that do not decode or hold the wrong
type, keys no table owns, and catalog records that do not parse. Then the two
front ends: ``tabledb check PATH`` (exit status) and the shell's ``.check``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

import tabledb
from tabledb.check import check, check_engine, format_report
from tabledb.sql import keys
from tabledb.sql.catalog import CATALOG_CF, Catalog
from tabledb.sql.rowcodec import encode_row
from tabledb.storage import Engine

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(path: str) -> None:
    with tabledb.connect(path, memtable_bytes=8192) as conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
        conn.execute("CREATE INDEX t_a ON t(a)")
        conn.execute("CREATE UNIQUE INDEX t_b ON t(b)")
        conn.execute("CREATE TABLE h(x TEXT, y REAL)")            # a hidden row id
        conn.execute("CREATE INDEX h_x ON h(x DESC)")
        conn.execute("CREATE VIEW v AS SELECT id FROM t WHERE a > 1")
        conn.commit()
        for lo in range(1, 301, 50):   # several commits: the memtable fills and flushes on the way
            conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i % 5, f"b{i}" if i % 4 else None)
                                                               for i in range(lo, lo + 50)])
            conn.commit()
        conn.executemany("INSERT INTO h VALUES (?, ?)", [(f"x{i % 9}", i / 4) for i in range(50)])
        conn.commit()
        conn.execute("ALTER TABLE t ADD COLUMN c INTEGER DEFAULT 7")
        conn.execute("CREATE INDEX t_c ON t(c, a)")
        conn.execute("INSERT INTO t VALUES (1000, 1, 'late', 8)")
    conn.close()


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "db")
    build(path)
    return path


def table_of(path: str, name: str):
    with tabledb.connect(path) as conn:
        table = conn._session.current_catalog().table(name)
    conn.close()
    return table


def test_a_sound_database_passes(db):
    report = check(db)
    assert report["ok"], format_report(report)
    assert report["tables"]["t"] == {"rows": 301, "indexes": {"t_a": 301, "t_b": 301, "t_c": 301}}
    assert report["tables"]["h"] == {"rows": 50, "indexes": {"h_x": 50}}
    assert report["catalog"] == {"tables": 2, "views": 1, "indexes": 4}
    assert report["files"]["tables"] >= 1
    assert os.path.exists(os.path.join(db, "CURRENT")) and not [
        n for n in os.listdir(os.path.dirname(db)) if n.startswith(".tabledb-check")], "scratch copy left behind"


def test_check_changes_nothing(db):
    before = {n: open(os.path.join(db, n), "rb").read() for n in os.listdir(db) if n != "LOCK"}
    progress = []
    check(db, progress=lambda done, total: progress.append((done, total)))
    after = {n: open(os.path.join(db, n), "rb").read() for n in os.listdir(db) if n != "LOCK"}
    assert before == after
    assert progress and progress[-1] == (1000, 1000) and progress == sorted(progress)


def tamper(path: str, fn) -> None:
    with Engine.open(path, background=False) as engine:
        fn(engine)


def first_key(engine, start_end) -> tuple[bytes, bytes]:
    return next(iter(engine.scan(*start_end)))


@pytest.mark.parametrize("damage,kind,where", [
    ("index-entry-missing", "index", ("t", "t_a")),
    ("index-entry-dangling", "index", ("t", "t_a")),
    ("index-entry-wrong-values", "index", ("t", "t_c")),
    ("unique-entry-wrong-row", "index", ("t", "t_b")),
    ("row-undecodable", "row", ("t", None)),
    ("row-wrong-type", "row", ("t", None)),
    ("row-too-wide", "row", ("h", None)),
    ("orphan-keys", "orphan", (None, None)),
    ("catalog-not-json", "catalog", (None, None)),
    ("catalog-wrong-shape", "catalog", (None, None)),
])
def test_logical_damage_is_found(db, damage, kind, where):
    t = table_of(db, "t")
    h = table_of(db, "h")
    index = {i.name: i for i in t.indexes}

    def do(engine):
        if damage == "index-entry-missing":
            key, _ = first_key(engine, keys.index_range(t.id, index["t_a"].id))
            engine.delete(key)
        elif damage == "index-entry-dangling":
            engine.delete(t.row_prefix + t.pk_codec.encode((5,)))   # row 5 goes, its entries stay
            for i in t.indexes:   # ... except in the other indexes, so only t_a is to blame
                if i.name != "t_a":
                    for k, v in list(engine.scan(*keys.index_range(t.id, i.id))):
                        if (v or k).endswith(t.pk_codec.encode((5,))):
                            engine.delete(k)
        elif damage == "index-entry-wrong-values":
            key, value = first_key(engine, keys.index_range(t.id, index["t_c"].id))
            engine.delete(key)
            engine.put(key[:-1] + bytes([key[-1] ^ 1]), value)   # same count, a wrong pk suffix
        elif damage == "unique-entry-wrong-row":
            key, value = first_key(engine, keys.index_range(t.id, index["t_b"].id))
            engine.put(key, t.pk_codec.encode((1000,)) if value != t.pk_codec.encode((1000,)) else
                       t.pk_codec.encode((1,)))
        elif damage == "row-undecodable":
            engine.put(t.row_prefix + t.pk_codec.encode((7,)), b"\x01\x03\x06\x0a")
        elif damage == "row-wrong-type":
            engine.put(t.row_prefix + t.pk_codec.encode((7,)), encode_row((7, "two", "b7")))
        elif damage == "row-too-wide":
            key, _ = first_key(engine, h.row_range)
            engine.put(key, encode_row(("x0", 0.0, 1, 2)))
        elif damage == "orphan-keys":
            engine.put(keys.index_prefix(999, 0) + keys.encode_key((1,), ("INTEGER",)), encode_row((1,)))
        elif damage == "catalog-not-json":
            engine.put(Catalog.table_key("broken"), b"{not json", cf=engine.get_column_family(CATALOG_CF))
        elif damage == "catalog-wrong-shape":
            engine.put(Catalog.table_key("shape"), json.dumps({"id": 77}).encode(),
                       cf=engine.get_column_family(CATALOG_CF))

    tamper(db, do)
    report = check(db)
    assert not report["ok"], f"{damage} went unnoticed:\n{format_report(report)}"
    found = [p for p in report["problems"] if p["kind"] == kind]
    assert found, format_report(report)
    table, idx = where
    if table:
        assert any(p.get("table") == table and p.get("index") == idx for p in found), format_report(report)
    assert "problem" in format_report(report)


def test_check_of_a_database_open_in_this_process_uses_its_engine(db):
    conn = tabledb.connect(db)
    try:
        report = check(db)
        assert report["ok"], format_report(report)
        assert check_engine(conn._db.engine)["ok"]
    finally:
        conn.close()


def test_check_of_an_in_memory_database():
    conn = tabledb.connect(":memory:")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)")
    conn.execute("CREATE INDEX t_a ON t(a)")
    conn.execute("INSERT INTO t VALUES (1, 'x')")
    conn.commit()
    report = check_engine(conn._db.engine)
    conn.close()
    assert report["ok"] and report["tables"]["t"] == {"rows": 1, "indexes": {"t_a": 1}}
    assert any("in-memory" in w for w in report["warnings"])


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(REPO, "shell.py"), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_cli_exit_status(db, tmp_path):
    r = run_cli("check", db)
    assert r.returncode == 0 and r.stdout.rstrip().endswith(")") and ": ok (" in r.stdout, r.stdout + r.stderr
    r = run_cli("check", db, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    sst = max((os.path.getsize(os.path.join(db, n)), n) for n in os.listdir(db) if n.endswith(".sst"))[1]
    with open(os.path.join(db, sst), "r+b") as f:
        f.seek(100)
        b = f.read(1)[0]
        f.seek(100)
        f.write(bytes([b ^ 0x08]))
    r = run_cli("check", db)
    assert r.returncode == 1 and "problem (corruption)" in r.stdout and sst in r.stdout, r.stdout + r.stderr
    r = run_cli("check", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.startswith("ProgrammingError: "), r.stderr


@pytest.mark.parametrize("launcher", ["python -m tabledb", "tabledb script"])
def test_tabledb_check_path_from_every_launcher(db, launcher):
    """``tabledb check PATH`` (the installed script) and ``python -m tabledb check PATH``."""
    if launcher == "tabledb script":
        script = os.path.join(os.path.dirname(sys.executable), "tabledb")
        if not os.path.exists(script):
            pytest.skip("the tabledb script is not installed beside this interpreter")
        cmd = [script, "check", db]
    else:
        cmd = [sys.executable, "-m", "tabledb", "check", db]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and f"{db}: ok (" in r.stdout, r.stdout + r.stderr


def test_shell_dot_check(db):
    from tabledb.shell import Shell
    conn = tabledb.connect(db, autocommit=True)
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(conn, interactive=False, out=out, err=err)
    try:
        shell.run_text(".check\n", source="-c")
        assert shell.errors == 0 and ": ok (" in out.getvalue(), err.getvalue()
        assert "t: 301 rows" in out.getvalue()
        t = table_of(db, "t")
        conn._db.engine.delete(next(iter(conn._db.engine.scan(*keys.index_range(t.id, t.indexes[0].id))))[0])
        shell.settings.bail = False
        shell.run_text(".check\n", source="-c")
        assert shell.errors == 1 and "DatabaseError: check found 1 problem(s)" in err.getvalue(), err.getvalue()
    finally:
        conn.close()
