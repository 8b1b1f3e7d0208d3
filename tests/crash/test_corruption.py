"""Damaged files under SQL: a CorruptionError naming the file and offset, or the WAL's tail drop; never wrong rows.

A database built by the random workload (several levels of SSTables, a
MANIFEST of many edits, a WAL holding the last few transactions, one record
each) is copied, and one file of the copy damaged: a bit flipped, 16 bytes
zeroed, or the file cut short, at offsets spread over the file. Then
``tabledb.check`` runs on the untouched damaged copy, and ``tabledb.connect``
opens it and reads every table. Allowed outcomes, per file kind:

- SSTable: CorruptionError naming it, or every row exactly right (damage in a
  block no query reads, e.g. of a dropped table); ``check`` names it either way.
- WAL: damage in the file header or in a record followed by valid records is a
  CorruptionError naming the WAL and the record's offset; damage in the last
  record, or a cut, drops exactly the records from there on (the documented
  torn tail: the database is the history up to the transaction before) and
  ``stats()["wal"]["torn_tail_bytes"]`` says so.
- MANIFEST (edits before the last) and CURRENT: CorruptionError naming it.

The tests at the end take the MANIFEST's last edit and a cut MANIFEST on
their own (a damaged edit is corruption; a cut one is a torn tail only when
nothing the older version needs is gone, and then open sets the tables it does
not list aside instead of deleting them), and a zeroed WAL record before
non-zero bytes (a torn tail, counted).
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

import tabledb
from tabledb.check import check, format_report
from tabledb.errors import CorruptionError
from tabledb.storage import Engine
from tabledb.storage.fs import DEFAULT_FS
from tabledb.storage.log import MANIFEST_MAGIC, WAL_MAGIC, read_log

from faultfs import FaultInjectionFS

from .workload import ENGINE_OPTIONS, Generator, Model, read_state, run_transaction

TAIL_TXS = 6   # transactions whose records are the WAL's


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A closed database, the model state after each of its last transactions, and where its files are."""
    path = str(tmp_path_factory.mktemp("corrupt") / "db")
    conn = tabledb.connect(path, **ENGINE_OPTIONS)
    rng = random.Random(31)
    gen = Generator(rng, ddl=0.06)
    model = Model()
    for txid in range(1, 121):
        work = model.fork()
        run_transaction(conn, gen.transaction(work, txid))
        model = work
    conn._db.engine.flush()   # the WAL starts afresh: it will hold exactly the tail transactions
    states = [model.state()]
    for i in range(TAIL_TXS):
        t = sorted(model.tables)[0]
        op = {"op": "insert", "table": t, "rows": [[10_000 + i, i, f"tail{i}", 0.25] +
                                                    [None] * (len(model.tables[t].columns) - 4)]}
        work = model.fork()
        work.apply(op)
        run_transaction(conn, [op])
        model = work
        states.append(model.state())
    # damage only files the database uses: a compaction's inputs can linger on disk until the
    # next flush or open (a known engine bug, see test_resources), and damage there is harmless
    engine = conn._db.engine
    with engine.versions.lock:
        live = {f"{f.number:06d}.sst" for f in engine.versions.current.all_files()}
    conn.close()
    names = os.listdir(path)
    wal = [n for n in names if n.endswith(".log")]
    assert len(wal) == 1, wal
    records, torn, _ = read_log(DEFAULT_FS, os.path.join(path, wal[0]), magic=WAL_MAGIC)
    assert torn == 0 and len(records) == TAIL_TXS, (len(records), torn)
    ssts = sorted((os.path.getsize(os.path.join(path, n)), n) for n in names if n.endswith(".sst") and n in live)
    assert ssts, names   # the smallest and the largest live table (one file when compaction merged them all)
    manifest = next(n for n in names if n.startswith("MANIFEST-"))
    edits, _, _ = read_log(DEFAULT_FS, os.path.join(path, manifest), magic=MANIFEST_MAGIC)
    assert len(edits) >= 4
    return {"path": path, "states": states, "wal": wal[0], "wal_records": [o for o, _ in records],
            "sst-small": ssts[0][1], "sst-large": ssts[-1][1], "manifest": manifest,
            "manifest_edits": [o for o, _ in edits], "current": "CURRENT"}


def damage(src: str, dst: str, name: str, how: str, offset: int) -> str:
    shutil.copytree(src, dst)
    target = os.path.join(dst, name)
    with open(target, "r+b") as f:
        if how == "flip":
            f.seek(offset)
            b = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([b ^ (1 << (offset % 8))]))
        elif how == "zero":
            f.seek(offset)
            f.write(b"\x00" * min(16, os.path.getsize(target) - offset))
        else:
            f.truncate(offset)
    return target


def observe(path: str):
    """("corruption", error) or ("rows", state, torn_tail_bytes): open with tabledb.connect and read everything."""
    try:
        conn = tabledb.connect(path, **ENGINE_OPTIONS)
    except CorruptionError as exc:
        return "corruption", exc
    try:
        state = read_state(conn)
        torn = conn._db.engine.stats()["wal"]["torn_tail_bytes"]
    except CorruptionError as exc:
        return "corruption", exc
    finally:
        conn.close()
    return "rows", state, torn


