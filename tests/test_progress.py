"""The progress bar, seen through a real pseudo-terminal; and its absence elsewhere."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_on_a_terminal(tmp_path, *args):
    """Run ``django-admin <args>`` with stderr on a pseudo-terminal; return what it showed."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DBBACKUP_TEST_DIR": str(tmp_path)}
    env["PYTHONPATH"] = str(ROOT)
    primary, secondary = pty.openpty()
    # A terminal emulator gives its terminal a size; a bare pty has 0 columns.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    shown = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        shown += chunk
    process.communicate(timeout=60)
    os.close(primary)
    return process.returncode, shown.decode("utf-8", "replace")


@pytest.mark.parametrize("command", [["dbbackup", "-d", "default"], ["dbbackup", "-d", "default", "-z"]])
def test_a_terminal_gets_a_progress_bar(tmp_path, command):
    returncode, shown = run_on_a_terminal(tmp_path, *command)
    assert returncode == 0, shown
    assert "dbbackup default:" in shown  # the bar's description
    assert "B/s" in shown  # throughput
    assert "00:00" in shown  # elapsed time


def test_quiet_means_no_bar_even_on_a_terminal(tmp_path):
    returncode, shown = run_on_a_terminal(tmp_path, "dbbackup", "-d", "default", "-q")
    assert returncode == 0, shown
    assert shown == ""


def test_no_terminal_no_bar(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DBBACKUP_TEST_DIR": str(tmp_path)}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "django", "dbbackup", "-d", "default"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "B/s" not in result.stderr
    assert "Backed up 'default'" in result.stderr


def test_a_failure_exits_non_zero_for_cron(tmp_path):
    returncode, shown = run_on_a_terminal(tmp_path, "dbrestore", "-d", "default", "--noinput")
    assert returncode == 1
    assert "CommandError: There is no backup" in shown


def test_mediarestore_shows_a_bar_too(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(b"\xff" * 300_000)
    returncode, shown = run_on_a_terminal(tmp_path, "mediabackup", "-q")
    assert returncode == 0, shown
    returncode, shown = run_on_a_terminal(tmp_path, "mediarestore", "--noinput", "-r")
    assert returncode == 0, shown
    assert "mediarestore:" in shown
    assert "300.0 KiB at " in shown
