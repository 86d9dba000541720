"""How a stream of bytes gets into a Django storage: the write strategies.

Django's ``Storage.save()`` takes a ``File``, and backends differ in what they do with it.

How the bytes travel
    * **stream**: the backend's ``_save`` reads the content once, front to back
      (``FileSystemStorage``, ``InMemoryStorage``, django-storages' ``SFTPStorage`` and
      ``S3Storage``); the backup stream is handed over as it is produced.
    * **spool**: every other backend. Many rewind, reopen or measure the content first
      (django-storages' ``FTPStorage`` calls ``content.open()``, ``AzureStorage``
      ``content.seek(0)``, ``DropboxStorage`` ``content.size``, ``GoogleCloudStorage``
      ``rewind=True, size=content.size``), which a backup stream cannot do. The stream is
      first copied into a private temporary file in ``DBBACKUP_TMP_DIR`` (0600, without a name
      on disk: it is unlinked as it is created, so nothing is left even after ``kill -9``), and
      the backend gets that seekable file and its size. It costs temporary disk space as large
      as the backup, never memory. A backend not known to read sequentially is always spooled.

    Backups to ``FileSystemStorage`` with a local path, ``S3Storage``, ``GoogleCloudStorage``
    and ``AzureStorage`` have native writers (:mod:`dbbackup.storage`, :mod:`dbbackup.s3`,
    :mod:`dbbackup.gcs`, :mod:`dbbackup.azure`); media files restored to them come here.

How the name appears (:func:`store`)
    * backends that can rename (``FTPStorage``, ``SFTPStorage``): the file is written under a
      hidden partial name (``.name.partial-<random>``) and renamed once complete;
    * any other backend gets the file under its final name, in one ``save()`` of the complete
      spool: a dump, compression or encryption failure never reaches the storage. Object stores
      publish an object only when its upload completes (Azure commits its blocks, Google Cloud
      finalises its resumable upload, Dropbox its upload session), so the name appears whole;
      if ``save()`` fails, whatever it stored under the name is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import ftplib
import logging
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import Storage as DjangoStorage

from dbbackup import leftovers, settings
from dbbackup.exceptions import StorageError
from dbbackup.streams import copy_stream

logger = logging.getLogger("dbbackup.storage")

#: Backends whose ``_save`` reads the content once, front to back, and never seeks or sizes it.
SEQUENTIAL_SAVES = frozenset(
    {
        "django.core.files.storage.filesystem.FileSystemStorage",
        "django.core.files.storage.memory.InMemoryStorage",
        "storages.backends.sftpstorage.SFTPStorage",
        # rewinds only what is seekable, and feeds boto3 a reader (media restores to S3)
        "storages.backends.s3.S3Storage",
    }
)


def _save_owner(storage: DjangoStorage) -> str:
    """The dotted path of the class whose ``_save`` this storage runs."""
    for cls in storage.__class__.__mro__:  # __class__ sees through default_storage's LazyObject
        if "_save" in cls.__dict__:
            return f"{cls.__module__}.{cls.__qualname__}"
    return ""


def strategy(storage: DjangoStorage) -> str:
    """``"stream"`` when the backend reads the content sequentially, else ``"spool"``.

    A subclass that overrides ``_save`` is judged by its own ``_save``: unknown means spool.
    """
    return "stream" if _save_owner(storage) in SEQUENTIAL_SAVES else "spool"


@contextlib.contextmanager
def spooled(stream: BinaryIO) -> Iterator[File]:
    """The whole ``stream`` as a seekable ``File`` (``size`` set) in a private temporary file.

    The file lives in ``DBBACKUP_TMP_DIR``, is readable by its owner only and has no name on
    disk; it is closed (and its space freed) when the block ends.
    """
    directory = settings.TMP_DIR
    try:
        handle = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StorageError(
            f"Could not create the temporary copy of the backup in DBBACKUP_TMP_DIR ({directory}): {exc}"
        ) from exc
    try:
        try:
            size = copy_stream(stream, handle.write)
            handle.flush()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageError(
                f"DBBACKUP_TMP_DIR ({directory}) ran out of space after {handle.tell()} bytes: this "
                "storage backend needs a complete temporary copy of each backup before it uploads "
                "it. Free space there or point DBBACKUP_TMP_DIR at a larger disk."
            ) from exc
        handle.seek(0)
        content = File(handle)
        content.size = size
        yield content
    finally:
        handle.close()


def save(storage: DjangoStorage, name: str, stream: BinaryIO) -> str:
    """``storage.save(name, ...)`` with the whole ``stream``, by the backend's strategy.

    Returns the name the storage chose. Nothing is deleted on failure (see :func:`store`).
    """
    if strategy(storage) == "stream":
        return storage.save(name, File(stream, name=name))
    with spooled(stream) as content:
        content.name = name
        return storage.save(name, content)


def _ftp_rename(storage: DjangoStorage, old: str, new: str) -> None:
    storage._start_connection()
    storage._connection.rename(old, new)


def _sftp_rename(storage: DjangoStorage, old: str, new: str) -> None:
    # SFTP's rename refuses to replace an existing file: a backup is never overwritten.
    storage.sftp.rename(storage._remote_path(old), storage._remote_path(new))


RENAMERS: dict[str, Callable[[DjangoStorage, str, str], None]] = {
    "storages.backends.ftp.FTPStorage": _ftp_rename,
    "storages.backends.sftpstorage.SFTPStorage": _sftp_rename,
}


def renamer(storage: DjangoStorage) -> Callable[[DjangoStorage, str, str], None] | None:
    """How to rename a file in ``storage`` (FTP, SFTP), or ``None`` when Django's API has no way."""
    return RENAMERS.get(_save_owner(storage))


def store(storage: DjangoStorage, name: str, stream: BinaryIO) -> str:
    """Store the whole ``stream`` so that ``name`` appears only complete; return the name.

    Whatever fails, what this call stored (partial or final) is deleted before the error
    propagates; the caller checked that ``name`` was free.
    """
    rename = RENAMERS.get(_save_owner(storage))
    target = leftovers.partial_name(name) if rename else name
    stored = None
    try:
        stored = save(storage, target, stream)
        if rename:
            try:
                rename(storage, stored, name)
            except Exception as exc:
                backend = type(storage).__name__
                raise StorageError(f"Could not rename {stored!r} to {name!r} in {backend}: {exc}") from exc
            stored = name
    except BaseException:
        discard(storage, stored or target)
        raise
    return stored


def _ftp_delete(storage: DjangoStorage, name: str) -> None:
    # FTPStorage.delete() checks exists() first, with NLST, which many servers answer without
    # hidden (dot) files: the partial name would never be deleted.
    storage._start_connection()
    with contextlib.suppress(ftplib.error_perm):  # 550: there is no such file
        storage._connection.delete(name)


DELETERS: dict[str, Callable[[DjangoStorage, str], None]] = {
    "storages.backends.ftp.FTPStorage": _ftp_delete,
}


def discard(storage: DjangoStorage, name: str) -> None:
    """Delete ``name`` if it exists; a failure is logged (the original error matters more)."""
    try:
        delete = DELETERS.get(_save_owner(storage))
        if delete is not None:
            delete(storage, name)
        elif storage.exists(name):
            storage.delete(name)
    except Exception:
        logger.warning("Could not delete the incomplete file %s from %s", name, type(storage).__name__)
