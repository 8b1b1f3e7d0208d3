"""Plan operators: iterators over rows that EXPLAIN prints as a tree.

Every operator has ``rows()`` (a fresh iterator of tuples on each call),
``label()`` (one line for EXPLAIN) and ``children``. Operators hold the
statement's :class:`~tabledb.sql.expressions.Runtime` and read the engine
through ``rt.reader`` (a transaction view), so one plan runs many times with
new parameters.

Key access (:class:`KeyAccess`) is how a scan uses the primary key or an index:
equality values on leading key columns (one value, or several for IN), then
an optional range on the next column. The values are functions of an argument
row (constants and parameters ignore it; a lookup join passes its outer row),
evaluated and converted to the column's type when the scan starts; a value that
cannot be converted losslessly falls back to a full scan with the whole filter.
"""

from __future__ import annotations

import heapq
import itertools
from operator import itemgetter
from typing import Any, Callable, Iterator

from tabledb.errors import ProgrammingError
from tabledb.sql import keys
from tabledb.sql import values as V
from tabledb.sql.rowcodec import decode_row

Fn = Callable[[Any], Any]
_EMPTY = ()
_second = itemgetter(1)


class Operator:
    children: tuple = ()

    def rows(self) -> Iterator[tuple]:
        raise NotImplementedError

    def label(self) -> str:
        return type(self).__name__

    def explain(self) -> list[str]:
        lines = [self.label()]
        kids = list(self.children)
        for i, child in enumerate(kids):
            sub = child.explain()
            last = i == len(kids) - 1
            lines.append(("└─ " if last else "├─ ") + sub[0])
            pad = "   " if last else "│  "
            lines.extend(pad + s for s in sub[1:])
        return lines


# -- rows of a table -----------------------------------------------------------

class RowDecoder:
    """Decodes stored rows of a table, padding rows written before ADD COLUMN."""

    def __init__(self, table, defaults: tuple):
        self.width = len(table.columns)
        self.defaults = defaults
        self.hidden_rowid = table.hidden_rowid
        # every stored row has all the columns (no ADD COLUMN since CREATE): the value alone decodes it
        self.value_only = not table.hidden_rowid and table.created_width == self.width

    def make(self) -> Callable[[bytes, bytes], tuple]:
        width = self.width
        defaults = self.defaults
        decode = decode_row
        if self.hidden_rowid:
            sign = 1 << 63

            def dec_rowid(key, value):
                row = decode(value)
                if len(row) != width:
                    row = row + defaults[len(row):]
                return row + (int.from_bytes(key[-8:], "big") - sign,)
            return dec_rowid

        def dec(key, value):
            row = decode(value)
            if len(row) != width:
                row = row + defaults[len(row):]
            return row
        return dec


