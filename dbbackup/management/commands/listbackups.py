"""``manage.py listbackups``: list the backups in the backup storage."""

from __future__ import annotations

import json
from typing import Any

from dbbackup import catalog, manifest
from dbbackup.display import human_size
from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.storage import get_storage

DATE_DISPLAY_FORMAT = "%Y-%m-%d %H:%M:%S"


class Command(BaseDbBackupCommand):
    help = "List the backups in the backup storage, oldest first."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-d", "--database", help="Only backups of this database alias.")
        parser.add_argument("-s", "--servername", help="Only backups made on this server.")
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
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="A table for people or JSON for scripts.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        storage = get_storage()
        entries = catalog.find(
            storage,
            content_type=options.get("content_type"),
            database=options.get("database"),
            servername=options.get("servername"),
            encrypted=options.get("encrypted"),
            compressed=options.get("compressed"),
            include_unrecognised=True,
        )
        if options.get("format") == "json":
            self.stdout.write(json.dumps([self._as_json(storage, entry) for entry in entries], indent=2))
            return
        rows = [
            (
                entry.name,
                entry.date.strftime(DATE_DISPLAY_FORMAT) if entry.date else "unknown",
                entry.content_type or "unrecognised",
                entry.database or "",
                entry.servername or "",
                human_size(_size(storage, entry)),
            )
            for entry in entries
        ]
        header = ("Name", "Datetime", "Type", "Database", "Server", "Size")
        widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
        if not self.quiet:
            self.stdout.write(
                "  ".join(f"{title:<{width}}" for title, width in zip(header, widths, strict=True)).rstrip()
            )
        for row in rows:
            self.stdout.write(
                "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip()
            )

    def _as_json(self, storage, entry: catalog.Entry) -> dict[str, Any]:
        metadata = (
            entry.metadata
            if entry.metadata is not None
            else (catalog.read_metadata(storage, entry.name) if entry.has_metadata else None)
        )
        sha256, _ = manifest.integrity(metadata)
        return {
            "name": entry.name,
            "content_type": entry.content_type,
            "database": entry.database,
            "servername": entry.servername,
            "size": _size(storage, entry),
            "created": entry.date.isoformat() if entry.date else None,
            "compressed": entry.compression is not None,
            "encrypted": entry.encrypted,
            "codec": entry.compression,
            "checksum": f"sha256:{sha256}" if sha256 else None,
            "recognised": entry.recognised,
        }


def _size(storage, entry: catalog.Entry) -> int | None:
    try:
        return storage.storage.size(entry.name)
    except (OSError, NotImplementedError):
        return None
