"""Restore drills: a backup restored into a scratch database, checked, dropped, and recorded."""

from __future__ import annotations

import io
import json
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import drill_scratch, manifest, pipeline
from dbbackup.exceptions import DbbackupError, MetadataError
from dbbackup.storage import get_storage
from tests.faults.support import fingerprint
from tests.helpers import add_known_data
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres", "mysql"])

SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
]


def command(*args: str) -> str:
    """Run a command; its stdout and stderr (where progress messages go) together."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, "--noinput", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def use_media(settings, media) -> None:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}}
    settings.STORAGES = {**settings.STORAGES, "default": backend}


def listing(*args: str) -> str:
    out = io.StringIO()
    call_command("listbackups", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def sidecar(backup_dir, name: str) -> dict:
    return json.loads((backup_dir / f"{name}.metadata").read_text())


def drill_databases(alias: str) -> list[str]:
    """The drill scratch databases this process owns on ``alias``'s server."""
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbbackup%%'")
        else:
            cursor.execute("SHOW DATABASES LIKE 'dbbackup%%'")
        names = [row[0] for row in cursor.fetchall()]
    return [name for name in names if f"_{os.getpid()}_" in name]


def test_sqlite_drill_passes_records_rows_and_leaves_the_database_alone(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    add_known_data("default", count=4)
    name = pipeline.backup_database("default").filename
    Note.objects.create(title="after the backup")
    before = fingerprint("default")
    out = command("dbrestore", "--drill", "-d", "default")
    assert f"Drill of {name} passed" in out
    assert fingerprint("default") == before
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is True
    assert drill["error"] is None
    assert drill["rows"]["testapp_note"] == 4  # the backup's rows, not the live database's 5
    assert "auth_user" in drill["rows"]
    assert drill["tools"]["sqlite3"]
    assert drill["seconds"] >= 0
    assert os.listdir(tmp_path / "tmp") == []  # the scratch file is gone
    command("dbrestore", "-d", "default", "-i", name)  # the recorded drill does not hinder a restore
    assert Note.objects.count() == 4


@pytest.mark.parametrize("alias", SERVERS)
def test_server_drill_restores_into_a_scratch_database_and_drops_it(backup_dir, alias):
    add_known_data(alias, count=3)
    name = pipeline.backup_database(alias).filename
    Note.objects.using(alias).create(title="after the backup")
    before = fingerprint(alias)
    out = command("dbrestore", "--drill", "-d", alias, "-i", name)
    assert "passed" in out
    assert fingerprint(alias) == before
    assert drill_databases(alias) == []
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is True
    assert drill["rows"]["testapp_note"] == 3
    tool = "pg_restore" if alias == "postgres" else "mysql"
    assert tool in drill["tools"]
    assert drill["tools"][tool]


@pytest.mark.parametrize("alias", ["default", *SERVERS])
def test_a_damaged_backup_fails_its_drill_and_the_failure_is_recorded(backup_dir, alias, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    add_known_data(alias, count=3)
    name = pipeline.backup_database(alias).filename
    path = backup_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    before = fingerprint(alias)
    with pytest.raises(CommandError, match=rf"Drill of {name} FAILED: .*(checksum|SHA-256)"):
        command("dbrestore", "--drill", "-d", alias)
    assert fingerprint(alias) == before
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is False
    assert "SHA-256" in drill["error"] or "checksum" in drill["error"]
    assert "\n" not in drill["error"]
    if alias != "default":
        assert drill_databases(alias) == []


def test_listbackups_shows_the_drill_last_and_in_json(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    drilled = pipeline.backup_database("default").filename
    command("dbrestore", "--drill", "-d", "default", "-i", drilled)
    lines = listing().splitlines()
    assert lines[0].split()[-1] == "Drill"
    assert lines[0].split() == ["Name", "Datetime", "Type", "Database", "Server", "Size", "Drill"]
    row = next(line for line in lines if line.startswith(drilled))
    assert row.split()[-3] == "ok"
    entry = next(e for e in json.loads(listing("--format", "json")) if e["name"] == drilled)
    assert entry["drill"]["ok"] is True
    assert entry["drill"]["at"]


def test_listbackups_shows_failed_drills(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    name = pipeline.backup_database("default").filename
    (backup_dir / name).write_bytes(b"garbage")
    with pytest.raises(CommandError):
        command("dbrestore", "--drill", "-d", "default", "-i", name)
    row = next(line for line in listing().splitlines() if line.startswith(name))
    assert " FAILED " in row


def test_a_backup_without_a_sidecar_is_drilled_but_nothing_is_recorded(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    name = pipeline.backup_database("default").filename
    (backup_dir / f"{name}.metadata").unlink()
    out = command("dbrestore", "--drill", "-d", "default", "-i", name)
    assert "passed" in out
    assert "not recorded: the backup has no sidecar" in out
    assert not (backup_dir / f"{name}.metadata").exists()


def test_a_local_file_drill_is_recorded_in_its_sidecar(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    name = pipeline.backup_database("default").filename
    local = tmp_path / name
    local.write_bytes((backup_dir / name).read_bytes())
    (tmp_path / f"{name}.metadata").write_bytes((backup_dir / f"{name}.metadata").read_bytes())
    command("dbrestore", "--drill", "-d", "default", "-I", str(local))
    assert manifest.last_drill(json.loads((tmp_path / f"{name}.metadata").read_text()))["ok"] is True
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_a_connector_without_drill_support_is_refused_clearly():
    from dbbackup.db.mongodb import MongoDumpConnector

    with pytest.raises(DbbackupError, match="Restore drills support the PostgreSQL, MySQL/MariaDB, SQLite"):
        drill_scratch.engine_family(MongoDumpConnector("default"))


def test_a_drill_sends_no_restore_signals(backup_dir, settings, tmp_path, record):
    from dbbackup import signals

    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    pipeline.backup_database("default")
    pre, post = record(signals.pre_restore), record(signals.post_restore)
    command("dbrestore", "--drill", "-d", "default")
    assert pre.calls == []
    assert post.calls == []


def test_media_drill_extracts_checks_records_and_removes_its_folder(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "a.txt").write_text("a")
    (media / "sub" / "b.bin").write_bytes(os.urandom(3000))
    use_media(settings, media)
    name = pipeline.backup_media().filename
    (media / "a.txt").write_text("changed")
    out = command("mediarestore", "--drill")
    assert f"Drill of {name} passed" in out
    assert "2 file(s)" in out
    assert (media / "a.txt").read_text() == "changed"
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["ok"] is True
    assert drill["rows"]["files"] == 2
    assert os.listdir(tmp_path / "tmp") == []


def test_a_damaged_media_backup_fails_its_drill(backup_dir, settings, tmp_path):
    settings.DBBACKUP_TMP_DIR = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_bytes(os.urandom(5000))
    use_media(settings, media)
    name = pipeline.backup_media().filename
    path = backup_dir / name
    data = bytearray(path.read_bytes())
    data[700] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="FAILED"):
        command("mediarestore", "--drill")
    assert manifest.last_drill(sidecar(backup_dir, name))["ok"] is False
    assert os.listdir(tmp_path / "tmp") == []


def test_record_drill_keeps_upstream_sidecars_untouched_and_last_drill_reads_it():
    upstream = {"engine": "django.db.backends.sqlite3", "connector": "x"}
    with pytest.raises(MetadataError):
        manifest.record_drill(upstream, {"at": "2026-12-01T03:00:00+00:00", "ok": True})
    assert manifest.last_drill(upstream) is None
    assert manifest.last_drill(None) is None
    ours = {"dbbackup": {"sha256": "0" * 64, "size": 1}}
    drill = {"at": "2026-12-01T03:00:00+00:00", "ok": False, "error": "boom", "rows": {}, "tools": {}}
    recorded = manifest.record_drill(ours, drill)
    assert manifest.last_drill(recorded) == drill
    assert "drill" not in ours["dbbackup"]  # a copy
    assert manifest.last_drill({"dbbackup": {"drill": {"ok": "yes"}}}) is None


def test_an_encrypted_compressed_backup_is_drilled_with_its_passphrase(backup_dir, gpg_settings, tmp_path):
    from tests import gpg

    gpg_settings.DBBACKUP_TMP_DIR = str(tmp_path)
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    add_known_data("default", count=2)
    command("dbbackup", "-d", "default", "-z", "-e")
    with pytest.raises(CommandError, match="FAILED"):
        command("dbrestore", "--drill", "-d", "default", "-c", "-p", "wrong passphrase")
    out = command("dbrestore", "--drill", "-d", "default", "-c", "-p", gpg.PASSPHRASE)
    assert "passed" in out


@pytest.mark.postgres
def test_a_drill_without_the_right_to_create_a_database_says_so_in_one_line(backup_dir, settings):
    role = f"dbbackup_drill_nocreate_{os.getpid()}"
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        name = pipeline.backup_database("postgres").filename
        settings.DBBACKUP_CONNECTORS = {"postgres": {"USER": role}}
        with pytest.raises(CommandError) as raised:
            command("dbrestore", "--drill", "-d", "postgres", "-i", name)
        message = str(raised.value)
        assert "Could not create the scratch database" in message
        assert "permission denied" in message
        assert "CREATEDB" in message
        assert "\n" not in message
        assert manifest.last_drill(sidecar(backup_dir, name))["ok"] is False
    finally:
        with connections["postgres"].cursor() as cursor:
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_model_table_missing_from_the_backup_fails_the_drill(backup_dir, settings, tmp_path, monkeypatch):
    from dbbackup.pipeline import drill

    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    name = pipeline.backup_database("default").filename
    real = drill.model_tables
    monkeypatch.setattr(drill, "model_tables", lambda alias: [*real(alias), "testapp_not_in_the_backup"])
    with pytest.raises(CommandError, match="lacks 1 model table.*testapp_not_in_the_backup"):
        command("dbrestore", "--drill", "-d", "default", "-i", name)
    assert manifest.last_drill(sidecar(backup_dir, name))["ok"] is False


@pytest.mark.postgres
def test_the_plain_sql_postgresql_connector_is_drilled_too(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"CONNECTOR": "dbbackup.db.postgresql.PgDumpConnector"}}
    add_known_data("postgres", count=2)
    name = pipeline.backup_database("postgres").filename
    before = fingerprint("postgres")
    assert "passed" in command("dbrestore", "--drill", "-d", "postgres", "-i", name)
    assert fingerprint("postgres") == before
    drill = manifest.last_drill(sidecar(backup_dir, name))
    assert drill["rows"]["testapp_note"] == 2
    assert "psql" in drill["tools"]
    assert drill_databases("postgres") == []


def test_ignore_metadata_drills_a_backup_with_a_damaged_sidecar_and_leaves_it_alone(
    backup_dir, settings, tmp_path
):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    name = pipeline.backup_database("default").filename
    (backup_dir / f"{name}.metadata").write_text("{not json")
    with pytest.raises(CommandError, match="damaged"):
        command("dbrestore", "--drill", "-d", "default", "-i", name)
    out = command("dbrestore", "--drill", "-d", "default", "-i", name, "--ignore-metadata")
    assert "passed" in out
    assert "not recorded: the sidecar is not a JSON object" in out
    assert (backup_dir / f"{name}.metadata").read_text() == "{not json"


def test_the_outcome_is_recorded_in_a_storage_that_cannot_rename(settings, tmp_path):
    from dbbackup import catalog

    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    name = pipeline.backup_database("default").filename
    assert "passed" in command("dbrestore", "--drill", "-d", "default", "-i", name)
    storage = get_storage()
    metadata = catalog.read_metadata(storage, name)
    assert manifest.last_drill(metadata)["ok"] is True
    assert manifest.integrity(metadata)[0]  # the rest of the sidecar is kept
    assert sorted(storage.walk()) == [name, f"{name}.metadata"]


def test_a_hostile_media_archive_fails_its_drill_and_writes_nothing_outside(backup_dir, settings, tmp_path):
    import tarfile

    settings.DBBACKUP_TMP_DIR = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    name = "testhost-2026-01-01-000000.tar"
    backup_dir.mkdir(exist_ok=True)
    with tarfile.open(backup_dir / name, "w") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(CommandError, match=r"Drill of .* FAILED: .*escaped\.txt"):
        command("mediarestore", "--drill", "-i", name)
    assert not (tmp_path / "escaped.txt").exists()
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.mysql
def test_a_mysql_drill_without_a_sidecar_checks_the_dump_completed_line(backup_dir):
    add_known_data("mysql", count=2)
    name = pipeline.backup_database("mysql").filename
    (backup_dir / f"{name}.metadata").unlink()
    assert "passed" in command("dbrestore", "--drill", "-d", "mysql", "-i", name)
    path = backup_dir / name
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rindex(b"-- Dump completed")])  # valid SQL, cut before the end
    before = fingerprint("mysql")
    with pytest.raises(
        CommandError, match=r"FAILED: The backup does not end with mysqldump's '-- Dump completed'"
    ):
        command("dbrestore", "--drill", "-d", "mysql", "-i", name)
    assert fingerprint("mysql") == before
    assert drill_databases("mysql") == []