class KeyAccess:
    """How a scan narrows a key space: equality prefixes and one range.

    ``types``/``desc`` describe the key columns of the index (for the primary
    key: the pk columns). ``eq`` holds, for each leading column, a list of
    value functions (one for ``=``, several for ``IN``). ``lo``/``hi`` bound the
    next column: (function, inclusive) or None. ``exact`` says the key range
    alone decides the predicates it came from (so the scan may skip them).
    """

    def __init__(self, prefix: bytes, types: list[str], desc: list[bool], eq: list[list[Fn]],
                 lo: tuple[Fn, bool] | None, hi: tuple[Fn, bool] | None, descr: list[str]):
        self.prefix = prefix
        self.types = types
        self.desc = desc
        self.eq = eq
        self.lo = lo
        self.hi = hi
        self.descr = descr
        self._single = None
        self._codec = None

    @property
    def is_point_capable(self) -> bool:
        return len(self.eq) == len(self.types) and self.lo is None and self.hi is None

    def ranges(self, arg) -> list[tuple[bytes, bytes | None]] | None:
        """Sorted key ranges for argument row ``arg``; None when a value does not convert
        (the caller scans everything and filters); [] when nothing can match."""
        try_coerce = V.try_coerce
        encode = keys.encode_value
        prefixes = [self.prefix]
        for i, fns in enumerate(self.eq):
            t, d = self.types[i], self.desc[i]
            encs = []
            for fn in fns:
                v = fn(arg)
                if v is None:
                    continue          # col = NULL is never true
                ok, c = try_coerce(v, t)
                if not ok:
                    return None
                try:
                    encs.append(encode(c, t, d))
                except Exception:  # noqa: BLE001 - e.g. NaN: not a key value, so filter instead
                    return None
            if not encs:
                return []
            encs = sorted(set(encs))
            prefixes = [p + e for p in prefixes for e in encs]
        if len(prefixes) > 1:
            prefixes.sort()
        n = len(self.eq)
        if self.lo is None and self.hi is None:
            return [(p, keys.prefix_end(p)) for p in prefixes]
        t, d = self.types[n], self.desc[n]
        lo_enc = hi_enc = None
        lo_incl = hi_incl = True
        for bound, is_lo in ((self.lo, True), (self.hi, False)):
            if bound is None:
                continue
            v = bound[0](arg)
            if v is None:
                return []             # col > NULL is never true
            ok, c = try_coerce(v, t)
            if not ok:
                return None
            try:
                e = encode(c, t, False)
            except Exception:  # noqa: BLE001
                return None
            if is_lo:
                lo_enc, lo_incl = e, bound[1]
            else:
                hi_enc, hi_incl = e, bound[1]
        if d:  # a descending column: value bounds swap ends, bytes are inverted
            inv = keys.invert
            lo_enc, hi_enc = (inv(hi_enc) if hi_enc is not None else None), (inv(lo_enc) if lo_enc is not None else None)
            lo_incl, hi_incl = hi_incl, lo_incl
        out = []
        for p in prefixes:
            end_all = keys.prefix_end(p)
            if lo_enc is None:
                start = p + (b"\x02" if not d else b"")  # skip NULLs (0x01) in an ascending column
            else:
                start = p + lo_enc if lo_incl else keys.prefix_end(p + lo_enc)
            if hi_enc is None:
                end = p + b"\xfe" if d else end_all       # skip NULLs (0xfe) in a descending column
            else:
                end = keys.prefix_end(p + hi_enc) if hi_incl else p + hi_enc
            if end is not None and start >= end:
                continue
            out.append((start, end))
        return out

    def points(self, arg) -> list[bytes] | None:
        if self._single is None:
            self._single = all(len(fns) == 1 for fns in self.eq) and not any(self.desc)
            self._codec = keys.KeyCodec(self.types)
        if self._single:
            # the common case: one value per key column (col = ? AND ...)
            try_coerce = V.try_coerce
            vals = []
            for (fn,), t in zip(self.eq, self.types):
                v = fn(arg)
                if v is None:
                    return []
                tv = type(v)
                if not ((tv is int and t == "INTEGER") or (tv is str and t == "TEXT")):
                    ok, v = try_coerce(v, t)
                    if not ok:
                        return None
                vals.append(v)
            try:
                return [self.prefix + self._codec.encode(vals)]
            except Exception:  # noqa: BLE001 - a value the key cannot hold (NaN, out of range): filter instead
                return None
        ranges = self.ranges(arg)
        if ranges is None:
            return None
        return [start for start, _end in ranges]


