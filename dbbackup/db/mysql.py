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

from typing import Any

from dbbackup.db.base import BaseCommandDBConnector

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
    engine_label = "MySQL"
    supports_exclude = True
    verify_before_restore = True
    atomic_restore = False

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
        return [self.restore_cmd, *self.connection_flags()]

    def restore_operands(self) -> list[str]:
        return ["--", self.settings["NAME"]]
