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

from dbbackup import leftovers, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import CorruptBackupError, DumpError, RestoreError
from dbbackup.streams import CHUNK_SIZE, IteratorReader, PeekableReader

SQLITE_HEADER = b"SQLite format 3\x00"
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
        is_database_file = stream.peek(len(SQLITE_HEADER)) == SQLITE_HEADER
        leftovers.sweep_directory(settings.TMP_DIR)
        with _scratch_database(self._scratch_directory()) as scratch_path:
            if is_database_file:
                with open(scratch_path, "wb") as scratch_file:
                    while chunk := stream.read(CHUNK_SIZE):
                        scratch_file.write(chunk)
            else:
                _execute_script(stream, scratch_path)
            scratch = sqlite3.connect(scratch_path)
            try:
                _check_integrity(scratch)
                with self._open() as target:
                    scratch.backup(target, progress=_give_up_after(self.lock_timeout(), self.database_name))
            finally:
                scratch.close()

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
    """A private (0600) empty file path for a scratch database, removed afterwards.

    Its name records this process as its owner, so if the run is killed the next one removes
    it (and its journal); stale scratch files of killed runs in ``directory`` go first.
    """
    leftovers.sweep_directory(directory)
    descriptor, path = tempfile.mkstemp(prefix=leftovers.scratch_prefix(), suffix=".sqlite3", dir=directory)
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


def _execute_script(stream: BinaryIO, scratch_path: str) -> None:
    """Run a SQL text dump, statement by statement, into an empty scratch database."""
    connection = sqlite3.connect(scratch_path, isolation_level=None)
    statement, number = "", 0
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
            statement += line
            if not sqlite3.complete_statement(statement):
                continue
            number += 1
            if not _TRANSACTION_CONTROL.match(statement):
                try:
                    connection.execute(statement)
                except sqlite3.Error as exc:
                    raise RestoreError(
                        f"Statement {number} of the SQL dump failed ({exc}): {statement[:200].strip()}"
                    ) from exc
            statement = ""
        if statement.strip():
            raise CorruptBackupError("The SQL dump ends in the middle of a statement: it is truncated.")
        connection.execute("COMMIT")
    finally:
        connection.close()


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
        """Copy the database into a scratch file in ``DBBACKUP_TMP_DIR``, and stream that.

        Scratch files of killed runs there (and beside the database) are removed first.
        """
        if not self._is_in_memory():
            leftovers.sweep_directory(Path(self.database_path).resolve().parent)
        leftovers.sweep_directory(settings.TMP_DIR)
        descriptor, path = tempfile.mkstemp(
            prefix=leftovers.scratch_prefix(), suffix=".sqlite3", dir=settings.TMP_DIR
        )
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
