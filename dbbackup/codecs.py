"""Compression stages, in one table keyed by name and file suffix.

``codec.compress(stream)`` and ``codec.decompress(stream, label)`` wrap readable streams.
Decompression recognises the format by its magic bytes, so a backup restores whether or not
``-z`` was given; a name whose suffix promises a format the bytes do not have is refused as
:class:`~dbbackup.exceptions.CorruptBackupError`, and so is a truncated or damaged stream.

* gzip: one standard gzip member, compressed pigz-style in blocks on several threads (zlib
  releases the GIL), each block primed with the 32 KiB before it. Any gzip reader, including
  django-dbbackup's, reads it. Level ``DBBACKUP_GZIP_LEVEL`` (6).
* zstd: needs the ``zstandard`` package (``pip install "django-dbbackup-ng[zstd]"``). Level
  ``DBBACKUP_ZSTD_LEVEL`` (3), multi-threaded. django-dbbackup cannot read it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from dbbackup import settings
from dbbackup.exceptions import CorruptBackupError, DbbackupConfigurationError, DbbackupImproperlyInstalled
from dbbackup.streams import CHUNK_SIZE, PeekableReader, WrappedReader

GZIP_BLOCK_SIZE = 1024 * 1024
#: zstd's job size with several threads: 2 MiB jobs keep its buffers ~12 MB smaller than 4 MiB
#: ones for the same speed and output size (level 3, 2 threads).
ZSTD_JOB_SIZE = 2 * 1024 * 1024
_DEFLATE_WINDOW = 32 * 1024


def compression_threads() -> int:
    """``DBBACKUP_COMPRESSION_THREADS``, or one per CPU."""
    return max(1, int(settings.COMPRESSION_THREADS or os.cpu_count() or 1))


#: zlib's default memory level, as gzip and pigz use: level 9 costs some 10 % more CPU time for
#: the same levels and about the same output.
_DEFLATE_MEMLEVEL = 8


def _deflate_block(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    if dictionary:
        compressor = zlib.compressobj(
            level, zlib.DEFLATED, -15, _DEFLATE_MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, _DEFLATE_MEMLEVEL)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class GzipCompressor(WrappedReader):
    """Compresses its input into one gzip member (RFC 1952), blocks deflated in parallel."""

    def __init__(self, inner: BinaryIO, level: int, threads: int) -> None:
        super().__init__(inner)
        self._level = level
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dbbackup-gzip")
        self._in_flight: deque[Future] = deque()
        self._max_in_flight = threads * 2
        self._crc = 0
        self._size = 0
        self._held: bytes | None = None  # the block read last, submitted once we know if it ends
        self._dictionary = b""
        self._input_done = False
        self._output = bytearray(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # header, mtime 0
        self._trailer_written = False

    def _submit(self, block: bytes, last: bool) -> None:
        self._in_flight.append(self._pool.submit(_deflate_block, block, self._dictionary, self._level, last))
        self._dictionary = block[-_DEFLATE_WINDOW:]

    def _read_block(self) -> bytes:
        """A full block (fewer bytes only at the end): the stage before may hand out small
        pieces (a tool's pipe, one SQL line), which would make tiny, poorly compressed blocks."""
        block = bytearray()
        while len(block) < GZIP_BLOCK_SIZE:
            piece = self.inner.read(GZIP_BLOCK_SIZE - len(block))
            if not piece:
                break
            block += piece
        return bytes(block)

    def _fill(self) -> None:
        while not self._input_done and len(self._in_flight) < self._max_in_flight:
            block = self._read_block()
            if block:
                self._crc = zlib.crc32(block, self._crc)
                self._size += len(block)
                if self._held is not None:
                    self._submit(self._held, last=False)
                self._held = block
            else:
                self._input_done = True
                self._submit(self._held or b"", last=True)
                self._held = None

    def _read(self, size: int) -> bytes:
        while not self._output:
            self._fill()
            if self._in_flight:
                self._output += self._in_flight.popleft().result()
            elif not self._trailer_written:
                self._output += struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
                self._trailer_written = True
            else:
                return b""
        data = bytes(self._output[:size])
        del self._output[:size]
        return data

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


class GzipDecompressor(WrappedReader):
    """Decompresses gzip (several members too), checking CRCs and refusing truncation."""

    def __init__(self, inner: BinaryIO, label: str) -> None:
        super().__init__(inner)
        self._gzip = gzip.GzipFile(fileobj=inner, mode="rb")
        self.label = label

    def _read(self, size: int) -> bytes:
        try:
            return self._gzip.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptBackupError(f"{self.label} is not a valid gzip stream: {exc}") from exc

    def close(self) -> None:
        self._gzip.close()
        super().close()


def _zstandard():
    try:
        import zstandard
    except ImportError:
        raise DbbackupImproperlyInstalled(
            missing_package="zstandard", extra="zstd", purpose="zstd compression"
        ) from None
    return zstandard


class ZstdCompressor(WrappedReader):
    """Compresses its input into one zstd frame, on several threads."""

    def __init__(self, inner: BinaryIO, level: int, threads: int) -> None:
        super().__init__(inner)
        zstandard = _zstandard()
        # Small jobs keep the worker threads' buffers (and so memory) small, one worker too: with
        # zstd's default jobs (8 MiB at level 3) a single worker took some 45 MB more.
        parameters = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, job_size=ZSTD_JOB_SIZE, write_checksum=True
        )
        compressor = zstandard.ZstdCompressor(compression_params=parameters)
        self._reader = compressor.stream_reader(inner, read_size=CHUNK_SIZE, closefd=False)

    def _read(self, size: int) -> bytes:
        return self._reader.read(size)


