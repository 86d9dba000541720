"""Run the RELEASED django-dbbackup 5.4 in a throwaway project; used by test_reverse_compat.py.

``ensure_upstream_venv()`` installs django-dbbackup 5.4.0 into a venv under a cache directory
(``DBBACKUP_UPSTREAM_VENV``, else ``$XDG_CACHE_HOME/dbbackup-tests/django-dbbackup-5.4.0``).
``make_project()`` writes a project whose only app is a copy of ``tests/testapp/models.py``;
``upstream_command()`` runs ``python -m django COMMAND ...`` there with that venv's Python. Nothing
of this repository is importable by the child: its ``dbbackup`` is django-dbbackup's.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
UPSTREAM_VERSION = "5.4.0"
REQUIREMENTS = [
    f"django-dbbackup=={UPSTREAM_VERSION}",
    "Django>=5.2,<5.3",
    "python-gnupg",
    "psycopg[binary]",
    "PyMySQL",
]

SETTINGS = """
import json, os
from pathlib import Path

import pymysql

pymysql.install_as_MySQLdb()
BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "reverse-compat"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "dbbackup", "testapp"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = json.loads(os.environ["UPSTREAM_DATABASES"])
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(BASE_DIR / "media")}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                 "OPTIONS": {"location": str(BASE_DIR / "backups")}},
}
MEDIA_ROOT = str(BASE_DIR / "media")
DBBACKUP_HOSTNAME = "upstream"
"""


class UpstreamUnavailable(Exception):
    """django-dbbackup could not be installed (no index reachable, typically)."""


def venv_dir() -> Path:
    if os.environ.get("DBBACKUP_UPSTREAM_VENV"):
        return Path(os.environ["DBBACKUP_UPSTREAM_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dbbackup-tests" / f"django-dbbackup-{UPSTREAM_VERSION}"


def ensure_upstream_venv() -> Path:
    """The venv's python, installing django-dbbackup 5.4 first if needed (about 20 s).

    A lock file serialises concurrent test runs (tox envs, xdist workers) sharing the cache.
    """
    venv = venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _install(venv)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(venv: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists() and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        shutil.rmtree(venv, ignore_errors=True)
        output = getattr(error, "stderr", b"") or b""
        raise UpstreamUnavailable(
            f"cannot install django-dbbackup {UPSTREAM_VERSION}: {output.decode()[-500:]}"
        ) from error
    marker.write_text("\n".join(REQUIREMENTS))
    return python


def make_project(directory: Path) -> Path:
    (directory / "testapp").mkdir(parents=True)
    (directory / "testapp" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "testapp" / "models.py", directory / "testapp" / "models.py")
    (directory / "upstream_settings.py").write_text(SETTINGS)
    (directory / "media").mkdir()
    (directory / "backups").mkdir()
    return directory


def upstream_command(
    python: Path, project: Path, databases: dict, *args: str, gnupghome: Path | None = None
) -> subprocess.CompletedProcess:
    """``python -m django ARGS`` with django-dbbackup 5.4 in ``project``; never raises on failure."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV", "GNUPGHOME"}
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "upstream_settings",
        "PYTHONPATH": str(project),
        "UPSTREAM_DATABASES": json.dumps(databases),
    }
    if gnupghome is not None:
        env["GNUPGHOME"] = str(gnupghome)
    return subprocess.run(
        [str(python), "-m", "django", *args],
        cwd=project,
        env=env,
        # django-dbbackup asks for a GPG passphrase with getpass() even for a key without one:
        # an empty line is the answer its users type.
        input="\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
