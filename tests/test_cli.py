"""The engine console behind `make run` (shell.py), in piped mode."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(db, script: str):
    return subprocess.run([sys.executable, str(ROOT / "shell.py"), str(db)], input=script, text=True,
                          capture_output=True, timeout=60)


def test_piped_commands_print_results(tmp_path):
    r = run(tmp_path / "db", "put b 2\nput a 1\nget a\nget zz\nscan\ndelete_range a b\nscan\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1", "(not found)", "a\t1", "b\t2", "(2 rows)", "b\t2", "(1 rows)"]


def test_data_persist_between_runs(tmp_path):
    assert run(tmp_path / "db", "put k v\n").returncode == 0
    assert run(tmp_path / "db", "get k\n").stdout == "v\n"


def test_first_error_stops_with_status_1(tmp_path):
    r = run(tmp_path / "db", "put a 1\nbogus\nput b 2\n")
    assert r.returncode == 1
    assert "UsageError: unknown command" in r.stderr
    assert run(tmp_path / "db", "scan\n").stdout.splitlines() == ["a\t1", "(1 rows)"]
