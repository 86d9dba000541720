"""Tar archives of media, written and read as streams.

Writing: :func:`stream_tar` yields a tar archive (PAX format, as Python's tarfile writes by
default) member by member, reading each file from a media source
(:mod:`dbbackup.media_source`) only when its turn comes, in chunks of one size (1 MiB).
Members are the storage names relative to its root, regular files only, mode 0644, owner 0,
mtime 0: the layout django-dbbackup writes, so archives restore with either tool.

Reading: :func:`iter_members` walks an archive stream (no seeking, and without keeping the
members it has passed: a million members cost no more memory than ten), and
:func:`check_member` refuses anything that could write outside the media storage or is not
plain data: absolute names, ``..`` components, links pointing outside, devices and FIFOs.
Member names are normalised first (:func:`member_name`), so the ``./``-prefixed names GNU tar
writes (``tar -C media -cf x.tar .``) restore like any other.
"""

from __future__ import annotations

import functools
import io
import logging
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dbbackup.exceptions import CorruptBackupError, DbbackupError
from dbbackup.media_source import StorageSource
from dbbackup.streams import CHUNK_SIZE

logger = logging.getLogger("dbbackup")

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(BLOCK)
#: ``tarfile``'s read buffer in stream mode. Each small read (a 512-byte header) copies what is
#: left of the buffer, so a large one costs: at 1 MiB, reading 6,000 members took 4x the CPU.
TAR_BUFFER = 64 * 1024


class UnsafeArchiveError(DbbackupError):
    """An archive member could write outside the media storage, or is not plain data."""


class MediaChangedError(DbbackupError):
    """A media file changed size while it was being archived."""


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


