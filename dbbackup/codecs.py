"""Compression stages, in one table keyed by file suffix.

A codec wraps a readable stream: ``compress(stream)`` yields the compressed bytes and
``decompress(stream)`` the original ones. Decompression recognises the format by its magic
bytes, so a backup restores whether or not ``-z`` was given; a name whose suffix promises a
format the bytes do not have is refused as :class:`~dbbackup.exceptions.CorruptBackupError`.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from dbbackup import settings
from dbbackup.exceptions import CorruptBackupError
from dbbackup.streams import PeekableReader, WrappedReader


class GzipCompressor(WrappedReader):
    """Compresses its input into one standard gzip member (RFC 1952)."""

    def __init__(self, inner: BinaryIO, level: int) -> None:
        super().__init__(inner)
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._done = False

    def _read(self, size: int) -> bytes:
        while not self._done:
            data = self.inner.read(size)
            if data:
                out = self._compressor.compress(data)
            else:
                out = self._compressor.flush()
                self._done = True
            if out:
                return out
        return b""


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


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str
    magic: bytes

    def compress(self, stream: BinaryIO) -> BinaryIO:
        return GzipCompressor(stream, level=settings.get("GZIP_LEVEL"))

    def decompress(self, stream: BinaryIO, label: str) -> BinaryIO:
        return GzipDecompressor(stream, label)


CODECS: dict[str, Codec] = {
    "gzip": Codec(name="gzip", suffix="gz", magic=b"\x1f\x8b"),
}


def by_name(name: str) -> Codec:
    """The codec called ``name``; a configuration error names the choices otherwise."""
    try:
        return CODECS[name]
    except KeyError:
        from dbbackup.exceptions import DbbackupConfigurationError

        raise DbbackupConfigurationError(
            f"Unknown compression {name!r}; choose one of {', '.join(CODECS)}."
        ) from None


def detect(stream: PeekableReader) -> Codec | None:
    """The codec whose magic bytes start ``stream``, without consuming them."""
    head = stream.peek(4)
    for codec in CODECS.values():
        if head.startswith(codec.magic):
            return codec
    return None


def open_decompressed(stream: BinaryIO, *, label: str, expected: str | None) -> tuple[BinaryIO, Codec | None]:
    """Wrap ``stream`` in the decompressor its magic bytes call for.

    ``expected`` is the compression the file's name announces (``"gzip"`` for ``.gz``) or
    ``None``; a mismatch with the bytes raises :class:`CorruptBackupError`.
    """
    peekable = PeekableReader(stream)
    codec = detect(peekable)
    if expected is not None and (codec is None or codec.name != expected):
        raise CorruptBackupError(
            f"{label} is named as {expected}-compressed, but its content is not {expected}."
        )
    if codec is None:
        return peekable, None
    return codec.decompress(peekable, label), codec
