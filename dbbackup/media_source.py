"""Which files of the media storage a backup archives, and how each one is opened.

Two sources, chosen by :func:`source_for`:

- :class:`StorageSource`, for any Django storage: the storage's ``listdir()`` walk and its
  ``open()``; a file that vanished between the listing and its turn is skipped with a warning.
- :class:`LocalSource`, for a stock ``FileSystemStorage``: the folder is walked on disk so the
  backup can see what a storage API hides. Only regular files are archived: a FIFO, socket or
  device is skipped with a warning and never opened (opening a FIFO waits for a writer
  forever). A symbolic link is followed only while it stays inside the media folder; a link
  that leads out of it, or back into a folder being walked (a loop), is skipped with a warning.

Both skip the temporary names a media restore writes (:func:`is_partial`) and its staging
folders (:func:`is_staging`), so a restore killed half-way never puts its debris into the next
backup.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.core.files.storage import FileSystemStorage
from django.core.files.storage import Storage as DjangoStorage

from dbbackup.exceptions import DbbackupConfigurationError

logger = logging.getLogger("dbbackup")

#: ``.NAME.dbbackup-partial-XXXXXXXX``: a media file being restored, not yet complete.
PARTIAL_PATTERN = re.compile(r"\..+\.dbbackup-partial-[0-9a-f]{8}")


def is_partial(name: str) -> bool:
    """Whether ``name`` (a path or a base name) is a temporary name of a media restore."""
    return PARTIAL_PATTERN.fullmatch(posixpath.basename(name)) is not None


#: ``.dbbackup-restore-<owner>-<random>``: the folder where a media restore stages the files of
#: a ``FileSystemStorage`` until the whole archive is verified (:mod:`dbbackup.media_staging`).
STAGING_PREFIX = ".dbbackup-restore-"


def is_staging(name: str) -> bool:
    """Whether ``name`` (a path below the media root) lies in a media restore's staging folder."""
    return name.split("/", 1)[0].startswith(STAGING_PREFIX)


def is_local(storage: DjangoStorage) -> bool:
    """Whether ``storage`` is a ``FileSystemStorage`` that reads and writes files as Django does.

    A subclass that overrides ``_open`` or ``_save`` (to transform or rename files) is treated
    like any other storage and used through its API only.
    """
    cls = storage.__class__  # the wrapped class, for a LazyObject such as default_storage
    return (
        issubclass(cls, FileSystemStorage)
        and cls._open is FileSystemStorage._open
        and cls._save is FileSystemStorage._save
        and cls.path is FileSystemStorage.path
    )


class StorageSource:
    """The files of any Django storage, through its API."""

    def __init__(self, storage: DjangoStorage, exclude: str | None = None) -> None:
        self.storage = storage
        #: A folder (relative path) whose files are left out: the backups, when they lie inside.
        self.exclude = exclude

    def names(self, path: str = "") -> Iterator[str]:
        """Every file name below ``path``, in a stable (sorted) order: files, then folders.

        Files in the ``exclude`` folder are left out.
        """
        for name in self._names(path):
            if self.exclude is None or not (name + "/").startswith(self.exclude.rstrip("/") + "/"):
                yield name

    def _names(self, path: str) -> Iterator[str]:
        try:
            directories, files = self.storage.listdir(path)
        except FileNotFoundError:
            return
        for name in sorted(files):
            if not is_partial(name):
                yield posixpath.join(path, name) if path else name
        for directory in sorted(directories):
            if not path and is_staging(directory):
                continue
            yield from self._names(posixpath.join(path, directory) if path else directory)

    def close(self) -> None:
        """Release what the source holds between files (nothing, here)."""

    def open(self, name: str) -> tuple[BinaryIO, int] | None:
        """``(file, size)`` of ``name``, or ``None`` (with a warning) when it must be skipped."""
        try:
            handle = self.storage.open(name, "rb")
        except FileNotFoundError:
            logger.warning("Skipped media file %s: it was deleted while the backup ran", name)
            return None
        size = handle.size if handle.size is not None else self.storage.size(name)
        return handle, size


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: Opening a media file: never through a link as its last component, never waiting (a FIFO).
_OPEN_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


