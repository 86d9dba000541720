"""backup_failed, restore_failed, media_backup_failed, media_restore_failed: sent with the pre_*
arguments plus ``exception`` when the work fails, never for a veto or a success, and a raising
receiver never hides the original error."""

import io
import logging

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import signals
from dbbackup.db.base import BaseDBConnector
from dbbackup.db.exceptions import CommandConnectorError
from dbbackup.management.commands import dbbackup as dbbackup_command
from dbbackup.management.commands import dbrestore as dbrestore_command
from dbbackup.management.commands import mediabackup as mediabackup_command
from dbbackup.management.commands import mediarestore as mediarestore_command
from dbbackup.storage import Storage, get_storage

pytestmark = pytest.mark.django_db(transaction=True)


def call(*args):
    call_command(*args, stdout=io.StringIO(), stderr=io.StringIO())


def flip_a_byte(name):
    storage = get_storage()
    with storage.read_file(name) as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF
    storage.delete_file(name)
    storage.write_file(io.BytesIO(bytes(data)), name)


@pytest.fixture
def media(settings, tmp_path, backup_dir):
    root = tmp_path / "media"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "a.jpg").write_bytes(b"a picture" * 1000)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.MEDIA_ROOT = str(root)
    return root


class UnreadableStorage(FileSystemStorage):
    """Media whose files cannot be read (a failing disk or network share)."""

    def _open(self, name, mode="rb"):
        raise OSError(f"I/O error reading {name}")


def test_exactly_the_eight_signals_and_four_failure_signals_exist():
    from django.dispatch import Signal

    defined = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    failures = {"backup_failed", "restore_failed", "media_backup_failed", "media_restore_failed"}
    assert failures <= defined
    assert len(defined - failures) == 8


def test_a_failing_dump_tool_sends_backup_failed(backup_dir, record, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "tests.test_api_exceptions.BrokenToolConnector"}}
    pre, failed, post = record(signals.pre_backup), record(signals.backup_failed), record(signals.post_backup)
    with pytest.raises(CommandConnectorError, match="dump tool broke"):
        call("dbbackup", "-d", "default", "--noinput", "-q")
    [call_args] = failed.calls
    assert set(call_args) == {*pre.calls[0], "exception"}
    assert {key: call_args[key] for key in pre.calls[0]} == pre.calls[0]
    assert call_args["sender"] is dbbackup_command.Command
    assert isinstance(call_args["exception"], CommandConnectorError)
    assert "dump tool broke" in str(call_args["exception"])
    assert post.calls == []
    assert get_storage().list_directory() == []


def test_a_raising_failure_receiver_never_hides_the_original_error(backup_dir, record, settings, caplog):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "tests.test_api_exceptions.BrokenToolConnector"}}
    record(signals.backup_failed, raises=RuntimeError("the pager is down"))
    after = record(signals.backup_failed)
    with caplog.at_level(logging.WARNING, logger="dbbackup.signals"), pytest.raises(CommandError) as info:
        call("dbbackup", "-d", "default", "--noinput", "-q")
    assert "dump tool broke" in str(info.value)
    assert "pager" not in str(info.value)
    assert len(after.calls) == 1  # every receiver runs
    assert "A backup_failed receiver" in caplog.text
    assert "failed: the pager is down" in caplog.text


def test_a_veto_and_a_success_send_no_failure_signal(backup_dir, record):
    failed = record(signals.backup_failed)
    call("dbbackup", "-d", "default", "--noinput", "-q")
    veto = record(signals.pre_backup, raises=RuntimeError("not now"))
    with pytest.raises(CommandError, match="not now"):
        call("dbbackup", "-d", "default", "--noinput", "-q")
    veto.disconnect()
    assert failed.calls == []


def test_a_corrupt_backup_sends_restore_failed(backup_dir, record):
    call("dbbackup", "-d", "default", "--noinput", "-q")
    name = get_storage().get_latest_backup(database="default", content_type="db")
    flip_a_byte(name)
    pre, failed, post = (
        record(signals.pre_restore),
        record(signals.restore_failed),
        record(signals.post_restore),
    )
    record(signals.restore_failed, raises=ValueError("receiver broke"))
    with pytest.raises(CommandError, match="checksum|corrupt|damaged") as info:
        call("dbrestore", "-d", "default", "--noinput", "-q")
    assert "receiver broke" not in str(info.value)
    [call_args] = failed.calls
    assert set(call_args) == {
        "sender",
        "database",
        "database_name",
        "filename",
        "servername",
        "storage",
        "exception",
    }
    assert {key: call_args[key] for key in pre.calls[0]} == pre.calls[0]
    assert call_args["sender"] is dbrestore_command.Command
    assert call_args["filename"] == name
    assert str(call_args["exception"]) in str(info.value)
    assert post.calls == []


def test_a_failing_media_storage_sends_media_backup_failed(media, record, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.UnreadableStorage", "OPTIONS": {"location": str(media)}},
    }
    pre, failed = record(signals.pre_media_backup), record(signals.media_backup_failed)
    record(signals.media_backup_failed, raises=RuntimeError("receiver broke"))
    with pytest.raises(CommandError, match="I/O error reading photos/a.jpg") as info:
        call("mediabackup", "--noinput", "-q")
    assert "receiver broke" not in str(info.value)
    [call_args] = failed.calls
    assert set(call_args) == {"sender", "servername", "storage", "exception"}
    assert {key: call_args[key] for key in pre.calls[0]} == pre.calls[0]
    assert call_args["sender"] is mediabackup_command.Command
    assert isinstance(call_args["storage"], Storage)
    assert "I/O error" in str(call_args["exception"])
    assert get_storage().list_directory() == []


def test_a_corrupt_media_backup_sends_media_restore_failed(media, record):
    call("mediabackup", "--noinput", "-q")
    name = get_storage().get_latest_backup(content_type="media")
    flip_a_byte(name)
    pre, failed = record(signals.pre_media_restore), record(signals.media_restore_failed)
    post = record(signals.post_media_restore)
    record(signals.media_restore_failed, raises=RuntimeError("receiver broke"))
    with pytest.raises(CommandError) as info:
        call("mediarestore", "--noinput", "-q")
    assert "receiver broke" not in str(info.value)
    [call_args] = failed.calls
    assert set(call_args) == {"sender", "filename", "servername", "storage", "exception"}
    assert {key: call_args[key] for key in pre.calls[0]} == pre.calls[0]
    assert call_args["sender"] is mediarestore_command.Command
    assert call_args["filename"] == name
    assert str(call_args["exception"]) in str(info.value)
    assert post.calls == []


class InterruptedConnector(BaseDBConnector):
    """Its dump is interrupted (Ctrl-C while the dump runs)."""

    extension = "bin"

    def _create_dump(self):
        raise KeyboardInterrupt

    def _restore_dump(self, dump):
        raise AssertionError("not used")


def test_ctrl_c_sends_backup_failed_with_the_keyboard_interrupt(backup_dir, record, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": f"{__name__}.InterruptedConnector"}}
    failed = record(signals.backup_failed)
    with pytest.raises(KeyboardInterrupt):
        call("dbbackup", "-d", "default", "--noinput", "-q")
    [call_args] = failed.calls
    assert isinstance(call_args["exception"], KeyboardInterrupt)
