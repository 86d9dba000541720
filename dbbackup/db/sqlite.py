"""SQLite connectors.

* :class:`SqliteBackupConnector` (the default): SQLite's online backup API; a consistent copy
  even while the site writes; the backup is a database file (``.sqlite3``).
* :class:`SqliteConnector`: a SQL text dump (``.dump``), one statement per line, readable by
  django-dbbackup's SqliteConnector and by the ``sqlite3`` shell.
* :class:`SqliteCPConnector`: a copy of the database file (``.dump``), taken under a read lock.

All three restore the same way, whichever wrote the backup: the stream is loaded into a scratch
database next to the target (or in ``DBBACKUP_TMP_DIR``), checked with ``PRAGMA
quick_check``, and only then copied into the live database with the backup API, which SQLite
performs as one write transaction. A damaged, truncated or tampered backup therefore leaves the
database exactly as it was. Open connections see the restored data (no file is swapped under
them), ``:memory:`` databases work, and WAL files need no special care.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dbbackup import formats, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import CorruptBackupError, DumpError, RestoreError
from dbbackup.streams import CHUNK_SIZE, IteratorReader, PeekableReader

SQLITE_HEADER = b"SQLite format 3\x00"
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
# SQLite's result codes for "another connection holds a lock" (sqlite3 exports them from 3.11).
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN(\s+TRANSACTION)?|COMMIT|END(\s+TRANSACTION)?)\s*;\s*$", re.I)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _SqliteConnectorBase(BaseDBConnector):
    """What the SQLite connectors share: where the database is, and the restore."""

    @property
    def database_path(self) -> str:
        return str(self.settings["NAME"])

    def _uses_django_connection(self) -> bool:
        return str(self.connection.settings_dict["NAME"]) == self.database_path

    def _is_in_memory(self) -> bool:
        if self._uses_django_connection():
            return self.connection.is_in_memory_db()
        return self.database_path == ":memory:" or "mode=memory" in self.database_path

    @contextlib.contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        """A raw sqlite3 connection to the database (Django's own when it is the same file)."""
        if self._uses_django_connection():
            self.connection.ensure_connection()
            yield self.connection.connection
            return
        connection = sqlite3.connect(self.database_path, uri=self.database_path.startswith("file:"))
        try:
            yield connection
        finally:
            connection.close()

    def _restore_dump(self, dump: BinaryIO) -> None:
        if self._uses_django_connection() and self.connection.in_atomic_block:
            raise RestoreError(
                f"Database {self.database_name!r} is inside a transaction (atomic block); "
                "SQLite can only be restored outside one."
            )
        stream = PeekableReader(dump)
        head = stream.peek(len(SQLITE_HEADER))
        if not head:
            raise CorruptBackupError(
                "The backup is empty: an empty file is never a backup; nothing was restored."
            )
        is_database_file = head == SQLITE_HEADER
        with _scratch_database(self._scratch_directory()) as scratch_path:
            if is_database_file:
                size = 0
                with open(scratch_path, "wb") as scratch_file:
                    while chunk := stream.read(CHUNK_SIZE):
                        scratch_file.write(chunk)
                        size += len(chunk)
                _check_database_file(scratch_path, size)
            else:
                # A checksum checked at the end of the stream proves completeness by itself.
                needs_end = not getattr(self, "stream_has_checksum", False)
                _execute_script(stream, scratch_path, needs_end=needs_end)
            scratch = sqlite3.connect(scratch_path)
            try:
                _check_integrity(scratch)
                with self._open() as target:
                    scratch.backup(target, progress=_give_up_after(self.lock_timeout(), self.database_name))
            finally:
                scratch.close()

    @staticmethod
    def format_proof(found: str | None) -> str:
        """What a restore without a checksum proved about the backup, in words."""
        if found == formats.SQLITE_FILE:
            return "checked as a well-formed SQLite database only"
        return "checked as a complete SQL text dump only"

    def lock_timeout(self) -> float:
        """How long a restore waits for other connections' locks: ``OPTIONS["timeout"]`` or 5 s."""
        return float((self.settings.get("OPTIONS") or {}).get("timeout", 5))

    def _scratch_directory(self) -> str:
        """Next to the database file when possible (same disk), else ``DBBACKUP_TMP_DIR``."""
        if not self._is_in_memory():
            directory = Path(self.database_path).resolve().parent
            if os.access(directory, os.W_OK):
                return str(directory)
        return settings.TMP_DIR


@contextlib.contextmanager
def _scratch_database(directory: str) -> Iterator[str]:
    """A private (0600) empty file path for a scratch database, removed afterwards."""
    descriptor, path = tempfile.mkstemp(prefix=".dbbackup-", suffix=".sqlite3", dir=directory)
    os.close(descriptor)
    try:
        yield path
    finally:
        for leftover in (path, f"{path}-journal", f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _give_up_after(seconds: float, database: str):
    """A backup-API progress callback that stops waiting for a busy database after ``seconds``."""
    deadline = time.monotonic() + seconds

    def progress(status: int, remaining: int, total: int) -> None:
        if status in (_SQLITE_BUSY, _SQLITE_LOCKED) and time.monotonic() > deadline:
            raise RestoreError(
                f"Database {database!r} stayed locked by another connection for {seconds:g} s; nothing "
                "was restored. Stop the processes writing to it (or raise OPTIONS['timeout']) and retry."
            )

    return progress


def _check_integrity(connection: sqlite3.Connection) -> None:
    try:
        result = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CorruptBackupError(f"The backup is not a usable SQLite database: {exc}") from exc
    if not result or result[0] != "ok":
        raise CorruptBackupError(f"The backup fails SQLite's integrity check: {result and result[0]}")


def _check_database_file(path: str, size: int) -> None:
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


def _execute_script(stream: BinaryIO, scratch_path: str, needs_end: bool = True) -> None:
    """Run a SQL text dump, statement by statement, into an empty scratch database.

    The dump runs with :func:`_file_guard`: it cannot touch any file but the scratch database.
    With ``needs_end`` (no checksum vouches for the stream) the dump must prove it is complete:
    it ends with :data:`END_MARKER` (required when it starts with :data:`HEAD_MARKER`), or its
    last statement is one of :data:`_COMPLETE_ENDINGS`.
    """
    connection = sqlite3.connect(scratch_path, isolation_level=None)
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


class SqliteBackupConnector(_SqliteConnectorBase):
    """Backs up with SQLite's online backup API; the default for SQLite."""

    extension = "sqlite3"

    def _create_dump(self) -> BinaryIO:
        descriptor, path = tempfile.mkstemp(prefix=".dbbackup-", suffix=".sqlite3", dir=settings.TMP_DIR)
        os.close(descriptor)
        try:
            destination = sqlite3.connect(path)
            try:
                with self._open() as source:
                    source.backup(destination)
            finally:
                destination.close()
            # The open handle keeps the data; the name goes now so nothing is left behind.
            return open(path, "rb")
        except sqlite3.Error as exc:
            raise DumpError(f"SQLite could not back up {self.database_path!r}: {exc}") from exc
        finally:
            os.unlink(path)


class SqliteConnector(_SqliteConnectorBase):
    """Dumps SQL text: the schema, then one ``INSERT OR REPLACE`` line per row.

    ``EXCLUDE``/``-x`` leaves out the rows of a table, not the table itself.
    """

    extension = "dump"
    supports_exclude = True

    def _create_dump(self) -> BinaryIO:
        return IteratorReader(line.encode("utf-8") for line in self._dump_lines())

    def _dump_lines(self) -> Iterator[str]:
        yield HEAD_MARKER
        with self._open() as connection:
            cursor = connection.cursor()
            tables = cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            ).fetchall()
            for table, sql in tables:
                yield _one_line(sql).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1) + ";\n"
                if table not in self.exclude:  # excluded tables keep their schema, not their rows
                    yield from _insert_lines(connection, table)
            has_sequences = cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
            ).fetchone()
            if has_sequences:
                yield "DELETE FROM sqlite_sequence;\n"
                yield from _insert_lines(connection, "sqlite_sequence", replace=False)
            others = cursor.execute(
                "SELECT type, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger', 'view') "
                "AND sql IS NOT NULL ORDER BY type = 'view', name"
            ).fetchall()
            for kind, _table, sql in others:
                create = f"CREATE {kind.upper()}"
                yield _one_line(sql).replace(create, f"{create} IF NOT EXISTS", 1) + ";\n"
            cursor.close()
        yield END_MARKER


