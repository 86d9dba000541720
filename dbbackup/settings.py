"""Every ``DBBACKUP_*`` setting, with its default, read when it is used.

Access a value as a module attribute::

    from dbbackup import settings
    settings.CLEANUP_KEEP

Nothing is read at import time: each attribute access looks at ``django.conf.settings``
again, so ``override_settings`` works, and so does ``unittest.mock.patch("dbbackup.settings.X")``
(a patched attribute shadows the lazy lookup until the patch ends).

The names and defaults are those of django-dbbackup 5.4; the docs page "Configuration"
describes each one.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings

#: The ``STORAGES`` alias that holds the backup storage.
STORAGES_DBBACKUP_ALIAS = "dbbackup"

#: The name of the directory used when ``STORAGES["dbbackup"]`` is not configured.
DEFAULT_BACKUP_DIRECTORY_NAME = "backups"


def _all_database_aliases() -> list[str]:
    return list(django_settings.DATABASES)


def _media_root() -> str:
    return django_settings.MEDIA_ROOT


def _cleanup_keep_media() -> int:
    return get("CLEANUP_KEEP")


def _keep_nothing_extra(filename: str) -> bool:
    return False


def _server_email() -> str:
    return django_settings.SERVER_EMAIL


def _admins() -> list:
    # django-dbbackup reads the singular DBBACKUP_ADMIN; its docs name DBBACKUP_ADMINS.
    # Both are honoured, the documented plural first.
    for name in ("DBBACKUP_ADMINS", "DBBACKUP_ADMIN"):
        if hasattr(django_settings, name):
            return getattr(django_settings, name)
    return django_settings.ADMINS


# name -> (Django setting name, default value or zero-argument callable computing it)
_DEFAULTS: dict[str, tuple[str | None, Any]] = {
    "DATABASES": ("DBBACKUP_DATABASES", _all_database_aliases),
    "HOSTNAME": ("DBBACKUP_HOSTNAME", socket.gethostname),
    "TMP_DIR": ("DBBACKUP_TMP_DIR", tempfile.gettempdir),
    # New in dbbackup: how old a leftover of a killed run whose owner cannot be checked from
    # this host must be before a later run removes it (seconds or a timedelta; None: never).
    "LEFTOVER_MAX_AGE": ("DBBACKUP_LEFTOVER_MAX_AGE", 24 * 60 * 60),
    "TMP_FILE_MAX_SIZE": ("DBBACKUP_TMP_FILE_MAX_SIZE", 10 * 1024 * 1024),
    "TMP_FILE_READ_SIZE": ("DBBACKUP_TMP_FILE_READ_SIZE", 1024 * 1000),
    "CLEANUP_KEEP": ("DBBACKUP_CLEANUP_KEEP", 10),
    "CLEANUP_KEEP_MEDIA": ("DBBACKUP_CLEANUP_KEEP_MEDIA", _cleanup_keep_media),
    "CLEANUP_KEEP_FILTER": ("DBBACKUP_CLEANUP_KEEP_FILTER", lambda: _keep_nothing_extra),
    # New in dbbackup: age and calendar retention, combined with CLEANUP_KEEP as a union.
    "CLEANUP_KEEP_WITHIN": ("DBBACKUP_CLEANUP_KEEP_WITHIN", None),
    "CLEANUP_KEEP_HOURLY": ("DBBACKUP_CLEANUP_KEEP_HOURLY", 0),
    "CLEANUP_KEEP_DAILY": ("DBBACKUP_CLEANUP_KEEP_DAILY", 0),
    "CLEANUP_KEEP_WEEKLY": ("DBBACKUP_CLEANUP_KEEP_WEEKLY", 0),
    "CLEANUP_KEEP_MONTHLY": ("DBBACKUP_CLEANUP_KEEP_MONTHLY", 0),
    "CLEANUP_KEEP_YEARLY": ("DBBACKUP_CLEANUP_KEEP_YEARLY", 0),
    # New in dbbackup: the thresholds of ``listbackups --health`` and check W030 (dbbackup.health).
    "HEALTH_MAX_AGE": ("DBBACKUP_HEALTH_MAX_AGE", lambda: timedelta(hours=26)),
    "HEALTH_MIN_COUNT": ("DBBACKUP_HEALTH_MIN_COUNT", 1),
    "HEALTH_MAX_DRILL_AGE": ("DBBACKUP_HEALTH_MAX_DRILL_AGE", None),
    "HEALTH_SIZE_DROP": ("DBBACKUP_HEALTH_SIZE_DROP", 0.5),
    # Read for compatibility only: media comes from STORAGES["default"] (check dbbackup.W013).
    "MEDIA_PATH": ("DBBACKUP_MEDIA_PATH", _media_root),
    "DATE_FORMAT": ("DBBACKUP_DATE_FORMAT", "%Y-%m-%d-%H%M%S"),
    "FILENAME_TEMPLATE": (
        "DBBACKUP_FILENAME_TEMPLATE",
        "{databasename}-{servername}-{datetime}.{extension}",
    ),
    "MEDIA_FILENAME_TEMPLATE": ("DBBACKUP_MEDIA_FILENAME_TEMPLATE", "{servername}-{datetime}.{extension}"),
    # New in dbbackup: the codec -z uses, its levels (django-dbbackup always used gzip -9), and
    # how many threads compress (None: one per CPU).
    "COMPRESSION": ("DBBACKUP_COMPRESSION", "gzip"),
    "GZIP_LEVEL": ("DBBACKUP_GZIP_LEVEL", 6),
    "ZSTD_LEVEL": ("DBBACKUP_ZSTD_LEVEL", 3),
    "COMPRESSION_THREADS": ("DBBACKUP_COMPRESSION_THREADS", None),
    "GPG_ALWAYS_TRUST": ("DBBACKUP_GPG_ALWAYS_TRUST", False),
    # New in dbbackup: which gpg, which keyring, and ASCII armour (django-dbbackup's format).
    "GPG_BINARY": ("DBBACKUP_GPG_BINARY", "gpg"),
    "GPG_HOME": ("DBBACKUP_GPG_HOME", None),
    "GPG_ARMOR": ("DBBACKUP_GPG_ARMOR", True),
    "GPG_RECIPIENT": ("DBBACKUP_GPG_RECIPIENT", None),
    "CONNECTORS": ("DBBACKUP_CONNECTORS", dict),
    # New in dbbackup: how long (seconds) a restore waits for locks held by other sessions
    # before it gives up, changing nothing.
    "RESTORE_LOCK_TIMEOUT": ("DBBACKUP_RESTORE_LOCK_TIMEOUT", 30),
    # New in dbbackup: restore with a mysql client that has no sandbox mode (backups could run
    # shell commands through it).
    "MYSQL_ALLOW_UNSANDBOXED": ("DBBACKUP_MYSQL_ALLOW_UNSANDBOXED", False),
    "CUSTOM_CONNECTOR_MAPPING": ("DBBACKUP_CONNECTOR_MAPPING", dict),
    "SEND_EMAIL": ("DBBACKUP_SEND_EMAIL", True),
    "SERVER_EMAIL": ("DBBACKUP_SERVER_EMAIL", _server_email),
    "ADMINS": (None, _admins),
    "EMAIL_SUBJECT_PREFIX": ("DBBACKUP_EMAIL_SUBJECT_PREFIX", "[dbbackup] "),
    "BACKUP_METADATA_SETTER": ("DBBACKUP_BACKUP_METADATA_SETTER", None),
    "RESTORE_METADATA_VALIDATOR": ("DBBACKUP_RESTORE_METADATA_VALIDATOR", None),
    # Settings of django-dbbackup 4.x, read only to warn about them (see dbbackup.checks).
    "STORAGE": ("DBBACKUP_STORAGE", None),
    "STORAGE_OPTIONS": ("DBBACKUP_STORAGE_OPTIONS", dict),
}

#: The Django setting name behind each attribute, for messages and docs.
SETTING_NAMES: dict[str, str] = {
    name: django_name for name, (django_name, _) in _DEFAULTS.items() if django_name
}
SETTING_NAMES["ADMINS"] = "DBBACKUP_ADMINS"


def get(name: str) -> Any:
    """Return the current value of setting ``name`` (without the ``DBBACKUP_`` prefix).

    Raises ``AttributeError`` for a name that is not a dbbackup setting.
    """
    try:
        django_name, default = _DEFAULTS[name]
    except KeyError:
        raise AttributeError(f"dbbackup has no setting named {name!r}") from None
    if django_name is not None and hasattr(django_settings, django_name):
        return getattr(django_settings, django_name)
    return default() if callable(default) else default


def __getattr__(name: str) -> Any:
    return get(name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_DEFAULTS])


def callable_setting(name: str) -> Callable | None:
    """Return setting ``name`` as a callable, importing it when it is a dotted path.

    ``None`` stays ``None``. Anything else that is not callable is a configuration error.
    """
    from django.utils.module_loading import import_string

    from dbbackup.exceptions import DbbackupConfigurationError

    value = get(name)
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise DbbackupConfigurationError(
                f"{SETTING_NAMES[name]} = {get(name)!r} cannot be imported: {exc}"
            ) from exc
        if callable(value):
            return value
    raise DbbackupConfigurationError(
        f"{SETTING_NAMES[name]} must be a callable or the dotted path of one, not {type(value).__name__}."
    )


def database_aliases() -> list[str]:
    """``DBBACKUP_DATABASES`` as a list of aliases (a string is read as a comma-separated list).

    Anything else than a string or a list/tuple of strings is a configuration error, as is an
    alias that ``DATABASES`` does not define.
    """
    from dbbackup.exceptions import DbbackupConfigurationError

    value = get("DATABASES")
    if isinstance(value, str):
        aliases = [alias.strip() for alias in value.split(",") if alias.strip()]
    elif isinstance(value, list | tuple) and all(isinstance(alias, str) for alias in value):
        aliases = [alias.strip() for alias in value if alias.strip()]
    else:
        raise DbbackupConfigurationError(
            f"DBBACKUP_DATABASES must be a list of database aliases such as ['default'], "
            f"not {type(value).__name__} {value!r}."
        )
    unknown = [alias for alias in aliases if alias not in django_settings.DATABASES]
    if unknown:
        raise DbbackupConfigurationError(
            f"DBBACKUP_DATABASES names {', '.join(map(repr, unknown))}, which DATABASES does not "
            f"define (it has {', '.join(map(repr, django_settings.DATABASES))})."
        )
    return aliases
