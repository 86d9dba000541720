"""``manage.py prunebackups``: apply the retention rules now, or show what they would do."""

from __future__ import annotations

import sys
from typing import Any

from dbbackup import retention, settings
from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.storage import get_storage


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


#: The period each calendar rule counts in.
PERIODS = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}


class Command(BaseDbBackupCommand):
    mail_on_failure = True
    help = (
        "Delete the backups no retention rule keeps (DBBACKUP_CLEANUP_KEEP and the age and "
        "calendar rules), per database and server. --dry-run shows what would go and why."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-d", "--database", help="Comma-separated aliases (default: DBBACKUP_DATABASES).")
        parser.add_argument("-s", "--servername", help="Only backups made on this server.")
        parser.add_argument(
            "-c", "--content-type", choices=["db", "media"], help="Only database or only media backups."
        )
        parser.add_argument("--dry-run", action="store_true", help="Delete nothing; show the decisions.")
        parser.add_argument("--keep-last", type=_count, help="Keep the newest N (overrides the setting).")
        parser.add_argument(
            "--keep-within",
            help="Keep every backup at most this much older than its group's newest, e.g. 30d, 2w, 12h.",
        )
        for rule in retention.CALENDAR_RULES:
            parser.add_argument(
                f"--keep-{rule}",
                type=_count,
                help=f"Keep the newest backup of each of the N latest {PERIODS[rule]}s that have backups.",
            )

    def interrupted_outcome(self) -> str:
        return "the backups deleted so far stay deleted; every other backup is kept."

    def handle(self, *args: Any, **options: Any) -> None:
        within = options.get("keep_within")
        overrides = {
            "last": options.get("keep_last"),
            "within": retention.parse_duration(within, "--keep-within") if within else None,
        }
        overrides.update({rule: options.get(f"keep_{rule}") for rule in retention.CALENDAR_RULES})
        storage = get_storage()
        kinds = [options["content_type"]] if options.get("content_type") else ["db", "media"]
        aliases = [
            a.strip()
            for a in (options.get("database") or ",".join(settings.database_aliases())).split(",")
            if a.strip()
        ]
        dry_run = options.get("dry_run", False)
        for kind in kinds:  # wrong settings or options fail here, before anything is deleted
            retention.Policy.from_settings(kind, **overrides)
        if (
            not dry_run
            and self.interactive
            and sys.stdin.isatty()
            and not self.confirm(
                "Delete the backups no retention rule keeps? (--dry-run shows them first) [Y/n] "
            )
        ):
            self.say("Nothing was deleted.")
            return
        deleted = kept = 0
        for kind in kinds:
            targets = aliases if kind == "db" else [None]
            policy = retention.Policy.from_settings(kind, **overrides)
            for database in targets:
                decisions = retention.prune(
                    storage,
                    content_type=kind,
                    database=database,
                    servername=options.get("servername"),
                    dry_run=dry_run,
                    **overrides,
                )
                if decisions:
                    label = f"database {database!r}" if database else "media"
                    self.say(f"{label} ({policy.describe()}):")
                verb_width = len("would delete" if dry_run else "deleted")
                name_width = max((len(decision.entry.name) for decision in decisions), default=0)
                for decision in decisions:
                    name = f"{decision.entry.name:<{name_width}}"
                    if decision.keep:
                        kept += 1
                        reasons = "; ".join(decision.reasons)
                        self.say(f"  {'keep':<{verb_width}}  {name}  ({reasons})")
                    else:
                        deleted += 1
                        verb = "would delete" if dry_run else "deleted"
                        self.say(f"  {verb:<{verb_width}}  {name}".rstrip(), self.style.WARNING)
        summary = f"{'Would delete' if dry_run else 'Deleted'} {deleted} backup(s); kept {kept}."
        self.say(summary, self.style.SUCCESS)
