"""Putting a verified scratch database in place of the live file with one rename, when that is safe.

A SQLite restore builds and checks a scratch database beside the live one (see
:mod:`dbbackup.db.sqlite`). Copying it in with SQLite's backup API is always correct, but it
writes the database twice (the old pages go to a rollback journal first). A rename is one
atomic metadata operation, but a process that still has the old file open would go on reading
and writing the old, unlinked file and lose its writes. So :func:`swap_in` renames only when
the kernel proves that **no process at all has the live file open**, and leaves everything as
it was (returning ``False``) otherwise, so that the caller copies with the backup API instead.

The rule, step by step (Linux; elsewhere :func:`swap_in` always returns ``False``):

1. The scratch file is in the live file's directory, and holds all its data (no ``-wal`` or
   ``-journal`` with content). If there is no live file (and no ``-wal``, ``-journal`` or
   ``-shm`` of one), the scratch file is linked in under its name (``os.link``, which fails if
   another process created the file meanwhile), with the mode SQLite would give it, and that is
   all. Otherwise the live file must be a regular file with one link (a hard link elsewhere
   would keep the old data under another name), on the same file system as the scratch file,
   and the scratch file gets its mode, owner and group (or no rename).
2. If a ``-wal`` or ``-journal`` file lies beside it, one short SQLite connection settles it
   first: a hot journal is rolled back and the write-ahead log checkpointed into the file, so
   that removing them later loses nothing.
3. A write **lease** (``fcntl(F_SETLEASE, F_WRLCK)``) is taken on the live file. The kernel
   grants it only when no other open file description exists for that file, in any process
   (Django's connection in this process is closed beforehand by the caller; another alias,
   thread or process with a connection, even an idle one, makes the lease fail). While it is
   held, anyone who opens the file waits. The lease break signal is set to ``SIGURG``, which
   is ignored unless a handler is installed, instead of the default ``SIGIO``, which would kill
   this process.
4. Under the lease: a non-empty ``-wal`` or a journal with a live header (something wrote since
   step 2) means no rename. Otherwise the now-empty or cold ``-wal``, ``-shm`` and ``-journal``
   are removed, *before* the rename: a stale log next to the new file would be replayed into it.
5. The scratch file (already ``fsync``-ed) is renamed over the live file (``os.replace``).
6. The old file, now unlinked and held only by the lease's descriptor, has its header
   overwritten, so that a process whose ``open()`` was blocked by the lease (it looked the name
   up before the rename) gets "file is not a database" instead of a private copy of the old data.
7. The lease is released, and the directory is ``fsync``-ed so that the rename is durable.

A kill at any point leaves the live file either as it was (before step 5) or fully restored
(after it); the scratch file is then swept by a later run (:mod:`dbbackup.leftovers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import stat

from dbbackup.linux_fs import fsync_directory

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("dbbackup.command")

#: What the old file's first bytes become after the rename (SQLite needs "SQLite format 3\0").
POISON = b"dbbackup: replaced by a restore; reopen the database\n".ljust(100, b"\0")
_SIDECARS = ("-wal", "-journal", "-shm")


def can_lease() -> bool:
    """Whether this platform offers file leases (Linux)."""
    return fcntl is not None and hasattr(fcntl, "F_SETLEASE") and hasattr(fcntl, "F_SETSIG")


def swap_in(scratch: str, target: str, timeout: float = 5.0) -> bool:
    """Rename the checked scratch database ``scratch`` over the live database ``target``.

    Returns ``True`` once the rename is done (and durable), ``False`` when the rule in the
    module docstring does not allow it; then nothing was changed but sidecar files settled by
    SQLite itself (step 2). The caller must have closed its own connections to ``target``.
    """
    if not can_lease():
        return False
    target = os.path.realpath(target)
    beside = os.path.dirname(os.path.realpath(scratch)) == os.path.dirname(target)
    if not beside or not _scratch_is_whole(scratch):
        return False
    try:
        scratch_stat = os.stat(scratch)
        before = os.stat(target, follow_symlinks=False)
    except FileNotFoundError:
        return _link_in(scratch, target)
    except OSError:
        return False
    if not (stat.S_ISREG(before.st_mode) and before.st_nlink == 1 and before.st_dev == scratch_stat.st_dev):
        return False
    try:
        _take_over_permissions(scratch, scratch_stat, before)
        _settle(target, timeout)
        _fsync_path(scratch)
        descriptor = os.open(target, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except (OSError, sqlite3.Error) as exc:
        logger.debug("Restoring %s by copy, not rename: %s", target, exc)
        return False
    try:
        opened = os.fstat(descriptor)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            return False  # replaced meanwhile
        try:
            fcntl.fcntl(descriptor, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as exc:  # EAGAIN: open elsewhere; EACCES/EINVAL: no leases here
            logger.debug("Restoring %s by copy, not rename: the file is in use (%s)", target, exc)
            return False
        try:
            if not _clear_sidecars(target):
                return False
            try:
                os.replace(scratch, target)
            except OSError as exc:
                logger.debug("Restoring %s by copy, not rename: %s", target, exc)
                return False
            with contextlib.suppress(OSError):
                os.pwrite(descriptor, POISON, 0)
        finally:
            with contextlib.suppress(OSError):
                fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    finally:
        os.close(descriptor)
    fsync_directory(os.path.dirname(target))
    return True


def _link_in(scratch: str, target: str) -> bool:
    """No live file: give the scratch file the name ``target``, unless one appears meanwhile.

    ``os.link`` fails rather than replace a file that another process just created; the new
    file gets the mode SQLite would create it with (0644 less the umask). Leftover ``-wal`` or
    ``-journal`` files of a deleted database leave the job to SQLite (no rename).
    """
    if any(os.path.lexists(target + suffix) for suffix in _SIDECARS):
        return False
    try:
        os.chmod(scratch, 0o644 & ~_umask())
        _fsync_path(scratch)
        os.link(scratch, target)
    except OSError as exc:
        logger.debug("Restoring %s by copy, not rename: %s", target, exc)
        return False
    fsync_directory(os.path.dirname(target))
    return True


def _umask() -> int:
    """This process's umask, read without changing it (``/proc``; 0o077 if unknown)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o077


