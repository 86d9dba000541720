"""MySQL and MariaDB connector: ``mysqldump`` and ``mysql``.

Secrets: the password (and the project's own option file) goes to the tools as an option file
read from an inherited pipe (``--defaults-extra-file=/dev/fd/N``): it never appears on a
command line and never touches the disk. The database name comes after ``--``, so no name can
turn into an option.

Restores are atomic by default (see :mod:`dbbackup.db.mysql_swap`): the backup streams once
into a scratch database, and the restored tables replace the live ones in one ``RENAME TABLE``
only when the whole stream was read and checked (checksum, decryption, decompression, and,
without a checksum, mysqldump's ``-- Dump completed`` line at its end). Any failure before
that drops the scratch database: the live one is untouched.

``mysql`` runs in sandbox mode (``--sandbox``, MariaDB clients; ``--commands=OFF``, recent
MySQL clients), so a backup cannot run shell commands or read and write files through it
(``\\!``, ``\\.``, ``\\T``). A client without either is refused unless
``DBBACKUP_MYSQL_ALLOW_UNSANDBOXED`` is true.

With ``DBBACKUP_CONNECTORS[alias]["ATOMIC"] = False`` the restore goes straight into the live
database, as django-dbbackup did: the backup is then read once before ``mysql`` starts, and a
failure of ``mysql`` half-way leaves the database partly restored (the error says so).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, BinaryIO

from dbbackup import process, settings
from dbbackup.db import mysql_swap
from dbbackup.db.base import BaseCommandDBConnector, _split
from dbbackup.exceptions import CommandConnectorError, CorruptBackupError, DbbackupError, RestoreError

logger = logging.getLogger("dbbackup.command")

INSTALL_HINT = (
    "Install the MySQL or MariaDB client tools (Debian/Ubuntu: apt install mariadb-client or "
    "default-mysql-client; macOS: brew install mysql-client)."
)

#: The last line mysqldump writes (``-- Dump completed on <date>`` or, with
#: ``--skip-dump-date``, ``-- Dump completed``).
COMPLETION_MARKER = b"-- Dump completed"

#: ``mysql --help`` output, per restore argv, so the client is asked once per process.
_HELP_CACHE: dict[tuple[str, ...], str] = {}


def option_file_value(value: Any) -> str:
    """Quote a value for a MySQL option file."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def sandbox_flag(help_text: str) -> str | None:
    """The flag that stops this ``mysql`` client from running client commands, if it has one."""
    if re.search(r"^\s*--sandbox\b", help_text, re.MULTILINE):
        return "--sandbox"  # MariaDB 10.5.25, 10.6.18, 10.11.8, 11.x and later
    if re.search(r"^\s*--commands\b", help_text, re.MULTILINE):
        return "--commands=OFF"  # MySQL 8.0.40, 8.4.3, 9.1 and later
    return None


