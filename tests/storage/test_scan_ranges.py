"""The scan's tombstone skipping: which key ranges of a source it still reads."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tabledb.storage.engine import _unhidden_ranges
from tabledb.storage.rangedel import RangeTombstones, visible_max_fragments

keys = st.binary(max_size=2)


def in_ranges(ranges, k):
    return any((a is None or a <= k) and (b is None or k < b) for a, b in ranges)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, keys, st.integers(1, 30)), max_size=8), st.integers(0, 30), st.integers(0, 30),
       st.one_of(st.none(), keys), st.one_of(st.none(), keys), st.lists(keys, max_size=30))
def test_unhidden_ranges_match_brute_force(tombs, newest, snap, start, end, probes):
    if start is not None and end is not None and start > end:
        start, end = end, start
    rt = RangeTombstones()
    for a, b, q in tombs:
        rt.add(a, b, q)
    merged = visible_max_fragments([rt.fragments()], snap, start, end)
    ranges = _unhidden_ranges(merged, newest, start, end) if merged else [(start, end)]
    for (a1, b1), (a2, b2) in zip(ranges, ranges[1:]):
        assert b1 is not None and a2 is not None and b1 <= a2      # sorted, disjoint
    for k in probes:
        in_scan = (start is None or k >= start) and (end is None or k < end)
        hidden = rt.max_covering_seq(k, snap) > newest
        assert in_ranges(ranges, k) == (in_scan and not hidden), (k, ranges)
