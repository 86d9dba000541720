"""Restore drills of the Django connector (dumpdata/loaddata): a scratch database of the alias's
engine, registered as a temporary alias, built by ``migrate``, loaded, checked, dropped."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Group, User
from django.core.management.base import CommandError
from django.db import connections, router
from django.db.utils import ConnectionDoesNotExist

from dbbackup import drill_alias, manifest, pipeline
from tests.faults.support import fingerprint
from tests.helpers import add_known_data
from tests.test_drill import command, sidecar
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres", "mysql"])

DJANGO = {"CONNECTOR": "dbbackup.db.django.DjangoConnector"}
ALIASES = [
    pytest.param("default", id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
]


def leftovers(alias: str, tmp: os.PathLike) -> list[str]:
    """This process's drill scratch databases on ``alias``'s server, or scratch files in ``tmp``."""
    if connections[alias].vendor == "sqlite":
        return sorted(os.listdir(tmp))
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbbackup_drill%%'")
        else:
            cursor.execute("SHOW DATABASES LIKE 'dbbackup\\_drill%%'")
        return [row[0] for row in cursor.fetchall() if f"_{os.getpid()}_" in row[0]]


@pytest.fixture
def tmp(settings, tmp_path):
    """DBBACKUP_TMP_DIR, an empty folder of its own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    settings.DBBACKUP_TMP_DIR = str(folder)
    return folder


@pytest.fixture
def migrated(monkeypatch) -> list[tuple[str, str]]:
    """(alias, NAME) of every temporary alias a drill migrates."""
    seen: list[tuple[str, str]] = []
    real = drill_alias.migrate

    def spy(alias: str) -> None:
        seen.append((alias, connections[alias].settings_dict["NAME"]))
        real(alias)

    monkeypatch.setattr(drill_alias, "migrate", spy)
    return seen


def assert_gone(migrated: list[tuple[str, str]]) -> None:
    """The temporary aliases are gone from ``connections``, and so is the routing hook."""
    assert migrated
    for alias, _ in migrated:
        with pytest.raises(ConnectionDoesNotExist):
            connections[alias]
    assert "allow_migrate" not in router.__dict__


def add_users(alias: str) -> None:
    """Users in groups: many-to-many rows that loaddata writes through related managers."""
    group = Group.objects.using(alias).create(name="editors")
    for number in range(2):
        user = User.objects.db_manager(alias).create_user(f"user{number}", password="x")
        user.groups.add(group)


@pytest.mark.parametrize("alias", ALIASES)
def test_a_django_connector_drill_passes_on_the_aliases_engine_and_leaves_the_database_alone(
    backup_dir, settings, tmp, alias, migrated
):
    settings.DBBACKUP_CONNECTORS = {alias: DJANGO}
    add_known_data(alias, count=3)
    add_users(alias)
    name = pipeline.backup_database(alias).filename
    assert name.endswith(".json")
    Note.objects.using(alias).create(title="after the backup")
    User.objects.db_manager(alias).get(username="user0").groups.clear()
    before = fingerprint(alias)
    aliases = set(connections.settings)
    assert migrated == []
    out = command("dbrestore", "--drill", "-d", alias, "-i", name)
    assert f"Drill of {name} passed" in out
    assert fingerprint(alias) == before
    assert set(connections.settings) == aliases
    assert_gone(migrated)
    assert leftovers(alias, tmp) == []
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is True
    assert drill["rows"]["testapp_note"] == 3  # the backup's rows, not the live database's 4
    assert drill["rows"]["testapp_tag"] == 3
    assert drill["rows"]["auth_user_groups"] == 2
    assert drill["rows"]["django_content_type"] > 0
    assert drill["tools"]["django"]


def test_a_django_connector_sqlite_drill_uses_a_scratch_file_of_the_tmp_dir(
    backup_dir, settings, tmp, migrated
):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    name = pipeline.backup_database("default").filename
    assert "passed" in command("dbrestore", "--drill", "-d", "default", "-i", name)
    [(_, scratch)] = migrated
    assert os.path.dirname(scratch) == str(tmp)
    assert os.path.basename(scratch).startswith(".dbbackup-")
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("alias", ALIASES)
def test_a_damaged_django_connector_backup_fails_its_drill_clearly(backup_dir, settings, tmp, alias):
    settings.DBBACKUP_CONNECTORS = {alias: DJANGO}
    add_known_data(alias, count=3)
    name = pipeline.backup_database(alias).filename
    path = backup_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    before = fingerprint(alias)
    with pytest.raises(CommandError, match=rf"Drill of {name} FAILED: .*(checksum|SHA-256)"):
        command("dbrestore", "--drill", "-d", alias, "-i", name)
    assert fingerprint(alias) == before
    assert leftovers(alias, tmp) == []
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is False
    assert "\n" not in drill["error"]


def test_a_truncated_fixture_without_a_sidecar_fails_its_drill(backup_dir, settings, tmp):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    add_known_data("default", count=3)
    name = pipeline.backup_database("default").filename
    (backup_dir / f"{name}.metadata").unlink()
    path = backup_dir / name
    path.write_bytes(path.read_bytes()[:-200])
    before = fingerprint("default")
    with pytest.raises(CommandError, match=rf"Drill of {name} FAILED: The fixture could not be loaded"):
        command("dbrestore", "--drill", "-d", "default", "-i", name)
    assert fingerprint("default") == before
    assert os.listdir(tmp) == []


class EverythingToDefault:
    """A project router: every read and write to "default", migrations only there."""

    def db_for_read(self, model, **hints):
        return "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_migrate(self, db, app_label, **hints):
        return db == "default"


def test_routers_see_the_drill_alias_as_the_real_one_and_never_get_its_writes(
    backup_dir, settings, tmp, migrated
):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    settings.DATABASE_ROUTERS = [EverythingToDefault()]
    add_known_data("default", count=2)
    add_users("default")
    name = pipeline.backup_database("default").filename
    for user in User.objects.all():
        user.groups.clear()  # loaddata writing through the router would put them back here
    Note.objects.all().delete()
    before = fingerprint("default")
    assert "passed" in command("dbrestore", "--drill", "-d", "default", "-i", name)
    assert fingerprint("default") == before
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["rows"]["auth_user_groups"] == 2
    assert drill["rows"]["testapp_note"] == 2
    assert_gone(migrated)


def test_a_migration_failure_fails_the_drill_and_drops_the_scratch(backup_dir, settings, tmp, monkeypatch):
    from django.core import management

    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    name = pipeline.backup_database("default").filename
    real = management.call_command

    def failing(name_, *args, **kwargs):
        if name_ == "migrate":
            raise RuntimeError("migration 0042 is broken\nsecond line")
        return real(name_, *args, **kwargs)

    monkeypatch.setattr(drill_alias, "call_command", failing)
    with pytest.raises(
        CommandError, match="could not be built from the project's migrations: migration 0042"
    ):
        command("dbrestore", "--drill", "-d", "default", "-i", name)
    assert os.listdir(tmp) == []
    assert "allow_migrate" not in router.__dict__


def test_drill_connections_never_use_a_connection_pool():
    from dbbackup import drill_scratch

    real = {**connections["default"].settings_dict, "OPTIONS": {"pool": True, "timeout": 5}}
    with drill_alias.temporary_alias("default", real) as alias:
        assert connections[alias].settings_dict["OPTIONS"] == {"timeout": 5}
        assert connections[alias].alias == alias
    assert drill_scratch.wrapper("default", real).settings_dict["OPTIONS"] == {"timeout": 5}
    assert real["OPTIONS"] == {"pool": True, "timeout": 5}  # the real settings are left alone
