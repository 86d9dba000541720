"""Database backup and restore, composed from streams; the Python API behind the commands.

Backup::

    connector.create_dump() -> [compress] -> [encrypt] -> digest -> storage (atomic) -> .metadata

Restore::

    storage -> digest (checks size and SHA-256 at the end) -> [decrypt] -> [decompress]
            -> connector.restore_dump()  (which commits only after a clean end of stream)

Signals are sent here, so programmatic callers get the same behaviour as the commands.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings as django_settings

from dbbackup import codecs, manifest, names, settings, signals
from dbbackup.db.base import BaseDBConnector, check_alias, get_connector
from dbbackup.exceptions import (
    BackupNotFoundError,
    DbbackupConfigurationError,
    DbbackupError,
    EncryptionError,
    StorageError,
)
from dbbackup.storage import PRIVATE_FILE_MODE, Storage, get_storage
from dbbackup.streams import DigestReader

ENCRYPTION_UNAVAILABLE = (
    "GPG encryption is not available in this version of dbbackup yet; back up without -e "
    "(and encrypt the storage instead) or use django-dbbackup for encrypted backups."
)


def _default_sender(command: str) -> type:
    from importlib import import_module

    return import_module(f"dbbackup.management.commands.{command}").Command


@dataclass
class BackupResult:
    """What :func:`backup_database` stored."""

    database: str
    filename: str
    size: int
    sha256: str
    connector: str
    servername: str
    compression: str | None
    encrypted: bool
    local_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)


def backup_database(
    database: str,
    *,
    servername: str | None = None,
    compress: bool = False,
    encrypt: bool = False,
    output_filename: str | None = None,
    output_path: str | None = None,
    exclude_tables: list[str] | tuple[str, ...] = (),
    schemas: list[str] | tuple[str, ...] = (),
    clean: bool = False,
    storage: Storage | None = None,
    sender: type | None = None,
) -> BackupResult:
    """Back up one database (by alias) and return what was stored.

    Sends ``pre_backup`` before anything is dumped (a raising receiver stops the backup) and
    ``post_backup`` once the backup and its metadata are stored.
    """
    check_alias(database)
    connector = get_connector(database)
    _apply_dump_options(connector, exclude_tables, schemas)
    if encrypt:
        raise EncryptionError(ENCRYPTION_UNAVAILABLE)
    storage = storage or get_storage()
    sender = sender or _default_sender("dbbackup")
    effective_servername = servername or settings.HOSTNAME
    compression = codecs.by_name("gzip") if compress else None

    signals.send_pre(
        signals.pre_backup,
        "pre_backup",
        sender,
        database=connector.settings,
        connector=connector,
        servername=effective_servername,
    )
    base_metadata = manifest.base_metadata(connector.settings["ENGINE"], connector.path())
    extension = connector.extension + (f".{compression.suffix}" if compression else "")
    filename = output_filename or names.generate_filename(extension, database, effective_servername)

    stream: BinaryIO = connector.create_dump()
    if compression:
        stream = compression.compress(stream)
    digest = DigestReader(stream)
    try:
        if output_path:
            local_path = _write_local(digest, output_path)
        else:
            local_path = None
            filename = storage.write_file(digest, filename)
    finally:
        digest.close()

    metadata = manifest.complete(
        base_metadata,
        database=database,
        size=digest.size,
        sha256=digest.sha256,
        compression=compression.name if compression else None,
        encrypted=False,
    )
    _write_metadata(storage, filename, local_path, metadata)
    result = BackupResult(
        database=database,
        filename=filename,
        size=digest.size,
        sha256=digest.sha256,
        connector=connector.path(),
        servername=effective_servername,
        compression=metadata[manifest.KEY]["compression"],
        encrypted=False,
        local_path=local_path,
        metadata=metadata,
    )
    post_error = None
    try:
        signals.send_post(
            signals.post_backup,
            "post_backup",
            sender,
            f"The backup of {database!r} was stored as {local_path or filename}",
            database=connector.settings,
            connector=connector,
            servername=effective_servername,
            filename=filename,
            storage=storage,
        )
    except DbbackupError as exc:
        post_error = exc
    if clean and not output_path:
        result.cleaned = storage.clean_old_backups(
            content_type="db", database=database, encrypted=False, compressed=compress
        )
    if post_error is not None:
        raise post_error
    return result


def _apply_dump_options(
    connector: BaseDBConnector, exclude_tables: list[str] | tuple[str, ...], schemas: list[str] | tuple[str, ...]
) -> None:
    if exclude_tables:
        if not getattr(connector, "supports_exclude", False):
            raise DbbackupConfigurationError(
                f"{connector.path()} backs up whole databases and cannot exclude tables (-x); "
                "use dbbackup.db.sqlite.SqliteConnector for SQLite."
            )
        connector.exclude = [*connector.exclude, *exclude_tables]
    if schemas:
        if not hasattr(connector, "schemas"):
            raise DbbackupConfigurationError(f"{connector.path()} has no schemas; -n/--schema is for PostgreSQL.")
        connector.schemas = list(schemas)


def _write_local(stream: BinaryIO, output_path: str) -> str:
    """Write ``stream`` to a local file atomically (a 0600 temporary file renamed into place)."""
    target = Path(output_path).expanduser().resolve()
    if target.is_dir():
        raise StorageError(f"-O/--output-path {output_path!r} is a directory; give a file path.")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            while chunk := stream.read(1024 * 1024):
                handle.write(chunk)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(target)


def _write_metadata(storage: Storage, filename: str, local_path: str | None, metadata: dict) -> None:
    """Store the sidecar; if that fails, remove the backup too so the outcome is all or nothing."""
    data = manifest.dumps(metadata)
    try:
        if local_path:
            sidecar = Path(f"{local_path}{names.METADATA_SUFFIX}")
            sidecar.write_bytes(data)
            sidecar.chmod(PRIVATE_FILE_MODE)
        else:
            storage.write_file(io.BytesIO(data), filename + names.METADATA_SUFFIX)
    except BaseException:
        if local_path:
            Path(local_path).unlink(missing_ok=True)
        else:
            storage.delete_file(filename)
        raise


@dataclass
class RestorePlan:
    """A restore resolved but not yet run: which file, into which database, by which connector."""

    database: str
    filename: str
    local: bool
    servername: str
    storage: Storage
    connector: BaseDBConnector
    metadata: dict[str, Any] | None
    compression: str | None
    warnings: list[str] = field(default_factory=list)


def plan_restore(
    database: str | None = None,
    *,
    input_filename: str | None = None,
    input_path: str | None = None,
    servername: str | None = None,
    decrypt: bool = False,
    passphrase: str | None = None,
    uncompress: bool = False,
    schemas: list[str] | tuple[str, ...] = (),
    no_drop: bool = False,
    pg_options: str | None = None,
    storage: Storage | None = None,
) -> RestorePlan:
    """Find the backup to restore and check that it may be restored; change nothing."""
    database = _target_database(database)
    if decrypt:
        raise EncryptionError(ENCRYPTION_UNAVAILABLE.replace("back up without -e", "restore an unencrypted backup"))
    storage = storage or get_storage()
    if input_path:
        filename, local = input_path, True
        if not Path(input_path).is_file():
            raise BackupNotFoundError(f"There is no file {input_path!r}.")
        metadata = manifest.read_local(input_path)
    else:
        local = False
        if input_filename:
            filename = input_filename
            if not storage.exists(filename):
                raise BackupNotFoundError(
                    f"There is no backup {filename!r} in {storage}; `manage.py listbackups` shows them."
                )
        else:
            filename = storage.get_latest_backup(
                content_type="db",
                database=database,
                servername=servername,
                encrypted=True if decrypt else None,
                compressed=True if uncompress else None,
            )
        metadata = _read_metadata(storage, filename)

    _, compression, encrypted = names.split_suffixes(Path(filename).name.split(".", 1)[-1])
    if encrypted:
        raise EncryptionError(ENCRYPTION_UNAVAILABLE.replace("back up without -e", "restore an unencrypted backup"))
    target_engine = django_settings.DATABASES[database]["ENGINE"]
    manifest.check_restorable(metadata, target_engine, filename)

    plan_warnings: list[str] = []
    recorded = (metadata or {}).get("connector")
    try:
        connector = get_connector(database, connector_path=recorded if isinstance(recorded, str) else None)
    except DbbackupConfigurationError as exc:
        if not recorded:
            raise
        plan_warnings.append(f"{exc} Using the connector configured in the settings instead.")
        connector = get_connector(database)
    _apply_restore_options(connector, schemas, no_drop, pg_options)
    return RestorePlan(
        database=database,
        filename=filename,
        local=local,
        servername=servername or settings.HOSTNAME,
        storage=storage,
        connector=connector,
        metadata=metadata,
        compression=compression,
        warnings=plan_warnings,
    )


def _target_database(database: str | None) -> str:
    if database:
        check_alias(database)
        return database
    aliases = list(django_settings.DATABASES)
    if len(aliases) == 1:
        return aliases[0]
    raise DbbackupConfigurationError(
        f"There are several databases ({', '.join(aliases)}); choose one with -d/--database."
    )


def _read_metadata(storage: Storage, filename: str) -> dict[str, Any] | None:
    sidecar = filename + names.METADATA_SUFFIX
    if not storage.exists(sidecar):
        return None
    with storage.read_file(sidecar) as handle:
        return manifest.loads(handle.read(), sidecar)


def _apply_restore_options(
    connector: BaseDBConnector, schemas: list[str] | tuple[str, ...], no_drop: bool, pg_options: str | None
) -> None:
    if schemas:
        if not hasattr(connector, "schemas"):
            raise DbbackupConfigurationError(f"{connector.path()} has no schemas; -n/--schema is for PostgreSQL.")
        connector.schemas = list(schemas)
    if no_drop:
        if not hasattr(connector, "drop"):
            raise DbbackupConfigurationError(
                f"{connector.path()} always replaces the whole database; -r/--no-drop is for "
                "PostgreSQL and MongoDB."
            )
        connector.drop = False
    if pg_options:
        if not hasattr(connector, "pg_options"):
            raise DbbackupConfigurationError(f"{connector.path()} does not take --pg-options.")
        connector.pg_options = pg_options


@dataclass
class RestoreResult:
    """What :func:`execute_restore` restored."""

    database: str
    filename: str
    connector: str
    size: int
    sha256: str
    verified: bool


def execute_restore(plan: RestorePlan, *, sender: type | None = None) -> RestoreResult:
    """Run a planned restore: ``pre_restore``, the streamed restore, ``post_restore``.

    The connector commits only after the whole stream was read and checked, so a damaged
    backup leaves the database as it was.
    """
    sender = sender or _default_sender("dbrestore")
    database_settings = django_settings.DATABASES[plan.database]
    signals.send_pre(
        signals.pre_restore,
        "pre_restore",
        sender,
        database=database_settings,
        database_name=plan.database,
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    )
    expected_sha256, expected_size = manifest.integrity(plan.metadata)
    raw = open(plan.filename, "rb") if plan.local else plan.storage.read_file(plan.filename)  # noqa: SIM115
    digest = DigestReader(
        raw, expected_sha256=expected_sha256, expected_size=expected_size, label=plan.filename
    )
    try:
        stream, _ = codecs.open_decompressed(digest, label=plan.filename, expected=plan.compression)
        plan.connector.restore_dump(stream)
    finally:
        digest.close()
    signals.send_post(
        signals.post_restore,
        "post_restore",
        sender,
        f"{plan.database!r} was restored from {plan.filename}",
        database=database_settings,
        database_name=plan.database,
        filename=plan.filename,
        servername=plan.servername,
        connector=plan.connector,
        storage=plan.storage,
    )
    return RestoreResult(
        database=plan.database,
        filename=plan.filename,
        connector=plan.connector.path(),
        size=digest.size,
        sha256=digest.sha256,
        verified=expected_sha256 is not None,
    )


def restore_database(database: str | None = None, *, sender: type | None = None, **options: Any) -> RestoreResult:
    """Plan and run a restore in one call (no confirmation); see :func:`plan_restore`."""
    return execute_restore(plan_restore(database, **options), sender=sender)
