"""Atomic MySQL/MariaDB restores: load into a scratch database, then swap the tables in.

MySQL cannot roll back DDL, so ``mysql`` never restores straight into the live database. The
backup streams into a scratch database on the same server (``<name>_dbbackup_<hex>``); only
when the whole stream was read, checked and loaded does one ``RENAME TABLE`` statement move
every restored table into place (and the replaced ones out). The server runs a multi-table
``RENAME TABLE`` atomically: a failure or a kill leaves either the old tables or the new ones,
never a mix. Tables of the live database that are not in the backup stay untouched, as they
would with a plain ``mysql < dump``.

A restore holds the advisory lock ``GET_LOCK(<scratch name>)`` on its control connection for
its whole run, so the next restore can tell the scratch databases of a killed run (lock free:
dropped) from those of a run still in progress (lock held: left alone).

Views, triggers, routines and events cannot be moved between databases by ``RENAME TABLE``;
a backup (or live table) with them is refused here, before anything live changes, and the
message names the ``ATOMIC`` option that restores the old, non-atomic way.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any

from dbbackup.exceptions import RestoreError

logger = logging.getLogger("dbbackup.command")

#: How much of the live database's name a scratch name keeps (names are at most 64 chars).
NAME_PREFIX_LENGTH = 36
SCRATCH_INFIX = "_dbbackup_"
OLD_SUFFIX = "_old"
#: MySQL's error numbers for "lock wait timeout exceeded" and "deadlock".
LOCK_ERRORS = {1205, 1213}


def quote(name: str) -> str:
    """A backquoted MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def scratch_name(live: str) -> str:
    """A new, unique scratch database name derived from ``live``."""
    return f"{live[:NAME_PREFIX_LENGTH]}{SCRATCH_INFIX}{secrets.token_hex(6)}"


def scratch_pattern(live: str) -> re.Pattern[str]:
    """Matches the scratch (and old-tables) database names of restores of ``live``."""
    prefix = re.escape(live[:NAME_PREFIX_LENGTH] + SCRATCH_INFIX)
    return re.compile(rf"^({prefix}[0-9a-f]{{12}})(?:{OLD_SUFFIX})?$")


