"""tabledb's SQL dialect: SQLite's grammar plus our own statements, as real sqlglot nodes.

Ordinary SQL (SELECT, INSERT [OR REPLACE], ON CONFLICT, UPDATE, DELETE, CREATE/DROP,
ALTER TABLE, TRUNCATE, GLOB, ``||`` ...) parses exactly as sqlglot's SQLite dialect
parses it. On top of that the parser understands:

    BACKUP DATABASE TO 'target' [WITH (key = literal, ...)]                 -> Backup
    BACKUP TABLE t [, u ...] TO 'target' [WITH (key = literal, ...)]        -> Backup
    SHOW BACKUPS FROM 'target'                                              -> ShowBackups
    VERIFY BACKUP [id | LATEST] FROM 'target'                               -> VerifyBackup
    RESTORE DATABASE FROM 'target' [BACKUP id | [BACKUP] LATEST]
        [AS OF TIMESTAMP 'ISO-8601' | AS OF SEQUENCE n] INTO 'path'         -> Restore
    RESTORE TABLE t [AS new_name] FROM 'target' [BACKUP id | [BACKUP] LATEST]
        [AS OF TIMESTAMP 'ISO-8601' | AS OF SEQUENCE n]                     -> Restore
    DROP BACKUP id FROM 'target'                                            -> DropBackup
    SHOW TABLES                                                             -> ShowTables
    SHOW INDEXES [FROM t]       (also SHOW INDEX)                           -> ShowIndexes
    DESCRIBE [TABLE] t  /  DESC [TABLE] t                                   -> exp.Describe
    EXPLAIN [QUERY PLAN] <statement>                                        -> Explain
    BEGIN [DEFERRED | IMMEDIATE | EXCLUSIVE] [TRANSACTION]                  -> exp.Transaction
    COMMIT [TRANSACTION]  /  END [TRANSACTION]                              -> exp.Commit
    ROLLBACK [TRANSACTION] [TO [SAVEPOINT] name]                            -> exp.Rollback
    SAVEPOINT name                                                          -> Savepoint
    RELEASE [SAVEPOINT] name                                                -> Release
    COPY t TO 'file' | COPY t FROM 'file' [WITH (key = literal, ...)]       -> Copy (an exp.Copy)

Backup ids are strings (the backup module mints them, e.g. '20261125T150000-abcd').
They may be written as a quoted string, a bare or double-quoted identifier, or a
number; the node always holds the id as ``str`` and generates it as a quoted string.
An id containing ``-`` must be quoted. ``LATEST`` (unquoted, any case) means the
newest backup; the string ``'LATEST'`` is an id like any other.

Option values are literals only: strings, numbers (optionally signed), TRUE, FALSE,
NULL. Option keys are case-insensitive and normalised to lower case; a key given
twice is a syntax error.

All sqlglot use of tabledb stays inside ``tabledb.sql`` (its API moves between major
versions). Import this module to register the dialect under the name ``"tabledb"``.
Syntax errors raise :class:`SQLSyntaxError`, a ``ProgrammingError`` with ``.line``
and ``.col`` (1-based), never a sqlglot exception.
"""

from __future__ import annotations

import datetime
import re
import typing as t

from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError
from sqlglot.generators.sqlite import SQLiteGenerator
from sqlglot.parsers.sqlite import SQLiteParser
from sqlglot.tokens import TokenType

from tabledb.errors import SQLSyntaxError

__all__ = [
    "Backup",
    "Copy",
    "DropBackup",
    "Explain",
    "Option",
    "Release",
    "Restore",
    "SQLSyntaxError",
    "Savepoint",
    "ShowBackups",
    "ShowIndexes",
    "ShowTables",
    "TableDB",
    "TableDBStatement",
    "VerifyBackup",
    "parse",
    "parse_one",
]


# --------------------------------------------------------------------------- nodes


OptionValue = t.Union[str, int, float, bool, None]


def _literal_value(node: exp.Expr) -> OptionValue:
    """The Python value of a literal node built by the option parser."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg):
        value = _literal_value(node.this)
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        return -value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            return float(text)
    raise TypeError(f"not an option literal: {node!r}")


def _options_dict(params: list[exp.Expr] | None) -> dict[str, OptionValue]:
    return {p.this.name.lower(): _literal_value(p.args["expression"]) for p in params or ()}


class TableDBStatement(exp.Expression):
    """Base of tabledb's own statement nodes (not of the reused sqlglot ones)."""


