"""What backups a storage holds: found by their names, and by their sidecars when names fail.

A name is first read back through the filename templates (:mod:`dbbackup.names`), which gives
its database, server, date and suffixes without opening anything. A file whose name the
templates cannot read (a custom ``-o`` name, an old template) is still a backup when a
``.metadata`` sidecar written by dbbackup stands beside it; its sidecar then says what it is.
Other files are reported as unrecognised rather than silently skipped.

Dates are naive local times (``TIME_ZONE``), as backup names have always been written.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from dbbackup import manifest, names

if TYPE_CHECKING:
    from dbbackup.storage import Storage


@dataclass
class Entry:
    """One file in the backup storage and what is known about it."""

    name: str
    content_type: str | None  # "db", "media", or None when unrecognised
    database: str | None
    servername: str | None
    date: datetime | None
    compression: str | None
    encrypted: bool
    recognised: bool = True
    has_metadata: bool = False
    metadata: dict[str, Any] | None = None

    @property
    def group(self) -> tuple:
        """Backups that retention treats together: same kind, database and server."""
        database = names.database_name_for_filename(self.database) if self.database else self.database
        return (self.content_type, database, self.servername)


def _local(moment: datetime) -> datetime:
    aware = timezone.localtime(moment) if timezone.is_aware(timezone.now()) else moment.astimezone()
    return aware.replace(tzinfo=None)


def _from_name(parsed: names.ParsedName, has_metadata: bool) -> Entry:
    return Entry(
        name=parsed.name,
        content_type=parsed.content_type,
        database=parsed.databasename,
        servername=parsed.servername,
        date=parsed.date,
        compression=parsed.compression,
        encrypted=parsed.encrypted,
        has_metadata=has_metadata,
    )


def _from_metadata(name: str, metadata: dict[str, Any]) -> Entry | None:
    record = manifest.record(metadata)
    content_type = (
        record.get("content_type") or metadata.get("content_type") or ("db" if "engine" in metadata else None)
    )
    if content_type not in names.CONTENT_TYPES:
        return None
    created = manifest.created(metadata)
    return Entry(
        name=name,
        content_type=content_type,
        database=record.get("database"),
        servername=record.get("servername"),
        date=_local(created) if created else None,
        compression=record.get("compression"),
        encrypted=bool(record.get("encrypted")),
        has_metadata=True,
        metadata=metadata,
    )


def read_metadata(storage: Storage, name: str) -> dict[str, Any] | None:
    """The sidecar of ``name``, parsed; ``None`` when absent or malformed."""
    sidecar = name + names.METADATA_SUFFIX
    if not storage.exists(sidecar):
        return None
    with storage.read_file(sidecar) as handle:
        return manifest.loads(handle.read(), sidecar)


def read_metadata_for_restore(storage: Storage, name: str) -> dict[str, Any] | None:
    """The sidecar of ``name`` for a restore: ``None`` when absent, an error when damaged.

    See :func:`dbbackup.manifest.load_for_restore` for what counts as damaged.
    """
    sidecar = name + names.METADATA_SUFFIX
    if not storage.exists(sidecar):
        return None
    with storage.read_file(sidecar) as handle:
        return manifest.load_for_restore(handle.read(), sidecar)


def _files(storage: Storage, content_type: str | None) -> list[str]:
    kinds = (content_type,) if content_type else names.CONTENT_TYPES
    walk = any(names.template_has_folders(kind) for kind in kinds)
    return list(storage.walk()) if walk else storage.list_directory()


def find(
    storage: Storage,
    *,
    content_type: str | None = None,
    database: str | None = None,
    servername: str | None = None,
    encrypted: bool | None = None,
    compressed: bool | None = None,
    include_unrecognised: bool = False,
) -> list[Entry]:
    """The backups matching every filter given, oldest first (undated ones first of all).

    ``database`` is an alias and ``servername`` a server name, matched whole. Unrecognised
    files are included (last) only with ``include_unrecognised`` and no filters.
    """
    if content_type not in (None, *names.CONTENT_TYPES):
        raise ValueError(f"content_type must be 'db' or 'media', not {content_type!r}")
    files = _files(storage, content_type)
    present = set(files)
    found, unrecognised = [], []
    filtered = any(value is not None for value in (content_type, database, servername, encrypted, compressed))
    for name in files:
        if name.endswith(names.METADATA_SUFFIX) or names.PARTIAL_MARKER in posixpath.basename(name):
            continue
        has_metadata = name + names.METADATA_SUFFIX in present
        entry = _entry(storage, name, has_metadata, content_type, database, servername)
        if entry is None:
            if include_unrecognised and not filtered and names.parse(name) is None and not has_metadata:
                unrecognised.append(
                    Entry(name, None, None, None, None, None, False, recognised=False, has_metadata=False)
                )
            continue
        if encrypted is not None and entry.encrypted != encrypted:
            continue
        if compressed is not None and (entry.compression is not None) != compressed:
            continue
        found.append(entry)
    found.sort(key=lambda entry: (entry.date is not None, entry.date or datetime.min, entry.name))
    return found + unrecognised


def _entry(
    storage: Storage,
    name: str,
    has_metadata: bool,
    content_type: str | None,
    database: str | None,
    servername: str | None,
) -> Entry | None:
    parsed = names.parse(name, content_type, database=database, servername=servername)
    if parsed is not None:
        return _from_name(parsed, has_metadata)
    if not has_metadata or names.parse(name) is not None:
        return None  # not a backup, or a named backup of another database/server
    metadata = read_metadata(storage, name)
    entry = _from_metadata(name, metadata) if metadata else None
    if entry is None:
        return None
    if content_type is not None and entry.content_type != content_type:
        return None
    if database is not None and entry.database != database:
        return None
    if servername is not None and entry.servername != servername:
        return None
    return entry


def iter_groups(entries: list[Entry]) -> Iterator[tuple[tuple, list[Entry]]]:
    """Entries grouped by (content type, database, server), each group oldest first."""
    groups: dict[tuple, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    yield from groups.items()