@contextlib.contextmanager
def control_connection(alias: str, settings_dict: dict[str, Any]) -> Iterator[Any]:
    """A raw DB-API connection (autocommit) with the connector's connection settings."""
    from django.db import connections

    wrapper = type(connections[alias])(dict(settings_dict), alias)
    try:
        connection = wrapper.get_new_connection(wrapper.get_connection_params())
    except Exception as exc:
        raise RestoreError(
            f"Could not connect to database {settings_dict.get('NAME')!r} to prepare the restore: {exc}. "
            "Nothing was changed."
        ) from exc
    try:
        connection.autocommit(True)
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def fetch(connection: Any, sql: str, params: tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def execute(connection: Any, sql: str, params: tuple | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


class ScratchRestore:
    """One atomic restore of database ``live`` through a scratch database.

    Use as a context manager: on entry, leftovers of killed restores are dropped, the lock is
    taken and the scratch database is created; :meth:`swap` moves the tables in; on exit the
    scratch and old-tables databases are dropped, whatever happened.
    """

    def __init__(self, connection: Any, live: str, *, lock_timeout: float, option_hint: str) -> None:
        self.connection = connection
        self.live = live
        self.scratch = scratch_name(live)
        self.old = self.scratch + OLD_SUFFIX
        self.lock_timeout = lock_timeout
        self.option_hint = option_hint

    def __enter__(self) -> ScratchRestore:
        self.drop_leftovers()
        [(locked,)] = fetch(self.connection, "SELECT GET_LOCK(%s, 0)", (self.scratch,))
        if locked != 1:
            raise RestoreError(f"Could not take the lock {self.scratch!r}; nothing was changed.")
        rows = fetch(
            self.connection,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = %s",
            (self.live,),
        )
        if not rows:
            raise RestoreError(f"The database {self.live!r} does not exist on the server; create it first.")
        charset, collation = rows[0]
        try:
            execute(
                self.connection,
                f"CREATE DATABASE {quote(self.scratch)} CHARACTER SET {charset} COLLATE {collation}",
            )
        except Exception as exc:
            raise RestoreError(
                f"Could not create the scratch database {self.scratch!r} ({exc}): an atomic restore "
                f"needs CREATE and DROP privileges on databases named "
                f"'{self.live[:NAME_PREFIX_LENGTH]}{SCRATCH_INFIX}%'. Nothing was changed. {self.option_hint}"
            ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in (self.scratch, self.old):
            try:
                execute(self.connection, f"DROP DATABASE IF EXISTS {quote(name)}")
            except Exception as exc:  # the next restore drops it
                logger.warning("Could not drop the scratch database %r: %s", name, exc)
        with contextlib.suppress(Exception):
            execute(self.connection, "DO RELEASE_LOCK(%s)", (self.scratch,))

    def drop_leftovers(self) -> None:
        """Drop the scratch databases of earlier restores of ``live`` that are no longer running."""
        pattern = scratch_pattern(self.live)
        like = self.live[:NAME_PREFIX_LENGTH].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        for (name,) in fetch(self.connection, "SHOW DATABASES LIKE %s", (like + "\\_dbbackup\\_%",)):
            match = pattern.match(name)
            if not match:
                continue
            [(holder,)] = fetch(self.connection, "SELECT IS_USED_LOCK(%s)", (match.group(1),))
            if holder is None:
                logger.warning("Dropping %r, left behind by an interrupted restore.", name)
                execute(self.connection, f"DROP DATABASE IF EXISTS {quote(name)}")

    # -- checks before the swap --------------------------------------------------------------

    def tables(self, schema: str) -> dict[str, str]:
        rows = fetch(
            self.connection,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (schema,),
        )
        return dict(rows)

    def check_swappable(self) -> list[str]:
        """The restored tables, once nothing stands in the way of one atomic ``RENAME TABLE``.

        Raises :class:`RestoreError` (nothing live was changed) otherwise.
        """
        restored = self.tables(self.scratch)
        live = self.tables(self.live)
        problems = []
        views = sorted(name for name, kind in restored.items() if kind == "VIEW")
        if views:
            problems.append(f"the backup has views ({', '.join(views)})")
        for what, sql in (
            (
                "triggers",
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s",
            ),
            ("routines", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"),
            ("events", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
        ):
            found = sorted(name for (name,) in fetch(self.connection, sql, (self.scratch,)))
            if found:
                problems.append(f"the backup has {what} ({', '.join(found)})")
        tables = sorted(name for name, kind in restored.items() if kind != "VIEW")
        live_views = sorted(name for name in tables if live.get(name) == "VIEW")
        if live_views:
            problems.append(
                f"the live database has views named like restored tables ({', '.join(live_views)})"
            )
        live_triggers = sorted(
            f"{name} on {table}"
            for name, table in fetch(
                self.connection,
                "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
                "WHERE EVENT_OBJECT_SCHEMA = %s",
                (self.live,),
            )
            if table in restored
        )
        if live_triggers:
            problems.append(f"the live database has triggers on restored tables ({', '.join(live_triggers)})")
        problems += self._foreign_key_problems(set(tables), set(live))
        if problems:
            raise RestoreError(
                f"Database {self.live!r} cannot be restored atomically: {'; '.join(problems)}. "
                f"Nothing was changed. {self.option_hint}"
            )
        return tables

    def _foreign_key_problems(self, restored: set[str], live: set[str]) -> list[str]:
        rows = fetch(
            self.connection,
            "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS rc JOIN information_schema.KEY_COLUMN_USAGE k "
            "ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME "
            "AND k.TABLE_NAME = rc.TABLE_NAME "
            "WHERE k.REFERENCED_TABLE_NAME IS NOT NULL AND k.TABLE_SCHEMA IN (%s, %s)",
            (self.scratch, self.live),
        )
        problems = set()
        for schema, table, ref_schema, ref_table in rows:
            if schema == self.scratch and (ref_schema != self.scratch or ref_table not in restored):
                problems.add(f"restored table {table} references {ref_table}, which is not in the backup")
            if schema == self.live and table not in restored and ref_table in restored:
                problems.add(f"table {table}, not in the backup, references restored table {ref_table}")
        return sorted(problems)

    # -- the swap ----------------------------------------------------------------------------

    def swap(self, tables: list[str]) -> None:
        """Move ``tables`` from the scratch database into the live one in one statement.

        Swaps into the same database are serialised by an advisory lock, so that the list of
        live tables cannot change between reading it and renaming.
        """
        seconds = max(1, int(self.lock_timeout))
        swap_lock = self.live[:NAME_PREFIX_LENGTH] + SCRATCH_INFIX + "swap"
        [(locked,)] = fetch(self.connection, "SELECT GET_LOCK(%s, %s)", (swap_lock, seconds))
        if locked != 1:
            raise RestoreError(
                f"Database {self.live!r} was not changed: another restore of it was swapping its "
                f"tables for more than {seconds} s (DBBACKUP_RESTORE_LOCK_TIMEOUT)."
            )
        try:
            self._swap(tables, seconds)
        finally:
            with contextlib.suppress(Exception):
                execute(self.connection, "DO RELEASE_LOCK(%s)", (swap_lock,))

    def _swap(self, tables: list[str], seconds: int) -> None:
        if not tables:
            return  # a dump of an empty database: like ``mysql < dump``, it changes nothing
        live = self.tables(self.live)
        execute(self.connection, f"CREATE DATABASE {quote(self.old)}")
        renames = []
        for table in tables:
            if table in live:
                renames.append(f"{quote(self.live)}.{quote(table)} TO {quote(self.old)}.{quote(table)}")
            renames.append(f"{quote(self.scratch)}.{quote(table)} TO {quote(self.live)}.{quote(table)}")
        execute(self.connection, f"SET SESSION lock_wait_timeout = {seconds}")
        execute(self.connection, f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        try:
            execute(self.connection, "RENAME TABLE " + ", ".join(renames))
        except Exception as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in LOCK_ERRORS:
                raise RestoreError(
                    f"Database {self.live!r} was not changed: its tables stayed locked by another "
                    f"session for more than {seconds} s (DBBACKUP_RESTORE_LOCK_TIMEOUT). "
                    f"{self.blockers()} Finish or kill that session, then restore again."
                ) from exc
            raise RestoreError(f"Database {self.live!r} was not changed: the swap failed: {exc}") from exc

    def blockers(self) -> str:
        """A sentence naming the sessions that probably hold the locks, as far as the server says."""
        ids: set[int] = set()
        with contextlib.suppress(Exception):  # only with the METADATA_LOCK_INFO plugin
            ids |= {
                int(thread)
                for (thread,) in fetch(
                    self.connection,
                    "SELECT THREAD_ID FROM information_schema.METADATA_LOCK_INFO WHERE TABLE_SCHEMA = %s",
                    (self.live,),
                )
            }
        with contextlib.suppress(Exception):
            ids |= {
                int(thread)
                for (thread,) in fetch(
                    self.connection, "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX"
                )
            }
        everyone = fetch(
            self.connection,
            "SELECT ID, USER, HOST, COMMAND, TIME, STATE, DB FROM information_schema.PROCESSLIST "
            "WHERE ID <> CONNECTION_ID()",
        )
        # Sessions holding locks or open transactions first; else those using the database.
        rows = [row[:6] for row in everyone if row[0] in ids] or [
            row[:6] for row in everyone if row[6] == self.live
        ]
        if not rows:
            return "The server does not say which session holds them."
        sessions = "; ".join(
            f"session {id_} ({user}@{host}, {command} for {time} s{', ' + state if state else ''})"
            for id_, user, host, command, time, state in rows
        )
        return f"Sessions that may hold them: {sessions}."
