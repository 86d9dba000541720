"""The backup storage: a thin wrapper over a Django storage.

The backend comes from ``STORAGES["dbbackup"]`` (``BACKEND`` and ``OPTIONS``, option names
lower-cased as django-dbbackup does). Without that entry, backups go to a private
``FileSystemStorage`` in ``<BASE_DIR>/backups`` (or ``./backups`` when the project defines no
``BASE_DIR``), with directories 0700 and files 0600.

Everything that differs between storages is handled here, not in the commands:

* a write goes to a hidden temporary name and is published under its final name only once the
  whole stream was stored; a failure deletes what was written, so no half file looks like a
  backup; an existing backup is never overwritten. How the bytes get there depends on the
  backend (:mod:`dbbackup.upload`): a private local file hard-linked into place, an S3
  multipart upload, a Google Cloud resumable upload, Azure staged blocks, a stream, or a
  seekable spool in ``DBBACKUP_TMP_DIR``;
* reads are streams; S3, Google Cloud, Azure and FTP are read natively (:mod:`dbbackup.s3`,
  :mod:`dbbackup.gcs`, :mod:`dbbackup.azure`, :mod:`dbbackup.ftp`), as the backends' own
  ``open()`` would copy the whole file first (or, for ``.gz`` names, un-gzip it);
* on local storages backups are created 0600 (never readable by others, not even while being
  written) unless the storage's ``OPTIONS`` set a ``file_permissions_mode``;
* listing walks sub-folders only when the filename templates can produce them.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings as django_settings
from django.core.exceptions import SuspiciousOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.core.files.storage import Storage as DjangoStorage
from django.utils.module_loading import import_string

from dbbackup import azure, ftp, gcs, leftovers, names, s3, settings, upload
from dbbackup.exceptions import (
    BackupNotFoundError,
    DbbackupConfigurationError,
    StorageError,
)
from dbbackup.streams import copy_to_file

__all__ = ["Storage", "StorageError", "get_storage", "get_storage_class"]

logger = logging.getLogger("dbbackup.storage")

DEFAULT_BACKEND = "django.core.files.storage.FileSystemStorage"
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700


def default_location() -> str:
    """Where backups go when ``STORAGES["dbbackup"]`` is not configured."""
    base = getattr(django_settings, "BASE_DIR", None)
    root = Path(base) if base else Path.cwd()
    return str(root / settings.DEFAULT_BACKUP_DIRECTORY_NAME)


def get_storage_class(path: str | None = None) -> type[DjangoStorage]:
    """Import a storage class by dotted path (default: the backup storage's backend)."""
    path = path or _configured()[0]
    try:
        return import_string(path)
    except ImportError as exc:
        raise DbbackupConfigurationError(
            f'STORAGES["{settings.STORAGES_DBBACKUP_ALIAS}"]["BACKEND"] = {path!r} cannot be imported: {exc}'
        ) from exc


def _configured() -> tuple[str, dict[str, Any]]:
    alias = settings.STORAGES_DBBACKUP_ALIAS
    entry = getattr(django_settings, "STORAGES", {}).get(alias)
    if entry is None and settings.STORAGE:
        # django-dbbackup 4.x spelling, still honoured (system check dbbackup.W012 says so).
        return settings.STORAGE, dict(settings.STORAGE_OPTIONS or {})
    if entry is None:
        return DEFAULT_BACKEND, {
            "location": default_location(),
            "file_permissions_mode": PRIVATE_FILE_MODE,
            "directory_permissions_mode": PRIVATE_DIRECTORY_MODE,
        }
    if not isinstance(entry, dict) or ("BACKEND" not in entry and "OPTIONS" not in entry):
        raise DbbackupConfigurationError(
            f'STORAGES["{alias}"] must be a dict with "BACKEND" and optional "OPTIONS".'
        )
    return entry.get("BACKEND", DEFAULT_BACKEND), dict(entry.get("OPTIONS") or {})


def get_storage(path: str | None = None, options: dict[str, Any] | None = None) -> Storage:
    """The backup storage wrapper (``STORAGES["dbbackup"]`` unless told otherwise)."""
    return Storage(path, **(options or {}))


class Storage:
    """Backup-shaped operations over one Django storage instance (``.storage``)."""

    def __init__(self, storage_path: str | None = None, **options: Any) -> None:
        backend, configured = _configured()
        alias = settings.STORAGES_DBBACKUP_ALIAS
        if storage_path is None:
            options = {**options, **configured}
        options = {key.lower(): value for key, value in options.items()}
        for mode_option in ("file_permissions_mode", "directory_permissions_mode"):
            mode = options.get(mode_option)
            if mode is not None and (
                not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777
            ):
                raise DbbackupConfigurationError(
                    f'STORAGES["{alias}"]["OPTIONS"]["{mode_option}"] must be an octal number such as '
                    f"0o640, not {type(mode).__name__} {mode!r}."
                )
        #: A file mode the project chose for this storage; local backups are 0600 otherwise.
        self._explicit_file_mode: int | None = options.get("file_permissions_mode")
        entry = getattr(django_settings, "STORAGES", {}).get(alias)
        if storage_path is None and options == configured and isinstance(entry, dict) and "BACKEND" in entry:
            # Django's handler caches one instance per alias (reset by override_settings), so
            # e.g. an InMemoryStorage keeps its files between calls.
            try:
                self.storage: DjangoStorage = storages[alias]
            except Exception as exc:
                raise DbbackupConfigurationError(
                    f'The backup storage STORAGES["{alias}"] could not be created: {exc}'
                ) from exc
        else:
            storage_class = get_storage_class(storage_path or backend)
            try:
                self.storage = storage_class(**options)
            except Exception as exc:
                raise DbbackupConfigurationError(
                    f"The backup storage {storage_class.__name__} could not be created with "
                    f"options {sorted(options)}: {exc}"
                ) from exc
        self.name = type(self.storage).__name__

    def __str__(self) -> str:
        return f"dbbackup-{self.name}"

    # -- plain file operations -------------------------------------------------------------

    def exists(self, name: str) -> bool:
        try:
            return self.storage.exists(name)
        except SuspiciousOperation as exc:
            raise StorageError(f"{name!r} is not a valid name in {self}: {exc}") from exc

    def read_file(self, filepath: str) -> File:
        """Open a stored file for reading (binary); the caller closes it."""
        if s3.is_s3(self.storage):
            return File(s3.open_stream(self.storage, filepath), name=filepath)
        if azure.is_azure(self.storage):
            return File(azure.open_stream(self.storage, filepath), name=filepath)
        if gcs.is_gcs(self.storage):
            return File(gcs.open_stream(self.storage, filepath), name=filepath)
        if ftp.is_ftp(self.storage):
            return File(ftp.open_stream(self.storage, filepath), name=filepath)
        try:
            handle = self.storage.open(filepath, "rb")
        except FileNotFoundError as exc:
            raise BackupNotFoundError(f"There is no file {filepath!r} in {self}.") from exc
        except SuspiciousOperation as exc:
            raise StorageError(f"{filepath!r} is not a valid name in {self}: {exc}") from exc
        except Exception as exc:
            raise StorageError(f"Could not open {filepath!r} in {self}: {exc}") from exc
        if not getattr(handle, "name", None):
            handle.name = filepath
        return handle

    def delete_file(self, filepath: str) -> None:
        logger.info("Deleting %s", filepath)
        self.storage.delete(filepath)

    def write_file(
        self, filehandle: BinaryIO, filename: str, *, on_conflict: Callable[[str], str] | None = None
    ) -> str:
        """Store the whole stream under ``filename``, atomically; return the stored name.

        An existing file is never overwritten: with ``on_conflict``, the name it returns for the
        taken one is tried instead (two backups started in the same second); without, or after
        ten tries, :class:`StorageError` is raised. Whatever fails, nothing new is left behind.
        """
        try:
            local = _local_path(self.storage, filename) is not None
            for _ in range(10):
                if not self.storage.exists(filename) or on_conflict is None:
                    break
                filename = on_conflict(filename)
            exists = self.storage.exists(filename)
        except SuspiciousOperation as exc:
            raise StorageError(f"{filename!r} is not a valid name in {self}: {exc}") from exc
        if exists:
            raise StorageError(f"{filename!r} already exists in {self}; it was not overwritten.")
        if local:
            return self._write_local(filehandle, filename, on_conflict)
        if gcs.is_gcs(self.storage):
            return gcs.upload(self.storage, filename, filehandle)  # resumable, cancelled on failure
        if azure.is_azure(self.storage):
            return azure.upload(self.storage, filename, filehandle)  # blocks, committed at the end
        if not s3.is_s3(self.storage):
            return upload.store(self.storage, filename, filehandle)  # streamed or spooled
        try:
            return s3.upload(self.storage, filename, filehandle)
        except BaseException:
            self._discard(filename)
            raise

    def _write_local(
        self, filehandle: BinaryIO, filename: str, on_conflict: Callable[[str], str] | None = None
    ) -> str:
        """Write to a private temporary file beside the target, then hard-link it into place.

        The temporary file is created 0600 and exclusively, so a backup is never readable by
        others, not even while it is written; ``os.link`` refuses to replace an existing file.
        """
        target = Path(self.storage.path(filename))
        directory_mode = getattr(self.storage, "directory_permissions_mode", None) or PRIVATE_DIRECTORY_MODE
        for directory in reversed([target.parent, *target.parent.parents]):
            if directory.exists():
                continue
            try:
                directory.mkdir(mode=directory_mode)
            except FileExistsError:
                continue  # a concurrent run made it a moment ago
            os.chmod(directory, directory_mode)  # mkdir's mode is filtered by the umask
        temporary = target.parent / leftovers.partial_name(target.name)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                copy_to_file(filehandle, handle)
                handle.flush()
                os.fsync(handle.fileno())
            if self._explicit_file_mode is not None:  # the final mode, before the name appears
                os.chmod(temporary, self._explicit_file_mode)
            for _ in range(10):
                try:
                    os.link(temporary, target)
                    break
                except FileExistsError as exc:
                    if on_conflict is None:
                        raise StorageError(
                            f"{filename!r} already exists in {self}; it was not overwritten."
                        ) from exc
                    filename = on_conflict(filename)
                    target = Path(self.storage.path(filename))
            else:
                raise StorageError(f"No free name for the backup in {self} after ten tries.")
        finally:
            temporary.unlink(missing_ok=True)
        return filename

    def _discard(self, name: str) -> None:
        try:
            if self.storage.exists(name):
                self.storage.delete(name)
        except Exception:  # the original error matters more; say what may be left
            logger.warning("Could not delete the incomplete file %s from %s", name, self)

    def list_directory(self, path: str = "") -> list[str]:
        """Names of the files directly in ``path`` (relative to the storage root).

        Some object-store backends list full keys, ``location`` prefix included; the prefix is
        cut off so names stay relative to the storage, as Django's API means them.
        """
        try:
            _, files = self.storage.listdir(path)
        except FileNotFoundError:
            return []
        except NotImplementedError as exc:
            raise StorageError(f"{self} cannot list its files, so backups cannot be found.") from exc
        return sorted(posixpath.join(path, name) if path else name for name in map(self._relative, files))

    def _relative(self, name: str) -> str:
        location = getattr(self.storage, "location", "")
        if isinstance(location, str) and location and not os.path.isabs(location):
            prefix = location.strip("/") + "/"
            if name.startswith(prefix):
                return name[len(prefix) :]
        return name

    def walk(self, path: str = "") -> Iterator[str]:
        """Every file below ``path``, depth first."""
        try:
            directories, files = self.storage.listdir(path)
        except FileNotFoundError:
            return
        for name in sorted(files):
            yield posixpath.join(path, name) if path else name
        for directory in sorted(directories):
            yield from self.walk(posixpath.join(path, directory) if path else directory)

    # -- backups ---------------------------------------------------------------------------

    def list_backups(
        self,
        encrypted: bool | None = None,
        compressed: bool | None = None,
        content_type: str | None = None,
        database: str | None = None,
        servername: str | None = None,
    ) -> list[str]:
        """Names of the backups matching every filter given, oldest first.

        ``database`` is an alias and ``servername`` a server name; both must match their
        whole field of the name (see :mod:`dbbackup.catalog`).
        """
        return [
            entry.name
            for entry in self.find_backups(encrypted, compressed, content_type, database, servername)
        ]

    def find_backups(
        self,
        encrypted: bool | None = None,
        compressed: bool | None = None,
        content_type: str | None = None,
        database: str | None = None,
        servername: str | None = None,
    ) -> list:
        """Like :meth:`list_backups`, returning :class:`dbbackup.catalog.Entry` objects."""
        from dbbackup import catalog

        return catalog.find(
            self,
            content_type=content_type,
            database=database,
            servername=servername,
            encrypted=encrypted,
            compressed=compressed,
        )

    def get_latest_backup(self, **filters: Any) -> str:
        """The newest backup matching ``filters`` (see :meth:`list_backups`)."""
        backups = self.list_backups(**filters)
        if not backups:
            raise BackupNotFoundError(_nothing_found(self, filters))
        return backups[-1]

    def get_older_backup(self, **filters: Any) -> str:
        """The oldest backup matching ``filters``."""
        backups = self.list_backups(**filters)
        if not backups:
            raise BackupNotFoundError(_nothing_found(self, filters))
        return backups[0]

    def clean_old_backups(
        self,
        encrypted: bool | None = None,
        compressed: bool | None = None,
        content_type: str | None = None,
        database: str | None = None,
        servername: str | None = None,
        keep_number: int | None = None,
    ) -> list[str]:
        """django-dbbackup's cleanup: keep the newest ``keep_number`` matching backups.

        ``keep_number`` defaults to ``DBBACKUP_CLEANUP_KEEP`` (``..._KEEP_MEDIA`` for media);
        ``DBBACKUP_CLEANUP_KEEP_FILTER`` pins files. Sidecars go with their backups. Returns the
        deleted names. The commands use :func:`dbbackup.retention.prune`, which also applies
        the age and calendar rules, per database and server.
        """
        from dbbackup import retention

        if keep_number is None:
            keep_number = settings.CLEANUP_KEEP_MEDIA if content_type == "media" else settings.CLEANUP_KEEP
        entries = self.find_backups(encrypted, compressed, content_type, database, servername)
        decisions = retention.plan(
            entries, retention.Policy(last=keep_number), settings.callable_setting("CLEANUP_KEEP_FILTER")
        )
        deleted = []
        for decision in reversed(decisions):
            if not decision.keep:
                self.delete_file(decision.entry.name)
                if self.storage.exists(decision.entry.name + names.METADATA_SUFFIX):
                    self.delete_file(decision.entry.name + names.METADATA_SUFFIX)
                deleted.append(decision.entry.name)
        return deleted


def _nothing_found(storage: Storage, filters: dict[str, Any]) -> str:
    described = ", ".join(f"{key}={value!r}" for key, value in filters.items() if value is not None)
    return f"There is no backup in {storage}" + (f" matching {described}." if described else ".")


def _local_path(storage: DjangoStorage, name: str) -> str | None:
    if not isinstance(storage, FileSystemStorage):
        return None
    try:
        return storage.path(name)
    except NotImplementedError:
        return None
