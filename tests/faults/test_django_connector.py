"""The Django connector (dumpdata/loaddata) killed mid-restore: its transaction never commits.

loaddata reads the whole fixture (to ``b""``, where the checksum is checked) before it writes a
row, and the emptying and loading share one transaction: a kill leaves a hot journal that
SQLite rolls back on the next open (a cold journal may stay behind: SQLite ignores it).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.db import connections

from dbbackup import pipeline
from tests.faults.support import child_settings, fingerprint, kill, reap, start_command, wait_for
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_django_connector_restore_changes_nothing(settings, backup_dir, sig):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "dbbackup.db.django.DjangoConnector"}}
    Note.objects.bulk_create(Note(title=f"n{number}", body=os.urandom(500).hex()) for number in range(2000))
    name = pipeline.backup_database("default").filename
    Note.objects.create(title="newer than the backup")
    before = fingerprint("default")
    journal = Path(connections["default"].settings_dict["NAME"] + "-journal")
    slow = child_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
            "dbbackup": {
                "BACKEND": "tests.faults.throttled.ThrottledStorage",
                "OPTIONS": {"location": str(backup_dir), "chunk": 32 * 1024, "delay": 0.02},
            },
        }
    )
    connections["default"].close()  # no lock of ours in the way
    proc = start_command("dbrestore", "-d", "default", "-i", name, "--noinput", settings=slow)
    wait_for(journal.exists, timeout=30, what="the restore's transaction to start (its journal)")
    time.sleep(0.5)  # half-way through reading the fixture
    kill(proc.pid, sig)
    assert reap(proc) == -sig
    assert fingerprint("default") == before  # SQLite rolled the hot journal back
    with connections["default"].cursor() as cursor:
        cursor.execute("PRAGMA integrity_check")
        assert cursor.fetchone()[0] == "ok"
