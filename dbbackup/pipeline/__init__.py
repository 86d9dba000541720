"""Database backup and restore, composed from streams; the Python API behind the commands.

Backup::

    connector.create_dump() -> [compress] -> [encrypt] -> digest -> storage (atomic) -> .metadata

Restore::

    storage -> digest (checks size and SHA-256 at the end) -> [decrypt] -> [decompress]
            -> connector.restore_dump()  (which commits only after a clean end of stream)

Signals are sent here, so programmatic callers get the same behaviour as the commands.
"""

from dbbackup.pipeline.backup import BackupResult, backup_database
from dbbackup.pipeline.drill import DrillResult, drill_database, drill_media
from dbbackup.pipeline.media import (
    MediaBackupResult,
    MediaRestorePlan,
    MediaRestoreResult,
    announce_media_restore,
    backup_media,
    execute_media_restore,
    plan_media_restore,
    restore_media,
    verify_media_backup,
)
from dbbackup.pipeline.restore import (
    RestorePlan,
    RestoreResult,
    announce_restore,
    execute_restore,
    plan_restore,
    restore_database,
    verify_backup,
)

__all__ = [
    "BackupResult",
    "DrillResult",
    "MediaBackupResult",
    "MediaRestorePlan",
    "MediaRestoreResult",
    "RestorePlan",
    "RestoreResult",
    "announce_media_restore",
    "announce_restore",
    "backup_database",
    "backup_media",
    "drill_database",
    "drill_media",
    "execute_media_restore",
    "execute_restore",
    "plan_media_restore",
    "plan_restore",
    "restore_database",
    "restore_media",
    "verify_backup",
    "verify_media_backup",
]
