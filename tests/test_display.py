"""Sizes and the progress bar, as people see them."""

import io

import pytest

from dbbackup import display


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (115_000, "112.3 KiB"),
        (5 << 30, "5.0 GiB"),
    ],
)
def test_human_size_uses_binary_units_like_listbackups(size, text):
    assert display.human_size(size) == text


@pytest.mark.parametrize(("seconds", "text"), [(0, "00:00"), (61.9, "01:01"), (3725, "1:02:05")])
def test_elapsed_text(seconds, text):
    assert display.elapsed_text(seconds) == text


def test_the_bar_rewrites_one_line_and_ends_it(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = display.ProgressBar("dbbackup default", out)
    now[0] = 0.05
    bar.update(1024)  # too soon after the first drawing: not redrawn
    now[0] = 2.0
    bar.update(2 * 1024 * 1024 - 1024)
    bar.close()
    shown = out.getvalue()
    assert shown.count("\r") == 3
    assert shown.endswith("\n")
    last = shown.rstrip("\n").rsplit("\r", 1)[-1]
    assert last.startswith("dbbackup default: 2.0 MiB at 1.0 MiB/s, 00:02")


def test_a_shorter_line_wipes_the_end_of_the_longer_one_before_it():
    out = io.StringIO()
    bar = display.ProgressBar("x", out, unit="files")
    bar.done = 10**12
    bar._draw()
    long_width = len(bar.text())
    bar.done = 1
    bar._draw()
    assert len(out.getvalue().rsplit("\r", 1)[-1]) >= long_width
