"""SQL as text, before it is parsed: where statements end, the words, quoting.

The shell must know where a statement ends before the SQL layer sees it (to
run a script statement by statement, and to let Enter start a new line until
the closing ``;``), so it splits on the ``;`` that lie outside quotes
('...', "...", `...`, [...]) and comments (``-- ...``, ``/* ... */``). The
parser still has the last word: a statement with a stray quote reaches it and
comes back as a SQLSyntaxError with its line and column.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset("""
ABORT ADD ALL ALTER AND AS ASC BACKUP BACKUPS BEGIN BETWEEN BY CASE CAST CHECK COLUMN COMMIT CONFLICT
CONSTRAINT COPY CREATE CROSS DATABASE DEFAULT DEFERRED DELETE DESC DESCRIBE DISTINCT DO DROP ELSE END
ESCAPE EXCEPT EXCLUSIVE EXISTS EXPLAIN FALSE FIRST FROM GLOB GROUP HAVING IF IGNORE IMMEDIATE IN INDEX
INDEXES INNER INSERT INTERSECT INTO IS JOIN KEY LAST LATEST LEFT LIKE LIMIT NOT NOTHING NULL NULLS OF
OFFSET ON OR ORDER PRIMARY QUERY PLAN RELEASE RENAME REPLACE RESTORE ROLLBACK SAVEPOINT SELECT SEQUENCE
SET SHOW TABLE TABLES THEN TIMESTAMP TO TRANSACTION TRUE TRUNCATE UNION UNIQUE UPDATE USING VALUES VERIFY
VIEW WHEN WHERE WITH INTEGER INT BIGINT REAL FLOAT DOUBLE TEXT VARCHAR BLOB BOOLEAN DATE DATETIME
""".split())
FUNCTIONS = tuple("""
abs avg char coalesce concat count group_concat hex ifnull iif instr length lower ltrim max min nullif
quote replace round rtrim sign substr sum total trim typeof unicode upper
""".split())


class Scan:
    """Where the complete statements of a text end.

    ``spans`` are (start, end) of each complete statement (``end`` is just past its
    ``;``); ``rest`` is where the unfinished tail begins; ``open_at`` is the offset of
    an unterminated quote or block comment in the tail (None if there is none);
    ``tail_blank`` tells whether the tail holds only spaces and comments.
    """

    __slots__ = ("spans", "rest", "open_at", "tail_blank")

    def __init__(self, spans: list[tuple[int, int]], rest: int, open_at: int | None, tail_blank: bool):
        self.spans, self.rest, self.open_at, self.tail_blank = spans, rest, open_at, tail_blank

    @property
    def complete(self) -> bool:
        """Whether the text is ready to run: nothing after the last ``;`` but spaces and comments."""
        return self.open_at is None and self.tail_blank


def scan_sql(text: str) -> Scan:
    """Split ``text`` at the ``;`` outside quotes and comments (statements of only ``;`` are dropped)."""
    spans: list[tuple[int, int]] = []
    i, n, start, blank = 0, len(text), 0, True
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = text.find(c, i + 1)
            while j != -1 and j + 1 < n and text[j + 1] == c:   # a doubled quote stands for itself
                j = text.find(c, j + 2)
            if j == -1:
                return Scan(spans, start, i, False)
            blank, i = False, j + 1
        elif c == "[":
            j = text.find("]", i + 1)
            if j == -1:
                return Scan(spans, start, i, False)
            blank, i = False, j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j == -1 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j == -1:
                return Scan(spans, start, i, blank)
            i = j + 2
        elif c == ";":
            if not blank:
                spans.append((start, i + 1))
            start, blank, i = i + 1, True, i + 1
        else:
            if not c.isspace():
                blank = False
            i += 1
    return Scan(spans, start, None, blank)


def input_complete(text: str) -> bool:
    """Whether Enter should run the buffer: blank input, a dot-command, or SQL ending in ``;``."""
    stripped = text.strip()
    if not stripped or stripped.startswith("."):
        return True
    return scan_sql(text).complete


_FIRST_WORD = re.compile(r"\s*(?:--[^\n]*(?:\n|$)\s*|/\*.*?\*/\s*)*(\w+)", re.S)


def first_word(sql: str) -> str:
    """The statement's first keyword in upper case, after any comments ("" if none)."""
    m = _FIRST_WORD.match(sql)
    return m.group(1).upper() if m else ""


def quote_identifier(name: str) -> str:
    """``name`` as SQL: bare if it is a plain word and not a keyword, else in double quotes."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.upper() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
