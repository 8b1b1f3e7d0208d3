"""Hypothesis strategies for the SQL differential and fuzz tests.

What this module draws:

* a :class:`Schema`: 1-3 tables of INTEGER/REAL/TEXT/BLOB columns, a primary key that
  is single (inline or as a table constraint), composite or absent, NOT NULL, UNIQUE,
  DEFAULT and CHECK now and then, and secondary indexes (ASC/DESC, mostly non-unique);
* rows that fit it, inserted with qmark parameters or literals, drawn from small value
  pools so that keys collide, groups have several rows and joins and IN lists match;
  a few rows break a constraint on purpose (both databases must refuse them);
* queries from a typed grammar over the schema (:class:`QueryBuilder`): expressions
  of one type class each, WHERE trees that favour primary-key and index predicates
  (equality on a prefix, ranges, IN, BETWEEN), joins on equality, GROUP BY/HAVING,
  DISTINCT, compound selects, scalar/IN/EXISTS subqueries (correlated too), and
  ORDER BY over every output column with LIMIT/OFFSET;
* DML: UPDATE/DELETE over key ranges, INSERT [OR REPLACE], INSERT ... SELECT.

Every expression has one type class (INTEGER, REAL, TEXT, BLOB; a predicate is an
INTEGER), and a comparison only ever compares a class with itself (INTEGER with REAL
is allowed: both are numeric), so SQLite's type-affinity rules never come into play.

Deliberately avoided (they differ by design, or SQLite leaves them unspecified):
text/number comparisons, REAL values turned into text (``||``, CAST AS TEXT,
group_concat), BLOB turned into text, collations, functions not in tabledb's list,
bare columns in aggregate queries, scalar subqueries that may return several rows,
group_concat order (only ``length(group_concat(...))`` is drawn), LIMIT without a
total order, NULL primary keys (SQLite gives an INTEGER PRIMARY KEY a rowid), and
UPDATE of a key or UNIQUE column to anything but a constant (SQLite checks uniqueness
row by row, so ``SET k = k + 1`` may fail half way where a set-based engine succeeds).

:func:`engine_under_test` opens tabledb, or with ``TABLEDB_DIFF_ENGINE=sqlite`` a
second SQLite, which checks the generators themselves: SQLite against SQLite must
never differ.
"""

from __future__ import annotations

import os
import re
import sqlite3
import typing as t
from dataclasses import dataclass, field

from hypothesis import strategies as st

INT, REAL, TEXT, BLOB = "INTEGER", "REAL", "TEXT", "BLOB"
TYPES = (INT, REAL, TEXT, BLOB)
NUMERIC = (INT, REAL)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# ----------------------------------------------------------------------------- values
# Small pools make duplicates likely: the same values turn up in keys, groups, joins.

BIG_INTS = [INT64_MIN, INT64_MAX, -(2**62), 2**62, 2**53 + 1, -(2**31), 2**31 - 1, 10**6, -(10**12)]
SMALL_INTS = st.integers(-3, 8)
INTEGERS = st.one_of(SMALL_INTS, SMALL_INTS, SMALL_INTS, SMALL_INTS, SMALL_INTS, SMALL_INTS,
                     st.sampled_from(BIG_INTS), st.integers(INT64_MIN, INT64_MAX))
# Multiples of 1/4 add up exactly in any order; the rest need the float tolerance.
QUARTERS = st.integers(-24, 24).map(lambda k: k / 4)
ODD_REALS = [0.1, -2.5e-3, 123456.789, 1e15, -1e10 + 0.5, 3.0e-7, 2.0**52]
REALS = st.one_of(QUARTERS, QUARTERS, QUARTERS, QUARTERS, st.sampled_from(ODD_REALS),
                  st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)))
TEXT_POOL = ["", "a", "b", "A", "ab", "abc", "aB", "b%", "a_c", " a ", "x y", "é", "É", "ß",
             "ñandú", "日本", "😀", "zz", "10", "-3", "1.5", "it's"]
TEXTS = st.one_of(st.sampled_from(TEXT_POOL), st.sampled_from(TEXT_POOL), st.sampled_from(TEXT_POOL),
                  st.text(alphabet="abAB _%é😀", max_size=4))
BLOB_POOL = [b"", b"\x00", b"\x00\x01", b"\x01", b"ab", b"\xff", b"\xff\x00"]
BLOBS = st.one_of(st.sampled_from(BLOB_POOL), st.sampled_from(BLOB_POOL), st.binary(max_size=3))
VALUES = {INT: INTEGERS, REAL: REALS, TEXT: TEXTS, BLOB: BLOBS}


