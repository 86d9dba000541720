"""Schema versions: which migrations a backup's database had, against those this code knows.

At backup time the sidecar records, per app, the migrations applied in the database (read from
Django's ``django_migrations`` table through :class:`MigrationRecorder`). At restore time they
are compared with the migrations on disk (:class:`MigrationLoader`, no database needed):

* the backup has migrations this code does not know (it was made by newer code): the restore is
  refused, since the application's queries would then fail on a schema they do not expect,
  unless the caller allows it (``dbrestore --allow-unknown-migrations``);
* this code has migrations the backup lacks (the backup is older): fine, the restore goes on
  and the user is told to run ``manage.py migrate`` afterwards.

Only apps installed here count: a backup's migrations of apps this project does not install
cannot break it. Sidecars without the record (django-dbbackup's, older dbbackup's, backups of
databases never migrated) are not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import connections

logger = logging.getLogger("dbbackup")

#: How many migration names a message lists before saying "and N more".
_SHOWN = 5


def applied_migrations(alias: str, connector_settings: Mapping[str, object] | None = None) -> dict | None:
    """``{app: [migration names, sorted]}`` applied in database ``alias``, or ``None``.

    ``None`` means "unknown": the database has no ``django_migrations`` table, it cannot be
    queried, or the connector is configured to dump another database than Django's connection
    reaches (``DBBACKUP_CONNECTORS`` overriding ``NAME``, ``HOST`` or ``PORT``). Never raises:
    a backup is worth more than this record.
    """
    if connector_settings is not None:
        configured = connections.settings[alias]  # the dict Django's connection uses
        for key in ("NAME", "HOST", "PORT"):
            if str(connector_settings.get(key) or "") != str(configured.get(key) or ""):
                return None
    from django.db.migrations.recorder import MigrationRecorder

    try:
        recorder = MigrationRecorder(connections[alias])
        if not recorder.has_table():
            return None
        applied: dict[str, list[str]] = {}
        for app, name in recorder.migration_qs.values_list("app", "name"):
            applied.setdefault(app, []).append(name)
    except Exception as exc:
        logger.warning("The applied migrations of %r could not be read (%s); not recorded", alias, exc)
        return None
    return {app: sorted(names) for app, names in sorted(applied.items())}


@dataclass
class Comparison:
    """A backup's recorded migrations against those on disk (``app.name`` strings)."""

    unknown: list[str] = field(default_factory=list)  # in the backup, not in this code
    missing: list[str] = field(default_factory=list)  # in this code, not applied in the backup


def _disk_migrations() -> tuple[dict, set[str]]:
    """The migrations on disk, ``{(app, name): Migration}``, and the apps that have migrations."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, load=False, ignore_no_migrations=True)
    loader.load_disk()
    return loader.disk_migrations, set(loader.migrated_apps)


def compare(recorded: Mapping[str, object]) -> Comparison:
    """Compare a sidecar's ``migrations`` record with the migrations of this code."""
    disk, migrated_apps = _disk_migrations()
    known = set(disk)
    for migration in disk.values():  # squashed away, perhaps deleted, but still known
        known.update(tuple(replaced) for replaced in getattr(migration, "replaces", None) or ())
    result = Comparison()
    in_backup: set[tuple[str, str]] = set()
    for app, names in sorted(recorded.items()):
        if not isinstance(names, list):
            continue
        if app not in migrated_apps:  # an app not installed here cannot break this code
            continue
        for name in sorted(n for n in names if isinstance(n, str)):
            in_backup.add((app, name))
            if (app, name) not in known:
                result.unknown.append(f"{app}.{name}")
    for (app, name), migration in sorted(disk.items()):
        replaces = [tuple(replaced) for replaced in getattr(migration, "replaces", None) or ()]
        applied = (app, name) in in_backup or (replaces and all(r in in_backup for r in replaces))
        if not applied:
            result.missing.append(f"{app}.{name}")
    return result


def listing(labels: list[str]) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(labels[:_SHOWN])
    return shown + (f" and {len(labels) - _SHOWN} more" if len(labels) > _SHOWN else "")


def check_restorable(
    recorded: Mapping[str, object] | None, filename: str, database: str, *, allow_unknown: bool = False
) -> tuple[list[str], list[str]]:
    """Refuse a backup made by newer code; return ``(warnings, notes)`` for the user.

    ``recorded`` is the sidecar's migrations record (``None``: not recorded, nothing checked).
    Raises :class:`~dbbackup.exceptions.MetadataError` when the backup has migrations of
    installed apps that this code does not know, unless ``allow_unknown``.
    """
    from dbbackup.exceptions import MetadataError

    if not isinstance(recorded, Mapping):
        return [], []
    comparison = compare(recorded)
    warnings: list[str] = []
    notes: list[str] = []
    if comparison.unknown:
        problem = (
            f"{filename} was made by newer code: its database has {len(comparison.unknown)} "
            f"migration(s) this code does not know ({listing(comparison.unknown)}), so the "
            "application would run on a schema it does not expect."
        )
        if not allow_unknown:
            raise MetadataError(
                f"{problem} Deploy the code that made the backup first, or restore anyway with "
                "--allow-unknown-migrations."
            )
        warnings.append(problem)
    if comparison.missing:
        notes.append(
            f"The backup predates {len(comparison.missing)} migration(s) of this code "
            f"({listing(comparison.missing)}); run `manage.py migrate --database {database}` "
            "after the restore."
        )
    return warnings, notes
