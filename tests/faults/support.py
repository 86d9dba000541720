"""What the fault tests share: fingerprints, debris and secret scans, child commands, killing.

Every fault test follows one shape: take a fingerprint of the database (or media), inject a
fault (kill a process by PID, damage a file, fill a disk, hold a lock), then assert that the
fingerprint is unchanged (or fully restored), that nothing which looks like a backup was left
behind, and that no secret reached the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings as django_settings

from tests.helpers import columns, rows

ROOT = Path(__file__).resolve().parents[2]


def fingerprint(alias: str) -> str:
    """A hash of every table's columns and rows on any engine: equal means nothing changed."""
    data = {"columns": columns(alias), "rows": rows(alias)}
    return hashlib.sha256(repr(data).encode()).hexdigest()


def tree_fingerprint(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (relative path -> SHA-256 of its bytes)."""
    result = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink():
            result[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


#: Name fragments of what dbbackup writes while it works: partial uploads, scratch databases,
#: option files. None of them may outlive a run.
DEBRIS_MARKERS = (".partial", ".dbbackup-", "-journal", ".conf")


def debris(*directories: Path | str, allowed: Iterable[str] = ()) -> list[str]:
    """Files under ``directories`` that a finished or killed run must not leave behind."""
    allowed = set(allowed)
    found = []
    for directory in directories:
        for path in Path(directory).rglob("*"):
            if path.is_file() and path.name not in allowed and any(m in path.name for m in DEBRIS_MARKERS):
                found.append(str(path))
    return sorted(found)


def files_containing(secret: str, *directories: Path | str) -> list[str]:
    """Files under ``directories`` whose bytes contain ``secret``."""
    needle = secret.encode()
    found = []
    for directory in directories:
        for path in Path(directory).rglob("*"):
            try:
                if path.is_file() and needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def child_settings(**overrides: object) -> dict[str, object]:
    """The settings a child command needs to work on this test's databases and storages."""
    names = ["DATABASES", "STORAGES", "MEDIA_ROOT"]
    names += [name for name in dir(django_settings) if name.startswith("DBBACKUP_")]
    values = {name: getattr(django_settings, name) for name in names if hasattr(django_settings, name)}
    values.update(overrides)
    return json.loads(json.dumps(values, default=str))


def start_command(*argv: str, settings: dict | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start ``manage.py <argv>`` in a child process on this test's databases and storages.

    The child gets its own process group, so a test can kill it and every tool it started.
    """
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.faults.child_settings",
        "DBBACKUP_CHILD_SETTINGS": json.dumps(settings if settings is not None else child_settings()),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", *argv],
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def run_command(*argv: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``manage.py <argv>`` in a child process to its end; see :func:`start_command`."""
    proc = start_command(*argv, **kwargs)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def descendants(pid: int) -> list[tuple[int, str]]:
    """``(pid, command name)`` of every live process below ``pid``.

    Zombies (exited, not yet reaped: no command line any more) are not live: a test looking for
    the loader must not pick the ``mysql --help`` probe that just ended.
    """
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    zombies: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        children.setdefault(int(parent), []).append(int(entry.name))
        if state == "Z":
            zombies.add(int(entry.name))
        names[int(entry.name)] = name
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in zombies:
                found.append((child, names[child]))
            todo.append(child)
    return found


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "a condition") -> object:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_tool(parent: subprocess.Popen, tool: str, timeout: float = 30) -> int:
    """The PID of the first process named ``tool`` below ``parent``, once it runs."""

    def find() -> int | None:
        if parent.poll() is not None:
            raise AssertionError(f"the command ended ({parent.returncode}) before {tool} started")
        return next((pid for pid, name in descendants(parent.pid) if name == tool), None)

    return wait_for(find, timeout, f"{tool} to start")


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to one process we started (never to a process group we do not own)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def reap(proc: subprocess.Popen, timeout: float = 60) -> int:
    """Wait for a child command and every tool it started to be gone; return its exit status."""
    pids = [pid for pid, _ in descendants(proc.pid)]
    returncode = proc.wait(timeout=timeout)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout, "the tools to exit")
    return returncode


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m"):
    """Mount a small tmpfs at ``path`` (a full or read-only disk on demand); skip if we cannot.

    Yields a function that remounts it read-only. Unmounted (lazily) whatever happens.
    """
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def readonly() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)

    try:
        yield readonly
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
