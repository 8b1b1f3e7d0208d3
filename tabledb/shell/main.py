"""The command line: ``tabledb [PATH] [-c SQL] [-bail on|off] [-mode MODE] [-headers on|off] [-nullvalue TEXT]``,
and ``tabledb check PATH [--json]`` (tabledb.check; a database folder named ``check``: ``tabledb ./check``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import tabledb
from tabledb.errors import Error
from tabledb.shell.commands import Bail, Quit, Shell
from tabledb.shell.render import MODES

DEFAULT_PATH = "tabledb-data"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tabledb", description="tabledb's SQL shell (.help inside lists "
                                                                 "the dot-commands).")
    parser.add_argument("path", nargs="?", default=DEFAULT_PATH,
                        help=f"database folder, created if missing (default {DEFAULT_PATH}; :memory: for none)")
    parser.add_argument("-c", "--command", dest="commands", action="append", metavar="SQL",
                        help="run this SQL or dot-command and exit (may be given more than once)")
    parser.add_argument("-bail", "--bail", choices=("on", "off"), default="on",
                        help="stop a script at its first error (default on); the exit status is 1 either way")
    parser.add_argument("-mode", "--mode", choices=MODES, help="output mode (default: box in a terminal, else list)")
    parser.add_argument("-headers", "--headers", choices=("on", "off"), help="show column names")
    parser.add_argument("-nullvalue", "--nullvalue", help="how NULL is shown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the shell; returns the exit status (0; 1 if a script or -c had an error; 130 on Ctrl-C).
    ``tabledb check PATH [--json]`` checks a database instead (tabledb.check; 1 on problems)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        from tabledb.check import main as check_main
        return check_main(argv[1:])
    args = parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")
    interactive = args.commands is None and sys.stdin.isatty() and sys.stdout.isatty()
    try:
        conn = tabledb.connect(args.path, autocommit=True)
    except Error as exc:
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return 1
    shell = Shell(conn, interactive=interactive, progress=interactive and sys.stderr.isatty())
    settings = shell.settings
    settings.bail = args.bail == "on"
    if args.mode:
        settings.mode = args.mode
    if args.headers:
        settings.headers = args.headers == "on"
    if args.nullvalue is not None:
        settings.nullvalue = args.nullvalue
    status = 0
    try:
        if interactive:
            sys.stdout.write(f"tabledb on {args.path} (statements end with ; .help lists the commands)\n")
            shell.repl()
        elif args.commands is not None:
            for command in args.commands:
                shell.run_text(command, source="-c")
        else:
            shell.run_lines(sys.stdin, source="<stdin>")
    except Quit:
        pass
    except Bail:
        status = 1
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted\n")
        status = 130
    except BrokenPipeError:                 # tabledb ... | head: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    finally:
        with contextlib.suppress(Exception):
            shell.close()
        with contextlib.suppress(Exception):
            conn.close()
    if status == 0 and shell.errors and not interactive:
        status = 1
    return status
