"""What the machine must provide for backups to work, checked without side effects.

Used by the system checks (cheap, run by ``manage.py check``) and by the preflight
``dbbackup --check``, which goes further (see :mod:`dbbackup.preflight`).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from dbbackup import settings
from dbbackup.db.base import BaseCommandDBConnector, get_connector


@dataclass(frozen=True)
class Finding:
    """A problem found, with a stable check id and the fix."""

    id: str
    message: str
    hint: str = ""


def connector_tools(connector) -> list[str]:
    """The executables a connector will run (empty for connectors that run none)."""
    if not isinstance(connector, BaseCommandDBConnector):
        return []
    tools = [connector.dump_cmd, connector.restore_cmd]
    if getattr(connector, "psql_cmd", None) and connector.settings.get("ADMIN_USER"):
        tools.append(connector.psql_cmd)
    return list(dict.fromkeys(tools))


def missing_tools() -> list[Finding]:
    from dbbackup.exceptions import DbbackupConfigurationError

    try:
        aliases = settings.database_aliases()
    except DbbackupConfigurationError as exc:
        return [Finding("dbbackup.E005", str(exc))]
    findings = []
    for alias in aliases:
        try:
            connector = get_connector(alias)
        except Exception as exc:
            findings.append(Finding("dbbackup.E002", f"No connector for database {alias!r}: {exc}"))
            continue
        for tool in connector_tools(connector):
            if shutil.which(tool) is None:
                findings.append(
                    Finding(
                        "dbbackup.W020",
                        f"{tool!r}, needed to back up or restore database {alias!r}, is not on PATH.",
                        connector.install_hint,
                    )
                )
    return findings


def gpg_recipient_problems() -> list[Finding]:
    from dbbackup import crypto
    from dbbackup.exceptions import DbbackupConfigurationError

    try:
        wanted = crypto.configured_recipients()
    except DbbackupConfigurationError as exc:
        return [Finding("dbbackup.E006", str(exc))]
    if not wanted:
        return []
    try:
        keys = crypto.make_gpg().list_keys()
    except Exception as exc:
        return [Finding("dbbackup.W021", f"DBBACKUP_GPG_RECIPIENT is set but gpg cannot be used: {exc}")]
    known = []
    for key in keys:
        known += [key.get("fingerprint", ""), key.get("keyid", ""), *key.get("uids", [])]
    missing = [r for r in wanted if not any(r.lower() in str(k).lower() for k in known if k)]
    if missing:
        return [
            Finding(
                "dbbackup.W021",
                f"No public key for {', '.join(missing)} (DBBACKUP_GPG_RECIPIENT) in the keyring.",
                "Import it with gpg --import (into DBBACKUP_GPG_HOME if you set one); -e fails until then.",
            )
        ]
    return []


def _local_location(storage) -> Path | None:
    """The directory of a filesystem-like storage, or ``None`` for remote ones."""
    location = getattr(storage, "location", None)
    return Path(location).resolve() if isinstance(location, str) and os.path.isabs(location) else None


def _same_remote_place(first, second) -> bool:
    return (
        type(first) is type(second)
        and getattr(first, "bucket_name", None) == getattr(second, "bucket_name", None)
        and getattr(first, "location", None) == getattr(second, "location", None)
    )


def storage_problems() -> list[Finding]:
    from django.core.files.storage import storages

    from dbbackup.storage import get_storage

    try:
        backup = get_storage()
    except Exception as exc:
        return [Finding("dbbackup.E003", f"The backup storage cannot be created: {exc}")]
    try:
        media = storages["default"]
    except Exception:
        media = None
    findings = []
    location = _local_location(backup.storage)
    media_location = _local_location(media) if media is not None else None
    if location is not None:
        existing = next(path for path in [location, *location.parents] if path.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            findings.append(Finding("dbbackup.W022", f"The backup location {location} cannot be written to."))
        if location.exists() and stat.S_IMODE(location.stat().st_mode) & 0o007:
            findings.append(
                Finding(
                    "dbbackup.W023",
                    f"The backup location {location} is open to every user of the machine.",
                    f"chmod o-rwx {location}",
                )
            )
    inside_media = (
        location and media_location and (location == media_location or media_location in location.parents)
    )
    if inside_media or (location is None and media is not None and _same_remote_place(backup.storage, media)):
        findings.append(
            Finding(
                "dbbackup.W024",
                "Backups are written into the media storage: they may be served to the public, and "
                "mediabackup would archive them.",
                'Give STORAGES["dbbackup"] a location (or bucket) of its own, outside the media.',
            )
        )
    mode = backup._explicit_file_mode
    if isinstance(mode, int) and mode & 0o004:
        findings.append(
            Finding(
                "dbbackup.W023", f"Backups are written world-readable (file_permissions_mode {oct(mode)})."
            )
        )
    return findings


def all_findings() -> list[Finding]:
    """Every problem the environment has, cheapest checks first."""
    return [*missing_tools(), *storage_problems(), *gpg_recipient_problems()]
