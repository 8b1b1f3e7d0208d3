"""The backup package's core (target, archive, backup, restore, verify) knows the storage engine only;
the SQL-aware part is tables.py and sql.py. Importing the package does not load pyarrow."""

from __future__ import annotations

import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from test_layering import imported_modules  # noqa: E402

PACKAGE = pathlib.Path(__file__).resolve().parent.parent.parent / "tabledb" / "backup"
CORE = ["__init__.py", "repository.py", "archive.py", "backup.py", "restoring.py", "verify.py"]


def test_core_modules_do_not_import_sql():
    for name in CORE:
        bad = sorted(m for m in imported_modules(PACKAGE / name)
                     if m.startswith(("tabledb.sql", "tabledb.dbapi", "tabledb.arrow", "tabledb.shell", "sqlglot")))
        assert not bad, f"tabledb/backup/{name} imports {bad}"


def test_importing_tabledb_does_not_load_pyarrow():
    code = "import sys, tabledb, tabledb.backup; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