class TableScan(Operator):
    """Rows of a base table, in primary key order, optionally narrowed by a KeyAccess."""

    def __init__(self, rt, table, decoder: RowDecoder, access: KeyAccess | None, residual: Fn | None,
                 fallback: Fn | None, reverse: bool = False, alias: str | None = None):
        self.rt = rt
        self.table = table
        self.decode = decoder.make()
        self.defaults = decoder.defaults
        self.value_only = decoder.value_only
        self.access = access
        self.residual = residual     # filter when the key access applies
        self.fallback = fallback     # filter when it does not (the whole predicate)
        self.reverse = reverse
        self.alias = alias
        self.point = access is not None and access.is_point_capable

    def label(self) -> str:
        name = self.table.name if not self.alias or self.alias == self.table.name else f"{self.table.name} AS {self.alias}"
        if self.access is None:
            how = "full scan"
        elif self.point:
            how = "point get on primary key (" + ", ".join(self.access.descr) + ")"
        else:
            how = "range scan on primary key (" + ", ".join(self.access.descr) + ")"
        extra = " reverse" if self.reverse else ""
        filt = " + filter" if (self.residual if self.access is not None else self.fallback) else ""
        return f"Scan {name}: {how}{extra}{filt}"

    def rows(self, arg=_EMPTY) -> Iterator[tuple]:
        return self.rows_for(arg)

    def rows_for(self, arg) -> Iterator[tuple]:
        reader = self.rt.reader
        decode = self.decode
        access = self.access
        pred = self.fallback
        if access is not None:
            if self.point:
                pts = access.points(arg)
                if pts is not None:
                    return self._points(reader, pts)
                ranges = None
            else:
                ranges = access.ranges(arg)
            if ranges is not None:
                pred = self.residual
                if self.reverse:
                    ranges = ranges[::-1]
            else:
                ranges = [self.table.row_range]
        else:
            ranges = [self.table.row_range]
        return self._scan(reader, ranges, decode, pred)

    def _points(self, reader, pts):
        decode = self.decode
        pred = self.residual
        if self.reverse:
            pts = pts[::-1]
        get = reader.get
        for key in pts:
            value = get(key)
            if value is not None:
                row = decode(key, value)
                if pred is None or pred(row):
                    yield row

    def _scan(self, reader, ranges, decode, pred):
        reverse = self.reverse
        for start, end in ranges:
            it = reader.scan(start, end, reverse=reverse)
            if pred is None:
                if self.value_only:
                    yield from map(decode_row, map(_second, it))
                else:
                    for key, value in it:
                        yield decode(key, value)
            else:
                for key, value in it:
                    row = decode(key, value)
                    if pred(row):
                        yield row


class IndexScan(Operator):
    """Rows of a table found through a secondary index (index entries, then point gets)."""

    def __init__(self, rt, table, index, decoder: RowDecoder, access: KeyAccess, residual: Fn | None,
                 fallback: Fn | None, reverse: bool = False, alias: str | None = None):
        self.rt = rt
        self.table = table
        self.index = index
        self.decode = decoder.make()
        self.access = access
        self.residual = residual
        self.fallback = fallback
        self.reverse = reverse
        self.alias = alias
        self.index_codec = keys.KeyCodec([table.types[table.column_index(c)] for c, _ in index.columns],
                                         [d for _, d in index.columns])
        self.prefix_len = len(access.prefix)
        self.full_scan = TableScan(rt, table, decoder, None, None, fallback, reverse, alias)

    def label(self) -> str:
        name = self.table.name if not self.alias or self.alias == self.table.name else f"{self.table.name} AS {self.alias}"
        filt = " + filter" if self.residual else ""
        return (f"Scan {name}: index {self.index.name} (" + ", ".join(self.access.descr) + ")"
                + (" reverse" if self.reverse else "") + filt)

    def rows(self, arg=_EMPTY) -> Iterator[tuple]:
        return self.rows_for(arg)

    def rows_for(self, arg) -> Iterator[tuple]:
        ranges = self.access.ranges(arg)
        if ranges is None:
            return self.full_scan.rows_for(arg)
        if self.reverse:
            ranges = ranges[::-1]
        return self._scan(ranges)

    def _scan(self, ranges):
        reader = self.rt.reader
        decode = self.decode
        pred = self.residual
        row_prefix = self.table.row_prefix
        codec = self.index_codec
        plen = self.prefix_len
        get = reader.get
        for start, end in ranges:
            for key, value in list(reader.scan(start, end, reverse=self.reverse)):
                if value:
                    suffix = value
                else:
                    _vals, pos = codec.decode(key, plen)
                    suffix = key[pos:]
                row_key = row_prefix + suffix
                stored = get(row_key)
                if stored is None:
                    continue
                row = decode(row_key, stored)
                if pred is None or pred(row):
                    yield row


# -- relational operators -----------------------------------------------------

class SingleRow(Operator):
    """The one empty row a SELECT without FROM starts from."""

    def rows(self):
        return iter((_EMPTY,))

    def label(self) -> str:
        return "Single row"


