"""Is every database (and media) backed up recently, and proven restorable? For monitoring.

:func:`report` looks at the backup storage and returns one :class:`Item` per database alias of
``DBBACKUP_DATABASES`` and server name found (one item with no server when a database has no
backup at all), and one per server name that has media backups (media is not reported when
the storage holds no media backup: many sites do not back up media).

Statuses follow the Nagios convention, with exit statuses 0/1/2:

critical (2)
    no backup of a database; the newest backup is older than ``DBBACKUP_HEALTH_MAX_AGE``; the
    newest backup's most recent restore drill failed; the storage could not be listed.
warning (1)
    fewer backups than ``DBBACKUP_HEALTH_MIN_COUNT``; the newest backup is smaller than the one
    before it by more than the fraction ``DBBACKUP_HEALTH_SIZE_DROP``; the newest backup has no
    date (custom name without sidecar date); with ``DBBACKUP_HEALTH_MAX_DRILL_AGE`` set, no
    successful drill of any backup of the group, or the last one older than that.
ok (0)
    none of these.

The overall status is the worst item's. Nothing here writes to the storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from dbbackup import catalog, manifest, settings
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.names import database_name_for_filename
from dbbackup.retention import describe_duration, parse_duration

if TYPE_CHECKING:
    from dbbackup.storage import Storage

OK, WARNING, CRITICAL = 0, 1, 2
STATUS_NAMES = {OK: "ok", WARNING: "warning", CRITICAL: "critical"}

_setting = settings.get


@dataclass(frozen=True)
class Thresholds:
    """The limits a backup group is held to; ``None`` turns a rule off."""

    max_age: timedelta | None = timedelta(hours=26)
    min_count: int = 1
    max_drill_age: timedelta | None = None
    size_drop: float | None = 0.5

    @classmethod
    def from_settings(cls) -> Thresholds:
        """The ``DBBACKUP_HEALTH_*`` settings; a bad value is a configuration error."""
        min_count = _setting("HEALTH_MIN_COUNT")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
            raise DbbackupConfigurationError(
                f"DBBACKUP_HEALTH_MIN_COUNT must be a whole number >= 0, not {min_count!r}."
            )
        size_drop = _setting("HEALTH_SIZE_DROP")
        if size_drop is not None and (
            isinstance(size_drop, bool) or not isinstance(size_drop, int | float) or not 0 <= size_drop <= 1
        ):
            raise DbbackupConfigurationError(
                f"DBBACKUP_HEALTH_SIZE_DROP must be a fraction between 0 and 1 (or None), not {size_drop!r}."
            )
        return cls(
            max_age=parse_duration(_setting("HEALTH_MAX_AGE"), "DBBACKUP_HEALTH_MAX_AGE"),
            min_count=min_count,
            max_drill_age=parse_duration(_setting("HEALTH_MAX_DRILL_AGE"), "DBBACKUP_HEALTH_MAX_DRILL_AGE"),
            size_drop=size_drop,
        )


@dataclass
class Item:
    """The health of one group of backups: one kind, database and server."""

    kind: str  # "db" or "media"
    database: str | None
    server: str | None
    count: int = 0
    newest: str | None = None
    newest_timestamp: float | None = None
    newest_age_seconds: float | None = None
    newest_size: int | None = None
    previous_size: int | None = None
    size_change: float | None = None  # (newest - previous) / previous
    last_drill_timestamp: float | None = None  # the last successful drill of any backup here
    last_drill_age_seconds: float | None = None
    newest_drill_ok: bool | None = None  # the newest backup's most recent drill, if any
    status: int = OK
    problems: list[str] = field(default_factory=list)

    def flag(self, status: int, problem: str) -> None:
        self.status = max(self.status, status)
        self.problems.append(f"{STATUS_NAMES[status]}: {problem}")

    def as_json(self) -> dict[str, Any]:
        """The stable, machine-readable fields of this item."""
        return {
            "kind": self.kind,
            "database": self.database,
            "server": self.server,
            "status": STATUS_NAMES[self.status],
            "count": self.count,
            "newest": self.newest,
            "newest_timestamp": self.newest_timestamp,
            "newest_age_seconds": self.newest_age_seconds,
            "newest_size": self.newest_size,
            "previous_size": self.previous_size,
            "size_change": self.size_change,
            "last_drill_timestamp": self.last_drill_timestamp,
            "last_drill_age_seconds": self.last_drill_age_seconds,
            "newest_drill_ok": self.newest_drill_ok,
            "problems": list(self.problems),
        }


@dataclass
class Report:
    """Every item, the thresholds used, and when the report was made (Unix time)."""

    items: list[Item]
    thresholds: Thresholds
    generated: float

    @property
    def status(self) -> int:
        """The worst item's status (0 ok, 1 warning, 2 critical)."""
        return max((item.status for item in self.items), default=OK)

    def as_json(self) -> dict[str, Any]:
        seconds = lambda value: value.total_seconds() if value is not None else None  # noqa: E731
        return {
            "status": STATUS_NAMES[self.status],
            "exit_status": self.status,
            "generated_timestamp": self.generated,
            "thresholds": {
                "max_age_seconds": seconds(self.thresholds.max_age),
                "min_count": self.thresholds.min_count,
                "max_drill_age_seconds": seconds(self.thresholds.max_drill_age),
                "size_drop": self.thresholds.size_drop,
            },
            "items": [item.as_json() for item in self.items],
        }


