"""Scratch databases and folders for restore drills, and the sweeping of those a killed drill left.

A drill restores into a database of its own on the same server, never into the real one:

* PostgreSQL: ``CREATE DATABASE dbbackup_drill_<owner>`` (``DROP DATABASE ... WITH (FORCE)``
  afterwards);
* MySQL/MariaDB: ``CREATE DATABASE dbbackup_drill_<owner>`` likewise;
* SQLite: a file ``.dbbackup-<owner>-drill-<random>.sqlite3`` in ``DBBACKUP_TMP_DIR`` (a name
  :mod:`dbbackup.leftovers` already sweeps).

``<owner>`` is :func:`dbbackup.leftovers.owner` with underscores (``<host>_<pid>_<start>``) and
a random suffix: the next drill on this host drops the scratch databases whose owner process is
gone (a drill killed with SIGKILL cannot drop its own). Scratch databases of drills run on
another host, or in another boot, are never dropped automatically: their owner cannot be
checked, and a database has no modification time to go by.

The drill connects with a fresh connection built from the database's own settings (never
Django's connection of the alias), so it needs only the rights a restore needs, plus the right
to create a database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections

from dbbackup import leftovers, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import DbbackupError, RestoreError

logger = logging.getLogger("dbbackup.drill")

PREFIX = "dbbackup_drill_"
_NAME = re.compile(r"^dbbackup_drill_(?P<host>[0-9a-f]{12})_(?P<pid>\d+)_(?P<start>\d+)_[0-9a-f]{6}$")
#: Scratch folders of media drills: ``.dbbackup-drill-<owner>-<random>`` in DBBACKUP_TMP_DIR.
FOLDER_PREFIX = ".dbbackup-drill-"
RIGHTS_HINT = (
    "a drill needs the rights a restore needs plus the right to create a database "
    "(PostgreSQL: CREATEDB; MySQL/MariaDB: CREATE and DROP on the scratch database)"
)


def engine_family(connector: BaseDBConnector) -> str:
    """``"postgresql"``, ``"mysql"`` or ``"sqlite"``; a :class:`DbbackupError` for other connectors."""
    from dbbackup.db.mysql import MysqlDumpConnector
    from dbbackup.db.postgresql import PgDumpConnector
    from dbbackup.db.sqlite import _SqliteConnectorBase

    if isinstance(connector, PgDumpConnector):
        return "postgresql"
    if isinstance(connector, MysqlDumpConnector):
        return "mysql"
    if isinstance(connector, _SqliteConnectorBase):
        return "sqlite"
    raise DbbackupError(
        f"Restore drills support the PostgreSQL, MySQL/MariaDB and SQLite connectors, not "
        f"{connector.path()} (the Django connector restores through Django's connection of the "
        "alias, which a drill must not touch)."
    )


def scratch_name() -> str:
    """A new scratch database name that embeds this process as its owner (at most 63 characters)."""
    return f"{PREFIX}{leftovers.owner().replace('-', '_')}_{secrets.token_hex(3)}"


def is_stale(name: str) -> bool:
    """Whether ``name`` is a drill's scratch database whose owner is provably gone."""
    found = _NAME.match(name)
    if not found:
        return False
    return leftovers.is_stale(f"{found['host']}-{found['pid']}-{found['start']}-", None)


def wrapper(alias: str, settings_dict: dict[str, Any]) -> Any:
    """A new Django connection (not the alias's own) with ``settings_dict``; the caller closes it."""
    return type(connections[alias])(dict(settings_dict), alias)


def _quote(family: str, name: str) -> str:
    if family == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


