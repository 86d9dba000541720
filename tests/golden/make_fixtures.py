#!/usr/bin/env python3
"""Make the golden backups in ``tests/fixtures/golden/`` with the RELEASED django-dbbackup 5.4.

``tests/test_golden.py`` restores every file made here with this package, which proves that
backups made by django-dbbackup stay restorable after switching. The files are committed; run
this script again only when the dataset (``tests/golden/dataset.py``) or the set of fixtures
changes, or to re-check against a new django-dbbackup release (then update the version below
and in ``tests/fixtures/golden/README.md``). Regenerating replaces every file, the GPG key too.

Needs: the ``gpg`` binary, ``pg_dump``/``psql``, ``mysqldump``/``mysql``, a PostgreSQL server
(127.0.0.1:5432, user ``postgres``, trust) and a MariaDB server (127.0.0.1:3306, ``root``, no
password), the hosts and ports of ``tests/database_servers.py`` (same environment variables).
It creates and drops a database ``dbbackup_golden_src`` on each server.

    python3 tests/golden/make_fixtures.py [--venv /tmp/upstream-venv]

The venv is made (``pip install django-dbbackup==5.4.0 ...``) when it does not exist. Nothing of
this repository is imported by the released package: a throwaway project in a temporary
directory holds a copy of ``tests/testapp/models.py`` and of ``dataset.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "golden"
UPSTREAM_VERSION = "5.4.0"
UPSTREAM_REQUIREMENTS = [
    f"django-dbbackup=={UPSTREAM_VERSION}",
    "Django>=5.2,<5.3",
    "python-gnupg",
    "psycopg[binary]",
    "PyMySQL",
]
SOURCE_DB = "dbbackup_golden_src"
GPG_UID = "Golden Key <golden@example.com>"
GPG_RECIPIENT = "golden@example.com"
PG_HOST = os.environ.get("DBBACKUP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("DBBACKUP_TEST_PG_PORT", "5432")
MYSQL_HOST = os.environ.get("DBBACKUP_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = os.environ.get("DBBACKUP_TEST_MYSQL_PORT", "3306")

#: (database alias, connector class, -o name without compression/encryption suffixes)
DATABASE_FIXTURES = [
    ("default", "dbbackup.db.sqlite.SqliteBackupConnector", "sqlite-backup.sqlite3"),
    ("default", "dbbackup.db.sqlite.SqliteConnector", "sqlite-sql.sqlite3"),
    ("default", "dbbackup.db.sqlite.SqliteCPConnector", "sqlite-cp.sqlite3"),
    ("postgres", "dbbackup.db.postgresql.PgDumpBinaryConnector", "pg-binary.psql.bin"),
    ("postgres", "dbbackup.db.postgresql.PgDumpConnector", "pg-plain.psql"),
    ("mysql", "dbbackup.db.mysql.MysqlDumpConnector", "mysql.mysql"),
]
#: (extra dbbackup/mediabackup flags, suffix django-dbbackup gives the file)
VARIANTS = [((), ""), (("-z",), ".gz"), (("-e",), ".gpg"), (("-z", "-e"), ".gz.gpg")]
#: combinations django-dbbackup 5.4 itself cannot make (SqliteCPConnector's dump is a BytesIO,
#: and ``-e`` alone reads ``.mode`` from it: AttributeError)
UPSTREAM_CANNOT = {"sqlite-cp.sqlite3.gpg"}

SETTINGS = """
import json, os
from pathlib import Path

import pymysql

