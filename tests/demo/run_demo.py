#!/usr/bin/env python3
"""Back up and restore a small Django project with dbbackup, from nothing, and prove it worked.

    python3 tests/demo/run_demo.py

Needs only Python >= 3.10 (standard library) and access to a package index. It:

1. creates a virtual environment in tests/demo/.demo/venv (reused when it is already there);
2. pip-installs dbbackup from this checkout into it (with Django, from its dependencies);
3. starts from an empty demo database: ``manage.py migrate``;
4. writes rows holding unicode text and binary data (``manage.py demo_data seed``);
5. backs up (``manage.py dbbackup``) and lists the backups (``manage.py listbackups``);
6. changes and deletes rows, then restores (``manage.py dbrestore --noinput``);
7. checks that every table is back byte for byte, reading the SQLite file directly.

Every command is printed before it runs. The exit status is 0 only if every step worked.
The demo project lives beside this script; everything it writes goes to tests/demo/.demo/.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

DEMO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = DEMO_ROOT.parent.parent
DATA_DIR = DEMO_ROOT / ".demo"
VENV_DIR = DATA_DIR / "venv"
DATABASE = DATA_DIR / "db.sqlite3"
BACKUP_DIR = DATA_DIR / "backups"
MANAGE = DEMO_ROOT / "manage.py"


class DemoFailure(Exception):
    """A step did not do what it should; the message says which and why."""


def venv_python() -> Path:
    if os.name == "nt":
        return VENV_DIR / "Scripts" / "python.exe"
    return VENV_DIR / "bin" / "python"


def subprocess_env() -> dict[str, str]:
    """The caller's environment, minus what would point Django or Python elsewhere."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "demoproject.settings"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def shown(argument: str | Path, base: Path = DEMO_ROOT) -> str:
    """A path relative to ``base`` when it is inside it, to keep the log readable."""
    text = str(argument)
    root = str(base) + os.sep
    return text[len(root) :] if text.startswith(root) else text


def run(*command: str | Path, capture: bool = False) -> str:
    """Run ``command`` in tests/demo, print it first, fail on a non-zero exit.

    tests/demo is the working directory so ``import dbbackup`` finds the installed package,
    never the checkout's source tree.
    """
    print("$ " + shlex.join(shown(part) for part in command), flush=True)
    result = subprocess.run(
        [str(part) for part in command],
        cwd=DEMO_ROOT,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if capture and result.stdout:
        print(result.stdout, end="" if result.stdout.endswith("\n") else "\n", flush=True)
    if result.returncode != 0:
        raise DemoFailure(f"`{shlex.join(shown(part) for part in command)}` exited with {result.returncode}.")
    return result.stdout or ""


def manage(*arguments: str, capture: bool = False) -> str:
    return run(venv_python(), MANAGE, *arguments, capture=capture)


def snapshot() -> dict[str, list[tuple]]:
    """Every table of the demo database, read with the stdlib, values and storage types as stored.

    Text comes back as raw bytes (``text_factory = bytes``) so the comparison is byte for byte,
    and ``typeof()`` of every value is kept so a BLOB that came back as TEXT would show.
    """
    connection = sqlite3.connect(f"{DATABASE.as_uri()}?mode=ro", uri=True)
    try:
        connection.text_factory = bytes
        tables = [
            name.decode()
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall()
        ]
        result: dict[str, list[tuple]] = {}
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            columns = [row[1].decode() for row in connection.execute(f"PRAGMA table_info({quoted})")]
            selected = ", ".join(f'"{column}", typeof("{column}")' for column in columns)
            query = f"SELECT {selected} FROM {quoted} ORDER BY rowid"
            result[table] = [tuple(row) for row in connection.execute(query)]
        schema = connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        result["(schema)"] = [tuple(row) for row in schema]
        return result
    finally:
        connection.close()


def fingerprint(data: dict[str, list[tuple]]) -> str:
    return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]


def describe(data: dict[str, list[tuple]]) -> str:
    notes = len(data.get("demoapp_note", []))
    rows = sum(len(rows) for table, rows in data.items() if table != "(schema)")
    return f"{notes} notes, {rows} rows in {len(data) - 1} tables, fingerprint {fingerprint(data)}"


