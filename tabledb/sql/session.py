"""A session: one connection's transactions, statement cache and statement execution.

Transactions
============
* A statement is atomic: it runs inside a savepoint of the session's
  transaction and is rolled back to it if it fails, catalog included.
* Outside an explicit transaction, a read statement reads one engine snapshot
  and a write statement runs in its own transaction, committed at its end
  (``autocommit``), or opens a transaction that ``commit()`` ends
  (``autocommit=False``, as sqlite3 does for DML).
* Write transactions are serialised by the database's writer lock, taken at the
  first write (or at ``BEGIN IMMEDIATE``); a connection that cannot get it
  within ``busy_timeout`` seconds gets ``OperationalError``. Readers never wait.
* A transaction reads the snapshot taken by its first statement plus its own
  writes. If it read before it wrote and another connection committed in
  between, its write fails with ``OperationalError`` (as SQLite's
  SQLITE_BUSY_SNAPSHOT): its reads were stale, so it must roll back and retry.
* COMMIT hands the engine all writes as one batch.

Statement cache: statements are parsed and planned once per SQL text and
catalog version (parsing alone costs ~130 us) and re-run with new parameters.
"""

from __future__ import annotations

import datetime as _dt
from collections import OrderedDict
from itertools import islice
from decimal import Decimal
from typing import Any

from sqlglot import exp

from tabledb.errors import (DataError, Error, SQLSyntaxError, IntegrityError, InternalError, NotSupportedError,
                            OperationalError, ProgrammingError)
from tabledb.sql import bulk, dialect, keys
from tabledb.sql import values as V
from tabledb.sql.catalog import Catalog, Column, Index, Table, View
from tabledb.sql.database import max_row_key
from tabledb.sql.expressions import (Compiler, Runtime, Scope, Source, check_depth, literal_value, resolve,
                                     split_conjuncts, type_name)
from tabledb.sql.planner import Planner, QueryPlan
from tabledb.sql.txn import Transaction
from tabledb.sql.writer import MISSING, IndexWriter, TableWriter, constant_default
from tabledb.sql import plan as P

STATEMENT_CACHE_SIZE = 256
_QUERY_TYPES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.Values)
_ALLOWED_PARAM_TYPES = (type(None), int, float, str, bytes, bool, _dt.date, _dt.datetime)


class Result:
    """What a statement returns: column names/types and rows (an iterator), or a row count."""

    __slots__ = ("columns", "types", "rows", "rowcount", "lastrowid")

    def __init__(self, columns=None, types=None, rows=None, rowcount=-1, lastrowid=None):
        self.columns = columns
        self.types = types
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid


