"""docs/reliability.md lists each guarantee with the test that checks it: every test it names exists.

A name is ``tests/<file>.py::<function>`` (that file defines that function) or a
bare ``test_<name>`` (some file under tests/ defines it); every row of a
``| Guarantee | Test |`` table names at least one.
"""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "reliability.md")

FULL = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
BARE = re.compile(r"`(test_\w+)`")


def _defined_tests() -> dict[str, set[str]]:
    """{path relative to the repo: names of the functions it defines}, for every .py file under tests/."""
    out = {}
    for root, _dirs, files in os.walk(os.path.join(REPO, "tests")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    out[os.path.relpath(path, REPO)] = set(re.findall(r"^\s*def (\w+)\(", f.read(), re.M))
    return out


def _guarantee_rows(text: str) -> list[str]:
    rows, in_table = [], False
    for line in text.splitlines():
        if line.startswith("| Guarantee | Test |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            rows.append(line)
    return rows


def test_every_test_the_reliability_doc_names_exists():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    defined = _defined_tests()
    anywhere = set().union(*defined.values())
    missing = [f"{path}::{name}" for path, name in FULL.findall(text) if name not in defined.get(path, ())]
    missing += [name for name in BARE.findall(text) if name not in anywhere]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
    rows = _guarantee_rows(text)
    assert len(rows) > 20
    unnamed = [row for row in rows if not FULL.search(row) and not BARE.search(row)]
    assert not unnamed, f"guarantees with no test named: {unnamed}"
