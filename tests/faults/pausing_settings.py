"""Child settings that pause a SQLite restore around the rename of its scratch file, so a fault
test can kill the child exactly there.

``DBBACKUP_PAUSE_AT`` is ``before-rename`` or ``after-rename``; when the child reaches that point
it creates the file ``DBBACKUP_PAUSE_MARK`` and sleeps for a minute (the test kills it first).
Only renames of a scratch database (``.dbbackup-*``) pause; the settings are those of
:mod:`tests.faults.child_settings`.
"""

import os
import time
from pathlib import Path

from tests.faults.child_settings import *  # noqa: F403

_POINT = os.environ["DBBACKUP_PAUSE_AT"]
_MARK = Path(os.environ["DBBACKUP_PAUSE_MARK"])
_real_replace = os.replace


def _pause() -> None:
    _MARK.touch()
    time.sleep(60)


def _replace(source, destination, *args, **kwargs):
    swapping = os.path.basename(str(source)).startswith(".dbbackup-")
    if swapping and _POINT == "before-rename":
        _pause()
    _real_replace(source, destination, *args, **kwargs)
    if swapping and _POINT == "after-rename":
        _pause()


os.replace = _replace
