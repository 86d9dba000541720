"""The fault-test support itself: a child command sees this test's databases; killing works."""

import signal

import pytest

from tests.faults.support import debris, fingerprint, kill, reap, run_command, start_command
from tests.helpers import add_known_data

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


def test_a_child_command_works_on_the_test_database(backup_dir):
    add_known_data("default")
    before = fingerprint("default")
    result = run_command("dbbackup", "-d", "default", "--noinput")
    assert result.returncode == 0, result.stderr
    assert [path.name for path in backup_dir.iterdir() if not path.name.endswith(".metadata")]
    assert fingerprint("default") == before
    assert debris(backup_dir) == []


def test_a_killed_child_is_reaped_and_reports_the_signal(backup_dir):
    proc = start_command("shell", "-c", "import time; time.sleep(60)")
    kill(proc.pid, signal.SIGKILL)
    assert reap(proc) == -signal.SIGKILL
