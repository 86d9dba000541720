"""Faults around the django-dbbackup API: a custom connector that uses ``run_command``."""

import io

import pytest
from django.core.management import call_command

from dbbackup import process
from dbbackup.exceptions import CommandConnectorError, CorruptBackupError
from tests.faults.support import debris
from tests.test_run_command import contents, make_database

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.fixture
def cli_connector(tmp_path, backup_dir, settings):
    database = tmp_path / "app.sqlite3"
    make_database(database)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    settings.DBBACKUP_TMP_DIR = str(scratch)
    settings.DBBACKUP_CONNECTORS = {
        "other": {"CONNECTOR": "tests.test_run_command.SqliteCliConnector", "NAME": str(database)}
    }
    return database, scratch


def test_a_tampered_backup_never_reaches_a_tool_that_commits_as_it_reads(
    cli_connector, backup_dir, monkeypatch
):
    database, scratch = cli_connector
    call_command("dbbackup", "-d", "other", stdout=io.StringIO(), stderr=io.StringIO())
    started = []
    real_start = process.Command.start

    def spy(command, **kwargs):
        started.append(command.argv)
        return real_start(command, **kwargs)

    monkeypatch.setattr(process.Command, "start", spy)
    [backup] = [path for path in backup_dir.iterdir() if path.suffix == ".sql"]
    backup.write_bytes(backup.read_bytes().replace(b"Rex", b"Rez"))  # same size, other bytes
    database.unlink()
    with pytest.raises(CorruptBackupError, match="SHA-256"):
        call_command("dbrestore", "-d", "other", "--noinput", stdout=io.StringIO(), stderr=io.StringIO())
    assert started == []  # sqlite3 never started: nothing was replayed, COMMIT included
    assert not database.exists()
    assert debris(scratch, backup_dir) == []
    assert list(scratch.iterdir()) == []


def test_a_failing_tool_changes_nothing_and_leaves_no_temporary_file(cli_connector, backup_dir):
    database, scratch = cli_connector
    call_command("dbbackup", "-d", "other", stdout=io.StringIO(), stderr=io.StringIO())
    before = contents(database)
    with pytest.raises(CommandConnectorError, match="Error running: sqlite3"):  # tables exist: -bail stops
        call_command("dbrestore", "-d", "other", "--noinput", stdout=io.StringIO(), stderr=io.StringIO())
    assert contents(database) == before
    assert list(scratch.iterdir()) == []
