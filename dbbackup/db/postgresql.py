"""PostgreSQL connectors: ``pg_dump`` with ``psql`` or ``pg_restore``.

* :class:`PgDumpBinaryConnector` (the default): custom-format archives (``.psql.bin``),
  restored with ``pg_restore``.
* :class:`PgDumpConnector`: plain SQL (``.psql``), restored with ``psql``.
* :class:`PgDumpGisConnector`: plain SQL, creating the PostGIS extension (as ``ADMIN_USER``)
  in the target database before restoring.

Connection parameters go in one libpq connection string, every value quoted, so no name can
turn into an option; the password goes only in ``PGPASSWORD``.

Every restore is one ``psql`` session that dbbackup scripts itself (:mod:`.pgsession`): a
custom archive is first turned into SQL by ``pg_restore -f -`` (no database connection), then
plain and converted SQL alike go through :class:`~dbbackup.db.pgscript.ScriptGuard` into
``BEGIN; ... COMMIT;``, where ``COMMIT`` is written only once the backup was read to its end and
verified. A failing tool, a damaged backup or a killed process (dbbackup, psql or pg_restore)
leave the database as it was; psql meta-commands in a backup never run.
"""

from __future__ import annotations

import re
from typing import Any, BinaryIO

from dbbackup import process
from dbbackup.db import pgsession
from dbbackup.db.base import BaseCommandDBConnector
from dbbackup.exceptions import DumpError

#: Django OPTIONS that are libpq connection keywords, passed on to the tools.
LIBPQ_OPTIONS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "passfile", "service", "connect_timeout",
    "application_name", "target_session_attrs", "options", "gssencmode", "channel_binding",
)  # fmt: skip
#: The same keywords as environment variables (as django-dbbackup 5.4 exposes them).
PG_OPTIONS_ENV_VARS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
}
INSTALL_HINT = (
    "Install the PostgreSQL client tools of the server's version (Debian/Ubuntu: "
    "apt install postgresql-client; macOS: brew install libpq)."
)