class Materialized(Operator):
    """A subquery or view evaluated into a list (once per execution)."""

    def __init__(self, rt, child: Operator, alias: str):
        self.rt = rt
        self.child = child
        self.children = (child,)
        self.alias = alias
        self._cache: tuple[int, list] | None = None
        self.correlated = False

    def label(self) -> str:
        return f"Subquery {self.alias}"

    def rows(self, arg=_EMPTY):
        if not self.correlated:
            cached = self._cache
            if cached is not None and cached[0] == self.rt.generation:
                return iter(cached[1])
        rows = list(self.child.rows())
        if not self.correlated:
            self._cache = (self.rt.generation, rows)
        return iter(rows)


class Filter(Operator):
    def __init__(self, child: Operator, pred: Fn, text: str):
        self.child = child
        self.children = (child,)
        self.pred = pred
        self.text = text

    def label(self) -> str:
        return f"Filter {self.text}"

    def rows(self):
        pred = self.pred
        return (r for r in self.child.rows() if pred(r))


class Project(Operator):
    def __init__(self, child: Operator, fns: list[Fn], names: list[str]):
        self.child = child
        self.children = (child,)
        self.names = names
        self.fns = fns

    def label(self) -> str:
        return "Project " + ", ".join(self.names)

    def rows(self):
        fns = self.fns
        if len(fns) == 1:
            f0 = fns[0]
            return ((f0(r),) for r in self.child.rows())
        if len(fns) == 2:
            f0, f1 = fns
            return ((f0(r), f1(r)) for r in self.child.rows())
        return (tuple([f(r) for f in fns]) for r in self.child.rows())


class Reorder(Project):
    """Projection that only picks columns (itemgetter), the cheap kind."""

    def __init__(self, child: Operator, positions: list[int], names: list[str]):
        super().__init__(child, [], names)
        self.positions = positions

    def rows(self):
        pos = self.positions
        if len(pos) == 1:
            p = pos[0]
            return ((r[p],) for r in self.child.rows())
        getter = itemgetter(*pos)
        return map(getter, self.child.rows())


class _Join(Operator):
    """Two inputs; a LEFT join pads a left row that matched nothing with ``right_width`` NULLs."""

    def __init__(self, left: Operator, right, left_outer: bool, right_width: int, text: str = ""):
        self.left = left
        self.right = right
        self.children = (left, right)
        self.left_outer = left_outer
        self.pad = (None,) * right_width
        self.text = text


class NestedLoopJoin(_Join):
    """For each left row, every right row (materialized once) that passes ``pred``."""

    def __init__(self, left: Operator, right: Operator, pred: Fn | None, left_outer: bool, right_width: int,
                 text: str):
        super().__init__(left, right, left_outer, right_width, text)
        self.pred = pred

    def label(self) -> str:
        kind = "Left nested loop join" if self.left_outer else "Nested loop join"
        return f"{kind}{' on ' + self.text if self.text else ''}"

    def rows(self):
        right_rows = list(self.right.rows())
        pred = self.pred
        pad = self.pad
        for lrow in self.left.rows():
            matched = False
            for rrow in right_rows:
                row = lrow + rrow
                if pred is None or pred(row):
                    matched = True
                    yield row
            if self.left_outer and not matched:
                yield lrow + pad


class HashJoin(_Join):
    """Equi-join: build a hash table of the right rows on their key, probe with left rows."""

    def __init__(self, left: Operator, right: Operator, left_keys: list[Fn], right_keys: list[Fn],
                 residual: Fn | None, left_outer: bool, right_width: int, text: str):
        super().__init__(left, right, left_outer, right_width, text)
        self.left_keys = left_keys
        self.right_keys = right_keys
        self.residual = residual

    def label(self) -> str:
        kind = "Left hash join" if self.left_outer else "Hash join"
        return f"{kind} on {self.text}"

    def rows(self):
        table: dict = {}
        rk = self.right_keys
        one = len(rk) == 1
        r0 = rk[0]
        for rrow in self.right.rows():
            if one:
                k = _hash_key(r0(rrow))
                if k is None:
                    continue
            else:
                k = tuple(_hash_key(f(rrow)) for f in rk)
                if None in k:
                    continue
            bucket = table.get(k)
            if bucket is None:
                table[k] = [rrow]
            else:
                bucket.append(rrow)
        lk = self.left_keys
        l0 = lk[0]
        residual = self.residual
        pad = self.pad
        left_outer = self.left_outer
        for lrow in self.left.rows():
            if one:
                k = _hash_key(l0(lrow))
            else:
                k = tuple(_hash_key(f(lrow)) for f in lk)
                if None in k:
                    k = None
            bucket = table.get(k) if k is not None else None
            matched = False
            if bucket:
                for rrow in bucket:
                    row = lrow + rrow
                    if residual is None or residual(row):
                        matched = True
                        yield row
            if left_outer and not matched:
                yield lrow + pad


