"""``tabledb`` / ``python shell.py [path]``: a small console on the storage engine.

Until the SQL shell lands (issue 6) this is an honest way in: it opens (or
creates) the database directory and runs engine commands, one per line, from
a terminal or from standard input::

    put <key> <value>     get <key>     delete <key>     delete_range <start> <end>
    scan [start [end]]    flush         compact          stats      quit

Keys and values are UTF-8 text here; the engine itself stores any bytes.
"""

from __future__ import annotations

import json
import shlex
import sys

from tabledb.errors import Error
from tabledb.storage import Engine

DEFAULT_PATH = "tabledb-data"
HELP = __doc__.split("::", 1)[1].split("Keys and values", 1)[0]


class UsageError(Error):
    """A console line that is not a command."""


def run_command(db: Engine, line: str, out) -> bool:
    """Run one command line; False when the user asked to quit. Raises tabledb errors."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not words:
        return True
    cmd, args = words[0].lower(), [a.encode() for a in words[1:]]
    if cmd in ("quit", "exit", ".quit"):
        return False
    if cmd == "put" and len(args) == 2:
        db.put(args[0], args[1])
    elif cmd == "get" and len(args) == 1:
        value = db.get(args[0])
        print("(not found)" if value is None else value.decode("utf-8", "backslashreplace"), file=out)
    elif cmd == "delete" and len(args) == 1:
        db.delete(args[0])
    elif cmd == "delete_range" and len(args) == 2:
        db.delete_range(args[0], args[1])
    elif cmd == "scan" and len(args) <= 2:
        n = 0
        for key, value in db.scan(*args):
            print(f"{key.decode('utf-8', 'backslashreplace')}\t{value.decode('utf-8', 'backslashreplace')}", file=out)
            n += 1
        print(f"({n} rows)", file=out)
    elif cmd == "flush" and not args:
        db.flush()
    elif cmd == "compact" and not args:
        db.compact_range()
    elif cmd == "stats" and not args:
        print(json.dumps(db.stats(), indent=2, default=str), file=out)
    elif cmd in ("help", ".help"):
        print(HELP.strip("\n"), file=out)
    else:
        raise UsageError(f"unknown command or wrong arguments: {line.strip()!r} (try 'help')")
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else DEFAULT_PATH
    interactive = sys.stdin.isatty()
    try:
        db = Engine.open(path)
    except Error as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    status = 0
    with db:
        if interactive:
            print(f"tabledb engine console on {path} (type 'help')")
        while True:
            if interactive:
                try:
                    line = input("tabledb> ")
                except EOFError:
                    break
            else:
                line = sys.stdin.readline()
                if not line:
                    break
            try:
                if not run_command(db, line, sys.stdout):
                    break
            except Error as exc:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                if not interactive:
                    status = 1
                    break
    return status


if __name__ == "__main__":
    sys.exit(main())
