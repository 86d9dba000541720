"""Ctrl-C (SIGINT) on a running command: one line saying what happened, exit status 130."""

import signal

import pytest

from tests.faults.support import child_settings, debris, kill, reap, start_command, wait_for
from tests.helpers import add_known_data

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


def test_ctrl_c_during_a_backup_says_what_happened_and_stores_nothing(backup_dir):
    add_known_data("default")
    settings = child_settings(
        DBBACKUP_CONNECTORS={"default": {"CONNECTOR": "tests.faults.slow_connector.SlowDumpConnector"}}
    )
    proc = start_command("dbbackup", "-d", "default", "--noinput", settings=settings)
    wait_for(lambda: backup_dir.exists() and any(backup_dir.iterdir()), what="the upload to start")
    kill(proc.pid, signal.SIGINT)
    status = reap(proc)
    stderr = proc.stderr.read().decode()
    assert status == 130, stderr
    assert "Interrupted: the backup being written was not stored" in stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
    assert list(backup_dir.iterdir()) == []
    assert debris(backup_dir) == []
