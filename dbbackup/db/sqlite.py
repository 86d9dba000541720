"""SQLite connectors.

* :class:`SqliteBackupConnector` (the default): SQLite's online backup API; a consistent copy
  even while the site writes; the backup is a database file (``.sqlite3``).
* :class:`SqliteConnector`: a SQL text dump (``.dump``), one statement per line, readable by
  django-dbbackup's SqliteConnector and by the ``sqlite3`` shell.
* :class:`SqliteCPConnector`: a copy of the database file (``.dump``), taken under a read lock.

All three restore the same way: the stream is loaded into a scratch database next to the target
(or in ``DBBACKUP_TMP_DIR``), checked (header and size, end of a text dump, ``PRAGMA quick_check``
unless a matching SHA-256 sidecar vouches for a database file's bytes and this is no drill: see
:mod:`dbbackup.db.sqlite_scratch`), and only then put in place of the live database:

* renamed over it (one atomic ``os.replace``) when no process has the live file open, which
  the kernel proves with a file lease (:mod:`dbbackup.db.sqlite_swap`; Django's own connection
  in this process is closed first and reopens when next used);
* otherwise copied into it with the backup API, which SQLite performs as one write
  transaction, so that open connections see the restored data (nothing is swapped under them);
  ``:memory:`` databases always go this way.

A damaged, truncated or tampered backup therefore leaves the database exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dbbackup import formats, leftovers, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.db.sqlite_scratch import (
    END_MARKER,
    HEAD_MARKER,
    check_database_file,
    check_integrity,
    execute_script,
)
from dbbackup.db.sqlite_swap import can_lease, swap_in
from dbbackup.exceptions import CorruptBackupError, DumpError, RestoreError
from dbbackup.streams import CHUNK_SIZE, IteratorReader, PeekableReader, copy_to_file

SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's result codes for "another connection holds a lock" (sqlite3 exports them from 3.11).
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _SqliteConnectorBase(BaseDBConnector):
    """What the SQLite connectors share: where the database is, and the restore."""

    #: Set by the restore pipeline when a checksum is checked at the end of the stream; a SQL
    #: text dump then needs no end-of-dump proof of its own, and a database file no quick_check.
    stream_has_checksum = False
    #: Set by drills: run ``PRAGMA quick_check`` even on a database file a checksum vouches for.
    always_quick_check = False

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
        leftovers.sweep_directory(settings.TMP_DIR)
        with _scratch_database(self._scratch_directory()) as scratch_path:
            if is_database_file:
                with open(scratch_path, "wb") as scratch_file:
                    size = copy_to_file(stream, scratch_file)
                check_database_file(scratch_path, size)
            else:
                # A checksum checked at the end of the stream proves completeness by itself.
                needs_end = not self.stream_has_checksum
                execute_script(stream, scratch_path, needs_end=needs_end)
            if self.always_quick_check or not (is_database_file and self.stream_has_checksum):
                # a checksummed database file is the backup's own bytes (header checked above)
                check_integrity(scratch_path)
            if self._may_swap_in(scratch_path) and self._swap_in(scratch_path):
                return
            scratch = sqlite3.connect(scratch_path)
            try:
                with self._open() as target:
                    scratch.backup(target, progress=_give_up_after(self.lock_timeout(), self.database_name))
            finally:
                scratch.close()

    def _may_swap_in(self, scratch_path: str) -> bool:
        """Whether a rename may replace the live file: a file path, the scratch file beside it."""
        path = self.database_path
        if self._is_in_memory() or path.startswith("file:") or not can_lease():
            return False
        return Path(scratch_path).resolve().parent == Path(path).resolve().parent

    def _swap_in(self, scratch_path: str) -> bool:
        """Rename the checked scratch database over the live file when no process has it open.

        Django's connection in this process is closed first (it reconnects when next used);
        see :mod:`dbbackup.db.sqlite_swap` for when the rename is allowed.
        """
        if self._uses_django_connection():
            self.connection.close()
        return swap_in(scratch_path, self.database_path, self.lock_timeout())

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


class SqliteBackupConnector(_SqliteConnectorBase):
    """Backs up with SQLite's online backup API; the default for SQLite.

    The backup API writes to a database file: :meth:`dump_into` copies into a file the caller
    names. When the backup is stored as it is in a local folder, the backup pipeline hands it
    the storage's hidden partial file, so the copy is written once (see
    :mod:`dbbackup.pipeline.direct`); otherwise :meth:`create_dump` copies into a scratch file in
    ``DBBACKUP_TMP_DIR`` and streams that.
    """

    extension = "sqlite3"

    def can_dump_into(self) -> bool:
        # a subclass that changes what create_dump() streams must not be bypassed
        return (
            type(self).create_dump is BaseDBConnector.create_dump
            and type(self)._create_dump is SqliteBackupConnector._create_dump
        )

    def dump_into(self, path: str) -> None:
        """Copy the database with the backup API into the empty file ``path``; see the class.

        The copy is written with ``journal_mode=OFF``, ``synchronous=OFF`` and no file locks
        (SQLite's ``unix-none`` layer): nothing reads the file before the caller synced and
        hashed it, so they would protect nothing (and locks fail on some network file systems).
        No ``-journal`` file appears beside it. The header is the source's (a WAL database's copy
        says WAL). Scratch files of killed runs beside the database and in ``DBBACKUP_TMP_DIR``
        are removed first.
        """
        if not self._is_in_memory():
            leftovers.sweep_directory(Path(self.database_path).resolve().parent)
        leftovers.sweep_directory(settings.TMP_DIR)
        try:
            destination = _connect_unlocked(path)
            try:
                destination.execute("PRAGMA journal_mode=OFF")
                destination.execute("PRAGMA synchronous=OFF")
                with self._open() as source:
                    source.backup(destination)
            finally:
                destination.close()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", None) == "SQLITE_FULL" or "disk is full" in str(exc):
                raise DumpError(
                    f"SQLite could not back up {self.database_path!r}: No space left on device "
                    f"for the copy in {os.path.dirname(path) or '.'!r} ({exc})."
                ) from exc
            raise DumpError(f"SQLite could not back up {self.database_path!r}: {exc}") from exc

    def _create_dump(self) -> BinaryIO:
        """Copy the database into a scratch file in ``DBBACKUP_TMP_DIR`` (:meth:`dump_into`), and
        stream that; the scratch file's name is removed before its first byte is read."""
        descriptor, path = tempfile.mkstemp(
            prefix=leftovers.scratch_prefix(), suffix=".sqlite3", dir=settings.TMP_DIR
        )
        os.close(descriptor)
        try:
            self.dump_into(path)
            # The open handle keeps the data; the name goes now so nothing is left behind.
            return open(path, "rb")
        finally:
            os.unlink(path)


