"""Media backup and restore: the media storage as a streamed tar archive, and back.

Backup::

    media storage walk -> tar stream -> [gzip|zstd] -> [GPG] -> digest -> backup storage

Restore reads the archive twice. The first pass reads everything (checksum, decryption,
decompression, tar structure) and refuses unsafe members; only if it succeeds does the second
pass write files through the media storage. A damaged or hostile archive therefore writes
nothing.

The media storage is ``STORAGES["default"]``, as in django-dbbackup, so media on S3 or any
other Django storage is backed up too.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from django.core.files import File
from django.core.files.storage import Storage as DjangoStorage
from django.core.files.storage import default_storage

from dbbackup import manifest, names, retention, settings, signals, tar
from dbbackup.exceptions import DbbackupError, StorageError
from dbbackup.pipeline._common import (
    choose_encoding,
    default_sender,
    encode,
    locate_backup,
    open_stages,
    store,
    write_metadata,
)
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import CHUNK_SIZE, DigestReader, IteratorReader

logger = logging.getLogger("dbbackup")


def media_storage() -> DjangoStorage:
    """The storage whose files are backed up: Django's default storage."""
    return default_storage


@dataclass
class MediaBackupResult:
    """What :func:`backup_media` stored."""

    filename: str
    size: int
    sha256: str
    files: int
    servername: str
    compression: str | None
    encrypted: bool
    local_path: str | None = None
    cleaned: list[str] = field(default_factory=list)


def backup_media(
    *,
    servername: str | None = None,
    compress: bool = False,
    compression: str | None = None,
    encrypt: bool = False,
    output_filename: str | None = None,
    output_path: str | None = None,
    clean: bool = False,
    storage: Storage | None = None,
    sender: type | None = None,
    progress: Callable[[int], object] | None = None,
) -> MediaBackupResult:
    """Archive every file of the media storage into one backup.

    ``output_filename`` names the archive before encryption (``.gpg`` is still added), as
    django-dbbackup's ``mediabackup -o`` does.
    """
    codec = choose_encoding(
        compress=compress, compression=compression, encrypt=encrypt, clean=clean, content_type="media"
    )
    storage = storage or get_storage()
    sender = sender or default_sender("mediabackup")
    effective_servername = servername or settings.HOSTNAME
    signals.send_pre(
        signals.pre_media_backup, "pre_media_backup", sender, servername=effective_servername, storage=storage
    )
    extension = "tar" + (f".{codec.suffix}" if codec else "")
    started = names.now()

    def name_at(when: datetime) -> str:
        return names.generate_filename(extension, "", effective_servername, "media", when=when) + (
            ".gpg" if encrypt else ""
        )

    # -o names the archive before encryption, as django-dbbackup's mediabackup does
    filename = (output_filename + (".gpg" if encrypt else "")) if output_filename else name_at(started)
    source = media_storage()
    counter = _Counter()
    filename, local_path, digest = store(
        encode(
            IteratorReader(tar.stream_tar(source, counter.count(tar.walk_storage(source)))), codec, encrypt
        ),
        storage=storage,
        filename=filename,
        output_path=output_path,
        rename=None if output_filename else (lambda seconds: name_at(started + timedelta(seconds=seconds))),
        progress=progress,
    )
    metadata = manifest.complete(
        {"content_type": "media"},
        content_type="media",
        database=None,
        servername=effective_servername,
        size=digest.size,
        sha256=digest.sha256,
        compression=codec.name if codec else None,
        encrypted=encrypt,
    )
    write_metadata(storage, filename, local_path, metadata)
    result = MediaBackupResult(
        filename=filename,
        size=digest.size,
        sha256=digest.sha256,
        files=counter.value,
        servername=effective_servername,
        compression=codec.name if codec else None,
        encrypted=encrypt,
        local_path=local_path,
    )
    post_error = None
    try:
        signals.send_post(
            signals.post_media_backup,
            "post_media_backup",
            sender,
            f"The media backup was stored as {local_path or filename}",
            filename=filename,
            servername=effective_servername,
            storage=storage,
        )
    except DbbackupError as exc:
        post_error = exc
    if clean and not output_path:
        decisions = retention.prune(storage, content_type="media", servername=servername)
        result.cleaned = [decision.entry.name for decision in decisions if not decision.keep]
    if post_error is not None:
        raise post_error
    return result


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def count(self, items):
        for item in items:
            self.value += 1
            yield item


