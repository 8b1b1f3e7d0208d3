"""The transaction write set (tabledb/sql/txn.py): reads of own writes, savepoints, scans, the commit batch.

The unit tests run against both engines. The state machine at the end checks a
Transaction against a deliberately dumb model: the engine state the
transaction reads (a dict per column family, frozen at its snapshot) plus the
list of operations it logged, truncated on rollback; the view is the dict with
the operations applied in order, and the committed state is the *latest*
engine state with the same operations applied.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from tabledb.errors import InvalidArgumentError, InvalidTypeError
from tabledb.sql.txn import Transaction
from tabledb.storage import Engine, WriteBatch
from tabledb.storage.memory import MemoryEngine

# Small LSM options (as tests/storage/conftest.py): a few writes fill a memtable, flushes compact.
SMALL_OPTIONS = {
    "memtable_bytes": 4096,
    "target_file_bytes": 8192,
    "block_size": 256,
    "l0_compaction_trigger": 2,
    "level1_bytes": 32768,
    "background": False,
}


def open_engine(kind: str, directory: str):
    if kind == "memory":
        return MemoryEngine.open(None)
    return Engine.open(directory, create=True, **SMALL_OPTIONS)


@pytest.fixture(params=["memory", "lsm"])
def engine(request, tmp_path):
    db = open_engine(request.param, str(tmp_path / "db"))
    yield db
    db.close()


@pytest.fixture
def mem():
    db = MemoryEngine.open(None)
    yield db
    db.close()


def view(txn, start=None, end=None, cf=None, reverse=False):
    return list(txn.scan(start, end, cf=cf, reverse=reverse))


def engine_state(db, cf=None):
    return dict(db.scan(cf=cf))


# --- reads of own writes -------------------------------------------------------------------------

def test_reads_own_writes_and_engine_sees_nothing_before_commit(engine):
    engine.put(b"a", b"engine-a")
    engine.put(b"c", b"engine-c")
    txn = Transaction(engine)
    assert len(txn) == 0 and txn.pending_bytes == 0
    txn.put(b"b", b"1")
    txn.put(b"c", b"2")
    assert txn.get(b"a") == b"engine-a"
    assert txn.get(b"b") == b"1"
    assert txn.get(b"c") == b"2"
    assert txn.get(b"zz") is None
    assert view(txn) == [(b"a", b"engine-a"), (b"b", b"1"), (b"c", b"2")]
    assert engine.get(b"b") is None and engine.get(b"c") == b"engine-c"
    assert len(txn) == 2


def test_delete_hides_engine_key_then_put_brings_it_back(engine):
    engine.put(b"k", b"old")
    txn = Transaction(engine)
    txn.delete(b"k")
    assert txn.get(b"k") is None
    assert view(txn) == []
    txn.put(b"k", b"new")
    assert txn.get(b"k") == b"new"
    assert view(txn) == [(b"k", b"new")]
    txn.delete(b"k")
    assert txn.get(b"k") is None and view(txn) == []
    assert len(txn) == 3


def test_delete_of_an_absent_key_is_logged_and_harmless(mem):
    txn = Transaction(mem)
    txn.delete(b"nothing")
    assert len(txn) == 1 and txn.get(b"nothing") is None and view(txn) == []


def test_put_then_delete_range_then_put(engine):
    for key in (b"a", b"b", b"c", b"d"):
        engine.put(key, b"e" + key)
    txn = Transaction(engine)
    txn.put(b"b", b"early")
    txn.put(b"bb", b"early")
    txn.delete_range(b"b", b"d")
    assert txn.get(b"b") is None and txn.get(b"bb") is None and txn.get(b"c") is None
    assert txn.get(b"a") == b"ea" and txn.get(b"d") == b"ed"
    assert view(txn) == [(b"a", b"ea"), (b"d", b"ed")]
    txn.put(b"bb", b"late")
    assert txn.get(b"bb") == b"late" and txn.get(b"b") is None
    assert view(txn) == [(b"a", b"ea"), (b"bb", b"late"), (b"d", b"ed")]
    assert view(txn, reverse=True) == [(b"d", b"ed"), (b"bb", b"late"), (b"a", b"ea")]
    txn.delete_range(b"", b"bc")
    assert view(txn) == [(b"d", b"ed")]
    assert txn.get(b"a") is None and txn.get(b"bb") is None


def test_get_local_never_reads_the_engine(mem):
    mem.put(b"e", b"engine")
    cf = mem.create_column_family("aux")
    txn = Transaction(mem)
    assert txn.get_local(b"e") == (False, None) and txn.get_local(b"e", cf=cf) == (False, None)
    txn.put(b"a", b"1")
    txn.delete(b"b")
    txn.put(b"c", b"2")
    txn.delete_range(b"c", b"f")
    txn.put(b"d", b"3")
    assert txn.get_local(b"a") == (True, b"1")
    assert txn.get_local(b"b") == (True, None)
    assert txn.get_local(b"c") == (True, None)         # put, then covered by a range delete
    assert txn.get_local(b"e") == (True, None)         # an engine key under a local range delete
    assert txn.get_local(b"d") == (True, b"3")
    assert txn.get_local(b"z") == (False, None)
    assert txn.get_local(b"a", cf=cf) == (False, None)
    with pytest.raises(InvalidTypeError):
        txn.get_local("a")


def test_delete_range_edges(mem):
    mem.put(b"a", b"1")
    txn = Transaction(mem)
    txn.delete_range(b"a", b"a")
    assert len(txn) == 0 and txn.pending_bytes == 0 and txn.get(b"a") == b"1"
    with pytest.raises(InvalidArgumentError):
        txn.delete_range(b"b", b"a")
    assert len(txn) == 0
    txn.delete_range(b"a", b"a\x00")     # exactly one key
    assert txn.get(b"a") is None and view(txn) == []


def test_overlapping_and_many_range_deletes_split_the_engine_scan(engine):
    for i in range(40):
        engine.put(b"k%02d" % i, b"v%02d" % i)
    txn = Transaction(engine)
    txn.delete_range(b"k05", b"k10")
    txn.delete_range(b"k08", b"k12")
    txn.delete_range(b"k20", b"k21")
    txn.delete_range(b"k30", b"k35")
    txn.put(b"k09", b"new")
    expected = [(b"k%02d" % i, b"v%02d" % i) for i in range(40)
                if not (5 <= i < 12 or i == 20 or 30 <= i < 35)]
    expected.append((b"k09", b"new"))
    expected.sort()
    assert view(txn) == expected
    assert view(txn, reverse=True) == expected[::-1]
    assert view(txn, b"k07", b"k31") == [kv for kv in expected if b"k07" <= kv[0] < b"k31"]
    assert view(txn, b"k06", b"k08") == []
    assert view(txn, None, b"k06") == expected[:5]


def test_argument_types(mem):
    txn = Transaction(mem)
    for call in (lambda: txn.put("a", b"v"), lambda: txn.put(b"a", "v"), lambda: txn.put(b"a", None),
                 lambda: txn.delete(1), lambda: txn.get("a"), lambda: txn.delete_range(b"a", "b"),
                 lambda: txn.scan("a"), lambda: txn.scan(None, 5), lambda: txn.put(b"a", b"v", cf="default"),
                 lambda: txn.get(b"a", cf=0), lambda: txn.scan(cf="x")):
        with pytest.raises(InvalidTypeError):
            call()
    with pytest.raises(TypeError):                # InvalidTypeError is a TypeError too
        txn.put(1, b"v")
    with pytest.raises(InvalidArgumentError):
        txn.scan(b"b", b"a")
    assert len(txn) == 0 and txn.pending_bytes == 0
    key = bytearray(b"k")
    txn.put(key, memoryview(b"v"))
    key[0] = ord("x")                             # copied: later changes do not leak in
    assert txn.get(b"k") == b"v" and txn.get(bytearray(b"k")) == b"v"
    assert view(txn, bytearray(b"a")) == [(b"k", b"v")]
    assert all(type(part) is bytes for op in txn.write_batch().ops for part in op[2:])


# --- scans ---------------------------------------------------------------------------------------

def test_scan_bounds_and_reverse(engine):
    for key in (b"a", b"c", b"e", b"g"):
        engine.put(key, b"E")
    txn = Transaction(engine)
    for key in (b"b", b"c", b"f", b"h"):
        txn.put(key, b"T")
    txn.delete(b"e")
    full = [(b"a", b"E"), (b"b", b"T"), (b"c", b"T"), (b"f", b"T"), (b"g", b"E"), (b"h", b"T")]
    assert view(txn) == full
    assert view(txn, reverse=True) == full[::-1]
    assert view(txn, b"b", b"g") == full[1:4]
    assert view(txn, b"b", b"g", reverse=True) == full[1:4][::-1]
    assert view(txn, b"c") == full[2:]
    assert view(txn, None, b"c") == full[:2]
    assert view(txn, None, b"c", reverse=True) == full[:2][::-1]
    assert view(txn, b"c", reverse=True) == full[2:][::-1]
    assert view(txn, b"d", b"d") == []
    assert view(txn, b"", b"a\x00") == full[:1]
    assert view(txn, b"h") == [(b"h", b"T")]


def test_scan_with_only_local_keys_or_only_engine_keys(engine):
    txn = Transaction(engine)
    assert view(txn) == []
    txn.put(b"x", b"1")
    assert view(txn) == [(b"x", b"1")]
    txn2 = Transaction(engine)
    engine.put(b"y", b"2")
    assert view(txn2) == [(b"y", b"2")]
    assert view(txn) == [(b"x", b"1"), (b"y", b"2")]   # no snapshot: the latest state at each call


def test_scan_iterator_is_stable_while_the_transaction_is_written(engine):
    for i in range(0, 20, 2):
        engine.put(b"k%02d" % i, b"e")
    txn = Transaction(engine)
    for i in range(1, 20, 4):
        txn.put(b"k%02d" % i, b"t")
    expected = view(txn)
    for reverse in (False, True):
        sp = txn.savepoint()
        it = txn.scan(reverse=reverse)
        got = [next(it), next(it)]
        for i in range(20):
            txn.put(b"k%02d" % i, b"changed")
            txn.put(b"k%02da" % i, b"new")
        txn.delete_range(b"k00", b"k99")
        txn.put(b"k15", b"late")
        assert view(txn) == [(b"k15", b"late")]
        got.append(next(it))
        txn.rollback_to(sp)
        got.extend(it)
        assert got == (expected[::-1] if reverse else expected)
        txn.release(sp)


def test_multi_gap_scan_sees_one_engine_state(engine):
    for i in range(10):
        engine.put(b"k%d" % i, b"old")
    txn = Transaction(engine)             # reads the latest state at each call
    txn.delete_range(b"k2", b"k4")
    txn.delete_range(b"k6", b"k7")
    it = txn.scan()
    assert next(it) == (b"k0", b"old")
    engine.put(b"k5", b"newer")
    engine.put(b"k9", b"newer")
    engine.delete(b"k8")
    assert list(it) == [(b"k1", b"old"), (b"k4", b"old"), (b"k5", b"old"), (b"k7", b"old"), (b"k8", b"old"),
                        (b"k9", b"old")]
    assert txn.get(b"k5") == b"newer" and txn.get(b"k3") is None


def test_snapshot_isolation(engine):
    engine.put(b"a", b"1")
    engine.put(b"b", b"1")
    with engine.snapshot() as snap:
        txn = Transaction(engine, snap)
        engine.put(b"a", b"2")
        engine.delete(b"b")
        engine.put(b"c", b"2")
        assert txn.get(b"a") == b"1" and txn.get(b"b") == b"1" and txn.get(b"c") is None
        assert view(txn) == [(b"a", b"1"), (b"b", b"1")]
        txn.delete_range(b"b", b"c")
        txn.put(b"d", b"t")
        assert view(txn) == [(b"a", b"1"), (b"d", b"t")]
        assert view(txn, reverse=True) == [(b"d", b"t"), (b"a", b"1")]


# --- savepoints ----------------------------------------------------------------------------------

def test_nested_savepoints(engine):
    engine.put(b"e", b"engine")
    txn = Transaction(engine)
    txn.put(b"a", b"0")
    sp1 = txn.savepoint()
    txn.put(b"a", b"1")
    txn.put(b"b", b"1")
    sp2 = txn.savepoint()
    txn.delete(b"a")
    txn.delete_range(b"b", b"f")
    txn.put(b"c", b"2")
    sp3 = txn.savepoint()
    assert len({sp1, sp2, sp3}) == 3
    txn.put(b"d", b"3")
    assert view(txn) == [(b"c", b"2"), (b"d", b"3")]
    txn.rollback_to(sp2)
    assert view(txn) == [(b"a", b"1"), (b"b", b"1"), (b"e", b"engine")]
    assert txn.get(b"e") == b"engine" and txn.get(b"c") is None and len(txn) == 3
    with pytest.raises(InvalidArgumentError):
        txn.rollback_to(sp3)                 # newer savepoints are gone
    txn.rollback_to(sp1)
    assert view(txn) == [(b"a", b"0"), (b"e", b"engine")] and len(txn) == 1
    txn.rollback_to(sp1)                     # the savepoint stays after ROLLBACK TO
    assert len(txn) == 1


def test_rollback_then_more_writes_then_rollback_again(engine):
    txn = Transaction(engine)
    sp = txn.savepoint()
    txn.put(b"a", b"1")
    bytes_after_a = txn.pending_bytes
    txn.rollback_to(sp)
    assert txn.pending_bytes == 0 and len(txn) == 0 and txn.get(b"a") is None
    txn.put(b"b", b"2")
    inner = txn.savepoint()
    txn.put(b"b", b"3")
    txn.put(b"a", b"4")
    txn.rollback_to(inner)
    assert txn.get(b"b") == b"2" and txn.get(b"a") is None
    assert txn.pending_bytes == bytes_after_a
    txn.rollback_to(sp)
    assert view(txn) == [] and len(txn) == 0
    txn.put(b"c", b"5")
    assert view(txn) == [(b"c", b"5")]


def test_rollback_after_scans_keeps_the_sorted_view_right(engine):
    txn = Transaction(engine)
    txn.put(b"m", b"1")
    assert view(txn) == [(b"m", b"1")]        # builds the sorted view
    sp = txn.savepoint()
    txn.put(b"a", b"2")
    txn.put(b"z", b"3")
    txn.put(b"m", b"4")
    assert view(txn) == [(b"a", b"2"), (b"m", b"4"), (b"z", b"3")]   # syncs it
    txn.put(b"q", b"5")                          # not yet synced
    txn.rollback_to(sp)
    assert view(txn) == [(b"m", b"1")]
    txn.put(b"a", b"6")
    txn.put(b"q", b"7")
    assert view(txn) == [(b"a", b"6"), (b"m", b"1"), (b"q", b"7")]
    txn.rollback_to(sp)
    txn.delete(b"m")
    assert view(txn) == [] and view(txn, reverse=True) == []
    txn.rollback_to(sp)
    assert view(txn) == [(b"m", b"1")]


def test_release(mem):
    txn = Transaction(mem)
    sp1 = txn.savepoint()
    txn.put(b"a", b"1")
    sp2 = txn.savepoint()
    txn.put(b"b", b"2")
    sp3 = txn.savepoint()
    txn.release(sp2)                          # forgets sp2 and sp3, keeps the writes
    assert view(txn) == [(b"a", b"1"), (b"b", b"2")]
    for token in (sp2, sp3, 12345):
        with pytest.raises(InvalidArgumentError):
            txn.rollback_to(token)
        with pytest.raises(InvalidArgumentError):
            txn.release(token)
    txn.rollback_to(sp1)
    assert view(txn) == [] and len(txn) == 0
    txn.release(sp1)
    with pytest.raises(InvalidArgumentError):
        txn.rollback_to(sp1)


def test_clear(engine):
    engine.put(b"a", b"e")
    txn = Transaction(engine)
    sp = txn.savepoint()
    txn.delete_range(b"a", b"c")
    txn.put(b"b", b"1")
    assert view(txn) == [(b"b", b"1")]
    txn.clear()
    assert len(txn) == 0 and txn.pending_bytes == 0
    assert view(txn) == [(b"a", b"e")] and txn.get(b"b") is None
    with pytest.raises(InvalidArgumentError):
        txn.rollback_to(sp)
    assert txn.savepoint() != sp


# --- column families -----------------------------------------------------------------------------

def test_column_families_are_independent(engine):
    cf = engine.create_column_family("aux")
    engine.put(b"k", b"default-engine")
    engine.put(b"k", b"aux-engine", cf=cf)
    txn = Transaction(engine)
    assert txn.get(b"k", cf=cf) == b"aux-engine" and view(txn, cf=cf) == [(b"k", b"aux-engine")]
    txn.put(b"j", b"aux", cf=cf)
    txn.delete_range(b"a", b"z")
    assert txn.get(b"k") is None and view(txn) == []
    assert txn.get(b"k", cf=cf) == b"aux-engine"
    same = engine.get_column_family("aux")    # another handle on the same family
    assert view(txn, cf=same) == [(b"j", b"aux"), (b"k", b"aux-engine")]
    txn.put(b"m", b"default")
    sp = txn.savepoint()
    txn.delete(b"k", cf=cf)
    txn.put(b"n", b"aux", cf=cf)
    assert view(txn, cf=cf, reverse=True) == [(b"n", b"aux"), (b"j", b"aux")]
    assert view(txn) == [(b"m", b"default")]
    txn.rollback_to(sp)
    assert view(txn, cf=cf) == [(b"j", b"aux"), (b"k", b"aux-engine")]
    engine.write(txn.write_batch())
    assert engine_state(engine) == {b"m": b"default"}
    assert engine_state(engine, cf) == {b"j": b"aux", b"k": b"aux-engine"}


def test_unknown_column_family_reaches_the_engine_error(mem):
    other = MemoryEngine.open(None)
    cf = other.create_column_family("elsewhere")
    txn = Transaction(mem)
    with pytest.raises(InvalidArgumentError):
        txn.get(b"k", cf=cf)
    with pytest.raises(InvalidArgumentError):
        txn.scan(cf=cf)
    other.close()


# --- the commit batch ----------------------------------------------------------------------------

def test_write_batch_gives_the_transaction_view(engine, tmp_path):
    engine.put(b"b", b"engine")
    engine.put(b"x", b"engine")
    txn = Transaction(engine)
    reference = WriteBatch()
    for op in [("put", b"a", b"1"), ("put", b"b", b"2"), ("delete_range", b"a", b"c"), ("put", b"a", b"3"),
               ("delete", b"x"), ("put", b"x", b"4"), ("delete", b"x"), ("put", b"y", b"5"),
               ("delete_range", b"q", b"q")]:
        getattr(txn, op[0])(*op[1:])
        getattr(reference, op[0])(*op[1:])
    batch = txn.write_batch()
    assert isinstance(batch, WriteBatch)
    assert batch.ops == reference.ops and batch.byte_size == reference.byte_size == txn.pending_bytes
    assert len(batch) == len(txn) == 8
    expected = dict(view(txn))
    assert expected == {b"a": b"3", b"y": b"5"}
    fresh = MemoryEngine.open(None)
    fresh.put(b"b", b"engine")
    fresh.put(b"x", b"engine")
    fresh.write(batch)
    assert engine_state(fresh) == expected
    fresh.close()
    engine.write(batch)
    assert engine_state(engine) == expected
    txn.put(b"later", b"!")
    assert len(batch) == 8                    # a copy


def test_empty_transaction_batch(mem):
    txn = Transaction(mem)
    batch = txn.write_batch()
    assert len(batch) == 0 and batch.byte_size == 0
    mem.write(batch)


def test_large_transaction_round_trip(engine):
    txn = Transaction(engine)
    for i in range(3000):
        txn.put(b"row%05d" % i, b"v%d" % i)
    assert txn.get(b"row01234") == b"v1234"
    for i in range(0, 3000, 3):
        txn.delete(b"row%05d" % i)
    txn.delete_range(b"row01000", b"row02000")
    expected = {b"row%05d" % i: b"v%d" % i for i in range(3000) if i % 3 and not 1000 <= i < 2000}
    assert dict(view(txn)) == expected and len(view(txn, reverse=True)) == len(expected)
    engine.write(txn.write_batch())
    assert engine_state(engine) == expected


# --- the model -----------------------------------------------------------------------------------

LETTERS = "abcde"
CFS = ["default", "aux"]
key_st = st.text(LETTERS, min_size=1, max_size=2).map(str.encode)
bound_st = st.one_of(st.none(), st.just(b""), key_st)
value_st = st.one_of(st.binary(max_size=6), st.binary(min_size=1, max_size=2).map(lambda b: b * 60))
cf_st = st.sampled_from(CFS)
write_st = st.one_of(
    st.tuples(st.just("put"), cf_st, key_st, value_st),
    st.tuples(st.just("delete"), cf_st, key_st),
    st.tuples(st.just("delete_range"), cf_st, key_st, key_st),
)

TXN_SETTINGS = settings(max_examples=150, stateful_step_count=50, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def apply_ops(state: dict, ops) -> dict:
    """``state`` ({cf name: {key: value}}) with ``ops`` applied in order (a new dict)."""
    state = {name: dict(data) for name, data in state.items()}
    for op in ops:
        data = state[op[1]]
        if op[0] == "put":
            data[op[2]] = op[3]
        elif op[0] == "delete":
            data.pop(op[2], None)
        else:
            for key in [k for k in data if op[2] <= k < op[3]]:
                del data[key]
    return state


class TransactionMachine(RuleBasedStateMachine):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.directory = tempfile.mkdtemp(prefix="txn-model-")
        self.db = None
        self.snapshot = None
        self.handles = {}
        self.latest = {name: {} for name in CFS}    # the engine's latest committed state
        self.base = None                             # what the transaction reads: frozen, or `latest`
        self.log = []                                # the transaction's ops, as ("put", cf, key, value) ...
        self.savepoints = []                         # [(token, len(log))]

    @initialize(preload=st.lists(write_st, max_size=30), flush=st.booleans(), use_snapshot=st.booleans())
    def open_engine(self, preload, flush, use_snapshot):
        self.db = open_engine(self.kind, self.directory)
        self.handles = {"default": None, "aux": self.db.create_column_family("aux")}
        for op in preload:
            self.engine_write(op)
        if flush:
            self.db.flush()
        self.begin(use_snapshot)

    def teardown(self):
        try:
            if self.db is not None:
                self.commit_and_check()
        finally:
            if self.snapshot is not None:
                self.snapshot.close()
            if self.db is not None:
                self.db.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def begin(self, use_snapshot: bool) -> None:
        if self.snapshot is not None:
            self.snapshot.close()
        self.snapshot = self.db.snapshot() if use_snapshot else None
        self.base = apply_ops(self.latest, []) if use_snapshot else self.latest
        self.txn = Transaction(self.db, self.snapshot)
        self.log = []
        self.savepoints = []

    def engine_write(self, op) -> None:
        cf = self.handles[op[1]]
        if op[0] == "delete_range" and op[2] > op[3]:
            return
        getattr(self.db, op[0])(*op[2:], cf=cf)
        self.latest.update(apply_ops(self.latest, [op]))

    def txn_write(self, op) -> None:
        cf = self.handles[op[1]]
        if op[0] == "delete_range" and op[2] > op[3]:
            with pytest.raises(InvalidArgumentError):
                self.txn.delete_range(op[2], op[3], cf=cf)
            return
        getattr(self.txn, op[0])(*op[2:], cf=cf)
        if not (op[0] == "delete_range" and op[2] == op[3]):
            self.log.append(op)

    def expected(self, name, start=None, end=None, reverse=False):
        data = apply_ops(self.base, self.log)[name]
        return sorted(((k, v) for k, v in data.items()
                       if (start is None or k >= start) and (end is None or k < end)), reverse=reverse)

    def commit_and_check(self) -> None:
        batch = self.txn.write_batch()
        reference = WriteBatch()
        for op in self.log:
            getattr(reference, op[0])(*op[2:], cf=self.handles[op[1]])
        assert len(batch) == len(self.txn) == len(reference)
        assert batch.byte_size == self.txn.pending_bytes == reference.byte_size
        self.db.write(batch)
        self.latest.update(apply_ops(self.latest, self.log))
        for name, cf in self.handles.items():
            assert dict(self.db.scan(cf=cf)) == self.latest[name]

    # -- rules -----------------------------------------------------------------------------------

    @rule(op=write_st)
    def write(self, op):
        self.txn_write(op)

    @rule(op=write_st)
    def concurrent_engine_write(self, op):
        self.engine_write(op)

    @rule()
    def flush_engine(self):
        self.db.flush()

    @rule()
    def savepoint(self):
        self.savepoints.append((self.txn.savepoint(), len(self.log)))

    @precondition(lambda self: self.savepoints)
    @rule(data=st.data())
    def rollback_to(self, data):
        index = data.draw(st.integers(0, len(self.savepoints) - 1))
        token, length = self.savepoints[index]
        self.txn.rollback_to(token)
        del self.savepoints[index + 1:]
        del self.log[length:]

    @precondition(lambda self: self.savepoints)
    @rule(data=st.data())
    def release(self, data):
        index = data.draw(st.integers(0, len(self.savepoints) - 1))
        self.txn.release(self.savepoints[index][0])
        del self.savepoints[index:]

    @rule(name=cf_st, key=key_st)
    def get(self, name, key):
        expected = apply_ops(self.base, self.log)[name].get(key)
        assert self.txn.get(key, cf=self.handles[name]) == expected
        found, value = self.txn.get_local(key, cf=self.handles[name])
        assert value == (expected if found else None)
        # Untouched by the log (no op on the key, no range over it): the engine's value stands.
        touched = any(op[1] == name and (op[2] == key if op[0] != "delete_range" else op[2] <= key < op[3])
                      for op in self.log)
        assert found == touched

    @rule(name=cf_st, start=bound_st, end=bound_st, reverse=st.booleans())
    def scan(self, name, start, end, reverse):
        if start is not None and end is not None and start > end:
            with pytest.raises(InvalidArgumentError):
                self.txn.scan(start, end, cf=self.handles[name], reverse=reverse)
            return
        got = list(self.txn.scan(start, end, cf=self.handles[name], reverse=reverse))
        assert got == self.expected(name, start, end, reverse)

    @rule(name=cf_st, start=bound_st, reverse=st.booleans(), ops=st.lists(write_st, max_size=5),
          concurrent=st.lists(write_st, max_size=3), undo=st.booleans())
    def scan_while_writing(self, name, start, reverse, ops, concurrent, undo):
        expected = self.expected(name, start, None, reverse)
        it = self.txn.scan(start, None, cf=self.handles[name], reverse=reverse)
        got = []
        first = next(it, None)
        if first is not None:
            got.append(first)
        if undo:
            token, length = self.txn.savepoint(), len(self.log)
        for op in ops:
            self.txn_write(op)
        for op in concurrent:
            self.engine_write(op)
        if undo:
            self.txn.rollback_to(token)
            self.txn.release(token)
            del self.log[length:]
        got.extend(it)
        assert got == expected

    @rule(ops=st.lists(write_st, min_size=1, max_size=6), name=cf_st, fail=st.booleans())
    def statement(self, ops, name, fail):
        """What the SQL layer does per statement: savepoint, writes and reads, then release or roll back."""
        token, length = self.txn.savepoint(), len(self.log)
        for op in ops:
            self.txn_write(op)
        assert list(self.txn.scan(cf=self.handles[name])) == self.expected(name)
        if fail:
            self.txn.rollback_to(token)
            del self.log[length:]
        self.txn.release(token)

    @rule(use_snapshot=st.booleans())
    def commit(self, use_snapshot):
        self.commit_and_check()
        self.begin(use_snapshot)


@pytest.mark.parametrize("kind", ["memory", "lsm"])
def test_transaction_matches_model(kind):
    run_state_machine_as_test(lambda: TransactionMachine(kind), settings=TXN_SETTINGS)
