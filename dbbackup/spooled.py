"""Spooled temporary files, as django-dbbackup's file helpers return them.

A spooled file stays in memory up to ``DBBACKUP_TMP_FILE_MAX_SIZE`` bytes and moves to a private
file in ``DBBACKUP_TMP_DIR`` beyond that. The backup pipeline itself streams and never uses
them; they exist for code written against ``dbbackup.utils``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import BinaryIO

from dbbackup import settings


def spooled_copy(source: BinaryIO | None = None, path: str | None = None) -> tempfile.SpooledTemporaryFile:
    """A new spooled file holding ``source`` (read from its start) or the file at ``path``.

    With neither, the file is empty. As in django-dbbackup, the returned file is left positioned
    at the end of what was copied: seek to 0 before reading it.
    """
    # Returned open to the caller, who closes it.
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=settings.TMP_FILE_MAX_SIZE, dir=settings.TMP_DIR
    )
    if path:
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, spool, settings.TMP_FILE_READ_SIZE)
    elif source is not None:
        _rewind(source)
        shutil.copyfileobj(source, spool, settings.TMP_FILE_READ_SIZE)
    return spool


class _Borrowed:
    """Reads a caller's stream for a wrapper that would otherwise close it when done."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)

    def close(self) -> None:
        """The stream belongs to the caller: left open."""


def borrowed(stream: BinaryIO) -> BinaryIO:
    """``stream`` rewound to its start (when it can seek), to be read but never closed."""
    _rewind(stream)
    return _Borrowed(stream)  # type: ignore[return-value]


def _rewind(stream: BinaryIO) -> None:
    """Seek ``stream`` to its start if it can (``SpooledTemporaryFile`` has no ``seekable()``
    before Python 3.11, so asking is not enough: try)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stream.seek(0)
