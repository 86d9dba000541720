"""The released django-dbbackup 5.4 on the same data, in the same run (``--upstream-venv``).

``run.py --upstream-venv DIR`` (or ``DBBACKUP_UPSTREAM_VENV``, the variable the reverse
compatibility tests and ``.ci/run`` use for the same venv) adds ``upstream/...`` scenarios: the
venv's Python runs ``worker.py`` in ``command`` mode, that is ``call_command("dbbackup", ...)``
of django-dbbackup's own commands with the same ``bench_settings.py`` (same database, storage
layout, temporary directory), and without this project on ``sys.path``. Each is compared with
the raw baseline of the matching dbbackup scenario, so the report shows both ratios.

Make the venv with::

    python -m venv .venv-upstream
    .venv-upstream/bin/pip install django-dbbackup==5.4.0 'Django>=5.2,<5.3' python-gnupg \\
        'psycopg[binary]' PyMySQL
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scenarios import Scenario

VERSION = "5.4"
#: django-dbbackup's default connector for each engine, as the dump kind of this harness.
DUMP = {"sqlite": "sqlite", "postgresql": "pg-custom", "mysql": "mysql", "media": "media"}
CONNECTOR = {
    "sqlite": "dbbackup.db.sqlite.SqliteBackupConnector",
    "pg-custom": "dbbackup.db.postgresql.PgDumpBinaryConnector",
    "mysql": "dbbackup.db.mysql.MysqlDumpConnector",
}
VARIANTS = ["plain", "gzip"]


def venv_python(directory: str | None) -> str | None:
    """The venv's Python, or ``None`` when no venv is given; raises when it lacks django-dbbackup."""
    directory = directory or os.environ.get("DBBACKUP_UPSTREAM_VENV")
    if not directory:
        return None
    python = Path(directory) / "bin" / "python"
    check = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('django-dbbackup'))"],
        capture_output=True, text=True, check=False, env=clean_env(dict(os.environ)),
    )  # fmt: skip
    if check.returncode != 0:
        raise RuntimeError(
            f"{python} cannot report django-dbbackup's version (is it a venv with django-dbbackup "
            f"{VERSION} installed?): {check.stderr.strip()[-300:]}"
        )
    if not check.stdout.strip().startswith(VERSION):
        raise RuntimeError(f"{python} has django-dbbackup {check.stdout.strip()}, not {VERSION}")
    return str(python)


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without this project on ``PYTHONPATH``: the child must import django-dbbackup's
    ``dbbackup``, not ours."""
    env.pop("PYTHONPATH", None)
    return env


def scenarios(engine: str) -> list[Scenario]:
    """django-dbbackup's ``dbbackup``/``dbrestore`` (or ``mediabackup``/``mediarestore``),
    plain and ``-z``, each compared with the raw baseline dbbackup's own scenario has."""
    dump = DUMP[engine]
    media = engine == "media"
    found: list[Scenario] = []
    for variant in VARIANTS:
        flag = " -z" if variant == "gzip" else ""
        backup = "mediabackup" if media else "dbbackup"
        found.append(
            Scenario(f"upstream/{dump}/backup/{variant}", "upstream", dump, "backup", variant,
                     f"django-dbbackup {VERSION} {backup}{flag}", connector=CONNECTOR.get(dump),
                     command=backup, baseline=f"raw/{dump}/backup/{variant}")
        )  # fmt: skip
        restore = "mediarestore" if media else "dbrestore"
        found.append(
            Scenario(f"upstream/{dump}/restore/{variant}", "upstream", dump, "restore", variant,
                     f"django-dbbackup {VERSION} {restore}{flag}", connector=CONNECTOR.get(dump),
                     command=restore, baseline=f"raw/{dump}/restore/{variant}",
                     source=f"upstream/{dump}/backup/{variant}")
        )  # fmt: skip
    return found


def command_config(scenario: Scenario, engine: str, input_filename: str | None) -> dict:
    """The ``worker.py`` settings of an upstream scenario: which command, which arguments."""
    flags = ["-z"] if scenario.variant == "gzip" else []
    if scenario.op == "backup":
        args = flags if engine == "media" else ["-d", "default", *flags]
    elif engine == "media":
        args = ["--noinput", "-r", "-i", input_filename, *flags]
    else:
        args = ["--noinput", "-d", "default", "-i", input_filename, *flags]
    return {
        "mode": "command",
        "command": scenario.command,
        "args": args,
        # what the raw baselines end with (dbbackup fsyncs its backups itself)
        "sync": scenario.op == "backup" or engine in ("sqlite", "media"),
        "report_output": scenario.op == "backup",
    }
