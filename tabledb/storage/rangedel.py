"""Range tombstones, kept as non-overlapping fragments.

``delete_range(start, end)`` at sequence ``s`` writes a tombstone that hides
every version of every key in ``[start, end)`` whose sequence is below ``s``.
Overlapping tombstones are cut into *fragments* with equal boundaries so that a
lookup is one binary search (as Pebble's ``keyspan`` fragmenter does)::

    tombstones  a-----m @3, f------r @5
    fragments   [a,f) {3}  [f,m) {5,3}  [m,r) {5}

A fragment is the tuple ``(start, end, seqs)`` with ``seqs`` sorted newest
first. The SSTable's range-tombstone block stores a file's fragments.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right


class RangeTombstones:
    """A mutable, fragmented set of range tombstones.

    Boundaries live in one sorted list; ``_seqs[i]`` covers
    ``[_starts[i], _starts[i+1])`` and the last entry is always ``()``.
    Not thread-safe for writers; readers may run alongside one writer because
    every update replaces list items whole (the engine serialises writers).
    """

    __slots__ = ("_starts", "_seqs", "count")

    def __init__(self):
        self._starts: list[bytes] = []
        self._seqs: list[tuple[int, ...]] = []
        self.count = 0

    @classmethod
    def from_fragments(cls, fragments) -> "RangeTombstones":
        rt = cls()
        for start, end, seqs in fragments:
            for seq in seqs:
                rt.add(start, end, seq)
        return rt

    def __bool__(self) -> bool:
        return self.count > 0

    def __len__(self) -> int:
        return self.count

    def _split(self, key: bytes) -> int:
        starts = self._starts
        i = bisect_left(starts, key)
        if i == len(starts) or starts[i] != key:
            inherited = self._seqs[i - 1] if i > 0 else ()
            starts.insert(i, key)
            self._seqs.insert(i, inherited)
        return i

    def add(self, start: bytes, end: bytes, seq: int) -> None:
        """Add tombstone ``[start, end) @ seq``; an empty range is ignored."""
        if start >= end:
            return
        i = self._split(start)
        j = self._split(end)
        seqs = self._seqs
        for k in range(i, j):
            cur = seqs[k]
            if not cur or seq > cur[0]:
                seqs[k] = (seq,) + cur
            elif seq not in cur:
                seqs[k] = tuple(sorted(cur + (seq,), reverse=True))
        self.count += 1

    def max_covering_seq(self, key: bytes, max_sequence: int) -> int:
        """The newest tombstone sequence ``<= max_sequence`` covering ``key``; 0 when none does."""
        i = bisect_right(self._starts, key) - 1
        if i < 0:
            return 0
        for seq in self._seqs[i]:
            if seq <= max_sequence:
                return seq
        return 0

    def covering_seqs(self, key: bytes) -> tuple[int, ...]:
        """All tombstone sequences covering ``key``, newest first."""
        i = bisect_right(self._starts, key) - 1
        return self._seqs[i] if i >= 0 else ()

    def fragments(self, start: bytes | None = None, end: bytes | None = None) -> list:
        """Fragments ``(start, end, seqs)`` in key order, clipped to ``[start, end)`` when given."""
        starts, seqs = self._starts, self._seqs
        out = []
        for i in range(len(starts) - 1):
            if not seqs[i]:
                continue
            s, e = starts[i], starts[i + 1]
            if start is not None:
                if e <= start:
                    continue
                if s < start:
                    s = start
            if end is not None:
                if s >= end:
                    break
                if e > end:
                    e = end
            out.append((s, e, seqs[i]))
        return out

    def covers_range(self, start: bytes, last: bytes, seq_above: int) -> int:
        """The oldest sequence ``> seq_above`` of one tombstone covering all of ``[start, last]``; 0 if none."""
        i = bisect_right(self._starts, start) - 1
        if i < 0:
            return 0
        common = None
        starts = self._starts
        while i < len(starts) - 1:
            s = set(q for q in self._seqs[i] if q > seq_above)
            common = s if common is None else common & s
            if not common:
                return 0
            if starts[i + 1] > last:
                return min(common)
            i += 1
        return 0


def visible_max_fragments(fragment_lists, max_sequence: int, start=None, end=None) -> RangeTombstones | None:
    """Merge fragments from many sources into one set holding, per piece, the newest seq <= max_sequence.

    Scans use it: a version is hidden when a covering tombstone newer than it is
    visible. Each source's fragments are sorted and disjoint, so this is a sweep
    over the union of their boundaries, O(boundaries x sources); None when no
    tombstone is visible in the range.
    """
    lists = []
    for fragments in fragment_lists:
        visible = []
        for s, e, seqs in fragments:
            if (start is not None and e <= start) or (end is not None and s >= end):
                continue
            for seq in seqs:
                if seq <= max_sequence:
                    visible.append((s, e, seq))
                    break
        if visible:
            lists.append(visible)
    if not lists:
        return None
    merged = RangeTombstones()
    if len(lists) == 1:
        starts, seqs = merged._starts, merged._seqs
        for s, e, seq in lists[0]:
            if starts and starts[-1] == s:
                seqs[-1] = (seq,)
            else:
                starts.append(s)
                seqs.append((seq,))
            starts.append(e)
            seqs.append(())
        merged.count = len(lists[0])
        return merged
    bounds = sorted({b for lst in lists for s, e, _ in lst for b in (s, e)})
    best = [0] * len(bounds)
    index = {b: i for i, b in enumerate(bounds)}
    for lst in lists:
        for s, e, seq in lst:
            for i in range(index[s], index[e]):
                if seq > best[i]:
                    best[i] = seq
    merged._starts = bounds
    merged._seqs = [(q,) if q else () for q in best]
    merged.count = sum(len(lst) for lst in lists)
    return merged