class ZstdFrameWalker:
    """Follows the structure of zstd frames (headers and block sizes) without decoding them.

    ``python-zstandard`` ends a truncated stream silently; this tells whether the bytes seen
    so far end exactly at a frame boundary.
    """

    MAGIC = 0xFD2FB528

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self._state = "frame"  # frame | block | checksum
        self._checksum = False

    @property
    def at_boundary(self) -> bool:
        return self._state == "frame" and not self._buffer and self._skip == 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                continue
            needed = self._needed()
            missing = needed - len(self._buffer)
            self._buffer += view[:missing]
            view = view[missing:]
            if len(self._buffer) >= needed and self._needed() == len(self._buffer):
                self._consume()

    def _needed(self) -> int:
        buffer = self._buffer
        if self._state == "block":
            return 3
        if self._state == "checksum":
            return 4
        if len(buffer) < 5:
            return 5 if len(buffer) >= 4 and self._is_frame_magic() else max(len(buffer) + 1, 4)
        if not self._is_frame_magic():
            return 8  # skippable frame: magic and a 4-byte size
        descriptor = buffer[4]
        single_segment = descriptor & 0x20
        fcs = (0, 2, 4, 8)[descriptor >> 6] or (1 if single_segment else 0)
        return 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03] + fcs

    def _is_frame_magic(self) -> bool:
        return struct.unpack("<I", bytes(self._buffer[:4]))[0] == self.MAGIC

    def _consume(self) -> None:
        buffer = bytes(self._buffer)
        self._buffer.clear()
        if self._state == "frame":
            magic = struct.unpack("<I", buffer[:4])[0]
            if magic == self.MAGIC:
                self._checksum = bool(buffer[4] & 0x04)
                self._state = "block"
            elif 0x184D2A50 <= magic <= 0x184D2A5F:
                self._skip = struct.unpack("<I", buffer[4:8])[0]
            else:
                raise CorruptBackupError("the data is not a zstd stream")
        elif self._state == "block":
            header = int.from_bytes(buffer, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise CorruptBackupError("a zstd block has a reserved type")
            self._skip = 1 if kind == 1 else size
            if last:
                self._state = "checksum" if self._checksum else "frame"
        else:
            self._state = "frame"


class _FrameCheckedReader(WrappedReader):
    def __init__(self, inner: BinaryIO, label: str) -> None:
        super().__init__(inner)
        self.walker = ZstdFrameWalker()
        self.label = label

    def _read(self, size: int) -> bytes:
        data = self.inner.read(size)
        try:
            if data:
                self.walker.feed(data)
            elif not self.walker.at_boundary:
                raise CorruptBackupError("it ends in the middle of a frame: it is truncated")
        except CorruptBackupError as exc:
            raise CorruptBackupError(f"{self.label} is not a valid zstd stream: {exc}") from None
        return data


class ZstdDecompressor(WrappedReader):
    """Decompresses zstd (several frames too), refusing truncated or damaged input."""

    def __init__(self, inner: BinaryIO, label: str) -> None:
        super().__init__(inner)
        zstandard = _zstandard()
        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _FrameCheckedReader(inner, label), read_size=CHUNK_SIZE, read_across_frames=True, closefd=False
        )
        self.label = label

    def _read(self, size: int) -> bytes:
        try:
            return self._reader.read(size)
        except self._error as exc:
            raise CorruptBackupError(f"{self.label} is not a valid zstd stream: {exc}") from exc


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str
    magic: bytes
    level_setting: str
    levels: range

    def check(self) -> None:
        """Raise a configuration error when this codec cannot run as configured."""
        level = settings.get(self.level_setting)
        if isinstance(level, bool) or not isinstance(level, int) or level not in self.levels:
            raise DbbackupConfigurationError(
                f"DBBACKUP_{self.level_setting} must be a whole number from {self.levels.start} to "
                f"{self.levels.stop - 1}, not {level!r}."
            )
        threads = settings.COMPRESSION_THREADS
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise DbbackupConfigurationError(
                f"DBBACKUP_COMPRESSION_THREADS must be a positive whole number or None, not {threads!r}."
            )
        if self.name == "zstd":
            _zstandard()

    def compress(self, stream: BinaryIO) -> BinaryIO:
        if self.name == "zstd":
            return ZstdCompressor(stream, settings.ZSTD_LEVEL, compression_threads())
        return GzipCompressor(stream, settings.GZIP_LEVEL, compression_threads())

    def decompress(self, stream: BinaryIO, label: str) -> BinaryIO:
        if self.name == "zstd":
            return ZstdDecompressor(stream, label)
        return GzipDecompressor(stream, label)