def last_drill(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """The drill record in a sidecar (:func:`dbbackup.manifest.last_drill`), or ``None``.

    A record whose ``at`` is not an ISO 8601 time counts as no drill.
    """
    drill = manifest.last_drill(metadata if isinstance(metadata, dict) else None)
    return drill if drill is not None and _drill_timestamp(drill) is not None else None


def _drill_timestamp(drill: dict[str, Any]) -> float | None:
    at = drill.get("at")
    if not isinstance(at, str):
        return None
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt_timezone.utc)
    return moment.timestamp()


def timestamp(entry: catalog.Entry) -> float | None:
    """The Unix time of a catalog entry's (naive, local) date."""
    if entry.date is None:
        return None
    if timezone.is_aware(timezone.now()):
        return timezone.make_aware(entry.date).timestamp()
    return entry.date.timestamp()  # naive: the system's local time, as names.now() wrote it


def _size(storage: Storage, name: str) -> int | None:
    try:
        return storage.storage.size(name)
    except Exception:  # a size we cannot read is reported as unknown
        return None


def _metadata(storage: Storage, entry: catalog.Entry) -> dict[str, Any] | None:
    if entry.metadata is not None:
        return entry.metadata
    if not entry.has_metadata:
        return None
    try:
        return catalog.read_metadata(storage, entry.name)
    except Exception:  # an unreadable sidecar means no drill is known
        return None


def assess(
    storage: Storage,
    item: Item,
    entries: list[catalog.Entry],
    thresholds: Thresholds,
    now: float,
    drills: bool = True,
) -> Item:
    """Fill ``item`` from its group's ``entries`` (oldest first) and judge it; ``drills=False``
    reads no sidecar (drill fields stay ``None``)."""
    item.count = len(entries)
    if not entries:
        item.flag(CRITICAL, "no backup")
        return item
    newest = entries[-1]
    item.newest = newest.name
    item.newest_timestamp = timestamp(newest)
    item.newest_size = _size(storage, newest.name)
    if len(entries) > 1:
        item.previous_size = _size(storage, entries[-2].name)
    if item.newest_size is not None and item.previous_size:
        item.size_change = (item.newest_size - item.previous_size) / item.previous_size
    if item.newest_timestamp is None:
        item.flag(WARNING, f"the newest backup {newest.name} has no date")
    else:
        item.newest_age_seconds = max(0.0, now - item.newest_timestamp)
        if thresholds.max_age is not None and item.newest_age_seconds > thresholds.max_age.total_seconds():
            item.flag(
                CRITICAL,
                f"the newest backup is {describe_duration(timedelta(seconds=item.newest_age_seconds))} old "
                f"(more than {describe_duration(thresholds.max_age)})",
            )
    if item.count < thresholds.min_count:
        item.flag(WARNING, f"{item.count} backup(s), fewer than {thresholds.min_count}")
    if (
        thresholds.size_drop is not None
        and item.size_change is not None
        and -item.size_change > thresholds.size_drop
    ):
        item.flag(
            WARNING,
            f"the newest backup is {-item.size_change:.0%} smaller than the previous one "
            f"({item.newest_size} < {item.previous_size} bytes)",
        )
    if drills:
        _assess_drills(storage, item, entries, thresholds, now)
    return item


