"""The metadata sidecar: ``<backup name>.metadata``, a JSON object stored beside each backup.

It is a superset of django-dbbackup's (which reads only ``engine`` and ``connector`` and ignores
other keys), so sidecars written here work there and the other way round::

    {"engine": "django.db.backends.sqlite3",
     "connector": "dbbackup.db.sqlite.SqliteBackupConnector",
     ...keys from DBBACKUP_BACKUP_METADATA_SETTER...,
     "dbbackup": {"format": 1, "version": "...", "created": "2026-11-21T23:59:00+00:00",
                  "content_type": "db", "database": "default", "servername": "web1",
                  "size": 1234, "sha256": "...",
                  "compression": "gzip" | null, "encrypted": false, "django": "5.2.19",
                  "migrations": {"auth": ["0001_initial", ...], ...}}}

``dbbackup.size`` and ``dbbackup.sha256`` describe the stored bytes (after compression and
encryption); restore checks them while it streams. ``dbbackup.migrations`` (database backups
only, absent when unknown) lists the migrations applied in the database, per app; restore
compares them with the code's (:mod:`dbbackup.schema`).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import django

import dbbackup
from dbbackup import settings
from dbbackup.exceptions import DbbackupConfigurationError, MetadataError

logger = logging.getLogger("dbbackup")

FORMAT_VERSION = 1
KEY = "dbbackup"

#: Engines that hold the same data as another engine name.
_EQUIVALENT_ENGINES = {
    "django.db.backends.postgresql_psycopg2": "django.db.backends.postgresql",
    "django_prometheus.db.backends.postgresql": "django.db.backends.postgresql",
    "django_prometheus.db.backends.postgis": "django.contrib.gis.db.backends.postgis",
    "django_prometheus.db.backends.mysql": "django.db.backends.mysql",
    "django_prometheus.db.backends.sqlite3": "django.db.backends.sqlite3",
}
_ANY_ENGINE_CONNECTORS = {"dbbackup.db.django.DjangoConnector"}


def base_metadata(engine: str, connector_path: str) -> dict[str, Any]:
    """``engine`` and ``connector`` merged with the user's metadata setter, if any.

    The setter gets a copy of the base dict and returns a dict (or ``None``); its keys win,
    as in django-dbbackup. A setter that raises is logged and ignored: a backup is worth more
    than its extra metadata.
    """
    metadata: dict[str, Any] = {"engine": engine, "connector": connector_path}
    metadata.update(user_metadata(metadata))
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise DbbackupConfigurationError(
            f"DBBACKUP_BACKUP_METADATA_SETTER returned values that are not JSON: {exc}"
        ) from exc
    return metadata


def user_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The keys ``DBBACKUP_BACKUP_METADATA_SETTER`` adds for a backup described by ``metadata``.

    The setter gets a deep copy; ``{}`` when there is no setter, when it returns ``None``, or
    when it raises (logged: a backup is worth more than its extra metadata). A return value
    that is not a dict is a configuration error.
    """
    setter = settings.callable_setting("BACKUP_METADATA_SETTER")
    if setter is None:
        return {}
    try:
        extra = setter(copy.deepcopy(dict(metadata)))
    except Exception:
        logger.exception("DBBACKUP_BACKUP_METADATA_SETTER raised; the backup goes on without its keys")
        return {}
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise DbbackupConfigurationError(
            f"DBBACKUP_BACKUP_METADATA_SETTER must return a dict or None, not {type(extra).__name__}."
        )
    return dict(extra)


