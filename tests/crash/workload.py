"""A random SQL workload, the model that predicts its effect, and the child process that runs it.

The crash tests (``test_sigkill.py``, ``test_faults.py``) run random transactions
against tabledb and check the database against :class:`Model`, a plain-Python
picture of the schema and the rows. A transaction is a list of *ops*, each a
JSON-able dict; :func:`statements` turns an op into SQL and :meth:`Model.apply`
into its effect on the model:

    create_table  t                     CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL)
    drop_table    t                     DROP TABLE t
    add_column    t column default      ALTER TABLE t ADD COLUMN column INTEGER DEFAULT default
    create_index  t index columns uniq  CREATE [UNIQUE] INDEX index ON t(col [DESC], ...)
    drop_index    t index               DROP INDEX index
    insert        t rows                INSERT INTO t(cols) VALUES (...)   (executemany)
    update_range  t lo hi da tag        UPDATE t SET a = a + da, b = tag || id, c = c + 1.0 WHERE id BETWEEN lo AND hi
    update_by_a   t a c                 UPDATE t SET c = ? WHERE a = ?
    delete_range  t lo hi               DELETE FROM t WHERE id BETWEEN lo AND hi
    delete_by_a   t a                   DELETE FROM t WHERE a = ?
    delete_all    t                     DELETE FROM t

Values are chosen so every statement succeeds: ``b`` is unique by construction
(``i<id>`` or ``u<tx>:<id>``; a UNIQUE index on it never conflicts), ``c`` holds
quarters (exact in binary), ``a`` small integers (many rows share one).

The child process (``python workload.py run PATH LOG ...``) runs transactions
forever on ``tabledb.connect(PATH)`` with sync on, and appends one JSON line per
event to LOG, outside the database, with ``os.write`` (a SIGKILL loses nothing
written):

    {"t": "begin", "id": n, "ops": [...]}     before the transaction's first statement
    {"t": "ack", "id": n, "seq": s, "stats": {...}}   after commit() returned: acknowledged;
                                              ``seq``: ``SELECT last_sequence()`` then, the
                                              transaction's last sequence (a restore point)
    {"t": "resolved", "id": n, "committed": b [, "seq": s]}   written by the parent after a
                                              kill, for the transaction that was in flight

With ``--backup-to TARGET --backup-every N`` the child also runs ``BACKUP DATABASE
TO 'TARGET'`` after every N-th acknowledged transaction, logging around it (the
crash tests of BACKUP, ``test_backup.py``):

    {"t": "backup_begin", "after": n}          before the statement
    {"t": "backup_done", "after": n, "id": ..., "sequence": B, "seconds": ...}   after it returned

On start the child rebuilds its model by replaying LOG (acknowledged and
resolved-committed transactions), so many runs continue one history.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass, field

BASE_COLUMNS = ("id", "a", "b", "c")
BASE_DEFAULTS = (None, None, None, None)
MAX_TABLES = 4
MAX_ROWS = 1500   # per table: keeps every check quick


# =============================================================================================
# The model


@dataclass
class TableState:
    name: str
    columns: list = field(default_factory=lambda: list(BASE_COLUMNS))
    defaults: list = field(default_factory=lambda: list(BASE_DEFAULTS))
    indexes: dict = field(default_factory=dict)   # name -> (((column, desc), ...), unique)
    rows: dict = field(default_factory=dict)      # id -> tuple of values (replaced, never mutated)
    next_id: int = 1

    def clone(self) -> "TableState":
        return TableState(self.name, list(self.columns), list(self.defaults), dict(self.indexes),
                          dict(self.rows), self.next_id)

    def position(self, column: str) -> int:
        return self.columns.index(column)


class Model:
    """The schema and rows the database must hold. ``fork()`` is cheap (copy on write per table)."""

    def __init__(self, tables: dict | None = None, next_table: int = 0):
        self.tables: dict[str, TableState] = tables if tables is not None else {}
        self.next_table = next_table
        self._owned: set[str] = set(self.tables) if tables is None else set()

    def fork(self) -> "Model":
        return Model(dict(self.tables), self.next_table)

    def _mine(self, name: str) -> TableState:
        if name not in self._owned:
            self.tables[name] = self.tables[name].clone()
            self._owned.add(name)
        return self.tables[name]

    def apply(self, op: dict) -> None:
        kind, name = op["op"], op.get("table")
        if kind == "create_table":
            self.tables[name] = TableState(name)
            self._owned.add(name)
            self.next_table = max(self.next_table, int(name[1:]) + 1)
            return
        if kind == "drop_table":
            del self.tables[name]
            self._owned.discard(name)
            return
        t = self._mine(name)
        if kind == "add_column":
            t.columns.append(op["column"])
            t.defaults.append(op["default"])
            t.rows = {k: r + (op["default"],) for k, r in t.rows.items()}
        elif kind == "create_index":
            t.indexes[op["index"]] = (tuple((c, bool(d)) for c, d in op["columns"]), bool(op["unique"]))
        elif kind == "drop_index":
            del t.indexes[op["index"]]
        elif kind == "insert":
            for row in op["rows"]:
                t.rows[row[0]] = tuple(row)
                t.next_id = max(t.next_id, row[0] + 1)
        elif kind == "update_range":
            for k in [k for k in t.rows if op["lo"] <= k <= op["hi"]]:
                r = list(t.rows[k])
                r[1] = None if r[1] is None else r[1] + op["da"]
                r[2] = f"{op['tag']}{k}"
                r[3] = None if r[3] is None else r[3] + 1.0
                t.rows[k] = tuple(r)
        elif kind == "update_by_a":
            for k, r in list(t.rows.items()):
                if r[1] == op["a"]:
                    t.rows[k] = r[:3] + (op["c"],) + r[4:]
        elif kind == "delete_range":
            t.rows = {k: r for k, r in t.rows.items() if not op["lo"] <= k <= op["hi"]}
        elif kind == "delete_by_a":
            t.rows = {k: r for k, r in t.rows.items() if r[1] != op["a"]}
        elif kind == "delete_all":
            t.rows = {}
        else:
            raise ValueError(f"unknown op {kind}")

    def state(self) -> dict:
        """What :func:`read_state` reads back from a database in this state."""
        out = {}
        for name, t in self.tables.items():
            indexes = frozenset((i, u, ", ".join(c + (" DESC" if d else "") for c, d in cols))
                                for i, (cols, u) in t.indexes.items())
            out[name] = {"columns": tuple(t.columns), "indexes": indexes,
                         "rows": sorted(t.rows.values(), key=lambda r: r[0])}
        return out


# =============================================================================================
# SQL


def statements(op: dict) -> list[tuple[str, object, bool]]:
    """``(sql, parameters, many)`` for one op; ``many``: run with executemany."""
    kind, t = op["op"], op.get("table")
    if kind == "create_table":
        return [(f"CREATE TABLE {t}(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL)", (), False)]
    if kind == "drop_table":
        return [(f"DROP TABLE {t}", (), False)]
    if kind == "add_column":
        return [(f"ALTER TABLE {t} ADD COLUMN {op['column']} INTEGER DEFAULT {op['default']}", (), False)]
    if kind == "create_index":
        cols = ", ".join(c + (" DESC" if d else "") for c, d in op["columns"])
        unique = "UNIQUE " if op["unique"] else ""
        return [(f"CREATE {unique}INDEX {op['index']} ON {t}({cols})", (), False)]
    if kind == "drop_index":
        return [(f"DROP INDEX {op['index']}", (), False)]
    if kind == "insert":
        width = len(op["rows"][0])
        cols = ", ".join(list(BASE_COLUMNS) + [f"d{i}" for i in range(1, width - len(BASE_COLUMNS) + 1)])
        marks = ", ".join("?" * width)
        return [(f"INSERT INTO {t}({cols}) VALUES ({marks})", [tuple(r) for r in op["rows"]], True)]
    if kind == "update_range":
        return [(f"UPDATE {t} SET a = a + ?, b = ? || id, c = c + 1.0 WHERE id BETWEEN ? AND ?",
                 (op["da"], op["tag"], op["lo"], op["hi"]), False)]
    if kind == "update_by_a":
        return [(f"UPDATE {t} SET c = ? WHERE a = ?", (op["c"], op["a"]), False)]
    if kind == "delete_range":
        return [(f"DELETE FROM {t} WHERE id BETWEEN ? AND ?", (op["lo"], op["hi"]), False)]
    if kind == "delete_by_a":
        return [(f"DELETE FROM {t} WHERE a = ?", (op["a"],), False)]
    if kind == "delete_all":
        return [(f"DELETE FROM {t}", (), False)]
    raise ValueError(f"unknown op {kind}")


def run_op(conn, op: dict) -> None:
    for sql, params, many in statements(op):
        if many:
            conn.executemany(sql, params)
        else:
            conn.execute(sql, params)


def run_transaction(conn, ops: list) -> None:
    """Every op, then commit(). On an error the transaction is rolled back and the error re-raised."""
    try:
        for op in ops:
            run_op(conn, op)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def read_state(conn) -> dict:
    """The schema and rows of every table, in the shape of :meth:`Model.state`."""
    out = {}
    for (name,) in conn.execute("SHOW TABLES").fetchall():
        columns = tuple(r[0] for r in conn.execute(f"DESCRIBE {name}").fetchall())
        indexes = frozenset((i, bool(u), cols) for _t, i, u, cols in conn.execute(f"SHOW INDEXES FROM {name}")
                            .fetchall() if i != "PRIMARY")
        rows = conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
        out[name] = {"columns": columns, "indexes": indexes, "rows": rows}
    return out


def diff_states(got: dict, want: dict, limit: int = 6) -> str:
    """A short description of how two states differ ('' when equal)."""
    lines = []
    for name in sorted(set(got) | set(want)):
        g, w = got.get(name), want.get(name)
        if g is None or w is None:
            lines.append(f"table {name}: {'missing' if g is None else 'unexpected'}")
            continue
        for part in ("columns", "indexes"):
            if g[part] != w[part]:
                lines.append(f"{name}.{part}: got {sorted(g[part]) if part == 'indexes' else g[part]}, "
                             f"want {sorted(w[part]) if part == 'indexes' else w[part]}")
        if g["rows"] != w["rows"]:
            gr, wr = {r[0]: r for r in g["rows"]}, {r[0]: r for r in w["rows"]}
            bad = [k for k in sorted(set(gr) | set(wr)) if gr.get(k) != wr.get(k)]
            lines.append(f"{name}: {len(bad)} rows differ, e.g. " +
                         "; ".join(f"id {k}: got {gr.get(k)} want {wr.get(k)}" for k in bad[:limit]))
    return "\n".join(lines)


def index_checks(conn, model: Model, rng: random.Random) -> int:
    """For each index, queries that EXPLAIN shows going through it, compared with a full scan.

    ``lead >= min`` (every row whose leading column is not NULL) and ``lead = v`` for a
    random stored value. Returns how many index queries ran; raises AssertionError on a
    disagreement or when the planner does not use the index."""
    ran = 0
    for t in model.tables.values():
        full = conn.execute(f"SELECT * FROM {t.name}").fetchall()
        for iname, (cols, _unique) in sorted(t.indexes.items()):
            lead = cols[0][0]
            p = t.position(lead)
            values = sorted({r[p] for r in full if r[p] is not None})
            if not values:
                continue
            for sql, params, want in (
                    (f"SELECT * FROM {t.name} WHERE {lead} >= ?", (values[0],),
                     [r for r in full if r[p] is not None]),
                    (f"SELECT * FROM {t.name} WHERE {lead} = ?", (v := rng.choice(values),),
                     [r for r in full if r[p] == v])):
                plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql).fetchall())
                assert f"index {iname} " in plan, f"{sql} does not use {iname}:\n{plan}"
                got = conn.execute(sql, params).fetchall()
                assert sorted(got) == sorted(want), (
                    f"{t.name}.{iname}: the index query {sql} {params} found {len(got)} rows, the full scan "
                    f"{len(want)}; only by index: {sorted(set(got) - set(want))[:3]}, "
                    f"only by scan: {sorted(set(want) - set(got))[:3]}")
                ran += 1
    return ran


# =============================================================================================
# Generating transactions


class Generator:
    """Random transactions that are valid for the model they are generated against."""

    def __init__(self, rng: random.Random, ddl: float = 0.08):
        self.rng = rng
        self.ddl = ddl
        self._serial = 0   # numbers the indexes made within one transaction

    def transaction(self, model: Model, txid: int, max_ops: int = 4) -> list[dict]:
        """1..max_ops ops, each applied to ``model`` (a fork) as it is made."""
        ops = []
        self._serial = 0
        for _ in range(self.rng.randint(1, max_ops)):
            op = self.op(model, txid)
            model.apply(op)
            ops.append(op)
        return ops

    def op(self, model: Model, txid: int) -> dict:
        rng = self.rng
        if not model.tables or (len(model.tables) < MAX_TABLES and rng.random() < self.ddl / 2):
            return {"op": "create_table", "table": f"t{model.next_table}"}
        t = model.tables[rng.choice(sorted(model.tables))]
        if rng.random() < self.ddl:
            return self._ddl(model, t, txid)
        n = len(t.rows)
        roll = rng.random()
        if roll < 0.45 or n < 20:
            if n >= MAX_ROWS:
                return self._delete(t)
            return self._insert(t)
        if roll < 0.65:
            lo = rng.choice(list(t.rows))
            return {"op": "update_range", "table": t.name, "lo": lo, "hi": lo + rng.randint(0, 30),
                    "da": rng.randint(-2, 2), "tag": f"u{txid}:"}
        if roll < 0.75:
            return {"op": "update_by_a", "table": t.name, "a": rng.randint(0, 20), "c": rng.randint(0, 400) / 4}
        return self._delete(t)

    def _insert(self, t: TableState) -> dict:
        rng = self.rng
        rows = []
        nid = t.next_id + rng.choice([0, 0, 0, 1, 5])
        for _ in range(rng.choice([1, 1, 2, 5, 20, 60])):
            row = [nid, rng.randint(0, 20) if rng.random() > 0.05 else None,
                   f"i{nid}" if rng.random() > 0.1 else None,
                   rng.randint(-400, 400) / 4 if rng.random() > 0.1 else None]
            row += [rng.randint(-5, 5) if rng.random() > 0.2 else None for _ in t.columns[4:]]
            rows.append(row)
            nid += rng.choice([1, 1, 1, 2])
        return {"op": "insert", "table": t.name, "rows": rows}

    def _delete(self, t: TableState) -> dict:
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            return {"op": "delete_all", "table": t.name}
        if roll < 0.7 and t.rows:
            lo = rng.choice(list(t.rows))
            return {"op": "delete_range", "table": t.name, "lo": lo, "hi": lo + rng.randint(0, 60)}
        return {"op": "delete_by_a", "table": t.name, "a": rng.randint(0, 20)}

    def _ddl(self, model: Model, t: TableState, txid: int) -> dict:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1 and len(model.tables) > 1:
            return {"op": "drop_table", "table": t.name}
        if roll < 0.3 and len(t.columns) < 7:
            return {"op": "add_column", "table": t.name, "column": f"d{len(t.columns) - 3}",
                    "default": rng.randint(-3, 3)}
        if roll < 0.5 and t.indexes:
            return {"op": "drop_index", "table": t.name, "index": rng.choice(sorted(t.indexes))}
        leads = {cols[0][0] for cols, _u in t.indexes.values()}
        free = [c for c in t.columns[1:] if c not in leads]
        if not free:
            return {"op": "drop_index", "table": t.name, "index": rng.choice(sorted(t.indexes))}
        lead = rng.choice(free)
        cols = [[lead, rng.random() < 0.3]]
        if rng.random() < 0.4:
            cols.append([rng.choice([c for c in t.columns[1:] if c != lead]), rng.random() < 0.3])
        unique = lead == "b" and len(cols) == 1 and rng.random() < 0.7
        self._serial += 1
        return {"op": "create_index", "table": t.name, "index": f"{t.name}_x{txid}_{self._serial}", "columns": cols,
                "unique": unique}


# =============================================================================================
# The log of issued and acknowledged transactions


@dataclass
class Issued:
    id: int
    ops: list
    acked: bool = False
    committed: bool | None = None   # None: unresolved (in flight when the writer died)
    seq: int | None = None          # its last sequence, when the log says (see model_at)


def read_history(path: str) -> tuple[list[Issued], int]:
    """The transactions in LOG, in order, and the byte length of its whole lines (a line cut by a
    kill is not part of the log)."""
    with open(path, "rb") as f:
        data = f.read()
    whole = data.rfind(b"\n") + 1
    txs: dict[int, Issued] = {}
    order: list[Issued] = []
    for line in data[:whole].splitlines():
        ev = json.loads(line)
        if ev["t"] == "begin":
            assert ev["id"] not in txs, f"transaction {ev['id']} begun twice"
            txs[ev["id"]] = tx = Issued(ev["id"], ev["ops"])
            order.append(tx)
        elif ev["t"] == "ack":
            txs[ev["id"]].acked = True
            txs[ev["id"]].committed = True
            txs[ev["id"]].seq = ev.get("seq")
        elif ev["t"] == "resolved":
            txs[ev["id"]].committed = ev["committed"]
            txs[ev["id"]].seq = ev.get("seq")
    return order, whole


def model_of(txs: list[Issued], upto_unresolved: bool = False) -> Model:
    """The model after every committed transaction (and, with ``upto_unresolved``, the unresolved one)."""
    model = Model()
    for tx in txs:
        if tx.committed or (upto_unresolved and tx.committed is None):
            for op in tx.ops:
                model.apply(op)
    return model


def model_at(txs: list[Issued], sequence: int) -> Model:
    """The model after every committed transaction whose last sequence is <= ``sequence``: the state a
    backup or a restore cut at ``sequence`` holds. Needs the sequences in the log (``seq``)."""
    model = Model()
    for tx in txs:
        if tx.committed:
            assert tx.seq is not None, f"transaction {tx.id} has no sequence in the log"
            if tx.seq > sequence:
                break
            for op in tx.ops:
                model.apply(op)
    return model


class EventLog:
    """Appends events to LOG with one ``os.write`` each (O_APPEND: whole lines, in order)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event) -> None:
        os.write(self.fd, json.dumps(event, separators=(",", ":")).encode() + b"\n")