def _one_line(sql: str) -> str:
    return " ".join(part.strip() for part in sql.splitlines())


def _insert_lines(connection: sqlite3.Connection, table: str, replace: bool = True) -> Iterator[str]:
    table_sql = _quote_identifier(table)
    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table_sql})")]
    if not columns:
        return
    column_list = ",".join(_quote_identifier(column) for column in columns)
    values = "||','||".join(f"quote({_quote_identifier(column)})" for column in columns)
    verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
    query = f"SELECT {values} FROM {table_sql}"  # noqa: S608 - identifiers are quoted above
    for (row_values,) in connection.execute(query):
        yield f"{verb} {table_sql}({column_list}) VALUES({row_values});\n"


class SqliteCPConnector(_SqliteConnectorBase):
    """Copies the database file as it is on disk, holding a read lock while it streams."""

    extension = "dump"

    def _create_dump(self) -> BinaryIO:
        if self._is_in_memory():
            raise DumpError(
                f"SqliteCPConnector copies the database file, and {self.database_name!r} is an "
                "in-memory database; use dbbackup.db.sqlite.SqliteBackupConnector."
            )
        path = self.database_path
        if not os.path.isfile(path):
            raise DumpError(f"The SQLite database file {path!r} does not exist.")
        return IteratorReader(_locked_file_chunks(path))


def _locked_file_chunks(path: str) -> Iterator[bytes]:
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        lock.execute("BEGIN")
        lock.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the shared lock
        with open(path, "rb") as database_file:
            while chunk := database_file.read(CHUNK_SIZE):
                yield chunk
    finally:
        lock.close()
