"""Settings of the dbbackup demo project.

Everything the demo writes lives in ``tests/demo/.demo/`` (gitignored): the SQLite database,
the media root and the backup storage, a plain ``FileSystemStorage``.
"""

from pathlib import Path

DEMO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = DEMO_ROOT / ".demo"

SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
ROOT_URLCONF = "demoproject.urls"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "dbbackup",
    "demoapp",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "db.sqlite3"),
    },
}

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "media")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "backups")},
    },
}

# A fixed server name keeps backup file names predictable: default-demo-<datetime>.<ext>.
DBBACKUP_HOSTNAME = "demo"
