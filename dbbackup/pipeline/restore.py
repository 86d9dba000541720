"""Database restore: find and check the backup, then stream it into the connector.

storage -> digest (size and SHA-256 checked at the end) -> [decrypt] -> [decompress] -> connector

Encryption and compression are recognised by the file's name and by its first bytes, so the
``-c`` and ``-z`` flags are accepted but not needed. Every stage raises from ``read()`` when
something is wrong, and connectors commit only after a clean end of stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings as django_settings

from dbbackup import formats, manifest, names, schema, settings, signals
from dbbackup.db.base import (
    DEFAULT_CONNECTOR,
    BaseDBConnector,
    check_alias,
    connector_mapping,
    connector_options,
    connector_path_for,
    get_connector,
)
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.pipeline._common import apply_connector_options, default_sender, locate_backup, open_stages
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import CHUNK_SIZE, CountingReader, DigestReader


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
    #: What the user should know but need not worry about (e.g. to run ``migrate`` afterwards).
    notes: list[str] = field(default_factory=list)
    ignore_metadata: bool = False
    #: The dump's format as its first bytes show (set when the backup is opened).
    format: str | None = None


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
    allow_unknown_migrations: bool = False,
    ignore_metadata: bool = False,
) -> RestorePlan:
    """Find the backup to restore and check that it may be restored; change nothing.

    Without ``input_filename``/``input_path`` the newest backup of ``database`` is chosen (made
    on ``servername`` if given). ``decrypt`` and ``uncompress`` narrow the choice to encrypted or
    compressed backups; without them any backup qualifies, since both are recognised anyway.

    A backup whose sidecar records migrations this code does not know (made by newer code) is
    refused unless ``allow_unknown_migrations``; see :mod:`dbbackup.schema`.

    A damaged sidecar refuses the restore; ``ignore_metadata`` restores as if there were none
    (no checksum, no engine check, the configured connector), checked by its format alone.
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
        ignore_metadata=ignore_metadata,
    )
    filename, metadata = located.filename, located.metadata
    manifest.check_restorable(metadata, django_settings.DATABASES[database]["ENGINE"], filename)
    plan_warnings, plan_notes = schema.check_restorable(
        manifest.recorded_migrations(metadata), filename, database, allow_unknown=allow_unknown_migrations
    )

    connector = _choose_connector(database, filename, metadata, plan_warnings)
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
        notes=plan_notes,
        ignore_metadata=ignore_metadata,
    )


#: The connector classes dbbackup ships (django-dbbackup's paths), besides the engine defaults.
BUILT_IN_CONNECTORS = frozenset(
    {
        "dbbackup.db.sqlite.SqliteBackupConnector",
        "dbbackup.db.sqlite.SqliteConnector",
        "dbbackup.db.sqlite.SqliteCPConnector",
        "dbbackup.db.postgresql.PgDumpConnector",
        "dbbackup.db.postgresql.PgDumpBinaryConnector",
        "dbbackup.db.postgresql.PgDumpGisConnector",
        "dbbackup.db.mysql.MysqlDumpConnector",
        "dbbackup.db.mongodb.MongoDumpConnector",
        "dbbackup.db.django.DjangoConnector",
    }
)


def _trusted_connector_paths(database: str) -> set[str]:
    """Connector paths a sidecar may name: the built-in ones and those the settings name."""
    paths = {connector_path_for(database), DEFAULT_CONNECTOR, *BUILT_IN_CONNECTORS}
    paths.update(connector_mapping().values())
    for alias in django_settings.DATABASES:
        configured = connector_options(alias).get("CONNECTOR")
        if isinstance(configured, str):
            paths.add(configured)
    return paths


def _choose_connector(
    database: str, filename: str, metadata: dict[str, Any] | None, plan_warnings: list[str]
) -> BaseDBConnector:
    """The connector for a restore: the sidecar's if trusted and fitting the file, else the configured one.

    A sidecar is text beside the backup, so the connector it names is imported only when it
    is a built-in one (:data:`BUILT_IN_CONNECTORS`) or one the settings name (``DBBACKUP_CONNECTORS``,
    ``DBBACKUP_CONNECTOR_MAPPING``). And it must fit the file's extension: a ``.psql.bin``
    archive is not handed to ``psql`` because its sidecar says so. The bytes themselves are
    checked against the connector when the restore opens the stream (:mod:`dbbackup.formats`).
    """
    configured = connector_path_for(database)
    recorded = (metadata or {}).get("connector")
    if not isinstance(recorded, str) or not recorded or recorded == configured:
        return get_connector(database)
    if recorded not in _trusted_connector_paths(database):
        plan_warnings.append(
            f"The sidecar of {filename} names the connector {recorded!r}, which is neither built in nor "
            f"configured, so it was not imported; using the configured {configured} instead."
        )
        return get_connector(database)
    try:
        connector = get_connector(database, connector_path=recorded)
    except DbbackupConfigurationError as exc:
        plan_warnings.append(f"{exc} Using the connector configured in the settings instead.")
        return get_connector(database)
    fallback = get_connector(database)
    extension = names.split_suffixes(Path(filename).name.split(".", 1)[-1])[0]
    same_formats = formats.accepted_formats(type(connector)) == formats.accepted_formats(type(fallback))
    if not same_formats and extension != connector.extension and extension == fallback.extension:
        plan_warnings.append(
            f"The sidecar of {filename} names {recorded}, which writes .{connector.extension} files, but "
            f"this is a .{extension} file; using the configured {configured} instead."
        )
        return fallback
    return connector


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
    stream, digest = open_stages(
        raw,
        label=plan.filename,
        metadata=plan.metadata,
        encrypted=plan.encrypted,
        compression=plan.compression,
        passphrase=plan.passphrase,
        progress=progress,
    )
    # SqliteConnector needs no end-of-dump proof from a stream a checksum vouches for.
    plan.connector.stream_has_checksum = digest.expected_sha256 is not None
    try:
        head = stream.peek(formats.HEAD_SIZE)
        plan.format = formats.check_connector(type(plan.connector), head, plan.filename)
    except BaseException:
        stream.close()
        raise
    return stream, digest


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
    #: How the backup was checked, for people: "checksum verified", or what the format proved.
    checked: str = ""