class CompletionCheck:
    """A pass-through reader that remembers whether the stream ended with mysqldump's last line."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.size = 0
        self.ended = False
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if not data:
            self.ended = True
        self.size += len(data)
        self._tail = (self._tail + data)[-512:]
        return data

    def complete(self) -> bool:
        lines = self._tail.rstrip().splitlines()
        return self.ended and bool(lines) and lines[-1].startswith(COMPLETION_MARKER)


class MysqlDumpConnector(BaseCommandDBConnector):
    """Dumps with ``mysqldump --single-transaction``, restores with ``mysql``."""

    extension = "dump"
    dump_cmd = "mysqldump"
    restore_cmd = "mysql"
    install_hint = INSTALL_HINT
    engine_label = "MySQL"
    supports_exclude = True
    extra_option_keys = frozenset({"ATOMIC"})
    #: Restore through a scratch database and one atomic ``RENAME TABLE`` (see module doc).
    atomic = True
    #: Set by the pipeline when the backup's checksum is checked as it is read.
    stream_checksummed = False
    #: The sandbox flag ``mysql`` gets; found by :meth:`check_client` before a restore.
    sandbox: str | None = None
    #: Set by restore drills, whose ``NAME`` is a scratch database already: the dump loads
    #: straight into it, with the checks of the atomic restore (the ``-- Dump completed`` line
    #: without a checksum), and nothing is swapped.
    into_scratch = False

    @property
    def verify_before_restore(self) -> bool:  # type: ignore[override]
        """Only the direct (non-atomic) restore needs the backup read once beforehand."""
        return not self.atomic and not self.into_scratch

    @property
    def atomic_restore(self) -> bool:  # type: ignore[override]
        """Atomic unless ``ATOMIC = False`` asked for the direct restore."""
        return bool(self.atomic)

    def connection_flags(self) -> list[str]:
        """Host, port, user, socket and TLS flags from ``DATABASES`` and its ``OPTIONS``."""
        options = self.settings.get("OPTIONS") or {}
        flags = []
        if self.settings.get("HOST"):
            host = str(self.settings["HOST"])
            flags.append(f"--socket={host}" if host.startswith("/") else f"--host={host}")
        if self.settings.get("PORT"):
            flags.append(f"--port={self.settings['PORT']}")
        if self.settings.get("USER"):
            flags.append(f"--user={self.settings['USER']}")
        if options.get("unix_socket"):
            flags.append(f"--socket={options['unix_socket']}")
        if options.get("charset"):
            flags.append(f"--default-character-set={options['charset']}")
        for key, value in (options.get("ssl") or {}).items():
            flags.append(f"--ssl-{key}={value}")
        return flags

    def secrets_file(self) -> tuple[str, str] | None:
        """The password (and the project's own option file) for ``--defaults-extra-file``."""
        password = self.settings.get("PASSWORD")
        include = (self.settings.get("OPTIONS") or {}).get("read_default_file")
        if not password and not include:
            return None
        content = f"!include {include}\n" if include else ""
        if password:
            content += f"[client]\npassword={option_file_value(password)}\n"
        return "--defaults-extra-file=", content

    def secrets(self) -> tuple[str, ...]:
        password = self.settings.get("PASSWORD")
        return (str(password),) if password else ()

    def dump_argv(self) -> list[str]:
        argv = [self.dump_cmd, *self.connection_flags(), "--single-transaction", "--quick", "--hex-blob"]
        name = self.settings["NAME"]
        return argv + [f"--ignore-table={name}.{table}" for table in self.exclude]

    def dump_operands(self) -> list[str]:
        return ["--", self.settings["NAME"]]

    def restore_argv(self) -> list[str]:
        argv = [self.restore_cmd, *self.connection_flags()]
        return [*argv, self.sandbox] if self.sandbox else argv

    def restore_operands(self) -> list[str]:
        return ["--", self.settings["NAME"]]

    # -- restore -----------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return str(self.settings["NAME"])

    def _option_hint(self) -> str:
        return (
            f"To restore straight into the live database instead (not atomic: a failure half-way "
            f"leaves it partly restored), set DBBACKUP_CONNECTORS[{self.database_name!r}]"
            '["ATOMIC"] = False.'
        )

    def check_client(self) -> None:
        """Find the sandbox flag of the ``mysql`` client, or refuse the restore without one.

        Raises :class:`RestoreError` (nothing was changed) when the client is missing, or has
        no sandbox mode and ``DBBACKUP_MYSQL_ALLOW_UNSANDBOXED`` is false.
        """
        argv = (*_split(self.restore_prefix), self.restore_cmd, "--help")
        if argv not in _HELP_CACHE:
            env = process.build_env(self.env, self.restore_env, inherit=self.use_parent_env)
            hint = f"{self.install_hint} Or set RESTORE_CMD in DBBACKUP_CONNECTORS[{self.database_name!r}]."
            try:
                _HELP_CACHE[argv] = process.run(process.Command(argv=argv, env=env, missing_hint=hint))
            except CommandConnectorError as exc:
                raise RestoreError(
                    f"{exc}\nNothing was restored: database {self._name!r} was not changed."
                ) from exc
        self.sandbox = sandbox_flag(_HELP_CACHE[argv])
        if self.sandbox is None:
            if not settings.MYSQL_ALLOW_UNSANDBOXED:
                raise RestoreError(
                    f"The client {self.restore_cmd!r} has no sandbox mode (--sandbox: MariaDB 10.5.25, "
                    "10.6.18, 10.11.8, 11.x; --commands: MySQL 8.0.40, 8.4.3, 9.1), so a backup could "
                    "run shell commands through it. Nothing was restored. Upgrade the client, or set "
                    "DBBACKUP_MYSQL_ALLOW_UNSANDBOXED = True to restore backups you trust."
                )
            logger.warning(
                "Restoring with %r without a sandbox (DBBACKUP_MYSQL_ALLOW_UNSANDBOXED).", self.restore_cmd
            )

    def _restore_dump(self, dump: BinaryIO) -> None:
        self.check_client()
        if self.into_scratch:
            self._load(dump, self._name, f"Only the scratch database {self._name!r} was written.")
            return
        if not self.atomic:
            self._restore_directly(dump)
            return
        with (
            mysql_swap.control_connection(self.database_name, self.settings) as connection,
            mysql_swap.ScratchRestore(
                connection,
                self._name,
                lock_timeout=settings.RESTORE_LOCK_TIMEOUT,
                option_hint=self._option_hint(),
            ) as scratch,
        ):
            self._load(dump, scratch.scratch)
            scratch.swap(scratch.check_swappable())

    def _load(self, dump: BinaryIO, database: str, unchanged: str = "") -> None:
        """Stream ``dump`` into the scratch ``database``; raise unless it all went in."""
        checked = CompletionCheck(dump)
        command = self.restore_command()
        # restore_operands() is ["--", NAME], always last: load into the scratch database instead.
        command = dataclasses.replace(command, argv=[*command.argv[:-1], database])
        unchanged = unchanged or (
            f"Database {self._name!r} was not changed (the restore went to a scratch database, now dropped)."
        )
        try:
            process.feed(command, checked)
        except CommandConnectorError as exc:
            raise RestoreError(f"{exc}\n{unchanged}") from exc
        if checked.size == 0:
            raise CorruptBackupError(f"The backup is empty: it is not a MySQL dump. {unchanged}")
        if not checked.complete() and not self.stream_checksummed:
            raise CorruptBackupError(
                "The backup does not end with mysqldump's '-- Dump completed' line and has no "
                f"checksum to prove it whole: it is truncated or not a mysqldump. {unchanged}"
            )

    def _restore_directly(self, dump: BinaryIO) -> None:
        """The non-atomic restore (``ATOMIC = False``): ``mysql`` straight into the live database."""
        try:
            process.feed(self.restore_command(), dump)
        except CommandConnectorError as exc:
            if exc.returncode is None:  # the tool never started
                raise RestoreError(
                    f"{exc}\nNothing was restored: database {self._name!r} was not changed."
                ) from exc
            raise self._partly_restored(exc) from exc
        except DbbackupError as exc:  # the backup changed since it was verified, say
            raise self._partly_restored(exc) from exc

    def _partly_restored(self, exc: Exception) -> RestoreError:
        return RestoreError(
            f"{exc}\n{self.engine_label} cannot roll back a restore: database "
            f"{self._name!r} may be partly restored. Restore a good backup again "
            "once the cause is fixed."
        )
