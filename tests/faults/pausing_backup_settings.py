"""Child settings that pause a SQLite backup written straight into its partial file, so a fault
test can kill the child exactly there.

``DBBACKUP_PAUSE_AT`` names the point; when the child reaches it, it creates the file
``DBBACKUP_PAUSE_MARK`` and sleeps for a minute (the test kills it first):

* ``copying``: the backup API has copied half the pages into the partial file (the copy is made
  in steps of 256 pages instead of one; pages beyond SQLite's cache are on disk already);
* ``sealing``: the copy is complete, not yet hashed nor synced;
* ``before-link``: the file is hashed and synced, its final name not yet linked.

The settings are those of :mod:`tests.faults.child_settings`.
"""

import contextlib
import os
import time
from pathlib import Path

from dbbackup import local_write
from dbbackup.db.sqlite import SqliteBackupConnector
from tests.faults.child_settings import *  # noqa: F403

_POINT = os.environ["DBBACKUP_PAUSE_AT"]
_MARK = Path(os.environ["DBBACKUP_PAUSE_MARK"])


def _pause() -> None:
    _MARK.touch()
    time.sleep(60)


class _SteppedSource:
    """A source connection whose backup() copies 256 pages at a time and pauses half-way."""

    def __init__(self, connection) -> None:
        self._connection = connection

    def backup(self, target, **kwargs) -> None:
        def progress(status: int, remaining: int, total: int) -> None:
            if remaining and remaining <= total // 2:
                _pause()

        self._connection.backup(target, pages=256, progress=progress)


if _POINT == "copying":
    _real_open = SqliteBackupConnector._open

    @contextlib.contextmanager
    def _open(self):
        with _real_open(self) as connection:
            yield _SteppedSource(connection)

    SqliteBackupConnector._open = _open

if _POINT == "sealing":
    _real_seal = local_write.seal

    def _seal(path, on_bytes=None):
        _pause()
        return _real_seal(path, on_bytes)

    local_write.seal = _seal

if _POINT == "before-link":
    _real_link = os.link

    def _link(source, destination, *args, **kwargs):
        if ".partial-" in os.path.basename(str(source)):
            _pause()
        return _real_link(source, destination, *args, **kwargs)

    os.link = _link
