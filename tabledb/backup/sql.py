"""The SQL statements of backup, planned for ``tabledb.sql.session`` (``_plan_backup_statement``).

    BACKUP DATABASE TO 'target' [WITH (incremental = true|false, wal_archive = true|false, label = 'text')]
    BACKUP TABLE t [, u ...] TO 'target' [WITH (...)]
        -> backup_id, kind, parent_id, sequence, created_at, files_copied, bytes_copied, files_total, bytes_total
    SHOW BACKUPS FROM 'target'
        -> backup_id, kind, parent_id, label, sequence, created_at, bytes_total, tables
    VERIFY BACKUP [id | LATEST] FROM 'target'          (no id: every backup)
        -> file, bytes, status
    RESTORE DATABASE FROM 'target' [BACKUP id | LATEST] [AS OF TIMESTAMP '...' | AS OF SEQUENCE n] INTO 'path'
        -> path, backup_id, sequence, restored_to, files, bytes, wal_records
    RESTORE TABLE t [AS new] FROM 'target' [BACKUP id | LATEST] [AS OF ...]
        -> table_name, rows, backup_id, sequence, restored_to
    DROP BACKUP id FROM 'target'
        -> backup_id, files_removed, bytes_removed

All but RESTORE TABLE write nothing into the database: the session runs them
without its writer lock (``Prepared.outside``), so a BACKUP neither waits for
another connection's open write transaction nor holds up writers while it
copies; they refuse to run inside an explicit transaction or after uncommitted
writes of their own session (``_outside_transaction``). RESTORE TABLE writes its
table in the statement's transaction, as any write statement.
"""

from __future__ import annotations

from contextlib import contextmanager

from tabledb.errors import OperationalError, ProgrammingError
from tabledb.sql import dialect
from tabledb.sql.session import Result
from tabledb.backup import backup as backup_mod
from tabledb.backup import restoring as restore_mod
from tabledb.backup import tables as tables_mod
from tabledb.backup import verify as verify_mod

BACKUP_OPTIONS = {"incremental", "wal_archive", "label"}


def plan_statement(session, node, planner):
    """Return ``run(session, values) -> Result`` for one backup statement."""
    if isinstance(node, dialect.Backup):
        return _plan_backup(node)
    if isinstance(node, dialect.ShowBackups):
        return _plan_show(node)
    if isinstance(node, dialect.VerifyBackup):
        return _plan_verify(node)
    if isinstance(node, dialect.Restore):
        return _plan_restore(node)
    if isinstance(node, dialect.DropBackup):
        return _plan_drop(node)
    raise ProgrammingError(f"not a backup statement: {type(node).__name__}")


def _result(columns, types, rows) -> Result:
    return Result(list(columns), list(types), iter([tuple(r[c] for c in columns) for r in rows]))


@contextmanager
def _outside_transaction(session, statement: str, reads_database: bool = True):
    """Run a statement that writes nothing into the database outside any transaction, and
    read afresh afterwards (a writer lock the session holds is given back first: holding it
    would only stop other connections' writers for as long as the copy takes).

    Inside a transaction (BEGIN, or uncommitted writes): BACKUP (``reads_database``) raises
    OperationalError -- it would back up the committed state without the transaction's writes,
    a surprise -- while the statements that only touch the target or a new database (SHOW,
    VERIFY, DROP BACKUP, RESTORE DATABASE ... INTO) run and leave the transaction as it is."""
    txn = session.txn
    if session.explicit or (txn is not None and len(txn)):
        if not reads_database:
            yield
            return
        raise OperationalError(f"{statement} cannot run inside a transaction: commit or roll back first")
    if session.holds_writer:
        session.db.release_writer(session)
        session.holds_writer = False
    try:
        yield
    finally:
        # Others may have committed meanwhile: the (empty) transaction must not read the old snapshot.
        # Without one it reads the latest state, as a session does before its first statement; the next
        # read statement takes a fresh snapshot, and a write reads the latest state under the writer lock.
        old = session.snapshot
        if old is not None and txn is not None and session.txn is txn:
            session.snapshot = None
            txn.rebase(None)   # it has no pending writes: checked above
            try:
                old.close()
            except Exception:  # noqa: BLE001
                pass