class ScratchDatabase:
    """A scratch database for one drill: created on enter, dropped on exit whatever happened.

    ``settings`` is the connector's settings with ``NAME`` replaced by the scratch database.
    """

    def __init__(self, connector: BaseDBConnector) -> None:
        self.connector = connector
        self.alias = connector.database_name
        self.family = engine_family(connector)
        self.live_settings = dict(connector.settings)
        self.name = ""
        self.swept: list[str] = []

    @property
    def settings(self) -> dict[str, Any]:
        return {**self.live_settings, "NAME": self.name}

    @contextlib.contextmanager
    def _control(self) -> Iterator[Any]:
        """A cursor on the real database's server (autocommit; nothing in the real database changes)."""
        control = wrapper(self.alias, self.live_settings)
        try:
            try:
                control.ensure_connection()
            except Exception as exc:
                raise RestoreError(
                    f"Could not connect to the database server for the drill: {_line(exc)}"
                ) from exc
            with control.cursor() as cursor:
                yield cursor
        finally:
            with contextlib.suppress(Exception):
                control.close()

    def __enter__(self) -> ScratchDatabase:
        if self.family == "sqlite":
            leftovers.sweep_directory(settings.TMP_DIR)
            directory = Path(settings.TMP_DIR)
            directory.mkdir(parents=True, exist_ok=True)
            self.name = str(directory / f"{leftovers.scratch_prefix()}drill-{secrets.token_hex(4)}.sqlite3")
            os.close(os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # sweepable at once
            return self
        self.name = scratch_name()
        with self._control() as cursor:
            self.swept = self._sweep(cursor)
            try:
                cursor.execute(f"CREATE DATABASE {_quote(self.family, self.name)}")
            except Exception as exc:
                raise RestoreError(
                    f"Could not create the scratch database {self.name!r} for the drill: "
                    f"{_line(exc)}; {RIGHTS_HINT}."
                ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop()

    def drop(self) -> None:
        """Drop the scratch database (or remove the scratch file); a failure is logged."""
        if not self.name:
            return
        if self.family == "sqlite":
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.name + suffix)
            return
        force = " WITH (FORCE)" if self.family == "postgresql" else ""
        try:
            with self._control() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {_quote(self.family, self.name)}{force}")
        except Exception as exc:
            logger.warning("Could not drop the drill's scratch database %r: %s", self.name, _line(exc))

    def _sweep(self, cursor: Any) -> list[str]:
        """Drop the scratch databases of drills that were killed; return their names."""
        if self.family == "postgresql":
            cursor.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [PREFIX.replace("_", r"\_") + "%"]
            )
        else:
            cursor.execute("SHOW DATABASES LIKE %s", [PREFIX.replace("_", r"\_") + "%"])
        found = [row[0] for row in cursor.fetchall()]
        swept = []
        force = " WITH (FORCE)" if self.family == "postgresql" else ""
        for name in found:
            if not is_stale(name):
                continue
            try:
                cursor.execute(f"DROP DATABASE IF EXISTS {_quote(self.family, name)}{force}")
            except Exception as exc:
                logger.warning("Could not drop %r, left by a drill that was killed: %s", name, _line(exc))
                continue
            logger.info("Dropped %r, left by a drill that was killed", name)
            swept.append(name)
        return swept


def count_tables(
    alias: str, settings_dict: dict[str, Any], tables: list[str]
) -> tuple[dict[str, int], list[str]]:
    """Count the rows of ``tables`` in the database ``settings_dict`` names.

    Returns the counts and the tables that are missing or cannot be counted.
    """
    connection = wrapper(alias, settings_dict)
    counts: dict[str, int] = {}
    missing: list[str] = []
    try:
        present = set(connection.introspection.table_names())
        with connection.cursor() as cursor:
            for table in tables:
                if table not in present:
                    missing.append(table)
                    continue
                try:
                    cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
                    counts[table] = int(cursor.fetchone()[0])
                except Exception as exc:
                    missing.append(f"{table} ({_line(exc)})")
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    return counts, missing


# -- media ------------------------------------------------------------------------------------


def scratch_folder() -> str:
    """Create a private scratch folder for a media drill in DBBACKUP_TMP_DIR; sweep dead ones first."""
    sweep_folders(settings.TMP_DIR)
    directory = Path(settings.TMP_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / leftovers.folder_name(FOLDER_PREFIX)
    path.mkdir(mode=0o700)
    return str(path)


def sweep_folders(directory: str | os.PathLike[str]) -> list[str]:
    """Remove the scratch folders of media drills that were killed; return their paths."""
    return leftovers.sweep_folders(directory, FOLDER_PREFIX)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
