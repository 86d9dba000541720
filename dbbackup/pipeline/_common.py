"""What the pipelines share: the default signal sender, connector options, local writes."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, BinaryIO

from dbbackup import codecs, crypto, leftovers, linux_fs, local_write, manifest, names, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import CorruptBackupError, DbbackupConfigurationError, StorageError
from dbbackup.storage import Storage
from dbbackup.streams import DigestReader, PeekableReader

logger = logging.getLogger("dbbackup")


def default_sender(command: str) -> type:
    """The command class that sends the signals when the Python API is called directly."""
    return import_module(f"dbbackup.management.commands.{command}").Command


def apply_connector_options(
    connector: BaseDBConnector,
    *,
    exclude_tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    no_drop: bool = False,
    pg_options: str | None = None,
    restoring: bool = False,
) -> None:
    """Apply command-line options to a connector, refusing those it cannot honour."""
    refusals = getattr(connector, "restore_refusals", {}) if restoring else {}
    for option, given in (("schemas", schemas), ("no_drop", no_drop)):
        if given and option in refusals:
            raise DbbackupConfigurationError(refusals[option])
    if exclude_tables:
        if not getattr(connector, "supports_exclude", False):
            raise DbbackupConfigurationError(
                f"{connector.path()} backs up whole databases and cannot exclude tables (-x); "
                "use dbbackup.db.sqlite.SqliteConnector for SQLite."
            )
        connector.exclude = [*connector.exclude, *exclude_tables]
    if schemas:
        if not connector.supports_schemas:
            raise DbbackupConfigurationError(
                f"{connector.path()} has no schemas; -n/--schema is for PostgreSQL."
            )
        connector.schemas = list(schemas)
    if no_drop:
        if not connector.supports_no_drop:
            raise DbbackupConfigurationError(
                f"{connector.path()} always replaces the whole database; -r/--no-drop is for the "
                "PostgreSQL, MongoDB and Django connectors."
            )
        connector.drop = False
    if pg_options:
        if not connector.supports_pg_options:
            raise DbbackupConfigurationError(f"{connector.path()} does not take --pg-options.")
        connector.pg_options = pg_options
    connector.check()


class StagedPath(str):
    """The final path of a ``-O`` backup whose bytes still wait under a hidden name (``.staged``).

    :func:`write_metadata` publishes it together with its sidecar; until then an existing file
    at the path is untouched.
    """

    staged: Path


def _target(output_path: str) -> Path:
    target = Path(output_path).expanduser().resolve()
    if target.is_dir():
        raise StorageError(f"-O/--output-path {output_path!r} is a directory; give a file path.")
    if not target.parent.is_dir():
        raise StorageError(f"-O/--output-path {output_path!r}: the directory {target.parent} does not exist.")
    return target


def _write_staged(stream: BinaryIO, target: Path) -> Path:
    """Write ``stream`` to a new private (0600) hidden file beside ``target``, synced; its path.

    The hidden name records its owner (:mod:`dbbackup.leftovers`), so a run that is killed
    here leaves a file the next run removes. On failure nothing is left.
    """
    temporary, descriptor = local_write.create_hidden(target)
    try:
        local_write.write_synced(descriptor, stream)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def write_local(stream: BinaryIO, output_path: str) -> str:
    """Write ``stream`` to a local file atomically: a 0600 temporary file renamed into place.

    An existing file at ``output_path`` is replaced (the caller named it), never half-written.
    """
    target = _target(output_path)
    os.replace(_write_staged(stream, target), target)
    return str(target)


def _check_sidecar_path(sidecar: Path) -> None:
    if sidecar.exists() and not sidecar.is_file():
        raise StorageError(f"{sidecar} is in the way of the backup's metadata file; nothing was replaced.")


def _stage_target(output_path: str) -> StagedPath:
    target = _target(output_path)
    _check_sidecar_path(Path(f"{target}{names.METADATA_SUFFIX}"))
    leftovers.sweep_directory(target.parent)
    return StagedPath(target)


def stage_local(stream: BinaryIO, output_path: str) -> StagedPath:
    """Write a ``-O`` backup beside ``output_path`` without touching what is there yet."""
    staged = _stage_target(output_path)
    staged.staged = _write_staged(stream, Path(staged))
    return staged


def stage_local_file(
    writer: Callable[[str], None], output_path: str, progress: Callable[[int], object] | None
) -> tuple[StagedPath, local_write.FileDigest]:
    """Like :func:`stage_local`, the hidden file written by ``writer(path)`` and then read back
    for its size and SHA-256 while it is synced (:func:`dbbackup.local_write.seal`)."""
    staged = _stage_target(output_path)
    hidden, descriptor = local_write.create_hidden(Path(staged))
    os.close(descriptor)
    try:
        writer(str(hidden))
        digest = local_write.seal(hidden, progress)
    except BaseException:
        hidden.unlink(missing_ok=True)
        raise
    staged.staged = hidden
    return staged, digest


def _publish_local(local_path: StagedPath, data: bytes) -> None:
    """Put a staged ``-O`` backup and its sidecar in place, or change nothing at all.

    Both are complete on disk before anything existing is touched; a failure up to then
    (sidecar unwritable, a directory in the way, disk full) leaves the previous backup and its
    sidecar as they were. Then the old sidecar goes first, the backup is renamed into place,
    and the new sidecar last: at no moment does a backup sit beside a sidecar describing
    another file (the moments in between show a backup without a sidecar, which still
    restores, with the checks its format allows).
    """
    target = Path(local_path)
    sidecar = Path(f"{target}{names.METADATA_SUFFIX}")
    staged_sidecar = None
    try:
        _check_sidecar_path(sidecar)
        staged_sidecar = _write_staged(io.BytesIO(data), sidecar)
        sidecar.unlink(missing_ok=True)
        os.replace(local_path.staged, target)
        os.replace(staged_sidecar, sidecar)
    except BaseException:
        local_path.staged.unlink(missing_ok=True)
        if staged_sidecar is not None:
            staged_sidecar.unlink(missing_ok=True)
        raise
    linux_fs.fsync_directory(target.parent)


def write_metadata(storage: Storage, filename: str, local_path: str | None, metadata: dict) -> None:
    """Store the sidecar; the outcome is all or nothing.

    For a ``-O`` backup staged by :func:`store`, the backup and its sidecar are published
    together (:func:`_publish_local`). In the storage, the backup was just stored under a name
    that was free (an existing backup is never overwritten), so it is deleted if its sidecar
    fails, and a sidecar already under its name describes no backup (its backup was deleted
    without it): that orphan is replaced.
    """
    data = manifest.dumps(metadata)
    if isinstance(local_path, StagedPath):
        _publish_local(local_path, data)
        return
    sidecar = filename + names.METADATA_SUFFIX
    try:
        if local_path:
            write_local(io.BytesIO(data), f"{local_path}{names.METADATA_SUFFIX}")
        else:
            if storage.exists(sidecar):
                logger.warning("Replacing %s, the sidecar of a backup that no longer exists", sidecar)
                storage.delete_file(sidecar)
            storage.write_file(io.BytesIO(data), sidecar)
    except BaseException:
        try:
            if local_path:
                Path(local_path).unlink(missing_ok=True)
            else:
                storage.delete_file(filename)
        except Exception as exc:  # the sidecar's failure is what the user must see
            logger.warning("Could not delete %s, whose sidecar could not be written: %s", filename, exc)
        raise


def open_stages(
    raw: BinaryIO,
    *,
    label: str,
    metadata: dict[str, Any] | None,
    encrypted: bool,
    compression: str | None,
    passphrase: str | None,
    progress: Callable[[int], object] | None = None,
) -> tuple[BinaryIO, DigestReader]:
    """Stack the restore stages on a stored backup: digest, then decryption and decompression.

    A dbbackup sidecar says exactly how the backup was made, and then the bytes are not
    second-guessed. Without one (django-dbbackup's backups, custom names), the name's suffixes
    (``encrypted``, ``compression``) count, and the bytes are sniffed for what the name does not
    say. Returns the readable original and the digest stage (size and SHA-256 checked at the end).
    """
    expected_sha256, expected_size = manifest.integrity(metadata)
    digest = DigestReader(
        raw, expected_sha256=expected_sha256, expected_size=expected_size, label=label, on_bytes=progress
    )
    stream: BinaryIO = PeekableReader(digest)
    record = manifest.record(metadata)
    sniff = not ("encrypted" in record and "compression" in record)
    if not sniff:
        encrypted = encrypted or bool(record["encrypted"])
        compression = compression or record["compression"]
    if encrypted or (sniff and crypto.is_encrypted(stream)):
        stream = crypto.decrypt(stream, passphrase)
    stream, _ = codecs.open_decompressed(stream, label=label, expected=compression, sniff=sniff)
    stream = PeekableReader(stream)
    try:
        refuse_empty(stream, label)
    except BaseException:
        stream.close()
        raise
    return stream, digest


def refuse_empty(stream: PeekableReader, label: str) -> None:
    """Raise :class:`CorruptBackupError` when the (decoded) backup holds no byte at all.

    An empty stream is never a backup, whatever made it: a restore must not start from one
    (an empty SQL script would "restore" an empty database). Called before any connector or
    media writer sees the stream.
    """
    if not stream.peek(1):
        raise CorruptBackupError(
            f"{label} is empty: an empty file is never a backup, and nothing was restored. "
            "Choose another backup with -i/--input-filename (`manage.py listbackups` shows them)."
        )


# -- what backups of databases and of media share --------------------------------------------


def choose_encoding(
    *, compress: bool, compression: str | None, encrypt: bool, clean: bool, content_type: str
) -> codecs.Codec | None:
    """The codec to use, after checking every option that could fail later (before any signal)."""
    from dbbackup import retention

    codec = codecs.by_name(compression or settings.COMPRESSION) if (compress or compression) else None
    if encrypt:
        crypto.check_can_encrypt()
    if clean:
        retention.Policy.from_settings(content_type)
    return codec


def encode(stream: BinaryIO, codec: codecs.Codec | None, encrypt: bool) -> BinaryIO:
    """Compress, then encrypt, as django-dbbackup orders them (``name.ext.gz.gpg``)."""
    if codec:
        stream = codec.compress(stream)
    if encrypt:
        stream = crypto.encrypt(stream, compressed=codec is not None)
    return stream


def store(
    stream: BinaryIO,
    *,
    storage: Storage,
    filename: str,
    output_path: str | None,
    rename: Callable[[int], str] | None,
    progress: Callable[[int], object] | None,
) -> tuple[str, str | None, DigestReader]:
    """Write the encoded stream to the storage (or the local ``output_path``), digesting it.

    ``rename(n)`` gives the name for ``n`` seconds later, for when another run took the name in
    the same second (``None``: the name was chosen by the user and is never changed). Returns
    the stored name, the local path if any, and the digest (size, SHA-256). A local
    ``output_path`` is only staged: :func:`write_metadata` puts it in place with its sidecar.
    Stale partial files of killed runs (:mod:`dbbackup.leftovers`) are removed first.
    """
    on_conflict = conflict_renamer(rename)
    if not output_path:
        leftovers.sweep_storage(storage)  # partial uploads of killed runs; -O sweeps its directory
    digest = DigestReader(stream, on_bytes=progress)
    try:
        local_path = stage_local(digest, output_path) if output_path else None
        if local_path is None:
            filename = storage.write_file(digest, filename, on_conflict=on_conflict)
    finally:
        digest.close()
    return filename, local_path, digest


def conflict_renamer(rename: Callable[[int], str] | None) -> Callable[[str], str]:
    """``on_conflict`` for :meth:`Storage.write_file`: ``rename(1)``, ``rename(2)``, ... in turn
    (``None``: the taken name is kept, and the write refuses it)."""
    later = iter(range(1, 60))

    def on_conflict(taken: str) -> str:
        return rename(next(later)) if rename else taken

    return on_conflict


@dataclass
class Located:
    """The backup a restore will read, and what its name and sidecar say."""

    filename: str
    local: bool
    metadata: dict[str, Any] | None
    compression: str | None
    encrypted: bool


def locate_backup(
    storage: Storage,
    *,
    content_type: str,
    database: str | None = None,
    input_filename: str | None = None,
    input_path: str | None = None,
    servername: str | None = None,
    decrypt: bool = False,
    uncompress: bool = False,
    ignore_metadata: bool = False,
) -> Located:
    """The local file, the named backup, or the newest matching one; refuses the wrong kind.

    The newest backup is chosen by name and date only; an empty or damaged newest file is not
    skipped in favour of an older one (that would silently restore older data): the restore
    refuses it instead. A damaged sidecar raises :class:`MetadataError`, unless
    ``ignore_metadata``, which restores as if there were no sidecar at all.
    """
    from dbbackup import catalog
    from dbbackup.exceptions import BackupNotFoundError

    if input_path:
        if not Path(input_path).is_file():
            raise BackupNotFoundError(f"There is no file {input_path!r}.")
        filename, local = input_path, True
        metadata = None if ignore_metadata else manifest.read_local_for_restore(input_path)
    else:
        local = False
        if input_filename:
            filename = input_filename
            if not storage.exists(filename):
                listing = "listbackups" + (" -c media" if content_type == "media" else "")
                raise BackupNotFoundError(
                    f"There is no backup {filename!r} in {storage}; `manage.py {listing}` shows them."
                )
        else:
            filename = storage.get_latest_backup(
                content_type=content_type,
                database=database,
                servername=servername,
                encrypted=True if decrypt else None,
                compressed=True if uncompress else None,
            )
        metadata = None if ignore_metadata else catalog.read_metadata_for_restore(storage, filename)
    _, compression, encrypted = names.split_suffixes(Path(filename).name.split(".", 1)[-1])
    manifest.check_kind(metadata, filename, content_type)
    return Located(filename, local, metadata, compression, encrypted or decrypt)
