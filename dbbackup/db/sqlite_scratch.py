"""Loading a backup into a scratch SQLite database, and what its format proves.

The SQLite connectors restore through a private scratch database (see :mod:`dbbackup.db.sqlite`).
This module fills it and checks it: a database file must match its header and pass
``PRAGMA quick_check``; a SQL text dump runs under :func:`_file_guard`, which keeps it inside
the scratch database, and must show its end when no checksum vouches for it.
"""

from __future__ import annotations

import io
import re
import sqlite3
from typing import BinaryIO

from dbbackup.exceptions import CorruptBackupError, RestoreError
from dbbackup.streams import CHUNK_SIZE

#: The first and last lines of every SqliteConnector dump: a dump that starts with HEAD_MARKER
#: is complete only if it ends with END_MARKER. Comments, so django-dbbackup and the sqlite3
#: shell read the dump as before.
HEAD_MARKER = "-- dbbackup: SQLite dump\n"
END_MARKER = "-- dbbackup: end of dump\n"
#: Statements a backup never needs and that could write elsewhere (``VACUUM INTO``).
_REFUSED_STATEMENTS = re.compile(r"^\s*VACUUM\b", re.I)
#: Last statements that prove a SQL text dump complete when it has no END_MARKER:
#: ``COMMIT;`` (the sqlite3 shell's ``.dump``), or an index, trigger or view (django-dbbackup
#: writes those after every table's rows).
_COMPLETE_ENDINGS = re.compile(
    r"^\s*(COMMIT|END)(\s+TRANSACTION)?\s*;|^\s*CREATE\s+(UNIQUE\s+)?(INDEX|TRIGGER|VIEW)\b", re.I
)
#: PRAGMAs a SQL text dump may run in the scratch database; all others (journal files, other
#: directories, ...) are refused.
_ALLOWED_PRAGMAS = frozenset(
    {
        "foreign_keys", "defer_foreign_keys", "writable_schema", "user_version", "application_id",
        "encoding", "recursive_triggers", "legacy_alter_table", "case_sensitive_like",
        "ignore_check_constraints", "auto_vacuum", "page_size",
    }
)  # fmt: skip
_TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN(\s+TRANSACTION)?|COMMIT|END(\s+TRANSACTION)?)\s*;\s*$", re.I)


def check_integrity(path: str) -> None:
    """Refuse the database file ``path`` unless ``PRAGMA quick_check`` answers ``ok``."""
    connection = sqlite3.connect(path)
    try:
        result = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CorruptBackupError(f"The backup is not a usable SQLite database: {exc}") from exc
    finally:
        connection.close()
    if not result or result[0] != "ok":
        raise CorruptBackupError(f"The backup fails SQLite's integrity check: {result and result[0]}")


