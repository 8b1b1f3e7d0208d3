"""Range tombstone fragmentation against a naive list of tombstones."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tabledb.storage.rangedel import RangeTombstones, visible_max_fragments

keys = st.binary(min_size=0, max_size=2, )
tomb = st.tuples(keys, keys, st.integers(1, 50))


def naive_max(tombs, key, max_seq):
    return max([s for a, b, s in tombs if a <= key < b and s <= max_seq], default=0)


def test_fragments_example():
    rt = RangeTombstones()
    rt.add(b"a", b"m", 3)
    rt.add(b"f", b"r", 5)
    assert rt.fragments() == [(b"a", b"f", (3,)), (b"f", b"m", (5, 3)), (b"m", b"r", (5,))]
    assert rt.max_covering_seq(b"g", 4) == 3
    assert rt.max_covering_seq(b"g", 9) == 5
    assert rt.max_covering_seq(b"r", 9) == 0
    assert rt.max_covering_seq(b"", 9) == 0
    assert rt.fragments(b"b", b"g") == [(b"b", b"f", (3,)), (b"f", b"g", (5, 3))]


@settings(max_examples=200, deadline=None)
@given(st.lists(tomb, max_size=12), st.lists(keys, max_size=20), st.integers(0, 60))
def test_matches_naive(tombs, probes, max_seq):
    rt = RangeTombstones()
    for a, b, s in tombs:
        rt.add(a, b, s)
    live = [(a, b, s) for a, b, s in tombs if a < b]
    for k in probes + [a for a, _, _ in tombs] + [b for _, b, _ in tombs]:
        assert rt.max_covering_seq(k, max_seq) == naive_max(live, k, max_seq)
    frags = rt.fragments()
    for (s1, e1, _), (s2, _, _) in zip(frags, frags[1:]):
        assert s1 < e1 <= s2
    rebuilt = RangeTombstones.from_fragments(frags)
    merged = visible_max_fragments([frags], max_seq)
    for k in probes:
        assert rebuilt.max_covering_seq(k, max_seq) == naive_max(live, k, max_seq)
        assert (merged.max_covering_seq(k, max_seq) if merged else 0) == naive_max(live, k, max_seq)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(tomb, max_size=6), max_size=4), st.lists(keys, max_size=20), st.integers(0, 60),
       st.one_of(st.none(), keys), st.one_of(st.none(), keys))
def test_merging_sources(sources, probes, max_seq, start, end):
    """Several sources' fragments merge into the newest visible seq per key, clipped to [start, end)."""
    frag_lists = []
    for tombs in sources:
        rt = RangeTombstones()
        for a, b, s in tombs:
            rt.add(a, b, s)
        frag_lists.append(rt.fragments())
    live = [(a, b, s) for tombs in sources for a, b, s in tombs if a < b]
    merged = visible_max_fragments(frag_lists, max_seq, start, end)
    for k in probes:
        if (start is not None and k < start) or (end is not None and k >= end):
            continue
        assert (merged.max_covering_seq(k, max_seq) if merged else 0) == naive_max(live, k, max_seq)


@settings(max_examples=200, deadline=None)
@given(st.lists(tomb, max_size=8, unique_by=lambda t: t[2]), keys, keys, st.integers(0, 30))
def test_covers_range(tombs, a, b, above):
    if a > b:
        a, b = b, a
    rt = RangeTombstones()
    for s, e, q in tombs:
        rt.add(s, e, q)
    got = rt.covers_range(a, b, above)
    # the oldest tombstone newer than `above` that alone covers all of [a, b]
    cands = [q for s, e, q in tombs if s <= a and b < e and q > above]
    assert got == (min(cands) if cands else 0)
