"""A FileSystemStorage that hands out its files slowly, so a fault test can strike mid-stream.

Used by child commands through ``STORAGES["dbbackup"]["BACKEND"]``; ``OPTIONS`` may set
``chunk`` (bytes per read), ``delay`` (seconds per read) and ``lines`` (cut every read after
its last newline, so that a tool downstream only ever holds whole lines of a SQL dump: a kill
then leaves it at a statement or COPY row boundary, the worst case for EOF-as-commit) besides
``location``.
"""

from __future__ import annotations

import io
import time

from django.core.files import File
from django.core.files.storage import FileSystemStorage


class _SlowReader(io.RawIOBase):
    def __init__(self, inner, chunk: int, delay: float, lines: bool) -> None:
        self._inner, self._chunk, self._delay, self._lines = inner, chunk, delay, lines
        self._held = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        time.sleep(self._delay)
        size = min(len(buffer), self._chunk)
        data = self._held + self._inner.read(max(0, size - len(self._held)))
        cut = len(data)
        if self._lines and b"\n" in data and not data.endswith(b"\n"):
            cut = data.rindex(b"\n") + 1
        data, self._held = data[:cut], data[cut:]
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class ThrottledStorage(FileSystemStorage):
    def __init__(self, *args, chunk: int = 64 * 1024, delay: float = 0.02, lines: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk, self.delay, self.lines = chunk, delay, lines

    def _open(self, name, mode="rb"):
        handle = open(self.path(name), "rb")  # noqa: SIM115 - closed with the File
        return File(_SlowReader(handle, self.chunk, self.delay, self.lines), name=name)
