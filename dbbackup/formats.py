"""What a backup's bytes are, whatever its name or sidecar says, and which connectors may read them.

A restore tool must only ever get the format it reads: a PostgreSQL custom-format archive goes
to ``pg_restore`` and nowhere else, a SQLite database file to a SQLite connector, SQL text to a
tool that runs SQL text. The sidecar's ``connector`` key is a hint written next to the file, not
a proof about it: :func:`check_connector` compares the connector chosen for a restore with the
first bytes of the (decrypted, decompressed) dump and refuses a mismatch before the connector
starts.

Connectors outside dbbackup (custom ``CONNECTOR`` classes) are not second-guessed: they accept
whatever format they are given.
"""

from __future__ import annotations

from dbbackup.exceptions import CorruptBackupError

#: The first bytes of a PostgreSQL custom-format archive (``pg_dump --format=custom``).
PG_CUSTOM_MAGIC = b"PGDMP"
#: The first bytes of a SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: How many leading bytes :func:`sniff` needs.
HEAD_SIZE = len(SQLITE_MAGIC)

PG_CUSTOM = "a PostgreSQL custom-format archive"
SQLITE_FILE = "a SQLite database file"
OTHER = "text (or another format)"

#: Built-in connector class paths -> the formats their restore reads. Subclasses inherit.
_ACCEPTS: dict[str, frozenset[str]] = {
    "dbbackup.db.postgresql.PgDumpBinaryConnector": frozenset({PG_CUSTOM}),
    "dbbackup.db.postgresql.PgDumpConnector": frozenset({OTHER}),
    "dbbackup.db.mysql.MysqlDumpConnector": frozenset({OTHER}),
    "dbbackup.db.django.DjangoConnector": frozenset({OTHER}),
    "dbbackup.db.sqlite._SqliteConnectorBase": frozenset({SQLITE_FILE, OTHER}),
}


def sniff(head: bytes) -> str:
    """The format of a dump from its first :data:`HEAD_SIZE` bytes."""
    if head.startswith(PG_CUSTOM_MAGIC):
        return PG_CUSTOM
    if head.startswith(SQLITE_MAGIC):
        return SQLITE_FILE
    return OTHER


def accepted_formats(connector_class: type) -> frozenset[str] | None:
    """The formats a connector class restores (``None``: not a built-in one, anything goes)."""
    for klass in connector_class.__mro__:  # the most specific built-in class wins
        path = f"{klass.__module__}.{klass.__qualname__}"
        if path in _ACCEPTS:
            return _ACCEPTS[path]
    return None


def check_connector(connector_class: type, head: bytes, label: str) -> str:
    """Refuse a dump whose format ``connector_class`` cannot read; return the format found.

    Raises :class:`CorruptBackupError` (nothing has been restored yet when this is called).
    """
    found = sniff(head)
    accepted = accepted_formats(connector_class)
    if accepted is not None and found not in accepted:
        name = f"{connector_class.__module__}.{connector_class.__qualname__}"
        hint = (
            " Restore it with dbbackup.db.postgresql.PgDumpBinaryConnector (pg_restore)."
            if found == PG_CUSTOM
            else ""
        )
        raise CorruptBackupError(
            f"{label} is {found}, which {name} cannot restore; nothing was restored.{hint}"
        )
    return found
