"""Operations: the Python API, failure e-mails, environment checks, preflight, concurrency."""

import io
import os
import threading

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

import dbbackup
from dbbackup import environment, signals
from dbbackup.management.commands import dbbackup as dbbackup_command
from dbbackup.pipeline import BackupResult, RestoreResult
from dbbackup.storage import get_storage
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "Sup3r-Secret-pw"


def test_the_python_api_backs_up_lists_and_restores(backup_dir, record):
    add_known_data()
    before = snapshot()
    pre = record(signals.pre_backup)
    result = dbbackup.backup("default", compress=True)
    assert isinstance(result, BackupResult)
    assert pre.calls[0]["sender"] is dbbackup_command.Command
    [entry] = dbbackup.list_backups(content_type="db", database="default")
    assert entry.name == result.filename
    Note.objects.all().delete()
    assert isinstance(dbbackup.restore("default"), RestoreResult)
    assert snapshot() == before


def test_legacy_storage_settings_still_work(settings, tmp_path):
    settings.STORAGES = {"default": settings.STORAGES["default"]}
    settings.DBBACKUP_STORAGE = "django.core.files.storage.FileSystemStorage"
    settings.DBBACKUP_STORAGE_OPTIONS = {"location": str(tmp_path / "legacy")}
    result = dbbackup.backup("default")
    assert (tmp_path / "legacy" / result.filename).exists()
    from dbbackup.checks import check_settings

    assert [problem.id for problem in check_settings()] == ["dbbackup.W012", "dbbackup.W012"]


def test_two_runs_in_the_same_second_keep_both_backups(backup_dir, monkeypatch):
    from datetime import datetime

    from dbbackup import names

    monkeypatch.setattr(names, "now", lambda: datetime(2026, 11, 21, 12, 0, 0))
    results, errors = [], []

    def run():
        try:
            results.append(dbbackup.backup("default"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(result.filename for result in results) == [
        "default-testhost-2026-11-21-120000.sqlite3",
        "default-testhost-2026-11-21-120001.sqlite3",
    ]
    assert len(get_storage().list_backups()) == 2


# -- failure e-mails --------------------------------------------------------------------------


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SERVER_EMAIL = "backup@example.com"
    settings.DATABASES = {
        **settings.DATABASES,
        "default": {**settings.DATABASES["default"], "PASSWORD": SECRET},
    }
    return settings


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_failed_backup_mails_the_admins_without_secrets(backup_dir, admins, record):
    record(signals.pre_backup, raises=RuntimeError(f"could not log in with {SECRET}"))
    with pytest.raises(CommandError):
        call_command("dbbackup", "-d", "default", "-q")
    [message] = mail.outbox
    assert message.subject.startswith("[dbbackup] ERROR: dbbackup failed: A pre_backup receiver stopped")
    assert message.to == ["ops@example.com"]
    assert message.from_email == "backup@example.com"
    assert "testhost" in message.body
    assert "could not log in with ********" in message.body
    assert SECRET not in message.subject + message.body


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_send_email_false_and_plain_address_admins(backup_dir, admins, record):
    record(signals.pre_backup, raises=RuntimeError("boom"))
    admins.DBBACKUP_ADMINS = ["dba@example.com"]  # Django 6's list-of-strings form
    with pytest.raises(CommandError):
        call_command("dbbackup", "-d", "default", "-q")
    assert mail.outbox[0].to == ["dba@example.com"]
    admins.DBBACKUP_SEND_EMAIL = False
    with pytest.raises(CommandError):
        call_command("dbbackup", "-d", "default", "-q")
    assert len(mail.outbox) == 1


def test_restores_and_option_errors_do_not_mail(backup_dir, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    with pytest.raises(CommandError):
        call_command("dbrestore", "-d", "default", "--noinput", "-q")
    with pytest.raises(CommandError):
        call_command("dbbackup", "-o", "x", "-q")  # several databases: an option error
    assert mail.outbox == []


# -- environment checks and preflight ----------------------------------------------------------


def ids(findings):
    return sorted(finding.id for finding in findings)


def test_a_missing_dump_tool_is_found(settings):
    settings.DBBACKUP_DATABASES = ["postgres"] if "postgres" in settings.DATABASES else []
    if not settings.DBBACKUP_DATABASES:
        pytest.skip("needs the postgres alias")
    settings.DBBACKUP_CONNECTORS = {"postgres": {"DUMP_CMD": "pg_dump_nowhere"}}
    [finding] = environment.missing_tools()
    assert finding.id == "dbbackup.W020"
    assert "'pg_dump_nowhere', needed to back up or restore database 'postgres'" in finding.message
    assert "postgresql-client" in finding.hint


def test_storage_problems_are_found(settings, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    settings.STORAGES = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media / "backups"), "file_permissions_mode": 0o644},
        },
    }
    (media / "backups").mkdir()
    os.chmod(media / "backups", 0o751)  # noqa: S103 - the point of the test
    assert ids(environment.storage_problems()) == ["dbbackup.W023", "dbbackup.W023", "dbbackup.W024"]
    (tmp_path / "a-file").write_text("not a folder")
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "a-file" / "backups")},
        },
    }
    assert ids(environment.storage_problems()) == ["dbbackup.W022"]


