"""dbbackup: back up and restore a Django project's databases and media.

A drop-in replacement for django-dbbackup 5.x: the same settings, commands, signals,
connector paths and file formats, with streamed, verified backups underneath.

The Python API mirrors the commands and sends the same signals (with the command classes as
senders unless you pass ``sender=``)::

    import dbbackup

    result = dbbackup.backup("default", compression="zstd")      # BackupResult
    dbbackup.restore("default", input_filename=result.filename)  # RestoreResult
    dbbackup.media_backup(compress=True)                         # MediaBackupResult
    dbbackup.media_restore(replace=True)                         # MediaRestoreResult
    dbbackup.list_backups(content_type="db", database="default") # [catalog.Entry, ...]

Each function raises :class:`dbbackup.exceptions.DbbackupError` (or a configuration error) on
failure, and never asks anything: there is no confirmation prompt outside the commands.
"""

from __future__ import annotations

import logging
from typing import Any

__version__ = "0.2.0"
__all__ = ["__version__", "backup", "list_backups", "media_backup", "media_restore", "restore"]

# A library's logger stays silent unless the project configures it (LOGGING), instead of
# falling back to Python's last-resort handler and printing every error twice.
logging.getLogger("dbbackup").addHandler(logging.NullHandler())


def backup(database: str = "default", **options: Any):
    """Back up one database; see :func:`dbbackup.pipeline.backup_database` for the options."""
    from dbbackup.pipeline import backup_database

    return backup_database(database, **options)


def restore(database: str | None = None, **options: Any):
    """Restore a database (the newest backup unless named); see :func:`dbbackup.pipeline.plan_restore`."""
    from dbbackup.pipeline import restore_database

    return restore_database(database, **options)


def media_backup(**options: Any):
    """Back up the media storage; see :func:`dbbackup.pipeline.backup_media`."""
    from dbbackup.pipeline import backup_media

    return backup_media(**options)


def media_restore(**options: Any):
    """Restore media files; see :func:`dbbackup.pipeline.plan_media_restore`."""
    from dbbackup.pipeline import restore_media

    return restore_media(**options)


def list_backups(**filters: Any):
    """The backups in the backup storage, oldest first; see :func:`dbbackup.catalog.find`."""
    from dbbackup import catalog
    from dbbackup.storage import get_storage

    return catalog.find(get_storage(), **filters)