@dataclass
class MediaRestorePlan:
    """A media restore resolved but not yet run."""

    filename: str
    local: bool
    servername: str
    storage: Storage
    metadata: dict[str, Any] | None
    compression: str | None
    encrypted: bool
    replace: bool
    passphrase: str | None = None


@dataclass
class MediaRestoreResult:
    """What :func:`execute_media_restore` wrote, kept and skipped."""

    filename: str
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    verified: bool = False


def plan_media_restore(
    *,
    input_filename: str | None = None,
    input_path: str | None = None,
    servername: str | None = None,
    decrypt: bool = False,
    passphrase: str | None = None,
    uncompress: bool = False,
    replace: bool = False,
    storage: Storage | None = None,
    ignore_metadata: bool = False,
) -> MediaRestorePlan:
    """Find the media backup to restore (the newest, unless named); change nothing.

    A damaged sidecar refuses the restore; ``ignore_metadata`` restores as if there were none.
    """
    storage = storage or get_storage()
    located = locate_backup(
        storage,
        content_type="media",
        input_filename=input_filename,
        input_path=input_path,
        servername=servername,
        decrypt=decrypt,
        uncompress=uncompress,
        ignore_metadata=ignore_metadata,
    )
    return MediaRestorePlan(
        filename=located.filename,
        local=located.local,
        servername=servername or settings.HOSTNAME,
        storage=storage,
        metadata=located.metadata,
        compression=located.compression,
        encrypted=located.encrypted,
        replace=replace,
        passphrase=passphrase,
    )


def _open_archive(plan: MediaRestorePlan) -> tuple[BinaryIO, DigestReader]:
    raw = open(plan.filename, "rb") if plan.local else plan.storage.read_file(plan.filename)  # noqa: SIM115
    return open_stages(
        raw,
        label=plan.filename,
        metadata=plan.metadata,
        encrypted=plan.encrypted,
        compression=plan.compression,
        passphrase=plan.passphrase,
    )


def verify_media_backup(plan: MediaRestorePlan) -> tuple[int, list[str]]:
    """Read the whole archive and check every member; write nothing.

    Returns the number of files and the links that a restore would skip.
    """
    stream, _ = _open_archive(plan)
    try:
        return tar.scan(stream)
    finally:
        stream.close()


def execute_media_restore(plan: MediaRestorePlan, *, sender: type | None = None) -> MediaRestoreResult:
    """Verify the archive, then write its files through the media storage.

    Existing files are kept (and listed in the result) unless ``plan.replace``; a file the
    storage would save under another name is an error, never a silent rename.
    """
    sender = sender or default_sender("mediarestore")
    _, skipped = verify_media_backup(plan)
    signals.send_pre(
        signals.pre_media_restore,
        "pre_media_restore",
        sender,
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    )
    result = MediaRestoreResult(filename=plan.filename, skipped_links=skipped)
    target = media_storage()
    stream, digest = _open_archive(plan)
    try:
        for member in tar.files(stream):
            if target.exists(member.name):
                if not plan.replace:
                    result.kept.append(member.name)
                    continue
                target.delete(member.name)
            saved = target.save(member.name, File(_Exact(member.content, member.size), name=member.name))
            if saved != member.name:
                raise StorageError(
                    f"The media storage saved {member.name!r} as {saved!r} instead of replacing it; "
                    f"{len(result.written)} file(s) were restored before this one."
                )
            result.written.append(member.name)
        while stream.read(CHUNK_SIZE):
            pass
    finally:
        stream.close()
    result.verified = digest.expected_sha256 is not None
    signals.send_post(
        signals.post_media_restore,
        "post_media_restore",
        sender,
        f"{len(result.written)} media file(s) were restored from {plan.filename}",
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    )
    return result


class _Exact(io.RawIOBase):
    """A member's content as a read-only, non-seekable file of known size, for any storage."""

    def __init__(self, content: BinaryIO, size: int) -> None:
        self._content = content
        self.size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._content.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def restore_media(*, sender: type | None = None, **options: Any) -> MediaRestoreResult:
    """Plan and run a media restore in one call (no confirmation)."""
    return execute_media_restore(plan_media_restore(**options), sender=sender)
