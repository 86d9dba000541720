"""What a SQL script from a backup may do when dbbackup feeds it to ``psql``.

:class:`ScriptGuard` reads a plain ``pg_dump`` script (or the SQL ``pg_restore -f -`` writes)
line by line, lexing it the way ``psql`` does (quotes, dollar quotes, comments, parentheses,
``BEGIN ATOMIC`` bodies, ``COPY ... FROM stdin`` data ending at ``\\.``), and hands on what may
run. The contract:

* **No psql meta-command runs.** A backslash command outside quotes, comments and COPY data
  (``\\!``, ``\\o``, ``\\copy``, ``\\i``, ``\\g``, ``\\;`` ...) raises :class:`UnsafeScriptError`
  naming it. Only the ``\\restrict KEY`` / ``\\unrestrict KEY`` lines that pg_dump writes are
  dropped (dbbackup restricts the session with a key of its own).
* **The commit belongs to dbbackup.** With ``transaction=True`` the script's own top-level
  ``BEGIN``/``START TRANSACTION``/``COMMIT``/``END`` (pg_dump writes them around large objects)
  are dropped; ``ROLLBACK``, ``ABORT``, ``PREPARE TRANSACTION`` and ``COMMIT PREPARED``, which
  pg_dump never writes, are refused. Such a statement must stand on lines of its own.
* **No server-side file or program.** ``COPY`` may only read ``FROM stdin`` (or write ``TO
  stdout``); ``COPY ... PROGRAM`` and ``COPY`` to or from a server file are refused.
* ``SET lock_timeout = ...`` (pg_dump writes ``= 0``) is replaced by dbbackup's own.
* :attr:`ScriptGuard.complete` tells whether pg_dump's completion marker was seen, and
  :meth:`ScriptGuard.finish` refuses a script that ends inside a statement, string or COPY.
"""

from __future__ import annotations

import re

from dbbackup.db import pgstatements
from dbbackup.db.pgstatements import UnsafeScriptError
from dbbackup.exceptions import CorruptBackupError

__all__ = ["COMPLETION_MARKER", "ScriptGuard", "UnsafeScriptError"]

#: The comment pg_dump and pg_restore write once the whole dump was written.
COMPLETION_MARKER = b"-- PostgreSQL database dump complete"

_RESTRICT_LINE = re.compile(rb"\\(?:un)?restrict[ \t]+[A-Za-z0-9]+[ \t]*\r?\n?")
_META_NAME = re.compile(rb"\\([A-Za-z!?;:]*)")
_TOKEN = re.compile(
    rb"(?P<ws>\s+)"
    rb"|(?P<comment>--)"
    rb"|(?P<cstart>/\*)"
    rb"|(?P<estring>[eE]')"
    rb"|(?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)"
    rb"|(?P<squote>')"
    rb"|(?P<dquote>\")"
    rb"|(?P<dollar>\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)"
    rb"|(?P<semi>;)|(?P<lparen>\()|(?P<rparen>\))"
    rb"|(?P<backslash>\\)"
    rb"|(?P<other>[0-9]+|.)",
    re.S,
)
#: Runs of text that cannot change the lexer's state (words, numbers, spaces, most operators):
#: skipped in one step once a statement is known to be an ordinary one.
_BORING = re.compile(rb"(?:[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*|[^'\"$\\/\-;()A-Za-z_\x80-\xff])+")
_IDENTIFIER_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$"
) | frozenset(range(0x80, 0x100))
_TRANSACTION_WORDS = pgstatements.TRANSACTION_WORDS
_SPECIAL_WORDS = _TRANSACTION_WORDS | {b"COPY", b"SET"}
#: How much of a COPY data line is held before it is handed on (data lines can be huge).
_COPY_FLUSH = 1024 * 1024


