"""File-system calls for durable renames: ``syncfs`` and ``renameat2``, two Linux calls that
Python's ``os`` module lacks, and the ``fsync`` of a folder that makes a rename in it durable.

The Linux calls go through ``ctypes`` on the C library. Where a call does not exist (another platform, an
old C library) or the file system refuses it, the functions say so (``False``) and the caller
falls back to portable calls; they never pretend to have done the work.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from typing import Any

#: ``renameat2`` flag: fail with ``EEXIST`` instead of replacing an existing target.
RENAME_NOREPLACE = 1


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _function(name: str) -> Any:
    return getattr(_libc(), name, None) if _libc() is not None else None


def has_syncfs() -> bool:
    """Whether :func:`syncfs` can flush one file system here."""
    return _function("syncfs") is not None


def syncfs(fd: int) -> bool:
    """Flush to disk everything written to the file system that holds ``fd``.

    ``False`` when the call does not exist here; an :class:`OSError` when the kernel reports a
    write error (Linux 5.8 and later report the file system's writeback errors).
    """
    function = _function("syncfs")
    if function is None:
        return False
    if function(ctypes.c_int(fd)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return True


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> bool:
    """Rename ``src`` (in folder ``src_dir_fd``) to ``dst`` (in ``dst_dir_fd``) unless ``dst``
    exists: :class:`FileExistsError` then, whatever ``dst`` is (an empty folder included,
    which a plain rename would replace).

    ``False`` when renaming without replacing is not available here (no ``renameat2``, or a
    file system that does not support the flag); nothing was renamed then.
    """
    function = _function("renameat2")
    if function is None:
        return False
    result = function(
        ctypes.c_int(src_dir_fd),
        os.fsencode(src),
        ctypes.c_int(dst_dir_fd),
        os.fsencode(dst),
        ctypes.c_uint(RENAME_NOREPLACE),
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), src)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the renames and new names in ``directory`` durable (``fsync`` of the folder).

    Some file systems and platforms cannot open or flush a folder; that is not an error: the
    rename is then as durable as the system makes it.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