def announce_restore(plan: RestorePlan, *, sender: type | None = None) -> None:
    """Send ``pre_restore`` for a planned restore; a receiver that raises vetoes it.

    The command sends it before it asks for a passphrase or a confirmation, as django-dbbackup
    does, then runs :func:`execute_restore` with ``announced=True``.
    """
    signals.send_pre(
        signals.pre_restore,
        "pre_restore",
        sender or default_sender("dbrestore"),
        database=django_settings.DATABASES[plan.database],
        database_name=plan.database,
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    )


def execute_restore(
    plan: RestorePlan,
    *,
    sender: type | None = None,
    progress: Callable[[int], object] | None = None,
    announced: bool = False,
) -> RestoreResult:
    """Run a planned restore: ``pre_restore`` (unless ``announced``), the restore, ``post_restore``.

    The connector commits only after the whole stream was read and checked, so a damaged
    backup, a wrong key or a wrong passphrase leave the database as it was. For engines that
    cannot roll back (``connector.verify_before_restore``), the backup is first read through
    the whole chain once, and the restore starts only if that succeeded.
    """
    sender = sender or default_sender("dbrestore")
    database_settings = django_settings.DATABASES[plan.database]
    if not announced:
        announce_restore(plan, sender=sender)
    with signals.on_failure(
        "restore_failed",
        sender,
        database=database_settings,
        database_name=plan.database,
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    ):
        digest, content_size = stream_into_connector(plan, progress)
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
    result = _result(plan, digest)
    result.content_size = content_size
    return result


def stream_into_connector(
    plan: RestorePlan, progress: Callable[[int], object] | None = None
) -> tuple[DigestReader, int]:
    """Stream the backup into ``plan.connector`` (no signals); return the digest and the bytes
    of dump the connector received.

    For engines that cannot roll back (``connector.verify_before_restore``), the backup is first
    read through the whole chain once, and the restore starts only if that succeeded.
    """
    if plan.connector.verify_before_restore:
        verify_backup(plan)  # this engine cannot roll back: check everything before starting
    stream, digest = open_backup(plan, progress)
    plan.connector.stream_checksummed = digest.expected_sha256 is not None
    counted = CountingReader(stream)
    try:
        plan.connector.restore_dump(counted)
    finally:
        counted.close()
    return digest, counted.size


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
    result = _result(plan, digest, restored=False)
    result.content_size = content_size
    return result


def _result(plan: RestorePlan, digest: DigestReader, restored: bool = True) -> RestoreResult:
    verified = digest.checked and digest.expected_sha256 is not None  # the whole stream matched
    return RestoreResult(
        database=plan.database,
        filename=plan.filename,
        connector=plan.connector.path(),
        size=digest.size,
        sha256=digest.sha256,
        verified=verified,
        checked=describe_check(plan, verified, restored=restored),
    )


def describe_check(plan: RestorePlan, verified: bool, restored: bool = True) -> str:
    """What proved the backup sound, in words: the checksum, or only its format.

    Without a checksum, ``--verify-only`` (``restored=False``) proves only that the backup reads
    to its end and starts as its connector expects; the connector's format checks run on restore.
    """
    if verified:
        return "checksum verified"
    why = "sidecar ignored" if plan.ignore_metadata else "no checksum"
    if not restored:
        return f"{why}: read to its end only; its format is fully checked when it is restored"
    proof = getattr(plan.connector, "format_proof", None)
    proof = proof(plan.format) if callable(proof) else "checked by its format and the restore tool only"
    return f"{why}: {proof}"


def restore_database(
    database: str | None = None, *, sender: type | None = None, **options: Any
) -> RestoreResult:
    """Plan and run a restore in one call (no confirmation); see :func:`plan_restore`."""
    return execute_restore(plan_restore(database, **options), sender=sender)
