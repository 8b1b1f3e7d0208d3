"""Launch tabledb's SQL shell: ``python shell.py [path]`` (the code is in ``tabledb/shell/``)."""

import sys

from tabledb.shell import main

if __name__ == "__main__":
    sys.exit(main())
