"""tabledb's SQL shell: ``python shell.py [PATH]``, the ``tabledb`` console script, ``python -m tabledb.shell``.

    tabledb [PATH] [-c SQL] [-bail on|off] [-mode MODE] [-headers on|off] [-nullvalue TEXT]

PATH is a database folder (created if missing; default ``tabledb-data``, or
``:memory:``). Statements run in autocommit mode: each commits on its own
unless it is inside BEGIN ... COMMIT.

* In a terminal: a prompt-toolkit session (``prompt.py``) with persistent
  history (Ctrl-R searches it), suggestions, highlighting and completion. A
  statement runs when Enter follows its closing ``;``; a dot-command at once.
  Ctrl-C drops the input or interrupts a running statement (which is undone);
  Ctrl-D leaves. Results print as box tables, with row counts.
* Otherwise (a pipe, a file, ``-c``): the statements and dot-commands of
  standard input run in order; results print in ``list`` mode (``|`` between
  values, no header, NULL as nothing), so ``echo "SELECT 1;" | tabledb`` prints
  ``1``. The first error stops the script with exit status 1; with ``-bail
  off`` it goes on, and the status is still 1.

Errors print as one line, ``ClassName: message`` (in a script prefixed with
``source:line:``), never a traceback. Long work (.backup, .restore, .verify,
.import, BACKUP/RESTORE/VERIFY/COPY) shows a progress bar in a terminal.

Modules: ``script`` (where statements end, quoting), ``render`` (the output
modes), ``commands`` (the Shell: statements, dot-commands, errors, Ctrl-C),
``prompt`` (the prompt-toolkit session: lexer, completer), ``reports``
(.schema, .stats), ``transfer`` (.import, .export), ``main`` (the command line).
"""

from tabledb.shell.commands import DOT_COMMANDS, Shell, ShellError
from tabledb.shell.main import main
from tabledb.shell.render import MODES, Settings, render
from tabledb.shell.script import input_complete, scan_sql

__all__ = ["DOT_COMMANDS", "MODES", "Settings", "Shell", "ShellError", "input_complete", "main", "render",
           "scan_sql"]
