"""Backup, WAL archiving, point-in-time restore and verification for tabledb databases.

Python API (the SQL statements are in ``sql.py``)::

    conn.backup(target, incremental=True, wal_archive=True, label=None, tables=None, progress=None) -> dict
    tabledb.restore(target, path, backup=None, as_of=None, progress=None) -> dict
    tabledb.verify_backup(target, backup=None, progress=None) -> [{"file", "bytes", "status"}, ...]
    tabledb.backup.list_backups(target) -> [dict, ...]          # SHOW BACKUPS
    tabledb.backup.drop_backup(target, backup_id) -> dict        # DROP BACKUP

``target``: a local directory, a ``file://`` URI, or any URI ``pyarrow.fs`` opens
(``s3://bucket/prefix?endpoint_override=...``). ``progress(done_bytes, total_bytes)``
is called as bytes are copied or checked. ``backup``: an id, "LATEST", or None;
``as_of``: a sequence number (int), a datetime (naive = UTC) or an ISO-8601 string.

How it fits together (one concept per module):

- ``repository.py``: the target and its layout (docs/format.md, "Backup target
  layout"); objects appear whole; metadata carries its own CRC.
- ``backup.py``: BACKUP: ``Engine.backup_view`` seals the WAL at sequence B and pins
  the SSTables plus the sealed segments not yet flushed, while writers go on; what
  the target lacks is copied (paced while writers are busy, so they keep most of the
  machine), then the WAL up to B, then the metadata, last.
- ``archive.py``: keeps copying sealed WAL segments to the target (the engine
  holds them until copied), sealing the active one every ``wal_archive_interval``
  seconds.
- ``restoring.py``: copy and check every file, pick the archived WAL records up to
  the requested commit, assemble a database with a new WAL epoch, rename into place.
- ``verify.py``: VERIFY BACKUP (every byte re-read) and DROP BACKUP.
- ``tables.py`` and ``sql.py``: the SQL-aware layer: table backups, RESTORE TABLE,
  the statements.

Importing this package is cheap: pyarrow is loaded when a function runs.
"""

from __future__ import annotations


def restore(target, path, backup=None, as_of=None, progress=None) -> dict:
    """Build a new database at ``path`` (which must not exist) from the backups in ``target``.

    ``backup`` None and ``as_of`` None: the latest state the target holds (the newest backup
    and every WAL record archived after it). A backup named (id or "LATEST") without ``as_of``:
    exactly that backup. With ``as_of``: the state after the last commit at or before that
    sequence or time. Returns {"path", "backup_id", "sequence", "restored_to", "files", "bytes",
    "wal_records", ...}. Every checksum is checked before the database is first opened; a missing
    or damaged file raises CorruptionError naming it and leaves nothing at ``path``.
    """
    from tabledb.backup import tables
    return tables.restore(target, path, backup, as_of, progress)


def verify_backup(target, backup=None, progress=None) -> list[dict]:
    """Re-read every byte of a backup (an id, "LATEST", or None for all) and its archived WAL:
    one {"file", "bytes", "status": "ok" | "missing" | "corrupt"} per file."""
    from tabledb.backup import verify
    return verify.verify_backup(target, backup, progress)


def list_backups(target) -> list[dict]:
    """SHOW BACKUPS: every complete backup in ``target``, oldest first."""
    from tabledb.backup import backup
    return backup.list_backups(target)


def drop_backup(target, backup_id) -> dict:
    """DROP BACKUP: remove one backup and the files no other backup uses."""
    from tabledb.backup import verify
    return verify.drop_backup(target, backup_id)


__all__ = ["restore", "verify_backup", "list_backups", "drop_backup"]