class Option(exp.Expression):
    """``key = literal`` inside WITH (...). ``this``: exp.Var key; ``expression``: literal."""

    arg_types = {"this": True, "expression": True}


class _HasOptions:
    def options(self) -> dict[str, OptionValue]:
        """The WITH (...) options as {lower-case key: Python value}; {} if none."""
        return _options_dict(self.args.get("options"))  # type: ignore[attr-defined]


class _HasTarget:
    @property
    def target(self) -> str:
        return self.args["target"]  # type: ignore[attr-defined]


class Backup(_HasOptions, _HasTarget, TableDBStatement):
    """BACKUP DATABASE|TABLE ... TO 'target' [WITH (...)].

    args: kind ("DATABASE" | "TABLE"), tables (list[exp.Table], empty for DATABASE),
    target (str), options (list[Option] or None).
    """

    arg_types = {"kind": True, "tables": False, "target": True, "options": False}

    @property
    def table_names(self) -> list[str]:
        return [table.name for table in self.args.get("tables") or ()]


class ShowBackups(_HasTarget, TableDBStatement):
    """SHOW BACKUPS FROM 'target'. args: target (str)."""

    arg_types = {"target": True}


class VerifyBackup(_HasTarget, TableDBStatement):
    """VERIFY BACKUP [id | LATEST] FROM 'target'.

    args: backup (str id or None), latest (True if LATEST was written), target (str).
    Neither backup nor latest: the statement named no backup (the executor picks).
    """

    arg_types = {"backup": False, "latest": False, "target": True}


class Restore(_HasTarget, TableDBStatement):
    """RESTORE DATABASE ... INTO 'path' | RESTORE TABLE t [AS new] ...

    args: kind ("DATABASE" | "TABLE"); this (exp.Table, TABLE only); alias
    (exp.Identifier new name, TABLE only); target (str); backup (str id or None);
    latest (bool); as_of_timestamp (str, ISO-8601 as written, validated by
    datetime.fromisoformat); as_of_sequence (int >= 0); path (str, DATABASE only).
    """

    arg_types = {
        "kind": True,
        "this": False,
        "alias": False,
        "target": True,
        "backup": False,
        "latest": False,
        "as_of_timestamp": False,
        "as_of_sequence": False,
        "path": False,
    }

    @property
    def table_name(self) -> str | None:
        table = self.args.get("this")
        return table.name if table is not None else None

    @property
    def new_name(self) -> str | None:
        alias = self.args.get("alias")
        return alias.name if alias is not None else None

    def as_of_datetime(self) -> datetime.datetime | None:
        ts = self.args.get("as_of_timestamp")
        return _parse_iso_timestamp(ts) if ts is not None else None


class DropBackup(_HasTarget, TableDBStatement):
    """DROP BACKUP id FROM 'target'. args: backup (str id), target (str)."""

    arg_types = {"backup": True, "target": True}


class ShowTables(TableDBStatement):
    """SHOW TABLES. No args."""

    arg_types: t.ClassVar[dict[str, bool]] = {}


class ShowIndexes(TableDBStatement):
    """SHOW INDEXES [FROM t]. args: this (exp.Table or None)."""

    arg_types = {"this": False}


class Explain(TableDBStatement):
    """EXPLAIN [QUERY PLAN] stmt. args: this (the parsed inner statement), query_plan (bool)."""

    arg_types = {"this": True, "query_plan": False}


class Savepoint(TableDBStatement):
    """SAVEPOINT name. args: this (exp.Identifier)."""

    arg_types = {"this": True}


class Release(TableDBStatement):
    """RELEASE [SAVEPOINT] name. args: this (exp.Identifier)."""

    arg_types = {"this": True}


class Copy(exp.Copy):
    """COPY t TO|FROM 'file' [WITH (...)]: an exp.Copy with helpers.

    args (exp.Copy's): this (exp.Table or a parenthesised query for TO), kind (True for
    FROM, i.e. import; False for TO, export), files ([exp.Literal] of one string),
    params (list[exp.CopyParameter] or None).
    """

    def options(self) -> dict[str, OptionValue]:
        return _options_dict(self.args.get("params"))

    @property
    def file(self) -> str:
        return self.args["files"][0].this

    @property
    def is_import(self) -> bool:
        return bool(self.args.get("kind"))


