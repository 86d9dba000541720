"""Writing restored media files so that each appears whole or not at all.

Every file is first written under a temporary name beside its real one,
``.NAME.dbbackup-partial-XXXXXXXX`` (hidden, and recognised by :func:`is_partial`), and takes
its real name only once complete. An existing file is never deleted or truncated before its
replacement is complete, so a restore that is killed, or that fills the disk, leaves every file
either as it was or as it is in the archive, never torn.

- :class:`LocalTarget` (a stock ``FileSystemStorage``) works on disk: the temporary file is
  written, flushed to disk (``fsync``, so that even a power cut cannot leave a renamed but
  empty file) and renamed over the old one (``rename`` is atomic). Folders are walked one
  component at a time without following symbolic links (``O_NOFOLLOW``), so a link already in
  the media folder can never carry a file outside it: a member under such a link is skipped
  with a warning. A file that is itself a link is replaced by a regular file (with ``-r``),
  never written through.
- :class:`StorageTarget` (any other storage) works through the storage API, which has no
  rename: the file is saved under the temporary name, then copied to the real name (a storage
  that overwrites, like S3, replaces the old object in one step; for one that would rename
  instead, the old file is deleted only now), then the temporary copy is deleted.

Temporary names left by a killed restore are removed by the next one (:meth:`prepare` for a
local folder, before each file for other storages) and never archived by ``mediabackup``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import posixpath
import secrets
import stat
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import Storage as DjangoStorage

from dbbackup import upload
from dbbackup.exceptions import CorruptBackupError, StorageError
from dbbackup.media_source import is_local, is_partial
from dbbackup.streams import CHUNK_SIZE

logger = logging.getLogger("dbbackup")

WRITTEN, KEPT, SKIPPED = "written", "kept", "skipped"

DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def partial_name(base: str, token: str) -> str:
    """The temporary name of the file ``base`` (a base name) while it is restored."""
    short = base.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")  # NAME_MAX is bytes
    return f".{short}.dbbackup-partial-{token}"


class ExactReader(io.RawIOBase):
    """A member's content as a read-only, non-seekable file of known size, for any storage;
    a tar error while reading it is a :class:`CorruptBackupError`."""

    def __init__(self, content: BinaryIO, size: int) -> None:
        self._content = content
        self.size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            if hasattr(self._content, "readinto"):  # tarfile's member files: no extra copy
                return self._content.readinto(buffer) or 0
            data = self._content.read(len(buffer))
        except tarfile.TarError as exc:
            raise CorruptBackupError(f"The media backup is damaged: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)


class StorageTarget:
    """Restored files written through a Django storage's API."""

    def __init__(self, storage: DjangoStorage, *, replace: bool, warn: Callable[[str], object]) -> None:
        self.storage = storage
        self.replace = replace
        self.warn = warn

    def prepare(self) -> int:
        """Remove what a killed restore left; the number of files removed."""
        return 0  # done file by file in write(): listing a remote storage costs a walk

    def write(self, name: str, content: BinaryIO, size: int) -> str:
        """Write one file; ``WRITTEN``, ``KEPT`` (exists, no replace) or ``SKIPPED``."""
        if is_partial(name):
            self.warn(f"Skipped {name}: the name of a restore's temporary file")
            return SKIPPED
        storage = self.storage
        try:
            exists = storage.exists(name)
            if exists and not self.replace:
                return KEPT
            folder, base = posixpath.split(name)
            # a name of its own per file, so a leftover of a killed restore is found and replaced
            temporary = posixpath.join(
                folder, partial_name(base, hashlib.sha256(name.encode()).hexdigest()[:8])
            )
            upload.discard(storage, temporary)
            try:
                # streamed, or spooled for media storages that seek (dbbackup.upload)
                saved = upload.save(storage, temporary, ExactReader(content, size))
                if saved != temporary:
                    storage.delete(saved)
                    raise StorageError(f"the media storage saved it as {saved!r} instead of {temporary!r}")
                outcome = self._move(temporary, name)
            finally:
                upload.discard(storage, temporary)
        except CorruptBackupError:
            raise
        except Exception as exc:  # any storage's error, named with the file it concerns
            raise StorageError(f"Could not restore the media file {name!r}: {exc}") from exc
        return outcome

    def _move(self, temporary: str, name: str) -> str:
        """Move (FTP, SFTP) or copy the complete temporary file to ``name``; ``WRITTEN`` or ``KEPT``."""
        storage = self.storage
        rename = upload.renamer(storage)
        if rename is not None:
            if storage.exists(name):
                if not self.replace:
                    return KEPT  # a file appeared meanwhile
                storage.delete(name)  # the new version is complete: the old one may go now
            rename(storage, temporary, name)
            return WRITTEN
        with storage.open(temporary, "rb") as handle:
            saved = storage.save(name, File(handle, name=name))
        if saved == name:
            return WRITTEN
        # the storage renamed instead of overwriting: the new version is complete, so the old
        # one may go now (with replace; without, a file that appeared meanwhile is kept)
        storage.delete(saved)
        if not self.replace:
            return KEPT
        storage.delete(name)
        with storage.open(temporary, "rb") as handle:
            saved = storage.save(name, File(handle, name=name))
        if saved != name:
            storage.delete(saved)
            raise StorageError(f"the media storage saved it as {saved!r} instead of replacing it")
        return WRITTEN


class ThroughLink(Exception):
    """A folder on the way to a restored file is a symbolic link (``folder``): never followed."""

    def __init__(self, folder: str) -> None:
        self.folder = folder