def conninfo_value(value: Any) -> str:
    """Quote a value for a libpq keyword/value connection string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _major_version(text: str) -> int | None:
    match = re.search(r"\b(\d+)(?:\.(\d+))?", text)
    return int(match.group(1)) if match else None


class PgDumpConnector(BaseCommandDBConnector):
    """Plain SQL dumps with ``pg_dump``, restored with ``psql`` in one transaction."""

    extension = "psql"
    dump_cmd = "pg_dump"
    restore_cmd = "psql"
    psql_cmd = "psql"
    install_hint = INSTALL_HINT
    supports_exclude = True
    supports_schemas = True
    single_transaction = True
    drop = True
    if_exists = True
    schemas: list[str] = []
    enable_row_security = False
    #: ``pg_dump --compress`` level for custom-format dumps (None: pg_dump's default, or 0
    #: when dbbackup compresses the stream itself).
    internal_compression: int | None = None
    extra_option_keys = frozenset({"INTERNAL_COMPRESSION"})
    #: What -n/--schema and -r/--no-drop can change at restore time: nothing, for plain SQL,
    #: which carries its own schema selection and DROP statements.
    restore_refusals = {
        "schemas": "PgDumpConnector restores plain SQL, which cannot be filtered by schema when it is "
        "restored; back up with -n/--schema, or use PgDumpBinaryConnector.",
        "no_drop": "A plain SQL dump carries the DROP statements chosen when it was made (DROP), so "
        "-r/--no-drop cannot remove them; use PgDumpBinaryConnector, or back up with DROP = False.",
    }

    def __init__(self, database_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(database_name, **kwargs)
        self.schemas = list(self.schemas)

    # -- connection --------------------------------------------------------------------------

    def conninfo(self, *, user: str | None = None, database: str | None = None) -> str:
        """The libpq connection string for this database (no password in it)."""
        parts = {"dbname": database or self.settings.get("NAME") or ""}
        host = self.settings.get("HOST")
        parts["host"] = "localhost" if host is None else host
        parts["port"] = self.settings.get("PORT") or ""
        parts["user"] = user if user is not None else (self.settings.get("USER") or "")
        options = self.settings.get("OPTIONS") or {}
        parts.update({key: options[key] for key in LIBPQ_OPTIONS if options.get(key) not in (None, "")})
        return " ".join(f"{key}={conninfo_value(value)}" for key, value in parts.items() if value != "")

    def connection_env(self) -> dict[str, str]:
        password = self.settings.get("PASSWORD")
        options = self.settings.get("OPTIONS") or {}
        env = {var: str(options[key]) for key, var in PG_OPTIONS_ENV_VARS.items() if options.get(key)}
        if password:
            env["PGPASSWORD"] = str(password)
        return env

    def secrets(self) -> tuple[str, ...]:
        """Only the password: sslmode and friends are not secrets, and redacting them garbles."""
        password = self.settings.get("PASSWORD")
        return (str(password),) if password else ()

    def _password_flags(self) -> list[str]:
        # PASSWORD None means "never prompt"; gives --no-password as django-dbbackup does.
        return ["--no-password"] if self.settings.get("PASSWORD") is None else []

    # -- dump --------------------------------------------------------------------------------

    def dump_argv(self) -> list[str]:
        argv = [self.dump_cmd, f"--dbname={self.conninfo()}", *self._password_flags()]
        argv += [f"--exclude-table-data={table}" for table in self.exclude]
        argv += [f"--schema={schema}" for schema in self.schemas]
        if self.enable_row_security:
            argv.append("--enable-row-security")
        argv += self._format_flags()
        return argv

    def _format_flags(self) -> list[str]:
        if not self.drop:
            return []
        return ["--clean", "--if-exists"] if self.if_exists else ["--clean"]

    def _create_dump(self) -> BinaryIO:
        self.check_tool_version()
        return super()._create_dump()

    def check_tool_version(self) -> None:
        """Refuse to dump with a ``pg_dump`` older than the server, naming both versions."""
        server = self._server_major_version()
        if server is None:
            return
        output = process.run(process.Command(argv=[self.dump_cmd, "--version"], missing_hint=INSTALL_HINT))
        tool = _major_version(output.split(")")[-1] if ")" in output else output)
        if tool is not None and tool < server:
            raise DumpError(
                f"{self.dump_cmd} {tool} cannot dump a PostgreSQL {server} server; install "
                f"postgresql-client-{server} or point DUMP_CMD at a newer pg_dump."
            )

    def _server_major_version(self) -> int | None:
        connection = self.connection
        if connection.vendor != "postgresql":
            return None
        try:
            connection.ensure_connection()
            return connection.pg_version // 10000
        except Exception:  # the tool will report the real connection problem
            return None

    # -- restore -----------------------------------------------------------------------------

    def restore_argv(self) -> list[str]:
        # A plain dump holds what SCHEMAS and DROP chose when it was made; psql replays it.
        # No --single-transaction: psql would COMMIT at the end of its input, whoever closed it;
        # dbbackup writes BEGIN and COMMIT itself (see pgsession).
        return self.session_argv(self.restore_cmd)

    def session_argv(self, psql: str) -> list[str]:
        """The ``psql`` that runs the restore script (reading it from stdin)."""
        argv = [psql, f"--dbname={self.conninfo()}", *self._password_flags()]
        return [*argv, "--set=ON_ERROR_STOP=1", "--quiet", "--no-psqlrc"]

    def session_tool(self) -> tuple[str, str]:
        """``(setting, executable)`` of the psql that runs the restore session."""
        return "RESTORE_CMD", self.restore_cmd

    def session_command(self) -> process.Command:
        """The ``psql`` session of a restore (for plain dumps: ``RESTORE_CMD``)."""
        return self.restore_command()

    def session_version_command(self) -> process.Command:
        """``<session psql> --version``, run with the restore's prefix and environment."""
        setting, tool = self.session_tool()
        return self._command(setting, self.restore_prefix, [tool, "--version"], "", self.restore_env)

    def psql_command(self, *args: str) -> process.Command:
        """A short ``psql`` run on the target database (version check, lock report)."""
        argv = [*self.session_argv(self.psql_cmd), *args]
        return self._command("PSQL_CMD", self.restore_prefix, argv, "", self.restore_env)

    def _restore_dump(self, dump: BinaryIO) -> None:
        pgsession.restore(self, dump)