class LocalSource(StorageSource):
    """The regular files of a ``FileSystemStorage`` folder, walked on disk."""

    def __init__(self, storage: DjangoStorage, exclude: str | None = None) -> None:
        super().__init__(storage, exclude)
        self.root = os.path.realpath(storage.location)
        self._folder_name: str | None = None
        self._folder_fd: int | None = None

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _names(self, path: str) -> Iterator[str]:
        try:
            root_stat = os.stat(self.root)
        except FileNotFoundError:
            return
        yield from self._walk("", {(root_stat.st_dev, root_stat.st_ino)})

    def _walk(self, path: str, ancestors: set[tuple[int, int]]) -> Iterator[str]:
        folder = os.path.join(self.root, path) if path else self.root
        try:
            with os.scandir(folder) as entries:
                # The entry's type comes with the listing (no stat per file); a regular file is
                # checked again, on its descriptor, when it is opened.
                listed = sorted(
                    (entry.name, entry.is_symlink(), entry.is_file(follow_symlinks=False))
                    for entry in entries
                )
        except (FileNotFoundError, NotADirectoryError):
            return
        folders = []
        for base, is_link, is_file in listed:
            name = posixpath.join(path, base) if path else base
            if is_partial(base) or (not path and is_staging(base)):
                continue
            if is_file:
                yield name
                continue
            full = os.path.join(folder, base)
            try:
                if is_link:
                    real = os.path.realpath(full)
                    if not self._inside(real):
                        logger.warning(
                            "Skipped media link %s: it points outside the media folder (%s)", name, real
                        )
                        continue
                    info = os.stat(full)
                else:
                    info = os.lstat(full)
            except FileNotFoundError:
                if is_link:
                    logger.warning("Skipped media link %s: its target does not exist", name)
                continue
            if stat.S_ISREG(info.st_mode):
                yield name
            elif stat.S_ISDIR(info.st_mode):
                folders.append((name, info))
            else:
                logger.warning(
                    "Skipped media file %s: it is %s, not a regular file", name, _kind(info.st_mode)
                )
        for name, info in folders:
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                logger.warning("Skipped media link %s: it leads back into a folder above it (a loop)", name)
                continue
            yield from self._walk(name, ancestors | {key})

    def open(self, name: str) -> tuple[BinaryIO, int] | None:
        """Open ``name`` without following a link out of the folder and without blocking.

        The checks of the walk are made again on the opened file: the folder may have changed
        since (a file replaced by a FIFO or by a link pointing elsewhere). A file that is not a
        link is opened relative to its folder, held open while its files are read and checked
        to lie inside the media folder once opened (where ``/proc`` says where it is), so a
        folder swapped for a link meanwhile cannot lead outside.
        """
        parent, base = posixpath.split(name)
        folder = self._folder(parent)
        if folder is not None:
            try:
                fd = os.open(base, _OPEN_FLAGS, dir_fd=folder)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOENT):
                    raise
                return self._open_path(name)  # a link, or a file gone: resolved and reported there
            return self._checked(fd, name)
        return self._open_path(name)

    def _folder(self, parent: str) -> int | None:
        """A descriptor of the folder ``parent``, held until another folder is asked for;
        ``None`` when it cannot be pinned inside the media folder (the caller checks by path)."""
        if parent == self._folder_name:
            return self._folder_fd
        self.close()
        real = os.path.realpath(os.path.join(self.root, parent))
        if not self._inside(real):
            return None
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            actual = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            actual = None
        if actual is None or not self._inside(actual):
            os.close(fd)
            return None
        self._folder_name, self._folder_fd = parent, fd
        return fd

    def close(self) -> None:
        """Let go of the folder held open by :meth:`open`."""
        if self._folder_fd is not None:
            os.close(self._folder_fd)
        self._folder_name, self._folder_fd = None, None

    def _open_path(self, name: str) -> tuple[BinaryIO, int] | None:
        real = os.path.realpath(os.path.join(self.root, name))
        if not self._inside(real):
            logger.warning("Skipped media link %s: it points outside the media folder (%s)", name, real)
            return None
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except FileNotFoundError:
            logger.warning("Skipped media file %s: it was deleted while the backup ran", name)
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            logger.warning("Skipped media link %s: it was replaced by a link while the backup ran", name)
            return None
        return self._checked(fd, name)

    def _checked(self, fd: int, name: str) -> tuple[BinaryIO, int] | None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            logger.warning("Skipped media file %s: it is %s, not a regular file", name, _kind(info.st_mode))
            return None
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return _OpenedFile(fd), info.st_size


class _OpenedFile(io.RawIOBase):
    """A media file opened by :class:`LocalSource`: its descriptor, read with plain system calls.

    ``os.fdopen`` would ``fstat`` the descriptor once more and build a file object around it,
    for every file; this reads straight into the caller's buffer (``readinto``).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Any) -> int:
        return os.readv(self._fd, [buffer])

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def source_for(storage: DjangoStorage, exclude: str | None = None) -> StorageSource:
    """The source that reads ``storage`` (on disk for a stock ``FileSystemStorage``), leaving
    out the files in the ``exclude`` folder."""
    return LocalSource(storage, exclude) if is_local(storage) else StorageSource(storage, exclude)


def backup_folder_in_media(source: DjangoStorage, storage: Any) -> str | None:
    """Where the backups lie inside the media folder (a relative path), or ``None``.

    Refuses a local media storage without a folder of its own: with ``MEDIA_ROOT`` empty, Django
    stores media in the current directory, and a media backup would archive the whole project,
    its backups included. Refuses backups written straight into the media folder itself.
    """
    if not isinstance(source, FileSystemStorage):
        return None
    if not source.base_location:
        raise DbbackupConfigurationError(
            'The media storage (STORAGES["default"]) has no folder: MEDIA_ROOT is empty, so '
            f"mediabackup would archive the current directory ({os.getcwd()}). Set MEDIA_ROOT (or "
            'STORAGES["default"]["OPTIONS"]["location"]) to the folder of your media files.'
        )
    backups = getattr(storage.storage, "location", None)
    if not isinstance(storage.storage, FileSystemStorage) or not backups:
        return None
    media_root, backup_root = Path(source.location).resolve(), Path(backups).resolve()
    if backup_root == media_root:
        raise DbbackupConfigurationError(
            f"The backups are stored in the media folder itself ({media_root}): a media backup "
            'would archive them. Give STORAGES["dbbackup"] a location outside the media folder.'
        )
    if media_root not in backup_root.parents:
        return None
    inside = backup_root.relative_to(media_root).as_posix()
    logger.warning(
        "The backup location %s lies inside the media folder: %s/ is left out of the media backup.",
        backup_root,
        inside,
    )
    return inside
