"""Django settings for one benchmark worker, parameterised by a JSON file.

``DBBACKUP_BENCH_CONFIG`` names the file (``run.py`` writes one per scenario). It holds the
database under test (alias ``"default"``), the storage and temporary directories, the GPG
keyring and recipient, and optionally the connector and compression settings.
"""

import json
import os

_CONFIG = json.loads(open(os.environ["DBBACKUP_BENCH_CONFIG"]).read())  # noqa: SIM115

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["dbbackup"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

DATABASES = {"default": _CONFIG["database"]}
if _CONFIG["database"]["ENGINE"] == "django.db.backends.mysql":
    try:
        import MySQLdb  # noqa: F401
    except ImportError:  # PyMySQL stands in for mysqlclient, as in the test suite
        import pymysql

        pymysql.install_as_MySQLdb()
STORAGES = {
    # The media storage (``mediabackup`` archives it, ``mediarestore`` writes into it).
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": _CONFIG["media_dir"]} if _CONFIG.get("media_dir") else {},
    },
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": _CONFIG["storage_dir"]},
    },
}
if _CONFIG.get("s3"):
    # A local S3 (moto's server): one key prefix per scenario, the storage directory's name.
    STORAGES["dbbackup"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _CONFIG["s3"]["bucket"],
            "endpoint_url": _CONFIG["s3"]["endpoint_url"],
            "access_key": "test",
            "secret_key": "test",
            "region_name": "us-east-1",
            "location": os.path.basename(_CONFIG["storage_dir"]),
        },
    }

DBBACKUP_HOSTNAME = "bench"
DBBACKUP_TMP_DIR = _CONFIG["tmp_dir"]
DBBACKUP_GPG_HOME = _CONFIG["gpg_home"]
DBBACKUP_GPG_RECIPIENT = _CONFIG["gpg_recipient"]
DBBACKUP_GPG_ARMOR = _CONFIG.get("gpg_armor", True)
DBBACKUP_SEND_EMAIL = False
if _CONFIG.get("connector"):
    DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": _CONFIG["connector"]}}
for _name in ("GZIP_LEVEL", "ZSTD_LEVEL", "COMPRESSION_THREADS"):
    if _CONFIG.get(_name.lower()) is not None:
        globals()[f"DBBACKUP_{_name}"] = _CONFIG[_name.lower()]
