"""Leveled compaction: what to compact, and the merge that drops what no reader can see.

Picking (per column family): L0's score is its file count over
``l0_compaction_trigger``; level i's is its bytes over its target
(``level1_bytes * level_multiplier**(i-1)``). The highest score of at least 1
wins. An L0 compaction takes every L0 file and the L1 files they overlap, so
L1 never holds data newer than L0's. A level-i compaction takes the next file
after the level's compaction pointer and the level-(i+1) files it overlaps; a
file with nothing under it just moves down (no rewrite).

Dropping (``collapse_versions``): with the live snapshots sorted, a version's
*stripe* is the first snapshot that can see it. Within a stripe only the newest
version matters, and a version covered by a range tombstone of its own stripe
is gone. Point deletes and range tombstones in the oldest stripe are dropped
when the output is the bottommost level for its key range. An input file that
one tombstone of its own stripe covers end to end is dropped without being read.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from tabledb.storage.dbformat import KIND_DELETE
from tabledb.storage.rangedel import RangeTombstones
from tabledb.storage.version import FileMeta, Version


@dataclass
class Compaction:
    cf_id: int
    level: int                  # input level; output goes to level + 1 (or stays, for a bottom-level rewrite)
    output_level: int
    inputs: list[FileMeta]      # from `level`
    lower: list[FileMeta]       # from `output_level`
    bottommost: bool = False
    trivial_move: bool = False
    dropped: list[FileMeta] = field(default_factory=list)  # wholly covered by a tombstone: dropped unread

    @property
    def all_inputs(self) -> list[FileMeta]:
        return self.inputs + self.lower


def key_range(files: list[FileMeta]) -> tuple[bytes, bytes]:
    return min(f.smallest for f in files), max(f.largest for f in files)


def level_target(level: int, level1_bytes: int, multiplier: int) -> int:
    return level1_bytes * multiplier ** (level - 1)


def is_bottommost(version: Version, cf_id: int, output_level: int, start: bytes, last: bytes) -> bool:
    levels = version.cfs[cf_id]
    for lv in range(output_level + 1, len(levels)):
        if levels[lv].overlapping(start, last):
            return False
    return True


def pick_compaction(version: Version, cf_id: int, opts, pointers: dict, busy: set[int]) -> Compaction | None:
    """The most urgent compaction for ``cf_id``, or None when every score is below 1."""
    levels = version.cfs.get(cf_id)
    if levels is None:
        return None
    num_levels = len(levels)
    best_score, best_level = 0.0, -1
    if levels[0]:
        best_score, best_level = len(levels[0]) / opts.l0_compaction_trigger, 0
    for lv in range(1, num_levels - 1):
        size = sum(f.size for f in levels[lv].files)
        score = size / level_target(lv, opts.level1_bytes, opts.level_multiplier)
        if score > best_score:
            best_score, best_level = score, lv
    if best_score < 1:
        return None
    if best_level == 0:
        inputs = list(levels[0])
        if any(f.number in busy for f in inputs):
            return None
        start, last = key_range(inputs)
        return build_compaction(version, cf_id, 0, inputs, start, last, busy)
    files = levels[best_level].files
    after = pointers.get((cf_id, best_level))
    i = 0
    if after is not None:
        i = bisect_left(levels[best_level].largests, after)
        if i < len(files) and files[i].largest == after:
            i += 1
        if i >= len(files):
            i = 0
    for j in list(range(i, len(files))) + list(range(0, i)):
        f = files[j]
        if f.number in busy:
            continue
        c = build_compaction(version, cf_id, best_level, [f], f.smallest, f.largest, busy)
        if c is not None:
            pointers[(cf_id, best_level)] = f.largest
            return c
    return None


def build_compaction(version: Version, cf_id: int, level: int, inputs: list[FileMeta],
                     start: bytes, last: bytes, busy: set[int], output_level: int | None = None) -> Compaction | None:
    levels = version.cfs[cf_id]
    if output_level is None:
        output_level = min(level + 1, len(levels) - 1)
    lower = levels[output_level].overlapping(start, last) if output_level != level else []
    if any(f.number in busy for f in lower):
        return None
    if lower:
        lo, hi = key_range(inputs + lower)
    else:
        lo, hi = start, last
    c = Compaction(cf_id, level, output_level, inputs, lower,
                   bottommost=is_bottommost(version, cf_id, output_level, lo, hi))
    if level > 0 and not lower and len(inputs) == 1 and inputs[0].range_deletions == 0 and output_level != level:
        c.trivial_move = True
    return c


def stripe_of(snapshots: list[int], seq: int) -> int:
    """Index of the oldest snapshot that sees ``seq`` (len(snapshots): only the latest state sees it)."""
    return bisect_left(snapshots, seq)


def collapse_versions(versions, snapshots: list[int], tombstones: RangeTombstones | None, key: bytes,
                      bottommost: bool):
    """Keep, from ``versions`` (``(trailer, value)`` newest first) of one key, what some reader can see."""
    prev_stripe = -1
    covering = tombstones.covering_seqs(key) if tombstones else ()
    for trailer, value in versions:
        seq = trailer >> 8
        st = bisect_left(snapshots, seq) if snapshots else 0
        if st == prev_stripe:
            continue          # a newer version of the same stripe shadows it
        prev_stripe = st
        if covering:
            newer = [t for t in covering if t > seq]
            if newer and (bisect_left(snapshots, min(newer)) if snapshots else 0) == st:
                continue      # deleted by a tombstone every reader of this stripe sees
        if bottommost and st == 0 and (trailer & 0xFF) == KIND_DELETE:
            continue          # nothing older remains below: the delete has done its work
        yield trailer, value


def collapse_tombstones(fragments, snapshots: list[int], bottommost: bool) -> list:
    """Fragments with only the newest sequence of each stripe; the oldest stripe's go at the bottom."""
    out = []
    for start, end, seqs in fragments:
        kept = []
        prev = -1
        for seq in seqs:
            st = bisect_left(snapshots, seq) if snapshots else 0
            if st == prev:
                continue
            prev = st
            if bottommost and st == 0:
                continue
            kept.append(seq)
        if kept:
            out.append((start, end, tuple(kept)))
    return out


def merge_adjacent(fragments) -> list:
    """Join touching fragments with equal sequence sets (fewer, longer fragments)."""
    out: list = []
    for start, end, seqs in fragments:
        if out and out[-1][1] == start and out[-1][2] == seqs:
            out[-1] = (out[-1][0], end, seqs)
        else:
            out.append((start, end, seqs))
    return out
