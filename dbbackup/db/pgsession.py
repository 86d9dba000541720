"""The ``psql`` session of a PostgreSQL restore, scripted by dbbackup.

psql reads this script on its stdin::

    \\restrict <random key>          (psql 13.22/14.19/15.14/16.10/17.6 and later)
    BEGIN;
    SET lock_timeout = '30000ms';   (DBBACKUP_RESTORE_LOCK_TIMEOUT)
    <the backup's SQL, through ScriptGuard>
    COMMIT;                         (only once the backup was read to its end and checked)

``COMMIT`` is written only after the source stream's ``read()`` returned ``b""`` (the digest
stage raises instead on a checksum or size mismatch), the SQL ended cleanly with pg_dump's
completion marker, and, for custom archives, ``pg_restore`` exited 0 having read the whole
archive. If dbbackup dies before that (SIGKILL, SIGTERM, an exception), psql sees the end of
its input inside an open transaction, and PostgreSQL rolls everything back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from dbbackup import process, settings
from dbbackup.db.pgscript import ScriptGuard
from dbbackup.exceptions import (
    CommandConnectorError,
    CorruptBackupError,
    DbbackupConfigurationError,
    RestoreError,
)
from dbbackup.streams import CHUNK_SIZE, IteratorReader

if TYPE_CHECKING:  # pragma: no cover
    from dbbackup.db.postgresql import PgDumpConnector

#: The first release of each major version whose psql knows ``\restrict``.
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}

#: Sessions of the target database that hold locks inside an open transaction.
BLOCKERS_SQL = (
    "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'), "
    "coalesce(a.state, ''), coalesce(to_char(now() - a.xact_start, 'HH24:MI:SS'), '') "
    "FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
    "AND a.xact_start IS NOT NULL AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
    "AND l.granted AND l.locktype = 'relation') ORDER BY a.xact_start"
)


def restore(
    connector: PgDumpConnector, sql: BinaryIO, *, archive: process.ProcessFilter | None = None
) -> None:
    """Run ``sql`` (a plain dump, or ``pg_restore -f -`` output given as ``archive``) in one
    psql session that commits only when everything checked out; see the module docstring."""
    timeout = lock_timeout_ms()
    key = secrets.token_hex(24) if supports_restrict(connector) else None
    script = IteratorReader(_script(connector, sql, key=key, timeout_ms=timeout, archive=archive))
    try:
        process.feed(connector.session_command(), script)
    except CommandConnectorError as exc:
        if "lock timeout" in (exc.stderr_tail or ""):
            raise RestoreError(lock_message(connector, timeout)) from exc
        raise
    finally:
        script.close()


def _script(
    connector: PgDumpConnector,
    sql: BinaryIO,
    *,
    key: str | None,
    timeout_ms: int | None,
    archive: process.ProcessFilter | None,
) -> Iterator[bytes]:
    transaction = bool(connector.single_transaction)
    lock_sql = f"SET lock_timeout = '{timeout_ms}ms';".encode() if timeout_ms else None
    if key:
        yield f"\\restrict {key}\n".encode()
    if transaction:
        yield b"BEGIN;\n"
    if lock_sql:
        yield lock_sql + b"\n"
    guard = ScriptGuard(transaction=transaction, lock_timeout_sql=lock_sql)
    size = 0
    while chunk := sql.read(CHUNK_SIZE):
        size += len(chunk)
        if out := guard.feed(chunk):
            yield out
    if tail := guard.finish():
        yield tail + b"\n"
    # The source was read to its end and verified; now what the format itself proves.
    if size == 0:
        raise CorruptBackupError("The backup is empty: it holds no SQL. Nothing was restored.")
    if archive is not None and archive.unread and not connector.pg_options:
        raise CorruptBackupError(
            f"{archive.unread} bytes follow the end of the custom-format archive: the backup was "
            "damaged or appended to. Nothing was restored."
        )
    if not guard.complete:
        raise CorruptBackupError(
            "The backup does not end with pg_dump's completion marker ('-- PostgreSQL database dump "
            "complete'): it is truncated or is not a pg_dump backup. Nothing was restored."
        )
    if transaction:
        yield b"COMMIT;\n"


def lock_timeout_ms() -> int | None:
    """``DBBACKUP_RESTORE_LOCK_TIMEOUT`` in milliseconds, or None to wait forever."""
    value = settings.RESTORE_LOCK_TIMEOUT
    if value in (None, 0):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DbbackupConfigurationError(
            f"DBBACKUP_RESTORE_LOCK_TIMEOUT must be a number of seconds, or None; got {value!r}."
        )
    return max(1, int(value * 1000))


def supports_restrict(connector: PgDumpConnector) -> bool:
    """Whether the session's psql knows ``\\restrict`` (asked with ``--version``)."""
    command = connector.session_version_command()
    try:
        output = process.run(command)
    except CommandConnectorError:
        return False
    match = re.search(r"\)\s*(\d+)(?:\.(\d+))?", output) or re.search(r"(\d+)(?:\.(\d+))?", output)
    if not match:
        return False
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    return major >= 18 or minor >= RESTRICT_SINCE.get(major, 1 << 30)


def lock_message(connector: PgDumpConnector, timeout_ms: int | None) -> str:
    """Why the restore gave up, naming the sessions that hold locks in the database."""
    name = connector.settings.get("NAME")
    seconds = f"{timeout_ms / 1000:g} s" if timeout_ms else "the lock timeout"
    message = (
        f"The restore of database {name!r} waited {seconds} for a lock "
        "(DBBACKUP_RESTORE_LOCK_TIMEOUT) and gave up; nothing was restored."
    )
    blockers = blocking_sessions(connector)
    if blockers:
        message += " Sessions holding locks in it: " + "; ".join(blockers) + "."
    return message + " Let them finish or end them (SELECT pg_terminate_backend(pid)), then restore again."


def blocking_sessions(connector: PgDumpConnector) -> list[str]:
    """Sessions of the target database in an open transaction that hold relation locks."""
    command = connector.psql_command(
        "--tuples-only", "--no-align", "--field-separator=\t", f"--command={BLOCKERS_SQL}"
    )
    try:
        output = process.run(command)
    except CommandConnectorError:
        return []
    found = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 5:
            pid, application, client, state, age = parts
            found.append(f"pid {pid} (application {application!r}, client {client}, {state} for {age})")
    return found
