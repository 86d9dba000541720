"""Backups in a local folder: written under a private hidden name beside their target, then linked.

A backup in a ``FileSystemStorage`` is never visible half-written, never readable by others and
never written over another file. :class:`LocalPartial` owns the whole life of the hidden file:

1. the folders on the way to the target are created, each 0700 (or the storage's
   ``directory_permissions_mode``);
2. ``.<name>.partial-<owner>-<random>`` (:func:`dbbackup.leftovers.partial_name`) is created
   beside the target, exclusively and 0600, so the data is private from its first byte, listings
   never take it for a backup, and the file of a killed run is swept by a later one;
3. it is filled: a stream is copied into it (:meth:`LocalPartial.write_stream`), or something
   that can only write to a path (SQLite's backup API) writes it and :meth:`LocalPartial.seal`
   reads it back for its size and SHA-256; either way it is ``fsync``-ed;
4. :meth:`LocalPartial.publish` applies the storage's ``file_permissions_mode``, if one is set,
   and hard-links the file to its final name. A link never replaces an existing file, so a
   backup that appeared meanwhile is kept (the caller's ``on_conflict`` may give another name);
   the hidden name is then removed and the folder synced, so the new name is durable;
5. leaving the ``with`` block removes the hidden name whatever happened.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.core.files.storage import FileSystemStorage

from dbbackup import leftovers, linux_fs
from dbbackup.exceptions import StorageError
from dbbackup.streams import CHUNK_SIZE, copy_to_file

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
#: How much of a filled file :func:`seal` hashes at a time (and reports to ``on_bytes``).
SEAL_CHUNK = 4 * CHUNK_SIZE


@dataclass(frozen=True)
class FileDigest:
    """The size and SHA-256 of a file's bytes, as :class:`dbbackup.streams.DigestReader` gives them."""

    size: int
    sha256: str


def create_hidden(target: Path) -> tuple[Path, int]:
    """Create the hidden private (0600) file that ``target`` is written to; ``(path, descriptor)``.

    The name records this process as its owner (:mod:`dbbackup.leftovers`); the file is created
    exclusively, so it is new and empty, and the caller owns the descriptor.
    """
    hidden = target.parent / leftovers.partial_name(target.name)
    return hidden, os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)


def write_synced(descriptor: int, stream: BinaryIO) -> None:
    """Copy ``stream`` to its end into the file open as ``descriptor``, ``fsync`` it, close it."""
    with os.fdopen(descriptor, "wb") as handle:
        copy_to_file(stream, handle)
        handle.flush()
        os.fsync(handle.fileno())


def seal(path: Path, on_bytes: Callable[[int], object] | None = None) -> FileDigest:
    """Read a filled file to its end for its size and SHA-256, while it is ``fsync``-ed.

    The digest is that of the bytes on disk once the writer closed the file, exactly what a
    reader of the published file gets; ``on_bytes(n)`` is called as they are hashed. The
    ``fsync`` runs on a worker thread meanwhile (both release the GIL); its error, if any, is
    raised here.
    """
    descriptor = os.open(path, os.O_RDONLY)
    failures: list[BaseException] = []

    def sync() -> None:
        try:
            os.fsync(descriptor)
        except BaseException as exc:  # handed to the caller below
            failures.append(exc)

    try:
        syncing = threading.Thread(target=sync, name="dbbackup-fsync")
        syncing.start()
        try:
            digest, size = hashlib.sha256(), 0
            buffer = bytearray(SEAL_CHUNK)
            view = memoryview(buffer)
            with open(descriptor, "rb", buffering=0, closefd=False) as handle:
                while count := handle.readinto(buffer):
                    digest.update(view[:count])
                    size += count
                    if on_bytes is not None:
                        on_bytes(count)
        finally:
            syncing.join()
    finally:
        os.close(descriptor)
    if failures:
        raise failures[0]
    return FileDigest(size=size, sha256=digest.hexdigest())


class LocalPartial:
    """The hidden file a backup named ``filename`` in ``storage`` is written to; see the module.

    Creating one makes the folders and the empty hidden file (:attr:`path`). Use it as a
    context manager: the hidden name is removed on the way out, whatever happened.
    ``file_mode`` is the mode the project chose for the storage (``None``: it stays 0600);
    ``on_conflict(name)`` gives the name to try when another file took ``name`` meanwhile
    (``None``: :class:`StorageError`); ``label`` names the storage in messages.
    """

    def __init__(
        self,
        storage: FileSystemStorage,
        filename: str,
        *,
        file_mode: int | None,
        on_conflict: Callable[[str], str] | None,
        label: str,
    ) -> None:
        self._storage = storage
        self.filename = filename
        self._file_mode = file_mode
        self._on_conflict = on_conflict
        self._label = label
        target = Path(storage.path(filename))
        _make_directories(target.parent, getattr(storage, "directory_permissions_mode", None))
        self.path, self._descriptor = create_hidden(target)
        self._synced = False

    def __enter__(self) -> LocalPartial:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close_descriptor()
        self.path.unlink(missing_ok=True)

    def _close_descriptor(self) -> None:
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)

    def write_stream(self, stream: BinaryIO) -> None:
        """Copy ``stream`` to its end into the file, and ``fsync`` it."""
        descriptor, self._descriptor = self._descriptor, None
        write_synced(descriptor, stream)
        self._synced = True

    def fill(
        self, writer: Callable[[str], None], on_bytes: Callable[[int], object] | None = None
    ) -> FileDigest:
        """Let ``writer(path)`` write the (empty) file by its path, then :func:`seal` it.

        ``writer`` must have closed every handle on the file when it returns.
        """
        self._close_descriptor()
        writer(str(self.path))
        digest = seal(self.path, on_bytes)
        self._synced = True
        return digest

    def publish(self) -> str:
        """Give the filled, synced file its final name; return that name (see the module)."""
        if not self._synced:
            raise RuntimeError("LocalPartial.publish() before the file was written and synced")
        if self._file_mode is not None:  # the final mode, before the name appears
            os.chmod(self.path, self._file_mode)
        filename = self.filename
        target = Path(self._storage.path(filename))
        for _ in range(10):
            try:
                os.link(self.path, target)
                break
            except FileExistsError as exc:
                taken, filename = filename, self._on_conflict(filename) if self._on_conflict else filename
                if filename == taken:  # a name the user chose is never changed
                    raise StorageError(
                        f"{taken!r} already exists in {self._label}; it was not overwritten."
                    ) from exc
                target = Path(self._storage.path(filename))
        else:
            raise StorageError(f"No free name for the backup in {self._label} after ten tries.")
        self.path.unlink(missing_ok=True)
        linux_fs.fsync_directory(target.parent)
        self.filename = filename
        return filename


def _make_directories(directory: Path, mode: int | None) -> None:
    """Create ``directory`` and the missing folders above it, each with ``mode`` (0700 if None)."""
    mode = mode or PRIVATE_DIRECTORY_MODE
    for folder in reversed([directory, *directory.parents]):
        if folder.exists():
            continue
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue  # a concurrent run made it a moment ago
        os.chmod(folder, mode)  # mkdir's mode is filtered by the umask