# -------------------------------------------------------------------------- parser


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ].*)?$")


def _parse_iso_timestamp(text: str) -> datetime.datetime:
    if not _ISO_TIME.match(text):
        raise ValueError(text)
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)


_NAME_TOKENS = (TokenType.VAR, TokenType.IDENTIFIER)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


class TableDBParser(SQLiteParser):
    """SQLiteParser plus tabledb's statements; everything else is SQLite's."""

    STATEMENT_PARSERS = {
        **SQLiteParser.STATEMENT_PARSERS,
        TokenType.COPY: lambda self: self._parse_tabledb_copy(),
        TokenType.DESC: lambda self: self._parse_tabledb_describe(),
        TokenType.DESCRIBE: lambda self: self._parse_tabledb_describe(),
    }

    # Statements that start with a word the tokenizer does not treat as a keyword
    # (or treats as a command): matched on the upper-cased text of the first token.
    TABLEDB_STATEMENTS: t.ClassVar[dict[str, t.Callable[[TableDBParser], exp.Expr]]] = {
        "BACKUP": lambda self: self._parse_backup(),
        "RESTORE": lambda self: self._parse_restore(),
        "VERIFY": lambda self: self._parse_verify_backup(),
        "SHOW": lambda self: self._parse_tabledb_show(),
        "EXPLAIN": lambda self: self._parse_explain(),
        "SAVEPOINT": lambda self: self._parse_savepoint(),
        "RELEASE": lambda self: self._parse_release(),
        "END": lambda self: self._parse_end(),
    }
    TABLEDB_STATEMENT_TOKENS: t.ClassVar[frozenset] = frozenset(
        {TokenType.VAR, TokenType.COMMAND, TokenType.SHOW, TokenType.END}
    )

    # -- errors

    def raise_error(self, message: str, token: t.Any = None) -> None:
        """sqlglot's raise_error, plus the offset where the error starts.

        sqlglot reports the column of a token's *last* character, and the last token
        when input ends early; we record the offset of the offending token's first
        character, or just past the input's last token, in ``errors[0]["offset"]``.
        """
        if token:
            offset = token.start
        elif self._curr:
            token, offset = self._curr, self._curr.start
        elif self._prev:
            token, offset = self._prev, self._prev.end + 1
        else:
            offset = len(self.sql)
        try:
            if token:
                super().raise_error(message, token)
            else:
                super().raise_error(message)
        except ParseError as e:
            if e.errors:
                e.errors[0]["offset"] = offset
            raise
        if self.errors and self.errors[-1].errors:
            self.errors[-1].errors[0]["offset"] = offset

    # -- dispatch

    def _parse_statement(self) -> exp.Expr | None:
        curr = self._curr
        if curr and curr.token_type in self.TABLEDB_STATEMENT_TOKENS:
            parser = self.TABLEDB_STATEMENTS.get(curr.text.upper())
            if parser is not None:
                comments = curr.comments
                self._advance()
                stmt = parser(self)
                if comments:
                    stmt.add_comments(comments, prepend=True)
                return stmt
        return super()._parse_statement()

    def _parse_drop(self, exists: bool = False, kind: str | None = None) -> exp.Expr:
        if not kind and self._match_text_seq("BACKUP"):
            backup = self._expect_backup_id("DROP BACKUP")
            target = self._expect_from_target()
            return self.expression(DropBackup(backup=backup, target=target))
        return super()._parse_drop(exists=exists, kind=kind)

    # -- small pieces

    def _expect_word(self, *words: str) -> None:
        if not self._match_text_seq(*words):
            self.raise_error(f"Expected {' '.join(words)}")

    def _expect_string(self, what: str) -> str:
        if not self._curr or self._curr.token_type != TokenType.STRING:
            self.raise_error(f"Expected {what} as a quoted string")
            return ""
        self._advance()
        return self._prev.text

    def _expect_from_target(self) -> str:
        if not self._match(TokenType.FROM):
            self.raise_error("Expected FROM 'target'")
        return self._expect_string("the backup target")

    def _expect_table(self) -> exp.Table:
        if not self._curr or self._curr.token_type in (TokenType.STRING, TokenType.NUMBER):
            self.raise_error("Expected a table name")
        table = self._parse_table_parts()
        if not isinstance(table, exp.Table) or not table.name:
            self.raise_error("Expected a table name")
        return table

    def _expect_identifier(self, what: str) -> exp.Identifier:
        curr = self._curr
        if not curr or curr.token_type not in _NAME_TOKENS and not _WORD.match(curr.text):
            self.raise_error(f"Expected {what}")
            return exp.to_identifier("")
        if curr.token_type == TokenType.STRING:
            self.raise_error(f"Expected {what}, not a string")
        self._advance()
        return self.expression(
            exp.Identifier(this=curr.text, quoted=curr.token_type == TokenType.IDENTIFIER), curr
        )

    def _parse_backup_id(self) -> str | None:
        """A backup id (string, identifier or number) at the cursor, or None."""
        curr = self._curr
        if not curr:
            return None
        if curr.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            self._advance()
            return curr.text
        if curr.token_type == TokenType.NUMBER or (curr.token_type == TokenType.VAR
                                                   and curr.text.upper() != "LATEST"):
            # A bare id as BACKUP returns it, 20261125T195258-0001, is tokenized as a number, a
            # word, a dash and a number: glue tokens that touch each other back together.
            text = curr.text
            end = curr.end
            self._advance()
            while (self._curr is not None and self._curr.start == end + 1
                   and self._curr.token_type in (TokenType.NUMBER, TokenType.VAR, TokenType.DASH)):
                text += self._curr.text
                end = self._curr.end
                self._advance()
            return text
        return None

    def _expect_backup_id(self, statement: str) -> str:
        backup = self._parse_backup_id()
        if backup is None:
            self.raise_error(f"{statement} needs a backup id")
            return ""
        return backup

    def _parse_backup_choice(self, allow_bare_latest: bool) -> tuple[str | None, bool]:
        """[BACKUP id | BACKUP LATEST | LATEST] -> (id or None, latest)."""
        if self._match_text_seq("BACKUP"):
            if self._match_text_seq("LATEST"):
                return None, True
            return self._expect_backup_id("BACKUP"), False
        if allow_bare_latest and self._match_text_seq("LATEST"):
            return None, True
        return None, False

    def _parse_option_value(self) -> exp.Expr | None:
        curr = self._curr
        if not curr:
            return None
        if curr.token_type == TokenType.STRING:
            self._advance()
            return self.expression(exp.Literal.string(curr.text), curr)
        if curr.token_type == TokenType.NUMBER:
            self._advance()
            return self.expression(exp.Literal.number(curr.text), curr)
        if curr.token_type in (TokenType.TRUE, TokenType.FALSE):
            self._advance()
            return self.expression(exp.Boolean(this=curr.token_type == TokenType.TRUE), curr)
        if curr.token_type == TokenType.NULL:
            self._advance()
            return self.expression(exp.Null(), curr)
        if curr.token_type in (TokenType.DASH, TokenType.PLUS) and self._next \
                and self._next.token_type == TokenType.NUMBER:
            self._advance(2)
            number = exp.Literal.number(self._prev.text)
            return number if curr.token_type == TokenType.PLUS else exp.Neg(this=number)
        return None

    def _parse_with_options(self, node_class: type[exp.Expr]) -> list[exp.Expr] | None:
        """[WITH] (key = literal, ...) -> list of node_class(this=Var, expression=literal)."""
        if not self._match(TokenType.WITH):
            return None
        if not self._match(TokenType.L_PAREN):
            self.raise_error("Expected ( after WITH")
        options: list[exp.Expr] = []
        seen: set[str] = set()
        while True:
            key_token = self._curr
            if not key_token or key_token.token_type not in _NAME_TOKENS \
                    and not _WORD.match(key_token.text) or key_token.token_type == TokenType.STRING:
                self.raise_error("Expected an option name")
                return options
            self._advance()
            key = key_token.text.lower()
            if key in seen:
                self.raise_error(f"Option {key!r} given twice", key_token)
            seen.add(key)
            if not self._match(TokenType.EQ):
                self.raise_error(f"Expected = after option {key!r}")
            value = self._parse_option_value()
            if value is None:
                self.raise_error(f"Expected a literal value for option {key!r}")
                return options
            options.append(self.expression(node_class(this=exp.var(key), expression=value)))
            if not self._match(TokenType.COMMA):
                break
        if not self._match(TokenType.R_PAREN):
            self.raise_error("Expected , or ) in WITH (...)")
        return options

    # -- statements

    def _parse_backup(self) -> Backup:
        tables: list[exp.Table] = []
        if self._match(TokenType.DATABASE):
            kind = "DATABASE"
        elif self._match(TokenType.TABLE):
            kind = "TABLE"
            tables.append(self._expect_table())
            while self._match(TokenType.COMMA):
                tables.append(self._expect_table())
        else:
            self.raise_error("Expected DATABASE or TABLE after BACKUP")
            kind = ""
        self._expect_word("TO")
        target = self._expect_string("the backup target")
        options = self._parse_with_options(Option)
        return self.expression(Backup(kind=kind, tables=tables, target=target, options=options))

    def _parse_restore(self) -> Restore:
        args: dict[str, t.Any] = {}
        if self._match(TokenType.DATABASE):
            args["kind"] = "DATABASE"
        elif self._match(TokenType.TABLE):
            args["kind"] = "TABLE"
            args["this"] = self._expect_table()
            if self._match(TokenType.ALIAS):
                args["alias"] = self._expect_identifier("a new table name after AS")
        else:
            self.raise_error("Expected DATABASE or TABLE after RESTORE")
        args["target"] = self._expect_from_target()
        backup, latest = self._parse_backup_choice(allow_bare_latest=True)
        if backup is not None:
            args["backup"] = backup
        if latest:
            args["latest"] = True
        if self._match_text_seq("AS", "OF"):
            if self._match_text_seq("TIMESTAMP"):
                token = self._curr
                text = self._expect_string("an ISO-8601 timestamp")
                try:
                    _parse_iso_timestamp(text)
                except ValueError:
                    self.raise_error(f"Invalid ISO-8601 timestamp {text!r}", token)
                args["as_of_timestamp"] = text
            elif self._match_text_seq("SEQUENCE"):
                curr = self._curr
                if not curr or curr.token_type != TokenType.NUMBER or not curr.text.isdigit():
                    self.raise_error("Expected a non-negative integer after AS OF SEQUENCE")
                else:
                    self._advance()
                    args["as_of_sequence"] = int(curr.text)
            else:
                self.raise_error("Expected TIMESTAMP or SEQUENCE after AS OF")
        if args.get("kind") == "DATABASE":
            if not self._match(TokenType.INTO):
                self.raise_error("RESTORE DATABASE needs INTO 'path'")
            args["path"] = self._expect_string("the restore path")
        return self.expression(Restore(**args))

    def _parse_verify_backup(self) -> VerifyBackup:
        self._expect_word("BACKUP")
        latest = self._match_text_seq("LATEST")
        backup = None if latest else self._parse_backup_id()
        target = self._expect_from_target()
        return self.expression(
            VerifyBackup(backup=backup, latest=True if latest else None, target=target)
        )

    def _parse_tabledb_show(self) -> exp.Expr:
        if self._match_text_seq("TABLES"):
            return self.expression(ShowTables())
        if self._match_text_seq("INDEXES") or self._match_text_seq("INDEX"):
            table = self._expect_table() if self._match(TokenType.FROM) else None
            return self.expression(ShowIndexes(this=table))
        if self._match_text_seq("BACKUPS"):
            return self.expression(ShowBackups(target=self._expect_from_target()))
        self.raise_error("Expected TABLES, INDEXES or BACKUPS after SHOW")
        return self.expression(ShowTables())

    def _parse_tabledb_describe(self) -> exp.Describe:
        self._match(TokenType.TABLE)
        return self.expression(exp.Describe(this=self._expect_table()))

    def _parse_explain(self) -> Explain:
        query_plan = self._match_text_seq("QUERY", "PLAN")
        if not self._curr:
            self.raise_error("Expected a statement after EXPLAIN")
        inner = self._parse_statement()
        return self.expression(Explain(this=inner, query_plan=True if query_plan else None))

    def _parse_savepoint(self) -> Savepoint:
        return self.expression(Savepoint(this=self._expect_identifier("a savepoint name")))

    def _parse_release(self) -> Release:
        self._match_text_seq("SAVEPOINT")
        return self.expression(Release(this=self._expect_identifier("a savepoint name")))

    def _parse_end(self) -> exp.Commit:
        # SQLite: END [TRANSACTION] is COMMIT.
        self._match_text_seq("TRANSACTION")
        return self.expression(exp.Commit())

    def _parse_tabledb_copy(self) -> Copy:
        if self._match(TokenType.L_PAREN, advance=False):
            this = self._parse_select(nested=True, parse_subquery_alias=False)
        else:
            this = self._expect_table()
        if self._match(TokenType.FROM):
            kind = True
        elif self._match_text_seq("TO"):
            kind = False
        else:
            self.raise_error("Expected TO or FROM after COPY table")
            kind = False
        token = self._curr
        file = self._expect_string("the file name")
        files = [self.expression(exp.Literal.string(file), token)]
        params = self._parse_with_options(exp.CopyParameter)
        return self.expression(Copy(this=this, kind=kind, files=files, params=params))