def check_database_file(path: str, size: int) -> None:
    """Refuse a database file whose size disagrees with its header (truncated, or bytes appended).

    SQLite ignores bytes past the page count its header records, and ``quick_check`` does not
    see pages cut off at a page boundary, so the header's page size and count are checked here.
    """
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100:
        raise CorruptBackupError(
            f"The backup is a truncated SQLite database ({size} bytes; its header alone is 100)."
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise CorruptBackupError(f"The backup is not a usable SQLite database (page size {page_size}).")
    if size % page_size:
        raise CorruptBackupError(
            f"The backup is {size} bytes, not a whole number of {page_size}-byte SQLite pages: it is "
            "truncated or has bytes appended."
        )
    page_count = int.from_bytes(header[28:32], "big")
    count_is_valid = header[24:28] == header[92:96]  # SQLite's rule for the in-header size
    if page_count and count_is_valid and size != page_count * page_size:
        raise CorruptBackupError(
            f"The backup is {size} bytes but its SQLite header says {page_count} pages of {page_size} "
            "bytes: it is truncated or has bytes appended."
        )


def _file_guard(refusals: list[str]):
    """A SQLite authorizer that keeps a SQL text dump inside the scratch database.

    Denies ATTACH and DETACH (also what ``VACUUM INTO`` does first), ``load_extension()`` and
    every PRAGMA outside :data:`_ALLOWED_PRAGMAS`; what it denied is appended to ``refusals``.
    """

    def authorize(action: int, arg1: str | None, arg2: str | None, *_where: str | None) -> int:
        if action == sqlite3.SQLITE_ATTACH:
            refusals.append(f"it attaches another database file ({arg1!r})")
        elif action == sqlite3.SQLITE_DETACH:
            refusals.append("it detaches a database")
        elif action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
            refusals.append("it loads an extension")
        elif action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in _ALLOWED_PRAGMAS:
            refusals.append(f"PRAGMA {arg1} is not allowed in a backup")
        else:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def execute_script(stream: BinaryIO, scratch_path: str, needs_end: bool = True) -> None:
    """Run a SQL text dump, statement by statement, into an empty scratch database.

    The dump runs with :func:`_file_guard`: it cannot touch any file but the scratch database.
    With ``needs_end`` (no checksum vouches for the stream) the dump must prove it is complete:
    it ends with :data:`END_MARKER` (required when it starts with :data:`HEAD_MARKER`), or its
    last statement is one of :data:`_COMPLETE_ENDINGS`.
    """
    connection = sqlite3.connect(scratch_path, isolation_level=None)
    if hasattr(connection, "setlimit"):  # Python 3.11+; the authorizer refuses ATTACH anyway
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    refusals: list[str] = []
    connection.set_authorizer(_file_guard(refusals))
    statement, number, last, ended, ours = "", 0, "", False, False
    try:
        connection.execute("BEGIN")
        for raw_line in io.BufferedReader(_RawAdapter(stream), CHUNK_SIZE):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptBackupError(
                    f"The backup is neither a SQLite database nor UTF-8 SQL text (statement {number + 1})."
                ) from exc
            if "\x00" in line:
                raise CorruptBackupError(
                    "The backup is neither a SQLite database nor SQL text "
                    f"(NUL byte in statement {number + 1})."
                )
            if ended:
                if line.strip():
                    raise CorruptBackupError(
                        "The SQL dump has text after its end-of-dump marker: it was changed."
                    )
                continue
            if not statement and line == END_MARKER:
                ended = True
                continue
            if not statement and number == 0 and line == HEAD_MARKER:
                ours = True
                continue
            statement += line
            if not sqlite3.complete_statement(statement):
                continue
            number += 1
            if _REFUSED_STATEMENTS.match(statement):
                raise CorruptBackupError(
                    f"Statement {number} of the SQL dump is refused because VACUUM has no place in a backup; "
                    f"nothing was restored: {statement[:200].strip()}"
                )
            if not _TRANSACTION_CONTROL.match(statement):
                try:
                    connection.execute(statement)
                except sqlite3.Error as exc:
                    if refusals:
                        raise CorruptBackupError(
                            f"Statement {number} of the SQL dump is refused because {refusals[-1]}; nothing "
                            f"was restored: {statement[:200].strip()}"
                        ) from exc
                    raise RestoreError(
                        f"Statement {number} of the SQL dump failed ({exc}): {statement[:200].strip()}"
                    ) from exc
            last, statement = statement, ""
        if _only_comments(statement):
            statement = ""
        if statement.strip():
            raise CorruptBackupError("The SQL dump ends in the middle of a statement: it is truncated.")
        if needs_end and not ended and (ours or not _COMPLETE_ENDINGS.match(last)):
            raise CorruptBackupError(
                "The SQL dump has no end: no end-of-dump marker, no final COMMIT, and it stops before the "
                "indexes that follow the data. It is probably truncated; nothing was restored."
            )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("--") for line in text.splitlines())


class _RawAdapter(io.RawIOBase):
    """Lets ``io.BufferedReader`` read lines from any binary stream."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
