"""Configuration faults that must not stop the project, and commands as cron lines call them.

Each runs ``manage.py`` in a child process, as a deployment does: dbbackup's system checks
report problems but never stop ``migrate``; the backup commands refuse them with one line.
"""

import io
import tarfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from dbbackup.storage import get_storage
from tests.faults.support import child_settings, debris, run_command
from tests.helpers import add_known_data

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

COMMANDS = ["dbbackup", "dbrestore", "mediabackup", "mediarestore", "listbackups", "prunebackups"]

BAD_CONNECTOR = {"DBBACKUP_CONNECTORS": {"default": {"NOT_A_KEY": 1}}}


def one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert all(fragment in result.stderr for fragment in fragments), result.stderr


def test_migrate_runs_with_an_unknown_connector_key(backup_dir):
    result = run_command("migrate", "--noinput", settings=child_settings(**BAD_CONNECTOR))
    assert result.returncode == 0, result.stderr
    assert "dbbackup.E002" in result.stderr  # reported, as a warning
    backup = run_command("dbbackup", "-d", "default", "--noinput", settings=child_settings(**BAD_CONNECTOR))
    one_line_error(backup, "CommandError", "NOT_A_KEY")
    assert debris(backup_dir) == []


def test_migrate_runs_with_an_s3_storage_but_no_boto3(backup_dir, tmp_path):
    shadow = tmp_path / "no-boto3"
    (shadow / "boto3").mkdir(parents=True)
    (shadow / "boto3" / "__init__.py").write_text("raise ImportError(\"No module named 'boto3'\")\n")
    from tests.faults.support import ROOT

    s3 = child_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "dbbackup": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "b"}},
        }
    )
    env = {"PYTHONPATH": f"{shadow}:{ROOT}"}
    result = run_command("migrate", "--noinput", settings=s3, env=env)
    assert result.returncode == 0, result.stderr
    assert "dbbackup.E003" in result.stderr
    backup = run_command("dbbackup", "-d", "default", "--noinput", settings=s3, env=env)
    one_line_error(backup, "CommandError", "boto3")


def test_skip_checks_is_accepted_by_every_command(backup_dir):
    for name in COMMANDS:
        parser = load_command_class("dbbackup", name).create_parser("manage.py", name)
        assert parser.parse_args(["--skip-checks"]).skip_checks is True
    add_known_data()
    result = run_command("dbbackup", "-d", "default", "--noinput", "--skip-checks")
    assert result.returncode == 0, result.stderr
    result = run_command("listbackups", "--skip-checks")
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout


def test_mediabackup_refuses_a_media_storage_without_a_folder(tmp_path):
    settings = child_settings(
        BASE_DIR=str(tmp_path),
        MEDIA_ROOT="",
        STORAGES={"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}},
    )
    result = run_command("mediabackup", "--noinput", settings=settings)
    one_line_error(result, "MEDIA_ROOT is empty", "current directory")
    assert list(tmp_path.iterdir()) == []  # not even the default backups folder


def test_mediabackup_leaves_out_backups_kept_inside_the_media_folder(tmp_path, settings, caplog):
    media, backups = tmp_path / "media", tmp_path / "media" / "private" / "backups"
    settings.STORAGES = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(backups)},
        },
    }
    default_storage.save("photos/a.jpg", ContentFile(b"jpeg"))
    default_storage.save("private/notes.txt", ContentFile(b"kept"))
    for _ in range(2):  # the second run sees the first backup in the media folder, and skips it
        call_command("mediabackup", "--noinput", stdout=io.StringIO(), stderr=io.StringIO())
    storage = get_storage()
    archives = storage.list_backups(content_type="media")
    assert len(archives) == 2
    with storage.read_file(archives[-1]) as handle, tarfile.open(fileobj=handle, mode="r|") as archive:
        assert sorted(archive.getnames()) == ["photos/a.jpg", "private/notes.txt"]
    assert "private/backups/ is left out of the media backup" in caplog.text


def test_mediabackup_refuses_backups_stored_in_the_media_folder_itself(tmp_path, settings):
    location = {"location": str(tmp_path / "media")}
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": location},
        "dbbackup": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": location},
    }
    with pytest.raises(CommandError, match="stored in the media folder itself"):
        call_command("mediabackup", "--noinput", stdout=io.StringIO(), stderr=io.StringIO())