def offsets(built: dict, target: str, how: str) -> list[int]:
    size = os.path.getsize(os.path.join(built["path"], built[target]))
    if target == "wal":
        recs = built["wal_records"]
        if how == "truncate":
            return [10, recs[0], recs[2] + 5, recs[-1] + 3, size - 1]
        return [3, recs[0] + 1, recs[2] + 9, recs[-1], recs[-1] + 12, size - 1]
    if target == "manifest":   # edits before the last (the last: see the tests at the end)
        edits = built["manifest_edits"]
        return [2, edits[0] + 9, edits[1] + 2, edits[len(edits) // 2] + 8]
    if target == "current":
        return [0, 5, size - 1]
    if how == "truncate":
        return [0, 1, size // 3, size - 1]
    return [0, 9, size // 5, size // 2, size - 60, size - 30, size - 1]


def expected_wal_outcome(built: dict, how: str, offset: int):
    """("corruption", record offset) or ("prefix", transactions kept, torn reported)."""
    recs = built["wal_records"]
    if how == "truncate":
        kept = sum(1 for r in recs if r < offset and _record_end(built, r) <= offset)
        return "prefix", kept, offset not in recs and offset > 0
    if offset < recs[0]:
        return "corruption", 0
    i = max(k for k, r in enumerate(recs) if r <= offset)
    if i < len(recs) - 1:
        return "corruption", recs[i]
    return "prefix", i, how == "flip"


def _record_end(built: dict, start: int) -> int:
    recs = built["wal_records"]
    later = [r for r in recs if r > start]
    return later[0] if later else os.path.getsize(os.path.join(built["path"], built["wal"]))


CASES = [(target, how) for target in ("wal", "sst-large", "sst-small", "manifest", "current")
         for how in ("flip", "zero", "truncate")
         if (target, how) != ("manifest", "truncate")]   # a cut MANIFEST: the tests at the end


@pytest.mark.parametrize("target,how", CASES)
def test_damage_is_corruption_or_tail_drop_never_wrong_rows(tmp_path, built, target, how):
    full = built["states"][-1]
    for n, offset in enumerate(offsets(built, target, how)):
        copy = str(tmp_path / f"db{n}")
        damaged = damage(built["path"], copy, built[target], how, offset)
        report = check(copy)
        outcome = observe(copy)
        what = f"{how} at {offset} of {built[target]}"
        names_it = [p for p in report["problems"] if os.path.abspath(p.get("file", "")) == damaged]
        if outcome[0] == "corruption":
            exc = outcome[1]
            assert os.path.abspath(exc.file) == damaged, f"{what}: the CorruptionError names {exc.file}"
            assert isinstance(exc.offset, int) and 0 <= exc.offset <= max(offset, 1) + 32768, (what, exc.offset)
            assert f"offset {exc.offset}" in str(exc)
            assert names_it, f"{what}: tabledb check does not name the file:\n{format_report(report)}"
        if target == "wal":
            want = expected_wal_outcome(built, how, offset)
            if want[0] == "corruption":
                assert outcome[0] == "corruption", f"{what}: valid records follow the damage, yet no CorruptionError"
                assert outcome[1].offset == want[1], f"{what}: offset {outcome[1].offset}, want {want[1]}"
            else:
                assert outcome[0] == "rows", f"{what}: {outcome[1]!r}"
                _, kept, reported = want
                assert outcome[1] == built["states"][kept], f"{what}: not the history up to transaction {kept}"
                if reported:
                    assert outcome[2] > 0, f"{what}: records dropped, torn_tail_bytes is 0"
                    assert report["ok"] and report["warnings"], format_report(report)
        elif outcome[0] == "rows":
            assert target.startswith("sst"), f"{what}: opened and read without a CorruptionError"
            assert outcome[1] == full, f"{what}: wrong rows without an error"
            assert names_it, f"{what}: tabledb check missed the damage:\n{format_report(report)}"
        shutil.rmtree(copy)


# =============================================================================================
# The MANIFEST's last edit, a cut MANIFEST, a zeroed last WAL record


def _manifest_db(tmp_path) -> tuple[str, str, list[int]]:
    path = str(tmp_path / "db")
    with Engine.open(path, background=False) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v")
        db.flush()
        db.compact_range()   # the flushed table is replaced by a compaction output: the last edit says so
    with open(os.path.join(path, "CURRENT")) as f:
        manifest = os.path.join(path, f.read().strip())
    records, _, _ = read_log(DEFAULT_FS, manifest, magic=MANIFEST_MAGIC)
    return path, manifest, [o for o, _ in records]


@pytest.mark.parametrize("how", ["cut-last-edit", "flip-in-last-edit", "cut-mid-file", "zeros-from-last-edit",
                                 "cut-at-last-edit", "cut-at-mid-edit"])
def test_damaged_last_manifest_edit_is_corruption_and_deletes_nothing(tmp_path, how):
    """The edits lost were synced and acted upon (the compaction deleted its input, the flush its
    WAL segment): whether the MANIFEST is cut inside an edit, flipped, zeroed or cut right at an
    edit's start, open is a CorruptionError naming it, before anything is deleted."""
    path, manifest, edits = _manifest_db(tmp_path)
    tables = sorted(n for n in os.listdir(path) if n.endswith(".sst"))
    mid = edits[len(edits) // 2]
    if how == "cut-last-edit":
        os.truncate(manifest, edits[-1] + 10)
    elif how == "cut-mid-file":
        os.truncate(manifest, mid + 3)
    elif how == "cut-at-last-edit":
        os.truncate(manifest, edits[-1])
    elif how == "cut-at-mid-edit":
        os.truncate(manifest, mid)
    elif how == "zeros-from-last-edit":   # a power loss that kept the file's size but not its last page
        with open(manifest, "r+b") as f:
            f.seek(edits[-1])
            f.write(b"\x00" * (os.path.getsize(manifest) - edits[-1]))
    else:
        with open(manifest, "r+b") as f:
            f.seek(edits[-1] + 9)
            b = f.read(1)[0]
            f.seek(edits[-1] + 9)
            f.write(bytes([b ^ 0x04]))
    try:
        report = check(path)
        with pytest.raises(CorruptionError) as info:
            with Engine.open(path, background=False) as db:
                list(db.scan())
        assert os.path.abspath(info.value.file) == os.path.abspath(manifest), info.value
        assert info.value.offset in edits, info.value
        if how in ("cut-last-edit", "flip-in-last-edit", "zeros-from-last-edit"):
            assert info.value.offset == edits[-1], info.value
        elif how == "cut-mid-file":
            assert info.value.offset == mid, info.value
        assert not report["ok"] and any(os.path.abspath(p.get("file", "")) == os.path.abspath(manifest)
                                        for p in report["problems"]), format_report(report)
    finally:
        assert sorted(n for n in os.listdir(path) if n.endswith(".sst")) == tables, "open deleted table files"


def test_interrupted_last_manifest_edit_is_a_torn_tail_and_keeps_its_tables(tmp_path):
    """The other side of the rule: an edit whose append was cut short (a kill mid-write) was never
    acted upon, so the version before it is whole. Open drops the tail, reads every row, says so,
    and keeps the tables the lost edit made (renamed .orphan): nothing is deleted."""
    path = str(tmp_path / "db")
    fs = FaultInjectionFS()
    db = Engine.open(path, background=False, fs=fs)
    expected = {b"k%03d" % i: b"v%d" % i for i in range(100)}
    for key, value in expected.items():
        db.put(key, value)
    db.flush()
    fs.fail_syncs("MANIFEST-*")
    with pytest.raises(tabledb.OperationalError):
        db.compact_range()    # the compaction's edit is appended, its fsync fails: never acted upon
    fs.clear_faults()
    db.close()
    with open(os.path.join(path, "CURRENT")) as f:
        manifest = os.path.join(path, f.read().strip())
    edits = [o for o, _ in read_log(DEFAULT_FS, manifest, magic=MANIFEST_MAGIC)[0]]
    os.truncate(manifest, edits[-1] + 10)   # what a kill in the middle of that append leaves
    tables = sorted(n for n in os.listdir(path) if n.endswith(".sst"))
    assert len(tables) == 2, tables   # the flushed table, and the compaction's output that no version lists
    report = check(path)
    assert report["ok"] and any("MANIFEST" in w for w in report["warnings"]), format_report(report)
    with Engine.open(path, background=False) as db:
        assert dict(db.scan()) == expected
        stats = db.stats()["manifest"]
        assert stats["torn_tail_bytes"] == 10
        assert [os.path.basename(n) for n in stats["orphaned_files"]] == [tables[1] + ".orphan"]
        live = {f"{f.number:06d}.sst" for f in db.versions.current.all_files()}
    assert live == {tables[0]}
    assert sorted(n for n in os.listdir(path) if n.endswith((".sst", ".sst.orphan"))) == [
        tables[0], tables[1] + ".orphan"], "open deleted a table file"
    with Engine.open(path, background=False) as db:   # and the next open keeps it too
        assert dict(db.scan()) == expected
        assert db.stats()["manifest"]["torn_tail_bytes"] == 0
    assert tables[1] + ".orphan" in os.listdir(path)


def test_zeroed_last_wal_record_is_reported_as_torn(tmp_path, built):
    copy = str(tmp_path / "db")
    damage(built["path"], copy, built["wal"], "zero", built["wal_records"][-1])
    outcome = observe(copy)
    assert outcome[0] == "rows" and outcome[1] == built["states"][TAIL_TXS - 1]
    assert outcome[2] > 0, "a whole record was dropped and torn_tail_bytes says 0"
