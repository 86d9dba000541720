import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from dbbackup.checks import check_settings


def ids(settings_overrides=None):
    return sorted(problem.id for problem in check_settings())


def test_a_sound_configuration_has_no_problems():
    assert ids() == []


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("DBBACKUP_HOSTNAME", "", "dbbackup.W001"),
        ("DBBACKUP_FILENAME_TEMPLATE", "{databasename}.{extension}", "dbbackup.W003"),
        ("DBBACKUP_MEDIA_FILENAME_TEMPLATE", "media.{extension}", "dbbackup.W004"),
        ("DBBACKUP_DATE_FORMAT", "%Y-%Z", "dbbackup.W005"),
        ("DBBACKUP_FILENAME_TEMPLATE", 3, "dbbackup.E001"),
    ],
)
def test_each_problem_has_its_stable_id(settings, setting, value, expected):
    setattr(settings, setting, value)
    assert ids() == [expected]


def test_missing_backup_storage_is_reported_with_its_default_location(settings, tmp_path):
    settings.STORAGES = {"default": settings.STORAGES["default"]}
    settings.BASE_DIR = tmp_path
    [problem] = check_settings()
    assert problem.id == "dbbackup.W011"
    assert str(tmp_path / "backups") in problem.msg


def test_checks_are_registered_with_manage_py_check(settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = 3
    with pytest.raises(SystemCheckError, match="dbbackup.E001"):
        call_command("check", "--tag", "dbbackup", "--tag", "compatibility", "--fail-level", "WARNING")


@pytest.mark.django_db(databases="__all__")  # Django 6 checks connect to every database
def test_dbbackup_problems_are_warnings_that_never_stop_a_command(settings, capsys):
    settings.DBBACKUP_FILENAME_TEMPLATE = 3
    settings.DBBACKUP_CONNECTORS = {"default": {"NOT_A_KEY": 1}}
    call_command("check")  # an Error would raise SystemCheckError (and stop migrate, runserver, test)
    err = capsys.readouterr().err
    assert "WARNINGS:" in err
    assert "(dbbackup.E001)" in err
    assert "(dbbackup.E002)" in err
    assert "ERRORS:" not in err


def test_a_check_that_crashes_is_a_warning(settings, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr("dbbackup.names.datefmt_to_regex", broken)
    [problem] = check_settings()
    assert problem.id == "dbbackup.W019"
    assert "boom" in problem.msg


def test_legacy_storage_settings_are_reported(settings):
    settings.DBBACKUP_STORAGE = "storages.backends.s3.S3Storage"
    settings.DBBACKUP_STORAGE_OPTIONS = {"bucket_name": "x"}
    assert ids() == ["dbbackup.W012", "dbbackup.W012"]


def test_a_media_path_other_than_media_root_is_reported_as_ignored(settings):
    settings.MEDIA_ROOT = "/srv/media"
    settings.DBBACKUP_MEDIA_PATH = "/srv/media"
    assert ids() == []
    settings.DBBACKUP_MEDIA_PATH = "/srv/elsewhere"
    assert ids() == ["dbbackup.W013"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("DBBACKUP_FILENAME_TEMPLATE", 3, "must be a format string or a callable"),  # E001
        ("DBBACKUP_CONNECTORS", {"default": {"NOT_A_KEY": 1}}, "NOT_A_KEY"),  # E002
    ],
)
def test_what_a_check_warns_about_stops_the_backup_with_one_line(
    backup_dir, settings, setting, value, message
):
    import io

    from django.core.management.base import CommandError

    setattr(settings, setting, value)
    with pytest.raises(CommandError, match=message):
        call_command("dbbackup", "-d", "default", stdout=io.StringIO(), stderr=io.StringIO())
    assert list(backup_dir.glob("*")) == []
