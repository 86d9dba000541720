"""Settings for subprocesses of the remote-storage tests: the test settings plus an S3 storage
and the generated-data connector, both described by environment variables."""

import os

from tests.settings import *  # noqa: F403

STORAGES = {
    **STORAGES,  # noqa: F405
    "dbbackup": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["S3_BUCKET"],
            "endpoint_url": os.environ["S3_ENDPOINT"],
            "access_key": "test",
            "secret_key": "test",
            "region_name": "us-east-1",
        },
    },
}
DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "tests.generated_connector.GeneratedConnector"}}
DBBACKUP_TMP_DIR = os.environ["TMPDIR"]
