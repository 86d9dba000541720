"""``call_command`` raises the classes django-dbbackup raised, and every one is a ``CommandError``.

Callers written for django-dbbackup catch ``CommandConnectorError``, ``FileNotFoundError``,
``DecryptionError`` or ``CommandError``; on the command line the message stays one line.
"""

import io
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.connection import ConnectionDoesNotExist

from dbbackup.db.base import BaseCommandDBConnector
from dbbackup.db.exceptions import CommandConnectorError, ConnectorError
from dbbackup.storage import StorageError
from dbbackup.utils import DecryptionError, EncryptionError
from tests.faults.support import child_settings, run_command
from tests.helpers import add_known_data

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


class BrokenToolConnector(BaseCommandDBConnector):
    """Its dump and restore tools fail (exit 1, or are not installed); for these tests only."""

    extension = "txt"

    def dump_argv(self):
        return [sys.executable, "-c", "import sys; sys.exit('dump tool broke')"]

    def restore_argv(self):
        return ["no-such-restore-tool-x"]


class MissingRestoreToolConnector(BrokenToolConnector):
    """Dumps fine; its restore tool is not installed."""

    def dump_argv(self):
        return [sys.executable, "-c", "print('some data')"]


def call(*args):
    call_command(*args, stdout=io.StringIO(), stderr=io.StringIO())


def broken_connector(settings, backup_dir=None):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": f"{__name__}.BrokenToolConnector"}}


def an_unrestorable_backup(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": f"{__name__}.MissingRestoreToolConnector"}}
    call("dbbackup", "-d", "default", "-o", "b.dump")


def encrypted_backup(backup_dir, settings, keyring):
    settings.DBBACKUP_GPG_HOME = str(keyring)
    settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    call("dbbackup", "-d", "default", "-e")


def unknown_recipient(backup_dir, settings, keyring):
    settings.DBBACKUP_GPG_HOME = str(keyring)
    settings.DBBACKUP_GPG_RECIPIENT = "nobody@example.com"


def rejecting_validator(metadata):
    return False


def with_validator(backup_dir, settings):
    call("dbbackup", "-d", "default")
    settings.DBBACKUP_RESTORE_METADATA_VALIDATOR = f"{__name__}.rejecting_validator"


# (failure, how to set it up, the command line, the class django-dbbackup 5.4 raised)
CASES = [
    ("no backup at all", None, "dbrestore -d default", CommandError),
    ("-i names a missing file", None, "dbrestore -d default -i nope.dump", FileNotFoundError),
    ("-I names a missing path", None, "dbrestore -d default -I /nonexistent/x.dump", FileNotFoundError),
    ("mediarestore -i missing", None, "mediarestore -i nope.tar", FileNotFoundError),
    ("dump tool fails", broken_connector, "dbbackup -d default", CommandConnectorError),
    ("restore tool missing", an_unrestorable_backup, "dbrestore -d default -i b.dump", CommandConnectorError),
    ("wrong passphrase", encrypted_backup, "dbrestore -d default -c -p wrong", DecryptionError),
    ("encryption fails", unknown_recipient, "dbbackup -d default -e", EncryptionError),
    ("unknown database", None, "dbrestore -d nope", CommandError),
    ("dbbackup of an unknown database", None, "dbbackup -d nope", ConnectionDoesNotExist),
    ("metadata validator says no", with_validator, "dbrestore -d default", CommandError),
]


@pytest.mark.parametrize(("failure", "setup", "line", "upstream_class"), CASES, ids=[c[0] for c in CASES])
def test_call_command_raises_upstreams_class_and_a_command_error(
    failure, setup, line, upstream_class, backup_dir, settings, request
):
    add_known_data()
    if setup in (encrypted_backup, unknown_recipient):
        setup(backup_dir, settings, request.getfixturevalue("keyring"))
    elif setup is not None:
        setup(settings=settings, backup_dir=backup_dir)
    with pytest.raises(upstream_class) as info:
        call(*line.split(), "--noinput")
    assert isinstance(info.value, CommandError)


def test_connector_and_storage_errors_keep_their_upstream_ancestry():
    assert issubclass(CommandConnectorError, ConnectorError)
    from dbbackup.exceptions import BackupNotFoundError

    assert issubclass(BackupNotFoundError, StorageError)
    assert issubclass(BackupNotFoundError, FileNotFoundError)
    error = CommandConnectorError("tool failed", returncode=0)
    assert error.returncode == 1  # manage.py's exit code: a failure never exits 0
    assert error.exit_status == 0


def test_command_line_prints_one_line_and_traceback_still_works(backup_dir):
    argv = ["dbrestore", "-d", "default", "-i", "nope.dump", "--noinput"]
    done = run_command(*argv, settings=child_settings())
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("CommandError: There is no backup 'nope.dump'")
    assert "Traceback" not in done.stderr
    done = run_command(*argv, "--traceback", settings=child_settings())
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "BackupNotFoundError: There is no backup 'nope.dump'" in done.stderr


def test_a_failing_backup_still_mails_the_admins(settings, mailoutbox):
    settings.ADMINS = [("Admin", "admin@example.com")]
    broken_connector(settings)
    with pytest.raises(CommandConnectorError):
        call("dbbackup", "-d", "default")
    assert len(mailoutbox) == 1
    assert "dump tool broke" in mailoutbox[0].body
