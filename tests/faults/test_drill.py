"""A restore drill SIGKILLed mid-restore leaves a scratch database; the next drill drops it.

The same for the Django connector's drills, killed after ``migrate`` built the scratch schema.

The drill runs in a child process that reads the backup slowly; it is killed (by PID) while
the restore into its scratch database is under way. The scratch database (PostgreSQL,
MariaDB) or file (SQLite) must then still exist, named after the dead process, and the next
drill must drop it; the real database never changes.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from dbbackup import drill_scratch, manifest, pipeline
from tests.faults.support import (
    child_settings,
    fingerprint,
    kill,
    reap,
    start_command,
    wait_for,
    wait_for_tool,
)
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres", "mysql"])


def bulk(alias: str, count: int) -> None:
    """Rows that make a dump of a few MiB, hardly compressible."""
    Note.objects.using(alias).bulk_create(
        Note(title=f"bulk {number}", body=os.urandom(400).hex(), payload=os.urandom(600), extra={"n": number})
        for number in range(count)
    )


def slow_storage(backup_dir) -> dict:
    """Child settings whose backup storage reads about 1.6 MB/s, whole lines at a time."""
    return child_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
            "dbbackup": {
                "BACKEND": "tests.faults.throttled.ThrottledStorage",
                "OPTIONS": {"location": str(backup_dir), "chunk": 32 * 1024, "delay": 0.02, "lines": True},
            },
        }
    )


def server_scratch(alias: str, pid: int) -> list[str]:
    """The drill scratch databases owned by process ``pid`` on ``alias``'s server."""
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbbackup_drill_%%'")
        else:
            cursor.execute("SHOW DATABASES LIKE 'dbbackup\\_drill\\_%%'")
        return [row[0] for row in cursor.fetchall() if f"_{pid}_" in row[0]]