# ----------------------------------------------------------------------- generator


def _string(generator: SQLiteGenerator, value: str) -> str:
    return generator.sql(exp.Literal.string(value))


def _options_sql(generator: SQLiteGenerator, options: list[exp.Expr] | None) -> str:
    if not options:
        return ""
    return f" WITH ({', '.join(generator.sql(option) for option in options)})"


def _backup_sql(generator: SQLiteGenerator, node: Backup) -> str:
    tables = ", ".join(generator.sql(table) for table in node.args.get("tables") or ())
    what = f"TABLE {tables}" if node.args["kind"] == "TABLE" else "DATABASE"
    target = _string(generator, node.target)
    return f"BACKUP {what} TO {target}{_options_sql(generator, node.args.get('options'))}"


def _backup_choice_sql(generator: SQLiteGenerator, node: exp.Expr, prefix: str) -> str:
    if node.args.get("latest"):
        return " LATEST"
    backup = node.args.get("backup")
    return f" {prefix}{_string(generator, backup)}" if backup is not None else ""


def _restore_sql(generator: SQLiteGenerator, node: Restore) -> str:
    if node.args["kind"] == "TABLE":
        what = f"TABLE {generator.sql(node.args['this'])}"
        alias = node.args.get("alias")
        if alias is not None:
            what += f" AS {generator.sql(alias)}"
    else:
        what = "DATABASE"
    sql = f"RESTORE {what} FROM {_string(generator, node.target)}"
    sql += _backup_choice_sql(generator, node, "BACKUP ")
    if node.args.get("as_of_timestamp") is not None:
        sql += f" AS OF TIMESTAMP {_string(generator, node.args['as_of_timestamp'])}"
    if node.args.get("as_of_sequence") is not None:
        sql += f" AS OF SEQUENCE {int(node.args['as_of_sequence'])}"
    if node.args.get("path") is not None:
        sql += f" INTO {_string(generator, node.args['path'])}"
    return sql