def complete(
    metadata: dict[str, Any],
    *,
    content_type: str,
    database: str | None,
    servername: str,
    size: int,
    sha256: str,
    compression: str | None,
    encrypted: bool,
    exclude: list[str] | None = None,
    migrations: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Add dbbackup's own record of the stored bytes under the ``dbbackup`` key.

    ``migrations`` (``{app: [applied migration names]}``, see :mod:`dbbackup.schema`) is
    recorded when given, and left out when unknown.
    """
    own = {
        "format": FORMAT_VERSION,
        "version": dbbackup.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "content_type": content_type,
        "database": database,
        "servername": servername,
        "size": size,
        "sha256": sha256,
        "compression": compression,
        "encrypted": encrypted,
        "exclude": list(exclude or []),
        "django": django.get_version(),
    }
    if migrations is not None:
        own["migrations"] = {app: list(names) for app, names in migrations.items()}
    return {**metadata, KEY: own}


def recorded_migrations(metadata: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The migrations applied in the backed-up database, when the sidecar recorded them."""
    value = record(metadata).get("migrations")
    return value if isinstance(value, Mapping) else None


def dumps(metadata: Mapping[str, Any]) -> bytes:
    return json.dumps(metadata, sort_keys=False).encode("utf-8")


def loads(raw: bytes, label: str) -> dict[str, Any] | None:
    """Parse a sidecar; a malformed one is reported and treated as absent."""
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        logger.warning("Ignoring %s: it is not valid JSON", label)
        return None
    if not isinstance(metadata, dict):
        logger.warning("Ignoring %s: it is not a JSON object", label)
        return None
    return metadata


def read_local(path: str | Path) -> dict[str, Any] | None:
    """The sidecar beside a local backup file, or ``None`` (lenient: for listings)."""
    sidecar = Path(f"{path}.metadata")
    if not sidecar.is_file():
        return None
    return loads(sidecar.read_bytes(), str(sidecar))


# -- how far a restore trusts a sidecar ------------------------------------------------------

#: What the refusal of a damaged sidecar tells the user to do.
IGNORE_HINT = (
    "restore with --ignore-metadata (Python: ignore_metadata=True) to check the backup by its format alone"
)


def load_for_restore(raw: bytes, label: str) -> dict[str, Any]:
    """Parse a sidecar a restore will rely on; a damaged one raises :class:`MetadataError`.

    A sidecar is damaged when it is not a JSON object, when ``engine`` or ``connector`` are not
    strings, or when it claims to be dbbackup's (it has a ``dbbackup`` key) without a usable
    record of the stored bytes: a ``size`` (a non-negative integer) and a ``sha256`` (64 hex
    digits). django-dbbackup's sidecars (``engine`` and ``connector`` only) are not damaged:
    they simply carry no checksum, and the restore then checks the backup by its format.
    """
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MetadataError(
            f"The sidecar {label} is damaged: it is not valid JSON ({exc}); {IGNORE_HINT}."
        ) from exc
    if not isinstance(metadata, dict):
        raise MetadataError(f"The sidecar {label} is damaged: it is not a JSON object; {IGNORE_HINT}.")
    for key in ("engine", "connector"):
        if key in metadata and not isinstance(metadata[key], str):
            raise MetadataError(f"The sidecar {label} is damaged: {key!r} is not a string; {IGNORE_HINT}.")
    if KEY in metadata:
        problem = _record_problem(metadata[KEY])
        if problem:
            raise MetadataError(f"The sidecar {label} is damaged: {problem}; {IGNORE_HINT}.")
    return metadata


def _record_problem(value: Any) -> str | None:
    """What is wrong with dbbackup's record in a sidecar, or ``None``."""
    if not isinstance(value, Mapping):
        return f"its {KEY!r} record is not an object"
    sha256, size = value.get("sha256"), value.get("size")
    if not (isinstance(sha256, str) and len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)):
        return f"its checksum ({KEY}.sha256) is missing or not a SHA-256 ({sha256!r})"
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return f"its size ({KEY}.size) is missing or not a byte count ({size!r})"
    for key in ("encrypted",):
        if key in value and not isinstance(value[key], bool):
            return f"{KEY}.{key} is not true or false"
    if "compression" in value and not (value["compression"] is None or isinstance(value["compression"], str)):
        return f"{KEY}.compression is not a name"
    return None


def read_local_for_restore(path: str | Path) -> dict[str, Any] | None:
    """The sidecar beside a local backup file for a restore (strict), or ``None`` when absent."""
    sidecar = Path(f"{path}.metadata")
    if not sidecar.exists():
        return None
    try:
        raw = sidecar.read_bytes()
    except OSError as exc:
        raise MetadataError(f"The sidecar {sidecar} cannot be read ({exc}); {IGNORE_HINT}.") from exc
    return load_for_restore(raw, str(sidecar))


