"""Scratch databases and folders for restore drills, and the sweeping of those a killed drill left.

A drill restores into a database of its own on the same server, never into the real one:

* PostgreSQL: ``CREATE DATABASE dbbackup_drill_<owner>_<born>_<random>`` (``DROP DATABASE ...
  WITH (FORCE)`` afterwards);
* MySQL/MariaDB: ``CREATE DATABASE`` likewise, with the real database's character set and
  collation;
* SQLite: a file ``.dbbackup-<owner>-drill-<random>.sqlite3`` in ``DBBACKUP_TMP_DIR`` (a name
  :mod:`dbbackup.leftovers` already sweeps).

The same goes for the Django connector, whose scratch database is of the alias's own engine.

``<owner>`` is :func:`dbbackup.leftovers.owner` with underscores (``<host>_<pid>_<start>``),
``<born>`` the creation time (seconds since the epoch, by this host's clock) and ``<random>``
four hex digits. A drill killed with SIGKILL cannot drop its scratch database, so every drill
first sweeps the server: a scratch database made on this host in this boot is dropped as soon
as its owner process is gone; one whose owner cannot be checked (made on another host, or before
a reboot) is dropped once it is older than ``DBBACKUP_LEFTOVER_MAX_AGE``, going by ``<born>``
(a database has no modification time to go by). Names of older versions
(``<owner>_<random>``, six hex digits, no ``<born>``) are still recognised: swept when their owner
is provably gone, never by age.

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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections

from dbbackup import leftovers, settings
from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import DbbackupError, RestoreError

logger = logging.getLogger("dbbackup.drill")

PREFIX = "dbbackup_drill_"
_NAME = re.compile(
    r"^dbbackup_drill_(?P<host>[0-9a-f]{12})_(?P<pid>\d+)_(?P<start>\d+)"
    r"(?:_(?P<born>\d{1,12})_[0-9a-f]{4}|_[0-9a-f]{6})$"  # older versions: no <born>, six digits
)
#: Scratch folders of media drills: ``.dbbackup-drill-<owner>-<random>`` in DBBACKUP_TMP_DIR.
FOLDER_PREFIX = ".dbbackup-drill-"
RIGHTS_HINT = (
    "a drill needs the rights a restore needs plus the right to create a database "
    "(PostgreSQL: CREATEDB; MySQL/MariaDB: CREATE and DROP on the scratch database)"
)


def engine_family(connector: BaseDBConnector) -> str:
    """``"postgresql"``, ``"mysql"`` or ``"sqlite"``; a :class:`DbbackupError` for other connectors.

    For the Django connector, the family of the alias's engine (its Django ``vendor``).
    """
    from dbbackup.db.django import DjangoConnector
    from dbbackup.db.mysql import MysqlDumpConnector
    from dbbackup.db.postgresql import PgDumpConnector
    from dbbackup.db.sqlite import _SqliteConnectorBase

    if isinstance(connector, PgDumpConnector):
        return "postgresql"
    if isinstance(connector, MysqlDumpConnector):
        return "mysql"
    if isinstance(connector, _SqliteConnectorBase):
        return "sqlite"
    if isinstance(connector, DjangoConnector):
        vendor = connections[connector.database_name].vendor
        if vendor in ("postgresql", "mysql", "sqlite"):
            return vendor
        raise DbbackupError(
            f"Restore drills of the Django connector support PostgreSQL, MySQL/MariaDB and SQLite "
            f"databases, not {vendor!r} (database {connector.database_name!r})."
        )
    raise DbbackupError(
        f"Restore drills support the PostgreSQL, MySQL/MariaDB, SQLite and Django connectors, not "
        f"{connector.path()}."
    )


def scratch_name(now: float | None = None) -> str:
    """A new scratch database name: this process as its owner, and the time it is made.

    At most 62 characters (PostgreSQL keeps 63): 15 of prefix, 12 of host, a PID of up to 7
    digits, a start time of up to 10 (three years of uptime at 100 ticks a second), 10 for the
    time, 4 random, and 5 underscores.
    """
    born = int(time.time() if now is None else now)
    return f"{PREFIX}{leftovers.owner().replace('-', '_')}_{born}_{secrets.token_hex(2)}"


def is_stale(name: str, now: float | None = None) -> bool:
    """Whether ``name`` is a drill's scratch database that can be dropped.

    Its owner is provably gone (this host, this boot), or its owner cannot be checked and it
    is older than ``DBBACKUP_LEFTOVER_MAX_AGE`` (only names that record when they were made).
    """
    found = _NAME.match(name)
    if not found:
        return False
    born = float(found["born"]) if found["born"] else None
    return leftovers.is_stale(f"{found['host']}-{found['pid']}-{found['start']}-", born, now)


def unpooled(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``settings_dict`` without a connection pool (``OPTIONS["pool"]``, PostgreSQL on
    Django 5.1+): a drill's connections must really close, or its scratch database stays in use."""
    copied = dict(settings_dict)
    copied["OPTIONS"] = {key: value for key, value in (copied.get("OPTIONS") or {}).items() if key != "pool"}
    return copied


def wrapper(alias: str, settings_dict: dict[str, Any], name: str | None = None) -> Any:
    """A new Django connection (not the alias's own) with ``settings_dict``, under the alias
    ``name`` (``alias`` by default) and without a pool; the caller closes it."""
    return type(connections[alias])(unpooled(settings_dict), name or alias)


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
                cursor.execute(f"CREATE DATABASE {_quote(self.family, self.name)}{self._options(cursor)}")
            except Exception as exc:
                raise RestoreError(
                    f"Could not create the scratch database {self.name!r} for the drill: "
                    f"{_line(exc)}; {RIGHTS_HINT}."
                ) from exc
        return self

    def _options(self, cursor: Any) -> str:
        """MySQL/MariaDB: the real database's character set and collation, so that tables a
        restore creates without their own (a Django connector's) get the same."""
        if self.family != "mysql":
            return ""
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = %s",
            [self.live_settings["NAME"]],
        )
        row = cursor.fetchone()
        if not row or not all(re.fullmatch(r"\w+", value or "") for value in row):
            return ""
        return f" CHARACTER SET {row[0]} COLLATE {row[1]}"

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
