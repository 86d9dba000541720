"""Faults on the backup side: killed runs, failing storages, several databases, bad names.

Each test injects one fault and asserts what a user relies on afterwards: the command failed
with a one-line error (or succeeded), nothing that looks like a backup was left half-written,
the earlier backups are untouched, and no debris outlives the run.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import pipeline, signals
from tests.faults.support import debris
from tests.helpers import add_known_data

PG = pytest.mark.postgres
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


def backups_in(directory) -> list[str]:
    """Names of the finished backups in a directory (neither sidecars nor hidden files)."""
    return sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".metadata")
    )


# -- server names that cannot be part of a file name --------------------------------------------


@pytest.mark.parametrize("servername", ["web/1", "..", "a..b", "web\\1", "nul\x00", "tab\there", " "])
def test_a_path_hostile_server_name_is_refused_before_anything_starts(backup_dir, servername):
    started = []
    signals.pre_backup.connect(receiver := lambda **kwargs: started.append(kwargs), weak=False)
    try:
        with pytest.raises(CommandError, match="server name") as info:
            call_command("dbbackup", "-d", "default", "-s", servername, "--noinput")
    finally:
        signals.pre_backup.disconnect(receiver)
    assert "\n" not in str(info.value)
    assert started == []
    assert not backup_dir.exists() or list(backup_dir.rglob("*")) == []


def test_a_path_hostile_hostname_setting_is_refused_for_media_too(backup_dir, settings, tmp_path):
    settings.DBBACKUP_HOSTNAME = "web/1"
    with pytest.raises(CommandError, match="DBBACKUP_HOSTNAME"):
        call_command("dbbackup", "-d", "default", "--noinput")
    with pytest.raises(CommandError, match="server name 'web/1'"):
        call_command("mediabackup", "--noinput")
    assert not backup_dir.exists() or list(backup_dir.rglob("*")) == []


def test_an_ordinary_server_name_with_dots_and_dashes_still_works(backup_dir):
    result = pipeline.backup_database("default", servername="web-1.example.com")
    assert "web-1.example.com" in result.filename
    assert pipeline.restore_database("default", servername="web-1.example.com").filename == result.filename


# -- several databases: one failure does not stop the others --------------------------------------


@PG
def test_every_database_is_backed_up_and_every_failure_reported(backup_dir, settings, mailoutbox):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"DUMP_CMD": "false"}}
    settings.DBBACKUP_ADMINS = [("Ops", "ops@example.com")]
    add_known_data("default")
    pairs = []

    def pre(**kwargs):
        pairs.append("pre_backup")

    def post(**kwargs):
        pairs.append("post_backup")

    signals.pre_backup.connect(pre)
    signals.post_backup.connect(post)
    try:
        with pytest.raises(CommandError) as info:
            call_command("dbbackup", "-d", "postgres,default", "--noinput")
    finally:
        signals.pre_backup.disconnect(pre)
        signals.post_backup.disconnect(post)
    message = str(info.value)
    assert message.splitlines()[0].startswith("1 of 2 database backups failed ('postgres')")
    assert len(message.splitlines()) == 2
    assert message.splitlines()[1].startswith("postgres: ")
    # the healthy database after the broken one was backed up, and restores
    [stored] = backups_in(backup_dir)
    assert stored.startswith("default-")
    assert debris(backup_dir) == []
    # each database had its own pre signal; only the healthy one its post signal
    assert pairs == ["pre_backup", "pre_backup", "post_backup"]
    # the failure e-mail names the failed database
    [mail] = mailoutbox
    assert "1 of 2 database backups failed ('postgres')" in mail.subject
    assert "postgres: " in mail.body


def test_several_failures_are_all_listed_one_line_each(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {
        "default": {"CONNECTOR": "dbbackup.db.sqlite.SqliteCPConnector", "NAME": "/nonexistent/a.sqlite3"},
        "other": {"CONNECTOR": "dbbackup.db.sqlite.SqliteCPConnector", "NAME": "/nonexistent/b.sqlite3"},
    }
    with pytest.raises(CommandError) as info:
        call_command("dbbackup", "-d", "default,other", "--noinput")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("2 of 2 database backups failed ('default', 'other')")
    assert [line.split(":")[0] for line in lines[1:]] == ["default", "other"]
    assert not backup_dir.exists() or backups_in(backup_dir) == []