pymysql.install_as_MySQLdb()
BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "golden-fixtures"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "dbbackup", "testapp"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")},
    "postgres": {"ENGINE": "django.db.backends.postgresql", "NAME": %(db)r, "HOST": %(pg_host)r,
                 "PORT": %(pg_port)r, "USER": "postgres", "PASSWORD": ""},
    "mysql": {"ENGINE": "django.db.backends.mysql", "NAME": %(db)r, "HOST": %(my_host)r,
              "PORT": %(my_port)r, "USER": "root", "PASSWORD": "", "OPTIONS": {"charset": "utf8mb4"}},
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(BASE_DIR / "media")}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                 "OPTIONS": {"location": str(BASE_DIR / "backups")}},
}
MEDIA_ROOT = str(BASE_DIR / "media")
DBBACKUP_HOSTNAME = "golden"
DBBACKUP_GPG_RECIPIENT = %(recipient)r
DBBACKUP_GPG_ALWAYS_TRUST = True
DBBACKUP_CONNECTORS = json.loads(os.environ.get("GOLDEN_CONNECTORS", "{}"))
"""

LOAD = """
import dataset
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from testapp.models import Note, Tag
for alias in ("default", "postgres", "mysql"):
    dataset.load(Note, Tag, alias)
    assert dataset.dump(Note, alias) == dataset.expected(), alias
for name, content in dataset.MEDIA.items():
    assert default_storage.save(name, ContentFile(content)) == name, name