def sql_literal(value: object) -> str:
    """``value`` as an SQL literal; negative numbers in parentheses (no ``--`` comments)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        if value == INT64_MIN:
            return f"({INT64_MIN + 1} - 1)"
        return str(value) if value >= 0 else f"({value})"
    if isinstance(value, float):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    raise TypeError(f"no SQL literal for {value!r}")


def choose(draw, options: list[tuple[int, t.Any]]):
    """One of ``options`` (weight, value), drawn so that it shrinks to the first."""
    total = sum(weight for weight, _ in options)
    pick = draw(st.integers(0, total - 1))
    for weight, value in options:
        if pick < weight:
            return value
        pick -= weight
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    unique: bool = False
    default: object = None          # a Python value, or None for no DEFAULT
    check: str | None = None        # an SQL predicate over this column


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[tuple[str, bool], ...]     # (column, descending)
    unique: bool

    def create_sql(self) -> str:
        cols = ", ".join(f"{c} DESC" if desc else c for c, desc in self.columns)
        return f"CREATE {'UNIQUE ' if self.unique else ''}INDEX {self.name} ON {self.table} ({cols})"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    inline_pk: bool
    indexes: tuple[Index, ...] = ()

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def unique_columns(self) -> set[str]:
        """Columns that take part in a key or a UNIQUE constraint or index."""
        names = set(self.primary_key)
        names.update(c.name for c in self.columns if c.unique)
        for index in self.indexes:
            if index.unique:
                names.update(c for c, _ in index.columns)
        return names

    def keys(self) -> list[tuple[str, ...]]:
        """The column lists a planner can seek on: the primary key, then each index."""
        keys = [self.primary_key] if self.primary_key else []
        keys.extend(tuple(c for c, _ in index.columns) for index in self.indexes)
        unique = [(c.name,) for c in self.columns if c.unique]
        return keys + unique

    def create_sql(self, strict: bool) -> str:
        parts = []
        for c in self.columns:
            text = f"{c.name} {c.type}"
            if self.inline_pk and self.primary_key == (c.name,):
                text += " PRIMARY KEY"
            if c.not_null:
                text += " NOT NULL"
            if c.unique:
                text += " UNIQUE"
            if c.default is not None:
                text += f" DEFAULT {sql_literal(c.default)}"
            if c.check:
                text += f" CHECK ({c.check})"
            parts.append(text)
        if self.primary_key and not self.inline_pk:
            parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        return f"CREATE TABLE {self.name} ({', '.join(parts)})" + (" STRICT" if strict else "")


@dataclass(frozen=True)
class Schema:
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        return next(tb for tb in self.tables if tb.name == name)


CHECKS = {INT: "{c} >= -1000000000000", REAL: "{c} > -1e12", TEXT: "length({c}) < 6", BLOB: "length({c}) < 4"}


@st.composite
def tables(draw, name: str) -> Table:
    n_columns = draw(st.integers(1, 5))
    # c0 is always INTEGER, so every pair of tables has a column to join on.
    types = [INT] + [draw(st.sampled_from(TYPES)) for _ in range(n_columns - 1)]
    names = [f"c{i}" for i in range(n_columns)]
    pk_kind = choose(draw, [(3, "single"), (2, "composite"), (2, "none")])
    if pk_kind == "composite" and n_columns < 2:
        pk_kind = "single"
    if pk_kind == "single":
        primary_key = (draw(st.sampled_from(names)),)
    elif pk_kind == "composite":
        primary_key = tuple(draw(st.permutations(names))[:draw(st.integers(2, min(3, n_columns)))])
    else:
        primary_key = ()
    inline_pk = len(primary_key) == 1 and draw(st.booleans())
    columns = []
    for col_name, col_type in zip(names, types):
        in_key = col_name in primary_key
        not_null = in_key or choose(draw, [(4, False), (1, True)])
        unique = not in_key and choose(draw, [(9, False), (1, True)])
        default = draw(VALUES[col_type]) if choose(draw, [(4, False), (1, True)]) else None
        check = CHECKS[col_type].format(c=col_name) if choose(draw, [(9, False), (1, True)]) else None
        columns.append(Column(col_name, col_type, not_null and not in_key, unique, default, check))
    indexes = []
    for i in range(draw(st.integers(0, 2))):
        chosen = draw(st.permutations(names))[:draw(st.integers(1, min(2, n_columns)))]
        index_cols = tuple((c, draw(st.booleans())) for c in chosen)
        indexes.append(Index(f"{name}_i{i}", name, index_cols, choose(draw, [(4, False), (1, True)])))
    return Table(name, tuple(columns), primary_key, inline_pk, tuple(indexes))


@st.composite
def schemas(draw, max_tables: int = 3) -> Schema:
    n = draw(st.integers(1, max_tables))
    return Schema(tuple(draw(tables(f"t{i}")) for i in range(n)))


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple = ()
    kind: str = "query"       # "ddl", "write" or "query"
    ordered: bool = False     # a query whose ORDER BY fixes the row order completely

    def __repr__(self) -> str:
        params = f"   -- params {self.params!r}" if self.params else ""
        return f"{self.sql};{params}"


@dataclass
class Case:
    """A schema, the statements that fill it, and the statements under test."""

    schema: Schema
    setup: list[Statement]
    statements: list[Statement] = field(default_factory=list)
    data: dict[str, list[dict]] = field(default_factory=dict)    # the rows drawn per table

    def __repr__(self) -> str:
        lines = [repr(s) for s in self.setup] + ["-- under test"] + [repr(s) for s in self.statements]
        return "Case(\n" + "\n".join(lines) + "\n)"

    def _repr_pretty_(self, printer, cycle) -> None:   # what Hypothesis prints
        printer.text(repr(self))


def schema_ddl(schema: Schema, strict: bool) -> list[Statement]:
    out = []
    for table in schema.tables:
        out.append(Statement(table.create_sql(strict), kind="ddl"))
        out.extend(Statement(index.create_sql(), kind="ddl") for index in table.indexes)
    return out


@st.composite
def rows(draw, table: Table, max_rows: int = 12) -> list[dict]:
    """Rows for ``table``; now and then one breaks NOT NULL (never a key)."""
    out = []
    n_rows = draw(st.integers(3, max_rows)) if choose(draw, [(5, True), (1, False)]) else draw(st.integers(0, 2))
    for _ in range(n_rows):
        row = {}
        for c in table.columns:
            if c.name in table.primary_key:
                null = False
            elif c.not_null:
                null = choose(draw, [(30, False), (1, True)])
            else:
                null = choose(draw, [(5, False), (1, True)])
            if null:
                row[c.name] = None
            elif c.type == REAL and choose(draw, [(9, False), (1, True)]):
                row[c.name] = draw(SMALL_INTS)   # an int into a REAL column: stored as REAL
            else:
                row[c.name] = draw(VALUES[c.type])
        out.append(row)
    return out


def insert_statements(draw, table: Table, table_rows: list[dict], verb: str = "INSERT") -> list[Statement]:
    """INSERTs for ``table_rows``: one row with parameters, one with literals, or several."""
    out = []
    i = 0
    while i < len(table_rows):
        form = choose(draw, [(4, "params"), (2, "literals"), (1, "multi")])
        batch = table_rows[i:i + (draw(st.integers(2, 4)) if form == "multi" else 1)]
        i += len(batch)
        # Leave out (now and then) a column that has a default or may be NULL; never a key.
        omittable = [c.name for c in table.columns
                     if c.name not in table.primary_key and all(r[c.name] == c.default for r in batch)]
        omit = set(draw(st.lists(st.sampled_from(omittable), max_size=2))) if omittable else set()
        names = [c.name for c in table.columns if c.name not in omit] or [table.columns[0].name]
        omit = {c.name for c in table.columns} - set(names)
        col_list = "" if not omit and draw(st.booleans()) else f" ({', '.join(names)})"
        head = f"{verb} INTO {table.name}{col_list} VALUES "
        if form == "params":
            sql = head + "(" + ", ".join("?" for _ in names) + ")"
            out.append(Statement(sql, tuple(batch[0][n] for n in names), kind="write"))
        else:
            tuples = ", ".join("(" + ", ".join(sql_literal(r[n]) for n in names) + ")" for r in batch)
            out.append(Statement(head + tuples, kind="write"))
    return out


@st.composite
def populated(draw, max_tables: int = 3, max_rows: int = 12) -> Case:
    """A schema and the statements that create and fill it (tabledb's dialect: no STRICT)."""
    schema = draw(schemas(max_tables))
    setup, late = [], []
    for table in schema.tables:
        setup.append(Statement(table.create_sql(strict=False), kind="ddl"))
        for index in table.indexes:      # some indexes are built over rows already there
            (late if draw(st.booleans()) else setup).append(Statement(index.create_sql(), kind="ddl"))
    data = {}
    for table in schema.tables:
        data[table.name] = draw(rows(table, max_rows))
        setup.extend(insert_statements(draw, table, data[table.name]))
    return Case(schema, setup + late, data=data)


# ----------------------------------------------------------------------------- expressions

PARAM = re.compile(r"\{p(\d+)\}")


@dataclass
class Ctx:
    """Where an expression is drawn: the columns it may name, and whether it aggregates.

    ``leaves`` maps a type class to the column references usable as plain operands.
    In a grouped context those are only the GROUP BY columns, and ``row`` is the
    context that aggregate arguments are drawn in.
    """

    leaves: dict[str, list[str]]
    row: Ctx | None = None
    sub_depth: int = 0
    tables: list[tuple[str, Table]] = field(default_factory=list)   # own FROM, for key predicates

    def with_outer(self, outer: Ctx | None) -> Ctx:
        if outer is None:
            return self
        leaves = {tc: self.leaves.get(tc, []) + outer.leaves.get(tc, []) for tc in TYPES}
        return Ctx(leaves, self.row, self.sub_depth, self.tables)


def scope_ctx(scope: list[tuple[str, Table]], sub_depth: int) -> Ctx:
    leaves: dict[str, list[str]] = {tc: [] for tc in TYPES}
    for alias, table in scope:
        for c in table.columns:
            leaves[c.type].append(f"{alias}.{c.name}")
    return Ctx(leaves, None, sub_depth, list(scope))


CMP_OPS = ["=", "<>", "<", "<=", ">", ">=", "!="]
ORDER_DIRECTIONS = [(3, ""), (2, " ASC"), (3, " DESC"), (1, " NULLS LAST"), (1, " DESC NULLS FIRST"),
                    (1, " ASC NULLS FIRST"), (1, " DESC NULLS LAST")]


class QueryBuilder:
    """Draws SQL over a schema. Parameters are written ``{pN}`` while a statement is
    built and become ``?`` in text order at the end (:meth:`finish`)."""

    def __init__(self, draw, schema: Schema, data: dict[str, list[dict]] | None = None):
        self.draw = draw
        self.schema = schema
        self.values: list[object] = []
        self.n_alias = 0
        self.ctes: list[str] = []
        # Values that are in the tables, per class, so that constants often match rows.
        self.seen: dict[str, list[object]] = {tc: [] for tc in TYPES}
        self.data = data or {}
        for table in schema.tables:
            for row in (data or {}).get(table.name, []):
                for c in table.columns:
                    if row[c.name] is not None:
                        self.seen[c.type].append(row[c.name])
        for tc in TYPES:
            self.seen[tc] = sorted(set(self.seen[tc]), key=repr)

    # -- plumbing

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def weighted(self, options):
        return choose(self.draw, options)

    def alias(self) -> str:
        self.n_alias += 1
        return f"a{self.n_alias}"

    def value(self, tc: str) -> object:
        seen = [v for v in self.seen[tc] if type(v) is not int or tc == INT]
        if seen and self.weighted([(2, True), (1, False)]):
            return self.pick(seen)
        return self.draw(VALUES[tc])

    def constant(self, tc: str, value: object | None = None) -> str:
        """A literal or a parameter of class ``tc``."""
        if value is None:
            value = self.value(tc)
        if self.weighted([(3, False), (1, True)]):
            self.values.append(value)
            return "{p%d}" % (len(self.values) - 1)
        return sql_literal(value)

    def finish(self, sql: str, kind: str = "query", ordered: bool = False) -> Statement:
        params = []
        out = PARAM.sub(lambda m: params.append(self.values[int(m.group(1))]) or "?", sql)
        self.values = []
        return Statement(out, tuple(params), kind, ordered)

    # -- expressions

    def expr(self, tc: str, ctx: Ctx, depth: int) -> str:
        """An expression of class ``tc`` (INT, REAL, TEXT, BLOB or "bool")."""
        if tc == "bool":
            return self.predicate(ctx, depth)
        if depth <= 0 or self.weighted([(2, True), (3, False)]):
            return self.leaf(tc, ctx)
        d = depth - 1
        e = lambda c=tc: self.expr(c, ctx, d)  # noqa: E731
        kinds = [(2, "case"), (1, "coalesce"), (1, "nullif"), (1, "ifnull"), (1, "iif"), (1, "min_max")]
        if ctx.row is not None:
            kinds.append((6, "aggregate"))
        if ctx.sub_depth > 0:
            kinds.append((1, "subquery"))
        if tc == INT:
            kinds += [(6, "arith"), (1, "neg"), (1, "abs"), (2, "length"), (2, "bool"), (1, "cast_real"),
                      (1, "cast_text"), (1, "instr"), (1, "unicode"), (1, "sign")]
        elif tc == REAL:
            kinds += [(6, "arith"), (1, "neg"), (1, "abs"), (2, "round"), (1, "cast_int"), (1, "cast_text")]
        elif tc == TEXT:
            kinds += [(4, "concat"), (2, "case_fold"), (1, "trim"), (2, "substr"), (1, "replace"),
                      (1, "typeof"), (1, "cast_int"), (1, "hex"), (1, "char")]
        else:
            kinds += [(1, "substr"), (1, "cast_text")]
        kind = self.weighted(kinds)
        if kind == "case":
            whens = " ".join(f"WHEN {self.expr('bool', ctx, d)} THEN {e()}"
                             for _ in range(self.draw(st.integers(1, 2))))
            if self.draw(st.booleans()):
                return f"CASE {whens} ELSE {e()} END" if self.draw(st.booleans()) else f"CASE {whens} END"
            base = self.pick(TYPES)
            return f"CASE {self.expr(base, ctx, d)} WHEN {self.expr(base, ctx, d)} THEN {e()} ELSE {e()} END"
        if kind == "coalesce":
            return f"coalesce({', '.join(e() for _ in range(self.draw(st.integers(2, 3))))})"
        if kind == "nullif":
            return f"nullif({e()}, {e()})"
        if kind == "ifnull":
            return f"ifnull({e()}, {e()})"
        if kind == "iif":
            return f"iif({self.expr('bool', ctx, d)}, {e()}, {e()})"
        if kind == "min_max":    # the scalar forms: NULL if any argument is
            return f"{self.pick(['min', 'max'])}({', '.join(e() for _ in range(self.draw(st.integers(2, 3))))})"
        if kind == "aggregate":
            return self.aggregate(tc, ctx.row)
        if kind == "subquery":
            return self.scalar_subquery(tc, ctx)
        if kind == "neg":
            return f"(- {e()})"
        if kind == "abs":
            return f"abs({e()})"
        if tc == INT:
            if kind == "arith":
                return f"({e()} {self.pick(['+', '-', '*', '/', '%'])} {e()})"
            if kind == "length":
                return f"length({self.expr(self.pick([TEXT, BLOB]), ctx, d)})"
            if kind == "instr":
                a = self.pick([TEXT, BLOB])
                return f"instr({self.expr(a, ctx, d)}, {self.expr(a, ctx, d)})"
            if kind == "unicode":
                return f"unicode({self.expr(TEXT, ctx, d)})"
            if kind == "sign":
                return f"sign({self.expr(self.pick(NUMERIC), ctx, d)})"
            if kind == "bool":
                return self.expr("bool", ctx, d)
            if kind == "cast_real":
                return f"CAST({self.expr(REAL, ctx, d)} AS INTEGER)"
            return f"CAST({self.expr(TEXT, ctx, d)} AS INTEGER)"
        if tc == REAL:
            if kind == "arith":
                a, b = self.pick([(REAL, REAL), (REAL, INT), (INT, REAL)])
                return f"({self.expr(a, ctx, d)} {self.pick(['+', '-', '*', '/'])} {self.expr(b, ctx, d)})"
            if kind == "round":
                arg = self.expr(self.pick(NUMERIC), ctx, d)
                return f"round({arg})" if self.draw(st.booleans()) else f"round({arg}, {self.draw(st.integers(0, 3))})"
            if kind == "cast_int":
                return f"CAST({self.expr(INT, ctx, d)} AS REAL)"
            return f"CAST({self.expr(TEXT, ctx, d)} AS REAL)"
        if tc == TEXT:
            if kind == "concat":
                return f"({e()} || {self.expr(self.pick([TEXT, TEXT, INT]), ctx, d)})"
            if kind == "case_fold":
                return f"{self.pick(['lower', 'upper'])}({e()})"
            if kind == "trim":
                fn = self.pick(["trim", "trim", "ltrim", "rtrim"])
                return f"{fn}({e()})" if self.draw(st.booleans()) else f"{fn}({e()}, {self.constant(TEXT)})"
            if kind == "substr":
                return self.substr(e(), d)
            if kind == "replace":
                return f"replace({e()}, {e()}, {e()})"
            if kind == "typeof":
                return f"typeof({self.expr(self.pick(TYPES), ctx, d)})"
            if kind == "hex":
                return f"hex({self.expr(self.pick([INT, TEXT, BLOB]), ctx, d)})"
            if kind == "char":
                codes = [sql_literal(self.pick([65, 97, 233, 0x65E5, 0x1F600, 32])) for _ in range(self.draw(st.integers(1, 3)))]
                return f"char({', '.join(codes)})"
            return f"CAST({self.expr(INT, ctx, d)} AS TEXT)"
        if kind == "substr":
            return self.substr(e(), d)
        return f"CAST({self.expr(TEXT, ctx, d)} AS BLOB)"

    def substr(self, arg: str, depth: int) -> str:
        start = sql_literal(self.draw(st.integers(-3, 4)))
        if self.draw(st.booleans()):
            return f"substr({arg}, {start})"
        return f"substr({arg}, {start}, {sql_literal(self.draw(st.integers(-2, 4)))})"

    def leaf(self, tc: str, ctx: Ctx) -> str:
        columns = ctx.leaves.get(tc, [])
        options = [(6, "constant"), (1, "null")]
        if columns:
            options.append((16, "column"))
        if ctx.row is not None:
            options.append((12, "aggregate"))
        kind = self.weighted(options)
        if kind == "column":
            return self.pick(columns)
        if kind == "aggregate":
            return self.aggregate(tc, ctx.row)
        if kind == "null":
            return "NULL"
        return self.constant(tc)

    def aggregate(self, tc: str, row: Ctx) -> str:
        arg_ctx = Ctx(row.leaves, None, 0, row.tables)   # no subqueries inside aggregates
        d = self.draw(st.integers(0, 1))
        distinct = "DISTINCT " if self.weighted([(4, False), (1, True)]) else ""
        if tc == INT:
            kind = self.weighted([(3, "count"), (2, "count_star"), (3, "sum"), (2, "minmax"), (1, "group_concat")])
            if kind == "count_star":
                return "count(*)"
            if kind == "count":
                return f"count({distinct}{self.expr(self.pick(TYPES), arg_ctx, d)})"
            if kind == "sum":
                return f"sum({distinct}{self.expr(INT, arg_ctx, d)})"
            if kind == "group_concat":
                arg = self.expr(self.pick([INT, TEXT]), arg_ctx, d)
                if distinct or self.draw(st.booleans()):
                    return f"length(group_concat({distinct}{arg}))"
                return f"length(group_concat({arg}, {self.constant(TEXT)}))"
        if tc == REAL:
            kind = self.weighted([(3, "avg"), (2, "total"), (2, "sum"), (2, "minmax")])
            if kind in ("avg", "total"):
                return f"{kind}({distinct}{self.expr(self.pick(NUMERIC), arg_ctx, d)})"
            if kind == "sum":
                return f"sum({distinct}{self.expr(REAL, arg_ctx, d)})"
        return f"{self.pick(['min', 'max'])}({distinct}{self.expr(tc, arg_ctx, d)})"

    # -- predicates

    def predicate(self, ctx: Ctx, depth: int) -> str:
        d = depth - 1
        kinds = [(8, "cmp"), (2, "between"), (2, "in"), (2, "is_null"), (1, "like"), (1, "glob")]
        if depth > 0:
            kinds += [(3, "and"), (2, "or"), (1, "not")]
        if ctx.sub_depth > 0:
            kinds += [(1, "exists"), (1, "in_sub")]
        if ctx.row is None and ctx.tables and depth > 0:
            kinds.append((3, "key"))
        kind = self.weighted(kinds)
        tc = self.weighted([(4 if ctx.leaves.get(c) else 1, c) for c in TYPES])
        operand = lambda c=tc: self.expr(c, ctx, max(d, 0))  # noqa: E731
        if kind == "cmp":
            # A numeric operand may meet the other numeric class.
            other = self.pick(NUMERIC) if tc in NUMERIC else tc
            return f"({operand()} {self.pick(CMP_OPS)} {operand(other)})"
        if kind == "between":
            neg = "NOT " if self.weighted([(3, False), (1, True)]) else ""
            return f"({operand()} {neg}BETWEEN {operand()} AND {operand()})"
        if kind == "in":
            neg = "NOT " if self.weighted([(3, False), (1, True)]) else ""
            items = [self.constant(tc) if self.weighted([(6, True), (1, False)]) else "NULL"
                     for _ in range(self.draw(st.integers(1, 4)))]
            return f"({operand()} {neg}IN ({', '.join(items)}))"
        if kind == "is_null":
            return f"({operand()} IS {'NOT ' if self.draw(st.booleans()) else ''}NULL)"
        if kind == "like":
            neg = "NOT " if self.weighted([(3, False), (1, True)]) else ""
            if self.weighted([(4, False), (1, True)]):
                pattern = self.pattern("%_!").replace("!", "!" + self.pick(["%", "_", "!"]))
                return f"({self.expr(TEXT, ctx, max(d, 0))} {neg}LIKE {sql_literal(pattern)} ESCAPE '!')"
            return f"({self.expr(TEXT, ctx, max(d, 0))} {neg}LIKE {sql_literal(self.pattern('%_'))})"
        if kind == "glob":
            return f"({self.expr(TEXT, ctx, max(d, 0))} GLOB {sql_literal(self.pattern('*?'))})"
        if kind in ("and", "or"):
            return f"({self.predicate(ctx, d)} {kind.upper()} {self.predicate(ctx, d)})"
        if kind == "not":
            return f"(NOT {self.predicate(ctx, d)})"
        if kind == "exists":
            neg = "NOT " if self.draw(st.booleans()) else ""
            sub, _ = self.subselect(ctx, [INT], exists=True)
            return f"({neg}EXISTS ({sub}))"
        if kind == "in_sub":
            neg = "NOT " if self.weighted([(3, False), (1, True)]) else ""
            sub, _ = self.subselect(ctx, [tc])
            return f"({operand()} {neg}IN ({sub}))"
        alias, table = self.pick(ctx.tables)
        return self.key_predicate(alias, table)

    def pattern(self, wild: str) -> str:
        text = list(self.value(TEXT).replace("!", ""))
        for _ in range(self.draw(st.integers(0, 2))):
            text.insert(self.draw(st.integers(0, len(text))), self.pick(list(wild)))
        if wild == "*?" and self.weighted([(5, False), (1, True)]):
            text.append("[a-c]")
        return "".join(text)

    def key_predicate(self, alias: str, table: Table) -> str:
        """Equality on a prefix of a key, then maybe a range, IN list or IS NULL on the next column."""
        keys = table.keys() or [(table.columns[0].name,)]
        key = self.pick(keys)
        n_eq = self.draw(st.integers(0, len(key)))
        # Usually the equalities name a row that is there.
        table_rows = self.data.get(table.name, [])
        row = self.pick(table_rows) if table_rows and self.weighted([(3, True), (1, False)]) else {}
        parts = []
        for name in key[:n_eq]:
            value = row.get(name)
            bound = self.constant(table.column(name).type, value) if value is not None else None
            parts.append(f"{alias}.{name} = {bound or self.key_value(table.column(name))}")
        if n_eq < len(key):
            col = table.column(key[n_eq])
            ref = f"{alias}.{col.name}"
            kind = self.weighted([(4, "range"), (2, "between"), (2, "in"), (1, "is_null"), (1, "none")])
            if kind == "range":
                lo = self.draw(st.booleans())
                hi = not lo or self.draw(st.booleans())
                if lo:
                    parts.append(f"{ref} {self.pick(['>', '>='])} {self.key_value(col)}")
                if hi:
                    parts.append(f"{ref} {self.pick(['<', '<='])} {self.key_value(col)}")
            elif kind == "between":
                parts.append(f"{ref} BETWEEN {self.key_value(col)} AND {self.key_value(col)}")
            elif kind == "in":
                items = ", ".join(self.key_value(col) for _ in range(self.draw(st.integers(1, 4))))
                parts.append(f"{ref} IN ({items})")
            elif kind == "is_null":
                parts.append(f"{ref} IS {'NOT ' if self.draw(st.booleans()) else ''}NULL")
        if not parts:
            parts.append(f"{alias}.{key[0]} IS NOT NULL")
        pred = " AND ".join(parts)
        if self.weighted([(6, False), (1, True)]):      # a union of two ranges
            pred = f"{pred} OR {self.key_predicate(alias, table)}"
        return f"({pred})"

    def key_value(self, col: Column) -> str:
        """A bound for ``col``: usually a value of its class; a REAL bound for an INTEGER
        column and an INTEGER bound for a REAL one now and then."""
        if col.type == INT and self.weighted([(6, False), (1, True)]):
            return self.constant(REAL, self.draw(st.integers(-12, 32)) / 4)
        if col.type == REAL and self.weighted([(6, False), (1, True)]):
            return self.constant(INT, self.draw(SMALL_INTS))
        return self.constant(col.type)

    # -- subqueries

    def subselect(self, outer: Ctx, classes: list[str], exists: bool = False) -> tuple[str, list[str]]:
        """A one-table subquery, correlated with ``outer`` in its WHERE now and then."""
        table = self.pick(list(self.schema.tables))
        alias = self.alias()
        own = scope_ctx([(alias, table)], outer.sub_depth - 1)
        where_ctx = own.with_outer(outer)
        conds = []
        if self.weighted([(1, False), (2, True)]):
            conds.append(self.correlation(alias, table, outer) or self.predicate(where_ctx, 1))
        if self.weighted([(1, False), (1, True)]):
            conds.append(self.predicate(where_ctx, 1))
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        proj = "1" if exists else ", ".join(self.expr(tc, own, 1) for tc in classes)
        return f"SELECT {proj} FROM {table.name} AS {alias}{where}", classes

    def correlation(self, alias: str, table: Table, outer: Ctx) -> str | None:
        pairs = [(f"{alias}.{c.name}", ref) for c in table.columns for ref in outer.leaves.get(c.type, [])]
        if not pairs:
            return None
        inner, outer_ref = self.pick(pairs)
        return f"{inner} = {outer_ref}"

    def scalar_subquery(self, tc: str, outer: Ctx) -> str:
        """A subquery that yields at most one row: an aggregate, a full-key lookup, or LIMIT 1."""
        table = self.pick(list(self.schema.tables))
        alias = self.alias()
        own = scope_ctx([(alias, table)], 0)
        where_ctx = own.with_outer(outer)
        kind = self.weighted([(3, "aggregate"), (2, "limit1")]
                             + ([(2, "key")] if table.primary_key else []))
        conds = []
        if kind == "key":
            for name in table.primary_key:
                col = table.column(name)
                candidates = outer.leaves.get(col.type, [])
                rhs = self.pick(candidates) if candidates and self.draw(st.booleans()) else self.constant(col.type)
                conds.append(f"{alias}.{name} = {rhs}")
        else:
            corr = self.correlation(alias, table, outer)
            if corr and self.draw(st.booleans()):
                conds.append(corr)
            if self.draw(st.booleans()):
                conds.append(self.predicate(where_ctx, 1))
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        if kind == "aggregate":
            grouped = Ctx({}, own, 0, [])
            return f"(SELECT {self.aggregate(tc, grouped.row)} FROM {table.name} AS {alias}{where})"
        proj = self.expr(tc, own, 1)
        tail = f" ORDER BY 1 {self.pick(['ASC', 'DESC'])} LIMIT 1" if kind == "limit1" else ""
        return f"(SELECT {proj} FROM {table.name} AS {alias}{where}{tail})"

    # -- SELECT

    def from_clause(self) -> tuple[str, list[tuple[str, Table]], list[str]]:
        """FROM with 1-3 tables joined on equality; returns the text, the scope, and
        comma-join conditions that belong in WHERE."""
        n = self.weighted([(5, 1), (4, 2), (2, 3)])
        first, first_text = self.from_item()
        scope = [(self.alias(), first)]
        text = f"{first_text} AS {scope[0][0]}"
        where = []
        for i in range(1, n):
            table, table_text = self.from_item()
            alias = self.alias()
            cond = self.join_condition(scope, alias, table)
            kind = self.weighted([(4, "inner"), (3, "left"), (2, "comma"), (1 if n == 2 else 0, "cross")])
            if kind == "inner":
                text += f" {self.pick(['JOIN', 'INNER JOIN'])} {table_text} AS {alias} ON {cond}"
            elif kind == "left":
                extra = ""
                if self.weighted([(3, False), (1, True)]):
                    extra = f" AND {self.predicate(scope_ctx([(alias, table)], 0), 0)}"
                text += f" LEFT JOIN {table_text} AS {alias} ON {cond}{extra}"
            elif kind == "comma":
                text += f", {table_text} AS {alias}"
                where.append(cond)
            else:
                text += f" CROSS JOIN {table_text} AS {alias}"
            scope.append((alias, table))
        return text, scope, where

    def from_item(self) -> tuple[Table, str]:
        """A table of the schema, or now and then a subquery in FROM or a CTE over one.
        Returns the table (a made-up one for a subquery) and its text in FROM."""
        kind = self.weighted([(12, "table"), (1, "derived"), (1, "cte")])
        base = self.pick(list(self.schema.tables))
        if kind == "table":
            return base, base.name
        alias = self.alias()
        row = scope_ctx([(alias, base)], 0)
        if self.draw(st.booleans()):      # a projection of columns and expressions
            picked = [self.pick(base.columns) for _ in range(self.draw(st.integers(1, 3)))]
            exprs = [f"{alias}.{c.name}" if self.draw(st.booleans()) else self.expr(c.type, row, 1) for c in picked]
            classes = [c.type for c in picked]
            distinct = "DISTINCT " if self.weighted([(3, False), (1, True)]) else ""
            where = self.where_clause(row, [])
            body = f"SELECT {distinct}{{cols}} FROM {base.name} AS {alias}{where}"
        else:                             # a grouped one
            key = self.pick(base.columns)
            classes = [key.type, INT] + ([REAL] if self.draw(st.booleans()) else [])
            grouped = Ctx({key.type: [f"{alias}.{key.name}"]}, row, 0, [])
            exprs = [f"{alias}.{key.name}", "count(*)"] + [self.aggregate(REAL, row)][:len(classes) - 2]
            body = f"SELECT {{cols}} FROM {base.name} AS {alias} GROUP BY {alias}.{key.name}"
            if self.weighted([(2, False), (1, True)]):
                body += f" HAVING {self.predicate(grouped, 1)}"
        names = [f"v{i}" for i in range(len(exprs))]
        body = body.replace("{cols}", ", ".join(f"{e} AS {n}" for e, n in zip(exprs, names)), 1)
        table = Table(f"d{self.n_alias}", tuple(Column(n, tc) for n, tc in zip(names, classes)), (), False)
        if kind == "derived":
            return table, f"({body})"
        self.ctes.append(f"{table.name} AS ({body})")
        return table, table.name

    def join_condition(self, scope, alias: str, table: Table) -> str:
        pairs = []
        for c in table.columns:
            for left_alias, left in scope:
                for lc in left.columns:
                    if lc.type == c.type or (lc.type in NUMERIC and c.type in NUMERIC):
                        weight = 3 if (c.name in table.primary_key or lc.name in left.primary_key) else 1
                        pairs.extend([(f"{left_alias}.{lc.name}", f"{alias}.{c.name}")] * weight)
        if not pairs:
            return "1 = 1"
        left_ref, right_ref = self.pick(pairs)
        return f"{left_ref} = {right_ref}"

    def where_clause(self, ctx: Ctx, extra: list[str]) -> str:
        conds = list(extra)
        kind = self.weighted([(2, "none"), (4, "key"), (3, "random"), (3, "both")])
        if kind in ("key", "both"):
            alias, table = self.pick(ctx.tables)
            conds.append(self.key_predicate(alias, table))
        if kind in ("random", "both"):
            conds.append(self.predicate(ctx, self.draw(st.integers(0, 3))))
        return f" WHERE {' AND '.join(conds)}" if conds else ""

    def select_core(self, classes: list[str] | None = None, sub_depth: int = 1) -> tuple[str, list[str]]:
        """One SELECT without ORDER BY; ``classes`` fixes the output column classes."""
        if classes is None and self.weighted([(12, False), (1, True)]):
            ctx = Ctx({tc: [] for tc in TYPES}, None, sub_depth, [])      # no FROM: constants only
            classes = [self.pick(TYPES) for _ in range(self.draw(st.integers(1, 3)))]
            return "SELECT " + ", ".join(self.expr(tc, ctx, 3) for tc in classes), classes
        from_text, scope, join_conds = self.from_clause()
        row = scope_ctx(scope, sub_depth)
        where = self.where_clause(row, join_conds)
        distinct = "DISTINCT " if self.weighted([(4, False), (1, True)]) else ""
        if self.weighted([(2, False), (1, True)]):       # aggregate query
            n_keys = self.weighted([(1, 0), (2, 1), (1, 2)])
            all_cols = [(tc, ref) for tc in TYPES for ref in row.leaves[tc]]
            keys = list(dict.fromkeys(self.pick(all_cols) for _ in range(n_keys)))
            grouped = Ctx({tc: [ref for c, ref in keys if c == tc] for tc in TYPES}, row, sub_depth, [])
            if classes is None:
                shown = [(c, ref) for c, ref in keys if self.draw(st.booleans())]
                classes = [c for c, _ in shown] + [self.pick(TYPES) for _ in range(self.draw(st.integers(1, 3)))]
                exprs = [ref for _, ref in shown] + [self.expr(tc, grouped, 2) for tc in classes[len(shown):]]
            else:
                exprs = [self.expr(tc, grouped, 2) for tc in classes]
            group_by = f" GROUP BY {', '.join(ref for _, ref in keys)}" if keys else ""
            having = ""
            if keys and self.weighted([(2, False), (1, True)]):
                having = f" HAVING {self.predicate(grouped, 1)}"
            return f"SELECT {distinct}{', '.join(exprs)} FROM {from_text}{where}{group_by}{having}", classes
        if classes is None and self.weighted([(5, False), (1, True)]):
            classes = [c.type for _, table in scope for c in table.columns]
            return f"SELECT {distinct}* FROM {from_text}{where}", classes
        if classes is None:
            classes = [self.pick(TYPES) for _ in range(self.draw(st.integers(1, 4)))]
        exprs = [self.expr(tc, row, self.draw(st.integers(0, 3))) for tc in classes]
        return f"SELECT {distinct}{', '.join(exprs)} FROM {from_text}{where}", classes

    def query(self) -> Statement:
        self.ctes = []
        sql, classes = self.select_core()
        if self.weighted([(5, False), (1, True)]):
            op = self.pick(["UNION", "UNION ALL", "INTERSECT", "EXCEPT"])
            right, _ = self.select_core(classes)
            sql = f"{sql} {op} {right}"
        ordered = False
        if self.weighted([(1, False), (1, True)]):
            order = ", ".join(f"{i + 1}{self.weighted(ORDER_DIRECTIONS)}" for i in range(len(classes)))
            sql += f" ORDER BY {order}"
            ordered = True
            if self.weighted([(1, False), (1, True)]):
                sql += f" LIMIT {self.draw(st.integers(0, 8))}"
                if self.draw(st.booleans()):
                    sql += f" OFFSET {self.draw(st.integers(0, 5))}"
        if self.ctes:
            sql = f"WITH {', '.join(self.ctes)} {sql}"
        return self.finish(sql, ordered=ordered)

    # -- DML

    def dml(self) -> list[Statement]:
        """One write statement (or a few INSERTs) on a random table."""
        table = self.pick(list(self.schema.tables))
        kind = self.weighted([(4, "update"), (3, "delete"), (2, "insert"), (2, "replace"), (1, "ignore"),
                              (1 if table.primary_key else 0, "upsert"), (1, "insert_select")])
        scope = [(table.name, table)]
        ctx = scope_ctx(scope, 1)
        if kind in ("insert", "replace", "ignore"):
            verb = {"insert": "INSERT", "replace": self.pick(["INSERT OR REPLACE", "REPLACE"]),
                    "ignore": "INSERT OR IGNORE"}[kind]
            return insert_statements(self.draw, table, self.new_rows(table), verb)
        if kind == "upsert":
            stmt = insert_statements(self.draw, table, self.new_rows(table)[:1])[0]
            key = ", ".join(table.primary_key)
            others = [c for c in table.columns if c.name not in table.primary_key]
            if not others or self.weighted([(2, False), (1, True)]):
                return [Statement(f"{stmt.sql} ON CONFLICT ({key}) DO NOTHING", stmt.params, "write")]
            col = self.pick(others)
            if col.name in table.unique_columns() or self.draw(st.booleans()):
                tail = self.finish(f"excluded.{col.name}")
            else:     # an expression over the row that is there
                tail = self.finish(self.expr(self.pick(NUMERIC) if col.type == REAL else col.type,
                                             Ctx(ctx.leaves, None, 0, ctx.tables), 1))
            sql = f"{stmt.sql} ON CONFLICT ({key}) DO UPDATE SET {col.name} = {tail.sql}"
            return [Statement(sql, stmt.params + tail.params, "write")]
        if kind == "delete":
            where = self.where_clause(ctx, [])
            return [self.finish(f"DELETE FROM {table.name}{where}", kind="write")]
        if kind == "update":
            targets = list(dict.fromkeys(self.pick(table.columns) for _ in range(self.draw(st.integers(1, 2)))))
            unique = table.unique_columns()
            sets = []
            for col in targets:
                if col.name in unique:
                    value = self.constant(col.type)
                else:
                    value = self.expr(self.pick(NUMERIC) if col.type == REAL else col.type,
                                      Ctx(ctx.leaves, None, 0, ctx.tables), self.draw(st.integers(0, 2)))
                sets.append(f"{col.name} = {value}")
            where = self.where_clause(ctx, [])
            return [self.finish(f"UPDATE {table.name} SET {', '.join(sets)}{where}", kind="write")]
        source = self.pick(list(self.schema.tables))
        alias = self.alias()
        src = scope_ctx([(alias, source)], 0)
        exprs = []
        for col in table.columns:
            candidates = src.leaves.get(col.type, [])
            expr = (self.pick(candidates) if candidates and self.draw(st.booleans())
                    else self.expr(col.type, src, 1))
            if col.name in table.primary_key:
                # Never NULL: SQLite draws a random row id once the largest is taken.
                expr = f"coalesce({expr}, {self.constant(col.type)})"
            exprs.append(expr)
        where = self.where_clause(src, [])
        cols = ", ".join(c.name for c in table.columns)
        # Not OR REPLACE: which of two source rows with one key wins depends on scan order.
        sql = f"INSERT INTO {table.name} ({cols}) SELECT {', '.join(exprs)} FROM {source.name} AS {alias}{where}"
        return [self.finish(sql, kind="write")]

    def new_rows(self, table: Table) -> list[dict]:
        """1-3 rows for an INSERT, with values seen in the tables often (so keys clash)."""
        out = self.draw(rows(table, 3)) or [{c.name: None for c in table.columns}]
        for row in out:
            for c in table.columns:
                if (row[c.name] is None and c.name in table.primary_key) or self.weighted([(2, False), (1, True)]):
                    row[c.name] = self.value(c.type)
        return out

    def key_queries(self) -> list[Statement]:
        """For every table, a full dump and one query per key, to catch stale indexes."""
        out = []
        for table in self.schema.tables:
            out.append(Statement(f"SELECT * FROM {table.name}"))
            for key in table.keys():
                alias = self.alias()
                pred = self.key_predicate(alias, Table(table.name, table.columns, key, False))
                out.append(self.finish(f"SELECT * FROM {table.name} AS {alias} WHERE {pred}"))
        return out


@st.composite
def query_cases(draw, max_queries: int = 4) -> Case:
    case = draw(populated())
    builder = QueryBuilder(draw, case.schema, case.data)
    case.statements = [builder.query() for _ in range(draw(st.integers(1, max_queries)))]
    return case


@st.composite
def dml_cases(draw, max_writes: int = 6) -> Case:
    """Writes, now and then inside BEGIN ... COMMIT/ROLLBACK with savepoints, queries in
    between, and ``reopen`` (tabledb closes and opens the database again; only outside
    a transaction); then every table in full and through each of its keys."""
    case = draw(populated())
    builder = QueryBuilder(draw, case.schema, case.data)
    in_txn, savepoints = False, []
    out = case.statements
    for _ in range(draw(st.integers(1, max_writes))):
        step = builder.weighted([(8, "write"), (1 if not in_txn else 0, "begin"), (1 if in_txn else 0, "end"),
                                 (1 if in_txn else 0, "savepoint"), (1 if savepoints else 0, "end_savepoint"),
                                 (1 if not in_txn else 0, "reopen")])
        if step == "begin":
            out.append(Statement(builder.pick(["BEGIN", "BEGIN IMMEDIATE"]), kind="txn"))
            in_txn = True
        elif step == "end":
            out.append(Statement(builder.pick(["COMMIT", "ROLLBACK", "END"]), kind="txn"))
            in_txn, savepoints = False, []
        elif step == "savepoint":
            savepoints.append(f"s{len(savepoints)}")
            out.append(Statement(f"SAVEPOINT {savepoints[-1]}", kind="txn"))
        elif step == "end_savepoint":
            name = builder.pick(savepoints)
            if builder.draw(st.booleans()):
                out.append(Statement(f"ROLLBACK TO {name}", kind="txn"))   # the savepoint stays
                savepoints = savepoints[:savepoints.index(name) + 1]
            else:
                out.append(Statement(f"RELEASE {name}", kind="txn"))
                savepoints = savepoints[:savepoints.index(name)]
        elif step == "reopen":
            out.append(Statement("-- reopen", kind="reopen"))
        else:
            out.extend(builder.dml())
        if builder.weighted([(2, False), (1, True)]):
            out.append(builder.query())
    out.extend(builder.key_queries())
    if in_txn:
        out.append(Statement("COMMIT", kind="txn"))
    out.append(Statement("-- reopen", kind="reopen"))
    out.extend(builder.key_queries())
    return case


# ----------------------------------------------------------------------------- engines


class SQLiteError(Exception):
    """Stands in for tabledb.Error when both sides are SQLite (TABLEDB_DIFF_ENGINE=sqlite)."""


class _as_sqlite_error:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, (sqlite3.Error, OverflowError, ValueError, TypeError)):
            raise SQLiteError(str(exc)) from exc
        return False


