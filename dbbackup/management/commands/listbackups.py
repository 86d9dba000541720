"""``manage.py listbackups``: list the backups in the backup storage."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandError

from dbbackup import catalog, health, manifest, prometheus
from dbbackup.display import human_size
from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.pipeline.drill import read_drill
from dbbackup.storage import get_storage

DATE_DISPLAY_FORMAT = "%Y-%m-%d %H:%M:%S"
#: django-dbbackup's table: the name in 40 columns, one space, the date in 20 columns. Scripts
#: that cut its lines at those columns keep working; the new columns come after.
UPSTREAM_WIDTHS = {0: 40, 1: 20}


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    upstream = f"{cells[0]:<{widths[0]}} {cells[1]:<{widths[1]}}"
    ours = "  ".join(f"{cell:<{width}}" for cell, width in zip(cells[2:], widths[2:], strict=True))
    return f"{upstream}  {ours}".rstrip()


class Command(BaseDbBackupCommand):
    help = "List the backups in the backup storage, oldest first."

    #: With ``--health``: 0 ok, 1 warning, 2 critical (Nagios). On the command line it becomes
    #: the exit status; ``call_command`` callers pass a ``Command()`` instance and read it here.
    health_status: int | None = None

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
            choices=["table", "json", "prometheus"],
            default="table",
            help="A table for people or JSON for scripts; prometheus (with --health only) for "
            "node_exporter's textfile collector.",
        )
        parser.add_argument(
            "--health",
            action="store_true",
            help="Report the health of the backups (age, size, count, drills) instead of listing "
            "them; exit status 0 ok, 1 warning, 2 critical.",
        )
        parser.add_argument(
            "--output",
            metavar="PATH",
            help="With --health: write the report to this file (atomically) instead of stdout.",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        super().run_from_argv(argv)
        if self.health_status:
            sys.exit(self.health_status)

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("health"):
            self._health(options)
            return
        if options.get("format") == "prometheus" or options.get("output"):
            raise CommandError("--format prometheus and --output go with --health.")
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
                _drill_cell(read_drill(storage, entry)),
            )
            for entry in entries
        ]
        header = ("Name", "Datetime", "Type", "Database", "Server", "Size", "Drill")
        widths = [
            max([len(header[i]), UPSTREAM_WIDTHS.get(i, 0), *(len(row[i]) for row in rows)])
            for i in range(len(header))
        ]
        for row in ([header] if not self.quiet else []) + rows:
            self.stdout.write(_line(row, widths))

    def _health(self, options: dict[str, Any]) -> None:
        filters = [
            flag
            for flag, key in (("-d", "database"), ("-s", "servername"), ("-c", "content_type"))
            if options.get(key) is not None
        ]
        filters += [
            flag
            for flag, key in (("-z/-Z", "compressed"), ("-e/-E", "encrypted"))
            if options.get(key) is not None
        ]
        if filters:
            raise CommandError(
                f"--health reports every database and media; it takes no {', '.join(filters)}."
            )
        report = health.report()
        self.health_status = report.status
        output_format = options.get("format")
        if output_format == "json":
            text = json.dumps(report.as_json(), indent=2) + "\n"
        elif output_format == "prometheus":
            text = prometheus.render(report)
        else:
            text = health.text(report) + "\n"
        if options.get("output"):
            prometheus.write_atomically(options["output"], text)
        else:
            self.stdout.write(text, ending="")

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
            "drill": manifest.last_drill(metadata),
        }


def _size(storage, entry: catalog.Entry) -> int | None:
    try:
        return storage.storage.size(entry.name)
    except (OSError, NotImplementedError):
        return None


def _drill_cell(drill: dict[str, Any] | None) -> str:
    """``ok 2026-12-01 03:00`` or ``FAILED 2026-12-01 03:00`` (UTC), or empty when never drilled."""
    if drill is None:
        return ""
    when = drill["at"][:16].replace("T", " ")
    return f"{'ok' if drill['ok'] else 'FAILED'} {when}"