"""


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(args), flush=True)
    return subprocess.run(args, check=True, **kwargs)


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", str(venv))
        run(str(python), "-m", "pip", "install", "-q", *UPSTREAM_REQUIREMENTS)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({p: m.version(p) for p in ['django-dbbackup', 'Django', 'python-gnupg',"
        " 'psycopg', 'PyMySQL']} | {'Python': sys.version.split()[0]}))"
    )
    found = json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True).stdout)
    for tool in (
        ["pg_dump", "--version"],
        ["mysqldump", "--version"],
        ["gpg", "--version"],
        ["sqlite3", "--version"],
    ):
        try:
            out = subprocess.run(tool, check=True, capture_output=True, text=True).stdout
            found[tool[0]] = out.splitlines()[0]
        except (OSError, subprocess.CalledProcessError):
            found[tool[0]] = "not found"
    return found


def recreate_source_databases() -> None:
    psql = ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
    run(*psql, "-c", f"DROP DATABASE IF EXISTS {SOURCE_DB}")
    run(*psql, "-c", f"CREATE DATABASE {SOURCE_DB} ENCODING 'UTF8' TEMPLATE template0")
    mysql = ["mysql", "-h", MYSQL_HOST, "-P", MYSQL_PORT, "-u", "root"]
    run(
        *mysql,
        "-e",
        f"DROP DATABASE IF EXISTS {SOURCE_DB};"
        f" CREATE DATABASE {SOURCE_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    )


def drop_source_databases() -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            PG_PORT,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            f"DROP DATABASE IF EXISTS {SOURCE_DB}",
        ],
        check=False,
    )
    subprocess.run(
        [
            "mysql",
            "-h",
            MYSQL_HOST,
            "-P",
            MYSQL_PORT,
            "-u",
            "root",
            "-e",
            f"DROP DATABASE IF EXISTS {SOURCE_DB}",
        ],
        check=False,
    )


def make_key(home: Path, out: Path) -> None:
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    run(*gpg, "--passphrase", "", "--quick-gen-key", GPG_UID, "future-default", "default", "never")
    out.mkdir(parents=True, exist_ok=True)
    (out / "secret.asc").write_bytes(
        run(*gpg, "--armor", "--export-secret-keys", GPG_RECIPIENT, capture_output=True).stdout
    )
    (out / "public.asc").write_bytes(
        run(*gpg, "--armor", "--export", GPG_RECIPIENT, capture_output=True).stdout
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", default="/tmp/upstream-venv", type=Path, help="venv with django-dbbackup 5.4"
    )
    python = ensure_venv(parser.parse_args().venv.resolve())

    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        project = Path(tmp)
        (project / "testapp").mkdir()
        (project / "testapp" / "__init__.py").write_text("")
        shutil.copy(REPO / "tests" / "testapp" / "models.py", project / "testapp" / "models.py")
        shutil.copy(HERE / "dataset.py", project / "dataset.py")
        (project / "golden_settings.py").write_text(
            SETTINGS
            % {
                "db": SOURCE_DB,
                "pg_host": PG_HOST,
                "pg_port": PG_PORT,
                "my_host": MYSQL_HOST,
                "my_port": MYSQL_PORT,
                "recipient": GPG_RECIPIENT,
            }
        )
        gnupghome = project / "gnupg"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "golden_settings",
            "PYTHONPATH": str(project),
            "GNUPGHOME": str(gnupghome),
        }
        env.pop("VIRTUAL_ENV", None)

        def django_admin(*args: str, connectors: dict | None = None) -> None:
            run(
                str(python),
                "-m",
                "django",
                *args,
                cwd=project,
                env={**env, "GOLDEN_CONNECTORS": json.dumps(connectors or {})},
            )

        if FIXTURES.exists():
            shutil.rmtree(FIXTURES)
        make_key(gnupghome, FIXTURES / "gpg")
        recreate_source_databases()
        try:
            for alias in ("default", "postgres", "mysql"):
                django_admin("migrate", "--run-syncdb", "--database", alias, "-v", "0")
            django_admin("shell", "-c", LOAD)
            for alias, connector, name in DATABASE_FIXTURES:
                for flags, suffix in VARIANTS:
                    if name + suffix in UPSTREAM_CANNOT:
                        continue
                    django_admin(
                        "dbbackup",
                        "-d",
                        alias,
                        *flags,
                        "-o",
                        name + suffix,
                        "-q",
                        connectors={alias: {"CONNECTOR": connector}},
                    )
            for flags, suffix in VARIANTS:
                # -o names the tar as given; -e then appends .gpg itself
                tar = "media.tar" + (".gz" if "-z" in flags else "")
                django_admin("mediabackup", *flags, "-o", tar, "-q")
                assert (project / "backups" / (tar + (".gpg" if "-e" in flags else ""))).is_file(), suffix
        finally:
            drop_source_databases()
            subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        for path in sorted((project / "backups").iterdir()):
            shutil.copy(path, FIXTURES / path.name)
        found = versions(python)

    write_readme(found)
    total = sum(path.stat().st_size for path in FIXTURES.rglob("*") if path.is_file())
    print(f"{len(list(FIXTURES.rglob('*')))} files, {total} bytes in {FIXTURES}")


def write_readme(found: dict[str, str]) -> None:
    lines = [
        "# Golden backups made by django-dbbackup",
        "",
        "Made by `tests/golden/make_fixtures.py` (read its docstring before regenerating) with the",
        "released django-dbbackup, from the dataset of `tests/golden/dataset.py`; restored with this",
        "package by `tests/test_golden.py`. Do not edit these files by hand.",
        "",
        "- `*.metadata`: the sidecars django-dbbackup wrote next to each database backup",
        "- `gpg/secret.asc`, `gpg/public.asc`: the throwaway key (no passphrase) the `.gpg` files",
        f"  are encrypted to (`{GPG_UID}`); it protects nothing",
        "- `media.tar*`: `mediabackup -o` (with `-e`, django-dbbackup appends `.gpg` to the name)",
        "",
        "| file prefix | connector |",
        "|---|---|",
        *[f"| `{name}` | `{connector}` |" for _alias, connector, name in DATABASE_FIXTURES],
        "",
        "Each comes plain, `-z` (`.gz`), `-e` (`.gpg`) and `-z -e` (`.gz.gpg`), except",
        *[f"`{name}`" for name in sorted(UPSTREAM_CANNOT)],
        "which django-dbbackup itself fails to make (`SqliteCPConnector` with `-e` alone raises",
        "`AttributeError: '_io.BytesIO' object has no attribute 'mode'`).",
        "",
        "## Versions used",
        "",
        *[f"- {name}: {version}" for name, version in found.items()],
        "",
    ]
    (FIXTURES / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
