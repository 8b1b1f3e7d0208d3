"""A hypothesis state machine drives both engines with random operations and checks them against a dict model.

The model is deliberately dumb: per column family a dict of the current values,
and per snapshot a frozen copy of those dicts taken when it was created. Keys
come from a tiny alphabet (1 to 3 of the letters a..p) so that overwrites,
deletes and ranges keep colliding; some values are a few hundred bytes and
``bulk_load`` writes a few KiB at once, so that the LSM engine's 4 KiB
memtables fill and its files flush and compact on their own.

Every example gets a fresh database. The LSM engine runs with small options,
in the foreground or with background threads (hypothesis picks per example).

Environment: TABLEDB_MODEL_EXAMPLES (default 100) and TABLEDB_MODEL_STEPS
(default 50) size the run; TABLEDB_MODEL_RANDOM=1 draws new examples on each
run instead of the fixed, derandomized ones.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from tabledb.errors import ClosedError, InvalidArgumentError
from tabledb.storage.batch import WriteBatch

LETTERS = "abcdefghijklmnop"
COLUMN_FAMILIES = ["default", "cf1"]
MAX_SNAPSHOTS = 4

# Half the keys are single letters, so that they collide with each other and with range bounds.
key_st = st.one_of(st.sampled_from(LETTERS), st.text(LETTERS, min_size=1, max_size=3)).map(str.encode)
bound_st = st.one_of(st.none(), st.just(b""), key_st)
value_st = st.one_of(
    st.binary(max_size=8),
    st.builds(lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=3), st.integers(30, 300)),
)
cf_st = st.sampled_from(COLUMN_FAMILIES)
op_st = st.one_of(
    st.tuples(st.just("put"), cf_st, key_st, value_st),
    st.tuples(st.just("delete"), cf_st, key_st),
    st.tuples(st.just("delete_range"), cf_st, key_st, key_st),
)

MODEL_SETTINGS = settings(
    max_examples=int(os.environ.get("TABLEDB_MODEL_EXAMPLES", "100")),
    stateful_step_count=int(os.environ.get("TABLEDB_MODEL_STEPS", "50")),
    deadline=None,
    derandomize=os.environ.get("TABLEDB_MODEL_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def in_range(key: bytes, start: bytes | None, end: bytes | None) -> bool:
    return (start is None or key >= start) and (end is None or key < end)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self, make_harness):
        super().__init__()
        self.make_harness = make_harness
        self.harness = None
        self.db = None
        self.handles = {}
        self.model = {name: {} for name in COLUMN_FAMILIES}
        self.sequence = 0
        self.snapshots = []          # [(snapshot, {cf name: frozen copy of the model})]

    # -- set-up and tear-down --------------------------------------------------------------------

    @initialize(background=st.booleans())
    def open_database(self, background):
        self.harness = self.make_harness(background=background)
        self.db = self.harness.open()
        self.db.create_column_family("cf1")
        self.refresh_handles()

    def refresh_handles(self):
        self.handles = {name: self.db.get_column_family(name) for name in COLUMN_FAMILIES}

    def teardown(self):
        if self.harness is not None:
            self.harness.cleanup()
            shutil.rmtree(self.harness.base, ignore_errors=True)

    # -- the model -------------------------------------------------------------------------------

    def apply(self, op) -> None:
        """Apply one operation to the model, counting the sequence numbers it uses."""
        kind, cf = op[0], op[1]
        values = self.model[cf]
        if kind == "put":
            values[op[2]] = op[3]
        elif kind == "delete":
            values.pop(op[2], None)
        else:
            start, end = op[2], op[3]
            if start == end:
                return                        # an empty range is no operation
            for key in [k for k in values if start <= k < end]:
                del values[key]
        self.sequence += 1

    def expected_scan(self, values, start, end, reverse):
        return sorted(((k, v) for k, v in values.items() if in_range(k, start, end)), reverse=reverse)

    # -- writes ----------------------------------------------------------------------------------

    @rule(cf=cf_st, key=key_st, value=value_st)
    def put(self, cf, key, value):
        self.apply(("put", cf, key, value))
        assert self.db.put(key, value, cf=self.handles[cf]) == self.sequence

    @rule(cf=cf_st, key=key_st)
    def delete(self, cf, key):
        self.apply(("delete", cf, key))
        assert self.db.delete(key, cf=self.handles[cf]) == self.sequence

    @rule(cf=cf_st, a=key_st, b=key_st)
    def delete_range(self, cf, a, b):
        start, end = min(a, b), max(a, b)
        self.apply(("delete_range", cf, start, end))
        assert self.db.delete_range(start, end, cf=self.handles[cf]) == self.sequence

    @rule(ops=st.lists(op_st, max_size=8))
    def write_batch(self, ops):
        batch = WriteBatch()
        for op in ops:
            kind, cf = op[0], op[1]
            if kind == "put":
                batch.put(op[2], op[3], cf=self.handles[cf])
            elif kind == "delete":
                batch.delete(op[2], cf=self.handles[cf])
            else:
                op = (kind, cf, min(op[2], op[3]), max(op[2], op[3]))
                batch.delete_range(op[2], op[3], cf=self.handles[cf])
            self.apply(op)
        assert self.db.write(batch) == self.sequence

    @rule(cf=cf_st, prefix=st.text(LETTERS, min_size=1, max_size=2), fill=st.binary(min_size=1, max_size=1))
    def bulk_load(self, cf, prefix, fill):
        """Sixteen ~200-byte values in one batch: about as much as a small memtable holds."""
        batch = WriteBatch()
        for letter in LETTERS:
            key = (prefix + letter).encode()
            value = fill * 200 + key
            batch.put(key, value, cf=self.handles[cf])
            self.apply(("put", cf, key, value))
        assert self.db.write(batch) == self.sequence

    # -- reads -----------------------------------------------------------------------------------

    @rule(cf=cf_st, key=key_st)
    def get(self, cf, key):
        assert self.db.get(key, cf=self.handles[cf]) == self.model[cf].get(key)

    @rule(cf=cf_st, start=bound_st, end=bound_st, reverse=st.booleans())
    def scan(self, cf, start, end, reverse):
        if start is not None and end is not None and start > end:
            with pytest.raises(InvalidArgumentError):
                self.db.scan(start, end, cf=self.handles[cf], reverse=reverse)
            return
        got = list(self.db.scan(start, end, cf=self.handles[cf], reverse=reverse))
        assert got == self.expected_scan(self.model[cf], start, end, reverse)

    # -- snapshots -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.snapshots) < MAX_SNAPSHOTS)
    @rule()
    def take_snapshot(self):
        snap = self.db.snapshot()
        assert snap.sequence == self.sequence
        self.snapshots.append((snap, {name: dict(values) for name, values in self.model.items()}))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data(), cf=cf_st, key=key_st, start=bound_st, end=bound_st, reverse=st.booleans())
    def read_at_snapshot(self, data, cf, key, start, end, reverse):
        snap, frozen = data.draw(st.sampled_from(self.snapshots), label="snapshot")
        handle = self.handles[cf]
        assert self.db.get(key, cf=handle, snapshot=snap) == frozen[cf].get(key)
        if start is not None and end is not None and start > end:
            start, end = end, start
        got = list(self.db.scan(start, end, cf=handle, snapshot=snap, reverse=reverse))
        assert got == self.expected_scan(frozen[cf], start, end, reverse)

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def release_snapshot(self, data):
        index = data.draw(st.integers(0, len(self.snapshots) - 1), label="snapshot index")
        snap, _ = self.snapshots.pop(index)
        snap.close()
        with pytest.raises(ClosedError):
            self.db.get(b"a", snapshot=snap)

    # -- maintenance -----------------------------------------------------------------------------

    @rule(cf=st.one_of(st.none(), cf_st))
    def flush(self, cf):
        self.db.flush(cf=None if cf is None else self.handles[cf])

    @rule(cf=cf_st, a=bound_st, b=bound_st)
    def compact_range(self, cf, a, b):
        if a is not None and b is not None and a > b:
            a, b = b, a
        self.db.compact_range(a, b, cf=self.handles[cf])

    @rule()
    def reopen(self):
        self.snapshots.clear()       # snapshots do not survive close
        self.db = self.harness.reopen()
        self.refresh_handles()
        assert self.db.list_column_families() == COLUMN_FAMILIES

    # -- after every step ------------------------------------------------------------------------

    @invariant()
    def everything_matches(self):
        assert self.db.latest_sequence == self.sequence
        for name in COLUMN_FAMILIES:
            assert list(self.db.scan(cf=self.handles[name])) == sorted(self.model[name].items())


def test_engine_matches_model(harness_factory):
    run_state_machine_as_test(lambda: EngineMachine(harness_factory), settings=MODEL_SETTINGS)