def _verify_sql(generator: SQLiteGenerator, node: VerifyBackup) -> str:
    choice = _backup_choice_sql(generator, node, "")
    return f"VERIFY BACKUP{choice} FROM {_string(generator, node.target)}"


def _drop_backup_sql(generator: SQLiteGenerator, node: DropBackup) -> str:
    backup = _string(generator, node.args["backup"])
    return f"DROP BACKUP {backup} FROM {_string(generator, node.target)}"


def _show_indexes_sql(generator: SQLiteGenerator, node: ShowIndexes) -> str:
    table = node.args.get("this")
    return f"SHOW INDEXES FROM {generator.sql(table)}" if table is not None else "SHOW INDEXES"


def _explain_sql(generator: SQLiteGenerator, node: Explain) -> str:
    query_plan = "QUERY PLAN " if node.args.get("query_plan") else ""
    return f"EXPLAIN {query_plan}{generator.sql(node.this)}"


class TableDBGenerator(SQLiteGenerator):
    """SQLite's generator plus our nodes."""

    COPY_HAS_INTO_KEYWORD = False
    COPY_PARAMS_EQ_REQUIRED = True

    TRANSFORMS = {
        **SQLiteGenerator.TRANSFORMS,
        Backup: _backup_sql,
        Restore: _restore_sql,
        ShowBackups: lambda self, e: f"SHOW BACKUPS FROM {_string(self, e.target)}",
        VerifyBackup: _verify_sql,
        DropBackup: _drop_backup_sql,
        ShowTables: lambda self, e: "SHOW TABLES",
        ShowIndexes: _show_indexes_sql,
        Explain: _explain_sql,
        Savepoint: lambda self, e: f"SAVEPOINT {self.sql(e.this)}",
        Release: lambda self, e: f"RELEASE SAVEPOINT {self.sql(e.this)}",
        Option: lambda self, e: f"{self.sql(e.this)} = {self.sql(e, 'expression')}",
        Copy: lambda self, e: self.copy_sql(e),
    }