def record(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """dbbackup's own part of a sidecar (empty for django-dbbackup's sidecars)."""
    value = (metadata or {}).get(KEY)
    return value if isinstance(value, Mapping) else {}


def created(metadata: Mapping[str, Any] | None) -> datetime | None:
    """When the backup was made, per its sidecar (an aware datetime), or ``None``."""
    value = record(metadata).get("created")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def content_type(metadata: Mapping[str, Any] | None) -> str | None:
    """``"db"`` or ``"media"`` as the sidecar says (django-dbbackup's db sidecars name an engine)."""
    if not metadata:
        return None
    value = record(metadata).get("content_type") or metadata.get("content_type")
    if value in ("db", "media"):
        return value
    return "db" if "engine" in metadata else None


def check_kind(metadata: Mapping[str, Any] | None, filename: str, expected: str) -> None:
    """Refuse to restore a media archive as a database, or the other way round."""
    from dbbackup import names

    found = content_type(metadata)
    if found is None:
        parsed = names.parse(Path(filename).name) if "/" not in filename else names.parse(filename)
        found = parsed.content_type if parsed else None
    if found is not None and found != expected:
        command = "mediarestore" if found == "media" else "dbrestore"
        kind = "a media backup" if found == "media" else "a database backup"
        raise MetadataError(f"{filename} is {kind}; restore it with `manage.py {command}`.")


def integrity(metadata: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """The recorded SHA-256 and size of the stored bytes, when the sidecar has them."""
    record = (metadata or {}).get(KEY)
    if not isinstance(record, Mapping):
        return None, None
    sha256, size = record.get("sha256"), record.get("size")
    return (sha256 if isinstance(sha256, str) else None, size if isinstance(size, int) else None)


def normalized_engine(engine: str) -> str:
    return _EQUIVALENT_ENGINES.get(engine, engine)


def check_restorable(metadata: Mapping[str, Any] | None, target_engine: str, filename: str) -> None:
    """Refuse a restore the sidecar or ``DBBACKUP_RESTORE_METADATA_VALIDATOR`` rules out.

    The engine must match the target's (unless the backup is engine-neutral, as the Django
    connector's JSON is). The validator gets a copy of the metadata; ``False`` refuses,
    ``True`` or ``None`` (no opinion) accepts, and an exception refuses with its message.
    """
    if not metadata:
        return
    engine = metadata.get("engine")
    if (
        isinstance(engine, str)
        and metadata.get("connector") not in _ANY_ENGINE_CONNECTORS
        and normalized_engine(engine) != normalized_engine(target_engine)
    ):
        raise MetadataError(
            f"{filename} is a backup of a {engine} database and cannot be restored into "
            f"{target_engine}; restore it into a database of the same engine."
        )
    if user_verdict(metadata, filename) is False:
        raise MetadataError(f"DBBACKUP_RESTORE_METADATA_VALIDATOR refused {filename}.")


def user_verdict(metadata: Mapping[str, Any], filename: str = "the backup") -> bool | None:
    """What ``DBBACKUP_RESTORE_METADATA_VALIDATOR`` says of ``metadata`` (given a deep copy).

    ``True`` when there is no validator; otherwise its answer, ``True``, ``False`` or ``None``
    (no opinion). A validator that raises refuses: :class:`MetadataError` carries its message.
    Any other answer is a configuration error.
    """
    validator = settings.callable_setting("RESTORE_METADATA_VALIDATOR")
    if validator is None:
        return True
    try:
        verdict = validator(copy.deepcopy(dict(metadata)))
    except Exception as exc:
        raise MetadataError(f"DBBACKUP_RESTORE_METADATA_VALIDATOR refused {filename}: {exc}") from exc
    if verdict is not False and verdict not in (True, None):
        raise DbbackupConfigurationError(
            "DBBACKUP_RESTORE_METADATA_VALIDATOR must return True, False or None, "
            f"not {type(verdict).__name__}."
        )
    return verdict


# -- restore drills ---------------------------------------------------------------------------

DRILL_KEY = "drill"


def record_drill(metadata: dict[str, Any], drill: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` with ``drill`` as the last drill's outcome, under ``dbbackup.drill``.

    ``drill`` is ``{"at": ISO 8601 UTC, "ok": bool, "error": str | None, "rows": {table: count},
    "tools": {tool: version line}, "seconds": float}``. Only a sidecar that already has
    dbbackup's record gets one: adding a ``dbbackup`` key to django-dbbackup's sidecar would
    make it look damaged (no checksum), so :class:`MetadataError` is raised instead.
    """
    own = metadata.get(KEY)
    if not isinstance(own, Mapping):
        raise MetadataError("the sidecar has no dbbackup record (made by django-dbbackup or an old version)")
    return {**metadata, KEY: {**own, DRILL_KEY: dict(drill)}}


def last_drill(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The outcome of the last restore drill recorded in a sidecar, or ``None``.

    A record that is not an object with a boolean ``ok`` and a string ``at`` counts as none.
    """
    value = record(metadata).get(DRILL_KEY)
    if (
        not isinstance(value, Mapping)
        or not isinstance(value.get("ok"), bool)
        or not isinstance(value.get("at"), str)
    ):
        return None
    return dict(value)
