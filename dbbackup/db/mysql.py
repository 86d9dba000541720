"""MySQL and MariaDB connector: ``mysqldump`` and ``mysql``.

The password is written to a private (0600) option file that the tools read with
``--defaults-extra-file`` and that is removed as soon as the tool exits; it never appears on a
command line. The database name comes after ``--``, so no name can turn into an option.

MySQL cannot roll back DDL, so a restore cannot be one transaction. Instead the pipeline reads
the whole backup once before the first byte reaches ``mysql`` (checksum, decryption,
decompression: see ``verify_before_restore``). A backup that is damaged, encrypted for another
key or truncated therefore changes nothing. What remains possible is a failure of ``mysql``
itself half-way (a full disk, a killed server): then the database is partly restored, and the
error says so.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from typing import Any, BinaryIO

from dbbackup import process, settings
from dbbackup.db.base import BaseCommandDBConnector
from dbbackup.exceptions import CommandConnectorError, RestoreError

INSTALL_HINT = (
    "Install the MySQL or MariaDB client tools (Debian/Ubuntu: apt install mariadb-client or "
    "default-mysql-client; macOS: brew install mysql-client)."
)


def option_file_value(value: Any) -> str:
    """Quote a value for a MySQL option file."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class MysqlDumpConnector(BaseCommandDBConnector):
    """Dumps with ``mysqldump --single-transaction``, restores with ``mysql``."""

    extension = "dump"
    dump_cmd = "mysqldump"
    restore_cmd = "mysql"
    install_hint = INSTALL_HINT
    supports_exclude = True
    verify_before_restore = True

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

    def _option_file(self) -> tuple[str | None, list]:
        """A 0600 option file with the password (and the user's own option file), if needed."""
        password = self.settings.get("PASSWORD")
        include = (self.settings.get("OPTIONS") or {}).get("read_default_file")
        if not password and not include:
            return None, []
        descriptor, path = tempfile.mkstemp(prefix=".dbbackup-my-", suffix=".cnf", dir=settings.TMP_DIR)
        with os.fdopen(descriptor, "w") as handle:
            if include:
                handle.write(f"!include {include}\n")
            if password:
                handle.write(f"[client]\npassword={option_file_value(password)}\n")
        return path, [partial(os.unlink, path)]

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
        return [self.restore_cmd, *self.connection_flags()]

    def restore_operands(self) -> list[str]:
        return ["--", self.settings["NAME"]]

    def _with_option_file(self, command: process.Command, tool: str) -> process.Command:
        path, cleanup = self._option_file()
        if path is None:
            return command
        argv = list(command.argv)
        # The option file must be the tool's first option (a DUMP_PREFIX may come before it).
        argv.insert(argv.index(tool) + 1, f"--defaults-extra-file={path}")
        return process.Command(
            argv=argv,
            env=command.env,
            secrets=command.secrets,
            missing_hint=command.missing_hint,
            cleanup=tuple(cleanup),
        )

    def dump_command(self) -> process.Command:
        return self._with_option_file(super().dump_command(), self.dump_cmd)

    def restore_command(self) -> process.Command:
        return self._with_option_file(super().restore_command(), self.restore_cmd)

    def _restore_dump(self, dump: BinaryIO) -> None:
        try:
            super()._restore_dump(dump)
        except CommandConnectorError as exc:
            raise RestoreError(
                f"{exc}\nMySQL cannot roll back a restore: database {self.settings['NAME']!r} may be "
                "partly restored. Restore a good backup again once the cause is fixed."
            ) from exc
