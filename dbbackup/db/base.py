"""The connector contract, and how a connector is chosen for a database.

A connector turns one database into a stream of bytes and back:

* :meth:`BaseDBConnector.create_dump` returns a readable binary stream. The caller reads it to
  its end and closes it. A failure surfaces as an exception from ``read()`` at the latest when
  the end is reached, never as a clean but short stream.
* :meth:`BaseDBConnector.restore_dump` reads a binary stream to its end and restores it. It must
  change the database only after ``read()`` returned ``b""`` (every stage above it raises
  from ``read()`` if anything is wrong: a checksum mismatch, truncation, a wrong key), and it
  must leave the database as it was when it raises, wherever the engine allows.
* Optionally, :meth:`BaseDBConnector.dump_into` writes the same bytes into a file the caller
  names, for an engine whose tool can only write files (SQLite's backup API); see
  :meth:`BaseDBConnector.can_dump_into`.

Subclasses implement ``_create_dump()`` and ``_restore_dump(stream)``; command-line connectors
build argv lists and environments and hand them to :mod:`dbbackup.process`.

Per-database options come from ``DBBACKUP_CONNECTORS[alias]``: connection keys (``NAME``,
``USER``, ``PASSWORD``, ``HOST``, ``PORT``, ...) override ``DATABASES`` in :attr:`settings`;
the other keys become lower-cased attributes (``DUMP_CMD`` -> ``dump_cmd``). A key that no
connector knows is a configuration error, so typos do not pass silently.
"""

from __future__ import annotations

import copy
import logging
import shlex
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, BinaryIO

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from dbbackup import names, process, settings
from dbbackup.exceptions import CommandConnectorError, DbbackupConfigurationError, RestoreError

logger = logging.getLogger("dbbackup.command")

CONNECTOR_MAPPING: dict[str, str] = {
    "django.db.backends.sqlite3": "dbbackup.db.sqlite.SqliteBackupConnector",
    "django.db.backends.mysql": "dbbackup.db.mysql.MysqlDumpConnector",
    "django.db.backends.postgresql": "dbbackup.db.postgresql.PgDumpBinaryConnector",
    "django.db.backends.postgresql_psycopg2": "dbbackup.db.postgresql.PgDumpBinaryConnector",
    "django_mongodb_engine": "dbbackup.db.mongodb.MongoDumpConnector",
    "djongo": "dbbackup.db.mongodb.MongoDumpConnector",
    "django_mongodb_backend": "dbbackup.db.mongodb.MongoDumpConnector",
    "django.contrib.gis.db.backends.postgis": "dbbackup.db.postgresql.PgDumpGisConnector",
    "django.contrib.gis.db.backends.mysql": "dbbackup.db.mysql.MysqlDumpConnector",
    "django.contrib.gis.db.backends.spatialite": "dbbackup.db.sqlite.SqliteBackupConnector",
    "django_prometheus.db.backends.postgresql": "dbbackup.db.postgresql.PgDumpBinaryConnector",
    "django_prometheus.db.backends.sqlite3": "dbbackup.db.sqlite.SqliteBackupConnector",
    "django_prometheus.db.backends.mysql": "dbbackup.db.mysql.MysqlDumpConnector",
    "django_prometheus.db.backends.postgis": "dbbackup.db.postgresql.PgDumpGisConnector",
    "django_s3_sqlite": "dbbackup.db.sqlite.SqliteBackupConnector",
}
DEFAULT_CONNECTOR = "dbbackup.db.django.DjangoConnector"

#: Keys of DBBACKUP_CONNECTORS[alias] that override the DATABASES entry.
CONNECTION_KEYS = frozenset(
    {
        "ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS", "TEST", "ATOMIC_REQUESTS",
        "AUTOCOMMIT", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "TIME_ZONE",
        "DISABLE_SERVER_SIDE_CURSORS", "ADMIN_USER", "ADMIN_PASSWORD", "AUTH_SOURCE",
    }
)  # fmt: skip
#: Keys that become connector attributes (all that django-dbbackup documents).
ATTRIBUTE_KEYS = frozenset(
    {
        "CONNECTOR", "EXCLUDE", "EXTENSION", "DUMP_CMD", "RESTORE_CMD", "PSQL_CMD", "DUMP_PREFIX",
        "DUMP_SUFFIX", "RESTORE_PREFIX", "RESTORE_SUFFIX", "ENV", "DUMP_ENV", "RESTORE_ENV",
        "USE_PARENT_ENV", "SINGLE_TRANSACTION", "DROP", "IF_EXISTS", "SCHEMAS", "PG_OPTIONS",
        "OBJECT_CHECK", "ENABLE_ROW_SECURITY",
    }
)  # fmt: skip


