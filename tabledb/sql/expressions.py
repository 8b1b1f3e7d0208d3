"""Compiling SQL expressions (sqlglot trees) into Python closures over rows.

A compiled expression is a function ``f(row) -> value`` where ``row`` is a flat
tuple: the concatenated rows of the sources joined so far, each source at the
offset its :class:`Layout` gives it. Column references become ``row[i]``
(``operator.itemgetter``), constants fold at compile time, parameters read the
statement's :class:`Runtime`, and references to an enclosing query (correlated
subqueries) read the row that the enclosing scope last handed to the subquery
(:attr:`Scope.cell`).

Values follow SQLite: comparisons and logic give 1, 0 or None (NULL);
arithmetic, CAST, LIKE and the scalar functions come from
:mod:`tabledb.sql.values` and :mod:`tabledb.sql.functions`.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any, Callable

from sqlglot import exp

from tabledb.errors import NotSupportedError, OperationalError, ProgrammingError
from tabledb.sql import functions as F
from tabledb.sql import values as V

Fn = Callable[[Any], Any]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_INT_LITERAL = re.compile(r"^[0-9]+$")


class Runtime:
    """Per-statement mutable state that compiled closures read.

    ``params`` is the current parameter list; ``reader`` reads the engine
    (a :class:`tabledb.sql.txn.Transaction`); ``generation`` changes on every
    execution so uncorrelated subqueries are evaluated once per execution.
    """

    __slots__ = ("params", "reader", "generation", "session", "cf")

    def __init__(self, session=None):
        self.params: list = []
        self.reader = None
        self.generation = 0
        self.session = session
        self.cf = None


class Source:
    """One item of a FROM clause: a base table, a view or a subquery."""

    def __init__(self, alias: str, columns: list[str], types: list[str | None], *, table=None,
                 plan=None, hidden: int = 0, nullable: bool = False):
        self.alias = alias
        self.columns = columns          # visible columns, then ``hidden`` hidden ones (rowid)
        self.types = types
        self.table = table              # catalog.Table for base tables
        self.plan = plan                # a planned subquery (derived tables, views)
        self.hidden = hidden
        self.nullable = nullable        # right side of a LEFT JOIN
        self.qualified_only = False     # only found as alias.column (ON CONFLICT's "excluded")
        self.using: set[str] = set()    # columns merged by JOIN ... USING: unqualified names mean the left one
        self.positions: dict[str, int] = {}
        for i, name in enumerate(columns):
            self.positions.setdefault(name.lower(), i)

    @property
    def width(self) -> int:
        return len(self.columns)

    @property
    def visible(self) -> int:
        return len(self.columns) - self.hidden

    def __repr__(self) -> str:
        return f"Source({self.alias})"


class Scope:
    """The sources visible to the expressions of one query block."""

    def __init__(self, sources: list[Source], parent: "Scope | None" = None):
        self.sources = sources
        self.parent = parent
        self.cell: list = [None]         # the row handed to subqueries evaluated in this scope
        self.correlated_ok = True        # False while compiling post-aggregation expressions
        self.used_by_children_count = 0  # references from subqueries (correlation detection)
        self.outer_layout: dict = {}     # the layout of the rows put in ``cell``
        self.outer_agg_slots: dict | None = None   # or, for aggregated rows, their slots

    def find(self, name: str, table: str | None) -> tuple[Source, int] | None:
        low = name.lower()
        if table is not None:
            tlow = table.lower()
            for source in self.sources:
                if source.alias.lower() == tlow:
                    pos = source.positions.get(low)
                    if pos is None:
                        raise ProgrammingError(f"no such column: {table}.{name}")
                    return source, pos
            return None
        found = None
        for source in self.sources:
            if source.qualified_only or low in source.using:
                continue
            pos = source.positions.get(low)
            if pos is not None:
                if found is not None:
                    raise ProgrammingError(f"ambiguous column name: {name}")
                found = (source, pos)
        return found

    def has_alias(self, table: str) -> bool:
        tlow = table.lower()
        return any(s.alias.lower() == tlow for s in self.sources)


def resolve(scope: Scope, column: exp.Column) -> tuple[int, Source, int]:
    """(levels up, source, position) of a column reference; ProgrammingError if unknown."""
    name = column.name
    table = column.table or None
    level = 0
    s: Scope | None = scope
    while s is not None:
        if table is None or s.has_alias(table):
            hit = s.find(name, table)
            if hit is not None:
                return level, hit[0], hit[1]
        s = s.parent
        level += 1
    if table:
        if not _alias_anywhere(scope, table):
            raise ProgrammingError(f"no such column: {table}.{name}")
        raise ProgrammingError(f"no such column: {table}.{name}")
    raise ProgrammingError(f"no such column: {name}")


def _alias_anywhere(scope: Scope | None, table: str) -> bool:
    while scope is not None:
        if scope.has_alias(table):
            return True
        scope = scope.parent
    return False


def split_conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    """The AND-ed parts of a predicate (parentheses removed)."""
    if node is None:
        return []
    out: list[exp.Expr] = []
    stack = [node]
    while stack:
        n = stack.pop()
        while isinstance(n, exp.Paren):
            n = n.this
        if isinstance(n, exp.And):
            stack.append(n.expression)
            stack.append(n.this)
        else:
            out.append(n)
    return out


def literal_value(node: exp.Literal) -> Any:
    text = node.this
    if node.is_string:
        return text
    if _INT_LITERAL.match(text):
        value = int(text)
        return value if value <= INT64_MAX else float(text)
    try:
        if text[:2].lower() == "0x":
            return int(text, 16)
        return float(text)
    except ValueError:
        raise ProgrammingError(f"bad numeric literal: {text}") from None


DTYPE_NAMES = {
    "INT": "INTEGER", "BIGINT": "INTEGER", "SMALLINT": "INTEGER", "TINYINT": "INTEGER", "MEDIUMINT": "INTEGER",
    "UINT": "INTEGER", "UBIGINT": "INTEGER", "USMALLINT": "INTEGER", "UTINYINT": "INTEGER",
    "DOUBLE": "REAL", "FLOAT": "REAL", "DECIMAL": "REAL", "BIGDECIMAL": "REAL", "MONEY": "REAL",
    "TEXT": "TEXT", "VARCHAR": "TEXT", "CHAR": "TEXT", "NCHAR": "TEXT", "NVARCHAR": "TEXT", "BPCHAR": "TEXT",
    "MEDIUMTEXT": "TEXT", "LONGTEXT": "TEXT", "TINYTEXT": "TEXT", "NAME": "TEXT",
    "BLOB": "BLOB", "VARBINARY": "BLOB", "BINARY": "BLOB", "LONGBLOB": "BLOB", "MEDIUMBLOB": "BLOB",
    "TINYBLOB": "BLOB",
    "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP", "TIMESTAMPNTZ": "TIMESTAMP", "DATETIME64": "TIMESTAMP",
}


def type_name(dtype: exp.DataType) -> str:
    """The canonical column type of a parsed data type (INTEGER, REAL, TEXT, ...)."""
    dt = dtype.this
    name = getattr(dt, "name", None) or str(dt)
    if name in DTYPE_NAMES:
        return DTYPE_NAMES[name]
    if name == "USERDEFINED" or name == "UNKNOWN":
        raw = dtype.args.get("kind") or dtype.sql()
        return V.column_type(str(raw))
    return V.column_type(name)


class Compiler:
    """Compiles expressions of one query block.

    ``layout`` maps a source to its offset in the rows the compiled functions
    receive; sources of enclosing scopes are read through their scope's cell.
    ``agg_slots`` (post-aggregation mode) maps the SQL text of group keys and
    aggregate calls to positions in the aggregated row.
    """

    def __init__(self, planner, scope: Scope, layout: dict[Source, int], rt: Runtime,
                 agg_slots: dict[str, int] | None = None):
        self.planner = planner
        self.scope = scope
        self.layout = layout
        self.rt = rt
        self.agg_slots = agg_slots

    # -- entry points --------------------------------------------------------
    def compile(self, node: exp.Expr) -> Fn:
        return self._c(node)

    def predicate(self, node: exp.Expr) -> Fn:
        """A function whose result is truthy exactly when the SQL predicate is true."""
        fn = self._c(node)
        if _is_boolean_node(node):
            return fn
        truth = V.truth
        return lambda r: truth(fn(r))

    def static_type(self, node: exp.Expr) -> str | None:
        """The column type of an expression when it is known at compile time."""
        while isinstance(node, (exp.Paren, exp.Alias)):
            node = node.this
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            try:
                _level, source, pos = resolve(self.scope, node)
            except ProgrammingError:
                return None
            return source.types[pos]
        if isinstance(node, exp.Cast):
            try:
                return type_name(node.to)
            except Exception:  # noqa: BLE001 - unknown types are reported when compiled
                return None
        if isinstance(node, exp.Literal):
            v = literal_value(node)
            return "TEXT" if isinstance(v, str) else "INTEGER" if isinstance(v, int) else "REAL"
        if isinstance(node, exp.HexString):
            return "BLOB"
        if isinstance(node, (exp.Count,)):
            return "INTEGER"
        if isinstance(node, (exp.Avg,)):
            return "REAL"
        if isinstance(node, (exp.Length,)):
            return "INTEGER"
        if isinstance(node, (exp.DPipe, exp.Lower, exp.Upper, exp.Typeof, exp.GroupConcat)):
            return "TEXT"
        if isinstance(node, (exp.Min, exp.Max, exp.Sum)) and not node.expressions:
            return self.static_type(node.this)
        return None

    # -- the compiler --------------------------------------------------------
    def _c(self, node: exp.Expr) -> Fn:
        if self.agg_slots is not None:
            slot = self.agg_slots.get(agg_key(node))
            if slot is not None:
                return itemgetter(slot)
        method = _DISPATCH.get(type(node))
        if method is None:
            if isinstance(node, exp.Func):
                return self._function(node)
            raise NotSupportedError(f"unsupported expression: {node.sql(dialect='sqlite')[:80]}")
        return method(self, node)

    def _const(self, node: exp.Expr) -> tuple[bool, Any]:
        """(True, value) when ``node`` is a constant known at compile time."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Literal):
            return True, literal_value(node)
        if isinstance(node, exp.Null):
            return True, None
        if isinstance(node, exp.Boolean):
            return True, 1 if node.this else 0
        if isinstance(node, exp.Neg):
            inner = node.this
            if isinstance(inner, exp.Literal) and not inner.is_string and inner.this == "9223372036854775808":
                return True, INT64_MIN
            ok, v = self._const(inner)
            if ok:
                return True, V.op_neg(v)
        return False, None

    # leaves
    def _column(self, node: exp.Column) -> Fn:
        if isinstance(node.this, exp.Star):
            raise ProgrammingError("'*' is only allowed in a select list or count(*)")
        level, source, pos = resolve(self.scope, node)
        if level == 0:
            if self.agg_slots is not None:
                slot = self.agg_slots.get(bare_key(source, pos))
                if slot is None:
                    raise ProgrammingError(f"column {node.sql()} must appear in GROUP BY or an aggregate")
                return itemgetter(slot)
            try:
                offset = self.layout[source]
            except KeyError:
                raise ProgrammingError(f"column {node.sql()} cannot be used here") from None
            return itemgetter(offset + pos)
        scope = self.scope
        for _ in range(level):
            scope = scope.parent
        scope.used_by_children_count += 1
        cell = scope.cell
        if scope.outer_agg_slots is not None:
            index = scope.outer_agg_slots.get(bare_key(source, pos))
            if index is None:
                raise ProgrammingError(f"column {node.sql()} must appear in GROUP BY or an aggregate")
            return lambda r: cell[0][index]
        if not scope.correlated_ok:
            raise NotSupportedError("a correlated subquery cannot refer to an aggregated outer query")
        try:
            offset = scope.outer_layout[source]
        except KeyError:
            raise NotSupportedError(f"column {node.sql()} of an outer query cannot be used here") from None
        index = offset + pos
        return lambda r: cell[0][index]

    def _literal(self, node: exp.Literal) -> Fn:
        value = literal_value(node)
        return lambda r: value

    def _null(self, node) -> Fn:
        return lambda r: None

    def _boolean(self, node: exp.Boolean) -> Fn:
        value = 1 if node.this else 0
        return lambda r: value

    def _hexstring(self, node: exp.HexString) -> Fn:
        try:
            value = bytes.fromhex(node.this)
        except ValueError:
            raise ProgrammingError(f"bad blob literal: x'{node.this}'") from None
        return lambda r: value

    def _placeholder(self, node: exp.Placeholder) -> Fn:
        index = self.planner.param_index(node)
        rt = self.rt
        return lambda r: rt.params[index]

    def _paren(self, node: exp.Paren) -> Fn:
        return self._c(node.this)

    def _alias(self, node: exp.Alias) -> Fn:
        return self._c(node.this)

    # operators
    def _binary(self, node, op) -> Fn:
        a = self._c(node.this)
        b = self._c(node.expression)
        ok_a, va = self._const(node.this)
        ok_b, vb = self._const(node.expression)
        if ok_a and ok_b:
            value = op(va, vb)
            return lambda r: value
        if ok_b:
            return lambda r: op(a(r), vb)
        return lambda r: op(a(r), b(r))

    def _compare(self, node, op) -> Fn:
        left, right = node.this, node.expression
        a = self._c(left)
        b = self._c(right)
        # Affinity (SQLite): a typed column compared with a constant or parameter
        # converts the other side to the column's type when that is lossless.
        ta = self._column_type(left)
        tb = self._column_type(right)
        if ta and not tb:
            b = self._coerced(right, b, ta)
        elif tb and not ta:
            a = self._coerced(left, a, tb)
        ok_b, vb = self._const_fn(b, right)
        if ok_b:
            if vb is None:
                return lambda r: None
            return lambda r: op(a(r), vb)
        return lambda r: op(a(r), b(r))

    def _const_fn(self, fn: Fn, node) -> tuple[bool, Any]:
        ok, _ = self._const(node)
        if ok:
            return True, fn(None)
        return False, None

    def _column_type(self, node) -> str | None:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            return self.static_type(node)
        return None

    def _coerced(self, node, fn: Fn, type_name_: str) -> Fn:
        while isinstance(node, exp.Paren):
            node = node.this
        if not isinstance(node, (exp.Literal, exp.Placeholder, exp.Neg, exp.Null, exp.Boolean)):
            return fn
        try_coerce = V.try_coerce

        numeric = type_name_ in ("INTEGER", "REAL")

        def coerced(r):
            v = fn(r)
            if v is None:
                return None
            ok, c = try_coerce(v, type_name_)
            if ok:
                return c
            if numeric and type(v) is str:
                # NUMERIC affinity: text that reads as a number compares as that number ('2.5')
                ok, c = try_coerce(v, "REAL")
                if ok:
                    return c
            return v
        ok, v = self._const(node)
        if ok:
            value = coerced(None)
            return lambda r: value
        return coerced

    def _eq(self, node):
        return self._compare(node, V.op_eq)

    def _neq(self, node):
        return self._compare(node, V.op_ne)

    def _lt(self, node):
        return self._compare(node, V.op_lt)

    def _lte(self, node):
        return self._compare(node, V.op_le)

    def _gt(self, node):
        return self._compare(node, V.op_gt)

    def _gte(self, node):
        return self._compare(node, V.op_ge)

    def _is(self, node: exp.Is) -> Fn:
        a = self._c(node.this)
        if isinstance(node.expression, exp.Null):
            return lambda r: 1 if a(r) is None else 0
        b = self._c(node.expression)
        op = V.op_is
        return lambda r: op(a(r), b(r))

    def _nullsafe_eq(self, node) -> Fn:
        a, b = self._c(node.this), self._c(node.expression)
        op = V.op_is
        return lambda r: op(a(r), b(r))

    def _nullsafe_neq(self, node) -> Fn:
        a, b = self._c(node.this), self._c(node.expression)
        op = V.op_is_not
        return lambda r: op(a(r), b(r))

    def _and(self, node: exp.And) -> Fn:
        parts = [self._c(p) for p in _flatten(node, exp.And)]
        truth = V.truth

        def f(r):
            result = 1
            for p in parts:
                v = p(r)
                if v is None:
                    result = None
                elif v == 0 or (type(v) not in (int, bool, float) and not truth(v)):
                    if v is not None:
                        return 0
            return result
        if len(parts) == 2:
            p0, p1 = parts

            def f2(r):
                v = p0(r)
                if v is not None and not (v if type(v) in (int, bool, float) else truth(v)):
                    return 0
                w = p1(r)
                if w is not None and not (w if type(w) in (int, bool, float) else truth(w)):
                    return 0
                return None if v is None or w is None else 1
            return f2
        return f

    def _or(self, node: exp.Or) -> Fn:
        parts = [self._c(p) for p in _flatten(node, exp.Or)]
        truth = V.truth

        def f(r):
            result = 0
            for p in parts:
                v = p(r)
                if v is None:
                    result = None
                elif v if type(v) in (int, bool, float) else truth(v):
                    return 1
            return result
        return f

    def _not(self, node: exp.Not) -> Fn:
        inner = node.this
        if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
            a = self._c(inner.this)
            return lambda r: 0 if a(r) is None else 1
        a = self._c(inner)
        op = V.op_not
        return lambda r: op(a(r))

    def _neg(self, node: exp.Neg) -> Fn:
        ok, v = self._const(node)
        if ok:
            return lambda r: v
        a = self._c(node.this)
        op = V.op_neg
        return lambda r: op(a(r))

    def _add(self, node):
        return self._binary(node, V.op_add)

    def _sub(self, node):
        return self._binary(node, V.op_sub)

    def _mul(self, node):
        return self._binary(node, V.op_mul)

    def _div(self, node):
        return self._binary(node, V.op_div)

    def _mod(self, node):
        return self._binary(node, V.op_mod)

    def _dpipe(self, node):
        return self._binary(node, V.op_concat)

    def _bitand(self, node):
        return self._binary(node, V.op_bitand)

    def _bitor(self, node):
        return self._binary(node, V.op_bitor)

    def _shl(self, node):
        return self._binary(node, V.op_shl)

    def _shr(self, node):
        return self._binary(node, V.op_shr)

    def _bitnot(self, node) -> Fn:
        a = self._c(node.this)
        op = V.op_bitnot
        return lambda r: op(a(r))

    def _between(self, node: exp.Between) -> Fn:
        col = node.this
        a = self._c(col)
        lo = self._c(node.args["low"])
        hi = self._c(node.args["high"])
        t = self._column_type(col)
        if t:
            lo = self._coerced(node.args["low"], lo, t)
            hi = self._coerced(node.args["high"], hi, t)
        ge, le, and_ = V.op_ge, V.op_le, V.op_and
        return lambda r: and_(ge(a(r), lo(r)), le(a(r), hi(r)))

    def _in(self, node: exp.In) -> Fn:
        a = self._c(node.this)
        query = node.args.get("query")
        if query is not None:
            return self._in_subquery(a, query)
        items = node.expressions
        if not items:
            return lambda r: 0       # x IN () is false, even for NULL
        t = self._column_type(node.this)
        fns = [self._coerced(i, self._c(i), t) if t else self._c(i) for i in items]
        consts = [self._const(i) for i in items]
        eq = V.op_eq
        if all(ok for ok, _ in consts):
            values = [fn(None) for fn in fns]
            has_null = any(v is None for v in values)
            hashable = [v for v in values if v is not None]
            try:
                value_set = frozenset(hashable)
            except TypeError:
                value_set = None
            if value_set is not None and all(type(v) in (int, float, str, bytes) for v in hashable):
                def f_set(r):
                    v = a(r)
                    if v is None:
                        return None
                    if type(v) in (int, float, str, bytes) and v in value_set:
                        # bools/int equality and 1 == 1.0 match SQLite's numeric comparison
                        return 1
                    if type(v) not in (int, float, str, bytes):
                        for w in hashable:
                            if eq(v, w) == 1:
                                return 1
                    return None if has_null else 0
                return f_set

        def f(r):
            v = a(r)
            if v is None:
                return None
            result = 0
            for fn in fns:
                w = fn(r)
                c = eq(v, w)
                if c == 1:
                    return 1
                if c is None:
                    result = None
            return result
        return f

    def _in_subquery(self, a: Fn, query: exp.Expr) -> Fn:
        sub = self.planner.subquery(query, self.scope, self.layout, self.agg_slots)
        if len(sub.columns) != 1:
            raise ProgrammingError(f"sub-select returns {len(sub.columns)} columns - expected 1")
        eq = V.op_eq
        cache: dict = {}

        def values_of(r):
            if sub.correlated:
                return _set_of(sub.run(r))
            key = self.rt.generation
            hit = cache.get("gen")
            if hit is not None and hit[0] == key:
                return hit[1]
            result = _set_of(sub.run(r))
            cache["gen"] = (key, result)
            return result

        def f(r):
            v = a(r)
            value_set, others, has_null = values_of(r)
            if v is None:
                return 0 if not value_set and not others and not has_null else None   # NULL IN (empty) is 0
            try:
                if v in value_set:
                    return 1
            except TypeError:
                pass
            for w in others:
                if eq(v, w) == 1:
                    return 1
            return None if has_null else 0
        return f

    def _exists(self, node: exp.Exists) -> Fn:
        sub = self.planner.subquery(node.this, self.scope, self.layout, self.agg_slots)
        cache: dict = {}
        rt = self.rt

        def f(r):
            if not sub.correlated:
                hit = cache.get("gen")
                if hit is not None and hit[0] == rt.generation:
                    return hit[1]
            result = 1 if sub.exists(r) else 0
            if not sub.correlated:
                cache["gen"] = (rt.generation, result)
            return result
        return f

    def _subquery(self, node: exp.Subquery) -> Fn:
        sub = self.planner.subquery(node.this, self.scope, self.layout, self.agg_slots)
        if len(sub.columns) != 1:
            raise ProgrammingError(f"sub-select returns {len(sub.columns)} columns - expected 1")
        cache: dict = {}
        rt = self.rt

        def f(r):
            if not sub.correlated:
                hit = cache.get("gen")
                if hit is not None and hit[0] == rt.generation:
                    return hit[1]
            value = sub.scalar(r)
            if not sub.correlated:
                cache["gen"] = (rt.generation, value)
            return value
        return f

    def _select_as_expr(self, node) -> Fn:
        return self._subquery(exp.Subquery(this=node))

    def _like(self, node: exp.Like, escape: exp.Expr | None = None) -> Fn:
        a = self._c(node.this)
        p = self._c(node.expression)
        like = V.like
        e = self._c(escape) if escape is not None else None
        if e is None:
            f = lambda r: like(a(r), p(r))  # noqa: E731
        else:
            def f(r):
                esc = e(r)
                if esc is None:
                    return None   # ESCAPE NULL makes the whole LIKE NULL, as in SQLite
                return like(a(r), p(r), esc)
        if node.args.get("negate"):
            not_ = V.op_not
            return lambda r: not_(f(r))
        return f

    def _ilike(self, node) -> Fn:
        return self._like(node)

    def _escape(self, node: exp.Escape) -> Fn:
        inner = node.this
        negate = False
        if isinstance(inner, exp.Not):
            inner, negate = inner.this, True
        if not isinstance(inner, (exp.Like, exp.ILike)):
            raise NotSupportedError("ESCAPE is only supported with LIKE")
        f = self._like(inner, node.expression)
        if negate:
            not_ = V.op_not
            return lambda r: not_(f(r))
        return f

    def _glob(self, node: exp.Glob) -> Fn:
        a, p = self._c(node.this), self._c(node.expression)
        glob = V.glob
        return lambda r: glob(a(r), p(r))

    def _case(self, node: exp.Case) -> Fn:
        operand = node.this
        ifs = [(self._c(i.this), self._c(i.args["true"])) for i in node.args.get("ifs") or []]
        default = node.args.get("default")
        d = self._c(default) if default is not None else (lambda r: None)
        if operand is not None:
            o = self._c(operand)
            eq = V.op_eq

            def simple(r):
                v = o(r)
                for cond, val in ifs:
                    if eq(v, cond(r)) == 1:
                        return val(r)
                return d(r)
            return simple
        truth = V.truth

        def searched(r):
            for cond, val in ifs:
                c = cond(r)
                if c is not None and (c if type(c) in (int, bool, float) else truth(c)):
                    return val(r)
            return d(r)
        return searched

    def _if(self, node: exp.If) -> Fn:
        c = self._c(node.this)
        t = self._c(node.args["true"])
        f_ = node.args.get("false")
        e = self._c(f_) if f_ is not None else (lambda r: None)
        truth = V.truth
        return lambda r: t(r) if truth(c(r)) else e(r)

    def _cast(self, node: exp.Cast) -> Fn:
        to = node.to
        if to.this == exp.DataType.Type.DECIMAL and not to.expressions:
            target = "NUMERIC"
        else:
            target = type_name(to)
        a = self._c(node.this)
        cast = V.cast
        ok, v = self._const(node.this)
        if ok:
            value = cast(v, target)
            return lambda r: value
        return lambda r: cast(a(r), target)

    def _collate(self, node: exp.Collate) -> Fn:
        name = node.expression.name.upper() if node.expression is not None else ""
        if name not in ("BINARY", "NOCASE", "RTRIM"):
            raise ProgrammingError(f"no such collation sequence: {name}")
        if name == "BINARY":
            return self._c(node.this)
        raise NotSupportedError(f"COLLATE {name} is not supported")

    # functions
    def _coalesce(self, node: exp.Coalesce) -> Fn:
        fns = [self._c(a) for a in [node.this, *node.expressions]]
        if len(fns) < 2:
            name = "ifnull" if node.args.get("is_nvl") else "coalesce"
            raise ProgrammingError(f"wrong number of arguments to function {name}()")

        def f(r):
            for fn in fns:
                v = fn(r)
                if v is not None:
                    return v
            return None
        return f

    def _function(self, node: exp.Func) -> Fn:
        if isinstance(node, exp.AggFunc) or is_aggregate(node):
            raise ProgrammingError(f"misuse of aggregate function {function_name(node)}()")
        if isinstance(node, exp.LowerHex):
            # sqlglot folds lower(hex(x)) into one node: run it as the two calls it was
            return self._c(exp.Lower(this=exp.Hex(this=node.this)))
        name = function_name(node)
        args = function_args(node)
        if name == "last_sequence":
            # the sequence number of the last committed write (a restore point for RESTORE ... AS OF)
            if args:
                raise ProgrammingError("wrong number of arguments to function last_sequence()")
            rt = self.rt
            return lambda r: rt.session.engine.latest_sequence
        entry = F.SCALAR_FUNCTIONS.get(name)
        if entry is None:
            raise ProgrammingError(f"no such function: {name}")
        fn, lo, hi = entry
        if len(args) < lo or (hi is not None and len(args) > hi):
            raise ProgrammingError(f"wrong number of arguments to function {name}()")
        fns = [self._c(a) for a in args]
        consts = [self._const(a) for a in args]
        if all(ok for ok, _ in consts) and name not in _VOLATILE:
            value = fn(*[v for _, v in consts])
            return lambda r: value
        if len(fns) == 1:
            f0 = fns[0]
            return lambda r: fn(f0(r))
        if len(fns) == 2:
            f0, f1 = fns
            return lambda r: fn(f0(r), f1(r))
        return lambda r: fn(*[g(r) for g in fns])


