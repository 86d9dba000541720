"""How sizes and progress are shown to people: binary units, and a one-line progress bar.

The bar needs nothing but the terminal: it rewrites one line (``\\r``) at most ten times a
second with what has passed so far, the throughput and the elapsed time, in the units
``listbackups`` uses, and ends the line when it is closed.
"""

from __future__ import annotations

import time
from typing import TextIO

#: How often the bar redraws, at most.
REDRAW_SECONDS = 0.1


def human_size(size: int | float | None) -> str:
    """Bytes in binary units with one decimal, as django-dbbackup writes them (``112.0 KiB``)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


#: Binary units from the largest down, as django-dbbackup's ``bytes_to_str`` picks them.
_UNITS_DOWN = (
    ("PiB", 1024**5),
    ("TiB", 1024**4),
    ("GiB", 1024**3),
    ("MiB", 1024**2),
    ("KiB", 1024),
    ("B", 1),
)


def size_in_unit(size: int | float, decimals: int = 1) -> str:
    """``size`` bytes in the largest binary unit it reaches, rounded to ``decimals``.

    The exact text of django-dbbackup's ``bytes_to_str``: Python's ``round()`` printed as is
    (``112.3 KiB``, ``2.0 GiB``, ``1.01 B``), a whole number with ``decimals=0`` (``1 B``),
    and the value unchanged below one byte (``0 B``).
    """
    for unit, factor in _UNITS_DOWN:
        if size >= factor:
            value = round(size / factor, decimals)
            return f"{int(value) if decimals == 0 else value} {unit}"
    return f"{size} B"


def elapsed_text(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """A one-line progress display on a terminal stream.

    Call :meth:`update` with each number of bytes (or other ``unit``) that passed, and
    :meth:`close` at the end; ``update`` is cheap enough to call for every chunk.
    """

    def __init__(self, description: str, stream: TextIO, *, unit: str = "bytes") -> None:
        self.description = description
        self.stream = stream
        self.unit = unit
        self.done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0
        self._draw()

    def update(self, amount: int) -> None:
        self.done += amount
        if time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._draw()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def text(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0
        if self.unit == "bytes":
            amount, speed = human_size(self.done), f"{human_size(rate)}/s"
        else:
            amount, speed = f"{self.done} {self.unit}", f"{rate:.0f}/s"
        return f"{self.description}: {amount} at {speed}, {elapsed_text(elapsed)}"

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        line = self.text()
        padding = " " * max(0, self._width - len(line))  # wipe the end of a longer previous line
        self._width = len(line)
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
