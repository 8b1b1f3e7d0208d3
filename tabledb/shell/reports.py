"""What ``.schema`` and ``.stats`` print: the catalog as CREATE statements, the engine's numbers.

Both read below the DB-API through one accessor each (``catalog_of`` and
``engine_stats``), so that a change in those layers touches one line here.
"""

from __future__ import annotations

from tabledb.errors import ProgrammingError
from tabledb.shell.render import human_bytes
from tabledb.shell.script import quote_identifier

AUTOINDEX_PREFIX = "sqlite_autoindex_"   # the indexes behind UNIQUE constraints (named as SQLite names them)


def engine_stats(conn) -> dict:
    """The storage engine's ``stats()`` dict (docs/engine-api.md) behind a DB-API connection."""
    return conn._db.engine.stats()


def catalog_of(conn):
    """The catalog the connection sees (its open transaction's, else the committed one)."""
    return conn._session.current_catalog()


def schema_statements(catalog, only: str | None = None) -> list[str]:
    """CREATE TABLE / INDEX / VIEW statements that rebuild the schema (of one table or view if
    ``only`` names it): tables and their indexes by name, then views."""
    want = only.lower() if only else None
    tables = sorted(catalog.tables.values(), key=lambda t: t.name.lower())
    views = sorted(catalog.views.values(), key=lambda v: v.name.lower())
    if want and not any(x.name.lower() == want for x in [*tables, *views]):
        raise ProgrammingError(f"no such table: {only}")
    out = []
    for t in tables:
        if want and t.name.lower() != want:
            continue
        out.append(_create_table(t))
        for i in sorted(t.indexes, key=lambda i: i.name.lower()):
            if not i.name.startswith(AUTOINDEX_PREFIX):
                cols = ", ".join(quote_identifier(c) + (" DESC" if desc else "") for c, desc in i.columns)
                unique = "UNIQUE " if i.unique else ""
                out.append(f"CREATE {unique}INDEX {quote_identifier(i.name)} ON {quote_identifier(t.name)} ({cols});")
    for v in views:
        if not want or v.name.lower() == want:
            cols = f" ({', '.join(quote_identifier(c) for c in v.columns)})" if v.columns else ""
            out.append(f"CREATE VIEW {quote_identifier(v.name)}{cols} AS {v.sql};")
    return out


def _create_table(t) -> str:
    parts = []
    rowid_alias = t.primary_key[0].lower() if t.rowid_alias else None
    for c in t.columns:
        text = f"{quote_identifier(c.name)} {c.type}"
        if c.name.lower() == rowid_alias:
            text += " PRIMARY KEY"
        if c.not_null:
            text += " NOT NULL"
        if c.default is not None:
            text += f" DEFAULT {c.default}"
        parts.append(text)
    if t.primary_key and not t.rowid_alias:
        parts.append(f"PRIMARY KEY ({', '.join(quote_identifier(c) for c in t.primary_key)})")
    for i in t.indexes:
        if i.name.startswith(AUTOINDEX_PREFIX):
            parts.append(f"UNIQUE ({', '.join(quote_identifier(c) for c, _ in i.columns)})")
    parts.extend(f"CHECK ({check})" for check in t.checks)
    return f"CREATE TABLE {quote_identifier(t.name)} (\n  " + ",\n  ".join(parts) + "\n);"


def format_stats(stats: dict, path) -> str:
    """The engine's stats() as a short report; keys an engine does not report are left out."""
    lines = []

    def add(label: str, value) -> None:
        lines.append(f"{label.ljust(18)}{value}")

    add("database", path)
    if "engine" in stats:
        add("engine", stats["engine"])
    add("sequence", stats.get("sequence", "?"))
    memtable = human_bytes(stats.get("memtable_bytes", 0))
    if stats.get("immutable_memtable_bytes"):
        memtable += f" (+{human_bytes(stats['immutable_memtable_bytes'])} being flushed)"
    if stats.get("memtable_budget"):
        memtable += f" of {human_bytes(stats['memtable_budget'])}"
    add("memtable", memtable)
    levels = stats.get("levels") or []
    files = stats.get("files", sum(lv.get("files", 0) for lv in levels))
    size = stats.get("bytes", sum(lv.get("bytes", 0) for lv in levels))
    add("files", f"{files} ({human_bytes(size)})")
    for lv in levels:
        if lv.get("files"):
            add(f"  L{lv.get('level')}", f"{lv['files']} files, {human_bytes(lv.get('bytes', 0))}")
    cache = stats.get("block_cache") or {}
    if cache:
        hits, misses = cache.get("hits", 0), cache.get("misses", 0)
        rate = f"{100 * hits / (hits + misses):.1f}%" if hits + misses else "-"
        add("block cache", f"hit rate {rate} ({hits} hits, {misses} misses), "
                           f"{human_bytes(cache.get('usage', 0))} of {human_bytes(cache.get('capacity', 0))}")
    table_cache = stats.get("table_cache") or {}
    if table_cache:
        add("table cache", f"{table_cache.get('open', 0)} open of {table_cache.get('capacity', '?')}")
    wal = stats.get("wal") or {}
    if wal:
        parts = []
        if "number" in wal:
            parts.append(f"log #{wal['number']}")
        if "bytes" in wal:
            parts.append(human_bytes(wal["bytes"]))
        if "sync_mode" in wal:
            parts.append(f"sync {wal['sync_mode']}")
        if "syncs" in wal:
            parts.append(f"{wal['syncs']} syncs")
        parts.append(f"torn tail {human_bytes(wal.get('torn_tail_bytes', 0))} at last recovery")
        add("WAL", ", ".join(parts))
    if "flushes" in stats or "compactions" in stats:
        add("background", f"{stats.get('flushes', 0)} flushes, {stats.get('compactions', 0)} compactions, "
                          f"{stats.get('trivial_moves', 0)} trivial moves, "
                          f"{human_bytes(stats.get('bytes_written', 0))} written, "
                          f"{human_bytes(stats.get('bytes_compacted', 0))} compacted")
    if stats.get("slowdowns") or stats.get("stall_seconds"):
        add("write stalls", f"{stats.get('slowdowns', 0)} slowdowns, {stats.get('stall_seconds', 0):.2f} s stalled")
    if "snapshots" in stats:
        add("snapshots", stats["snapshots"])
    if stats.get("background_error"):
        add("background error", stats["background_error"])
    return "\n".join(lines) + "\n"