class TableDBTokenizer(SQLite.Tokenizer):
    """SQLite's tokenizer, except that SHOW and EXPLAIN are ordinary words.

    sqlglot treats a statement that starts with a "command" token as opaque: the
    tokenizer swallows the rest of it as one string. We parse SHOW and EXPLAIN
    ourselves, so they must tokenize like any other word.
    """

    KEYWORDS = {k: v for k, v in SQLite.Tokenizer.KEYWORDS.items() if k != "EXPLAIN"}
    COMMANDS = SQLite.Tokenizer.COMMANDS - {TokenType.SHOW}


class TableDB(SQLite):
    """sqlglot dialect ``"tabledb"``: SQLite plus tabledb's statements."""

    Tokenizer = TableDBTokenizer
    Parser = TableDBParser
    Generator = TableDBGenerator


# -------------------------------------------------------------------------- entry


_DIALECT = TableDB()


def _position(sql: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(sql)))
    line = sql.count("\n", 0, offset) + 1
    col = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, col


_TOKEN_REPR = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: .*?>")


def _token_text(match: re.Match) -> str:
    return "the end of the input" if match.group(1) == "SENTINEL" else repr(match.group(2))


def parse(sql: str) -> list[exp.Expr]:
    """Parse one or more ``;``-separated statements into sqlglot trees.

    Empty statements (``;;``, comment-only chunks) are dropped, so ``parse("")`` is ``[]``.
    Raises SQLSyntaxError (a ProgrammingError with ``.line``/``.col``) on bad SQL.
    """
    tokenizer = _DIALECT.tokenizer()
    try:
        tokens = tokenizer.tokenize(sql)
    except TokenError:
        # The tokenizer's state lives on its core in sqlglot 30; _start is the offset
        # of the token being scanned (the opening quote or comment marker).
        offset = getattr(getattr(tokenizer, "_core", tokenizer), "_start", None)
        line, col = _position(sql, offset if isinstance(offset, int) else len(sql))
        raise SQLSyntaxError(
            f"Syntax error at line {line}, column {col}: cannot tokenize the SQL "
            f"(unterminated string, identifier or comment?)", line=line, col=col
        ) from None
    # SQLite's "REPLACE INTO t ..." is "INSERT OR REPLACE INTO t ..."; sqlglot sees a command
    for i, tok in enumerate(tokens):
        if tok.token_type == TokenType.REPLACE and (i == 0 or tokens[i - 1].token_type == TokenType.SEMICOLON) \
                and i + 1 < len(tokens) and tokens[i + 1].text.lstrip()[:4].upper() == "INTO":
            return parse(sql[:tok.start] + "INSERT OR REPLACE" + sql[tok.end + 1:])
    try:
        trees = _DIALECT.parser(error_level=ErrorLevel.IMMEDIATE).parse(tokens, sql)
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        line, col = first.get("line"), first.get("col")
        if isinstance(first.get("offset"), int):
            line, col = _position(sql, first["offset"])
        description = _TOKEN_REPR.sub(_token_text, first.get("description") or str(e))
        near = first.get("highlight")
        offset = first.get("offset")
        if isinstance(offset, int) and offset >= len(sql.rstrip()):
            near = " at the end of the input"
        else:
            near = f" near {near!r}" if near else ""
        where = f" at line {line}, column {col}" if line is not None else ""
        raise SQLSyntaxError(f"Syntax error{where}{near}: {description}", line=line, col=col) from None
    except (SqlglotError, RecursionError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, AssertionError) as e:
        # sqlglot gave up in a way that carries no position; still a syntax error to us.
        raise SQLSyntaxError(f"Syntax error: {type(e).__name__}: {e}", line=None, col=None) from None
    return [tree for tree in trees if tree is not None and not isinstance(tree, exp.Semicolon)]


def parse_one(sql: str) -> exp.Expr:
    """Parse exactly one statement; anything else is a SQLSyntaxError."""
    trees = parse(sql)
    if len(trees) != 1:
        raise SQLSyntaxError(f"Expected one SQL statement, found {len(trees)}", line=None, col=None)
    return trees[0]
