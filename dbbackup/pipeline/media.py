"""Media backup and restore: the media storage as a streamed tar archive, and back.

Backup::

    media storage walk -> tar stream -> [gzip|zstd] -> [GPG] -> digest -> backup storage

Restore into a stock ``FileSystemStorage`` reads the archive once, checking every member and
writing each file into a staging folder inside the media folder; only once the whole archive
is verified (to the last byte of its checksum) are the files renamed into place
(:mod:`dbbackup.media_staging`). Into any other storage, it reads the archive twice: the first
pass reads everything (checksum, decryption, decompression, tar structure) and refuses unsafe
members; only if it succeeds does the second pass write files through the storage's API
(:mod:`dbbackup.media_target`: each file under a temporary name first, moved into place when
complete). Either way a damaged or hostile archive writes nothing, and memory does not grow
with the number of members.

The media storage is ``STORAGES["default"]``, as in django-dbbackup, so media on S3 or any
other Django storage is backed up too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from django.core.files.storage import Storage as DjangoStorage
from django.core.files.storage import default_storage

from dbbackup import manifest, name_checks, names, retention, s3, settings, signals, tar
from dbbackup.exceptions import DbbackupError
from dbbackup.media_source import backup_folder_in_media, source_for
from dbbackup.media_staging import staging_supported
from dbbackup.pipeline._common import (
    choose_encoding,
    default_sender,
    encode,
    locate_backup,
    open_stages,
    store,
    write_metadata,
)
from dbbackup.pipeline.media_write import Tally, restore_staged, restore_twice
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import DigestReader, ProducerReader, read_ahead

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
    s3_name = s3.output_name(storage, output_path) if s3.is_uri(output_path) else None  # as given
    output_path = None if s3_name else output_path
    media = media_storage()
    backups_inside = backup_folder_in_media(media, storage)  # refuses a media storage without root
    sender = sender or default_sender("mediabackup")
    effective_servername = name_checks.check_servername(servername or settings.HOSTNAME)
    extension = "tar" + (f".{codec.suffix}" if codec else "")
    if not (output_filename or output_path or s3_name):
        name_checks.check_naming("media", "", effective_servername, extension)
    if clean and not output_path:
        retention.check_keep_filter(
            output_filename or names.generate_filename(extension, "", effective_servername, "media")
        )
    signals.send_pre(
        signals.pre_media_backup, "pre_media_backup", sender, servername=effective_servername, storage=storage
    )
    started = names.now()

    def name_at(when: datetime) -> str:
        return names.generate_filename(extension, "", effective_servername, "media", when=when) + (
            ".gpg" if encrypt else ""
        )

    # -o names the archive before encryption, as django-dbbackup's mediabackup does
    chosen = s3_name or (output_filename + (".gpg" if encrypt else "") if output_filename else None)
    later = None if chosen else (lambda seconds: name_at(started + timedelta(seconds=seconds)))
    with signals.on_failure("media_backup_failed", sender, servername=effective_servername, storage=storage):
        source = source_for(media, exclude=backups_inside)
        counter = _Counter()
        encoded = encode(_archive_reader(tar.stream_tar(source, on_added=counter.add)), codec, encrypt)
        if codec is not None and not encrypt:  # (gpg's own thread reads the compressor)
            encoded = read_ahead(encoded, name="dbbackup-compress")
        try:
            filename, local_path, digest = store(
                encoded,
                storage=storage,
                filename=chosen or name_at(started),
                output_path=output_path,
                rename=later,
                progress=progress,
            )
        except BaseException:
            encoded.close()  # stops the worker threads, even when nothing was read yet
            raise
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


def _archive_reader(chunks: Iterator[bytes]) -> ProducerReader:
    """The tar stream, built on a worker thread: reading the media files (and the system calls
    of the walk) overlaps with compressing, encrypting, digesting and storing. The queue
    between them holds a few chunks, so memory stays flat."""

    def produce(write: Callable[[bytes], None]) -> None:
        try:
            for chunk in chunks:
                write(chunk)
        finally:
            chunks.close()  # the open media file, when cancelled half-way

    return ProducerReader(produce, name="dbbackup-tar", queue_chunks=2)


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def add(self, _name: str) -> None:
        self.value += 1


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
    """How many files :func:`execute_media_restore` wrote, kept and skipped.

    Counts, not lists: an archive may hold millions of members. The names are reported one
    by one, as the restore goes, to its ``report`` callback.
    """

    filename: str
    written: int = 0
    kept: int = 0
    skipped_links: int = 0
    skipped: int = 0
    removed_partials: int = 0
    removed_staging: int = 0
    verified: bool = False


#: ``report(event, name_or_message)`` events of :func:`execute_media_restore`: ``"kept"`` (an
#: existing file, no ``replace``), ``"link"`` (a link member, not restored) and ``"skipped"``
#: (a file not written, with the reason).
Report = Callable[[str, str], object]


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


def _open_archive(
    plan: MediaRestorePlan, progress: Callable[[int], object] | None = None
) -> tuple[BinaryIO, DigestReader]:
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


def verify_media_backup(
    plan: MediaRestorePlan, on_link: Callable[[str], object] | None = None
) -> tuple[int, int]:
    """Read the whole archive and check every member; write nothing.

    Returns the number of files and of links that a restore would skip (``on_link`` gets
    each link's name as it is met); memory does not grow with the number of members.
    """
    stream, _ = _open_archive(plan)
    try:
        return tar.scan(stream, on_link)
    finally:
        stream.close()


def _ignore(_event: str, _name: str) -> None:
    return None


def announce_media_restore(plan: MediaRestorePlan, *, sender: type | None = None) -> None:
    """Send ``pre_media_restore``; a receiver that raises vetoes the restore.

    The command sends it before it asks for a passphrase or a confirmation, as django-dbbackup
    does, then runs :func:`execute_media_restore` with ``announced=True``.
    """
    signals.send_pre(
        signals.pre_media_restore,
        "pre_media_restore",
        sender or default_sender("mediarestore"),
        filename=plan.filename,
        servername=plan.servername,
        storage=plan.storage,
    )


def execute_media_restore(
    plan: MediaRestorePlan,
    *,
    sender: type | None = None,
    report: Report | None = None,
    progress: Callable[[int], object] | None = None,
    announced: bool = False,
) -> MediaRestoreResult:
    """``pre_media_restore`` (unless ``announced``), verify the archive, write its files.

    Existing files are kept (and reported) unless ``plan.replace``. Into a ``FileSystemStorage``
    the archive is read once into a staging folder and the files are renamed into place only
    after the whole archive was verified (:mod:`dbbackup.media_staging`); into other storages it
    is read twice, a full check then the writing pass, each file written under a temporary name
    and given its real name only when complete. Either way every file is either as it was or as
    archived, never torn, and an old version is never deleted before its replacement is
    complete. What killed restores left is removed first. A file the storage would save under
    another name is an error, never a silent rename. ``progress(n)`` is called as the stored
    bytes of the (writing) pass are read.
    """
    sender = sender or default_sender("mediarestore")
    report = report or _ignore
    if not announced:
        announce_media_restore(plan, sender=sender)
    about = {"filename": plan.filename, "servername": plan.servername, "storage": plan.storage}
    with signals.on_failure("media_restore_failed", sender, **about):
        result = MediaRestoreResult(filename=plan.filename)
        tally = Tally(result, report)
        media = media_storage()
        archive = functools.partial(_open_archive, plan, progress)
        if staging_supported(media):
            digest = restore_staged(media, plan.replace, archive, tally)
        else:
            verify_media_backup(plan)
            digest = restore_twice(media, plan.replace, archive, tally)
    result.verified = digest.checked and digest.expected_sha256 is not None
    signals.send_post(
        signals.post_media_restore,
        "post_media_restore",
        sender,
        f"{result.written} media file(s) were restored from {plan.filename}",
        **about,
    )
    return result


def restore_media(*, sender: type | None = None, **options: Any) -> MediaRestoreResult:
    """Plan and run a media restore in one call (no confirmation)."""
    return execute_media_restore(plan_media_restore(**options), sender=sender)
