"""Which backups to keep: django-dbbackup's keep-N, plus age and calendar rules, as a union.

Rules (each off unless set), applied to one group of backups at a time (same kind, database
and server, newest first):

* ``last`` N: the N newest (``DBBACKUP_CLEANUP_KEEP``, ``..._KEEP_MEDIA`` for media);
* ``within`` a duration: every backup no older than the newest one minus the duration;
* ``hourly``/``daily``/``weekly``/``monthly``/``yearly`` N: the newest backup of each of the N
  most recent hours/days/ISO weeks/months/years that have backups;
* ``DBBACKUP_CLEANUP_KEEP_FILTER(name)`` true pins a file; a backup without a date is never
  deleted, and neither is the newest backup of a group (whatever the rules say).

A backup is kept when any rule keeps it; :func:`plan` says which rules did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dbbackup import catalog, names, settings
from dbbackup.catalog import Entry
from dbbackup.exceptions import DbbackupConfigurationError

if TYPE_CHECKING:
    from dbbackup.storage import Storage

CALENDAR_RULES: dict[str, Callable[[datetime], tuple]] = {
    "hourly": lambda moment: (moment.year, moment.month, moment.day, moment.hour),
    "daily": lambda moment: (moment.year, moment.month, moment.day),
    "weekly": lambda moment: moment.isocalendar()[:2],
    "monthly": lambda moment: (moment.year, moment.month),
    "yearly": lambda moment: (moment.year,),
}
_DURATION = re.compile(r"^\s*(?:(\d+)y)?\s*(?:(\d+)m)?\s*(?:(\d+)w)?\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*$")


def parse_duration(
    value: timedelta | str | int | None, setting: str = "DBBACKUP_CLEANUP_KEEP_WITHIN"
) -> timedelta | None:
    """A ``timedelta``, or a string like ``"30d"``, ``"2w"``, ``"1y6m"``, ``"12h"`` (a year is 365
    days, a month 30); ``None`` stays ``None``."""
    if value is None or isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value)) if str(value).strip() else None
    if match is None:
        raise DbbackupConfigurationError(
            f"{setting} = {value!r} is not a duration; use a timedelta or a string such as '30d', "
            "'2w', '6m', '1y' or '12h'."
        )
    years, months, weeks, days, hours = (int(part or 0) for part in match.groups())
    return timedelta(days=365 * years + 30 * months + 7 * weeks + days, hours=hours)


def describe_duration(duration: timedelta) -> str:
    """``timedelta(days=9)`` as ``"9 days"``, ``timedelta(hours=36)`` as ``"1 day 12 hours"``."""
    hours = int(duration.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours or not parts:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    return " ".join(parts)


@dataclass(frozen=True)
class Policy:
    """How many backups of one group to keep; zero or ``None`` turns a rule off."""

    last: int | None = None
    within: timedelta | None = None
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    @classmethod
    def from_settings(cls, content_type: str, **overrides: object) -> Policy:
        """The configured policy for ``"db"`` or ``"media"``, with command-line overrides."""
        values: dict[str, object] = {
            "last": settings.CLEANUP_KEEP_MEDIA if content_type == "media" else settings.CLEANUP_KEEP,
            "within": settings.CLEANUP_KEEP_WITHIN,
            **{rule: settings.get(f"CLEANUP_KEEP_{rule.upper()}") for rule in CALENDAR_RULES},
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        for key, value in values.items():
            if key != "within" and value is not None and (not isinstance(value, int) or value < 0):
                raise DbbackupConfigurationError(
                    f"The {key!r} retention count must be a whole number ≥ 0, not {value!r}."
                )
        return cls(within=parse_duration(values.pop("within")), **values)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = [f"last {self.last}"] if self.last else []
        if self.within:
            parts.append(f"within {describe_duration(self.within)}")
        parts += [f"{rule} {getattr(self, rule)}" for rule in CALENDAR_RULES if getattr(self, rule)]
        return ", ".join(parts) or "nothing (every dated backup would go)"


@dataclass
class Decision:
    """What retention decided for one backup, and why."""

    entry: Entry
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


#: Why a loosely named backup (see :mod:`dbbackup.catalog`) that is not certain is kept.
UNCERTAIN = "named by another template and not certainly this database's: never deleted"


def plan(
    entries: Iterable[Entry], policy: Policy, keep_filter: Callable[[str], bool] | None = None
) -> list[Decision]:
    """Decide for every entry of one group; returns decisions newest first."""
    entries = list(entries)
    dated = sorted(
        (entry for entry in entries if entry.date is not None and entry.deletable),
        key=lambda entry: entry.date,
        reverse=True,
    )
    undated = [entry for entry in entries if entry.date is None]
    uncertain = [entry for entry in entries if entry.date is not None and not entry.deletable]
    decisions = [Decision(entry) for entry in dated]
    for index, decision in enumerate(decisions):
        if policy.last and index < policy.last:
            decision.reasons.append(f"one of the last {policy.last}")
    if policy.within and dated:
        oldest_kept = dated[0].date - policy.within
        for decision in decisions:
            if decision.entry.date >= oldest_kept:
                decision.reasons.append(f"within {describe_duration(policy.within)} of the newest")
    for rule, bucket_of in CALENDAR_RULES.items():
        wanted = getattr(policy, rule)
        seen: list[tuple] = []
        for decision in decisions:
            bucket = bucket_of(decision.entry.date)
            if bucket in seen:
                continue
            if len(seen) >= wanted:
                break
            seen.append(bucket)
            decision.reasons.append(f"{rule} {len(seen)}/{wanted}")
    for decision in decisions:
        if keep_filter is not None and ask_keep_filter(keep_filter, decision.entry.name):
            decision.reasons.append("pinned by DBBACKUP_CLEANUP_KEEP_FILTER")
    if decisions and not decisions[0].keep:
        decisions[0].reasons.append("the newest backup is always kept")
    return (
        decisions
        + [Decision(entry, [UNCERTAIN]) for entry in uncertain]
        + [Decision(entry, ["no date to judge it by: never deleted"]) for entry in undated]
    )


def ask_keep_filter(keep_filter: Callable[[str], bool], name: str) -> bool:
    """``keep_filter(name)``; an exception becomes a configuration error naming the setting.

    Every decision is taken before anything is deleted, so when this raises nothing was deleted.
    """
    try:
        return bool(keep_filter(name))
    except Exception as exc:
        raise DbbackupConfigurationError(
            f"DBBACKUP_CLEANUP_KEEP_FILTER raised {type(exc).__name__} for {name!r}: {exc}; "
            "no backup was deleted."
        ) from exc


def check_keep_filter(sample_name: str) -> None:
    """Before a backup with cleanup starts: the filter must be importable and accept a name."""
    keep_filter = settings.callable_setting("CLEANUP_KEEP_FILTER")
    if keep_filter is not None:
        ask_keep_filter(keep_filter, sample_name)


def prune(
    storage: Storage,
    *,
    content_type: str,
    database: str | None = None,
    servername: str | None = None,
    dry_run: bool = False,
    **overrides: object,
) -> list[Decision]:
    """Apply the retention policy to the matching backups, group by group.

    Deletes (unless ``dry_run``) every backup no rule keeps, together with its sidecar, and
    sidecars whose backup is gone. Returns every decision, newest first within each group.
    """
    policy = Policy.from_settings(content_type, **overrides)
    keep_filter = settings.callable_setting("CLEANUP_KEEP_FILTER")
    entries = catalog.find(storage, content_type=content_type, database=database, servername=servername)
    decisions: list[Decision] = []
    for _, group in catalog.iter_groups(entries):
        decisions += plan(group, policy, keep_filter)
    if not dry_run:
        for decision in decisions:
            if not decision.keep:
                storage.delete_file(decision.entry.name)
                if decision.entry.has_metadata:
                    storage.delete_file(decision.entry.name + names.METADATA_SUFFIX)
        _delete_orphaned_sidecars(storage, content_type, database, servername)
    return decisions


def _delete_orphaned_sidecars(
    storage: Storage, content_type: str, database: str | None, servername: str | None
) -> None:
    files = (
        set(storage.list_directory()) if not names.template_has_folders(content_type) else set(storage.walk())
    )
    for sidecar in sorted(files):
        if not sidecar.endswith(names.METADATA_SUFFIX):
            continue
        backup = sidecar[: -len(names.METADATA_SUFFIX)]
        if backup not in files and names.parse(
            backup, content_type, database=database, servername=servername
        ):
            storage.delete_file(sidecar)
