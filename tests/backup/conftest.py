"""Fixtures of the backup tests; the helpers live in backup_helpers.py (a unique module name:
another folder has a conftest too)."""

from backup_helpers import *  # noqa: F401,F403 - the fixtures
from backup_helpers import connect  # noqa: F401