def _hash_key(v):
    """A dict key under SQL equality: 1 = 1.0 = True; dates as their text."""
    if v is None:
        return None
    t = type(v)
    if t is int or t is str or t is float or t is bytes:
        return v
    if t is bool:
        return int(v)
    return V.to_text(v)


class LookupJoin(_Join):
    """For each left row, look the right table up through its key (index nested loop)."""

    def __init__(self, left: Operator, scan, residual: Fn | None, left_outer: bool, right_width: int):
        super().__init__(left, scan, left_outer, right_width)
        self.scan = scan
        self.residual = residual

    def label(self) -> str:
        return ("Left lookup join" if self.left_outer else "Lookup join") + (" + filter" if self.residual else "")

    def rows(self):
        scan = self.scan.rows_for
        residual = self.residual
        pad = self.pad
        left_outer = self.left_outer
        for lrow in self.left.rows():
            matched = False
            for rrow in scan(lrow):
                row = lrow + rrow
                if residual is None or residual(row):
                    matched = True
                    yield row
            if left_outer and not matched:
                yield lrow + pad


class Aggregate(Operator):
    """GROUP BY: rows become (group key values..., aggregate results..., bare columns...).

    ``aggs`` are (factory, argument functions, distinct) triples; ``bare`` are
    positions of columns used outside aggregates, taken from the group's last
    row, or from the row holding the extreme value when the query has exactly
    one min() or max() (as SQLite does).
    """

    def __init__(self, child: Operator, key_fns: list[Fn], aggs: list, bare: list[int], extreme: int | None,
                 text: str, scalar: bool):
        self.child = child
        self.children = (child,)
        self.key_fns = key_fns
        self.aggs = aggs
        self.bare = bare
        self.extreme = extreme
        self.text = text
        self.scalar = scalar

    def label(self) -> str:
        return f"Aggregate {self.text}"

    def rows(self):
        key_fns = self.key_fns
        aggs = self.aggs
        bare = self.bare
        nk = len(key_fns)
        groups: dict = {}
        extreme = self.extreme
        for row in self.child.rows():
            if nk == 0:
                k = ()
            elif nk == 1:
                k = (key_fns[0](row),)
            else:
                k = tuple([f(row) for f in key_fns])
            hk = tuple([_hash_key(v) if v is not None else None for v in k]) if nk else ()
            state = groups.get(hk)
            if state is None:
                state = [k, [factory(distinct) for factory, _args, distinct in aggs], None]
                groups[hk] = state
            accs = state[1]
            for i, (_factory, args, _distinct) in enumerate(aggs):
                acc = accs[i]
                if not args:
                    acc.step()
                elif len(args) == 1:
                    if extreme == i:
                        before = acc.final()
                        acc.step(args[0](row))
                        if acc.final() != before or state[2] is None:
                            state[2] = row
                        continue
                    acc.step(args[0](row))
                else:
                    acc.step(*[a(row) for a in args])
            if bare and extreme is None:
                state[2] = row
        if not groups and self.scalar:
            groups[()] = [(), [factory(distinct) for factory, _a, distinct in aggs], None]
        items = list(groups.values())
        if nk:
            sort_key = V.sort_key
            items.sort(key=lambda s: [sort_key(v) for v in s[0]])
        for k, accs, last in items:
            out = list(k)
            out.extend(acc.final() for acc in accs)
            if bare:
                out.extend(last[p] if last is not None else None for p in bare)
            yield tuple(out)