def test_a_gpg_recipient_without_key_is_found(settings, keyring):
    settings.DBBACKUP_GPG_HOME = str(keyring)
    settings.DBBACKUP_GPG_RECIPIENT = "backup@example.com"
    assert environment.gpg_recipient_problems() == []
    settings.DBBACKUP_GPG_RECIPIENT = "stranger@example.com"
    assert ids(environment.gpg_recipient_problems()) == ["dbbackup.W021"]


def test_manage_py_check_reports_the_environment(settings):
    from django.core.management.base import SystemCheckError

    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "no.such.Connector"}}
    with pytest.raises(SystemCheckError, match="dbbackup.E002"):
        call_command("check", "--tag", "dbbackup", "--tag", "compatibility", "--fail-level", "WARNING")


def test_preflight_reports_every_check_and_its_verdict(backup_dir, settings, gpg_settings):
    settings.DBBACKUP_DATABASES = ["default"]
    out = io.StringIO()
    call_command("dbbackup", "--check", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    for expected in (
        "ok    database default: connector",
        "ok    database default: connect",
        "ok    backup storage: write, read, delete",
        "ok    media storage: list",
        "ok    gpg: encrypt to the recipient",
        "All 5 checks passed",
    ):
        assert expected in text
    assert get_storage().list_directory() == []  # the test object is gone


def test_preflight_fails_with_a_clear_verdict(backup_dir, settings):
    settings.DBBACKUP_DATABASES = ["default"]
    settings.DBBACKUP_CONNECTORS = {
        "default": {"CONNECTOR": "dbbackup.db.mysql.MysqlDumpConnector", "DUMP_CMD": "no-such-mysqldump"}
    }
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"The preflight found \d+ problem\(s\)"):
        call_command("dbbackup", "--check", stdout=out, stderr=io.StringIO())
    assert "FAIL  database default: no-such-mysqldump --version" in out.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_preflight_calls_an_unknown_server_version_a_failure_not_a_pass(backup_dir, settings, monkeypatch):
    from django.db import connections

    settings.DBBACKUP_DATABASES = ["postgres"]
    connection = connections["postgres"]
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "PORT", 1)  # nothing listens there
    out = io.StringIO()
    try:
        with pytest.raises(CommandError, match=r"The preflight found \d+ problem\(s\)"):
            call_command("dbbackup", "--check", stdout=out, stderr=io.StringIO())
    finally:
        connection.close()
    text = out.getvalue()
    assert "FAIL  database postgres: pg_dump not older than the server" in text
    assert "unknown" in text
    assert "ok    database postgres: pg_dump not older" not in text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_preflight_passes_pg_dump_against_a_reachable_server(backup_dir, settings):
    settings.DBBACKUP_DATABASES = ["postgres"]
    out = io.StringIO()
    call_command("dbbackup", "--check", stdout=out, stderr=io.StringIO())
    assert "ok    database postgres: pg_dump not older than the server  yes (server " in out.getvalue()