CODECS: dict[str, Codec] = {
    "gzip": Codec(name="gzip", suffix="gz", magic=b"\x1f\x8b", level_setting="GZIP_LEVEL", levels=range(10)),
    "zstd": Codec(
        name="zstd", suffix="zst", magic=b"\x28\xb5\x2f\xfd", level_setting="ZSTD_LEVEL", levels=range(-7, 23)
    ),
}


def by_name(name: str) -> Codec:
    """The codec called ``name``, checked to be usable; a configuration error otherwise."""
    try:
        codec = CODECS[name]
    except KeyError:
        raise DbbackupConfigurationError(
            f"Unknown compression {name!r}; choose one of {', '.join(CODECS)}."
        ) from None
    codec.check()
    return codec


def detect(stream: PeekableReader) -> Codec | None:
    """The codec whose magic bytes start ``stream``, without consuming them."""
    head = stream.peek(4)
    for codec in CODECS.values():
        if head.startswith(codec.magic):
            return codec
    return None


def open_decompressed(
    stream: BinaryIO, *, label: str, expected: str | None, sniff: bool = True
) -> tuple[BinaryIO, Codec | None]:
    """Wrap ``stream`` in the decompressor its magic bytes call for.

    ``expected`` is the compression the file's name (or sidecar) announces, or ``None``; a
    mismatch with the bytes raises :class:`CorruptBackupError`. With ``sniff=False`` nothing
    is decompressed unless ``expected`` says so (the sidecar knows, the bytes only suggest).
    """
    peekable = stream if isinstance(stream, PeekableReader) else PeekableReader(stream)
    codec = detect(peekable)
    if not sniff and expected is None:
        return peekable, None
    if expected is not None and (codec is None or codec.name != expected):
        raise CorruptBackupError(
            f"{label} is named as {expected}-compressed, but its content is not {expected}."
        )
    if codec is None:
        return peekable, None
    return codec.decompress(peekable, label), codec
