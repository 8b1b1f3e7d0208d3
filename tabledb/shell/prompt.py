"""The interactive prompt: a prompt-toolkit session with history, highlighting and completion.

* History lives in ``$TABLEDB_HISTORY`` or ``~/.tabledb_history`` (Ctrl-R
  searches it; Up and Down walk it; suggestions from it show in grey).
* Enter runs the buffer when it is complete (see ``script.input_complete``) and
  otherwise starts a new line, so a statement may span lines until its ``;``.
* Completion knows where it is: table names after FROM / JOIN / INTO / TABLE /
  UPDATE, the columns of the statement's tables (``alias.`` narrows them to one
  table), backup ids after BACKUP, file paths inside a quote after TO / FROM /
  INTO, dot-commands and their arguments, and otherwise keywords and functions.

The completer asks the shell (``table_names()``, ``columns(t)``, ``backup_ids(target)``)
and runs in the prompt's own thread, like every use of the connection.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING, Iterable, Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from tabledb.shell.commands import DOT_COMMANDS
from tabledb.shell.render import MODES
from tabledb.shell.script import FUNCTIONS, KEYWORDS, input_complete, quote_identifier, scan_sql

if TYPE_CHECKING:
    from tabledb.shell.commands import Shell

HISTORY_ENV = "TABLEDB_HISTORY"
PROMPT = "tabledb> "
CONTINUATION = "...> "

STYLE = {
    "keyword": "bold ansiblue",
    "function": "ansicyan",
    "string": "ansigreen",
    "number": "ansimagenta",
    "comment": "italic ansibrightblack",
    "name": "ansiyellow",
    "dotcommand": "bold ansicyan",
}

# ----------------------------------------------------------------------------- highlighting

_LEX = re.compile(r"""
    (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*(?:'|\Z))
  | (?P<name>"(?:[^"]|"")*(?:"|\Z)|`[^`]*(?:`|\Z)|\[[^\]\n]*(?:\]|\Z))
  | (?P<number>\b\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<other>\s+|.)
""", re.X | re.S)


def highlight(text: str) -> list[tuple[str, str]]:
    """(style, text) fragments of a buffer: SQL tokens, or a dot-command and its arguments."""
    if text.lstrip().startswith("."):
        command, space, rest = text.partition(" ")
        return [("class:dotcommand", command)] + ([("", space + rest)] if space else [])
    fragments = []
    for m in _LEX.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "word":
            style = ("class:keyword" if value.upper() in KEYWORDS
                     else "class:function" if value.lower() in FUNCTIONS else "")
        else:
            style = "" if kind == "other" else f"class:{kind}"
        fragments.append((style, value))
    return fragments


class SQLLexer(Lexer):
    def lex_document(self, document: Document):
        lines: list[list[tuple[str, str]]] = [[]]
        for style, text in highlight(document.text):
            for k, piece in enumerate(text.split("\n")):
                if k:
                    lines.append([])
                if piece:
                    lines[-1].append((style, piece))
        return lambda i: lines[i] if i < len(lines) else []


# ----------------------------------------------------------------------------- completion

TABLE_CONTEXT = frozenset({"FROM", "JOIN", "INTO", "TABLE", "UPDATE", "DESCRIBE", "TRUNCATE", "COPY"})
FILE_CONTEXT = frozenset({"TO", "FROM", "INTO"})
DOT_ARGS: dict[str, tuple[str, ...]] = {
    # what each argument of a dot-command is: a table, a path, a backup id, or one of fixed words
    ".schema": ("table",), ".indexes": ("table",), ".read": ("path",), ".output": ("path",),
    ".import": ("path", "table"), ".export": ("table", "path"), ".backup": ("path",),
    ".restore": ("path", "path"), ".backups": ("path",), ".verify": ("path", "backup"),
}
DOT_CHOICES: dict[str, tuple[str, ...]] = {
    ".mode": MODES, ".headers": ("on", "off"), ".timer": ("on", "off"), ".changes": ("on", "off"),
    ".bail": ("on", "off"),
}

_TOKEN = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|[A-Za-z_][\w$]*|\S""")


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return token[1:-1].replace('""', '"')
    return token


def _is_name(token: str) -> bool:
    return (token[:1] == '"' or token[:1].isalpha() or token[:1] == "_") and token.upper() not in KEYWORDS


def referenced_tables(statement: str) -> dict[str, str]:
    """{alias or name (lower case): table name} for the tables a statement names after
    FROM / JOIN / UPDATE / INTO / TABLE (comma lists after FROM included)."""
    tokens = _TOKEN.findall(statement)
    found: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        clause = tokens[i].upper()
        if clause in ("FROM", "JOIN", "UPDATE", "INTO", "TABLE"):
            while i + 1 < len(tokens) and _is_name(tokens[i + 1]):
                name = _unquote(tokens[i + 1])
                found.setdefault(name.lower(), name)
                i += 1
                if i + 1 < len(tokens) and tokens[i + 1].upper() == "AS":
                    i += 1
                if i + 1 < len(tokens) and _is_name(tokens[i + 1]):
                    found[_unquote(tokens[i + 1]).lower()] = name
                    i += 1
                if clause != "FROM" or i + 1 >= len(tokens) or tokens[i + 1] != ",":
                    break
                i += 1
        i += 1
    return found


def _backup_target(statement: str) -> str | None:
    """The repository a backup statement names (its last quoted string after FROM or TO)."""
    found = re.findall(r"\b(?:FROM|TO)\s+'((?:[^']|'')*)'", statement, re.I)
    return found[-1].replace("''", "'") if found else None


def _paths(prefix: str) -> Iterator[Completion]:
    """Files and folders whose path starts with ``prefix`` (hidden ones only when asked for)."""
    folder, base = os.path.split(os.path.expanduser(prefix))
    try:
        entries = sorted(os.listdir(folder or "."))
    except OSError:
        return
    for entry in entries:
        if entry.startswith(base) and (base.startswith(".") or not entry.startswith(".")):
            is_dir = os.path.isdir(os.path.join(folder, entry))
            yield Completion(entry + "/" if is_dir else entry, start_position=-len(base),
                             display_meta="folder" if is_dir else "file")


def _matching(prefix: str, candidates: Iterable[tuple[str, str]], quote: bool = False) -> Iterator[Completion]:
    """Completions for the candidates (text, meta) that start with ``prefix``, case-insensitively."""
    low = prefix.lower()
    seen = set()
    for text, meta in candidates:
        shown = quote_identifier(text) if quote else text
        key = shown.lower()
        if key.startswith(low) and key not in seen and shown != prefix:
            seen.add(key)
            yield Completion(shown, start_position=-len(prefix), display_meta=meta)


def _keyword_case(prefix: str, keyword: str) -> str:
    return keyword.lower() if prefix and prefix.islower() else keyword


class SQLCompleter(Completer):
    """Context-aware completion over the shell's schema (see the module docstring)."""

    def __init__(self, shell: "Shell"):
        self.shell = shell

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if text.lstrip().startswith("."):
            yield from self._dot_command(text.lstrip())
            return
        scan = scan_sql(text)
        statement = text[scan.rest:]
        if scan.open_at is not None:              # inside a quote or a comment
            if text[scan.open_at] == "'":
                before = _TOKEN.findall(text[scan.rest:scan.open_at])
                if before and before[-1].upper() in FILE_CONTEXT:
                    yield from _paths(text[scan.open_at + 1:])
            return
        whole = statement + document.text_after_cursor.split(";", 1)[0]
        shell = self.shell
        backup = re.search(r"\bBACKUP\s+([\w-]*)$", statement, re.I)
        if backup and not re.match(r"\s*BACKUP\b", statement, re.I):
            word = backup.group(1)
            yield from _matching(word, [(_keyword_case(word, "LATEST"), "keyword")] +
                                 [(b, "backup") for b in shell.backup_ids(_backup_target(whole))])
            return
        m = re.search(r'(?:([A-Za-z_][\w$]*|"[^"]*")\.)?([\w$]*)$', statement)
        qualifier, word = m.group(1), m.group(2)
        tokens = _TOKEN.findall(statement[:m.start()])
        previous = tokens[-1].upper() if tokens else ""
        if qualifier:
            table = referenced_tables(whole).get(_unquote(qualifier).lower(), _unquote(qualifier))
            yield from _matching(word, ((c, f"column of {table}") for c in shell.columns(table)), quote=True)
            return
        upper = [t.upper() for t in tokens]
        if previous in TABLE_CONTEXT or (previous == "DESC" and len(tokens) == 1) or \
                (previous == "ON" and upper[:1] == ["CREATE"] and "INDEX" in upper):
            yield from _matching(word, shell.table_names(), quote=True)
            return
        if not word and not complete_event.completion_requested:
            return                                # no menu of everything after each space
        tables = sorted(set(referenced_tables(whole).values()), key=str.lower)
        yield from _matching(word, ((c, f"column of {t}") for t in tables for c in shell.columns(t)), quote=True)
        yield from _matching(word, ((_keyword_case(word, k), "keyword") for k in sorted(KEYWORDS)))
        yield from _matching(word, ((f, "function") for f in FUNCTIONS))
        yield from _matching(word, shell.table_names(), quote=True)

    def _dot_command(self, text: str) -> Iterator[Completion]:
        if " " not in text:
            yield from _matching(text, ((name, summary.split("\n")[0]) for name, _, summary in DOT_COMMANDS))
            return
        try:
            parts = shlex.split(text)
        except ValueError:
            parts = text.split()
        if text.endswith(" "):
            parts.append("")
        command, args = parts[0].lower(), parts[1:]
        index = len(args) - 1
        if command in DOT_CHOICES:
            if index == 0:
                yield from _matching(args[0], ((v, "") for v in DOT_CHOICES[command]))
            return
        kinds = DOT_ARGS.get(command, ())
        if index >= len(kinds):
            return
        kind, prefix = kinds[index], args[index]
        if kind == "path":
            yield from _paths(prefix)
        elif kind == "table":
            yield from _matching(prefix, self.shell.table_names(), quote=True)
        elif kind == "backup":
            yield from _matching(prefix, ((b, "backup") for b in self.shell.backup_ids(args[0])))


# ----------------------------------------------------------------------------- the session

def _history(path: str | None) -> History:
    if path is None:
        path = os.environ.get(HISTORY_ENV) or os.path.join(os.path.expanduser("~"), ".tabledb_history")
    try:
        with open(path, "ab"):                   # can we keep it? else history lasts one session
            pass
    except OSError:
        return InMemoryHistory()
    return FileHistory(path)


def make_prompt_session(shell: "Shell", history_path: str | None = None, input=None, output=None) -> PromptSession:
    """The prompt of ``shell``: Enter runs a complete buffer and otherwise starts a new line.
    ``input``/``output`` are prompt-toolkit's (tests pass a pipe input and a DummyOutput)."""
    bindings = KeyBindings()

    @bindings.add("enter", filter=has_focus(DEFAULT_BUFFER))
    @bindings.add("c-j", filter=has_focus(DEFAULT_BUFFER))
    def _enter(event) -> None:
        buffer = event.current_buffer
        if buffer.complete_state and buffer.complete_state.current_completion is not None:
            buffer.apply_completion(buffer.complete_state.current_completion)
        elif input_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return PromptSession(
        PROMPT, multiline=True, history=_history(history_path), auto_suggest=AutoSuggestFromHistory(),
        lexer=SQLLexer(), completer=SQLCompleter(shell), complete_while_typing=True,
        key_bindings=bindings, style=Style.from_dict(STYLE), include_default_pygments_style=False,
        prompt_continuation=lambda width, line_number, soft_wrap: CONTINUATION.rjust(width),
        input=input, output=output,
    )