class ResultRows:
    """The rows of a query: an iterator that maps stray Python errors to PEP 249 ones and
    releases what the query holds (its snapshot, its cached plan) when it is exhausted,
    closed or garbage-collected, even if it was never read.

    ``pinned`` is the transaction's snapshot: a cursor may go on reading it after COMMIT
    (as with sqlite3), so the transaction's end closes it only once no result reads it.
    """

    __slots__ = ("_session", "_prepared", "_plan", "_snapshot", "_pinned", "_it", "_closed", "__weakref__")

    def __init__(self, session, prepared, plan, snapshot, pinned):
        self._session = session
        self._prepared = prepared
        self._plan = plan
        self._snapshot = snapshot
        self._pinned = pinned
        self._it = None
        self._closed = False
        prepared.in_use = True    # a second execution of the same SQL plans afresh meanwhile

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        try:
            if self._it is None:
                self._it = iter(self._plan.root.rows())
            return next(self._it)
        except StopIteration:
            self.close()
            raise
        except Exception as exc:
            mapped = self._failed(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def take(self, n: int | None = None) -> list:
        """The next ``n`` rows (all that remain when None) as a list: one C-level loop
        instead of a Python ``__next__`` call per row."""
        if self._closed:
            return []
        try:
            if self._it is None:
                self._it = iter(self._plan.root.rows())
            out = list(self._it) if n is None else list(islice(self._it, n))
        except Exception as exc:
            mapped = self._failed(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        if n is None or len(out) < n:
            self.close()
        return out

    def _failed(self, exc: Exception) -> Exception:
        """Close, and the PEP 249 error to raise for ``exc`` (``exc`` itself if it is one or unknown)."""
        self.close()
        if isinstance(exc, RecursionError):
            return OperationalError("query is too deeply nested")
        if isinstance(exc, (ValueError, TypeError, ArithmeticError)) and not isinstance(exc, Error):
            return DataError(f"{type(exc).__name__}: {exc}")
        return exc

    def close(self, _finalizing: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._prepared.in_use = False
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            try:
                it.close()
            except Exception:  # noqa: BLE001 - closing a half-read generator must not raise
                pass
        if self._snapshot is not None:
            _close_quietly(self._snapshot, _finalizing)
            self._snapshot = None
        if self._pinned is not None:
            pinned, self._pinned = self._pinned, None
            self._session._unpin(pinned, _finalizing)

    def __del__(self):
        try:
            self.close(_finalizing=True)   # snapshots released without blocking (Snapshot.drop)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def stored_scan(self):
        """(reader, table, defaults, ranges) when the rows are exactly the stored rows of one
        table (all columns in order, no filter) and nothing was read yet; else None. The Arrow
        layer then decodes the stored rows column-wise instead of through this iterator."""
        from tabledb.sql.planner import _Rename
        root = self._plan.root
        if self._it is not None or self._closed or not isinstance(root, _Rename):
            return None
        scan = root.child
        if not isinstance(scan, P.TableScan) or scan.access is not None or scan.fallback is not None \
                or scan.reverse or scan.table.hidden_rowid:
            return None
        return scan.rt.reader, scan.table, scan.defaults, [scan.table.row_range]


class Prepared:
    """A parsed (and for queries and DML, planned) statement, reusable with new parameters."""

    def __init__(self, node: exp.Expr, param_map: dict[int, int], names: list[str] | None, nparams: int):
        self.node = node
        self.param_map = param_map
        self.names = names
        self.nparams = nparams
        self.catalog_version = -1
        self.rt = Runtime()
        self.plan: Any = None
        self.in_use = False
        self.writes = not isinstance(node, _QUERY_TYPES) and not isinstance(
            node, (dialect.Explain, dialect.ShowTables, dialect.ShowIndexes, exp.Describe))
        # Backup statements that write nothing into this database (all but RESTORE TABLE) run
        # without the writer lock: a BACKUP must not wait for, nor hold up, other writers.
        self.outside = isinstance(node, (dialect.Backup, dialect.ShowBackups, dialect.VerifyBackup,
                                         dialect.DropBackup)) or (
            isinstance(node, dialect.Restore) and node.args.get("kind") == "DATABASE")
        self.needs_snapshot = True


def number_params(node: exp.Expr) -> tuple[dict[int, int], list[str] | None, int]:
    """Give each placeholder its parameter index, in the order they appear."""
    mapping: dict[int, int] = {}
    names: list[str] = []
    positional = 0
    for n in node.walk(bfs=False):
        if isinstance(n, exp.Placeholder):
            name = n.name
            if name and name != "?":
                if positional:
                    raise ProgrammingError("cannot mix named and positional parameters")
                if name.isdigit():
                    raise NotSupportedError("numbered parameters (?NNN) are not supported")
                if name not in names:
                    names.append(name)
                mapping[id(n)] = names.index(name)
            else:
                if names:
                    raise ProgrammingError("cannot mix named and positional parameters")
                mapping[id(n)] = positional
                positional += 1
            n.meta["tabledb_param"] = mapping[id(n)]   # survives the copies planning makes
    if names:
        return mapping, names, len(names)
    return mapping, None, positional


_FAST_TYPES = frozenset((int, str, float, type(None), bytes))


def bind(prepared: Prepared, params):
    """Parameters as a sequence in placeholder order; ProgrammingError on a count or type mismatch."""
    if isinstance(prepared.node, dialect.Explain):
        return []
    tp = type(params)
    if (tp is tuple or tp is list) and prepared.names is None and len(params) == prepared.nparams:
        fast = _FAST_TYPES
        for v in params:
            if type(v) not in fast or (type(v) is int and not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF):
                break
        else:
            return params
    if prepared.names is not None:
        if not hasattr(params, "keys") or not hasattr(params, "__getitem__"):
            if params is None or (isinstance(params, (list, tuple)) and not params):
                raise ProgrammingError(f"you did not supply a value for binding parameter :{prepared.names[0]}")
            raise ProgrammingError("named parameters need a mapping (a dict) of values")
        out = []
        for name in prepared.names:
            try:
                out.append(params[name])
            except KeyError:
                raise ProgrammingError(f"you did not supply a value for binding parameter :{name}") from None
    else:
        if params is None:
            params = ()
        if isinstance(params, (str, bytes, set, frozenset)) or hasattr(params, "keys") \
                or not hasattr(params, "__len__") or not hasattr(params, "__getitem__"):
            if hasattr(params, "keys") and prepared.nparams == 0 and not len(params):
                params = ()
            else:
                raise ProgrammingError("parameters must be a sequence (a tuple or list) for '?' placeholders")
        if len(params) != prepared.nparams:
            raise ProgrammingError(f"incorrect number of bindings supplied: the statement uses "
                                   f"{prepared.nparams}, and there are {len(params)} supplied")
        out = list(params)
    for i, v in enumerate(out):
        t = type(v)
        if t in (int, str, float, type(None), bytes):
            if t is int and not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
                raise DataError(f"parameter {i + 1}: Python int too large to convert to INTEGER")
            continue
        if isinstance(v, (bytearray, memoryview)):
            out[i] = bytes(v)
        elif isinstance(v, Decimal):
            out[i] = float(v)
        elif not isinstance(v, _ALLOWED_PARAM_TYPES):
            raise ProgrammingError(f"Error binding parameter {i + 1}: type '{t.__name__}' is not supported")
    return out


class Session:
    """The SQL state of one connection. Not thread-safe: one thread at a time."""

    def __init__(self, db, autocommit: bool = False, busy_timeout: float = 5.0, sync: bool | None = None):
        self.db = db
        self.engine = db.engine
        self.autocommit = autocommit
        self.busy_timeout = busy_timeout
        self.sync = sync
        self.txn: Transaction | None = None
        self.snapshot = None
        self.explicit = False          # inside BEGIN ... COMMIT
        self.holds_writer = False
        self.catalog: Catalog | None = None   # the transaction's catalog (None: the committed one)
        self.savepoints: list[tuple[str, int, Catalog | None]] = []
        self.cache: OrderedDict[str, Prepared] = OrderedDict()
        self.last_rowid: int | None = None
        self.closed = False
        self._snapshot_max: dict[int, bytes | None] = {}
        self._pins: dict[int, int] = {}   # id(snapshot) -> open results reading it
        self.inserts = 0                  # rows inserted by the current transaction
        # key ranges this transaction ingested into the engine directly (a bulk CREATE INDEX) that
        # only its catalog changes make reachable: range-deleted if those are undone
        self.ingested: list[tuple[bytes, bytes]] = []

    # -- state ---------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self.explicit or (self.txn is not None and (len(self.txn) > 0 or self.holds_writer))

    def current_catalog(self) -> Catalog:
        return self.catalog if self.catalog is not None else self.db.catalog

    # -- preparing -------------------------------------------------------------
    def prepare(self, sql: str) -> Prepared:
        prepared = self.cache.get(sql)
        if prepared is not None and not prepared.in_use:
            self.cache.move_to_end(sql)
            return prepared
        if not isinstance(sql, str):
            raise ProgrammingError(f"SQL must be a str, not {type(sql).__name__}")
        trees = _parse(sql)
        if not trees:
            node = None
        elif len(trees) > 1:
            raise ProgrammingError("you can only execute one statement at a time")
        else:
            node = trees[0]
        prepared = self.prepare_node(node)
        if prepared is not None and not (self.cache.get(sql) is not None and self.cache[sql].in_use):
            self.cache[sql] = prepared
            if len(self.cache) > STATEMENT_CACHE_SIZE:
                self.cache.popitem(last=False)
        return prepared

    def prepare_node(self, node) -> Prepared:
        """A Prepared for one parsed statement (None: the empty statement).

        Checks only what needs no catalog: that ``node`` is a statement tabledb runs, its
        nesting depth and its placeholders (ProgrammingError, SQLSyntaxError otherwise).
        Planning against the catalog waits until it runs, so it may name a table that an
        earlier statement of the same script creates."""
        if node is None:
            p = Prepared(exp.Null(), {}, None, 0)
            p.writes = False
            p.plan = "empty"
            return p
        if isinstance(node, exp.Command):
            raise ProgrammingError(f"unsupported statement: {node.sql(dialect='sqlite')[:80]}")
        if not isinstance(node, (exp.Query, exp.DML, exp.DDL, exp.Drop, exp.Transaction, exp.Commit, exp.Rollback,
                                 exp.Describe, exp.Copy, exp.Alter, exp.TruncateTable, dialect.TableDBStatement)) \
                and not isinstance(node, (exp.Values,)):
            raise SQLSyntaxError(f"Syntax error: not a statement: {node.sql(dialect='sqlite')[:60]}", line=1, col=1)
        if isinstance(node, exp.Select) and not node.expressions:
            raise SQLSyntaxError("Syntax error: SELECT needs at least one result column", line=1, col=1)
        check_depth(node)
        if isinstance(node, dialect.Explain):
            return Prepared(node, {}, None, 0)   # EXPLAIN plans without values: parameters are ignored
        mapping, names, count = number_params(node)
        return Prepared(node, mapping, names, count)

    # -- executing ---------------------------------------------------------------
    def execute(self, sql: str, params=None) -> Result:
        if self.closed:
            raise ProgrammingError("cannot operate on a closed database")
        prepared = self.prepare(sql)
        values = bind(prepared, params)
        return self.run(prepared, values)

    def executemany(self, sql: str, seq_of_params) -> Result:
        """One plan, one transaction (one engine batch unless inside a larger transaction)."""
        prepared = self.prepare(sql)
        if not prepared.writes:
            if isinstance(prepared.node, _QUERY_TYPES):
                raise ProgrammingError("executemany() can only execute DML statements")
        total = 0
        own = self.txn is None or (not self.explicit and self.autocommit)
        if not prepared.writes:
            for params in seq_of_params:
                self.run(prepared, bind(prepared, params))
            return Result(rowcount=-1)
        self._begin_write(prepared)
        sp = self.txn.savepoint()
        catalog_before = self.catalog
        ingested_before = len(self.ingested)
        try:
            self._ensure_planned(prepared)
            runner = prepared.plan
            for params in seq_of_params:
                values = bind(prepared, params)
                n = runner(self, values)
                if n > 0:
                    total += n
        except BaseException:
            self._undo_statement(sp, catalog_before, ingested_before)
            if own and self.autocommit and not self.explicit:
                self.rollback()
            raise
        self.txn.release(sp)
        if own and self.autocommit and not self.explicit:
            self.commit()
        return Result(rowcount=total, lastrowid=self.last_rowid)

    def run(self, prepared: Prepared, values: list) -> Result:
        node = prepared.node
        if prepared.plan == "empty":
            return Result()
        if not prepared.writes:
            return self._run_read(prepared, values)
        control = _CONTROL.get(type(node))
        if control is not None:
            return control(self, node)
        if prepared.outside:
            self._ensure_planned(prepared)
            return prepared.plan(self, values)
        own = self.txn is None or not self.in_transaction
        self._begin_write(prepared)
        sp = self.txn.savepoint()
        catalog_before = self.catalog
        ingested_before = len(self.ingested)
        try:
            self._ensure_planned(prepared)
            n = prepared.plan(self, values)
        except BaseException:
            self._undo_statement(sp, catalog_before, ingested_before)
            if own and self.autocommit and not self.explicit:
                self.rollback()
            raise
        self.txn.release(sp)
        if self.autocommit and not self.explicit:
            self.commit()
        if isinstance(n, Result):
            return n
        return Result(rowcount=n, lastrowid=self.last_rowid)

    def _undo_statement(self, sp: int, catalog_before, ingested_before: int) -> None:
        self._discard_ingested(ingested_before)
        if self.txn is not None:
            try:
                self.txn.rollback_to(sp)
                self.txn.release(sp)
            except Exception:  # noqa: BLE001 - the transaction is abandoned below if this fails
                self.rollback()
                return
        self.catalog = catalog_before
        self._snapshot_max.clear()
        self.db.rowid_next.clear()

    def _ensure_planned(self, prepared: Prepared) -> None:
        catalog = self.current_catalog()
        if prepared.catalog_version != catalog.version or prepared.plan is None:
            prepared.rt = Runtime(self)
            planner = Planner(catalog, prepared.rt, prepared.param_map)
            prepared.plan = _plan_statement(self, prepared.node, planner)
            prepared.catalog_version = catalog.version
            if isinstance(prepared.plan, QueryPlan):
                # one engine read (a point get or a single scan) is consistent without a snapshot
                prepared.needs_snapshot = planner.subqueries > 0 or _reads(prepared.plan.root) != 1
        prepared.rt.session = self

    def _run_read(self, prepared: Prepared, values: list) -> Result:
        node = prepared.node
        catalog = self.current_catalog()
        if isinstance(node, dialect.ShowTables):
            rows = [(t.name,) for t in sorted(catalog.tables.values(), key=lambda t: t.name.lower())]
            return Result(["name"], ["TEXT"], iter(rows))
        if isinstance(node, dialect.ShowIndexes):
            return self._show_indexes(node, catalog)
        if isinstance(node, exp.Describe):
            return self._describe(node, catalog)
        if isinstance(node, dialect.Explain):
            return self._explain(node, values)
        self._ensure_planned(prepared)
        plan: QueryPlan = prepared.plan
        rt = prepared.rt
        rt.params = values
        rt.generation += 1
        if self.txn is None and self.explicit:
            self._take_snapshot()      # BEGIN ... : the first statement fixes the snapshot
        if self.txn is not None:
            if self.snapshot is None and self.txn is not None:
                self._take_snapshot()
            rt.reader = self.txn
            snap = self.snapshot
            self._pins[id(snap)] = self._pins.get(id(snap), 0) + 1
            return Result(plan.columns, plan.types, ResultRows(self, prepared, plan, None, snap))
        snapshot = self.engine.snapshot() if prepared.needs_snapshot else None
        rt.reader = Transaction(self.engine, snapshot)
        return Result(plan.columns, plan.types, ResultRows(self, prepared, plan, snapshot, None))

    def _unpin(self, pinned, finalizing: bool = False) -> None:
        left = self._pins.get(id(pinned), 1) - 1
        if left > 0:
            self._pins[id(pinned)] = left
        else:
            self._pins.pop(id(pinned), None)
            if pinned is not self.snapshot:
                _close_quietly(pinned, finalizing)

    # -- transactions -------------------------------------------------------------
    def _take_snapshot(self) -> None:
        self.snapshot = self.engine.snapshot()
        self.txn = Transaction(self.engine, self.snapshot)

    def begin(self, immediate: bool = False) -> None:
        if self.explicit:
            raise OperationalError("cannot start a transaction within a transaction")
        if self.txn is None:
            self.txn = None
        self.explicit = True
        if immediate:
            self._acquire_writer()

    def _begin_write(self, prepared: Prepared) -> None:
        if not self.holds_writer:
            self._acquire_writer()

    def _acquire_writer(self) -> None:
        self.db.acquire_writer(self, self.busy_timeout)
        self.holds_writer = True
        if self.txn is None:
            if self.autocommit and not self.explicit:
                # one statement holding the writer lock: nobody else commits while it runs,
                # so the latest state is as consistent as a snapshot (and costs nothing)
                self.txn = Transaction(self.engine, None)
            else:
                self._take_snapshot()
        elif self.snapshot is not None and self.snapshot.sequence != self.engine.latest_sequence \
                and len(self.txn) == 0:
            # the transaction read an older state; its reads may be stale
            self.db.release_writer(self)
            self.holds_writer = False
            raise OperationalError("database is locked: another connection committed since this transaction "
                                   "began reading; roll back and retry")

    def commit(self) -> None:
        txn = self.txn
        try:
            if txn is not None and len(txn):
                self.engine.write(txn.write_batch(), sync=self.sync)
                if self.catalog is not None:
                    self.db.publish(self.catalog)
        finally:
            self._end_transaction()

    def rollback(self) -> None:
        if self.catalog is not None or self.txn is not None:
            self.db.rowid_next.clear()
        self._discard_ingested(0)
        self._end_transaction()

    def renew_snapshot(self) -> None:
        """Read the latest state from now on, after this transaction ingested data into the engine
        directly. REQUIRES: the writer lock (nobody else committed since the snapshot) and no
        pending writes yet (``Transaction.rebase``)."""
        old = self.snapshot
        if old is None:
            return   # the transaction reads the latest state already
        self.snapshot = self.engine.snapshot()
        self.txn.rebase(self.snapshot)
        if id(old) not in self._pins:
            _close_quietly(old)
        self._snapshot_max.clear()

    def _discard_ingested(self, keep: int) -> None:
        """Range-delete what this transaction ingested after its first ``keep`` ranges (their catalog
        changes are being undone). REQUIRES: the writer lock, so no other transaction can have
        reused those ranges meanwhile."""
        doomed = self.ingested[keep:]
        del self.ingested[keep:]
        for start, end in doomed:
            try:
                self.engine.delete_range(start, end)
            except Error:
                pass   # unreachable all the same: no catalog names them, and a CREATE INDEX clears its range first

    def _end_transaction(self) -> None:
        if self.snapshot is not None and id(self.snapshot) not in self._pins:
            _close_quietly(self.snapshot)
        self.snapshot = None
        self.txn = None
        self.catalog = None
        self.savepoints.clear()
        self.explicit = False
        self._snapshot_max.clear()
        self.inserts = 0
        self.ingested.clear()   # committed, or (rollback) already range-deleted
        if self.holds_writer:
            self.holds_writer = False
            self.db.release_writer(self)

    def close(self) -> None:
        if not self.closed:
            self.rollback()
            self.closed = True

    # -- helpers for writers -------------------------------------------------------
    def snapshot_max_key(self, table) -> bytes | None:
        """The largest row key of ``table`` in the transaction's snapshot (not its own writes)."""
        if table.id in self._snapshot_max:
            return self._snapshot_max[table.id]
        start, end = table.row_range
        key = None
        for k, _v in self.engine.scan(start, end, snapshot=self.snapshot, reverse=True):
            key = k
            break
        self._snapshot_max[table.id] = key
        return key

    def next_rowid(self, table) -> int:
        nxt = self.db.rowid_next.get(table.id)
        if nxt is None:
            key = max_row_key(self.txn, table)
            if key is None:
                nxt = 1
            else:
                (last,), _pos = table.pk_codec.decode(key, len(table.row_prefix))
                nxt = last + 1 if isinstance(last, int) else 1
        if nxt > keys.INT64_MAX:
            raise IntegrityError(f"{table.name}: no row id left (the largest one is taken)")
        self.db.rowid_next[table.id] = nxt + 1
        self.last_rowid = nxt
        return nxt

    def saw_rowid(self, table, value) -> None:
        nxt = self.db.rowid_next.get(table.id)
        if isinstance(value, int):
            self.last_rowid = value
            if nxt is not None and value >= nxt:
                self.db.rowid_next[table.id] = value + 1

    # -- catalog changes -------------------------------------------------------------
    def change_catalog(self) -> Catalog:
        """A private copy of the catalog for a DDL statement of this transaction."""
        new = self.current_catalog().copy()
        self.catalog = new
        return new

    def write_table(self, catalog: Catalog, table: Table) -> None:
        catalog.tables[table.name.lower()] = table
        self.txn.put(Catalog.table_key(table.name), Catalog.encode(table), cf=self.db.catalog_cf)
        self.txn.put(b"meta", catalog.meta_record(), cf=self.db.catalog_cf)

    def drop_table_record(self, catalog: Catalog, table: Table) -> None:
        catalog.tables.pop(table.name.lower(), None)
        self.txn.delete(Catalog.table_key(table.name), cf=self.db.catalog_cf)

    # -- SHOW / DESCRIBE / EXPLAIN -----------------------------------------------------
    def _show_indexes(self, node, catalog) -> Result:
        target = node.this
        tables = [catalog.table(target.name)] if target is not None else sorted(
            catalog.tables.values(), key=lambda t: t.name.lower())
        rows = []
        for t in tables:
            if t.primary_key:
                rows.append((t.name, "PRIMARY", 1, ", ".join(t.primary_key)))
            for i in sorted(t.indexes, key=lambda i: i.name.lower()):
                cols = ", ".join(c + (" DESC" if d else "") for c, d in i.columns)
                rows.append((t.name, i.name, 1 if i.unique else 0, cols))
        return Result(["table_name", "index_name", "unique", "columns"], ["TEXT", "TEXT", "INTEGER", "TEXT"],
                      iter(rows))

    def _describe(self, node, catalog) -> Result:
        target = node.this
        name = target.name if isinstance(target, exp.Table) else target.sql()
        low = name.lower()
        if low in catalog.views and low not in catalog.tables:
            view = catalog.views[low]
            planner = Planner(catalog, Runtime(self), {})
            plan = planner.plan_query(dialect.parse_one(view.sql))
            cols = view.columns or plan.columns
            rows = [(c, t or "", "YES", None, None, None) for c, t in zip(cols, plan.types)]
        else:
            table = catalog.table(name)
            uniques = {i.columns[0][0].lower() for i in table.indexes if i.unique and len(i.columns) == 1}
            rows = []
            for i, c in enumerate(table.columns):
                key = "PRI" if i in table.pk_positions else "UNI" if c.name.lower() in uniques else None
                nullable = "NO" if c.not_null or i in table.pk_positions else "YES"
                rows.append((c.name, c.type, nullable, key, c.default, None))
        return Result(["column_name", "column_type", "null", "key", "default", "extra"],
                      ["TEXT"] * 6, iter(rows))

    def _explain(self, node, values) -> Result:
        inner = node.this
        mapping, names, count = number_params(inner)
        catalog = self.current_catalog()
        rt = Runtime(self)
        planner = Planner(catalog, rt, mapping)
        if isinstance(inner, _QUERY_TYPES):
            root = planner.plan_query(inner).root
        else:
            root = _explain_dml(self, inner, planner)
        return Result(["plan"], ["TEXT"], iter([(line,) for line in root.explain()]))


def _close_quietly(snapshot, finalizing: bool = False) -> None:
    """Close ``snapshot``; from a finalizer (``finalizing``) without blocking (``Snapshot.drop``)."""
    try:
        snapshot.drop() if finalizing else snapshot.close()
    except Exception:  # noqa: BLE001 - closing twice, or after the engine closed
        pass


def _reads(op) -> int:
    """How many separate engine reads a plan makes (2 stands for "more than one")."""
    if isinstance(op, P.TableScan):
        access = op.access
        if access is None or not access.eq or all(len(f) == 1 for f in access.eq):
            return 1
        return 2
    if isinstance(op, (P.IndexScan, P.LookupJoin, P.Materialized)):
        return 2
    return sum(_reads(c) for c in op.children)


def _parse(sql: str):
    try:
        return dialect.parse(sql)
    except RecursionError:
        raise ProgrammingError("statement is too deeply nested") from None


# -- transaction control statements --------------------------------------------

def _begin(session: Session, node) -> Result:
    mode = (node.this or "").upper() if isinstance(node.this, str) else ""
    session.begin(immediate=mode in ("IMMEDIATE", "EXCLUSIVE"))
    return Result()


def _commit(session: Session, node) -> Result:
    if not session.explicit and session.txn is None:
        raise OperationalError("cannot commit - no transaction is active")
    session.commit()
    return Result()


def _rollback(session: Session, node) -> Result:
    name = node.args.get("savepoint")
    if name is not None:
        return _rollback_to(session, name.name)
    if not session.explicit and session.txn is None:
        raise OperationalError("cannot rollback - no transaction is active")
    session.rollback()
    return Result()


def _savepoint(session: Session, node) -> Result:
    name = node.this.name
    if session.txn is None:
        if not session.explicit:
            session.explicit = True
            session._savepoint_began = True  # type: ignore[attr-defined]
        session._take_snapshot()
    token = session.txn.savepoint()
    session.savepoints.append((name.lower(), token, session.catalog))
    return Result()


def _find_savepoint(session: Session, name: str) -> int:
    low = name.lower()
    for i in range(len(session.savepoints) - 1, -1, -1):
        if session.savepoints[i][0] == low:
            return i
    raise OperationalError(f"no such savepoint: {name}")


def _release(session: Session, node) -> Result:
    i = _find_savepoint(session, node.this.name)
    _name, token, _cat = session.savepoints[i]
    session.txn.release(token)
    del session.savepoints[i:]
    if not session.savepoints and getattr(session, "_savepoint_began", False):
        session._savepoint_began = False  # type: ignore[attr-defined]
        session.commit()
    return Result()


def _rollback_to(session: Session, name: str) -> Result:
    i = _find_savepoint(session, name)
    _name, token, catalog = session.savepoints[i]
    session.txn.rollback_to(token)
    session.catalog = catalog
    session.db.rowid_next.clear()
    session._snapshot_max.clear()
    del session.savepoints[i + 1:]
    return Result()


_CONTROL = {
    exp.Transaction: _begin, exp.Commit: _commit, exp.Rollback: _rollback,
    dialect.Savepoint: _savepoint, dialect.Release: _release,
}


# -- planning write statements ---------------------------------------------------

def _plan_statement(session: Session, node: exp.Expr, planner: Planner):
    if isinstance(node, _QUERY_TYPES):
        return planner.plan_query(node)
    handler = _STATEMENTS.get(type(node))
    if handler is None:
        if isinstance(node, dialect.TableDBStatement):
            raise NotSupportedError(f"{type(node).__name__.upper()} is not available yet")
        raise NotSupportedError(f"unsupported statement: {node.sql(dialect='sqlite')[:80]}")
    return handler(session, node, planner)


def _table_of(node: exp.Expr) -> exp.Table:
    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    return target


def _plan_insert(session: Session, node: exp.Insert, planner: Planner):
    target = _table_of(node)
    catalog = planner.catalog
    name = target.name
    if name.lower() in catalog.views:
        raise ProgrammingError(f"cannot modify {name} because it is a view")
    table = catalog.table(name)
    writer = TableWriter(session, table, planner)
    ncols = len(table.columns)
    schema = node.this if isinstance(node.this, exp.Schema) else None
    if schema is not None and schema.expressions:
        positions = []
        for ident in schema.expressions:
            cname = ident.name
            if cname.lower() == "rowid" and table.rowid_alias:
                positions.append(table.pk_positions[0])
                continue
            pos = table.positions.get(cname.lower())
            if pos is None:
                raise ProgrammingError(f"table {table.name} has no column named {cname}")
            if pos in positions:
                raise ProgrammingError(f"column {cname} specified more than once")
            positions.append(pos)
    else:
        positions = list(range(ncols))
    mode = "abort"
    alternative = (node.args.get("alternative") or "").upper()
    if alternative == "REPLACE":
        mode = "replace"
    elif alternative == "IGNORE":
        mode = "ignore"
    conflict = node.args.get("conflict")
    upsert = None
    if conflict is not None:
        action = conflict.args.get("action")
        if conflict.args.get("duplicate"):
            raise NotSupportedError("ON DUPLICATE KEY is not supported; use ON CONFLICT")
        target = _conflict_target(table, conflict)
        if action is not None and "NOTHING" in action.sql().upper():
            if target is None:
                mode = "ignore"
            else:   # a conflict on another constraint still fails the statement
                upsert = _plan_upsert(session, table, conflict, planner, target, nothing=True)
        else:
            upsert = _plan_upsert(session, table, conflict, planner, target)
    source = node.expression
    rt = planner.rt
    if node.args.get("default"):
        rows_fn = lambda: iter([[]])  # noqa: E731
        positions = []
    elif isinstance(source, exp.Values):
        comp = Compiler(planner, Scope([], None), {}, rt)
        compiled = []
        for tup in source.expressions:
            items = tup.expressions if isinstance(tup, exp.Tuple) else [tup]
            compiled.append([comp.compile(i) for i in items])
        for row in compiled:
            if len(row) != len(positions):
                raise ProgrammingError(f"table {table.name} has {ncols} columns but {len(row)} values were supplied"
                                       if schema is None or not schema.expressions else
                                       f"{len(row)} values for {len(positions)} columns")
        if len(compiled) == 1:
            only = compiled[0]
            rows_fn = lambda: ([f(None) for f in only],)  # noqa: E731
        else:
            rows_fn = lambda: ([f(None) for f in row] for row in compiled)  # noqa: E731
    elif isinstance(source, _QUERY_TYPES):
        qplan = planner.plan_query(source)
        if len(qplan.columns) != len(positions):
            raise ProgrammingError(f"table {table.name} has {len(positions)} columns but {len(qplan.columns)} "
                                   f"values were supplied")
        root = qplan.root
        rows_fn = lambda: list(root.rows())  # noqa: E731 - read everything before writing
    else:
        raise NotSupportedError("unsupported INSERT source")
    identity = positions == list(range(ncols))
    prepare = writer.prepare
    insert = writer.insert
    # INSERT INTO t VALUES (?, ?, ...) with every column in order: the parameters are the row
    direct = (identity and isinstance(source, exp.Values) and len(source.expressions) == 1
              and all(isinstance(i, exp.Placeholder) and planner.param_index(i) == k
                      for k, i in enumerate(source.expressions[0].expressions)) and upsert is None)

    # INSERT OR IGNORE skips rows that break NOT NULL or CHECK too (ON CONFLICT DO NOTHING only
    # covers uniqueness); OR REPLACE puts a NOT NULL column's DEFAULT in place of a NULL (SQLite)
    ignore_all = alternative == "IGNORE"
    defaulted = [i for i, c in enumerate(table.columns) if c.not_null and c.default is not None] \
        if mode == "replace" else []
    if ignore_all or defaulted:
        direct = False

    def run(session: Session, values: list) -> int:
        txn = session.txn
        if direct:
            return 1 if insert(txn, prepare(values), mode)[0] else 0
        rt.params = values
        rt.generation += 1
        rt.reader = txn
        count = 0
        for vals in rows_fn():
            if identity:
                full = list(vals)
            else:
                full = [MISSING] * ncols
                for p, v in zip(positions, vals):
                    full[p] = v
            for i in defaulted:
                if full[i] is None:
                    full[i] = MISSING
            if ignore_all:
                try:
                    row = prepare(full)
                except IntegrityError:
                    continue
            else:
                row = prepare(full)
            if upsert is not None:
                count += upsert(txn, writer, row)
                continue
            inserted, _key = insert(txn, row, mode)
            if inserted:
                count += 1
        return count
    run.explain = lambda: P.ExplainOnly(f"Insert into {table.name}")  # type: ignore[attr-defined]
    return run


def _conflict_target(table: Table, conflict: exp.Expr):
    """The constraint an ON CONFLICT (columns) names: "pk", or the UNIQUE index's id; None when it
    names none (any conflict). As in SQLite, the columns must be exactly those of the primary key
    or of one UNIQUE index, in any order; else ProgrammingError."""
    names = []
    for k in conflict.args.get("conflict_keys") or []:
        col = k.this if isinstance(k, exp.Ordered) else k
        if not isinstance(col, exp.Column):
            raise NotSupportedError(f"ON CONFLICT target must be column names: {k.sql()}")
        names.append(col.name.lower())
    if not names:
        if conflict.args.get("constraint") is not None:
            raise NotSupportedError("ON CONFLICT ON CONSTRAINT is not supported; name the columns")
        return None
    for n in names:
        if n not in table.positions:
            raise ProgrammingError(f"no such column: {n}")
    wanted = sorted(table.positions[n] for n in names)
    if not table.hidden_rowid and wanted == sorted(table.pk_positions):
        return "pk"
    for index in table.indexes:
        if index.unique and wanted == sorted(table.positions[c.lower()] for c, _d in index.columns):
            return index.id
    raise ProgrammingError("ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint")


def _plan_upsert(session: Session, table: Table, conflict: exp.Expr, planner: Planner, target=None,
                 nothing: bool = False):
    """ON CONFLICT [(target)] DO UPDATE SET ... (or, with a target, DO NOTHING): returns
    f(txn, writer, row) -> rows changed. With a target only a conflict on that constraint takes
    the action; one on another constraint raises IntegrityError, as a plain INSERT would."""
    sets = conflict.expressions
    cols = [c.name for c in table.columns]
    me = Source(table.name, cols, list(table.types), table=table)
    excluded = Source("excluded", cols, list(table.types))
    excluded.qualified_only = True
    scope = Scope([me, excluded], None)
    layout = {me: 0, excluded: len(cols)}
    comp = Compiler(planner, scope, layout, planner.rt)
    assignments = []
    for eq in sets:
        col = eq.this
        pos = table.positions.get(col.name.lower())
        if pos is None:
            raise ProgrammingError(f"no such column: {col.name}")
        assignments.append((pos, comp.compile(eq.expression)))
    where = conflict.args.get("where")
    where_fn = comp.predicate(where.this if isinstance(where, exp.Where) else where) if where is not None else None

    def upsert(txn, writer: TableWriter, row: list) -> int:
        key = writer.key_of(row, None) if not writer.hidden else None
        taken, others = (writer.conflicts(txn, row, key) if key is not None else (False, []))
        if not taken and not others:
            writer.insert(txn, row)
            return 1
        if target is None:
            okey = key if taken else others[0]
        elif target == "pk":
            okey = key if taken else None
        else:
            okey = writer.unique_holder(txn, row, key, target, taken)
        if okey is None:   # the conflict is on another constraint than the target
            raise writer.unique_error(row, key, taken)
        if nothing:
            return 0
        old = writer.read(txn, okey)
        combined = tuple(old) + tuple(row)
        if where_fn is not None and not where_fn(combined):
            return 0
        new = list(old)
        for pos, fn in assignments:
            new[pos] = fn(combined)
        new = writer.prepare(new)
        writer.update(txn, old, okey, new)
        return 1
    return upsert


def _target_scan(session: Session, planner: Planner, table: Table, where) -> tuple[Any, Source, Scope]:
    """A plan over the rows of ``table`` that match ``where`` (rows carry the rowid last if hidden)."""
    sel = exp.Select(expressions=[exp.Star()]).from_(exp.Table(this=exp.to_identifier(table.name, quoted=True)))
    columns = [c.name for c in table.columns]
    types = list(table.types)
    hidden = 0
    if table.hidden_rowid:
        columns.append("rowid")
        types.append("INTEGER")
        hidden = 1
    source = Source(table.name, columns, types, table=table, hidden=hidden)
    if table.rowid_alias:
        source.positions.setdefault("rowid", table.pk_positions[0])
    scope = Scope([source], None)
    from tabledb.sql.planner import _Conjunct
    conj = [_Conjunct(c, planner._refs(c, scope), True) for c in split_conjuncts(where)]
    for c in conj:
        if "sub" in c.refs:
            c.refs = frozenset({0})
        if not c.refs:
            c.refs = frozenset({0})
    scope.outer_layout = {source: 0}
    op = planner._access(source, conj, scope, {}, None)
    del sel
    return op, source, scope


def _plan_update(session: Session, node: exp.Update, planner: Planner):
    target = node.this
    table = planner.catalog.table(target.name) if target.name.lower() not in planner.catalog.views else None
    if table is None:
        raise ProgrammingError(f"cannot modify {target.name} because it is a view")
    if node.args.get("from_") or node.args.get("from"):
        raise NotSupportedError("UPDATE ... FROM is not supported")
    where = node.args.get("where")
    op, source, scope = _target_scan(session, planner, table, where.this if where is not None else None)
    comp = Compiler(planner, scope, {source: 0}, planner.rt)
    assignments = []
    for eq in node.expressions:
        col = eq.this
        name = col.name
        pos = table.positions.get(name.lower())
        if pos is None:
            if name.lower() == "rowid" and table.rowid_alias:
                pos = table.pk_positions[0]
            else:
                raise ProgrammingError(f"no such column: {name}")
        assignments.append((pos, comp.compile(eq.expression)))
    writer = TableWriter(session, table, planner)
    rt = planner.rt
    ncols = len(table.columns)
    hidden = table.hidden_rowid
    limit = node.args.get("limit")
    if limit is not None or node.args.get("order"):
        raise NotSupportedError("UPDATE ... ORDER BY/LIMIT is not supported")

    def run(session: Session, values: list) -> int:
        rt.params = values
        rt.generation += 1
        rt.reader = session.txn
        txn = session.txn
        matched = list(op.rows())
        count = 0
        for row in matched:
            old = list(row[:ncols])
            key = writer.key_of(old, row[ncols] if hidden else None)
            new = list(old)
            for pos, fn in assignments:
                new[pos] = fn(row)
            new = writer.prepare(new)
            writer.update(txn, old, key, new)
            count += 1
        return count
    run.explain = lambda: _Wrap(f"Update {table.name}", op)  # type: ignore[attr-defined]
    return run


def _plan_delete(session: Session, node: exp.Delete, planner: Planner):
    target = node.this
    if target.name.lower() in planner.catalog.views:
        raise ProgrammingError(f"cannot modify {target.name} because it is a view")
    table = planner.catalog.table(target.name)
    where = node.args.get("where")
    where_node = where.this if where is not None else None
    op, source, scope = _target_scan(session, planner, table, where_node)
    writer = TableWriter(session, table, planner)
    rt = planner.rt
    ncols = len(table.columns)
    hidden = table.hidden_rowid
    # a whole table, or a primary key range with nothing else to check: range tombstones
    ranged = not table.indexes and (
        where_node is None or (isinstance(op, P.TableScan) and op.access is not None and op.residual is None
                               and not op.point))

    def run(session: Session, values: list) -> int:
        rt.params = values
        rt.generation += 1
        rt.reader = session.txn
        txn = session.txn
        if ranged:
            if where_node is None:
                ranges = [table.row_range]
            else:
                ranges = op.access.ranges(())
            if ranges is not None:
                for start, end in ranges:
                    txn.delete_range(start, end if end is not None else keys.prefix_end(table.row_prefix))
                return -1
        matched = list(op.rows())
        for row in matched:
            vals = row[:ncols]
            key = writer.key_of(vals, row[ncols] if hidden else None)
            writer.delete(txn, vals, key)
        return len(matched)
    run.explain = lambda: _Wrap(f"Delete from {table.name}" + (" (range tombstone)" if ranged else ""), op)  # type: ignore[attr-defined]
    return run


class _Wrap(P.Operator):
    def __init__(self, text, child):
        self.text = text
        self.children = (child,)

    def label(self) -> str:
        return self.text


def _explain_dml(session: Session, node, planner: Planner):
    fn = _plan_statement(session, node, planner)
    explain = getattr(fn, "explain", None)
    if explain is None:
        return P.ExplainOnly(type(node).__name__)
    return explain()


# -- DDL -----------------------------------------------------------------------

def _plan_create(session: Session, node: exp.Create, planner: Planner):
    kind = (node.args.get("kind") or "").upper()
    if kind == "TABLE":
        return _plan_create_table(session, node, planner)
    if kind == "INDEX":
        return _plan_create_index(session, node, planner)
    if kind == "VIEW":
        return _plan_create_view(session, node, planner)
    raise NotSupportedError(f"CREATE {kind} is not supported")


def _column_from_def(cdef: exp.ColumnDef, constraints_out: dict) -> Column:
    name = cdef.name
    kind = cdef.args.get("kind")
    if kind is None:
        raise ProgrammingError(f"column {name} needs a type (tabledb tables are strictly typed)")
    ctype = type_name(kind)
    col = Column(name, ctype)
    for cc in cdef.args.get("constraints") or []:
        k = cc.args.get("kind")
        if isinstance(k, exp.NotNullColumnConstraint):
            if not k.args.get("allow_null"):
                col.not_null = True
        elif isinstance(k, exp.PrimaryKeyColumnConstraint):
            if constraints_out.get("pk"):
                raise ProgrammingError("table has more than one primary key")
            constraints_out["pk"] = [name]
            constraints_out["pk_desc"] = bool(k.args.get("desc"))
        elif isinstance(k, exp.UniqueColumnConstraint):
            col.unique = True
        elif isinstance(k, exp.DefaultColumnConstraint):
            constant_default(k.this)
            col.default = k.this.sql(dialect="sqlite")
        elif isinstance(k, exp.CheckColumnConstraint):
            constraints_out.setdefault("checks", []).append(k.this.sql(dialect="sqlite"))
        elif isinstance(k, (exp.CollateColumnConstraint,)):
            raise NotSupportedError("COLLATE on a column is not supported")
        elif isinstance(k, (exp.AutoIncrementColumnConstraint,)):
            pass
        else:
            raise NotSupportedError(f"column constraint not supported: {cc.sql(dialect='sqlite')}")
    return col


def _plan_create_table(session: Session, node: exp.Create, planner: Planner):
    schema = node.this
    query = node.expression
    if isinstance(schema, exp.Schema):
        tname = schema.this.name
        defs = schema.expressions
    else:
        tname = schema.name
        defs = []
    exists_ok = bool(node.args.get("exists"))

    if query is not None:
        qplan = planner.plan_query(query)
        root = qplan.root

        def run_ctas(session: Session, values: list) -> int:
            cat = session.current_catalog()
            if cat.name_taken(tname):
                if exists_ok:
                    return 0
                raise ProgrammingError(f"table {tname} already exists")
            planner.rt.params = values
            planner.rt.generation += 1
            planner.rt.reader = session.txn
            rows = list(root.rows())
            types = []
            for i, st in enumerate(qplan.types):
                types.append(st or _infer_type([r[i] for r in rows]))
            names = _unique_names(qplan.columns)
            cat = session.change_catalog()
            table = Table(cat.next_table_id, tname, [Column(n, t) for n, t in zip(names, types)],
                          created_width=len(names))
            cat.next_table_id += 1
            session.write_table(cat, table)
            p2 = Planner(cat, Runtime(session), {})
            writer = TableWriter(session, table, p2)
            for r in rows:
                writer.insert(session.txn, writer.prepare(list(r)))
            return len(rows)
        return run_ctas

    extra: dict = {}
    columns: list[Column] = []
    for d in defs:
        if isinstance(d, exp.ColumnDef):
            columns.append(_column_from_def(d, extra))
        elif isinstance(d, exp.Identifier):
            raise ProgrammingError(f"column {d.name} needs a type (tabledb tables are strictly typed)")
    if not columns:
        raise ProgrammingError(f"table {tname} must have at least one column")
    names = [c.name.lower() for c in columns]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ProgrammingError(f"duplicate column name: {dup}")
    uniques: list[list[str]] = [[c.name] for c in columns if c.unique]
    for d in defs:
        if isinstance(d, exp.PrimaryKey):
            if extra.get("pk"):
                raise ProgrammingError(f"table \"{tname}\" has more than one primary key")
            extra["pk"] = [e.name if not isinstance(e, exp.Ordered) else e.this.name for e in d.expressions]
        elif isinstance(d, exp.UniqueColumnConstraint):
            uniques.append([e.name for e in d.this.expressions])
        elif isinstance(d, exp.CheckColumnConstraint):
            extra.setdefault("checks", []).append(d.this.sql(dialect="sqlite"))
        elif isinstance(d, exp.ForeignKey):
            raise NotSupportedError("FOREIGN KEY constraints are not supported")
        elif isinstance(d, exp.Constraint):
            for sub in d.expressions:
                if isinstance(sub, exp.PrimaryKey):
                    extra["pk"] = [e.name for e in sub.expressions]
                elif isinstance(sub, exp.UniqueColumnConstraint):
                    uniques.append([e.name for e in sub.this.expressions])
                elif isinstance(sub, exp.CheckColumnConstraint):
                    extra.setdefault("checks", []).append(sub.this.sql(dialect="sqlite"))
                else:
                    raise NotSupportedError(f"constraint not supported: {sub.sql(dialect='sqlite')}")
        elif not isinstance(d, exp.ColumnDef):
            raise NotSupportedError(f"table element not supported: {d.sql(dialect='sqlite')}")
    pk = extra.get("pk") or []
    for c in pk:
        if c.lower() not in names:
            raise ProgrammingError(f"no such column: {c}")
    for u in uniques:
        for c in u:
            if c.lower() not in names:
                raise ProgrammingError(f"no such column: {c}")
    checks = extra.get("checks") or []
    rowid_alias = len(pk) == 1 and columns[names.index(pk[0].lower())].type == "INTEGER" and not extra.get("pk_desc")
    pk = [columns[names.index(c.lower())].name for c in pk]
    # validate CHECK expressions and defaults now
    probe = Table(0, tname, columns, pk, checks)
    TableWriter(session, probe, planner)

    def run(session: Session, values: list) -> int:
        cat = session.current_catalog()
        if cat.name_taken(tname):
            if exists_ok:
                return 0
            raise ProgrammingError(f"table {tname} already exists")
        cat = session.change_catalog()
        table = Table(cat.next_table_id, tname, [Column(c.name, c.type, c.not_null, c.default, c.unique)
                                                 for c in columns], list(pk), list(checks),
                      rowid_alias=rowid_alias, created_width=len(columns))
        cat.next_table_id += 1
        for u in uniques:
            table.indexes.append(Index(table.next_index_id, f"sqlite_autoindex_{tname}_{table.next_index_id}",
                                       [(columns[names.index(c.lower())].name, False) for c in u], True))
            table.next_index_id += 1
        table._derive()
        session.write_table(cat, table)
        return 0
    return run


def _unique_names(names: list[str]) -> list[str]:
    out, seen = [], set()
    for n in names:
        base, k = n, 1
        while n.lower() in seen:
            k += 1
            n = f"{base}:{k}"
        seen.add(n.lower())
        out.append(n)
    return out


def _infer_type(values: list) -> str:
    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            kinds.add("BOOLEAN")
        elif isinstance(v, int):
            kinds.add("INTEGER")
        elif isinstance(v, float):
            kinds.add("REAL")
        elif isinstance(v, str):
            kinds.add("TEXT")
        elif isinstance(v, bytes):
            kinds.add("BLOB")
        elif isinstance(v, _dt.datetime):
            kinds.add("TIMESTAMP")
        elif isinstance(v, _dt.date):
            kinds.add("DATE")
    if not kinds:
        return "TEXT"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"INTEGER", "REAL", "BOOLEAN"}:
        return "REAL"
    return "TEXT"


def _plan_create_index(session: Session, node: exp.Create, planner: Planner):
    idx = node.this
    iname = idx.name
    tname = idx.args["table"].name
    params = idx.args.get("params")
    cols = []
    for o in (params.args.get("columns") if params is not None else None) or []:
        e = o.this if isinstance(o, exp.Ordered) else o
        if not isinstance(e, exp.Column):
            raise NotSupportedError("indexes on expressions are not supported")
        cols.append((e.name, bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False))
    unique = bool(node.args.get("unique"))
    exists_ok = bool(node.args.get("exists"))
    if params is not None and params.args.get("where") is not None:
        raise NotSupportedError("partial indexes are not supported")

    def run(session: Session, values: list) -> int:
        cat = session.current_catalog()
        if cat.find_index(iname) is not None:
            if exists_ok:
                return 0
            raise ProgrammingError(f"index {iname} already exists")
        table = cat.table(tname).clone()
        seen = set()
        resolved = []
        for c, d in cols:
            pos = table.positions.get(c.lower())
            if pos is None:
                raise ProgrammingError(f"no such column: {c}")
            if c.lower() in seen:
                raise ProgrammingError(f"column {c} appears twice in the index")
            seen.add(c.lower())
            resolved.append((table.columns[pos].name, d))
        index = Index(table.next_index_id, iname, resolved, unique)
        table.next_index_id += 1
        table.indexes.append(index)
        table._derive()
        index_range = keys.index_range(table.id, index.id)
        if bulk.can_ingest_files(session) and bulk.build_index(session, table, index):
            # The entries are in the engine (sorted externally, ingested as SSTables whose range
            # tombstone clears the index's range first); the catalog record makes them reachable.
            session.ingested.append(index_range)
            session.renew_snapshot()
            session.write_table(session.change_catalog(), table)
            return 0
        session.write_table(session.change_catalog(), table)
        # Inside a transaction (or no rows to ingest): the entries join its batch, after a range delete
        # that hides any entries an earlier attempt with this index id ingested and never committed.
        txn = session.txn
        txn.delete_range(*index_range)
        iw = IndexWriter(table, index)
        start, end = table.row_range
        for ikey, ivalue, checks in bulk.index_entries(session, table, iw, list(txn.scan(start, end))):
            if checks and txn.get(ikey) is not None:
                raise IntegrityError(f"UNIQUE constraint failed: {iw.label}")
            txn.put(ikey, ivalue)
        return 0
    return run


def _plan_create_view(session: Session, node: exp.Create, planner: Planner):
    target = node.this
    columns = None
    if isinstance(target, exp.Schema):
        columns = [e.name for e in target.expressions]
        target = target.this
    vname = target.name
    query = node.expression
    planner.plan_query(query)  # validate now
    exists_ok = bool(node.args.get("exists"))
    sql = query.sql(dialect="sqlite")

    def run(session: Session, values: list) -> int:
        cat = session.current_catalog()
        if cat.name_taken(vname):
            if exists_ok:
                return 0
            raise ProgrammingError(f"view {vname} already exists" if vname.lower() in cat.views
                                   else f"table {vname} already exists")
        cat = session.change_catalog()
        view = View(vname, sql, columns)
        cat.views[vname.lower()] = view
        session.txn.put(Catalog.view_key(vname), Catalog.encode(view), cf=session.db.catalog_cf)
        return 0
    return run


def _plan_drop(session: Session, node: exp.Drop, planner: Planner):
    kind = (node.args.get("kind") or "").upper()
    exists_ok = bool(node.args.get("exists"))
    names = [t.name for t in node.args.get("tables") or []]

    def run(session: Session, values: list) -> int:
        for name in names:
            cat = session.current_catalog()
            low = name.lower()
            if kind == "TABLE":
                if low not in cat.tables:
                    if low in cat.views:
                        raise ProgrammingError(f"use DROP VIEW to delete view {name}")
                    if exists_ok:
                        continue
                    raise ProgrammingError(f"no such table: {name}")
                table = cat.tables[low]
                cat = session.change_catalog()
                session.drop_table_record(cat, table)
                start, end = table.key_range
                session.txn.delete_range(start, end)
                session.db.rowid_next.pop(table.id, None)
            elif kind == "VIEW":
                if low not in cat.views:
                    if low in cat.tables:
                        raise ProgrammingError(f"use DROP TABLE to delete table {name}")
                    if exists_ok:
                        continue
                    raise ProgrammingError(f"no such view: {name}")
                cat = session.change_catalog()
                del cat.views[low]
                session.txn.delete(Catalog.view_key(name), cf=session.db.catalog_cf)
            elif kind == "INDEX":
                found = cat.find_index(name)
                if found is None:
                    if exists_ok:
                        continue
                    raise ProgrammingError(f"no such index: {name}")
                table, index = found
                if index.name.lower().startswith("sqlite_autoindex_"):
                    raise ProgrammingError("index associated with UNIQUE or PRIMARY KEY constraint cannot be dropped")
                table = table.clone()
                table.indexes = [i for i in table.indexes if i.name.lower() != name.lower()]
                table._derive()
                cat = session.change_catalog()
                session.write_table(cat, table)
                start, end = keys.index_range(table.id, index.id)
                session.txn.delete_range(start, end)
            else:
                raise NotSupportedError(f"DROP {kind} is not supported")
        return 0
    return run


def _plan_truncate(session: Session, node: exp.TruncateTable, planner: Planner):
    names = [t.name for t in node.expressions]

    def run(session: Session, values: list) -> int:
        cat = session.current_catalog()
        for name in names:
            table = cat.table(name)
            for start, end in [table.row_range] + [keys.index_range(table.id, i.id) for i in table.indexes]:
                session.txn.delete_range(start, end)
            session.db.rowid_next.pop(table.id, None)
        return -1
    return run


def _plan_alter(session: Session, node: exp.Alter, planner: Planner):
    if (node.args.get("kind") or "").upper() != "TABLE":
        raise NotSupportedError("only ALTER TABLE is supported")
    tname = node.this.name
    actions = node.args.get("actions") or []
    exists_ok = bool(node.args.get("exists"))

    def run(session: Session, values: list) -> int:
        cat = session.current_catalog()
        if tname.lower() not in cat.tables and exists_ok:
            return 0
        table = cat.table(tname).clone()
        old_name = table.name
        for action in actions:
            if isinstance(action, exp.ColumnDef):
                extra: dict = {}
                col = _column_from_def(action, extra)
                if extra.get("pk"):
                    raise OperationalError("Cannot add a PRIMARY KEY column")
                if col.unique:
                    raise OperationalError("Cannot add a UNIQUE column")
                if col.name.lower() in table.positions:
                    raise ProgrammingError(f"duplicate column name: {col.name}")
                if col.not_null and col.default is None:
                    raise OperationalError("Cannot add a NOT NULL column with default value NULL")
                if col.default is not None:
                    value = Compiler(planner, Scope([], None), {}, planner.rt).compile(
                        dialect.parse_one(col.default))(None)
                    if value is not None:
                        V.coerce_value(value, col.type, f"{table.name}.{col.name}")
                table.columns.append(col)
                table.checks.extend(extra.get("checks") or [])
            elif isinstance(action, exp.AlterRename):
                new = action.this.name
                if session.current_catalog().name_taken(new) and new.lower() != old_name.lower():
                    raise ProgrammingError(f"there is already another table or index with this name: {new}")
                table.name = new
            elif isinstance(action, exp.RenameColumn):
                old = action.this.name
                new = action.args["to"].name
                pos = table.positions.get(old.lower())
                if pos is None:
                    raise ProgrammingError(f"no such column: \"{old}\"")
                if new.lower() in table.positions and new.lower() != old.lower():
                    raise ProgrammingError(f"duplicate column name: {new}")
                table.columns[pos].name = new
                table.primary_key = [new if c.lower() == old.lower() else c for c in table.primary_key]
                for index in table.indexes:
                    index.columns = [(new if c.lower() == old.lower() else c, d) for c, d in index.columns]
                table.checks = [_rename_column_sql(c, old, new) for c in table.checks]
            else:
                raise NotSupportedError(f"ALTER TABLE action not supported: {action.sql(dialect='sqlite')}")
        table._derive()
        cat = session.change_catalog()
        if table.name.lower() != old_name.lower():
            cat.tables.pop(old_name.lower(), None)
            session.txn.delete(Catalog.table_key(old_name), cf=session.db.catalog_cf)
        session.write_table(cat, table)
        return 0
    return run


def _rename_column_sql(sql: str, old: str, new: str) -> str:
    node = dialect.parse_one(sql)
    for col in node.find_all(exp.Column):
        if col.name.lower() == old.lower():
            col.set("this", exp.to_identifier(new))
    return node.sql(dialect="sqlite")


def _plan_backup_statement(session: Session, node, planner: Planner):
    """BACKUP, SHOW BACKUPS, VERIFY BACKUP, RESTORE, DROP BACKUP: planned by tabledb.backup.
    Returns run(session, values) -> Result | int."""
    from tabledb.backup import sql as backup_sql
    return backup_sql.plan_statement(session, node, planner)


def _plan_copy(session: Session, node, planner: Planner):
    """COPY t TO|FROM 'file' [WITH (...)]: planned by tabledb.arrow (pyarrow does the file formats).
    Returns run(session, values) -> rows copied; it runs inside the statement's transaction."""
    from tabledb import arrow
    return arrow.plan_copy(session, node, planner)


_STATEMENTS = {
    dialect.Copy: _plan_copy, exp.Copy: _plan_copy,
    dialect.Backup: _plan_backup_statement, dialect.ShowBackups: _plan_backup_statement,
    dialect.VerifyBackup: _plan_backup_statement, dialect.Restore: _plan_backup_statement,
    dialect.DropBackup: _plan_backup_statement,
    exp.Insert: _plan_insert, exp.Update: _plan_update, exp.Delete: _plan_delete,
    exp.Create: _plan_create, exp.Drop: _plan_drop, exp.TruncateTable: _plan_truncate, exp.Alter: _plan_alter,
}

_ = (InternalError, literal_value, resolve)
