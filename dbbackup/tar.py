"""Tar archives of media, written and read as streams.

Writing: :func:`stream_tar` yields a tar archive (PAX format, as Python's tarfile writes by
default) member by member, reading each file from a Django storage only when its turn comes.
Members are the storage names relative to its root, regular files only, mode 0644, owner 0,
mtime 0: the layout django-dbbackup writes, so archives restore with either tool.

Reading: :func:`iter_members` walks an archive stream (no seeking) and
:func:`check_member` refuses anything that could write outside the media storage or is not
plain data: absolute names, ``..`` components, links pointing outside, devices and FIFOs.
"""

from __future__ import annotations

import logging
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.core.files.storage import Storage as DjangoStorage

from dbbackup.exceptions import CorruptBackupError, DbbackupError
from dbbackup.streams import CHUNK_SIZE

logger = logging.getLogger("dbbackup")

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


class UnsafeArchiveError(DbbackupError):
    """An archive member could write outside the media storage, or is not plain data."""


class MediaChangedError(DbbackupError):
    """A media file changed size while it was being archived."""


def walk_storage(storage: DjangoStorage, path: str = "") -> Iterator[str]:
    """Every file name below ``path`` in a Django storage, in a stable (sorted) order."""
    try:
        directories, files = storage.listdir(path)
    except FileNotFoundError:
        return
    for name in sorted(files):
        yield posixpath.join(path, name) if path else name
    for directory in sorted(directories):
        yield from walk_storage(storage, posixpath.join(path, directory) if path else directory)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def stream_tar(storage: DjangoStorage, names: Iterable[str]) -> Iterator[bytes]:
    """The tar archive of ``names`` from ``storage``, as chunks of bytes."""
    written = 0
    for name in names:
        try:
            handle = storage.open(name, "rb")
        except FileNotFoundError:
            logger.warning("Skipped media file %s: it was deleted while the backup ran", name)
            continue
        with handle:
            size = handle.size if handle.size is not None else storage.size(name)
            header = _header(name, size)
            yield header
            remaining = size
            while remaining:
                chunk = handle.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise MediaChangedError(
                        f"The media file {name!r} shrank while it was archived; run the backup again."
                    )
                remaining -= len(chunk)
                yield chunk
            if handle.read(1):
                raise MediaChangedError(
                    f"The media file {name!r} grew while it was archived; run the backup again."
                )
        padding = -size % BLOCK
        yield b"\0" * padding
        written += len(header) + size + padding
    end = b"\0" * (2 * BLOCK)
    written += len(end)
    yield end + b"\0" * (-written % RECORD)


@dataclass(frozen=True)
class Member:
    """A regular file of an archive, with a stream of its content (valid until the next one)."""

    name: str
    size: int
    content: BinaryIO


def check_member(info: tarfile.TarInfo) -> str | None:
    """Why ``info`` must not be restored, or ``None`` when it is a safe file or directory."""
    name = info.name
    parts = name.split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
        return "its name is absolute"
    if ".." in parts:
        return "its name climbs out of the media folder with '..'"
    if info.issym() or info.islnk():
        target = info.linkname
        base = posixpath.dirname(name) if info.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"it is a link to {target!r}, outside the media folder"
        return None
    if info.ischr() or info.isblk():
        return "it is a device file"
    if info.isfifo():
        return "it is a FIFO"
    if not (info.isfile() or info.isdir()):
        return "it is not a regular file"
    return None


def _open(stream: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK_SIZE)
    except tarfile.TarError as exc:
        raise CorruptBackupError(f"The media backup is not a tar archive: {exc}") from exc


def iter_members(stream: BinaryIO) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Every member of the archive in ``stream``, in order; tar errors become corruption errors."""
    archive = _open(stream)
    try:
        for info in archive:
            yield info, archive
    except (tarfile.TarError, EOFError) as exc:
        raise CorruptBackupError(f"The media backup is damaged: {exc}") from exc
    finally:
        archive.close()


def scan(stream: BinaryIO) -> tuple[int, list[str]]:
    """Read a whole archive: the number of files, and the links that will not be restored.

    Raises :class:`UnsafeArchiveError` naming the first unsafe member, and
    :class:`CorruptBackupError` for a damaged archive. Reads ``stream`` to its end, so the
    stages before it verify their checksums too.
    """
    files, skipped = 0, []
    for info, archive in iter_members(stream):
        problem = check_member(info)
        if problem:
            raise UnsafeArchiveError(
                f"The media backup holds an unsafe member {info.name!r}: {problem}. Nothing was restored."
            )
        if info.isfile():
            files += 1
            content = archive.extractfile(info)
            while content.read(CHUNK_SIZE):  # read through: the tar checks its own structure
                pass
        elif info.issym() or info.islnk():
            skipped.append(info.name)
    while stream.read(CHUNK_SIZE):  # the zero records after the end marker
        pass
    return files, skipped


def files(stream: BinaryIO) -> Iterator[Member]:
    """The regular files of an archive, with their content, for writing back."""
    for info, archive in iter_members(stream):
        problem = check_member(info)  # checked in the first pass too; the archive may not change
        if problem:
            raise UnsafeArchiveError(
                f"The media backup changed between reads: member {info.name!r}: {problem}."
            )
        if info.isfile() and info.name != "media":  # django-dbbackup skips a top-level "media"
            yield Member(info.name, info.size, archive.extractfile(info))