def connector_mapping() -> dict[str, str]:
    """The ENGINE -> connector path map: the defaults with ``DBBACKUP_CONNECTOR_MAPPING`` on top."""
    custom = settings.CUSTOM_CONNECTOR_MAPPING
    if not isinstance(custom, Mapping):
        raise DbbackupConfigurationError("DBBACKUP_CONNECTOR_MAPPING must be a dict of ENGINE: dotted path.")
    return {**CONNECTOR_MAPPING, **custom}


def connector_options(database_name: str) -> dict[str, Any]:
    """``DBBACKUP_CONNECTORS[database_name]``, checked to be a dict."""
    all_options = settings.CONNECTORS
    if not isinstance(all_options, Mapping):
        raise DbbackupConfigurationError("DBBACKUP_CONNECTORS must be a dict keyed by database alias.")
    options = all_options.get(database_name, {})
    if not isinstance(options, Mapping):
        raise DbbackupConfigurationError(f"DBBACKUP_CONNECTORS[{database_name!r}] must be a dict.")
    return {str(key).upper(): value for key, value in options.items()}


def check_alias(database_name: str) -> None:
    """Raise a configuration error naming the known aliases when ``database_name`` is unknown."""
    if database_name not in connections.settings:
        from dbbackup.exceptions import UnknownDatabaseError

        known = ", ".join(connections.settings) or "none"
        raise UnknownDatabaseError(
            f"There is no database {database_name!r} in DATABASES (known aliases: {known})."
        )


def connector_path_for(database_name: str) -> str:
    """The dotted path of the connector configured for ``database_name``."""
    check_alias(database_name)
    options = connector_options(database_name)
    if "CONNECTOR" in options:
        return options["CONNECTOR"]
    engine = connections.settings[database_name]["ENGINE"]
    return connector_mapping().get(engine, DEFAULT_CONNECTOR)


