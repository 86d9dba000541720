"""Settings of the test project: SQLite databases, throwaway storage set per test."""

import os
import tempfile
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "dbbackup",
    "tests.testapp",
]

_SCRATCH = Path(os.environ.get("DBBACKUP_TEST_DIR") or tempfile.mkdtemp(prefix="dbbackup-tests-"))

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_SCRATCH / "default.sqlite3"),
        "TEST": {"NAME": str(_SCRATCH / "test-default.sqlite3")},
    },
    "other": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_SCRATCH / "other.sqlite3"),
        "TEST": {"NAME": str(_SCRATCH / "test-other.sqlite3")},
    },
}

from tests.database_servers import server_databases  # noqa: E402 - needs _SCRATCH only

DATABASES.update(server_databases())

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(_SCRATCH / "media")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(_SCRATCH / "backups")},
    },
}

DBBACKUP_HOSTNAME = "testhost"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

if django.VERSION >= (6, 1):  # the mailer setting that replaces EMAIL_BACKEND
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
