"""The eight signals: the objects, and the four database ones as the commands send them."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import signals
from dbbackup.db.sqlite import SqliteBackupConnector
from dbbackup.management.commands import dbbackup as dbbackup_command
from dbbackup.management.commands import dbrestore as dbrestore_command
from dbbackup.storage import Storage, get_storage
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

SIGNAL_NAMES = [
    "pre_backup",
    "post_backup",
    "pre_restore",
    "post_restore",
    "pre_media_backup",
    "post_media_backup",
    "pre_media_restore",
    "post_media_restore",
]


def test_exactly_the_eight_signals_exist():  # and the four failure signals (tests/test_failure_signals.py)
    from django.dispatch import Signal

    failures = {"backup_failed", "restore_failed", "media_backup_failed", "media_restore_failed"}
    defined = sorted(
        name for name, value in vars(signals).items() if isinstance(value, Signal) and name not in failures
    )
    assert defined == sorted(SIGNAL_NAMES)


def backup(*args):
    call_command("dbbackup", "-d", "default", "--noinput", "-q", *args)
    return get_storage().get_latest_backup(database="default", content_type="db")


def test_pre_backup_arguments(backup_dir, record):
    recorder = record(signals.pre_backup)
    backup()
    [call] = recorder.calls
    assert set(call) == {"sender", "database", "connector", "servername"}
    assert call["sender"] is dbbackup_command.Command
    assert isinstance(call["connector"], SqliteBackupConnector)
    assert call["database"] == call["connector"].settings
    assert call["database"]["NAME"] == connections["default"].settings_dict["NAME"]
    assert call["servername"] == "testhost"


def test_post_backup_arguments(backup_dir, record):
    recorder = record(signals.post_backup)
    name = backup("-s", "web1")
    [call] = recorder.calls
    assert set(call) == {"sender", "database", "connector", "servername", "filename", "storage"}
    assert call["sender"] is dbbackup_command.Command
    assert call["servername"] == "web1"
    assert call["filename"] == name
    assert isinstance(call["storage"], Storage)
    assert call["storage"].exists(name)
    assert call["storage"].exists(name + ".metadata")  # sent once the backup and its metadata are stored


def test_database_in_backup_signals_includes_connector_overrides(backup_dir, record, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"EXTENSION": "db"}}
    recorder = record(signals.pre_backup)
    backup()
    assert recorder.calls[0]["database"]["EXTENSION"] == "db"
    assert recorder.calls[0]["connector"].extension == "db"


def test_pre_restore_arguments(backup_dir, record, settings):
    name = backup()
    recorder = record(signals.pre_restore)
    call_command("dbrestore", "-d", "default", "--noinput", "-q")
    [call] = recorder.calls
    assert set(call) == {"sender", "database", "database_name", "filename", "servername", "storage"}
    assert call["sender"] is dbrestore_command.Command
    assert call["database"] is settings.DATABASES["default"]
    assert call["database_name"] == "default"
    assert call["filename"] == name
    assert call["servername"] == "testhost"
    assert isinstance(call["storage"], Storage)


def test_post_restore_arguments(backup_dir, record, settings):
    name = backup("-z")
    recorder = record(signals.post_restore)
    call_command("dbrestore", "-d", "default", "--noinput", "-q", "-s", "testhost", "-z")
    [call] = recorder.calls
    assert set(call) == {
        "sender", "database", "database_name", "filename", "servername", "connector", "storage",
    }  # fmt: skip
    assert call["sender"] is dbrestore_command.Command
    assert call["database"] is settings.DATABASES["default"]
    assert call["database_name"] == "default"
    assert call["filename"] == name  # the stored name, suffixes and all
    assert call["servername"] == "testhost"
    assert isinstance(call["connector"], SqliteBackupConnector)
    assert isinstance(call["storage"], Storage)


def test_restore_signals_get_the_local_path_with_input_path(backup_dir, record, tmp_path):
    target = tmp_path / "local.sqlite3"
    call_command("dbbackup", "-d", "default", "-O", str(target), "-q")
    pre, post = record(signals.pre_restore), record(signals.post_restore)
    call_command("dbrestore", "-d", "default", "-I", str(target), "--noinput", "-q")
    assert pre.calls[0]["filename"] == post.calls[0]["filename"] == str(target)


def test_a_raising_pre_backup_receiver_stops_before_anything_is_written(backup_dir, record):
    post = record(signals.post_backup)
    record(signals.pre_backup, raises=RuntimeError("backups are paused for maintenance"))
    with pytest.raises(CommandError, match="pre_backup receiver stopped.*backups are paused for maintenance"):
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert get_storage().list_directory() == []
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []
    assert post.calls == []


def test_a_raising_pre_restore_receiver_stops_before_anything_is_restored(backup_dir, record):
    add_known_data()
    backup()
    Note.objects.all().delete()
    before = snapshot()
    post = record(signals.post_restore)
    record(signals.pre_restore, raises=ValidationError("Restore not allowed on production"))
    with pytest.raises(
        CommandError, match="pre_restore receiver stopped.*: Restore not allowed on production$"
    ):
        call_command("dbrestore", "-d", "default", "--noinput", "-q")
    assert snapshot() == before
    assert post.calls == []


def test_a_failing_post_backup_receiver_keeps_the_backup_and_other_receivers_run(backup_dir, record):
    failing = record(signals.post_backup, raises=RuntimeError("webhook down"))
    second = record(signals.post_backup)
    with pytest.raises(
        CommandError, match="was stored as .* and is kept, but a post_backup receiver failed: webhook down"
    ):
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert len(failing.calls) == len(second.calls) == 1
    name = second.calls[0]["filename"]
    assert get_storage().list_backups(database="default") == [name]


def test_a_failing_post_restore_receiver_does_not_undo_the_restore(backup_dir, record):
    add_known_data()
    before = snapshot()
    backup()
    Note.objects.all().delete()
    record(signals.post_restore, raises=RuntimeError("cache flush failed"))
    with pytest.raises(
        CommandError, match="was restored from .* and is kept, but a post_restore receiver failed"
    ):
        call_command("dbrestore", "-d", "default", "--noinput", "-q")
    assert snapshot() == before


def test_python_api_sends_the_same_signals_with_the_command_as_default_sender(backup_dir, record):
    from dbbackup import pipeline

    pre, post = record(signals.pre_backup), record(signals.post_backup)
    result = pipeline.backup_database("default")
    assert pre.calls[0]["sender"] is post.calls[0]["sender"] is dbbackup_command.Command
    restored = record(signals.post_restore)
    pipeline.restore_database("default", input_filename=result.filename)
    assert restored.calls[0]["sender"] is dbrestore_command.Command
    assert restored.calls[0]["filename"] == result.filename


def test_receivers_can_be_connected_to_the_command_class_as_sender(backup_dir):
    seen = []

    def receiver(sender, **kwargs):
        seen.append(sender)

    signals.pre_backup.connect(receiver, sender=dbbackup_command.Command)
    try:
        call_command("dbbackup", "-d", "default", "-q")
    finally:
        signals.pre_backup.disconnect(receiver, sender=dbbackup_command.Command)
    assert seen == [dbbackup_command.Command]


def test_signal_sending_helpers_keep_receiver_messages_readable():
    assert signals._message(ValidationError(["a", "b"])) == "a; b"
    assert signals._message(RuntimeError()) == "RuntimeError"
    _ = io  # keep the import for symmetry with other modules


def test_a_failing_post_receiver_is_reported_once_without_djangos_traceback_log(
    backup_dir, record, settings, caplog
):
    settings.DEBUG = True  # Django's console handler shows django.dispatch errors only then
    record(signals.post_backup, raises=RuntimeError("webhook down"))
    with pytest.raises(CommandError, match="post_backup receiver failed: webhook down"):
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert [record.getMessage() for record in caplog.records if record.name == "django.dispatch"] == []


@pytest.mark.parametrize(
    ("command", "signal", "args"),
    [
        ("dbrestore", "pre_restore", ["-d", "default"]),
        ("mediarestore", "pre_media_restore", []),
    ],
)
def test_a_veto_comes_before_the_confirmation_question(
    backup_dir, record, monkeypatch, command, signal, args
):
    backup()
    call_command("mediabackup", "-q")
    questions = []
    monkeypatch.setattr("builtins.input", lambda question: questions.append(question) or "y")
    record(getattr(signals, signal), raises=RuntimeError("not on production"))
    with pytest.raises(CommandError, match=f"{signal} receiver stopped.*not on production"):
        call_command(command, *args, "-q")
    assert questions == []  # refused at once: nobody was asked to confirm a restore that cannot run


def test_the_restore_result_counts_what_the_connector_received(backup_dir):
    from dbbackup import pipeline

    add_known_data()
    name = backup()
    result = pipeline.restore_database("default", input_filename=name)
    checked = pipeline.verify_backup(pipeline.plan_restore("default", input_filename=name))
    assert result.content_size == checked.content_size > 0
