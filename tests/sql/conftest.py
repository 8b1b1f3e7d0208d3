"""Options for the SQL case files (tests/sql/test_cases.py).

``--rewrite`` regenerates the expected blocks of tests/sql/cases/*.test from what
the engine returns (also TABLEDB_REWRITE=1). pytest reads this option only when
this directory is on the command line, e.g.
``pytest tests/sql/test_cases.py --rewrite``; the environment variable works from
anywhere.
"""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption("--rewrite", action="store_true", default=False,
                     help="rewrite expected results in tests/sql/cases/*.test from actual output")
