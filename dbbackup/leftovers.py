"""What a killed run leaves behind, and how a later run clears it without touching a live one.

A run that is killed (SIGKILL, OOM killer, power loss) cannot clean up: a hidden partial upload
(``.NAME.partial-…``) stays in the storage or beside a ``-O`` file, and a SQLite scratch database
(``.dbbackup-….sqlite3`` with its ``-journal``) stays in ``DBBACKUP_TMP_DIR`` or beside the
database. Every such name carries its **owner**: ``<host>-<pid>-<start>``, where ``host`` is a
digest of the kernel's boot id and the PID namespace, ``pid`` the writing process and ``start``
its start time (in clock ticks since boot, from ``/proc``). A later run removes a leftover when

* it was written on this host, in this boot and PID namespace, and its owner process is gone
  (no process with that PID, or one started at another time: the PID was reused); or
* its owner cannot be checked from here (another host sharing the storage, a previous boot, a
  name without an owner written by an older version) and it was last modified more than
  ``DBBACKUP_LEFTOVER_MAX_AGE`` seconds ago (24 hours unless set; ``None`` never sweeps those).

Folders are owned the same way: a media restore stages its files in
``MEDIA_ROOT/.dbbackup-restore-<owner>-<random>/`` and a media drill extracts into
``.dbbackup-drill-<owner>-<random>/``; :func:`sweep_folders` removes those of dead owners.

So a file a live run is writing is never removed, on this host or another (as long as no run
takes longer than the age limit). Sweeping never fails the run that sweeps: a file that cannot
be removed is logged and left.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import posixpath
import re
import secrets
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from dbbackup import names, settings

if TYPE_CHECKING:
    from dbbackup.storage import Storage

logger = logging.getLogger("dbbackup.leftovers")

#: Scratch databases: ``.dbbackup-<owner>-<random>.sqlite3`` and SQLite's files beside them.
SCRATCH_PREFIX = ".dbbackup-"
_SCRATCH = re.compile(r"^\.dbbackup-.*\.sqlite3(-journal|-wal|-shm)?$")
#: ``-O`` files written by dbbackup before owners were recorded (``.NAME.xxxxxxxx.partial``).
_OLD_LOCAL_PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")
_OWNER = re.compile(r"(?P<host>[0-9a-f]{12})-(?P<pid>\d+)-(?P<start>\d+)-")
#: What follows the partial marker: an owner, or (older versions) 32 hex digits.
_PARTIAL_TAIL = re.compile(r"([0-9a-f]{12}-\d+-\d+-|[0-9a-f]{32})")
_UNKNOWN_HOST = "0" * 12


@functools.lru_cache(maxsize=1)
def _host_id() -> str:
    """This boot of this kernel, in this PID namespace (PIDs mean the same thing within it)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return _UNKNOWN_HOST  # no /proc: owners are never checked, only ages
    return hashlib.sha256(f"{boot}\n{namespace}".encode()).hexdigest()[:12]


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot; ``None`` if there is no such
    process, or only its corpse (a zombie writes nothing any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X", "x") else fields[19]


def owner() -> str:
    """This process as the owner of the files it writes: ``<host>-<pid>-<start>``."""
    pid = os.getpid()
    return f"{_host_id()}-{pid}-{_start_time(pid) or 0}"


def partial_name(name: str) -> str:
    """The hidden temporary name under which ``name`` is written before it is published.

    ``dir/NAME`` becomes ``dir/.NAME.partial-<owner>-<random>``; listings never show it as a
    backup, and :func:`sweep_storage` and :func:`sweep_directory` know when it is stale.
    """
    directory, base = posixpath.split(name)
    return posixpath.join(directory, f".{base}{names.PARTIAL_MARKER}{owner()}-{uuid.uuid4().hex[:8]}")


def scratch_prefix() -> str:
    """The ``tempfile`` prefix of a scratch database this process creates."""
    return f"{SCRATCH_PREFIX}{owner()}-"


def folder_name(prefix: str) -> str:
    """A new name for a private working folder: ``<prefix><owner>-<random>`` (see
    :func:`sweep_folders`)."""
    return f"{prefix}{owner()}-{secrets.token_hex(4)}"


def sweep_folders(directory: str | os.PathLike[str], prefix: str) -> list[str]:
    """Remove the folders named by :func:`folder_name` with ``prefix`` directly in ``directory``
    whose owner is gone (or, when it cannot be checked, that are older than the age limit).

    Links are never followed (``shutil.rmtree`` removes a link, not what it points to). A
    folder that cannot be removed is logged and left. Returns the paths removed.
    """
    removed = []
    try:
        with os.scandir(directory) as scan:
            entries = [entry for entry in scan if entry.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if not is_stale(entry.name[len(prefix) :], entry.stat(follow_symlinks=False).st_mtime):
                continue
            shutil.rmtree(entry.path)
        except FileNotFoundError:
            continue  # another run swept it first
        except OSError as exc:
            logger.warning("Could not remove the leftover folder %s: %s", entry.path, exc)
            continue
        logger.info("Removed the folder %s, left behind by a run that was killed", entry.path)
        removed.append(entry.path)
    return removed


def is_leftover(base: str) -> bool:
    """Whether a file name (no folders) is one of dbbackup's temporary files."""
    if not base.startswith("."):
        return False
    if names.PARTIAL_MARKER in base:
        return bool(_PARTIAL_TAIL.match(base.rsplit(names.PARTIAL_MARKER, 1)[1]))
    return bool(_SCRATCH.match(base) or _OLD_LOCAL_PARTIAL.match(base))


def max_age() -> float | None:
    value = settings.LEFTOVER_MAX_AGE
    if value is None:
        return None
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def is_stale(base: str, modified: float | None, now: float | None = None) -> bool:
    """Whether the leftover ``base`` (a file name) can be removed: see the module docstring."""
    tail = base.rsplit(names.PARTIAL_MARKER, 1)[1] if names.PARTIAL_MARKER in base else base
    found = _OWNER.match(tail) if names.PARTIAL_MARKER in base else _OWNER.search(tail)
    if found and found["host"] == _host_id() != _UNKNOWN_HOST:
        pid, start = int(found["pid"]), found["start"]
        if pid == os.getpid():
            return False
        current = _start_time(pid)
        return current is None or (start != "0" and current != start)
    limit = max_age()
    if limit is None or modified is None:
        return False
    return (time.time() if now is None else now) - modified > limit


def sweep_directory(directory: str | os.PathLike[str]) -> list[str]:
    """Remove the stale leftovers directly in a local ``directory``; return their paths."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not is_leftover(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if is_stale(entry.name, entry.stat(follow_symlinks=False).st_mtime):
                os.unlink(entry.path)
                removed.append(entry.path)
        except FileNotFoundError:
            continue  # another run swept it first
        except OSError as exc:
            logger.warning("Could not remove the leftover %s: %s", entry.path, exc)
    for path in removed:
        logger.info("Removed %s, left behind by a run that was killed", path)
    return removed


def sweep_storage(storage: Storage) -> list[str]:
    """Remove the stale partial uploads in the backup storage; return their names.

    Any storage that can list its files works; where the storage cannot say when a file was
    modified, only partials whose owner is provably gone are removed.
    """
    removed = []
    try:
        candidates = [name for name in storage.walk() if is_leftover(posixpath.basename(name))]
    except Exception as exc:  # listing may be unsupported or fail: sweeping is best effort
        logger.warning("Could not look for leftover partial files in %s: %s", storage, exc)
        return removed
    for name in candidates:
        base = posixpath.basename(name)
        modified = None
        with contextlib.suppress(Exception):
            modified = storage.storage.get_modified_time(name).timestamp()
        if not is_stale(base, modified):
            continue
        try:
            storage.storage.delete(name)
        except Exception as exc:
            logger.warning("Could not remove the leftover %s from %s: %s", name, storage, exc)
            continue
        logger.info("Removed %s from %s, left behind by a run that was killed", name, storage)
        removed.append(name)
    return removed