def _scratch_is_whole(scratch: str) -> bool:
    """The scratch database is all in its file: no write-ahead log or journal with content."""
    for suffix in ("-wal", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(scratch + suffix):
                return False
    return True


def _take_over_permissions(scratch: str, scratch_stat: os.stat_result, live: os.stat_result) -> None:
    """Give the scratch file the live file's mode, owner and group; ``OSError`` if impossible."""
    if (scratch_stat.st_uid, scratch_stat.st_gid) != (live.st_uid, live.st_gid):
        os.chown(scratch, live.st_uid, live.st_gid)
    os.chmod(scratch, stat.S_IMODE(live.st_mode))


def _settle(target: str, timeout: float) -> None:
    """Let SQLite roll back a hot journal and checkpoint a write-ahead log beside ``target``."""
    if not any(os.path.exists(target + suffix) for suffix in ("-wal", "-journal")):
        return
    connection = sqlite3.connect(target, timeout=timeout, isolation_level=None)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()


def _clear_sidecars(target: str) -> bool:
    """Remove empty or cold ``-wal``/``-shm``/``-journal`` files; ``False`` if one holds data."""
    for suffix in ("-wal", "-journal"):
        try:
            with open(target + suffix, "rb") as handle:
                head = handle.read(28)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if suffix == "-wal" and head:
            return False  # written since it was checkpointed
        if suffix == "-journal" and head[:8].strip(b"\0"):
            return False  # a journal with a live header may be hot
    for suffix in _SIDECARS:
        try:
            os.unlink(target + suffix)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def _fsync_path(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
