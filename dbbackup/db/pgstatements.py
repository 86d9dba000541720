"""The top-level statements of a restore script that :class:`~dbbackup.db.pgscript.ScriptGuard`
looks at closely: transaction control, ``COPY`` and the client encoding.

Each rule gets the statement's top-level tokens (words upper-cased, ``b"'"`` for a string) and
either says what to do with it or raises :class:`UnsafeScriptError`.
"""

from __future__ import annotations

import re

from dbbackup.exceptions import RestoreError

TRANSACTION_WORDS = frozenset({b"BEGIN", b"START", b"COMMIT", b"END", b"ROLLBACK", b"ABORT", b"PREPARE"})
#: Client encodings whose multi-byte characters may contain ASCII quotes or backslashes.
UNSAFE_ENCODINGS = frozenset({"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB"})


class UnsafeScriptError(RestoreError):
    """The script asks for something a restore must not do; nothing was restored."""


def transaction_action(tokens: list[bytes], label: bytes, line: int) -> tuple[str, bytes]:
    """``("keep", b"")`` for what stays inside the restore's transaction (savepoints, prepared
    statements), ``("drop", label)`` for BEGIN/START TRANSACTION/COMMIT/END; raise for what
    would end or split it (ROLLBACK, ABORT, PREPARE TRANSACTION, ... PREPARED, AND CHAIN)."""
    first, rest = tokens[0], tokens[1:]
    if first == b"PREPARE" and rest[:1] != [b"TRANSACTION"]:
        return ("keep", b"")  # PREPARE name AS ...: a prepared statement
    if first == b"ROLLBACK" and b"TO" in rest and b"PREPARED" not in rest:
        return ("keep", b"")  # ROLLBACK TO SAVEPOINT stays inside the transaction
    if first == b"START" and rest[:1] != [b"TRANSACTION"]:
        return ("keep", b"")
    chained = b"AND" in rest and b"CHAIN" in rest and b"NO" not in rest
    if first in (b"ROLLBACK", b"ABORT", b"PREPARE") or b"PREPARED" in rest or chained:
        raise UnsafeScriptError(
            f"The SQL script ends or splits the restore's transaction with "
            f"{label.decode(errors='replace')} (line {line}), which pg_dump never writes; "
            "nothing was restored."
        )
    return ("drop", label)


def copy_reads_stdin(tokens: list[bytes], line: int) -> bool:
    """True for ``COPY ... FROM stdin`` (data follows); False for ``COPY ... TO stdout``;
    raise for ``COPY ... PROGRAM`` and COPY from or to a server file."""
    if b"PROGRAM" in tokens:
        raise UnsafeScriptError(
            f"The SQL script runs a program on the server with COPY ... PROGRAM (line {line}); "
            "nothing was restored."
        )
    for index, token in enumerate(tokens):
        if token in (b"FROM", b"TO"):
            target = tokens[index + 1 : index + 2]
            if target == [b"STDIN"] and token == b"FROM":
                return True
            if target == [b"STDOUT"] and token == b"TO":
                return False
            raise UnsafeScriptError(
                f"The SQL script reads or writes a file on the server with COPY (line {line}); "
                "nothing was restored."
            )
    return False


def check_encoding(value_text: bytes) -> None:
    """Refuse ``SET client_encoding``/``SET NAMES`` to an encoding that is not ASCII-safe."""
    found = re.findall(rb"'([A-Z0-9_]+)'|\b([A-Z0-9_]+)\s*;", value_text.upper())
    values = {part.decode() for pair in found for part in pair if part}
    if values & UNSAFE_ENCODINGS:
        raise UnsafeScriptError(
            f"The SQL script uses the client encoding {', '.join(sorted(values))}, which dbbackup "
            "cannot check safely; dump with --encoding=UTF8. Nothing was restored."
        )
