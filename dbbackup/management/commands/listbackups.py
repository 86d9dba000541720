"""``manage.py listbackups``: list the backups in the backup storage."""

from __future__ import annotations

from typing import Any

from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.storage import get_storage

DATE_DISPLAY_FORMAT = "%Y-%m-%d %H:%M:%S"


class Command(BaseDbBackupCommand):
    help = "List the backups in the backup storage, oldest first."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-d", "--database", help="Only backups of this database alias.")
        parser.add_argument(
            "-z", "--compressed", action="store_true", default=None, help="Only compressed backups."
        )
        parser.add_argument(
            "-Z",
            "--not-compressed",
            action="store_false",
            dest="compressed",
            help="Only uncompressed backups.",
        )
        parser.add_argument(
            "-e", "--encrypted", action="store_true", default=None, help="Only encrypted backups."
        )
        parser.add_argument(
            "-E", "--not-encrypted", action="store_false", dest="encrypted", help="Only unencrypted backups."
        )
        parser.add_argument("-c", "--content-type", choices=["db", "media"], help="Only this kind of backup.")

    def handle(self, *args: Any, **options: Any) -> None:
        backups = get_storage().find_backups(
            encrypted=options.get("encrypted"),
            compressed=options.get("compressed"),
            content_type=options.get("content_type"),
            database=options.get("database"),
        )
        width = max([len("Name"), *(len(backup.name) for backup in backups)])
        if not self.quiet:
            self.stdout.write(f"{'Name':<{width}}  {'Datetime':<19}  Type")
        for backup in backups:
            date = backup.date
            shown = date.strftime(DATE_DISPLAY_FORMAT) if date else "unknown"
            self.stdout.write(f"{backup.name:<{width}}  {shown:<19}  {backup.content_type}")
