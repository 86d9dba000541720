"""Backups made by this package restore with the RELEASED django-dbbackup 5.4 (going back).

Each test loads the dataset of ``tests/golden/dataset.py``, backs it up with this package
(default settings, ``-z``, ``-e``, ``-z -e``), and has django-dbbackup 5.4, in its own venv and a
throwaway project, restore the file into a fresh database of the same engine (or an empty media
directory). The data is then read back here with raw SQL. django-dbbackup does not recognise
compression or encryption, so it gets ``-z``/``-c`` as its users would give them.

The venv is installed on first use (see ``tests/golden/upstream_restore.py``); without a package
index the tests are skipped, unless ``DBBACKUP_REQUIRE_SERVERS`` is set (CI), where they fail.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from dbbackup import pipeline
from tests import gpg
from tests.database_servers import MYSQL_HOST, MYSQL_PORT, PG_HOST, PG_PORT, REQUIRE_SERVERS, RUN_ID
from tests.golden import dataset
from tests.golden.upstream_restore import (
    UpstreamUnavailable,
    ensure_upstream_venv,
    make_project,
    upstream_command,
)
from tests.testapp.models import Note, Tag

GOLDEN_KEYS = Path(__file__).parent / "fixtures" / "golden" / "gpg"
FRESH_DB = f"dbbackup_reverse_{RUN_ID}"
VARIANTS = [
    pytest.param(False, False, id="plain"),
    pytest.param(True, False, id="gz"),
    pytest.param(False, True, id="gpg"),
    pytest.param(True, True, id="gz-gpg"),
]
SERVER_MARKS = {"default": [], "postgres": [pytest.mark.postgres], "mysql": [pytest.mark.mysql]}


def _case(alias: str, connector: str | None, case_id: str):
    # only the alias the case needs: the others may have no server here
    database = pytest.mark.django_db(transaction=True, reset_sequences=True, databases=[alias])
    return pytest.param(alias, connector, marks=[*SERVER_MARKS[alias], database], id=case_id)


DATABASE_CASES = [
    _case("default", None, "sqlite-backup-default"),
    _case("default", "dbbackup.db.sqlite.SqliteConnector", "sqlite-sql"),  # ends with END_MARKER
    _case("postgres", None, "pg-binary-default"),
    _case("postgres", "dbbackup.db.postgresql.PgDumpConnector", "pg-plain"),
    _case("mysql", None, "mysql-default"),
]


@pytest.fixture(scope="session")
def upstream_python():
    try:
        return ensure_upstream_venv()
    except UpstreamUnavailable as error:
        if REQUIRE_SERVERS:
            pytest.fail(str(error))
        pytest.skip(f"{error} (set DBBACKUP_REQUIRE_SERVERS to fail instead)")


@pytest.fixture(scope="session")
def reverse_keyring(tmp_path_factory):
    """The golden key (no passphrase), trusted, in a throwaway GNUPGHOME both packages use."""
    home = tmp_path_factory.mktemp("gnupg") / "reverse"
    home.mkdir(mode=0o700)
    gpg.gpg(home, "--import", str(GOLDEN_KEYS / "secret.asc"))
    fingerprints = [
        line.split(":")[9]
        for line in gpg.gpg(home, "--list-secret-keys", "--with-colons").splitlines()
        if line.startswith("fpr:")
    ]
    gpg.gpg(home, "--import-ownertrust", stdin="".join(f"{fpr}:6:\n" for fpr in fingerprints[:1]).encode())
    yield home
    gpg.stop_agent(home)


@pytest.fixture
def encryption(settings, reverse_keyring):
    settings.DBBACKUP_GPG_HOME = str(reverse_keyring)
    settings.DBBACKUP_GPG_RECIPIENT = "golden@example.com"
    return reverse_keyring


def _psql(*args: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            str(PG_PORT),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _mysql(sql: str) -> None:
    subprocess.run(
        ["mysql", "-h", MYSQL_HOST, "-P", str(MYSQL_PORT), "-u", "root", "-e", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def fresh_database(request, tmp_path):
    """DATABASES for the child (alias -> settings) naming a new, empty database of the engine."""

    def make(alias: str) -> dict:
        if alias == "default":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "fresh.sqlite3")}
        if alias == "postgres":
            _psql("-c", f"DROP DATABASE IF EXISTS {FRESH_DB}")
            _psql("-c", f"CREATE DATABASE {FRESH_DB} ENCODING 'UTF8' TEMPLATE template0")
            request.addfinalizer(lambda: _psql("-c", f"DROP DATABASE IF EXISTS {FRESH_DB} WITH (FORCE)"))
            return {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": FRESH_DB,
                "HOST": PG_HOST,
                "PORT": PG_PORT,
                "USER": "postgres",
                "PASSWORD": "",
            }
        _mysql(f"DROP DATABASE IF EXISTS {FRESH_DB}; CREATE DATABASE {FRESH_DB} CHARACTER SET utf8mb4")
        request.addfinalizer(lambda: _mysql(f"DROP DATABASE IF EXISTS {FRESH_DB}"))
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": FRESH_DB,
            "HOST": MYSQL_HOST,
            "PORT": MYSQL_PORT,
            "USER": "root",
            "PASSWORD": "",
            "OPTIONS": {"charset": "utf8mb4"},
        }

    return make


def read_back(alias: str, database: dict) -> list[dict]:
    """The restored notes and tags, by raw SQL on the fresh database, in the shape of NOTES."""
    if alias == "default":
        connection = sqlite3.connect(database["NAME"])
    elif alias == "postgres":
        import psycopg

        connection = psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=FRESH_DB)
    else:
        import pymysql

        connection = pymysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="", database=FRESH_DB, charset="utf8mb4"
        )
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT id, title, body, payload, extra FROM testapp_note ORDER BY id")
        notes = cursor.fetchall()
        cursor.execute("SELECT note_id, label FROM testapp_tag")
        tags = cursor.fetchall()
    finally:
        connection.close()
    return [
        {
            "id": note_id,
            "title": title,
            "body": body,
            "payload": bytes(payload),
            "extra": json.loads(extra) if isinstance(extra, str | bytes) else extra,
            "tags": sorted(label for owner, label in tags if owner == note_id),
        }
        for note_id, title, body, payload, extra in notes
    ]


@pytest.mark.parametrize(("compress", "encrypt"), VARIANTS)
@pytest.mark.parametrize(("alias", "connector"), DATABASE_CASES)
def test_upstream_restores_our_database_backup(
    alias,
    connector,
    compress,
    encrypt,
    settings,
    backup_dir,
    tmp_path,
    upstream_python,
    encryption,
    fresh_database,
):
    if connector:
        settings.DBBACKUP_CONNECTORS = {alias: {"CONNECTOR": connector}}
    dataset.load(Note, Tag, alias)
    result = pipeline.backup_database(alias, compress=compress, encrypt=encrypt)
    backup = backup_dir / result.filename
    assert backup.is_file()

    database = fresh_database(alias)
    project = make_project(tmp_path / "upstream")
    flags = (["-z"] if compress else []) + (["-c"] if encrypt else [])
    done = upstream_command(
        upstream_python,
        project,
        {"default": database},
        "dbrestore",
        "-d",
        "default",
        "-I",
        str(backup),
        "--noinput",
        *flags,
        gnupghome=encryption,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert read_back(alias, database) == dataset.expected()


@pytest.mark.django_db(transaction=True, databases=["default"])
@pytest.mark.parametrize(("compress", "encrypt"), VARIANTS)
def test_upstream_restores_our_media_backup(
    compress, encrypt, settings, backup_dir, tmp_path, upstream_python, encryption
):
    media = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    for name, content in dataset.MEDIA.items():
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(content)
    result = pipeline.backup_media(compress=compress, encrypt=encrypt)
    backup = backup_dir / result.filename

    project = make_project(tmp_path / "upstream")
    # django-dbbackup's mediarestore spells "decrypt" -e (dbrestore spells it -c)
    flags = (["-z"] if compress else []) + (["-e"] if encrypt else [])
    done = upstream_command(
        upstream_python,
        project,
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "unused.sqlite3")}},
        "mediarestore",
        "-I",
        str(backup),
        "--noinput",
        *flags,
        gnupghome=encryption,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    restored = {
        path.relative_to(project / "media").as_posix(): path.read_bytes()
        for path in (project / "media").rglob("*")
        if path.is_file()
    }
    assert restored == dataset.MEDIA


@pytest.mark.django_db(transaction=True, reset_sequences=True, databases=["default"])
def test_upstream_cannot_restore_a_zstd_backup(
    settings, backup_dir, tmp_path, upstream_python, fresh_database
):
    """Documented in docs/migration.md: zstd is ours only; django-dbbackup knows gzip alone."""
    pytest.importorskip("zstandard")
    dataset.load(Note, Tag, "default")
    backup = backup_dir / pipeline.backup_database("default", compression="zstd").filename
    assert backup.name.endswith(".zst")

    database = fresh_database("default")
    project = make_project(tmp_path / "upstream")
    done = upstream_command(
        upstream_python,
        project,
        {"default": database},
        "dbrestore",
        "-d",
        "default",
        "-I",
        str(backup),
        "--noinput",
        "-z",
    )

    # -z makes django-dbbackup gunzip the file, which is not gzip: the restore fails...
    assert done.returncode != 0
    assert "Not a gzipped file" in done.stderr or "BadGzipFile" in done.stderr, done.stderr
    # ...and nothing usable is left behind.
    assert not Path(database["NAME"]).exists() or Path(database["NAME"]).stat().st_size == 0