class _SQLiteCursor:
    def __init__(self, cursor: sqlite3.Cursor):
        self.cursor = cursor
        self.description = cursor.description

    def fetchall(self):
        with _as_sqlite_error():
            return self.cursor.fetchall()


class SQLiteAsEngine:
    """A SQLite connection shaped like a tabledb one: STRICT tables, errors as SQLiteError,
    ``SHOW TABLES``, and unordered scans reversed."""

    def __init__(self):
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        # Unordered scans run backwards, so results that depend on scan order show up.
        self.conn.execute("PRAGMA reverse_unordered_selects = ON")

    def execute(self, sql, params=()):
        if isinstance(sql, str) and sql.strip().upper() == "SHOW TABLES":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        elif isinstance(sql, str) and sql.startswith("CREATE TABLE "):
            sql += " STRICT"
        with _as_sqlite_error():
            return _SQLiteCursor(self.conn.execute(sql, params))

    def close(self):
        self.conn.close()


def engine_under_test() -> tuple[t.Callable[[str], t.Any], type[Exception], str]:
    """(connect(path), its error root, its name): tabledb, or SQLite when
    TABLEDB_DIFF_ENGINE=sqlite. Raises ImportError if tabledb has no ``connect`` yet."""
    if os.environ.get("TABLEDB_DIFF_ENGINE") == "sqlite":
        return (lambda path: SQLiteAsEngine()), SQLiteError, "sqlite"
    import tabledb

    if not hasattr(tabledb, "connect"):
        raise ImportError("tabledb.connect does not exist yet")
    return (lambda path: tabledb.connect(path, autocommit=True)), tabledb.Error, "tabledb"