_VOLATILE = {"random", "randomblob", "changes", "last_insert_rowid"}


def _set_of(rows) -> tuple[set, list, bool]:
    values: set = set()
    others: list = []
    has_null = False
    for row in rows:
        v = row[0]
        if v is None:
            has_null = True
        elif type(v) in (int, float, str, bytes):
            values.add(v)
        else:
            others.append(v)
            try:
                values.add(v)
            except TypeError:
                pass
    return values, others, has_null


def _flatten(node: exp.Expr, kind) -> list[exp.Expr]:
    out = []
    stack = [node]
    while stack:
        n = stack.pop()
        while isinstance(n, exp.Paren) and isinstance(n.this, kind):
            n = n.this
        if isinstance(n, kind):
            stack.append(n.expression)
            stack.append(n.this)
        else:
            out.append(n)
    return out


_BOOLEAN_NODES = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.Is, exp.And, exp.Or, exp.Not,
                  exp.Between, exp.In, exp.Exists, exp.Like, exp.ILike, exp.Glob, exp.NullSafeEQ,
                  exp.NullSafeNEQ, exp.Escape)


def _is_boolean_node(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, _BOOLEAN_NODES)


# -- function names and aggregates ------------------------------------------

_FUNC_NAMES = {
    exp.Abs: "abs", exp.Nullif: "nullif", exp.Length: "length", exp.Lower: "lower", exp.Upper: "upper",
    exp.Substring: "substr", exp.Replace: "replace", exp.Round: "round", exp.Typeof: "typeof",
    exp.Greatest: "max", exp.Least: "min", exp.StrPosition: "instr", exp.Hex: "hex",
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max",
    exp.GroupConcat: "group_concat", exp.If: "iif", exp.Unicode: "unicode", exp.Chr: "char",
    exp.Sign: "sign", exp.Concat: "concat", exp.Unhex: "unhex",
}


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    if isinstance(node, exp.Trim):
        pos = (node.args.get("position") or "").upper()
        return {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(pos, "trim")
    name = _FUNC_NAMES.get(type(node))
    if name is not None:
        return name
    return node.sql_name().lower()


def function_args(node: exp.Func) -> list[exp.Expr]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    if isinstance(node, exp.Substring):
        return [a for a in (node.this, node.args.get("start"), node.args.get("length")) if a is not None]
    if isinstance(node, exp.Replace):
        return [node.this, node.expression, node.args.get("replacement")]
    if isinstance(node, exp.Trim):
        return [a for a in (node.this, node.expression) if a is not None]
    if isinstance(node, exp.Round):
        return [a for a in (node.this, node.args.get("decimals")) if a is not None]
    if isinstance(node, exp.StrPosition):
        return [node.this, node.args.get("substr")]
    if isinstance(node, exp.GroupConcat):
        return [a for a in (node.this, node.args.get("separator")) if a is not None]
    if isinstance(node, exp.Nullif):
        return [node.this, node.expression]
    args = []
    for key in node.arg_types:
        value = node.args.get(key)
        if value is None or isinstance(value, (bool, str)):
            continue
        if isinstance(value, list):
            args.extend(value)
        elif isinstance(value, exp.Expr):
            args.append(value)
    return args


_AGG_CLASSES = (exp.Count, exp.Sum, exp.Avg, exp.GroupConcat)


def is_aggregate(node: exp.Expr) -> bool:
    """True for an aggregate call (count, sum, min/max with one argument, ...)."""
    if isinstance(node, _AGG_CLASSES):
        return True
    if isinstance(node, (exp.Min, exp.Max)):
        return not node.expressions
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower() in F.AGGREGATES
    if isinstance(node, exp.AggFunc):
        return True
    return False


def aggregate_call(node: exp.Expr) -> tuple[str, list[exp.Expr], bool]:
    """(name, argument nodes, distinct) of an aggregate call; count(*) has no arguments."""
    name = function_name(node)
    if isinstance(node, exp.Count):
        this = node.this
        distinct = False
        if isinstance(this, exp.Distinct):
            distinct = True
            args = list(this.expressions)
        elif this is None or isinstance(this, exp.Star):
            args = []
        else:
            args = [this]
        return "count", args, distinct
    args = function_args(node)
    distinct = False
    if args and isinstance(args[0], exp.Distinct):
        distinct = True
        args = list(args[0].expressions) + args[1:]
    if name == "group_concat" and isinstance(node, exp.GroupConcat):
        this = node.this
        if isinstance(this, exp.Distinct):
            distinct = True
            args = list(this.expressions) + ([node.args["separator"]] if node.args.get("separator") else [])
    if name not in F.AGGREGATES:
        raise ProgrammingError(f"no such function: {name}")
    return name, args, distinct


def agg_key(node: exp.Expr) -> str:
    """The identity of an expression when matching GROUP BY keys and aggregate calls.
    Each parameter is its own value: max(?) and max(?) are two different calls."""
    text = node.sql(dialect="sqlite", normalize=False, identify=False).lower()
    params = [p.meta.get("tabledb_param") for p in node.find_all(exp.Placeholder)] if "?" in text or ":" in text else []
    return text + ("#" + ",".join(map(str, params)) if params else "")


def bare_key(source: Source, pos: int) -> str:
    """The slot key of a bare (non-grouped) column in an aggregated row."""
    return f"\x00bare:{id(source)}:{pos}"


_DISPATCH: dict[type, Callable] = {
    exp.Column: Compiler._column, exp.Literal: Compiler._literal, exp.Null: Compiler._null,
    exp.Boolean: Compiler._boolean, exp.HexString: Compiler._hexstring, exp.Placeholder: Compiler._placeholder,
    exp.Paren: Compiler._paren, exp.Alias: Compiler._alias,
    exp.EQ: Compiler._eq, exp.NEQ: Compiler._neq, exp.LT: Compiler._lt, exp.LTE: Compiler._lte,
    exp.GT: Compiler._gt, exp.GTE: Compiler._gte, exp.Is: Compiler._is,
    exp.NullSafeEQ: Compiler._nullsafe_eq, exp.NullSafeNEQ: Compiler._nullsafe_neq,
    exp.And: Compiler._and, exp.Or: Compiler._or, exp.Not: Compiler._not, exp.Neg: Compiler._neg,
    exp.Add: Compiler._add, exp.Sub: Compiler._sub, exp.Mul: Compiler._mul, exp.Div: Compiler._div,
    exp.Mod: Compiler._mod, exp.DPipe: Compiler._dpipe, exp.BitwiseAnd: Compiler._bitand,
    exp.BitwiseOr: Compiler._bitor, exp.BitwiseLeftShift: Compiler._shl, exp.BitwiseRightShift: Compiler._shr,
    exp.BitwiseNot: Compiler._bitnot, exp.Between: Compiler._between, exp.In: Compiler._in,
    exp.Exists: Compiler._exists, exp.Subquery: Compiler._subquery, exp.Select: Compiler._select_as_expr,
    exp.Like: Compiler._like, exp.ILike: Compiler._ilike, exp.Escape: Compiler._escape, exp.Glob: Compiler._glob,
    exp.Case: Compiler._case, exp.If: Compiler._if, exp.Cast: Compiler._cast, exp.TryCast: Compiler._cast,
    exp.Collate: Compiler._collate, exp.Coalesce: Compiler._coalesce,
}


def check_depth(node: exp.Expr, limit: int = 1000) -> None:
    """Refuse expressions nested deeper than ``limit`` (SQLite's limit is 1000)."""
    stack = [(node, 1)]
    while stack:
        n, depth = stack.pop()
        if depth > limit:
            raise OperationalError(f"expression tree is too large (maximum depth {limit})")
        for child in n.iter_expressions():
            stack.append((child, depth + 1))
