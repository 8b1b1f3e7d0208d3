"""Crash tests through the SQL layer: SIGKILL (test_sigkill), failing I/O (test_faults), damaged files
(test_corruption). ``workload.py`` is the random SQL workload, its model, and the child process."""

import os
import sys

# tests/storage/faultfs.py (the power-loss filesystem) is a plain module of that folder.
STORAGE_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "storage")
if STORAGE_TESTS not in sys.path:
    sys.path.append(STORAGE_TESTS)
