"""Restoring media into a ``FileSystemStorage``: one verifying pass into a staging folder, then renames.

The archive is read once. Each file it holds is written, with plain ``os`` calls, into a
private staging folder inside the media folder, ``MEDIA_ROOT/.dbbackup-restore-<owner>-<random>/``
(mode 0700; on the media folder's own file system, so a rename moves a file without copying
it). Only when the whole archive has been read and checked (every member's name and type, every
file's size, the structure of the tar, and the size and SHA-256 of the stored bytes to the
last byte) does :meth:`StagingTarget.commit` flush the staged files to disk (one ``syncfs``)
and rename them into place, one by one. So:

- while the archive is read, the media folder is not changed at all: a damaged, truncated or
  hostile archive, a full disk, an error or an interruption (Ctrl-C, SIGTERM) leave it as it
  was, and the staging folder is removed at once. A restore killed with SIGKILL leaves its
  staging folder, which the next restore removes (:func:`dbbackup.leftovers.sweep_folders`:
  the name carries its owner process) and which ``mediabackup`` never archives;
- each rename is atomic, so every file is whole: its old version or the archived one. But a
  restore killed *during the renames* leaves some files restored and the others as they were;
  running the same restore again completes it;
- the staging folder needs free space for the files the archive restores, beside the current
  ones (those kept without ``-r`` are not staged).

The media folder is walked one component at a time without following symbolic links
(``O_NOFOLLOW``), at staging and again at the renames: a member under a link is skipped with a
warning, a file that is itself a link is replaced (with ``-r``), never written through. An
existing file is kept unless ``replace``; without it, a file that appears between staging and
renaming is kept too (a hard link, unlike a rename, never overwrites). New folders get
``FILE_UPLOAD_DIRECTORY_PERMISSIONS``, files ``FILE_UPLOAD_PERMISSIONS``, as Django gives them.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

from django.core.files.storage import Storage as DjangoStorage

from dbbackup import leftovers, linux_fs
from dbbackup.exceptions import CorruptBackupError, StorageError
from dbbackup.media_source import STAGING_PREFIX, is_local, is_partial, is_staging
from dbbackup.media_target import (
    DIR_FLAGS,
    KEPT,
    NOFOLLOW,
    SKIPPED,
    WRITTEN,
    ExactReader,
    LocalTarget,
    ThroughLink,
    has_dir_fd,
    open_folder_below,
)

logger = logging.getLogger("dbbackup")

STAGED = "staged"
_COPY_BUFFER = 256 * 1024
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK)


class StagingTarget:
    """Files of an archive staged in a private folder, then moved into the media folder.

    Use: :meth:`prepare`, :meth:`stage` for each file, :meth:`commit` once the whole archive
    is verified; :meth:`close` always (it removes the staging folder).
    """

    def __init__(
        self,
        storage: DjangoStorage,
        *,
        replace: bool,
        warn: Callable[[str], object],
        on_kept: Callable[[str], object],
    ) -> None:
        self.root = storage.location
        self.file_mode = storage.file_permissions_mode
        self.directory_mode = storage.directory_permissions_mode
        self.replace = replace
        self.warn = warn
        self.on_kept = on_kept
        self.storage = storage
        self.folder: str | None = None
        self.staged = 0  #: files written into the staging folder
        self.written = 0  #: files moved into the media folder
        self._fd: int | None = None
        self._root_fd: int | None = None
        self._parts: tuple[str, ...] | None = None
        self._media_fd: int | None = None  # the current member's media folder (None: missing)
        self._stage_fd: int | None = None  # ... and its staging folder
        self._blocked: str | None = None  # ... or the link that blocks it
        self._fsync_each = not linux_fs.has_syncfs()
        self._buffer = memoryview(bytearray(_COPY_BUFFER))  # reused: no allocation per chunk

    def prepare(self) -> tuple[int, int]:
        """Create the staging folder after removing what killed restores left.

        Returns the numbers of temporary files (``.NAME.dbbackup-partial-…``, written by older
        versions and by restores through the storage API) and of staging folders removed.
        """
        partials = LocalTarget(self.storage, replace=self.replace, warn=self.warn).prepare()
        folders = len(leftovers.sweep_folders(self.root, STAGING_PREFIX))
        os.makedirs(self.root, exist_ok=True)
        self._root_fd = os.open(self.root, DIR_FLAGS)
        name = leftovers.folder_name(STAGING_PREFIX)
        os.mkdir(name, 0o700, dir_fd=self._root_fd)
        self.folder = os.path.join(self.root, name)
        self._fd = os.open(name, DIR_FLAGS | NOFOLLOW, dir_fd=self._root_fd)
        return partials, folders

    # -- staging ---------------------------------------------------------------------------

    def stage(self, name: str, content: BinaryIO, size: int) -> str:
        """Write one file into the staging folder: ``STAGED``, ``KEPT`` (it exists and
        ``replace`` is off: not staged) or ``SKIPPED`` (with a warning)."""
        if is_partial(name) or is_staging(name):
            self.warn(f"Skipped {name}: the name of a restore's temporary file")
            return SKIPPED
        *parts, base = name.split("/")
        try:
            if tuple(parts) != self._parts:
                self._enter(name, tuple(parts))
            if self._blocked is not None:
                return self._skip_link(name, self._blocked)
            if self._media_fd is not None and self._exists(self._media_fd, name, base):
                return self._keep(name)
            return self._write(name, base, content, size)
        except OSError as exc:
            raise StorageError(
                f"Could not restore the media file {name!r}: {exc.strerror or exc} (while staging "
                "it); nothing in the media folder was changed."
            ) from exc

    def _skip_link(self, name: str, folder: str) -> str:
        self.warn(f"Skipped {name}: {folder} is a symbolic link in the media folder, not followed")
        return SKIPPED

    def _keep(self, name: str) -> str:
        self.on_kept(name)
        return KEPT

    def _exists(self, folder: int, name: str, base: str) -> bool:
        try:
            existing = os.stat(base, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(existing.st_mode):
            raise StorageError(f"Could not restore the media file {name!r}: a folder of that name exists")
        return not self.replace

    def _enter(self, name: str, parts: tuple[str, ...]) -> None:
        """Open the media folder and the staging folder of the members in ``parts``."""
        self._close_current()
        self._parts = parts
        try:
            self._media_fd = self._open(self._root_fd, name, parts, create=False)
        except ThroughLink as link:
            self._blocked = link.folder
            return
        self._stage_fd = self._open(self._fd, name, parts, create=True)

    def _open(self, top: int, name: str, parts: tuple[str, ...], *, create: bool) -> int | None:
        """A descriptor of the folder ``parts`` below ``top``, links refused (:class:`ThroughLink`).

        A missing folder is created with ``create`` (given the directory mode at once: staged
        folders may be moved whole), else ``None`` is returned.
        """
        return open_folder_below(top, name, parts, create=create, directory_mode=self.directory_mode)

    def _write(self, name: str, base: str, content: BinaryIO, size: int) -> str:
        try:
            fd = os.open(base, _FILE_FLAGS, 0o666, dir_fd=self._stage_fd)
        except FileExistsError:  # the archive holds this name twice: the later copy wins with -r
            if self._exists(self._stage_fd, name, base):
                return self._keep(name)
            os.unlink(base, dir_fd=self._stage_fd)
            self.staged -= 1
            fd = os.open(base, _FILE_FLAGS, 0o666, dir_fd=self._stage_fd)
        try:  # plain write(2) calls, a short one continued: no file object's extra system calls
            source = ExactReader(content, size)
            remaining = size
            while remaining:
                count = source.readinto(self._buffer[: min(len(self._buffer), remaining)])
                if not count:
                    raise CorruptBackupError(f"The media backup ends inside {name!r}")
                pending = self._buffer[:count]
                while pending:
                    pending = pending[os.write(fd, pending) :]
                remaining -= count
            if self.file_mode is not None:
                os.fchmod(fd, self.file_mode)
            if self._fsync_each:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.staged += 1
        return STAGED

    # -- moving into place -----------------------------------------------------------------

    def commit(self) -> int:
        """Flush the staged files to disk, then move them into the media folder.

        Call only once the whole archive is verified. A staged folder whose media folder does
        not exist is moved whole (one rename that never replaces anything); otherwise each file
        is renamed. Returns the number of files written; files that appeared meanwhile
        (without ``replace``) are kept and reported.
        """
        self._close_current()
        try:
            linux_fs.syncfs(self._fd)
        except OSError as exc:
            raise StorageError(
                f"Could not flush the restored media files to disk: {exc.strerror}; nothing in the "
                "media folder was changed."
            ) from exc
        try:
            self._move_tree((), os.dup(self._fd), os.dup(self._root_fd))
        except OSError as exc:
            raise StorageError(
                f"Could not move the restored media files into place: {exc.strerror or exc}. "
                f"{self.written} file(s) were moved before; the others are as they were."
            ) from exc
        return self.written

    def _move_tree(self, parts: tuple[str, ...], stage_fd: int, media_fd: int) -> None:
        """Move what is staged in the folder ``parts`` (``stage_fd``) into its media folder
        (``media_fd``): its files, then its subfolders. Both descriptors are closed here."""
        subfolders = []
        try:
            with os.scandir(stage_fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.name)
                    else:
                        self._move_file(stage_fd, media_fd, entry.name, "/".join((*parts, entry.name)))
            for sub in subfolders:
                self._move_folder((*parts, sub), stage_fd, media_fd)
        finally:
            os.close(stage_fd)
            os.close(media_fd)

    def _move_folder(self, parts: tuple[str, ...], stage_parent: int, media_parent: int) -> None:
        sub, folder = parts[-1], "/".join(parts)
        stage_fd = os.open(sub, DIR_FLAGS | NOFOLLOW, dir_fd=stage_parent)
        while True:
            try:
                media_fd = os.open(sub, DIR_FLAGS | NOFOLLOW, dir_fd=media_parent)
                break
            except FileNotFoundError:
                pass
            except OSError as exc:
                os.close(stage_fd)
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not stat.S_ISLNK(os.stat(sub, dir_fd=media_parent, follow_symlinks=False).st_mode):
                    raise StorageError(
                        f"Could not restore the media files in {folder!r}: it is a file, not a folder. "
                        f"{self.written} file(s) were moved into place before; the others are as they were."
                    ) from exc
                for name in _files_below(stage_parent, sub, folder):  # a link appeared meanwhile
                    self._skip_link(name, folder)
                return
            files = sum(1 for _ in _files_below(stage_parent, sub, folder))
            try:
                if linux_fs.rename_noreplace(stage_parent, sub, media_parent, sub):
                    os.close(stage_fd)  # the whole folder is in place
                    self.written += files
                    return
                os.mkdir(sub, 0o777, dir_fd=media_parent)
            except FileExistsError:
                continue  # it appeared meanwhile: move file by file into it
            media_fd = os.open(sub, DIR_FLAGS | NOFOLLOW, dir_fd=media_parent)
            if self.directory_mode is not None:
                os.fchmod(media_fd, self.directory_mode)
            break
        self._move_tree(parts, stage_fd, media_fd)

    def _move_file(self, stage_fd: int, media_fd: int, base: str, name: str) -> None:
        try:
            outcome = self._publish(stage_fd, media_fd, base, name)
        except OSError as exc:
            raise StorageError(
                f"Could not restore the media file {name!r}: {exc.strerror or exc}. {self.written} "
                "file(s) were moved into place before this one; the others are as they were."
            ) from exc
        if outcome == WRITTEN:
            self.written += 1
        else:
            self.on_kept(name)

    def _publish(self, stage_fd: int, media_fd: int, base: str, name: str) -> str:
        """Move one staged file into the media folder: ``WRITTEN``, or ``KEPT`` when a file of
        that name appeared meanwhile and ``replace`` is off."""
        try:
            if self.replace:
                try:
                    os.replace(base, base, src_dir_fd=stage_fd, dst_dir_fd=media_fd)
                except IsADirectoryError as exc:
                    raise StorageError(
                        f"Could not restore the media file {name!r}: a folder of that name exists"
                    ) from exc
            else:
                try:  # a link, unlike a rename, never overwrites a file that appeared meanwhile
                    os.link(base, base, src_dir_fd=stage_fd, dst_dir_fd=media_fd, follow_symlinks=False)
                except FileExistsError:
                    return KEPT
                except OSError as exc:  # a file system without hard links
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    os.replace(base, base, src_dir_fd=stage_fd, dst_dir_fd=media_fd)
                else:
                    os.unlink(base, dir_fd=stage_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self._copy(stage_fd, media_fd, base, name)  # a mount point in the media folder
        return WRITTEN

    def _copy(self, stage_fd: int, media_fd: int, base: str, name: str) -> str:
        """Copy a staged file to another file system, through a temporary name there."""
        fd = os.open(base, os.O_RDONLY | NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=stage_fd)
        with open(fd, "rb") as handle:
            target = LocalTarget(self.storage, replace=self.replace, warn=self.warn)
            return target.write_in(media_fd, name, base, handle, os.fstat(fd).st_size)

    # -- cleaning up -----------------------------------------------------------------------

    def _close_current(self) -> None:
        for fd in (self._media_fd, self._stage_fd):
            if fd is not None:
                os.close(fd)
        self._media_fd = self._stage_fd = self._blocked = self._parts = None

    def close(self) -> None:
        """Remove the staging folder (whatever it still holds) and close every descriptor."""
        self._close_current()
        for fd in (self._fd, self._root_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._root_fd = None
        if self.folder is not None:
            try:
                shutil.rmtree(self.folder)
            except OSError as exc:
                logger.warning("Could not remove the staging folder %s: %s", self.folder, exc)
            self.folder = None


def _files_below(parent: int, sub: str, folder: str) -> Iterator[str]:
    """The names (below the media root) of the files staged in ``sub`` of ``parent``."""
    for root, _, files, _ in os.fwalk(sub, dir_fd=parent):
        prefix = folder + root[len(sub) :]
        for base in files:
            yield f"{prefix}/{base}"


def staging_supported(storage: DjangoStorage) -> bool:
    """Whether ``storage`` is restored through a staging folder: where media are written on disk
    (:func:`dbbackup.media_target.target_for` picks :class:`LocalTarget`)."""
    return is_local(storage) and has_dir_fd() and os.scandir in os.supports_fd
