"""Query planning: SELECT (and set operations) into a tree of plan operators.

The steps for one query block, in order:

1. **Sources.** Each FROM item becomes a :class:`Source`: a base table, a view
   or a subquery (planned recursively), with its columns and types.
2. **Conjuncts.** WHERE and inner-join ON clauses are split on AND; each part
   knows which sources it references.
3. **Join order.** Without LEFT JOINs the sources are reordered greedily:
   start with the most selective source (a key lookup by constants beats a
   range, a range beats a scan), then repeatedly add a source connected to the
   joined ones by an equality, preferring one reachable through its primary
   key or an index (a lookup join), then a hash join; a cross product comes
   only when nothing is connected. This plans 60-table joins in milliseconds.
4. **Access paths.** Predicates comparing a key column with a constant, a
   parameter or (in a lookup join) a column of the rows joined so far become
   a :class:`KeyAccess`: point gets for equality on the whole key, ranges for
   equality prefixes, BETWEEN, <, >, IN lists. The primary key is preferred,
   then the index that fixes the most columns.
5. Every remaining conjunct is applied as soon as the sources it references
   are joined. Then aggregation, HAVING, projection, DISTINCT, ORDER BY (skipped
   when a primary key scan already yields that order) and LIMIT/OFFSET.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlglot import exp

from tabledb.errors import NotSupportedError, ProgrammingError
from tabledb.sql import dialect
from tabledb.sql import functions as F
from tabledb.sql import plan as P
from tabledb.sql import values as V
from tabledb.sql.expressions import (Compiler, Runtime, Scope, Source, agg_key, aggregate_call, bare_key,
                                     is_aggregate, literal_value, resolve, split_conjuncts)

_QUERY_NODES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


class QueryPlan:
    """A planned query: the root operator, output column names and their static types."""

    def __init__(self, root: P.Operator, columns: list[str], types: list[str | None]):
        self.root = root
        self.columns = columns
        self.types = types


class SubPlan:
    """A subquery used inside an expression (scalar, IN or EXISTS)."""

    def __init__(self, plan: QueryPlan, scope: Scope, correlated: bool):
        self.root = plan.root
        self.columns = plan.columns
        self.scope = scope
        self.correlated = correlated

    def _with_outer(self, r, consume):
        cell = self.scope.cell
        old = cell[0]
        cell[0] = r
        try:
            return consume(self.root.rows())
        finally:
            cell[0] = old

    def run(self, r) -> list:
        return self._with_outer(r, list)

    def scalar(self, r):
        def first(it):
            for row in it:
                return row[0]
            return None
        return self._with_outer(r, first)

    def exists(self, r) -> bool:
        def any_row(it):
            for _ in it:
                return True
            return False
        return self._with_outer(r, any_row)


class _Conjunct:
    __slots__ = ("node", "refs", "where", "done", "text", "_exact")

    def __init__(self, node: exp.Expr, refs: frozenset, where: bool):
        self._exact = False
        self.node = node
        self.refs = refs
        self.where = where
        self.done = False
        self.text = node.sql(dialect="sqlite")


class Planner:
    """Plans the queries of one statement against one catalog version."""

    def __init__(self, catalog, rt: Runtime, params: dict[int, int] | None = None):
        self.catalog = catalog
        self.rt = rt
        self.params = params or {}
        self.ctes: list[dict[str, exp.Expr]] = []
        self.subqueries = 0      # expression subqueries planned (they read the engine again)
        self._view_depth = 0

    # -- parameters ----------------------------------------------------------
    def param_index(self, node: exp.Placeholder) -> int:
        index = node.meta.get("tabledb_param") if node.meta else None
        if index is not None:
            return index
        try:
            return self.params[id(node)]
        except KeyError:
            raise ProgrammingError("parameter outside a statement") from None

    # -- queries -------------------------------------------------------------
    def plan_query(self, node: exp.Expr, parent: Scope | None = None) -> QueryPlan:
        while isinstance(node, exp.Subquery):
            node = node.this
        with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None:
            if with_.args.get("recursive"):
                raise NotSupportedError("WITH RECURSIVE is not supported")
            self.ctes.append({cte.alias_or_name.lower(): cte for cte in with_.expressions})
            try:
                return self._plan_query_body(node, parent)
            finally:
                self.ctes.pop()
        return self._plan_query_body(node, parent)

    def _plan_query_body(self, node: exp.Expr, parent: Scope | None) -> QueryPlan:
        if isinstance(node, exp.Select):
            return self._plan_select(node, parent)
        if isinstance(node, (exp.Union, exp.Intersect, exp.Except)):
            return self._plan_setop(node, parent)
        if isinstance(node, exp.Values):
            return self._plan_values(node, parent)
        raise NotSupportedError(f"unsupported query: {node.sql(dialect='sqlite')[:60]}")

    def subquery(self, node: exp.Expr, scope: Scope, layout: dict, agg_slots: dict | None = None) -> SubPlan:
        scope.outer_layout = layout
        scope.outer_agg_slots = agg_slots   # the outer rows are aggregated rows: columns are slots
        self.subqueries += 1
        before = _ref_counts(scope)
        plan = self.plan_query(node, scope)
        correlated = _ref_counts(scope) != before
        return SubPlan(plan, scope, correlated)

    def _plan_values(self, node: exp.Values, parent: Scope | None) -> QueryPlan:
        scope = Scope([], parent)
        comp = Compiler(self, scope, {}, self.rt)
        rows = []
        width = None
        for tup in node.expressions:
            items = tup.expressions if isinstance(tup, exp.Tuple) else [tup]
            if width is None:
                width = len(items)
            elif len(items) != width:
                raise ProgrammingError("all VALUES must have the same number of terms")
            rows.append([comp.compile(i) for i in items])
        names = [f"column{i + 1}" for i in range(width or 0)]
        return QueryPlan(_ValuesOp(rows), names, [None] * len(names))

    def _plan_setop(self, node: exp.Expr, parent: Scope | None) -> QueryPlan:
        left = self.plan_query(node.this, parent)
        right = self.plan_query(node.expression, parent)
        kind = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}[type(node)]
        if len(left.columns) != len(right.columns):
            raise ProgrammingError(f"SELECTs to the left and right of {kind} do not have the same number of result columns")
        distinct = bool(node.args.get("distinct", True))
        root: P.Operator = P.SetOperation(kind, left.root, right.root, distinct)
        columns = left.columns
        order = node.args.get("order")
        if order is not None:
            terms = []
            texts = []
            for i, o in enumerate(order.expressions):
                pos = self._output_position(o.this, columns, node)
                if pos is None:
                    raise ProgrammingError(f"{_ordinal(i + 1)} ORDER BY term does not match any column in the result set")
                terms.append((itemgetter(pos), bool(o.args.get("desc")), _nulls_first(o)))
                texts.append(o.sql(dialect="sqlite"))
            root = P.Sort(root, terms, ", ".join(texts))
        root = self._limit(node, root)
        return QueryPlan(root, columns, left.types)

    def _output_position(self, term: exp.Expr, columns: list[str], node) -> int | None:
        if isinstance(term, exp.Literal) and not term.is_string:
            v = literal_value(term)
            if isinstance(v, int) and 1 <= v <= len(columns):
                return v - 1
            raise ProgrammingError(f"ORDER BY term out of range - should be between 1 and {len(columns)}")
        if isinstance(term, exp.Column) and not isinstance(term.this, exp.Star):
            low = term.name.lower()
            for i, c in enumerate(columns):
                if c.lower() == low:
                    return i
        text = term.sql(dialect="sqlite").lower()
        for i, c in enumerate(columns):
            if c.lower() == text:
                return i
        return None

    def _limit(self, node: exp.Expr, root: P.Operator) -> P.Operator:
        limit = node.args.get("limit")
        offset = node.args.get("offset")
        if limit is None and offset is None:
            return root
        comp = Compiler(self, Scope([], None), {}, self.rt)
        lf = comp.compile(limit.expression) if limit is not None else None
        if limit is not None and limit.args.get("offset") is not None and offset is None:
            offset = limit.args.get("offset")
            of = comp.compile(offset)
        else:
            of = comp.compile(offset.expression) if offset is not None else None
        return P.Limit(root, lf, of)

    # -- FROM items ------------------------------------------------------------
    def _source_for(self, item: exp.Expr, parent: Scope | None) -> Source:
        if isinstance(item, exp.Table):
            if isinstance(item.this, exp.Func) or item.args.get("db"):
                if item.args.get("db"):
                    raise ProgrammingError(f"unknown database {item.args['db'].name}")
                raise NotSupportedError("table-valued functions are not supported")
            name = item.name
            alias = item.alias or name
            low = name.lower()
            for ctes in reversed(self.ctes):
                cte = ctes.get(low)
                if cte is not None:
                    plan = self.plan_query(cte.this, parent)
                    cols = [c.name for c in cte.args["alias"].columns] if cte.args.get("alias") and cte.args["alias"].columns else plan.columns
                    return self._derived(alias, plan, cols, correlated=False)
            view = self.catalog.views.get(low)
            if view is not None:
                if self._view_depth > 32:
                    raise ProgrammingError(f"view {name} is circularly defined")
                self._view_depth += 1
                try:
                    plan = self.plan_query(dialect.parse_one(view.sql), None)
                finally:
                    self._view_depth -= 1
                cols = view.columns or plan.columns
                return self._derived(alias, plan, cols, correlated=False)
            table = self.catalog.table(name)
            columns = [c.name for c in table.columns]
            types: list = list(table.types)
            hidden = 0
            if table.hidden_rowid:
                columns.append("rowid")
                types.append("INTEGER")
                hidden = 1
            source = Source(alias, columns, types, table=table, hidden=hidden)
            if table.rowid_alias:
                source.positions.setdefault("rowid", table.pk_positions[0])
            return source
        if isinstance(item, exp.Subquery):
            alias = item.alias
            if not alias:
                alias = f"(subquery-{id(item) % 10000})"
            before = _ref_counts(parent) if parent is not None else None
            plan = self.plan_query(item.this, parent)
            correlated = parent is not None and _ref_counts(parent) != before
            cols = plan.columns
            alias_node = item.args.get("alias")
            if alias_node is not None and alias_node.columns:
                cols = [c.name for c in alias_node.columns]
            return self._derived(alias, plan, cols, correlated)
        if isinstance(item, exp.Values):
            plan = self._plan_values(item, parent)
            alias_node = item.args.get("alias")
            cols = [c.name for c in alias_node.columns] if alias_node is not None and alias_node.columns else plan.columns
            return self._derived(item.alias or "values", plan, cols, False)
        raise NotSupportedError(f"unsupported FROM item: {item.sql(dialect='sqlite')[:60]}")

    def _derived(self, alias: str, plan: QueryPlan, cols: list[str], correlated: bool) -> Source:
        if len(cols) != len(plan.columns):
            raise ProgrammingError(f"table {alias} has {len(plan.columns)} columns but {len(cols)} column names were given")
        op = P.Materialized(self.rt, plan.root, alias)
        op.correlated = correlated
        return Source(alias, list(cols), list(plan.types), plan=op)

    # -- SELECT ----------------------------------------------------------------
    def _plan_select(self, select: exp.Select, parent: Scope | None) -> QueryPlan:
        from_ = select.args.get("from_")
        joins = select.args.get("joins") or []
        items: list[tuple[exp.Expr, str, exp.Expr | None, list | None]] = []
        if from_ is not None:
            items.append((from_.this, "inner", None, None))
            for j in joins:
                side = (j.args.get("side") or "").upper()
                kind = (j.args.get("kind") or "").upper()
                if side in ("RIGHT", "FULL"):
                    raise NotSupportedError(f"{side} JOIN is not supported")
                if j.args.get("method") or kind == "NATURAL" or j.args.get("natural"):
                    raise NotSupportedError("NATURAL JOIN is not supported")
                using = j.args.get("using")
                items.append((j.this, "left" if side == "LEFT" else "inner", j.args.get("on"), using))
        elif joins:
            raise ProgrammingError("JOIN without FROM")
        sources = [self._source_for(item, parent) for item, _k, _on, _u in items]
        seen = set()
        for s in sources:
            low = s.alias.lower()
            if low in seen:
                raise ProgrammingError(f"ambiguous table name or alias: {s.alias}")
            seen.add(low)
        scope = Scope(sources, parent)
        
        left_joins = {}
        conjuncts: list[_Conjunct] = []
        for i, (_item, kind, on, using) in enumerate(items):
            parts = split_conjuncts(on)
            if using:
                for ident in using:
                    name = ident.name
                    left_src = next((s for s in sources[:i] if name.lower() in s.positions), None)
                    if left_src is None or name.lower() not in sources[i].positions:
                        raise ProgrammingError(f"cannot join using column {name} - column not present in both tables")
                    parts.append(exp.EQ(this=exp.column(name, table=left_src.alias),
                                        expression=exp.column(name, table=sources[i].alias)))
                    sources[i].using.add(name.lower())
            if kind == "left":
                sources[i].nullable = True
                left_joins[i] = [_Conjunct(p, self._refs(p, scope), False) for p in parts]
            else:
                conjuncts.extend(_Conjunct(p, self._refs(p, scope), False) for p in parts)
        where = select.args.get("where")
        for p in split_conjuncts(where.this if where is not None else None):
            conjuncts.append(_Conjunct(p, self._refs(p, scope), True))
        for c in conjuncts:
            if c.node.find(exp.AggFunc) is not None and _has_aggregate(c.node):
                raise ProgrammingError("misuse of aggregate function in WHERE")

        # join order and the pipeline
        if sources:
            root, layout = self._plan_joins(sources, conjuncts, left_joins, scope)
        else:
            root, layout = P.SingleRow(), {}
            pending = [c for c in conjuncts if not c.done]
            if pending:
                comp = Compiler(self, scope, layout, self.rt)
                root = P.Filter(root, _and_all([comp.predicate(c.node) for c in pending]),
                                " AND ".join(c.text for c in pending))
        scope.outer_layout = layout
        return self._finish_select(select, scope, sources, root, layout)

    def _refs(self, node: exp.Expr, scope: Scope) -> frozenset:
        """The sources of ``scope`` a conjunct reads (all of them if it holds a subquery)."""
        if any(isinstance(n, _QUERY_NODES) for n in node.walk()):
            # validate column names now, place it after every join
            return frozenset(range(len(scope.sources))) | {"sub"}
        refs = set()
        for col in node.find_all(exp.Column):
            if isinstance(col.this, exp.Star):
                continue
            level, source, _pos = resolve(scope, col)
            if level == 0:
                refs.add(scope.sources.index(source))
        return frozenset(refs)

    # -- joins -----------------------------------------------------------------
    def _plan_joins(self, sources: list[Source], conjuncts: list[_Conjunct], left_joins: dict, scope: Scope):
        n = len(sources)
        for c in conjuncts:
            c.refs = frozenset(r for r in c.refs if r != "sub") if "sub" not in c.refs else frozenset(range(n))
        if left_joins or n <= 1:
            order = list(range(n))
        else:
            order = self._join_order(sources, conjuncts, scope)
        layout: dict[Source, int] = {}
        width = 0
        joined: set[int] = set()
        root: P.Operator | None = None
        for step, si in enumerate(order):
            source = sources[si]
            on_parts = left_joins.get(si)
            # conjuncts local to this source that may be pushed into its scan
            local = [c for c in conjuncts if not c.done and c.refs <= {si} and c.refs
                     and not (source.nullable and c.where)]
            if on_parts is not None:
                local += [c for c in on_parts if c.refs == {si}]
            if step == 0:
                constants = [c for c in conjuncts if not c.done and not c.refs]
                op = self._access(source, local, scope, {}, None)
                for c in local:
                    c.done = True
                layout[source] = 0
                width = source.width
                root = op
                if constants:
                    comp = Compiler(self, scope, layout, self.rt)
                    root = P.Filter(root, _and_all([comp.predicate(c.node) for c in constants]),
                                    " AND ".join(c.text for c in constants))
                    for c in constants:
                        c.done = True
            else:
                new_layout = dict(layout)
                new_layout[source] = width
                if on_parts is not None:
                    join_parts = [c for c in on_parts if c not in local]
                    outer = True
                else:
                    join_parts = [c for c in conjuncts if not c.done and si in c.refs
                                  and c.refs <= joined | {si} and c not in local]
                    outer = False
                root = self._join_step(root, source, local, join_parts, scope, layout, new_layout, width, outer)
                for c in local + join_parts:
                    c.done = True
                layout = new_layout
                width += source.width
            joined.add(si)
            # anything now computable
            ready = [c for c in conjuncts if not c.done and c.refs <= joined and c.refs]
            if ready:
                comp = Compiler(self, scope, layout, self.rt)
                root = P.Filter(root, _and_all([comp.predicate(c.node) for c in ready]),
                                " AND ".join(c.text for c in ready))
                for c in ready:
                    c.done = True
        leftover = [c for c in conjuncts if not c.done]
        if leftover:
            comp = Compiler(self, scope, layout, self.rt)
            root = P.Filter(root, _and_all([comp.predicate(c.node) for c in leftover]),
                            " AND ".join(c.text for c in leftover))
        return root, layout

    def _join_order(self, sources: list[Source], conjuncts: list[_Conjunct], scope: Scope) -> list[int]:
        n = len(sources)
        by_source: dict[int, list[_Conjunct]] = {i: [] for i in range(n)}
        equalities: dict[int, list[tuple[_Conjunct, int, Any]]] = {i: [] for i in range(n)}
        for c in conjuncts:
            for r in c.refs:
                by_source[r].append(c)
            node = c.node
            if isinstance(node, exp.EQ) and len(c.refs) == 2:
                for side, other in ((node.this, node.expression), (node.expression, node.this)):
                    if isinstance(side, exp.Column):
                        try:
                            level, src, pos = resolve(scope, side)
                        except ProgrammingError:
                            continue
                        if level == 0:
                            si = sources.index(src)
                            equalities[si].append((c, pos, c.refs - {si}))
        estimates = [self._estimate(s, [c for c in by_source[i] if c.refs == {i}], scope) for i, s in enumerate(sources)]
        first = min(range(n), key=lambda i: (estimates[i], i))
        order = [first]
        joined = {first}
        while len(order) < n:
            best = None
            for i in range(n):
                if i in joined:
                    continue
                eq_cols = {pos for c, pos, others in equalities[i] if others <= joined}
                if not eq_cols:
                    continue
                cost = self._lookup_cost(sources[i], eq_cols, estimates[i])
                if best is None or cost < best[0]:
                    best = (cost, i)
            if best is None:
                best = min(((estimates[i], i) for i in range(n) if i not in joined))
            order.append(best[1])
            joined.add(best[1])
        return order

    def _estimate(self, source: Source, local: list[_Conjunct], scope: Scope) -> float:
        table = source.table
        if table is None:
            return 1000.0
        eq_cols, range_cols = set(), set()
        for c in local:
            for pos, kind in _sargable_columns(c.node, source, scope):
                (eq_cols if kind == "eq" else range_cols).add(pos)
        best = 100000.0
        for key_cols, unique in self._candidate_keys(table):
            k = 0
            while k < len(key_cols) and key_cols[k] in eq_cols:
                k += 1
            if k == len(key_cols) and unique:
                return 1.0
            if k:
                best = min(best, 100.0 / k)
            elif key_cols and key_cols[0] in range_cols:
                best = min(best, 1000.0)
        if local:
            best = min(best, 10000.0)
        return best

    def _lookup_cost(self, source: Source, eq_cols: set, estimate: float) -> float:
        table = source.table
        if table is None:
            return estimate + 1
        for key_cols, unique in self._candidate_keys(table):
            if key_cols and all(c in eq_cols for c in key_cols) and unique:
                return 1.0
        for key_cols, _unique in self._candidate_keys(table):
            if key_cols and key_cols[0] in eq_cols:
                return 5.0
        return estimate + 10

    def _candidate_keys(self, table) -> list[tuple[list[int], bool]]:
        out = [(list(table.pk_positions) if table.primary_key else [len(table.columns)], True)]
        for index in table.indexes:
            out.append(([table.positions[c.lower()] for c, _d in index.columns], index.unique))
        return out

    def _join_step(self, left: P.Operator, source: Source, local: list[_Conjunct], join_parts: list[_Conjunct],
                   scope: Scope, left_layout: dict, new_layout: dict, width: int, outer: bool) -> P.Operator:
        # 1. a lookup through the new table's key, driven by the left row
        if source.table is not None and join_parts:
            op = self._access(source, local + join_parts, scope, left_layout, join_parts, lookup_only=True)
            if op is not None:
                remaining = join_parts
                comp = Compiler(self, scope, new_layout, self.rt)
                residual = _and_all([comp.predicate(c.node) for c in remaining]) if remaining else None
                return P.LookupJoin(left, op, residual, outer, source.width)
        right = self._access(source, local, scope, {}, None)
        # 2. a hash join on equalities between the new source and the left rows
        left_keys, right_keys, used, texts = [], [], [], []
        lcomp = Compiler(self, scope, left_layout, self.rt)
        rcomp = Compiler(self, scope, {source: 0}, self.rt)
        for c in join_parts:
            node = c.node
            if not isinstance(node, exp.EQ) or "sub" in c.refs:
                continue
            a, b = node.this, node.expression
            ra, rb = self._side_refs(a, scope), self._side_refs(b, scope)
            if ra is None or rb is None:
                continue
            me = scope.sources.index(source)
            if ra == {me} and rb and me not in rb:
                a, b = b, a
                ra, rb = rb, ra
            if rb == {me} and ra and me not in ra:
                left_keys.append(lcomp.compile(a))
                right_keys.append(rcomp.compile(b))
                used.append(c)
                texts.append(c.text)
        comp = Compiler(self, scope, new_layout, self.rt)
        rest = [c for c in join_parts if c not in used]
        residual = _and_all([comp.predicate(c.node) for c in rest]) if rest else None
        if left_keys:
            return P.HashJoin(left, right, left_keys, right_keys, residual, outer, source.width, " AND ".join(texts))
        return P.NestedLoopJoin(left, right, residual, outer, source.width, " AND ".join(c.text for c in rest))

    def _side_refs(self, node: exp.Expr, scope: Scope) -> set | None:
        if any(isinstance(n, _QUERY_NODES) for n in node.walk()):
            return None
        refs = set()
        for col in node.find_all(exp.Column):
            level, source, _pos = resolve(scope, col)
            if level == 0:
                refs.add(scope.sources.index(source))
        return refs

    # -- access paths ----------------------------------------------------------
    def _access(self, source: Source, local: list[_Conjunct], scope: Scope, value_layout: dict,
                join_parts: list[_Conjunct] | None, lookup_only: bool = False):
        """The scan of one source with its local predicates: a TableScan or IndexScan for base
        tables (a KeyAccess when predicates allow), else the materialized subquery + filter."""
        own = {source: 0}
        comp = Compiler(self, scope, own, self.rt)
        if source.table is None:
            if lookup_only:
                return None
            op: P.Operator = source.plan
            if local:
                op = P.Filter(op, _and_all([comp.predicate(c.node) for c in local]), " AND ".join(c.text for c in local))
            return op
        table = source.table
        me = scope.sources.index(source)
        # sargable predicates: column of this source vs. a value computable before the scan
        cands: dict[int, dict] = {}
        parts: dict[int, int] = {}     # id(conjunct) -> its key-usable parts
        for c in local:
            for pos, kind, value, incl, node in self._sargable(c.node, source, scope, me):
                parts[id(c)] = parts.get(id(c), 0) + 1
                if not _value_ok(value, scope, me, self):
                    parts[id(c)] += 1000   # never exact
                    continue
                entry = cands.setdefault(pos, {"eq": None, "lo": None, "hi": None})
                if kind == "eq" or kind == "in":
                    if entry["eq"] is None:
                        entry["eq"] = (value if kind == "in" else [value], c)
                elif kind == "lo" and entry["lo"] is None:
                    entry["lo"] = (value, incl, c)
                elif kind == "hi" and entry["hi"] is None:
                    entry["hi"] = (value, incl, c)
        best = None
        for idx, (key_cols, unique) in enumerate(self._candidate_keys(table)):
            eqs = []
            for col in key_cols:
                e = cands.get(col)
                if e is None or e["eq"] is None:
                    break
                eqs.append(col)
            rng_col = key_cols[len(eqs)] if len(eqs) < len(key_cols) else None
            rng = cands.get(rng_col) if rng_col is not None else None
            has_range = rng is not None and (rng["lo"] is not None or rng["hi"] is not None)
            if not eqs and not has_range:
                continue
            full = len(eqs) == len(key_cols)
            score = (2 if full and unique else 1 if full else 0, len(eqs), 1 if has_range else 0, 1 if idx == 0 else 0)
            if best is None or score > best[0]:
                best = (score, idx, key_cols, eqs, rng_col if has_range else None)
        if lookup_only:
            if best is None or not best[3]:
                return None
            # must be driven by the join: at least one used predicate from join_parts
            used = {id(cands[c]["eq"][1]) for c in best[3]}
            if not any(id(c) in used for c in join_parts or []):
                return None
        decoder = P.RowDecoder(table, self._defaults(table))
        # the scan's own filters: never the join predicates (they read the left row; the join applies them)
        scan_local = [c for c in local if join_parts is None or c not in join_parts]
        fallback = _and_all([comp.predicate(c.node) for c in scan_local]) if scan_local else None
        if best is None:
            return P.TableScan(self.rt, table, decoder, None, None, fallback, alias=source.alias)
        _score, idx, key_cols, eqs, rng_col = best
        vcomp = Compiler(self, scope, value_layout, self.rt)
        is_pk = idx == 0
        index = None if is_pk else table.indexes[idx - 1]
        if is_pk:
            types = list(table.pk_types)
            desc = [False] * len(types)
            prefix = table.row_prefix
        else:
            types = [table.types[table.positions[c.lower()]] for c, _d in index.columns]
            desc = [d for _c, d in index.columns]
            from tabledb.sql import keys
            prefix = keys.index_prefix(table.id, index.id)
        eq_fns, used, descr = [], [], []
        for col in eqs:
            values, c = cands[col]["eq"]
            eq_fns.append([vcomp.compile(v) for v in values])
            used.append(c)
            descr.append(f"{_colname(source, col)} = " + (" | ".join(v.sql(dialect="sqlite") for v in values)))
        lo = hi = None
        if rng_col is not None:
            e = cands[rng_col]
            if e["lo"] is not None:
                v, incl, c = e["lo"]
                lo = (vcomp.compile(v), incl)
                used.append(c)
                descr.append(f"{_colname(source, rng_col)} {'>=' if incl else '>'} {v.sql(dialect='sqlite')}")
            if e["hi"] is not None:
                v, incl, c = e["hi"]
                hi = (vcomp.compile(v), incl)
                used.append(c)
                descr.append(f"{_colname(source, rng_col)} {'<=' if incl else '<'} {v.sql(dialect='sqlite')}")
        access = P.KeyAccess(prefix, types, desc, eq_fns, lo, hi, descr)
        # primary key columns are NOT NULL: the key range decides their predicates exactly
        # (a conjunct is decided by the range only if every part of it went into the range:
        # of "id >= 2 AND id BETWEEN 4 AND 6" the BETWEEN lends just one bound)
        exact = set()
        if is_pk:
            uses: dict[int, int] = {}
            for c in used:
                uses[id(c)] = uses.get(id(c), 0) + 1
            for c in used:
                if _single_sarg(c.node) and uses[id(c)] == parts.get(id(c)):
                    exact.add(id(c))
        residual_parts = [c for c in scan_local if id(c) not in exact]
        residual = _and_all([comp.predicate(c.node) for c in residual_parts]) if residual_parts else None
        if is_pk:
            return P.TableScan(self.rt, table, decoder, access, residual, fallback, alias=source.alias)
        return P.IndexScan(self.rt, table, index, decoder, access, residual, fallback, alias=source.alias)

    def _sargable(self, node: exp.Expr, source: Source, scope: Scope, me: int):
        """(column position, kind, value node(s), inclusive, node) for each key-usable comparison."""
        out = []
        while isinstance(node, exp.Paren):
            node = node.this
        ops = {exp.EQ: "eq", exp.GT: "gt", exp.GTE: "ge", exp.LT: "lt", exp.LTE: "le"}
        flip = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq"}
        kind = ops.get(type(node))
        if kind is not None:
            for col, other, k in ((node.this, node.expression, kind), (node.expression, node.this, flip[kind])):
                pos = _own_column(col, source, scope)
                if pos is None:
                    continue
                if k == "eq":
                    out.append((pos, "eq", other, True, node))
                elif k in ("gt", "ge"):
                    out.append((pos, "lo", other, k == "ge", node))
                else:
                    out.append((pos, "hi", other, k == "le", node))
                break
        elif isinstance(node, exp.Between):
            pos = _own_column(node.this, source, scope)
            if pos is not None:
                out.append((pos, "lo", node.args["low"], True, node))
                out.append((pos, "hi", node.args["high"], True, node))
        elif isinstance(node, exp.In) and node.args.get("query") is None and not node.args.get("unnest"):
            pos = _own_column(node.this, source, scope)
            if pos is not None and node.expressions:
                out.append((pos, "in", list(node.expressions), True, node))
        return out

    def _defaults(self, table) -> tuple:
        """Values of columns added by ALTER TABLE for rows stored before them."""
        cached = getattr(table, "_defaults_cache", None)
        if cached is not None:
            return cached
        comp = Compiler(self, Scope([], None), {}, self.rt)
        out = []
        for col in table.columns:
            if col.default is None:
                out.append(None)
            else:
                try:
                    value = comp.compile(dialect.parse_one(col.default))(None)
                    out.append(V.coerce_value(value, col.type, f"{table.name}.{col.name}") if value is not None else None)
                except Exception:  # noqa: BLE001 - a non-constant default: old rows get NULL
                    out.append(None)
        table._defaults_cache = tuple(out)  # type: ignore[attr-defined]
        return table._defaults_cache  # type: ignore[attr-defined]

    # -- aggregation, projection, order, limit --------------------------------
    def _finish_select(self, select: exp.Select, scope: Scope, sources: list[Source], root: P.Operator,
                       layout: dict) -> QueryPlan:
        exprs = self._expand_stars(select.expressions, scope)
        names = [_output_name(e) for e in exprs]
        order = select.args.get("order")
        order_terms = list(order.expressions) if order is not None else []
        group = select.args.get("group")
        group_exprs = list(group.expressions) if group is not None else []
        having = select.args.get("having")
        having_node = having.this if having is not None else None
        aliases = {}
        for e, name in zip(exprs, names):
            if isinstance(e, exp.Alias):
                aliases.setdefault(name.lower(), e.this)

        if having_node is not None:
            having_node = _substitute_aliases(having_node, aliases, scope)
        new_terms = []
        for o in order_terms:
            if isinstance(o.this, (exp.Literal, exp.Column)):
                new_terms.append(o)
            else:
                o = o.copy()
                o.set("this", _substitute_aliases(o.this, aliases, scope))
                new_terms.append(o)
        order_terms = new_terms
        agg_calls: dict[str, exp.Expr] = {}
        for node in [*exprs, having_node, *[o.this for o in order_terms if not _is_alias_ref(o.this, aliases, scope)]]:
            if node is not None:
                _collect_aggregates(node, agg_calls)
        aggregated = bool(group_exprs) or bool(agg_calls)
        if having_node is not None and not aggregated:
            raise ProgrammingError("a GROUP BY clause is required before HAVING")

        comp = Compiler(self, scope, layout, self.rt)
        types = [comp.static_type(e) for e in exprs]
        if aggregated:
            group_nodes = []
            for g in group_exprs:
                g = self._resolve_alias_or_ordinal(g, exprs, aliases, scope, "GROUP BY")
                if _has_aggregate(g):
                    raise ProgrammingError("aggregate functions are not allowed in the GROUP BY clause")
                group_nodes.append(g)
            key_fns = [comp.compile(g) for g in group_nodes]
            slots: dict[str, int] = {}
            for i, g in enumerate(group_nodes):
                slots.setdefault(agg_key(g), i)
                inner = g
                while isinstance(inner, exp.Paren):
                    inner = inner.this
                if isinstance(inner, exp.Column):
                    _lvl, src, pos = resolve(scope, inner)
                    if _lvl == 0:
                        slots.setdefault(bare_key(src, pos), i)
            aggs = []
            extreme = None
            for j, (key, call) in enumerate(agg_calls.items()):
                name, args, distinct = aggregate_call(call)
                factory = F.AGGREGATES[name]
                for a in args:
                    if _has_aggregate(a):
                        raise ProgrammingError(f"misuse of aggregate function {name}()")
                arg_fns = [comp.compile(a) for a in args]
                aggs.append((factory, arg_fns, distinct))
                slots[key] = len(group_nodes) + j
            mm = [j for j, (_k, call) in enumerate(agg_calls.items()) if aggregate_call(call)[0] in ("min", "max")]
            if len(mm) == 1 and len(agg_calls) == 1:
                extreme = mm[0]
            bare: list[int] = []
            for node in [*exprs, having_node,
                         *[o.this for o in order_terms if not _is_alias_ref(o.this, aliases, scope)
                           and not (isinstance(o.this, exp.Literal) and not o.this.is_string)]]:
                if node is not None:
                    self._collect_bare(node, scope, slots, bare, len(group_nodes) + len(aggs), layout)
            root = P.Aggregate(root, key_fns, aggs, bare, extreme,
                               ("by " + ", ".join(g.sql(dialect="sqlite") for g in group_nodes)) if group_nodes
                               else ", ".join(c.sql(dialect="sqlite") for c in agg_calls.values()),
                               scalar=not group_nodes)
            scope.correlated_ok = False
            post = Compiler(self, scope, layout, self.rt, agg_slots=slots)
            if having_node is not None:
                root = P.Filter(root, post.predicate(having_node), having_node.sql(dialect="sqlite"))
            out_comp = post
        else:
            out_comp = comp
        # ORDER BY terms: output columns (alias/ordinal/same expression) or extra sort keys
        sort_terms = []
        extra_fns = []
        if order_terms:
            texts = {e.sql(dialect="sqlite").lower(): i for i, e in enumerate(exprs)}
            for o in order_terms:
                term = o.this
                pos = None
                if isinstance(term, exp.Literal) and not term.is_string:
                    v = literal_value(term)
                    if not isinstance(v, int) or not 1 <= v <= len(exprs):
                        raise ProgrammingError(f"ORDER BY term out of range - should be between 1 and {len(exprs)}")
                    pos = v - 1
                elif isinstance(term, exp.Column) and not term.table and term.name.lower() in aliases \
                        and scope.find(term.name, None) is None:
                    pos = next(i for i, nm in enumerate(names) if nm.lower() == term.name.lower())
                else:
                    t = term.sql(dialect="sqlite").lower()
                    if t in texts:
                        pos = texts[t]
                    elif isinstance(term, exp.Column) and not term.table and term.name.lower() in aliases:
                        pos = next(i for i, nm in enumerate(names) if nm.lower() == term.name.lower())
                if pos is None:
                    extra_fns.append(out_comp.compile(term))
                    pos = len(exprs) + len(extra_fns) - 1
                sort_terms.append((pos, bool(o.args.get("desc")), _nulls_first(o), o.sql(dialect="sqlite")))
        # projection
        fns = [out_comp.compile(e) for e in exprs]
        all_fns = fns + extra_fns
        elided = False
        if sort_terms and not aggregated and len(sources) == 1 and isinstance(root, P.TableScan) \
                and not select.args.get("distinct"):
            elided = self._elide_sort(root, sort_terms, exprs, scope)
        root = _project(root, all_fns, names + [f"_sort{i}" for i in range(len(extra_fns))], exprs, layout, scope)
        if select.args.get("distinct"):
            root = P.Distinct(root, len(exprs) if extra_fns else None)   # never on the extra sort keys
        if sort_terms and not elided:
            root = P.Sort(root, [(itemgetter(pos), desc, nf) for pos, desc, nf, _t in sort_terms],
                          ", ".join(t for _p, _d, _n, t in sort_terms))
        if extra_fns:
            root = P.Reorder(root, list(range(len(exprs))), names)
        root = self._limit(select, root)
        return QueryPlan(root, names, types)

    def _elide_sort(self, scan: P.TableScan, sort_terms, exprs, scope) -> bool:
        table = scan.table
        if not table.primary_key or scan.access is not None and len(scan.access.eq) and \
                any(len(fns) > 1 for fns in scan.access.eq):
            return False
        descs = set()
        for k, (pos, desc, nf, _t) in enumerate(sort_terms):
            if pos >= len(exprs) or k >= len(table.pk_positions):
                return False
            e = exprs[pos]
            while isinstance(e, (exp.Alias, exp.Paren)):
                e = e.this
            if not isinstance(e, exp.Column):
                return False
            level, src, cpos = resolve(scope, e)
            if level != 0 or cpos != table.pk_positions[k]:
                return False
            descs.add(desc)
        if len(descs) != 1:
            return False
        scan.reverse = descs.pop()
        return True

    def _resolve_alias_or_ordinal(self, g: exp.Expr, exprs, aliases, scope, what: str) -> exp.Expr:
        if isinstance(g, exp.Literal) and not g.is_string:
            v = literal_value(g)
            if isinstance(v, int):
                if not 1 <= v <= len(exprs):
                    raise ProgrammingError(f"{what} term out of range - should be between 1 and {len(exprs)}")
                e = exprs[v - 1]
                return e.this if isinstance(e, exp.Alias) else e
        if isinstance(g, exp.Column) and not g.table and g.name.lower() in aliases:
            if scope.find(g.name, None) is None:
                return aliases[g.name.lower()]
        return g

    def _collect_bare(self, node, scope, slots, bare, base, layout) -> None:
        if agg_key(node) in slots:
            return
        if isinstance(node, _QUERY_NODES):
            return
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            level, src, pos = resolve(scope, node)
            if level == 0:
                key = bare_key(src, pos)
                if key not in slots:
                    slots[key] = base + len(bare)
                    bare.append(layout[src] + pos)
            return
        for child in node.iter_expressions():
            self._collect_bare(child, scope, slots, bare, base, layout)

    def _expand_stars(self, exprs: list[exp.Expr], scope: Scope) -> list[exp.Expr]:
        out = []
        for e in exprs:
            if isinstance(e, exp.Star):
                if not scope.sources:
                    raise ProgrammingError("no tables specified")
                for s in scope.sources:
                    out.extend(exp.column(c, table=s.alias, quoted=True) for c in s.columns[:s.visible]
                               if c.lower() not in s.using)
            elif isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                tname = e.table
                src = next((s for s in scope.sources if s.alias.lower() == tname.lower()), None)
                if src is None:
                    raise ProgrammingError(f"no such table: {tname}")
                out.extend(exp.column(c, table=src.alias, quoted=True) for c in src.columns[:src.visible])
            else:
                out.append(e)
        return out


class _ValuesOp(P.Operator):
    def __init__(self, rows):
        self.fn_rows = rows

    def label(self) -> str:
        return f"Values ({len(self.fn_rows)} rows)"

    def rows(self):
        for fns in self.fn_rows:
            yield tuple(f(None) for f in fns)


def _project(root, fns, names, exprs, layout, scope):
    """A projection; picks columns with itemgetter when every output is a plain column."""
    if len(fns) == len(exprs):
        positions = []
        for e in exprs:
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(inner, exp.Column) and not isinstance(root, P.Aggregate) and not isinstance(
                    getattr(root, "child", None), P.Aggregate):
                try:
                    level, src, pos = resolve(scope, inner)
                except ProgrammingError:
                    positions = None
                    break
                if level != 0 or src not in layout:
                    positions = None
                    break
                positions.append(layout[src] + pos)
            else:
                positions = None
                break
        if positions is not None and positions:
            width = sum(s.width for s in layout)
            if positions == list(range(width)):
                return _Rename(root, names)
            return P.Reorder(root, positions, names)
    return P.Project(root, fns, names)


class _Rename(P.Operator):
    """A projection that keeps rows as they are (SELECT * of one source)."""

    def __init__(self, child, names):
        self.child = child
        self.children = (child,)
        self.names = names

    def label(self) -> str:
        return "Project " + ", ".join(self.names)

    def rows(self):
        return self.child.rows()

    def explain(self):
        return P.Operator.explain(self)


def _is_alias_ref(node, aliases: dict, scope: Scope) -> bool:
    if isinstance(node, exp.Column) and not node.table and not isinstance(node.this, exp.Star) \
            and node.name.lower() in aliases:
        try:
            return scope.find(node.name, None) is None
        except ProgrammingError:
            return False
    return False


def _substitute_aliases(node: exp.Expr, aliases: dict, scope: Scope) -> exp.Expr:
    """Replace references to select-list aliases (that are not also column names) by their expressions."""
    if not aliases:
        return node

    def repl(n):
        if isinstance(n, exp.Column) and not n.table and not isinstance(n.this, exp.Star):
            low = n.name.lower()
            if low in aliases:
                try:
                    hit = scope.find(n.name, None)
                except ProgrammingError:
                    hit = None
                if hit is None:
                    return exp.Paren(this=aliases[low].copy())
        return n
    if isinstance(node, exp.Column):
        return repl(node)
    return node.copy().transform(repl)


def _and_all(fns):
    fns = [f for f in fns if f is not None]
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda r: a(r) and b(r)
    return lambda r: all(f(r) for f in fns)


def _ref_counts(scope: Scope | None) -> tuple:
    out = []
    while scope is not None:
        out.append(scope.used_by_children_count)
        scope = scope.parent
    return tuple(out)


def _own_column(node: exp.Expr, source: Source, scope: Scope) -> int | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
        return None
    try:
        level, src, pos = resolve(scope, node)
    except ProgrammingError:
        return None
    if level != 0 or src is not source:
        return None
    if pos >= source.visible and not source.table.hidden_rowid:
        return None
    table = source.table
    if table.hidden_rowid and pos == len(table.columns):
        return pos
    return pos


def _value_ok(value, scope: Scope, me: int, planner: Planner) -> bool:
    """A key value must not read the scanned source itself, nor hold a subquery."""
    nodes = value if isinstance(value, list) else [value]
    for v in nodes:
        for n in v.walk():
            if isinstance(n, _QUERY_NODES):
                return False
            if isinstance(n, exp.Column):
                try:
                    level, src, _p = resolve(scope, n)
                except ProgrammingError:
                    return False
                if level == 0 and scope.sources.index(src) == me:
                    return False
            if isinstance(n, exp.Func) and is_aggregate(n):
                return False
    return True


def _sargable_columns(node: exp.Expr, source: Source, scope: Scope):
    out = []
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.EQ) or isinstance(node, exp.In) and node.args.get("query") is None:
        for side in (node.this, getattr(node, "expression", None)):
            if side is not None:
                pos = _own_column(side, source, scope) if source.table is not None else None
                if pos is not None:
                    out.append((pos, "eq"))
    elif isinstance(node, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)):
        for side in (node.this, node.args.get("expression")):
            if side is not None:
                pos = _own_column(side, source, scope) if source.table is not None else None
                if pos is not None:
                    out.append((pos, "range"))
    return out


def _single_sarg(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In))


def _colname(source: Source, pos: int) -> str:
    return source.columns[pos]


def _collect_aggregates(node: exp.Expr, out: dict) -> None:
    if isinstance(node, _QUERY_NODES):
        return
    if isinstance(node, exp.Func) and is_aggregate(node):
        out.setdefault(agg_key(node), node)
        return
    for child in node.iter_expressions():
        _collect_aggregates(child, out)


def _has_aggregate(node: exp.Expr) -> bool:
    found: dict = {}
    _collect_aggregates(node, found)
    return bool(found)


def _output_name(e: exp.Expr) -> str:
    if isinstance(e, exp.Alias):
        return e.alias
    if isinstance(e, exp.Column) and not isinstance(e.this, exp.Star):
        return e.name
    return e.sql(dialect="sqlite", comments=False)


def _nulls_first(o: exp.Ordered) -> bool:
    nf = o.args.get("nulls_first")
    if nf is None:
        return not o.args.get("desc")
    return bool(nf)


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")