def _bool_option(options: dict, name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ProgrammingError(f"option {name} must be true or false, not {value!r}")


def _plan_backup(node):
    options = node.options()
    unknown = sorted(set(options) - BACKUP_OPTIONS)
    if unknown:
        raise ProgrammingError(f"unknown BACKUP option(s): {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(BACKUP_OPTIONS))})")
    incremental = _bool_option(options, "incremental", True)
    wal_archive = _bool_option(options, "wal_archive", True)
    label = options.get("label")
    if label is not None and not isinstance(label, str):
        raise ProgrammingError("option label must be a string")
    names = node.table_names if node.args.get("kind") == "TABLE" else None
    target = node.target

    def run(session, values):
        with _outside_transaction(session, "BACKUP"):
            row = backup_database(session.db, target, incremental=incremental, wal_archive=wal_archive,
                                  label=label, tables=names)
        return _result(backup_mod.BACKUP_COLUMNS, backup_mod.BACKUP_TYPES, [row])
    return run


def backup_database(db, target, *, incremental=True, wal_archive=True, label=None, tables=None, progress=None):
    """Back up the open database ``db`` (a ``tabledb.sql.database.Database``); ``tables``: names, or None."""
    key_ranges = None
    if tables is not None:
        tables, key_ranges = tables_mod.table_key_ranges(db.catalog, tables)
    return backup_mod.backup_engine(db.engine, target, incremental=incremental, wal_archive=wal_archive,
                                    label=label, tables=tables, key_ranges=key_ranges, progress=progress,
                                    archive_interval=getattr(db, "wal_archive_interval", None))


def _plan_show(node):
    target = node.target

    def run(session, values):
        with _outside_transaction(session, "SHOW BACKUPS", reads_database=False):
            rows = backup_mod.list_backups(target)
        return _result(backup_mod.SHOW_COLUMNS, backup_mod.SHOW_TYPES, rows)
    return run


def _plan_verify(node):
    target = node.target
    backup = "LATEST" if node.args.get("latest") else node.args.get("backup")

    def run(session, values):
        with _outside_transaction(session, "VERIFY BACKUP", reads_database=False):
            rows = verify_mod.verify_backup(target, backup)
        return _result(verify_mod.VERIFY_COLUMNS, verify_mod.VERIFY_TYPES, rows)
    return run


def _as_of(node):
    if node.args.get("as_of_sequence") is not None:
        return int(node.args["as_of_sequence"])
    if node.args.get("as_of_timestamp") is not None:
        return node.as_of_datetime()
    return None


def _plan_restore(node):
    target = node.target
    backup = "LATEST" if node.args.get("latest") else node.args.get("backup")
    as_of = _as_of(node)
    if node.args.get("kind") == "DATABASE":
        path = node.args.get("path")

        def run(session, values):
            with _outside_transaction(session, "RESTORE DATABASE", reads_database=False):
                row = tables_mod.restore(target, path, backup, as_of)
            return _result(restore_mod.RESTORE_COLUMNS, restore_mod.RESTORE_TYPES, [row])
        return run
    table, new_name = node.table_name, node.new_name

    def run_table(session, values):
        row = tables_mod.restore_table(session, target, table, new_name, backup, as_of)
        return _result(tables_mod.RESTORE_TABLE_COLUMNS, tables_mod.RESTORE_TABLE_TYPES, [row])
    return run_table


def _plan_drop(node):
    target, backup = node.target, node.args["backup"]

    def run(session, values):
        with _outside_transaction(session, "DROP BACKUP", reads_database=False):
            row = verify_mod.drop_backup(target, backup)
        return _result(verify_mod.DROP_COLUMNS, verify_mod.DROP_TYPES, [row])
    return run
