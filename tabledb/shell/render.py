"""Results as text: the output modes of ``.mode`` and the settings that shape them.

    box       a table drawn with box characters (the default in a terminal)
    table     the same in ASCII (+---+)
    list      values with a separator between them, one row a line (the default otherwise)
    csv       RFC 4180, through the csv module
    json      an array of objects, one row a line
    line      one ``column = value`` line per value, a blank line between rows
    markdown  a GitHub-flavoured markdown table

In the text modes NULL prints as ``.nullvalue``, booleans as true/false, blobs
as ``x'0aff'``, dates and timestamps in ISO 8601, floats as Python's shortest
repr. The grid modes (box, table, markdown) read the rows first to size the
columns: at most ``.maxrows`` of them, and cells are cut to the terminal's
width with a note saying so; the other modes stream.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
from typing import Iterable, TextIO

from tabledb.errors import ProgrammingError

MODES = ("box", "table", "list", "csv", "json", "line", "markdown")
DEFAULT_MAXROWS = 1000
_MIN_CUT_WIDTH = 6


class Settings:
    """What ``.mode``, ``.headers``, ``.nullvalue`` ... set. The defaults depend on whether a
    person is at a terminal (box, headers, row counts) or a script runs (list, bare values)."""

    def __init__(self, interactive: bool):
        self.mode = "box" if interactive else "list"
        self.headers = interactive
        self.nullvalue = "NULL" if interactive else ""
        self.separator = "|"
        self.timer = False
        self.changes = interactive     # row counts after DML, and (N rows) under a box or table
        self.bail = True               # a script stops at its first error
        self.maxrows = DEFAULT_MAXROWS if interactive else 0


def format_value(value, null: str) -> str:
    """The text of one value in the text modes."""
    if value is None:
        return null
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x'" + bytes(value).hex() + "'"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def json_value(value):
    """A value as JSON has it: blobs in hex, dates in ISO 8601, NaN and infinities as null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.date, datetime.datetime)):
        return format_value(value, "")
    return value


def human_bytes(n) -> str:
    if not isinstance(n, (int, float)):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def render(columns: list[str], rows: Iterable[tuple], settings: Settings, out: TextIO,
           width: int | None = None) -> tuple[int, bool]:
    """Write a result in ``settings.mode``; returns (rows written, whether rows were left out).

    ``width`` is the terminal's width (None: not a terminal): box and table cells are cut to fit it.
    """
    mode = settings.mode
    if mode in ("box", "table", "markdown"):
        return _render_grid(columns, rows, settings, out, width)
    count = 0
    null = settings.nullvalue
    if mode == "list":
        sep = settings.separator
        if settings.headers:
            out.write(sep.join(columns) + "\n")
        for row in rows:
            out.write(sep.join(format_value(v, null) for v in row) + "\n")
            count += 1
    elif mode == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if settings.headers:
            writer.writerow(columns)
        for row in rows:
            writer.writerow([format_value(v, null) for v in row])
            count += 1
    elif mode == "json":
        out.write("[")
        for row in rows:
            obj = {name: json_value(v) for name, v in zip(columns, row)}
            out.write((",\n" if count else "") + json.dumps(obj, ensure_ascii=False, default=str))
            count += 1
        out.write("]\n")
    elif mode == "line":
        w = max((len(c) for c in columns), default=0)
        for row in rows:
            if count:
                out.write("\n")
            for name, v in zip(columns, row):
                out.write(f"{name.rjust(w)} = {format_value(v, null)}\n")
            count += 1
    else:
        raise ProgrammingError(f"unknown output mode {mode!r}")
    return count, False


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _cell(value, null: str) -> str:
    """A value for the grid modes: one line, control characters escaped."""
    text = format_value(value, null)
    if _CONTROL_CHARS.search(text):
        text = _CONTROL_CHARS.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
    return text


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_BOX = {"top": "┌┬┐", "middle": "├┼┤", "bottom": "└┴┘", "bar": "│", "rule": "─"}
_ASCII = {"top": "+++", "middle": "+++", "bottom": "+++", "bar": "|", "rule": "-"}


def _render_grid(columns, rows, settings: Settings, out: TextIO, width: int | None) -> tuple[int, bool]:
    limit = settings.maxrows
    cells: list[list[str]] = []
    numeric = [None] * len(columns)        # True: every value seen is a number (right-aligned)
    more = False
    for row in rows:
        if limit and len(cells) >= limit:
            more = True
            break
        for i, v in enumerate(row):
            if v is not None and numeric[i] is not False:
                numeric[i] = _is_number(v)
        cells.append([_cell(v, settings.nullvalue) for v in row])
    right = [n is True for n in numeric]
    names = [_cell(c, "") for c in columns]
    markdown = settings.mode == "markdown"
    headers = settings.headers or markdown          # a markdown table always has its header row
    widths = [max([len(names[i]) if headers else 0, 1] + [len(r[i]) for r in cells]) for i in range(len(columns))]
    cut = bool(width) and not markdown and _fit(widths, width)

    def pad(values: list[str]) -> list[str]:
        padded = []
        for text, w, r in zip(values, widths, right):
            if len(text) > w:
                text = text[:max(w - 1, 0)] + "…"
            padded.append(text.rjust(w) if r else text.ljust(w))
        return padded

    if markdown:
        out.write("| " + " | ".join(pad(names)) + " |\n")
        out.write("|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|\n")
        for r in cells:
            out.write("| " + " | ".join(t.replace("|", "\\|") for t in pad(r)) + " |\n")
        return len(cells), more

    chars = _BOX if settings.mode == "box" else _ASCII
    bar = chars["bar"]

    def border(ends: str) -> str:
        return ends[0] + ends[1].join(chars["rule"] * (w + 2) for w in widths) + ends[2] + "\n"

    out.write(border(chars["top"]))
    if headers:
        out.write(bar + bar.join(f" {t} " for t in pad(names)) + bar + "\n")
        out.write(border(chars["middle"]))
    for r in cells:
        out.write(bar + bar.join(f" {t} " for t in pad(r)) + bar + "\n")
    out.write(border(chars["bottom"]))
    if cut:
        out.write(f"(values cut to fit {width} columns: .mode line shows them whole)\n")
    return len(cells), more


def _fit(widths: list[int], width: int) -> bool:
    """Narrow the widest columns, one character at a time, until the grid fits in ``width``
    (no column below _MIN_CUT_WIDTH); True if any column was narrowed."""
    total = sum(widths) + 3 * len(widths) + 1
    narrowed = False
    while total > width:
        i = max(range(len(widths)), key=widths.__getitem__)
        if widths[i] <= _MIN_CUT_WIDTH:
            break
        widths[i] -= 1
        total -= 1
        narrowed = True
    return narrowed