class Sort(Operator):
    """ORDER BY: ``terms`` are (key function, descending, nulls_first)."""

    def __init__(self, child: Operator, terms: list[tuple[Fn, bool, bool]], text: str, limit: Fn | None = None):
        self.child = child
        self.children = (child,)
        self.terms = terms
        self.text = text
        self.limit = limit  # top-k: an upper bound on the rows the consumer needs

    def label(self) -> str:
        return f"Sort {self.text}"

    def rows(self):
        rows = list(self.child.rows())
        sort_key = V.sort_key
        for fn, desc, nulls_first in reversed(self.terms):
            if desc:
                # reverse=True keeps stability; NULL placement flips with it
                def key(r, fn=fn, nf=nulls_first):
                    v = fn(r)
                    return (1, ()) if v is None and nf else (0, ()) if v is None else (0 if nf else 1, sort_key(v))
                rows.sort(key=key, reverse=True)
            else:
                def key(r, fn=fn, nf=nulls_first):
                    v = fn(r)
                    return (0, ()) if v is None and nf else (2, ()) if v is None else (1, sort_key(v))
                rows.sort(key=key)
        return iter(rows)


class Limit(Operator):
    def __init__(self, child: Operator, limit: Fn | None, offset: Fn | None):
        self.child = child
        self.children = (child,)
        self.limit = limit
        self.offset = offset

    def label(self) -> str:
        return "Limit" + (" + offset" if self.offset else "")

    def rows(self):
        n = self.limit(None) if self.limit is not None else None
        off = self.offset(None) if self.offset is not None else 0
        n = _as_count(n, "LIMIT")
        off = _as_count(off, "OFFSET") or 0
        if off < 0:
            off = 0
        if n is not None and n < 0:
            n = None
        stop = None if n is None else off + n
        return itertools.islice(self.child.rows(), off, stop)


def _as_count(v, what: str):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    ok, c = V.try_coerce(v, "INTEGER")
    if ok:
        return c
    raise ProgrammingError(f"datatype mismatch: {what} must be an integer")


class Distinct(Operator):
    """Rows whose first ``width`` values (all of them when None) were not seen before."""

    def __init__(self, child: Operator, width: int | None = None):
        self.child = child
        self.children = (child,)
        self.width = width

    def label(self) -> str:
        return "Distinct"

    def rows(self):
        seen = set()
        w = self.width
        for row in self.child.rows():
            k = tuple([_hash_key(v) for v in (row if w is None else row[:w])])
            if k not in seen:
                seen.add(k)
                yield row


class SetOperation(Operator):
    """UNION [ALL], INTERSECT, EXCEPT (set semantics except UNION ALL)."""

    def __init__(self, kind: str, left: Operator, right: Operator, distinct: bool):
        self.kind = kind
        self.left = left
        self.right = right
        self.children = (left, right)
        self.distinct = distinct

    def label(self) -> str:
        return self.kind + ("" if self.distinct else " ALL")

    def rows(self):
        def hk(row):
            return tuple([_hash_key(v) for v in row])
        if self.kind == "UNION":
            if not self.distinct:
                return itertools.chain(self.left.rows(), self.right.rows())
            out = {}
            for row in itertools.chain(self.left.rows(), self.right.rows()):
                out.setdefault(hk(row), row)
            return _sorted_rows(out.values())
        right = {hk(r) for r in self.right.rows()}
        out = {}
        for row in self.left.rows():
            k = hk(row)
            if (k in right) == (self.kind == "INTERSECT"):
                out.setdefault(k, row)
        return _sorted_rows(out.values())


def _sorted_rows(rows):
    """Set operations return their rows sorted, as SQLite's do."""
    sort_key = V.sort_key
    return iter(sorted(rows, key=lambda r: [sort_key(v) for v in r]))


class ExplainOnly(Operator):
    def __init__(self, text: str, children=()):
        self.text = text
        self.children = tuple(children)

    def label(self) -> str:
        return self.text

    def rows(self):
        return iter(())


def top_k(rows, n: int, key) -> list:
    return heapq.nsmallest(n, rows, key=key)
