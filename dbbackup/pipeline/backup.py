"""Database backup: dump -> [compress] -> [encrypt] -> digest -> storage, then the sidecar.

A connector that can write its dump into a file (SQLite's backup API) writes an uncompressed,
unencrypted local backup itself instead (:mod:`dbbackup.pipeline.direct`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dbbackup import manifest, name_checks, names, retention, s3, schema, settings, signals
from dbbackup.db.base import check_alias, get_connector
from dbbackup.exceptions import DbbackupError
from dbbackup.pipeline import direct
from dbbackup.pipeline._common import (
    apply_connector_options,
    choose_encoding,
    default_sender,
    encode,
    store,
    write_metadata,
)
from dbbackup.storage import Storage, get_storage


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
    compression: str | None = None,
    encrypt: bool = False,
    output_filename: str | None = None,
    output_path: str | None = None,
    exclude_tables: list[str] | tuple[str, ...] = (),
    schemas: list[str] | tuple[str, ...] = (),
    clean: bool = False,
    storage: Storage | None = None,
    sender: type | None = None,
    progress: Callable[[int], object] | None = None,
) -> BackupResult:
    """Back up one database (by alias) and return what was stored.

    ``compress`` uses ``DBBACKUP_COMPRESSION`` (gzip unless set); ``compression`` names a codec
    (``"gzip"``, ``"zstd"``) and implies ``compress``. ``encrypt`` encrypts to
    ``DBBACKUP_GPG_RECIPIENT`` after compression, as django-dbbackup does.

    Sends ``pre_backup`` before anything is dumped (a raising receiver stops the backup) and
    ``post_backup`` once the backup and its metadata are stored. Whatever fails, no partial
    backup is left in the storage. ``progress(n)`` is called as stored bytes flow. Partial
    files that killed runs left in the storage are removed first (:mod:`dbbackup.leftovers`).
    """
    check_alias(database)
    connector = get_connector(database)
    apply_connector_options(connector, exclude_tables=exclude_tables, schemas=schemas)
    codec = choose_encoding(
        compress=compress, compression=compression, encrypt=encrypt, clean=clean, content_type="db"
    )
    storage = storage or get_storage()
    if s3.is_uri(output_path):  # -O s3://bucket/key: a name in the (S3) backup storage
        output_filename, output_path = s3.output_name(storage, output_path), None
    sender = sender or default_sender("dbbackup")
    effective_servername = name_checks.check_servername(servername or settings.HOSTNAME)
    extension = connector.extension + (f".{codec.suffix}" if codec else "") + (".gpg" if encrypt else "")
    if not (output_filename or output_path):
        name_checks.check_naming("db", database, effective_servername, extension)
    if clean and not output_path:
        retention.check_keep_filter(
            output_filename or names.generate_filename(extension, database, effective_servername)
        )

    signals.send_pre(
        signals.pre_backup,
        "pre_backup",
        sender,
        database=connector.settings,
        connector=connector,
        servername=effective_servername,
    )
    with signals.on_failure(
        "backup_failed",
        sender,
        database=connector.settings,
        connector=connector,
        servername=effective_servername,
    ):
        base_metadata = manifest.base_metadata(connector.settings["ENGINE"], connector.path())
        started = names.now()
        filename = output_filename or names.generate_filename(
            extension, database, effective_servername, when=started
        )

        def later_name(seconds: int) -> str:
            return names.generate_filename(
                extension, database, effective_servername, when=started + timedelta(seconds=seconds)
            )

        migrations = schema.applied_migrations(database, connector.settings)
        connector.stream_compressed = codec is not None
        places = {
            "storage": storage,
            "filename": filename,
            "output_path": output_path,
            "rename": None if output_filename else later_name,
            "progress": progress,
        }
        writer = direct.file_writer(connector, codec, encrypt, storage, output_path)
        if writer is not None:  # the connector writes the local file itself: one copy, not two
            filename, local_path, digest = direct.store_file(writer, **places)
        else:
            filename, local_path, digest = store(encode(connector.create_dump(), codec, encrypt), **places)

        metadata = manifest.complete(
            base_metadata,
            content_type="db",
            database=database,
            servername=effective_servername,
            size=digest.size,
            sha256=digest.sha256,
            compression=codec.name if codec else None,
            encrypted=encrypt,
            exclude=connector.exclude,
            migrations=migrations,
        )
        write_metadata(storage, filename, local_path, metadata)
    result = BackupResult(
        database=database,
        filename=filename,
        size=digest.size,
        sha256=digest.sha256,
        connector=connector.path(),
        servername=effective_servername,
        compression=codec.name if codec else None,
        encrypted=encrypt,
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
        decisions = retention.prune(storage, content_type="db", database=database, servername=servername)
        result.cleaned = [decision.entry.name for decision in decisions if not decision.keep]
    if post_error is not None:
        raise post_error
    return result
