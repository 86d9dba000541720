"""Database restore: find and check the backup, then stream it into the connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from dbbackup import codecs, manifest, names, settings, signals
from dbbackup.db.base import BaseDBConnector, check_alias, get_connector
from dbbackup.exceptions import (
    BackupNotFoundError,
    DbbackupConfigurationError,
    EncryptionError,
)
from dbbackup.pipeline._common import (
    ENCRYPTION_UNAVAILABLE,
    apply_connector_options,
    default_sender,
)
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import DigestReader


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
        raise EncryptionError(
            ENCRYPTION_UNAVAILABLE.replace("back up without -e", "restore an unencrypted backup")
        )
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
        raise EncryptionError(
            ENCRYPTION_UNAVAILABLE.replace("back up without -e", "restore an unencrypted backup")
        )
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
    apply_connector_options(connector, schemas=schemas, no_drop=no_drop, pg_options=pg_options)
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
    sender = sender or default_sender("dbrestore")
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


def restore_database(
    database: str | None = None, *, sender: type | None = None, **options: Any
) -> RestoreResult:
    """Plan and run a restore in one call (no confirmation); see :func:`plan_restore`."""
    return execute_restore(plan_restore(database, **options), sender=sender)
