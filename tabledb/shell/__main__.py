"""``python -m tabledb.shell [PATH]``."""

import sys

from tabledb.shell.main import main

sys.exit(main())
