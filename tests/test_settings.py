from unittest import mock

import pytest
from django.test import override_settings

from dbbackup import settings
from dbbackup.exceptions import DbbackupConfigurationError


def test_defaults_match_django_dbbackup():
    assert settings.DATE_FORMAT == "%Y-%m-%d-%H%M%S"
    assert settings.FILENAME_TEMPLATE == "{databasename}-{servername}-{datetime}.{extension}"
    assert settings.MEDIA_FILENAME_TEMPLATE == "{servername}-{datetime}.{extension}"
    assert settings.CLEANUP_KEEP == 10
    assert settings.TMP_FILE_MAX_SIZE == 10 * 1024 * 1024
    assert settings.TMP_FILE_READ_SIZE == 1024 * 1000
    assert settings.GPG_ALWAYS_TRUST is False
    assert settings.GPG_RECIPIENT is None
    assert settings.CONNECTORS == {}
    assert settings.CUSTOM_CONNECTOR_MAPPING == {}
    assert settings.SEND_EMAIL is True
    assert settings.EMAIL_SUBJECT_PREFIX == "[dbbackup] "
    assert settings.BACKUP_METADATA_SETTER is None
    assert settings.RESTORE_METADATA_VALIDATOR is None
    assert settings.CLEANUP_KEEP_FILTER("anything") is False


def test_defaults_derived_from_django_settings():
    from django.conf import settings as django_settings

    assert list(django_settings.DATABASES) == settings.DATABASES
    with override_settings(DBBACKUP_CLEANUP_KEEP=3):
        assert settings.CLEANUP_KEEP_MEDIA == 3
    with override_settings(SERVER_EMAIL="ops@example.com", MEDIA_ROOT="/srv/media"):
        assert settings.SERVER_EMAIL == "ops@example.com"
        assert settings.MEDIA_PATH == "/srv/media"


def test_settings_are_read_at_call_time():
    assert settings.HOSTNAME == "testhost"
    with override_settings(DBBACKUP_HOSTNAME="elsewhere", DBBACKUP_CLEANUP_KEEP=2):
        assert settings.HOSTNAME == "elsewhere"
        assert settings.CLEANUP_KEEP == 2
    assert settings.HOSTNAME == "testhost"


def test_module_attribute_can_be_patched_like_django_dbbackup_tests_do():
    with mock.patch("dbbackup.settings.CLEANUP_KEEP", 7):
        assert settings.CLEANUP_KEEP == 7
    assert settings.CLEANUP_KEEP == 10


@pytest.mark.parametrize(
    ("django_settings", "expected"),
    [
        ({"ADMINS": [("A", "a@example.com")]}, [("A", "a@example.com")]),
        ({"DBBACKUP_ADMIN": [("B", "b@example.com")]}, [("B", "b@example.com")]),
        (
            {"DBBACKUP_ADMIN": [("B", "b@example.com")], "DBBACKUP_ADMINS": ["c@example.com"]},
            ["c@example.com"],
        ),
    ],
)
def test_admins_reads_plural_then_singular_then_admins(django_settings, expected):
    with override_settings(**django_settings):
        assert expected == settings.ADMINS


def test_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOPE"):
        settings.NOPE  # noqa: B018


def test_callable_setting_accepts_dotted_paths_and_rejects_junk():
    with override_settings(DBBACKUP_CLEANUP_KEEP_FILTER="os.path.isabs"):
        import os.path

        assert settings.callable_setting("CLEANUP_KEEP_FILTER") is os.path.isabs
    with (
        override_settings(DBBACKUP_CLEANUP_KEEP_FILTER="no.such.module.func"),
        pytest.raises(DbbackupConfigurationError, match="DBBACKUP_CLEANUP_KEEP_FILTER"),
    ):
        settings.callable_setting("CLEANUP_KEEP_FILTER")
    with (
        override_settings(DBBACKUP_CLEANUP_KEEP_FILTER=42),
        pytest.raises(DbbackupConfigurationError, match="must be a callable"),
    ):
        settings.callable_setting("CLEANUP_KEEP_FILTER")
