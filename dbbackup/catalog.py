"""What backups a storage holds: found by their names, and by their sidecars when names fail.

A name is first read back through the filename templates (:mod:`dbbackup.names`), which gives
its database, server, date and suffixes without opening anything. A file whose name the
templates cannot read (a custom ``-o`` name, an old template) is still a backup when a
``.metadata`` sidecar written by dbbackup stands beside it; its sidecar then says what it is.
Without a sidecar, a name holding a ``DBBACKUP_DATE_FORMAT`` date is read loosely
(:func:`dbbackup.loose_names.parse`): a ``.tar`` is a media backup, anything else a backup of
the one configured database whose name is a whole field of it. Such *loose* entries are listed
and may be the newest backup of their database, but retention deletes one only when it is
certain (see :attr:`Entry.deletable`). Other files, dated or not, are reported as unrecognised
rather than silently skipped, and never chosen or deleted.

Dates are naive local times (``TIME_ZONE``), as backup names have always been written.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from dbbackup import loose_names, manifest, names

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
    #: Recognised by a date and an alias in a name no template reads (no sidecar to say more).
    loose: bool = False
    #: Whether retention may delete it: always for template names and sidecars; for a loose
    #: database backup only when its extension is its database's connector's (media: never).
    deletable: bool = True

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


def _engine_extension(alias: str) -> str | None:
    """The extension the connector of ``alias`` writes; ``None`` when it cannot be built."""
    from dbbackup.db.base import get_connector

    try:
        return get_connector(alias).extension
    except Exception:  # a broken connector setting: nothing can be certain
        return None


def _from_loose(parsed: names.ParsedName) -> Entry:
    deletable = (
        parsed.content_type == "db"
        and parsed.alias is not None
        and parsed.extension == _engine_extension(parsed.alias)
    )
    return Entry(
        name=parsed.name,
        content_type=parsed.content_type,
        database=parsed.alias,
        servername=None,
        date=parsed.date,
        compression=parsed.compression,
        encrypted=parsed.encrypted,
        loose=True,
        deletable=deletable,
    )


def _unrecognised(name: str, date: datetime | None = None) -> Entry:
    return Entry(name, None, None, None, date, None, False, recognised=False, deletable=False)


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
                loose = loose_names.parse(name)
                unrecognised.append(_unrecognised(name, loose.date if loose else None))
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
    if names.parse(name) is not None:
        return None  # a named backup of another database/server
    loose = loose_names.parse(name)
    if has_metadata:
        metadata = read_metadata(storage, name)
        entry = _from_metadata(name, metadata) if metadata else None
        if entry is not None and loose is not None and loose.content_type == entry.content_type:
            _complete_from_name(entry, loose)
    elif loose is not None and (loose.content_type == "media" or loose.alias is not None):
        entry = _from_loose(loose)
    else:
        return None  # not a backup, or dated but of no recognisable database
    if entry is None:
        return None
    if content_type is not None and entry.content_type != content_type:
        return None
    if database is not None and entry.database != database:
        return None
    if servername is not None and entry.servername != servername:
        return None
    return entry


def _complete_from_name(entry: Entry, loose: names.ParsedName) -> None:
    """Fill in what a sidecar does not say (django-dbbackup's record only engine and
    connector) from the loosely read name; a database found only by name makes the backup as
    deletable as a loose one."""
    if entry.date is None:
        entry.date = loose.date
    if entry.database is None and entry.content_type == "db" and loose.alias is not None:
        entry.database = loose.alias
        entry.deletable = _from_loose(loose).deletable
    if entry.compression is None:
        entry.compression = loose.compression
    entry.encrypted = entry.encrypted or loose.encrypted


def iter_groups(entries: list[Entry]) -> Iterator[tuple[tuple, list[Entry]]]:
    """Entries grouped by (content type, database, server), each group oldest first."""
    groups: dict[tuple, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    yield from groups.items()
