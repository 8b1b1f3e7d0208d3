"""``python -m tabledb [PATH | check PATH ...]``: the same as the ``tabledb`` command (the shell)."""

import sys

from tabledb.shell.main import main

sys.exit(main())
