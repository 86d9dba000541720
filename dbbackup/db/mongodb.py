"""MongoDB connector: ``mongodump --archive`` and ``mongorestore --archive``, streamed.

The password never reaches a command line: it goes in a private (0600) YAML file given with
``--config`` (MongoDB Database Tools 100.3 and later), removed as soon as the tool exits.
Other connection settings are plain options; names are passed as ``--option=value``, so none
can turn into another option.

Tested here against stand-in ``mongodump``/``mongorestore`` executables that check the argv,
environment, config file and stream they receive; there is no MongoDB server in CI.
"""

from __future__ import annotations

from dbbackup.db.base import BaseCommandDBConnector

INSTALL_HINT = (
    "Install the MongoDB Database Tools 100.3 or later (mongodump, mongorestore): "
    "https://www.mongodb.com/docs/database-tools/installation/."
)


def yaml_string(value: object) -> str:
    """A single-quoted YAML scalar."""
    return "'" + str(value).replace("'", "''") + "'"


class MongoDumpConnector(BaseCommandDBConnector):
    """Dumps one database to an archive stream; restores archives with ``--drop``."""

    extension = "dump"
    dump_cmd = "mongodump"
    restore_cmd = "mongorestore"
    install_hint = INSTALL_HINT
    engine_label = "MongoDB"
    supports_exclude = True
    supports_no_drop = True
    object_check = True
    drop = True
    #: mongorestore --drop cannot be rolled back: the whole backup is checked before it starts.
    verify_before_restore = True
    atomic_restore = False

    def connection_flags(self) -> list[str]:
        host = self.settings.get("HOST") or "localhost"
        port = self.settings.get("PORT") or 27017
        flags = [f"--host={host}:{port}"]
        if self.settings.get("USER"):
            flags.append(f"--username={self.settings['USER']}")
        if self.settings.get("AUTH_SOURCE"):
            flags.append(f"--authenticationDatabase={self.settings['AUTH_SOURCE']}")
        return flags

    def secrets_file(self) -> tuple[str, str] | None:
        password = self.settings.get("PASSWORD")
        return ("--config=", f"password: {yaml_string(password)}\n") if password else None

    def secrets(self) -> tuple[str, ...]:
        password = self.settings.get("PASSWORD")
        return (str(password),) if password else ()

    def dump_argv(self) -> list[str]:
        argv = [self.dump_cmd, *self.connection_flags(), f"--db={self.settings['NAME']}"]
        argv += [f"--excludeCollection={collection}" for collection in self.exclude]
        return [*argv, "--archive"]

    def restore_argv(self) -> list[str]:
        argv = [self.restore_cmd, *self.connection_flags()]
        if self.object_check:
            argv.append("--objcheck")
        if self.drop:
            argv.append("--drop")
        return [*argv, "--archive"]