def get_connector(database_name: str | None = None, *, connector_path: str | None = None) -> BaseDBConnector:
    """Build the connector for a database alias, with its ``DBBACKUP_CONNECTORS`` options.

    ``connector_path`` forces a connector class (as recorded in a backup's metadata).
    """
    database_name = database_name or DEFAULT_DB_ALIAS
    path = connector_path or connector_path_for(database_name)
    check_alias(database_name)
    try:
        connector_class = import_string(path)
    except ImportError as exc:
        raise DbbackupConfigurationError(f"The connector {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(connector_class, type) and issubclass(connector_class, BaseDBConnector)):
        raise DbbackupConfigurationError(f"{path!r} is not a dbbackup connector class.")
    return connector_class(database_name, **connector_options(database_name))


class BaseDBConnector:
    """Base of every connector; see the module docstring for the contract."""

    #: File extension of this connector's backups (before compression/encryption suffixes).
    extension = "dump"
    #: Tables whose data is left out, where the connector supports it.
    exclude: list[str] = []
    #: Extra DBBACKUP_CONNECTORS keys a subclass understands, besides the shared ones.
    extra_option_keys: frozenset[str] = frozenset()
    #: What the command-line options -x, -n, -r and --pg-options may ask of this connector.
    supports_exclude = False
    supports_schemas = False
    supports_no_drop = False
    supports_pg_options = False
    #: Set by the pipeline when it compresses the dump, so a tool can skip its own compression.
    stream_compressed = False
    #: Whether a restore leaves the database either as it was or fully restored, even when it is
    #: interrupted or fails half-way (one transaction, or a scratch copy swapped in at the end).
    atomic_restore = True
    #: Whether the pipeline must read the whole backup once (checksum, decryption,
    #: decompression) before the restore starts: for engines that cannot roll a restore back.
    verify_before_restore = False

    def __init__(self, database_name: str | None = None, **kwargs: Any) -> None:
        self.database_name = database_name or DEFAULT_DB_ALIAS
        known = CONNECTION_KEYS | ATTRIBUTE_KEYS | self.extra_option_keys
        unknown = sorted(key for key in kwargs if key.upper() not in known)
        if unknown:
            raise DbbackupConfigurationError(
                f"DBBACKUP_CONNECTORS[{self.database_name!r}] has unknown key(s) "
                f"{', '.join(unknown)}; see the connector settings in the docs."
            )
        self._options = {key.upper(): value for key, value in kwargs.items()}
        self.exclude = list(self.exclude)
        for key, value in self._options.items():
            if key not in CONNECTION_KEYS:
                setattr(self, key.lower(), copy.deepcopy(value))
        if self._options.get("EXCLUDE") and not getattr(self, "supports_exclude", False):
            logger.warning(
                "DBBACKUP_CONNECTORS[%r]['EXCLUDE'] is ignored: %s backs up whole databases.",
                self.database_name,
                self.path(),
            )

    def __repr__(self) -> str:
        return f"<{self.path()} database={self.database_name!r}>"

    @classmethod
    def path(cls) -> str:
        """The dotted path of this class, as recorded in metadata."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def connection(self):
        """Django's connection for this database."""
        return connections[self.database_name]

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The ``DATABASES`` entry updated with this connector's ``DBBACKUP_CONNECTORS`` keys."""
        # connections.settings holds the very dict Django's connection uses (test database names
        # included), without importing the backend: mongodump needs no Django MongoDB driver.
        merged = dict(connections.settings[self.database_name])
        merged.update(self._options)
        return merged

    def check(self) -> None:
        """Raise a configuration error for options this connector cannot honour.

        Called before ``pre_backup``/``pre_restore`` are sent, so nothing starts on bad options.
        """

    def generate_filename(self, server_name: str | None = None) -> str:
        """A new backup name for this database (without compression/encryption suffixes)."""
        return names.generate_filename(self.extension, self.database_name, server_name)

    def create_dump(self) -> BinaryIO:
        """A readable stream of this database's dump; see the module docstring."""
        return self._create_dump()

    def can_dump_into(self) -> bool:
        """Whether :meth:`dump_into` writes exactly the bytes :meth:`create_dump` would stream.

        The backup pipeline then lets the connector write an uncompressed, unencrypted local
        backup file itself instead of streaming it (:mod:`dbbackup.pipeline.direct`).
        """
        return False

    def dump_into(self, path: str) -> None:
        """Write the whole dump into the existing empty file ``path``, closing it before returning.

        Only called when :meth:`can_dump_into` is true. A failure raises (the caller removes
        the file); a return means the file is complete.
        """
        raise NotImplementedError(f"{self.path()} cannot dump into a file")

    def restore_dump(self, dump: BinaryIO) -> None:
        """Restore from ``dump``, read to its end; see the module docstring."""
        self._restore_dump(dump)

    def _create_dump(self) -> BinaryIO:
        raise NotImplementedError(f"{self.path()} must implement _create_dump()")

    def _restore_dump(self, dump: BinaryIO) -> None:
        raise NotImplementedError(f"{self.path()} must implement _restore_dump()")


class BaseCommandDBConnector(BaseDBConnector):
    """A connector that runs a dump tool and a restore tool.

    Subclasses set ``dump_cmd`` / ``restore_cmd`` and implement ``dump_argv()``,
    ``restore_argv()`` and, for secrets, ``connection_env()`` (variables such as
    ``PGPASSWORD``, added to both phases and redacted from messages).
    ``DUMP_PREFIX``/``DUMP_SUFFIX`` (and ``RESTORE_*``) are split like a shell would split
    them, but no shell runs: pipes and redirections are not available.
    """

    dump_cmd = ""
    restore_cmd = ""
    dump_prefix = ""
    dump_suffix = ""
    restore_prefix = ""
    restore_suffix = ""
    use_parent_env = True
    env: dict[str, str] = {}
    dump_env: dict[str, str] = {}
    restore_env: dict[str, str] = {}
    #: Appended to the "not found" message: which package provides the tools.
    install_hint = ""
    #: The engine's name in messages ("MySQL cannot roll back a restore").
    engine_label = "This database"

    def dump_argv(self) -> list[str]:
        raise NotImplementedError(f"{self.path()} must implement dump_argv()")

    def restore_argv(self) -> list[str]:
        raise NotImplementedError(f"{self.path()} must implement restore_argv()")

    def connection_env(self) -> dict[str, str]:
        """Environment variables carrying connection secrets; empty by default."""
        return {}

    def secrets_file(self) -> tuple[str, str] | None:
        """``(option, content)`` for tools that read secrets from a file, or ``None``.

        When given, the content never touches the disk: it is written to a pipe that the tool
        inherits, and the tool gets ``<option>/dev/fd/<N>`` as its first argument. A killed
        tool or a killed dbbackup leaves nothing behind.
        """
        return None

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages or logs."""
        return tuple(str(value) for value in self.connection_env().values() if value)

    def dump_operands(self) -> list[str]:
        """Arguments that must come last, after ``DUMP_SUFFIX`` (a database name, say)."""
        return []

    def restore_operands(self) -> list[str]:
        """Arguments that must come last, after ``RESTORE_SUFFIX``."""
        return []

    def _command(
        self,
        setting: str,
        prefix: str,
        core: Sequence[str],
        suffix: str,
        phase_env: Mapping,
        operands: Sequence[str] = (),
    ) -> process.Command:
        argv = [*_split(prefix), *core, *_split(suffix), *operands]
        env = process.build_env(self.env, phase_env, self.connection_env(), inherit=self.use_parent_env)
        hint = f"{self.install_hint} Or set {setting} in DBBACKUP_CONNECTORS[{self.database_name!r}]."
        pipe_inputs: tuple = ()
        secrets_file = self.secrets_file()
        if secrets_file is not None:
            option, content = secrets_file
            index = len(_split(prefix)) + 1  # right after the tool
            argv.insert(index, f"{option}/dev/fd/{{fd}}")
            pipe_inputs = ((index, content.encode()),)
        command = process.Command(
            argv=argv, env=env, secrets=self.secrets(), missing_hint=hint.strip(), pipe_inputs=pipe_inputs
        )
        logger.debug("Running %s", command.describe())
        return command

    def dump_command(self) -> process.Command:
        return self._command(
            "DUMP_CMD",
            self.dump_prefix,
            self.dump_argv(),
            self.dump_suffix,
            self.dump_env,
            self.dump_operands(),
        )

    def restore_command(self) -> process.Command:
        return self._command(
            "RESTORE_CMD",
            self.restore_prefix,
            self.restore_argv(),
            self.restore_suffix,
            self.restore_env,
            self.restore_operands(),
        )

    def _create_dump(self) -> BinaryIO:
        return process.ProcessOutput(self.dump_command())

    def _restore_dump(self, dump: BinaryIO) -> None:
        try:
            process.feed(self.restore_command(), dump)
        except CommandConnectorError as exc:
            if not self.verify_before_restore:
                raise  # the tool's own transaction rolled everything back
            raise RestoreError(
                f"{exc}\n{self.engine_label} cannot roll back a restore: database "
                f"{self.settings.get('NAME')!r} may be partly restored. Restore a good backup again "
                "once the cause is fixed."
            ) from exc

    # -- django-dbbackup's helper for connectors written against its API ---------------------

    def run_command(
        self, command: str, stdin: Any = None, env: Mapping[str, str] | None = None
    ) -> tuple[BinaryIO, BinaryIO]:
        """Run one tool to completion; return ``(stdout, stderr)`` as files rewound to 0.

        django-dbbackup's helper for custom connectors; see :mod:`dbbackup.db.commandline`
        for the contract (no shell, environment layers, temporary files, redacted errors).
        """
        from dbbackup.db import commandline

        return commandline.run_command(self, command, stdin=stdin, env=env)


def _split(value: str | Sequence[str]) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]