@functools.lru_cache(maxsize=1)
def _template() -> tuple[bytes, int]:
    """One ustar block as tarfile writes it for a short ASCII name, with the name, size and
    checksum fields blank (checksum as spaces), and the sum of its bytes."""
    block = bytearray(_tarfile_header("x", 0))
    block[0:100] = bytes(100)
    block[124:136] = bytes(12)
    block[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
    return bytes(block), sum(block)


def _header(name: str, size: int) -> bytes:
    """The header of a member, byte for byte what ``tarfile`` writes in PAX format.

    Most names are ASCII and at most 100 characters: tarfile then writes a single ustar block,
    which is built here from a template (building it through ``tarfile`` cost about a sixth of
    an uncompressed backup's CPU). Other names and sizes go through ``tarfile`` (a pax record
    carries them).
    """
    if len(name) > 100 or size >= 8**11 or not name.isascii():
        return _tarfile_header(name, size)
    template, checksum = _template()
    encoded = name.encode("ascii")
    size_field = b"%011o\0" % size
    checksum += sum(encoded) + sum(size_field)
    return b"".join(
        (
            encoded.ljust(100, b"\0"),
            template[100:124],
            size_field,
            template[136:148],
            b"%06o\0" % checksum,
            template[155:],
        )
    )


class _Packer:
    """Packs the pieces of the archive into chunks of one fixed size (the last one shorter).

    A member is three pieces (header, content, padding) and most media files are small, so
    handing each piece on by itself made some 18,000 pieces for 6,000 files, each a hop
    through the queues of the stages after it (thread switches, locks, small writes); packed,
    that archive is 290 pieces of 1 MiB. File contents are read straight into the chunk.
    """

    def __init__(self, size: int) -> None:
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._filled = 0
        self.total = 0  #: bytes packed so far

    def take(self) -> bytes:
        """The bytes packed since the last ``take``; the chunk is then empty again."""
        chunk = bytes(self._view[: self._filled])
        self._filled = 0
        return chunk

    @property
    def full(self) -> bool:
        return self._filled == len(self._buffer)

    def add(self, data: bytes) -> list[bytes]:
        """Pack ``data``; the chunks it filled, to be handed on in order (usually none)."""
        end = self._filled + len(data)
        if end < len(self._buffer):  # most pieces fit (and leave room): one copy, no chunk
            self._view[self._filled : end] = data
            self._filled = end
            self.total += len(data)
            return []
        filled = []
        start = 0
        while start < len(data):
            if self.full:
                filled.append(self.take())
            count = min(len(data) - start, len(self._buffer) - self._filled)
            self._view[self._filled : self._filled + count] = data[start : start + count]
            self._filled += count
            start += count
        self.total += len(data)
        return filled

    def add_file(self, handle: BinaryIO, size: int, name: str) -> Iterator[bytes]:
        """Pack exactly ``size`` bytes of ``handle``, yielding each chunk they fill.

        Raises :class:`MediaChangedError` when the file ends before ``size`` bytes or goes on
        after them: it changed while it was archived.
        """
        # A raw stream (the local source's files) reads straight into the chunk. Other storages'
        # file objects are read through read(): their readinto() may bypass how they load data
        # (django-storages' FTP file reads an empty buffer until read() is called).
        readinto = handle.readinto if isinstance(handle, io.RawIOBase) else None
        remaining = size
        while remaining:
            if self.full:
                yield self.take()
            room = self._view[self._filled : self._filled + min(remaining, len(self._buffer) - self._filled)]
            if readinto is not None:
                count = readinto(room)
            else:
                data = handle.read(len(room))
                count = len(data)
                room[:count] = data
            if not count:
                raise MediaChangedError(
                    f"The media file {name!r} shrank while it was archived; run the backup again."
                )
            self._filled += count
            remaining -= count
        if handle.read(1):
            raise MediaChangedError(
                f"The media file {name!r} grew while it was archived; run the backup again."
            )
        self.total += size


def stream_tar(
    source: StorageSource, on_added: Callable[[str], object] | None = None, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The tar archive of every file ``source`` lists, as chunks of ``chunk_size`` bytes (the
    last one shorter).

    ``on_added`` is called with each name once its member is complete in the archive (it may
    still wait in the current chunk): files the source skips (deleted meanwhile, not regular,
    links leaving the folder) are not counted.
    """
    packer = _Packer(chunk_size)
    try:
        for name in source.names():
            opened = source.open(name)
            if opened is None:
                continue
            handle, size = opened
            with handle:
                yield from packer.add(_header(name, size))
                yield from packer.add_file(handle, size, name)
            yield from packer.add(_ZEROS[: -size % BLOCK])
            if on_added is not None:
                on_added(name)
    finally:
        source.close()
    end = 2 * BLOCK
    yield from packer.add(bytes(end + (-(packer.total + end) % RECORD)))
    if last := packer.take():
        yield last


@dataclass(frozen=True)
class Member:
    """A regular file of an archive, with a stream of its content (valid until the next one)."""

    name: str
    size: int
    content: BinaryIO


def member_name(info: tarfile.TarInfo) -> str:
    """The storage name of a member: ``./`` prefixes, ``.`` and empty components removed.

    GNU tar writes ``./uploads/a.jpg`` (and ``./`` for the root folder itself); this is
    ``uploads/a.jpg`` (and ``""``). ``..`` components are kept, for :func:`check_member` to refuse.
    """
    return "/".join(part for part in info.name.split("/") if part not in ("", "."))


def check_member(info: tarfile.TarInfo) -> str | None:
    """Why ``info`` must not be restored, or ``None`` when it is a safe file or directory."""
    raw = info.name
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or "\\" in raw:
        return "its name is absolute"
    name = member_name(info)
    if ".." in name.split("/"):
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
    if info.isfile() and not name:
        return "it is a file without a name"
    return None


def _open(stream: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=stream, mode="r|", bufsize=TAR_BUFFER)
    except tarfile.TarError as exc:
        raise CorruptBackupError(f"The media backup is not a tar archive: {exc}") from exc


def iter_members(stream: BinaryIO) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Every member of the archive in ``stream``, in order; tar errors become corruption errors.

    ``tarfile`` remembers every member it has read (``TarFile.members``); in a stream that
    list only grows, so it is emptied as the walk goes: memory stays flat however many members.
    """
    archive = _open(stream)
    try:
        while True:
            info = archive.next()
            if info is None:
                break
            archive.members.clear()
            yield info, archive
    except (tarfile.TarError, EOFError) as exc:
        raise CorruptBackupError(f"The media backup is damaged: {exc}") from exc
    finally:
        archive.close()


def scan(stream: BinaryIO, on_link: Callable[[str], object] | None = None) -> tuple[int, int]:
    """Read a whole archive: the number of files, and of links that will not be restored.

    ``on_link`` is called with the name of each such link, as it is met. Raises
    :class:`UnsafeArchiveError` naming the first unsafe member, and
    :class:`CorruptBackupError` for a damaged archive. Reads ``stream`` to its end, so the
    stages before it verify their checksums too. Nothing is kept per member.
    """
    files = links = 0
    for info, archive in iter_members(stream):
        problem = check_member(info)
        if problem:
            raise UnsafeArchiveError(_refusal(info, problem))
        if info.isfile():
            files += 1
            content = archive.extractfile(info)
            while content.read(CHUNK_SIZE):  # read through: the tar checks its own structure
                pass
        elif info.issym() or info.islnk():
            links += 1
            if on_link is not None:
                on_link(member_name(info))
    while stream.read(CHUNK_SIZE):  # the zero records after the end marker
        pass
    return files, links


def _refusal(info: tarfile.TarInfo, problem: str) -> str:
    return f"The media backup holds an unsafe member {info.name!r}: {problem}. Nothing was restored."


def files(
    stream: BinaryIO, on_link: Callable[[str], object] | None = None, *, checked: bool = True
) -> Iterator[Member]:
    """The regular files of an archive, with their content, for writing back.

    Names are normalised (:func:`member_name`); ``on_link`` is called for each link skipped.
    Every member is checked (:func:`check_member`); ``checked`` says whether a first pass
    (:func:`scan`) already did, which only changes the words of the error: with a first
    pass, an unsafe member here means the backup changed between the reads.
    """
    for info, archive in iter_members(stream):
        problem = check_member(info)
        if problem:
            raise UnsafeArchiveError(
                f"The media backup changed between reads: member {info.name!r}: {problem}."
                if checked
                else _refusal(info, problem)
            )
        name = member_name(info)
        if info.isfile() and name != "media":  # django-dbbackup skips a top-level "media"
            yield Member(name, info.size, archive.extractfile(info))
        elif (info.issym() or info.islnk()) and on_link is not None:
            on_link(name)
