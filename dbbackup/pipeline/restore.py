"""Database restore: find and check the backup, then stream it into the connector.

storage -> digest (size and SHA-256 checked at the end) -> [decrypt] -> [decompress] -> connector

Encryption and compression are recognised by the file's name and by its first bytes, so the
``-c`` and ``-z`` flags are accepted but not needed. Every stage raises from ``read()`` when
something is wrong, and connectors commit only after a clean end of stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings as django_settings

from dbbackup import manifest, settings, signals
from dbbackup.db.base import BaseDBConnector, check_alias, get_connector
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.pipeline._common import apply_connector_options, default_sender, locate_backup, open_stages
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import CHUNK_SIZE, DigestReader


@dataclass
class RestorePlan:
    """A restore resolved but not yet run: which file, into which database, by which connector.

    ``passphrase`` may be set after planning (the command asks for it when the backup is
    encrypted and none was given).
    """

    database: str
    filename: str
    local: bool
    servername: str
    storage: Storage
    connector: BaseDBConnector
    metadata: dict[str, Any] | None
    compression: str | None
    encrypted: bool
    passphrase: str | None = None
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
    """Find the backup to restore and check that it may be restored; change nothing.

    Without ``input_filename``/``input_path`` the newest backup of ``database`` is chosen (made
    on ``servername`` if given). ``decrypt`` and ``uncompress`` narrow the choice to encrypted or
    compressed backups; without them any backup qualifies, since both are recognised anyway.
    """
    database = _target_database(database)
    storage = storage or get_storage()
    located = locate_backup(
        storage,
        content_type="db",
        database=database,
        input_filename=input_filename,
        input_path=input_path,
        servername=servername,
        decrypt=decrypt,
        uncompress=uncompress,
    )
    filename, metadata = located.filename, located.metadata
    manifest.check_restorable(metadata, django_settings.DATABASES[database]["ENGINE"], filename)

    plan_warnings: list[str] = []
    recorded = (metadata or {}).get("connector")
    try:
        connector = get_connector(database, connector_path=recorded if isinstance(recorded, str) else None)
    except DbbackupConfigurationError as exc:
        if not recorded:
            raise
        plan_warnings.append(f"{exc} Using the connector configured in the settings instead.")
        connector = get_connector(database)
    recorded_exclude = manifest.record(metadata).get("exclude") or []
    if recorded_exclude and connector.supports_exclude:  # what the backup left out, it must not wipe
        connector.exclude = [*connector.exclude, *(t for t in recorded_exclude if t not in connector.exclude)]
    apply_connector_options(
        connector, schemas=schemas, no_drop=no_drop, pg_options=pg_options, restoring=True
    )
    return RestorePlan(
        database=database,
        filename=filename,
        local=located.local,
        servername=servername or settings.HOSTNAME,
        storage=storage,
        connector=connector,
        metadata=metadata,
        compression=located.compression,
        encrypted=located.encrypted,
        passphrase=passphrase,
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


def open_backup(
    plan: RestorePlan, progress: Callable[[int], object] | None = None
) -> tuple[BinaryIO, DigestReader]:
    """The backup's original dump as a stream, and the digest stage that checks the stored bytes.

    The caller reads the stream to its end and closes it; closing it closes every stage.
    """
    raw = open(plan.filename, "rb") if plan.local else plan.storage.read_file(plan.filename)  # noqa: SIM115
    return open_stages(
        raw,
        label=plan.filename,
        metadata=plan.metadata,
        encrypted=plan.encrypted,
        compression=plan.compression,
        passphrase=plan.passphrase,
        progress=progress,
    )


@dataclass
class RestoreResult:
    """What :func:`execute_restore` restored (or :func:`verify_backup` checked)."""

    database: str
    filename: str
    connector: str
    size: int
    sha256: str
    verified: bool
    content_size: int = 0


def execute_restore(
    plan: RestorePlan, *, sender: type | None = None, progress: Callable[[int], object] | None = None
) -> RestoreResult:
    """Run a planned restore: ``pre_restore``, the streamed restore, ``post_restore``.

    The connector commits only after the whole stream was read and checked, so a damaged
    backup, a wrong key or a wrong passphrase leave the database as it was. For engines that
    cannot roll back (``connector.verify_before_restore``), the backup is first read through
    the whole chain once, and the restore starts only if that succeeded.
    """
    sender = sender or default_sender("dbrestore")
    database_settings = django_settings.DATABASES[plan.database]
    if plan.connector.verify_before_restore:
        verify_backup(plan)  # this engine cannot roll back: check everything before starting
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
    stream, digest = open_backup(plan, progress)
    try:
        plan.connector.restore_dump(stream)
    finally:
        stream.close()
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
    return _result(plan, digest)


def verify_backup(plan: RestorePlan) -> RestoreResult:
    """Read a backup through the whole chain (checksum, decryption, decompression); restore nothing.

    Raises the same errors a restore would; sends no signals.
    """
    stream, digest = open_backup(plan)
    content_size = 0
    try:
        while chunk := stream.read(CHUNK_SIZE):
            content_size += len(chunk)
    finally:
        stream.close()
    result = _result(plan, digest)
    result.content_size = content_size
    return result


def _result(plan: RestorePlan, digest: DigestReader) -> RestoreResult:
    return RestoreResult(
        database=plan.database,
        filename=plan.filename,
        connector=plan.connector.path(),
        size=digest.size,
        sha256=digest.sha256,
        verified=digest.checked and digest.expected_sha256 is not None,
    )


def restore_database(
    database: str | None = None, *, sender: type | None = None, **options: Any
) -> RestoreResult:
    """Plan and run a restore in one call (no confirmation); see :func:`plan_restore`."""
    return execute_restore(plan_restore(database, **options), sender=sender)