class PgDumpGisConnector(PgDumpConnector):
    """Plain SQL dumps of PostGIS databases; creates the extension before restoring."""

    def _restore_dump(self, dump: BinaryIO) -> None:
        admin = self.settings.get("ADMIN_USER")
        if admin:
            self.enable_postgis(admin)
        super()._restore_dump(dump)

    def enable_postgis_argv(self, admin_user: str) -> list[str]:
        return [
            self.psql_cmd,
            f"--dbname={self.conninfo(user=admin_user)}",
            "--no-psqlrc",
            "--set=ON_ERROR_STOP=1",
            "--command=CREATE EXTENSION IF NOT EXISTS postgis;",
        ]

    def enable_postgis(self, admin_user: str) -> None:
        """``CREATE EXTENSION postgis`` in the target database, as ``ADMIN_USER``."""
        admin_password = self.settings.get("ADMIN_PASSWORD")
        env = process.build_env(self.env, self.restore_env, inherit=self.use_parent_env)
        env.update({key: value for key, value in self.connection_env().items() if key != "PGPASSWORD"})
        if admin_password:
            env["PGPASSWORD"] = str(admin_password)
        else:
            env.pop("PGPASSWORD", None)
        command = process.Command(
            argv=self.enable_postgis_argv(admin_user),
            env=env,
            secrets=(str(admin_password),) if admin_password else (),
            missing_hint=INSTALL_HINT,
        )
        process.run(command, timeout=300)


class PgDumpBinaryConnector(PgDumpConnector):
    """Custom-format archives with ``pg_dump -Fc``, restored with ``pg_restore``."""

    extension = "psql.bin"
    restore_cmd = "pg_restore"
    pg_options: str | list[str] | None = None
    restore_refusals: dict[str, str] = {}
    supports_no_drop = True
    supports_pg_options = True

    def _format_flags(self) -> list[str]:
        flags = ["--format=custom"]
        level = self.internal_compression
        if level is None and getattr(self, "stream_compressed", False):
            level = 0  # dbbackup compresses the stream; compressing twice only costs time
        if level is not None:
            flags.append(f"--compress={int(level)}")
        return flags

    def restore_argv(self) -> list[str]:
        # pg_restore only turns the archive into SQL (--file=-, no connection): the SQL runs in
        # dbbackup's own psql session, which commits only once the archive was verified.
        argv = [self.restore_cmd, *_option_list(self.pg_options), "--file=-", "--exit-on-error"]
        if self.drop:
            argv += ["--clean", "--if-exists"] if self.if_exists else ["--clean"]
        argv += [f"--schema={schema}" for schema in self.schemas]
        return argv

    def session_tool(self) -> tuple[str, str]:
        return "PSQL_CMD", self.psql_cmd

    def session_command(self) -> process.Command:
        return self._command(
            "PSQL_CMD", self.restore_prefix, self.session_argv(self.psql_cmd), "", self.restore_env
        )

    def _restore_dump(self, dump: BinaryIO) -> None:
        archive_sql = process.ProcessFilter(self.restore_command(), dump)
        try:
            pgsession.restore(self, archive_sql, archive=archive_sql)
        finally:
            archive_sql.close()


def _option_list(value: str | list[str] | None) -> list[str]:
    import shlex

    if not value:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]