def drill(alias: str, name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("dbrestore", "--drill", "-d", alias, "-i", name, "--noinput", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.mark.parametrize(
    ("alias", "tool"),
    [
        pytest.param("postgres", "pg_restore", marks=pytest.mark.postgres, id="postgresql"),
        pytest.param("mysql", "mysql", marks=pytest.mark.mysql, id="mariadb"),
    ],
)
def test_a_killed_server_drill_leaves_a_scratch_database_that_the_next_drill_drops(
    backup_dir, settings, tmp_path, alias, tool
):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    bulk(alias, 2000)
    name = pipeline.backup_database(alias).filename
    Note.objects.using(alias).create(title="newer than the backup")
    before = fingerprint(alias)
    proc = start_command(
        "dbrestore", "--drill", "-d", alias, "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )
    # the scratch database first (the tool's --version runs before it), then the restoring tool
    left = wait_for(lambda: server_scratch(alias, proc.pid), timeout=60, what="the scratch database")
    wait_for_tool(proc, tool, timeout=60)
    time.sleep(0.3)
    kill(proc.pid)
    assert reap(proc) == -9
    assert left, "the child had no scratch database while its restore ran"
    assert server_scratch(alias, proc.pid) == left  # a killed drill cannot drop its own
    out = drill(alias, name)
    assert f"Dropped {left[0]}" in out
    assert server_scratch(alias, proc.pid) == []
    assert fingerprint(alias) == before
    assert manifest.last_drill(json.loads((backup_dir / f"{name}.metadata").read_text()))["ok"]


def scratch_tables(alias: str, name: str) -> set[str]:
    """The tables in the scratch database ``name`` on ``alias``'s server."""
    if connections[alias].vendor == "mysql":
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", [name])
            return {row[0] for row in cursor.fetchall()}
    connection = drill_scratch.wrapper(alias, {**connections[alias].settings_dict, "NAME": name})
    try:
        return set(connection.introspection.table_names())
    except Exception:  # not there yet, or being dropped
        return set()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgresql"),
        pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
    ],
)
def test_a_killed_django_connector_drill_leaves_a_scratch_database_that_the_next_drill_drops(
    backup_dir, settings, tmp_path, alias
):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    settings.DBBACKUP_CONNECTORS = {alias: {"CONNECTOR": "dbbackup.db.django.DjangoConnector"}}
    bulk(alias, 4000)
    name = pipeline.backup_database(alias).filename
    Note.objects.using(alias).create(title="newer than the backup")
    before = fingerprint(alias)
    proc = start_command(
        "dbrestore", "--drill", "-d", alias, "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )

    def migrated() -> list[str]:
        if proc.poll() is not None:
            raise AssertionError(f"the drill ended ({proc.returncode}) before it was killed")
        owned = server_scratch(alias, proc.pid)
        return (
            owned if owned and {"testapp_note", "auth_user_groups"} <= scratch_tables(alias, owned[0]) else []
        )

    # migrate built the schema; loaddata then reads the slow backup for seconds
    left = wait_for(migrated, timeout=90, what="the scratch database's schema")
    time.sleep(0.5)
    assert proc.poll() is None
    kill(proc.pid)
    assert reap(proc) == -9
    assert server_scratch(alias, proc.pid) == left  # a killed drill cannot drop its own
    out = drill(alias, name)
    assert f"Dropped {left[0]}" in out
    assert "passed" in out
    assert server_scratch(alias, proc.pid) == []
    assert fingerprint(alias) == before


def test_a_killed_sqlite_drill_leaves_a_scratch_file_that_the_next_drill_removes(
    backup_dir, settings, tmp_path
):
    scratch_dir = tmp_path / "tmp"
    scratch_dir.mkdir()
    settings.DBBACKUP_TMP_DIR = str(scratch_dir)
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "dbbackup.db.sqlite.SqliteConnector"}}
    bulk("default", 3000)
    name = pipeline.backup_database("default").filename
    Note.objects.create(title="newer than the backup")
    before = fingerprint("default")
    connections["default"].close()
    proc = start_command(
        "dbrestore", "--drill", "-d", "default", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )

    def owned() -> list[Path]:
        if proc.poll() is not None:
            raise AssertionError(f"the drill ended ({proc.returncode}) before it was killed")
        return sorted(p for p in scratch_dir.iterdir() if f"-{proc.pid}-" in p.name)

    wait_for(
        lambda: len(owned()) >= 2, timeout=60, what="the drill's scratch files"
    )  # ours + the connector's
    time.sleep(0.3)
    left = owned()
    kill(proc.pid)
    assert reap(proc) == -9
    assert all(path.exists() for path in left)
    assert any("-drill-" in path.name for path in left)
    assert "passed" in drill("default", name)
    assert list(scratch_dir.iterdir()) == []
    assert fingerprint("default") == before


def test_a_killed_media_drill_leaves_a_scratch_folder_that_the_next_drill_removes(
    backup_dir, settings, tmp_path
):
    scratch_dir = tmp_path / "tmp"
    scratch_dir.mkdir()
    media = tmp_path / "media"
    media.mkdir()
    for number in range(4):
        (media / f"file{number}.bin").write_bytes(os.urandom(1024 * 1024))
    settings.DBBACKUP_TMP_DIR = str(scratch_dir)
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}}
    settings.STORAGES = {**settings.STORAGES, "default": backend}
    name = pipeline.backup_media().filename
    before = sorted(p.name for p in media.iterdir())
    proc = start_command(
        "mediarestore", "--drill", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )

    def owned() -> list[Path]:
        if proc.poll() is not None:
            raise AssertionError(f"the drill ended ({proc.returncode}) before it was killed")
        return [
            p
            for p in scratch_dir.iterdir()
            if p.name.startswith(".dbbackup-drill-") and f"-{proc.pid}-" in p.name
        ]

    [left] = wait_for(owned, timeout=60, what="the media drill's scratch folder")
    time.sleep(0.3)
    kill(proc.pid)
    assert reap(proc) == -9
    assert left.is_dir()
    out, err = io.StringIO(), io.StringIO()
    call_command("mediarestore", "--drill", "-i", name, "--noinput", stdout=out, stderr=err)
    assert "passed" in err.getvalue()
    assert list(scratch_dir.iterdir()) == []
    assert sorted(p.name for p in media.iterdir()) == before
