"""What backup and restore share: the default signal sender, and connector options."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import DbbackupConfigurationError


def default_sender(command: str) -> type:
    """The command class that sends the signals when the Python API is called directly."""
    return import_module(f"dbbackup.management.commands.{command}").Command


def apply_connector_options(
    connector: BaseDBConnector,
    *,
    exclude_tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    no_drop: bool = False,
    pg_options: str | None = None,
) -> None:
    """Apply command-line options to a connector, refusing those it cannot honour."""
    if exclude_tables:
        if not getattr(connector, "supports_exclude", False):
            raise DbbackupConfigurationError(
                f"{connector.path()} backs up whole databases and cannot exclude tables (-x); "
                "use dbbackup.db.sqlite.SqliteConnector for SQLite."
            )
        connector.exclude = [*connector.exclude, *exclude_tables]
    if schemas:
        if not hasattr(connector, "schemas"):
            raise DbbackupConfigurationError(
                f"{connector.path()} has no schemas; -n/--schema is for PostgreSQL."
            )
        connector.schemas = list(schemas)
    if no_drop:
        if not hasattr(connector, "drop"):
            raise DbbackupConfigurationError(
                f"{connector.path()} always replaces the whole database; -r/--no-drop is for "
                "PostgreSQL and MongoDB."
            )
        connector.drop = False
    if pg_options:
        if not hasattr(connector, "pg_options"):
            raise DbbackupConfigurationError(f"{connector.path()} does not take --pg-options.")
        connector.pg_options = pg_options
