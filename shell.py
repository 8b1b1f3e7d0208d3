"""Launch tabledb's console: ``python shell.py [path]`` (code in ``tabledb/cli.py``)."""

import sys

from tabledb.cli import main

if __name__ == "__main__":
    sys.exit(main())
