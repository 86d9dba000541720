"""A module a hostile sidecar names as its connector: importing it leaves a mark.

Only ever imported when a test configures it on purpose; a restore must not import it because a
``.metadata`` file says so. The mark is a file named by ``DBBACKUP_HOSTILE_MARK``.
"""

import os
from pathlib import Path

from dbbackup.db.sqlite import SqliteBackupConnector

if os.environ.get("DBBACKUP_HOSTILE_MARK"):
    Path(os.environ["DBBACKUP_HOSTILE_MARK"]).write_text("imported")


class Connector(SqliteBackupConnector):
    """Restores like the default SQLite connector."""