def backup_files() -> list[str]:
    if not BACKUP_DIR.is_dir():
        return []
    return sorted(path.name for path in BACKUP_DIR.iterdir() if path.is_file())


class Steps:
    """Numbered, timed section headers."""

    def __init__(self) -> None:
        self.number = 0
        self.started = time.monotonic()

    def __call__(self, title: str) -> None:
        self.number += 1
        elapsed = time.monotonic() - self.started
        print(f"\n=== demo step {self.number}: {title}  [{elapsed:.1f}s]", flush=True)


def create_venv(step: Steps) -> None:
    python = venv_python()
    if python.exists():
        step(f"reuse the virtual environment {shown(VENV_DIR)}")
        try:
            run(python, "-c", 'import sys; print("Python", sys.version.split()[0])')
            return
        except DemoFailure:
            print(f"The virtual environment in {shown(VENV_DIR)} is broken; creating it again.")
            shutil.rmtree(VENV_DIR)
    else:
        step(f"create the virtual environment {shown(VENV_DIR)}")
    try:
        run(sys.executable, "-m", "venv", VENV_DIR)
    except DemoFailure as exc:
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        raise DemoFailure(
            f"{exc} Python could not create a virtual environment; on Debian/Ubuntu install the "
            "python3-venv package first (apt-get install python3-venv)."
        ) from None


def main() -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 - say so, rather than fail obscurely
        print("The demo needs Python 3.10 or newer.", file=sys.stderr)
        return 2
    step = Steps()
    print(f"dbbackup demo: commands run in {DEMO_ROOT}, the demo writes only to {shown(DATA_DIR)}/")
    DATA_DIR.mkdir(parents=True, exist_ok=True)

    create_venv(step)

    step("install dbbackup from this checkout")
    # pip always rebuilds and reinstalls a local directory, so a reused venv gets today's code.
    run(venv_python(), "-m", "pip", "install", "--quiet", REPO_ROOT)
    run(
        venv_python(),
        "-c",
        'import dbbackup, django; print("dbbackup", dbbackup.__version__, "from", dbbackup.__file__); '
        'print("Django", django.get_version())',
    )

    step("start from an empty database")
    sidecars = [DATABASE.with_name(DATABASE.name + suffix) for suffix in ("-journal", "-wal", "-shm")]
    for leftover in (DATABASE, *sidecars, BACKUP_DIR, DATA_DIR / "media"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()
        else:
            continue
        print(f"removed {shown(leftover)}")
    manage("migrate", "--noinput")

    step("write rows with unicode text and binary data")
    manage("demo_data", "seed")
    manage("demo_data", "verify")
    original = snapshot()
    print(f"Database now: {describe(original)}")

    step("back up: manage.py dbbackup")
    manage("dbbackup")
    files = backup_files()
    if not files:
        raise DemoFailure(f"dbbackup wrote nothing to {shown(BACKUP_DIR)}.")
    for name in files:
        print(
            f"In the backup storage: {shown(BACKUP_DIR / name)} ({(BACKUP_DIR / name).stat().st_size} bytes)"
        )

    step("list the backups: manage.py listbackups")
    listing = manage("listbackups", capture=True)
    listed = [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
    if len(listed) != 1 or listed[0] not in files:
        raise DemoFailure(f"listbackups should list the one backup among {files}, it lists {listed}.")

    step("change and delete data after the backup")
    manage("demo_data", "change")
    changed = snapshot()
    print(f"Database now: {describe(changed)}")
    if changed == original:
        raise DemoFailure("Changing the data left the database as it was; the demo would prove nothing.")

    step("restore: manage.py dbrestore --noinput")
    manage("dbrestore", "--noinput")

    step("check the data is back, byte for byte")
    restored = snapshot()
    print(f"Database now: {describe(restored)}")
    if restored != original:
        differing = sorted(
            table for table in original.keys() | restored.keys() if original.get(table) != restored.get(table)
        )
        raise DemoFailure(f"The restored database differs from the original in: {', '.join(differing)}.")
    manage("demo_data", "verify")

    print(
        f"\nDemo passed in {time.monotonic() - step.started:.1f}s: backup, list, restore, "
        "every table identical to the original."
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoFailure as failure:
        print(f"\nDEMO FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