def open_folder_below(
    top: int, name: str, parts: list[str] | tuple[str, ...], *, create: bool, directory_mode: int | None
) -> int | None:
    """A new descriptor of the folder ``parts`` below the folder descriptor ``top``.

    Links are refused (:class:`ThroughLink`); a file where a folder should be is a
    :class:`StorageError` naming ``name``. A missing folder is created with ``create`` (and
    given ``directory_mode``), else ``None`` is returned. ``top`` stays open and the caller's.
    """
    fd = os.dup(top)
    try:
        for index, part in enumerate(parts):
            try:
                child = os.open(part, DIR_FLAGS | NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                child = os.open(part, DIR_FLAGS | NOFOLLOW, dir_fd=fd)
                if directory_mode is not None:
                    os.fchmod(child, directory_mode)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                folder = "/".join(parts[: index + 1])
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise ThroughLink(folder) from exc
                raise StorageError(
                    f"Could not restore the media file {name!r}: {folder!r} is a file, not a folder"
                ) from exc
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class LocalTarget(StorageTarget):
    """Restored files written straight into a ``FileSystemStorage`` folder."""

    def __init__(self, storage: DjangoStorage, *, replace: bool, warn: Callable[[str], object]) -> None:
        super().__init__(storage, replace=replace, warn=warn)
        self.root = storage.location
        self.file_mode = storage.file_permissions_mode
        self.directory_mode = storage.directory_permissions_mode

    def prepare(self) -> int:
        """Remove the temporary files a killed restore left anywhere in the folder."""
        removed = 0
        for folder, _, names in os.walk(self.root):  # does not follow links
            for base in names:
                if is_partial(base):
                    path = os.path.join(folder, base)
                    with contextlib.suppress(FileNotFoundError):
                        if stat.S_ISREG(os.lstat(path).st_mode):
                            os.unlink(path)
                            removed += 1
                            logger.info("Removed %s, left by an interrupted media restore", path)
        return removed

    def _open_folder(self, name: str, parts: list[str]) -> int:
        """A descriptor of the folder ``parts`` below the root, created as needed, links refused."""
        os.makedirs(self.root, exist_ok=True)
        root = os.open(self.root, DIR_FLAGS)
        try:
            folder = open_folder_below(root, name, parts, create=True, directory_mode=self.directory_mode)
        finally:
            os.close(root)
        assert folder is not None  # missing folders are created
        return folder

    def write(self, name: str, content: BinaryIO, size: int) -> str:
        if is_partial(name):
            self.warn(f"Skipped {name}: the name of a restore's temporary file")
            return SKIPPED
        *parts, base = name.split("/")
        try:
            try:
                folder = self._open_folder(name, parts)
            except ThroughLink as link:
                self.warn(
                    f"Skipped {name}: {link.folder} is a symbolic link in the media folder, not followed"
                )
                return SKIPPED
            try:
                return self.write_in(folder, name, base, content, size)
            finally:
                os.close(folder)
        except OSError as exc:
            raise StorageError(
                f"Could not restore the media file {name!r}: {exc.strerror or exc}; "
                "its previous version, if any, is unchanged."
            ) from exc

    def write_in(self, folder: int, name: str, base: str, content: BinaryIO, size: int) -> str:
        """Write ``base`` in the open ``folder`` through a temporary name: ``WRITTEN`` or ``KEPT``."""
        try:
            existing = os.stat(base, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise StorageError(f"Could not restore the media file {name!r}: a folder of that name exists")
            if not self.replace:
                return KEPT
        temporary = partial_name(base, secrets.token_hex(4))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temporary, flags, 0o666, dir_fd=folder)
        try:
            with open(fd, "wb") as out:  # buffered: a short write(2) is retried, then raises
                source = ExactReader(content, size)
                remaining = size
                while remaining:
                    chunk = source.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        raise CorruptBackupError(f"The media backup ends inside {name!r}")
                    out.write(chunk)
                    remaining -= len(chunk)
                out.flush()
                if self.file_mode is not None:
                    os.fchmod(out.fileno(), self.file_mode)
                os.fsync(out.fileno())
            # the rename needs no fsync of the folder: until it is on disk, the old name still
            # leads to the old, untouched file
            outcome = self._publish(folder, temporary, base, replace_existing=existing is not None)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=folder)
        return outcome

    def _publish(self, folder: int, temporary: str, base: str, *, replace_existing: bool) -> str:
        """Give the complete temporary file its real name."""
        if replace_existing:
            os.replace(temporary, base, src_dir_fd=folder, dst_dir_fd=folder)
            return WRITTEN
        try:  # a link, unlike a rename, never overwrites a file that appeared meanwhile
            os.link(temporary, base, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        except FileExistsError:
            if not self.replace:
                return KEPT
            os.replace(temporary, base, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError as exc:  # a file system without hard links
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            os.replace(temporary, base, src_dir_fd=folder, dst_dir_fd=folder)
        return WRITTEN


def has_dir_fd() -> bool:
    needed = (os.open, os.stat, os.mkdir, os.unlink, os.rename, os.link)  # os.replace is os.rename
    return NOFOLLOW != 0 and all(function in os.supports_dir_fd for function in needed)


def target_for(storage: DjangoStorage, *, replace: bool, warn: Callable[[str], object]) -> StorageTarget:
    """The writer for ``storage``: on disk for a stock ``FileSystemStorage`` (where the
    platform can open files relative to a folder without following links), else its API."""
    cls = LocalTarget if is_local(storage) and has_dir_fd() else StorageTarget
    return cls(storage, replace=replace, warn=warn)
