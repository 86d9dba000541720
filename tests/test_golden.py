"""Backups made by the released django-dbbackup 5.4 restore with this package.

The files in ``tests/fixtures/golden/`` were made by ``tests/golden/make_fixtures.py`` (every
connector, plain, ``-z``, ``-e`` and ``-z -e``, with the sidecars django-dbbackup writes). Each
is restored here into the test database of its engine, or into an empty media storage, and
compared with the known dataset of ``tests/golden/dataset.py``. No ``-z``/``-c`` flag is given:
this package recognises compression and encryption by itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dbbackup import pipeline
from tests import gpg
from tests.golden import dataset
from tests.testapp.models import Note

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SUFFIXES = ["", ".gz", ".gpg", ".gz.gpg"]
#: django-dbbackup 5.4 cannot make these itself (see tests/fixtures/golden/README.md)
UPSTREAM_CANNOT = {"sqlite-cp.sqlite3.gpg"}
DATABASE_FIXTURES = [
    ("default", "dbbackup.db.sqlite.SqliteBackupConnector", "sqlite-backup.sqlite3", ()),
    ("default", "dbbackup.db.sqlite.SqliteConnector", "sqlite-sql.sqlite3", ()),
    ("default", "dbbackup.db.sqlite.SqliteCPConnector", "sqlite-cp.sqlite3", ()),
    (
        "postgres",
        "dbbackup.db.postgresql.PgDumpBinaryConnector",
        "pg-binary.psql.bin",
        (pytest.mark.postgres,),
    ),
    ("postgres", "dbbackup.db.postgresql.PgDumpConnector", "pg-plain.psql", (pytest.mark.postgres,)),
    ("mysql", "dbbackup.db.mysql.MysqlDumpConnector", "mysql.mysql", (pytest.mark.mysql,)),
]
DATABASE_CASES = [
    pytest.param(
        alias,
        connector,
        name + suffix,
        # only the alias the case needs: the others may have no server here
        marks=[*marks, pytest.mark.django_db(transaction=True, databases=[alias])],
        id=name + suffix,
    )
    for alias, connector, name, marks in DATABASE_FIXTURES
    for suffix in SUFFIXES
    if name + suffix not in UPSTREAM_CANNOT
]
MEDIA_CASES = ["media.tar", "media.tar.gz", "media.tar.gpg", "media.tar.gz.gpg"]


@pytest.fixture(scope="session")
def golden_keyring(tmp_path_factory):
    """A throwaway GNUPGHOME holding the golden secret key (no passphrase)."""
    home = tmp_path_factory.mktemp("gnupg") / "golden"
    home.mkdir(mode=0o700)
    gpg.gpg(home, "--import", str(GOLDEN / "gpg" / "secret.asc"))
    yield home
    gpg.stop_agent(home)


@pytest.fixture
def golden_copy(tmp_path):
    """Copy a fixture (and its sidecar) out of the repository, so that nothing writes there."""

    def copy(name: str) -> Path:
        target = tmp_path / "in"
        target.mkdir(exist_ok=True)
        shutil.copy(GOLDEN / name, target / name)
        if (GOLDEN / f"{name}.metadata").exists():
            shutil.copy(GOLDEN / f"{name}.metadata", target / f"{name}.metadata")
        return target / name

    return copy


def test_every_fixture_is_covered():
    listed = {case.values[2] for case in DATABASE_CASES} | set(MEDIA_CASES)
    on_disk = {
        path.name for path in GOLDEN.iterdir() if path.is_file() and path.suffix not in {".metadata", ".md"}
    }
    assert on_disk == listed
    for name in listed - set(MEDIA_CASES):
        assert (GOLDEN / f"{name}.metadata").is_file(), name
    assert sum(path.stat().st_size for path in GOLDEN.rglob("*") if path.is_file()) < 2 * 1024 * 1024


@pytest.mark.parametrize(("alias", "connector", "name"), DATABASE_CASES)
def test_restore_golden_database_backup(
    alias, connector, name, settings, backup_dir, golden_keyring, golden_copy
):
    settings.DBBACKUP_GPG_HOME = str(golden_keyring)
    settings.DBBACKUP_CONNECTORS = {alias: {"CONNECTOR": connector}}
    Note.objects.using(alias).create(title="not in the backup")  # replaced by the restore

    pipeline.restore_database(alias, input_path=str(golden_copy(name)))

    assert dataset.dump(Note, alias) == dataset.expected()
    # the sequences came back too: the next row does not collide with a restored id
    assert Note.objects.using(alias).create(title="after").id > max(row["id"] for row in dataset.NOTES)


@pytest.mark.django_db(transaction=True, databases=["default"])
@pytest.mark.parametrize("name", MEDIA_CASES)
def test_restore_golden_media_backup(name, settings, tmp_path, backup_dir, golden_keyring, golden_copy):
    settings.DBBACKUP_GPG_HOME = str(golden_keyring)
    media = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }

    pipeline.restore_media(input_path=str(golden_copy(name)))

    restored = {
        path.relative_to(media).as_posix(): path.read_bytes() for path in media.rglob("*") if path.is_file()
    }
    assert restored == dataset.MEDIA


def test_golden_key_is_the_one_the_fixtures_use(golden_keyring):
    listed = gpg.gpg(golden_keyring, "--list-secret-keys", "--with-colons")
    assert "golden@example.com" in listed
    packets = subprocess.run(
        ["gpg", "--homedir", str(golden_keyring), "--batch", "--list-packets", str(GOLDEN / "media.tar.gpg")],
        capture_output=True,
        check=False,
    )
    assert packets.returncode == 0, packets.stderr.decode()


@pytest.mark.django_db(transaction=True, databases=["default"])
@pytest.mark.parametrize("flags", [(), ("-z", "-c")], ids=["no-flags", "upstream-flags"])
def test_dbrestore_command_reads_golden_file(flags, settings, backup_dir, golden_keyring, golden_copy):
    """As a django-dbbackup user would type it: ``dbrestore -I FILE -z -c`` still works."""
    from django.core.management import call_command

    settings.DBBACKUP_GPG_HOME = str(golden_keyring)
    path = golden_copy("sqlite-backup.sqlite3.gz.gpg")

    call_command("dbrestore", "-d", "default", "-I", str(path), *flags, "--noinput", verbosity=0)

    assert dataset.dump(Note, "default") == dataset.expected()
