"""``manage.py mediabackup``: archive the media storage into one backup."""

from __future__ import annotations

from typing import Any

from dbbackup import pipeline
from dbbackup.management.commands._base import BaseDbBackupCommand


class Command(BaseDbBackupCommand):
    mail_on_failure = True
    help = "Back up every file of the media storage (STORAGES['default']) as one tar archive."
    content_type = "media"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-c", "--clean", action="store_true", help="Delete old media backups afterwards.")
        parser.add_argument(
            "-s", "--servername", help="Server name in the file name (default: DBBACKUP_HOSTNAME)."
        )
        parser.add_argument(
            "-z", "--compress", action="store_true", help="Compress (gzip unless DBBACKUP_COMPRESSION)."
        )
        parser.add_argument(
            "--compression", choices=["gzip", "zstd"], help="Compress with this codec (implies -z)."
        )
        parser.add_argument("-e", "--encrypt", action="store_true", help="Encrypt with GPG (.gpg).")
        parser.add_argument(
            "-o", "--output-filename", dest="filename", help="Archive name (.gpg is still added with -e)."
        )
        parser.add_argument(
            "-O",
            "--output-path",
            dest="path",
            help="Write to this local file instead, or to s3://BUCKET/KEY in the S3 backup storage.",
        )

    def interrupted_outcome(self) -> str:
        return "no media backup was stored."

    def handle(self, *args: Any, **options: Any) -> None:
        self.say("Backing up media files")
        with self.progress("mediabackup") as progress:
            result = pipeline.backup_media(
                servername=options.get("servername"),
                compress=options.get("compress", False),
                compression=options.get("compression"),
                encrypt=options.get("encrypt", False),
                output_filename=options.get("filename"),
                output_path=options.get("path"),
                clean=options.get("clean", False),
                sender=type(self),
                progress=progress,
            )
        self.say(
            f"Backed up {result.files} media file(s) to {result.local_path or result.filename} "
            f"({result.size} bytes)",
            self.style.SUCCESS,
        )
        for name in result.cleaned:
            self.say(f"Deleted old backup {name}")
