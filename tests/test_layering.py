"""The layers import downwards only: the storage engine knows bytes, never SQL or the layers above."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tabledb"
ABOVE_STORAGE = ("tabledb.sql", "tabledb.dbapi", "tabledb.arrow", "tabledb.shell", "tabledb.cli", "tabledb.backup")


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_storage_never_imports_the_layers_above():
    files = sorted((ROOT / "storage").rglob("*.py"))
    assert files, "tabledb/storage has no modules"
    for path in files:
        bad = sorted(m for m in imported_modules(path) if m.startswith(ABOVE_STORAGE) or m == "sqlglot"
                     or m.startswith(("sqlglot.", "pyarrow", "prompt_toolkit")))
        assert not bad, f"{path.relative_to(ROOT.parent)} imports {bad}"


def test_errors_module_imports_nothing_of_tabledb():
    assert not [m for m in imported_modules(ROOT / "errors.py") if m.startswith("tabledb")]
