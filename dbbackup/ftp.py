"""What the storage wrapper does differently for django-storages' ``FTPStorage``.

Downloads: the file is read as a stream over its own FTP connection. ``FTPStorage.open()``
reads the whole file into memory first, so a restore would need memory as large as the backup.

Uploads go through :mod:`dbbackup.upload`: ``FTPStorage`` reopens what it uploads, so backups
are spooled, written under a hidden partial name and renamed when complete.
"""

from __future__ import annotations

import copy
import ftplib
import io
import posixpath
import sys
from typing import Any, BinaryIO

from dbbackup.exceptions import BackupNotFoundError, StorageError


def is_ftp(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' FTPStorage (its module imported already)."""
    module = sys.modules.get("storages.backends.ftp")
    return module is not None and isinstance(storage, module.FTPStorage)


class _Download(io.RawIOBase):
    """The data connection of one ``RETR``, on a connection of its own (closed with it)."""

    def __init__(self, connection: ftplib.FTP, data) -> None:
        self._connection = connection
        self._data = data
        self._complete = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            count = self._data.recv_into(buffer)
            if count == 0 and not self._complete:
                self._complete = True
                self._connection.voidresp()  # 226: the server sent the whole file
        except ftplib.all_errors as exc:
            raise StorageError(f"The FTP download broke off: {exc}") from exc
        return count

    def close(self) -> None:
        if not self.closed:
            try:
                self._data.close()
                self._connection.close()
            finally:
                super().close()


def open_stream(storage: Any, name: str) -> BinaryIO:
    """The file's content as a stream (close it when done)."""
    own = copy.copy(storage)  # the same settings, a connection of its own
    own._connection = None
    try:
        own._start_connection()
        connection = own._connection
        directory = posixpath.dirname(name)
        if directory:
            connection.cwd(directory)
        connection.voidcmd("TYPE I")
        data = connection.transfercmd("RETR " + posixpath.basename(name))
    except ftplib.error_perm as exc:
        if own._connection is not None:
            own._connection.close()
        raise BackupNotFoundError(f"There is no file {name!r} on the FTP server: {exc}") from exc
    except Exception as exc:
        if own._connection is not None:
            own._connection.close()
        raise StorageError(f"Could not read {name!r} from the FTP server: {exc}") from exc
    return io.BufferedReader(_Download(connection, data), buffer_size=1024 * 1024)
