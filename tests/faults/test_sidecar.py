"""How far a restore trusts the ``.metadata`` sidecar beside a backup.

A sidecar is a text file anyone with access to the storage can change. A damaged one (not JSON,
wrong types, dbbackup's record without its checksum or size) refuses the restore unless the
user says ``--ignore-metadata``; django-dbbackup's own sidecars (no checksum) are not damaged.
The connector a sidecar names is imported only when it is built in or configured, and never
gets a format it cannot read.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import pipeline
from dbbackup.exceptions import MetadataError
from tests.faults.support import debris, fingerprint
from tests.helpers import add_known_data
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

CONNECTORS = {
    "backup-api": "dbbackup.db.sqlite.SqliteBackupConnector",
    "sql-text": "dbbackup.db.sqlite.SqliteConnector",
    "file-copy": "dbbackup.db.sqlite.SqliteCPConnector",
    "django": "dbbackup.db.django.DjangoConnector",
}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def make_backup(settings, backup_dir: Path, connector: str, name: str = "x.bak") -> tuple[Path, str]:
    """A backup with ``connector``; returns it and the fingerprint it restores (the DB then changes)."""
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": connector}}
    add_known_data()
    run("dbbackup", "-d", "default", "-o", name, "--noinput")
    restored = fingerprint("default")
    Note.objects.create(title="written after the backup")
    return backup_dir / name, restored


def edit_sidecar(path: Path, change) -> None:
    sidecar = Path(f"{path}.metadata")
    metadata = json.loads(sidecar.read_text())
    change(metadata)
    sidecar.write_text(json.dumps(metadata))


def flip_a_letter(path: Path) -> None:
    data = bytearray(path.read_bytes())
    # the last ASCII letter of the file: row data, past every header (free pages may be blank)
    position = next(
        index
        for index in range(len(data) - 1, 100, -1)
        if chr(data[index]).isascii() and chr(data[index]).isalpha()
    )
    data[position] ^= 0x20  # invisible to any format check: only a checksum sees it
    path.write_bytes(bytes(data))


DAMAGED = {
    "invalid-json": lambda path: Path(f"{path}.metadata").write_text('{"engine": "django.db.backends'),
    "not-an-object": lambda path: Path(f"{path}.metadata").write_text("[1, 2]"),
    "sha256-null": lambda path: edit_sidecar(path, lambda m: m["dbbackup"].update(sha256=None)),
    "sha256-missing": lambda path: edit_sidecar(path, lambda m: m["dbbackup"].pop("sha256")),
    "sha256-number": lambda path: edit_sidecar(path, lambda m: m["dbbackup"].update(sha256=123)),
    "size-missing": lambda path: edit_sidecar(path, lambda m: m["dbbackup"].pop("size")),
    "size-string": lambda path: edit_sidecar(path, lambda m: m["dbbackup"].update(size="12")),
    "record-string": lambda path: edit_sidecar(path, lambda m: m.update(dbbackup="yes")),
    "engine-number": lambda path: edit_sidecar(path, lambda m: m.update(engine=5)),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_a_damaged_sidecar_refuses_the_restore(settings, backup_dir, connector, damage):
    path, _ = make_backup(settings, backup_dir, connector)
    flip_a_letter(path)  # what the checksum would have caught
    DAMAGED[damage](path)
    before = fingerprint("default")
    with pytest.raises(CommandError, match=r"sidecar .* is damaged.*--ignore-metadata"):
        run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == before


@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_a_wrong_size_in_the_sidecar_refuses_the_restore(settings, backup_dir, connector):
    path, _ = make_backup(settings, backup_dir, connector)
    edit_sidecar(path, lambda m: m["dbbackup"].update(size=m["dbbackup"]["size"] + 1))
    before = fingerprint("default")
    with pytest.raises(CommandError, match="metadata says"):
        run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == before


@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_ignore_metadata_restores_by_format_alone(settings, backup_dir, connector):
    path, restored = make_backup(settings, backup_dir, connector)
    DAMAGED["invalid-json"](path)
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput", "--ignore-metadata")
    assert fingerprint("default") == restored
    assert "(sidecar ignored: " in err
    assert "checksum verified" not in err


def test_ignore_metadata_still_refuses_what_the_format_shows(settings, backup_dir):
    path, _ = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    path.write_bytes(path.read_bytes()[:-100])
    DAMAGED["sha256-null"](path)
    before = fingerprint("default")
    with pytest.raises(CommandError, match="truncated"):
        run("dbrestore", "-d", "default", "-i", path.name, "--noinput", "--ignore-metadata")
    assert fingerprint("default") == before


def test_ignore_metadata_in_the_python_api(settings, backup_dir):
    path, restored = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    DAMAGED["sha256-null"](path)
    with pytest.raises(MetadataError):
        pipeline.restore_database("default", input_filename=path.name)
    result = pipeline.restore_database("default", input_filename=path.name, ignore_metadata=True)
    assert not result.verified
    assert result.checked == "sidecar ignored: checked as a well-formed SQLite database only"
    assert fingerprint("default") == restored


def test_a_damaged_sidecar_beside_a_local_file_refuses_too(settings, backup_dir, tmp_path):
    settings.DBBACKUP_CONNECTORS = {}
    add_known_data()
    local = tmp_path / "local.sqlite3"
    run("dbbackup", "-d", "default", "-O", str(local), "--noinput")
    Path(f"{local}.metadata").write_text("not json")
    before = fingerprint("default")
    with pytest.raises(CommandError, match="is damaged"):
        run("dbrestore", "-d", "default", "-I", str(local), "--noinput")
    assert fingerprint("default") == before


@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_an_upstream_sidecar_without_checksum_is_not_damaged(settings, backup_dir, connector):
    """django-dbbackup 5.4 writes only engine and connector: no checksum, format checks apply."""
    path, restored = make_backup(settings, backup_dir, connector)
    edit_sidecar(path, lambda m: m.pop("dbbackup"))
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == restored
    assert "(no checksum: " in err


def test_a_checksum_is_reported_only_when_it_was_verified(settings, backup_dir):
    path, _ = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert "(checksum verified)" in err
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput", "--verify-only")
    assert "checksum verified" in err


def test_mediarestore_refuses_a_damaged_sidecar_unless_told(settings, backup_dir, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("hello")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    run("mediabackup", "-o", "m.tar", "--noinput")
    Path(backup_dir / "m.tar.metadata").write_text("{broken")
    (media / "a.txt").unlink()
    with pytest.raises(CommandError, match="is damaged"):
        run("mediarestore", "-i", "m.tar", "--noinput")
    assert not (media / "a.txt").exists()
    run("mediarestore", "-i", "m.tar", "--noinput", "--ignore-metadata")
    assert (media / "a.txt").read_text() == "hello"


# -- the connector a sidecar names -------------------------------------------------------------


@pytest.mark.parametrize("named", ["tests.faults.hostile_connector.Connector", "this.s"])
def test_a_sidecar_cannot_make_dbbackup_import_a_module(settings, backup_dir, tmp_path, monkeypatch, named):
    mark = tmp_path / "imported"
    monkeypatch.setenv("DBBACKUP_HOSTILE_MARK", str(mark))
    module = named.rsplit(".", 1)[0]
    assert module not in sys.modules
    path, restored = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    edit_sidecar(path, lambda m: m.update(connector=named))
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert module not in sys.modules
    assert not mark.exists()
    assert "was not imported" in err
    assert fingerprint("default") == restored


def test_only_the_built_in_connector_classes_are_trusted_not_any_dbbackup_path(settings, backup_dir):
    path, restored = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    edit_sidecar(path, lambda m: m.update(connector="dbbackup.db.base.BaseDBConnector"))
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert "'dbbackup.db.base.BaseDBConnector', which is neither built in nor configured" in err
    assert fingerprint("default") == restored


def test_a_connector_the_settings_name_is_trusted(settings, backup_dir, tmp_path, monkeypatch):
    mark = tmp_path / "imported"
    monkeypatch.setenv("DBBACKUP_HOSTILE_MARK", str(mark))
    path, restored = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    settings.DBBACKUP_CONNECTORS = {"other": {"CONNECTOR": "tests.faults.hostile_connector.Connector"}}
    edit_sidecar(path, lambda m: m.update(connector="tests.faults.hostile_connector.Connector"))
    try:
        result = pipeline.restore_database("default", input_filename=path.name)
    finally:
        sys.modules.pop("tests.faults.hostile_connector", None)
    assert result.connector == "tests.faults.hostile_connector.Connector"
    assert mark.exists()
    assert fingerprint("default") == restored


def test_a_sidecar_naming_a_connector_of_another_format_is_corrected_by_the_extension(settings, backup_dir):
    path, restored = make_backup(settings, backup_dir, CONNECTORS["backup-api"], name="x.sqlite3")
    edit_sidecar(path, lambda m: m.update(connector="dbbackup.db.django.DjangoConnector"))
    settings.DBBACKUP_CONNECTORS = {}
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert "this is a .sqlite3 file; using the configured dbbackup.db.sqlite.SqliteBackupConnector" in err
    assert fingerprint("default") == restored


def test_a_sidecar_never_hands_a_file_to_a_connector_that_cannot_read_its_format(settings, backup_dir):
    path, _ = make_backup(settings, backup_dir, CONNECTORS["backup-api"], name="x.json")
    edit_sidecar(path, lambda m: m.update(connector="dbbackup.db.django.DjangoConnector"))
    settings.DBBACKUP_CONNECTORS = {}
    before = fingerprint("default")
    refusal = "is a SQLite database file, which dbbackup.db.django.DjangoConnector cannot restore"
    with pytest.raises(CommandError, match=refusal):
        run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == before
    assert debris(Path(connections["default"].settings_dict["NAME"]).parent) == []


# -- PostgreSQL: a custom-format archive goes to pg_restore only ------------------------------


def _pg_backup(settings, backup_dir: Path, name: str) -> tuple[Path, str]:
    settings.DBBACKUP_CONNECTORS = {}
    add_known_data("postgres")
    run("dbbackup", "-d", "postgres", "-o", name, "--noinput")
    restored = fingerprint("postgres")
    Note.objects.using("postgres").create(title="written after the backup")
    path = backup_dir / name
    assert path.read_bytes().startswith(b"PGDMP")
    edit_sidecar(path, lambda m: m.update(connector="dbbackup.db.postgresql.PgDumpConnector"))
    return path, restored


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_pg_a_custom_archive_whose_sidecar_names_psql_goes_to_pg_restore(settings, backup_dir):
    path, restored = _pg_backup(settings, backup_dir, "x.psql.bin")
    _, err = run("dbrestore", "-d", "postgres", "-i", path.name, "--noinput")
    assert "using the configured dbbackup.db.postgresql.PgDumpBinaryConnector" in err
    assert fingerprint("postgres") == restored


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_pg_a_custom_archive_is_never_fed_to_psql(settings, backup_dir):
    path, _ = _pg_backup(settings, backup_dir, "x.psql")  # the name agrees with the sidecar
    before = fingerprint("postgres")
    with pytest.raises(CommandError, match="is a PostgreSQL custom-format archive, which .*PgDumpConnector"):
        run("dbrestore", "-d", "postgres", "-i", path.name, "--noinput")
    assert fingerprint("postgres") == before


# -- an empty stream is never a backup, whatever reads it ---------------------------------------


def test_an_empty_media_backup_is_refused_before_any_file_is_written(backup_dir):
    backup_dir.mkdir(exist_ok=True)
    (backup_dir / "empty.tar").write_bytes(b"")
    with pytest.raises(CommandError, match="empty.tar is empty"):
        run("mediarestore", "-i", "empty.tar", "--noinput")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("name", ["empty.psql.bin", "empty.psql.bin.gz"])
def test_pg_an_empty_backup_is_refused_before_the_restore_tool_starts(settings, backup_dir, name):
    settings.DBBACKUP_CONNECTORS = {}
    add_known_data("postgres")
    backup_dir.mkdir(exist_ok=True)
    (backup_dir / name).write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    before = fingerprint("postgres")
    with pytest.raises(CommandError, match=f"{name} is empty"):
        run("dbrestore", "-d", "postgres", "-i", name, "--noinput")
    assert fingerprint("postgres") == before


def test_verify_only_without_checksum_does_not_claim_format_checks_it_did_not_run(settings, backup_dir):
    path, _ = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    Path(f"{path}.metadata").unlink()
    _, err = run("dbrestore", "-d", "default", "-i", path.name, "--noinput", "--verify-only")
    assert "(no checksum: read to its end only; its format is fully checked when it is restored)" in err