def _assess_drills(
    storage: Storage, item: Item, entries: list[catalog.Entry], thresholds: Thresholds, now: float
) -> None:
    for position, entry in enumerate(reversed(entries)):
        drill = last_drill(_metadata(storage, entry))
        if drill is None:
            continue
        if position == 0:
            item.newest_drill_ok = drill.get("ok") is True
        if drill.get("ok") is True:
            item.last_drill_timestamp = _drill_timestamp(drill)
            break
    if item.newest_drill_ok is False:
        item.flag(CRITICAL, "the newest backup's last restore drill failed")
    if item.last_drill_timestamp is not None:
        item.last_drill_age_seconds = max(0.0, now - item.last_drill_timestamp)
    if thresholds.max_drill_age is None:
        return
    if item.last_drill_age_seconds is None:
        item.flag(WARNING, "no successful restore drill")
    elif item.last_drill_age_seconds > thresholds.max_drill_age.total_seconds():
        item.flag(
            WARNING,
            f"the last successful restore drill is "
            f"{describe_duration(timedelta(seconds=item.last_drill_age_seconds))} old "
            f"(more than {describe_duration(thresholds.max_drill_age)})",
        )


def _by_server(entries: list[catalog.Entry]) -> dict[str | None, list[catalog.Entry]]:
    groups: dict[str | None, list[catalog.Entry]] = {}
    for entry in entries:  # oldest first, kept within each group
        groups.setdefault(entry.servername, []).append(entry)
    return groups


def report(
    storage: Storage | None = None,
    *,
    thresholds: Thresholds | None = None,
    now: float | None = None,
    drills: bool = True,
) -> Report:
    """The health of every database of ``DBBACKUP_DATABASES`` and of media, in ``storage``.

    ``now`` is a Unix time (default: the current time). Drills are read from the sidecars,
    newest backup first, until a successful one is found (so a group never drilled costs one
    read per backup); ``drills=False`` skips them. A storage that cannot be listed gives a
    critical item rather than an exception; bad settings raise
    :class:`~dbbackup.exceptions.DbbackupConfigurationError`.
    """
    from dbbackup.storage import get_storage

    thresholds = thresholds or Thresholds.from_settings()
    now = time.time() if now is None else now
    aliases = settings.database_aliases()
    items: list[Item] = []
    try:
        storage = storage or get_storage()
        db_entries = catalog.find(storage, content_type="db")
        media_entries = catalog.find(storage, content_type="media")
    except Exception as exc:  # monitoring reports it instead of crashing
        for alias in aliases:
            item = Item("db", alias, None)
            item.flag(CRITICAL, f"the backup storage could not be listed: {type(exc).__name__}: {exc}")
            items.append(item)
        return Report(items, thresholds, now)
    for alias in aliases:
        wanted = {alias, database_name_for_filename(alias)}
        mine = [entry for entry in db_entries if entry.database in wanted]
        groups = _by_server(mine) or {None: []}
        for server, group in sorted(groups.items(), key=lambda pair: pair[0] or ""):
            items.append(assess(storage, Item("db", alias, server), group, thresholds, now, drills))
    for server, group in sorted(_by_server(media_entries).items(), key=lambda pair: pair[0] or ""):
        items.append(assess(storage, Item("media", None, server), group, thresholds, now, drills))
    return Report(items, thresholds, now)


def text(health: Report) -> str:
    """A short report for people: one line per item, then the overall status."""
    lines = []
    for item in health.items:
        where = f"db {item.database}" if item.kind == "db" else "media"
        server = f" on {item.server}" if item.server else ""
        age = (
            describe_duration(timedelta(seconds=item.newest_age_seconds))
            if item.newest_age_seconds is not None
            else "unknown"
        )
        drill = (
            describe_duration(timedelta(seconds=item.last_drill_age_seconds)) + " ago"
            if item.last_drill_age_seconds is not None
            else "never"
        )
        change = f", {item.size_change:+.0%} from previous" if item.size_change is not None else ""
        newest = (
            f"newest {item.newest} ({age} old, {item.newest_size if item.newest_size is not None else '?'}"
            f" bytes{change})"
            if item.newest
            else "no backup"
        )
        lines.append(
            f"{STATUS_NAMES[item.status].upper():<8} {where}{server}: {newest}, "
            f"{item.count} backup(s), last successful drill {drill}"
        )
        lines += [f"         {problem}" for problem in item.problems]
    lines.append(f"Overall: {STATUS_NAMES[health.status].upper()}")
    return "\n".join(lines)