def _connect_unlocked(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode to ``path``, without file locks where SQLite allows it."""
    if os.name != "posix":
        return sqlite3.connect(path, isolation_level=None)
    return sqlite3.connect(f"file:{urllib.parse.quote(path)}?vfs=unix-none", isolation_level=None, uri=True)


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


#: How long a copy of a WAL database waits for readers of older snapshots (seconds).
WAL_BACKFILL_WAIT = 5.0


def _locked_file_chunks(path: str) -> Iterator[bytes]:
    """The database file's bytes, read while nothing can change them.

    Rollback-journal databases: a read transaction holds SQLite's shared lock, which keeps
    every writer out of the file until the copy is done. WAL databases need more, because there
    writers commit into the ``-wal`` file and any connection's checkpoint later copies those
    frames into the database file: a copy streamed under a mere read transaction could miss
    commits that are in its snapshot and, worse, be torn by a checkpoint that rewrites pages
    while they are read. So the copy takes the write lock (``BEGIN IMMEDIATE``: no commit can
    happen until it is done; readers go on), then backfills every frame of the log into the
    file with a passive checkpoint from a second connection, and refuses (``DumpError``) when
    a reader of an older snapshot keeps some frames from being copied for ``WAL_BACKFILL_WAIT``
    seconds. With the log fully backfilled and no writer able to add to it, no checkpoint has
    anything left to write.
    """
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        wal = str(lock.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        if wal:
            lock.execute("BEGIN IMMEDIATE")
            _backfill_wal(path)
        else:
            lock.execute("BEGIN")
            lock.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the shared lock
        with open(path, "rb") as database_file:
            while chunk := database_file.read(CHUNK_SIZE):
                yield chunk
    finally:
        lock.close()


def _backfill_wal(path: str) -> None:
    """Copy every committed frame of ``path``'s write-ahead log into the database file."""
    helper = sqlite3.connect(path, isolation_level=None)
    deadline = time.monotonic() + WAL_BACKFILL_WAIT
    try:
        while True:
            busy, log_frames, copied = helper.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if (not busy and copied >= log_frames) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # an older reader is still at work; its snapshot ends soon
    finally:
        helper.close()
    if busy or copied < log_frames:
        raise DumpError(
            f"SqliteCPConnector could not copy {path!r}: another connection reads an older "
            "snapshot, so the write-ahead log cannot be folded into the file yet. Try again, "
            "or use dbbackup.db.sqlite.SqliteBackupConnector, which copies a snapshot."
        )
