"""Database backup and restore, composed from streams; the Python API behind the commands.

Backup::

    connector.create_dump() -> [compress] -> [encrypt] -> digest -> storage (atomic) -> .metadata

Restore::

    storage -> digest (checks size and SHA-256 at the end) -> [decrypt] -> [decompress]
            -> connector.restore_dump()  (which commits only after a clean end of stream)

Signals are sent here, so programmatic callers get the same behaviour as the commands.
"""

from dbbackup.pipeline.backup import BackupResult, backup_database
from dbbackup.pipeline.restore import (
    RestorePlan,
    RestoreResult,
    execute_restore,
    plan_restore,
    restore_database,
    verify_backup,
)

__all__ = [
    "BackupResult",
    "RestorePlan",
    "RestoreResult",
    "backup_database",
    "execute_restore",
    "plan_restore",
    "restore_database",
    "verify_backup",
]