class _Statement:
    """The top-level tokens of the statement being read (words upper-cased, b"'" for strings)."""

    def __init__(self) -> None:
        self.tokens: list[bytes] = []
        self.started = False
        self.first_line = 0
        self.create_routine: list[bytes] = []  # psql's CREATE [OR REPLACE] FUNCTION heuristic
        self.routine: bool | None = None  # None: not known yet
        self.begin_depth = 0

    @property
    def fast(self) -> bool:
        """Whether the rest of the statement can only matter through quotes, parentheses and ``;``."""
        return self.routine is False and bool(self.tokens) and self.tokens[0] not in _SPECIAL_WORDS

    @property
    def special(self) -> bool:
        return bool(self.tokens) and self.tokens[0] in _SPECIAL_WORDS


class ScriptGuard:
    """Filters a SQL script for ``psql``; see the module docstring.

    Feed it bytes with :meth:`feed` (any chunking), hand on what it returns, and call
    :meth:`finish` at the end of the input.
    """

    def __init__(self, *, transaction: bool = True, lock_timeout_sql: bytes | None = None) -> None:
        self.transaction = transaction
        self.lock_timeout_sql = lock_timeout_sql
        self.complete = False
        self.lines = 0
        self._pending = b""
        self._copy = False
        self._copy_line_start = True
        # lexer state carried across lines
        self._quote: bytes | None = None  # b"'", b"e", b'"', a dollar tag, or b"/*"
        self._comment_depth = 0
        self._paren = 0
        self._std_strings = True
        self._stmt = _Statement()
        # lines held until the special statement they carry is decided
        self._held: list[bytes] = []
        self._held_statements = 0
        self._held_actions: list[tuple[str, bytes]] = []
        self._line_text = b""

    # -- streaming ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the script; return what may be passed on to psql now."""
        buffer = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos, size = 0, len(buffer)
        while pos < size:
            if self._copy:
                cut = self._copy_data(buffer, pos, out)
                if cut is None:
                    break
                pos = cut
                continue
            end = buffer.find(b"\n", pos)
            if end < 0:
                break
            out.append(self._line(buffer[pos : end + 1]))
            pos = end + 1
        self._pending = buffer[pos:]
        return b"".join(out)

    def _copy_data(self, buffer: bytes, pos: int, out: list[bytes]) -> int | None:
        """Pass on COPY data from ``pos`` up to its ``\\.`` line; None when more input is needed."""
        cut = self._copy_end(buffer, pos)
        if cut is not None:
            self._copy, self._copy_line_start = False, True
        elif (last := buffer.rfind(b"\n", pos)) >= 0:
            cut = last + 1
            self._copy_line_start = True
        elif len(buffer) - pos > _COPY_FLUSH:  # a long data line: hand it on without waiting for its end
            cut = len(buffer)
            self._copy_line_start = False
        else:
            return None
        out.append(buffer[pos:cut])
        self.lines += buffer.count(b"\n", pos, cut)
        return cut

    def _copy_end(self, buffer: bytes, pos: int) -> int | None:
        """The end of the ``\\.`` line that ends COPY data, if it is in ``buffer[pos:]``."""
        if self._copy_line_start:
            for terminator in (b"\\.\n", b"\\.\r\n"):
                if buffer.startswith(terminator, pos):
                    return pos + len(terminator)
        found = buffer.find(b"\n\\.", pos)
        while found >= 0:
            after = found + 3
            if buffer.startswith(b"\n", after):
                return after + 1
            if buffer.startswith(b"\r\n", after):
                return after + 2
            found = buffer.find(b"\n\\.", found + 1)
        return None

    def finish(self) -> bytes:
        """The end of the script: hand on the last line; raise if it ends mid-statement."""
        where = f"after line {self.lines}"
        if self._copy and self._copy_line_start and self._pending.rstrip(b"\r") == b"\\.":
            self._copy = False  # psql also takes "\." without a newline at the very end
            out, self._pending = self._pending + b"\n", b""
            return out
        if self._copy:
            raise CorruptBackupError(
                f"The backup's SQL ends inside COPY data ({where}): it is truncated. Nothing was restored."
            )
        if self._quote is not None or self._stmt.started or self._held:
            raise CorruptBackupError(
                f"The backup's SQL ends inside a statement ({where}): it is truncated. Nothing was restored."
            )
        out = self._line(self._pending) if self._pending else b""
        self._pending = b""
        if self._quote is not None or self._stmt.started or self._held:
            raise CorruptBackupError(
                f"The backup's SQL ends inside a statement (line {self.lines}): it is truncated. "
                "Nothing was restored."
            )
        return out

    # -- one line ----------------------------------------------------------------------------

    def _line(self, line: bytes) -> bytes:
        self.lines += 1
        clean = self._quote is None and not self._stmt.started
        if clean and line.strip() == COMPLETION_MARKER:
            self.complete = True
            return line
        if clean and _RESTRICT_LINE.fullmatch(line.lstrip(b" \t")):
            return b""  # pg_dump's own \restrict / \unrestrict: dbbackup restricts the session
        continued = self._stmt.started
        self._line_text = line
        starts, enters_copy = self._lex(line)
        if starts:
            self.complete = False  # statements after the completion marker: not pg_dump's end
        if not self._held:
            self._held_statements = 1 if continued else 0
        self._held.append(line)
        self._held_statements += starts
        if self._stmt.started and (self._stmt.special or not self._stmt.tokens):
            return b""  # hold the lines until this statement is decided
        out = self._release()
        self._copy = enters_copy
        return out

    def _release(self) -> bytes:
        held, actions, count = self._held, self._held_actions, self._held_statements
        self._held, self._held_actions, self._held_statements = [], [], 0
        changes = [action for action in actions if action[0] != "keep"]
        if not changes:
            return b"".join(held)
        if count > 1:
            raise UnsafeScriptError(
                f"Line {self.lines} of the SQL script puts {changes[0][1].decode(errors='replace')} "
                "on a line with other statements; dbbackup cannot run it safely. Nothing was restored."
            )
        kind, text = changes[0]
        return text if kind == "replace" else b""

    # -- the lexer ---------------------------------------------------------------------------

    def _lex(self, line: bytes) -> tuple[int, bool]:
        """Advance the lexer over ``line``; return (statements started, COPY data follows)."""
        pos, size, starts, enters_copy = 0, len(line), 0, False
        while pos < size:
            if self._quote is not None:
                pos = self._skip_quoted(line, pos)
                continue
            if self._stmt.fast and (boring := _BORING.match(line, pos)):
                pos = boring.end()
                if pos >= size:
                    break
            match = _TOKEN.match(line, pos)
            kind, text, pos = match.lastgroup, match.group(), match.end()
            if kind == "ws":
                continue
            if kind == "comment":
                break
            if enters_copy:
                raise UnsafeScriptError(
                    f"Line {self.lines} of the SQL script has text after a COPY ... FROM stdin "
                    "statement; nothing was restored."
                )
            if kind == "cstart":
                self._quote, self._comment_depth = b"/*", 1
                continue
            if not self._stmt.started:
                self._stmt.started, self._stmt.first_line = True, self.lines
                starts += 1
            if kind == "backslash":
                name = _META_NAME.match(line, pos - 1).group().decode(errors="replace")
                raise UnsafeScriptError(
                    f"The backup contains the psql meta-command {name} (line {self.lines}); dbbackup "
                    "never lets a backup run psql commands. Nothing was restored."
                )
            if kind == "squote" and _escape_prefix(line, pos - 1):
                kind = "estring"  # E'...' whose E was skipped as part of a boring run
            if kind in ("squote", "estring"):
                self._quote = b"e" if kind == "estring" or not self._std_strings else b"'"
                self._token(b"'")
            elif kind == "dquote":
                self._quote = b'"'
                self._token(b'"')
            elif kind == "dollar":
                self._quote = text
                self._token(b"'")
            elif kind == "word":
                self._word(text.upper())
            elif kind == "lparen":
                self._paren += 1
            elif kind == "rparen":
                self._paren = max(0, self._paren - 1)
            elif kind == "semi":
                if self._paren == 0 and self._stmt.begin_depth == 0:
                    enters_copy = self._end_statement()
            else:
                self._token(b"?")
        return starts, enters_copy

    def _skip_quoted(self, line: bytes, pos: int) -> int:
        quote = self._quote
        if quote == b"/*":
            while True:
                match = re.compile(rb"/\*|\*/").search(line, pos)
                if match is None:
                    return len(line)
                pos = match.end()
                self._comment_depth += 1 if match.group() == b"/*" else -1
                if self._comment_depth == 0:
                    self._quote = None
                    return pos
        if quote in (b"'", b"e", b'"'):
            char = b'"' if quote == b'"' else b"'"
            while True:
                found = line.find(char, pos)
                if quote == b"e":
                    slash = line.find(b"\\", pos)
                    if slash >= 0 and (found < 0 or slash < found):
                        pos = slash + 2
                        if pos > len(line):  # a backslash at the end of a chunk: escapes the next
                            return len(line)
                        continue
                if found < 0:
                    return len(line)
                if line[found + 1 : found + 2] == char:
                    pos = found + 2
                    continue
                self._quote = None
                return found + 1
        found = line.find(quote, pos)  # a dollar quote
        if found < 0:
            return len(line)
        self._quote = None
        return found + len(quote)

    def _token(self, token: bytes) -> None:
        if self._paren == 0 and len(self._stmt.tokens) < 64:
            self._stmt.tokens.append(token)

    def _word(self, word: bytes) -> None:
        stmt = self._stmt
        self._token(word)
        # psql's heuristic: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN ... END
        # (and CASE ... END within) do not end at a semicolon.
        if stmt.routine is None:
            stmt.create_routine.append(word)
            stmt.routine = _routine(stmt.create_routine)
        if stmt.routine and self._paren == 0:
            if word == b"BEGIN" or (word == b"CASE" and stmt.begin_depth >= 1):
                stmt.begin_depth += 1
            elif word == b"END" and stmt.begin_depth > 0:
                stmt.begin_depth -= 1

    # -- statements --------------------------------------------------------------------------

    def _end_statement(self) -> bool:
        """Decide what to do with the statement just ended; return True if COPY data follows."""
        tokens, self._stmt = self._stmt.tokens, _Statement()
        first = tokens[0] if tokens else b""
        label = b" ".join(tokens[:2]) if tokens[1:2] and tokens[1] not in (b"'", b"?") else first
        if first in _TRANSACTION_WORDS and self.transaction:
            self._held_actions.append(pgstatements.transaction_action(tokens, label, self.lines))
        elif first == b"COPY":
            return pgstatements.copy_reads_stdin(tokens, self.lines)
        elif first == b"SET":
            self._held_actions.append(self._set_action(tokens))
        return False

    def _set_action(self, tokens: list[bytes]) -> tuple[str, bytes]:
        words = [token for token in tokens[1:] if token not in (b"SESSION", b"LOCAL")]
        name = words[0] if words else b""
        if name == b"LOCK_TIMEOUT" and self.lock_timeout_sql is not None:
            return ("replace", self.lock_timeout_sql + b"\n")
        held = (b"".join(self._held) + self._line_text).upper()
        if name == b"STANDARD_CONFORMING_STRINGS":
            self._std_strings = not re.search(
                rb"\b(OFF|FALSE|NO|0)\b", held.split(b"STANDARD_CONFORMING_STRINGS", 1)[1]
            )
        if name in (b"CLIENT_ENCODING", b"NAMES"):
            pgstatements.check_encoding(held.split(name, 1)[1])
        return ("keep", b"")


def _routine(words: list[bytes]) -> bool | None:
    """psql's test for CREATE [OR REPLACE] FUNCTION|PROCEDURE; None while undecided."""
    kinds = (b"FUNCTION", b"PROCEDURE")
    expected = [b"CREATE", (b"OR", *kinds), b"REPLACE", kinds]
    for index, word in enumerate(words):
        allowed = expected[index]
        if word not in (allowed if isinstance(allowed, tuple) else (allowed,)):
            return False
        if word in kinds:
            return True
    return None


def _escape_prefix(line: bytes, quote: int) -> bool:
    """Whether the quote at ``quote`` opens an E'...' string (a lone E or e right before it)."""
    return quote >= 1 and line[quote - 1] in b"eE" and (quote < 2 or line[quote - 2] not in _IDENTIFIER_BYTES)