# =============================================================================================
# The child process


ENGINE_OPTIONS = {"memtable_bytes": 16384, "block_size": 1024, "target_file_bytes": 32768,
                  "level1_bytes": 131072, "l0_compaction_trigger": 2}


def run_forever(args) -> None:
    import tabledb

    txs, _ = read_history(args.log) if os.path.exists(args.log) else ([], 0)
    unresolved = [tx.id for tx in txs if tx.committed is None]
    assert not unresolved, f"transactions {unresolved} were never resolved"
    model = model_of(txs)
    txid = max([tx.id for tx in txs], default=0)
    rng = random.Random(args.seed)
    gen = Generator(rng, ddl=args.ddl)
    log = EventLog(args.log)
    conn = tabledb.connect(args.path, sync_mode=args.sync_mode, memtable_bytes=args.memtable_bytes,
                           **{k: v for k, v in ENGINE_OPTIONS.items() if k != "memtable_bytes"})
    engine = conn._db.engine   # for flush/compaction counts only
    while True:
        txid += 1
        work = model.fork()
        ops = gen.transaction(work, txid)
        log.write(t="begin", id=txid, ops=ops)
        run_transaction(conn, ops)
        seq = conn.execute("SELECT last_sequence()").fetchone()[0]
        if txid % 8 == 0:
            st = engine.stats()
            log.write(t="ack", id=txid, seq=seq, stats={"flushes": st["flushes"], "compactions": st["compactions"]})
        else:
            log.write(t="ack", id=txid, seq=seq)
        model = work
        if args.backup_to and args.backup_every and txid % args.backup_every == 0:
            run_backup(conn, log, args.backup_to, txid)


def run_backup(conn, log: EventLog, target: str, after: int) -> None:
    """BACKUP DATABASE TO target, logged before and after."""
    log.write(t="backup_begin", after=after)
    started = time.monotonic()
    cur = conn.execute(f"BACKUP DATABASE TO '{target}'")
    row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    log.write(t="backup_done", after=after, id=row["backup_id"], sequence=row["sequence"],
              seconds=round(time.monotonic() - started, 4))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run"])
    p.add_argument("path")
    p.add_argument("log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sync-mode", default="group")
    p.add_argument("--memtable-bytes", type=int, default=ENGINE_OPTIONS["memtable_bytes"])
    p.add_argument("--ddl", type=float, default=0.08)
    p.add_argument("--backup-to", default=None, help="a backup target: BACKUP DATABASE TO it now and then")
    p.add_argument("--backup-every", type=int, default=0, help="BACKUP after every N-th acknowledged transaction")
    args = p.parse_args()
    run_forever(args)


if __name__ == "__main__":
    main()
