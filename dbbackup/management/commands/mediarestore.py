"""``manage.py mediarestore``: write the files of a media backup back to the media storage."""

from __future__ import annotations

from typing import Any

from dbbackup import pipeline
from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.management.commands.dbrestore import report
from dbbackup.pipeline.drill import drill_media


class Command(BaseDbBackupCommand):
    help = "Restore media files from a backup (by default the newest one)."
    content_type = "media"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-i", "--input-filename", help="Name of the backup in the backup storage.")
        parser.add_argument("-I", "--input-path", help="Path of a local backup file.")
        parser.add_argument("-s", "--servername", help="Only consider backups made on this server.")
        parser.add_argument(
            "-e",
            "--decrypt",
            action="store_true",
            help="Pick the newest encrypted backup (encryption is recognised anyway).",
        )
        parser.add_argument("-p", "--passphrase", help="GPG passphrase (prompted when needed).")
        parser.add_argument(
            "-z",
            "--uncompress",
            action="store_true",
            help="Pick the newest compressed backup (compression is recognised anyway).",
        )
        parser.add_argument(
            "-r", "--replace", action="store_true", default=False, help="Overwrite media files that exist."
        )
        parser.add_argument(
            "--verify-only", action="store_true", help="Read and check the archive; write nothing."
        )
        parser.add_argument(
            "--ignore-metadata",
            action="store_true",
            help="Restore as if the backup had no .metadata sidecar (e.g. a damaged one): no checksum.",
        )
        parser.add_argument(
            "--drill",
            action="store_true",
            help="Extract into a scratch folder, checking every member, remove it, and record the "
            "outcome in the backup's sidecar; the media storage is not touched.",
        )

    def interrupted_outcome(self) -> str:
        return (
            "nothing was changed unless the verified files were already being moved into place "
            "(or, on storages other than a local folder, written): those are restored, the "
            "others unchanged; run the restore again."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        plan = pipeline.plan_media_restore(
            input_filename=options.get("input_filename"),
            input_path=options.get("input_path"),
            servername=options.get("servername"),
            decrypt=options.get("decrypt", False),
            passphrase=options.get("passphrase"),
            uncompress=options.get("uncompress", False),
            replace=options.get("replace", False),
            ignore_metadata=options.get("ignore_metadata", False),
        )
        verify_only = options.get("verify_only")
        if options.get("drill"):  # no signals, no confirmation: nothing real changes
            if plan.encrypted and plan.passphrase is None and self.interactive:
                plan.passphrase = self.ask_passphrase(plan.filename)
            self.say(f"Drill: extracting {plan.filename} into a scratch folder")
            report(self, drill_media(plan))
            return
        if not verify_only:  # a receiver's veto comes before any question, as in django-dbbackup
            pipeline.announce_media_restore(plan, sender=type(self))
        if plan.encrypted and plan.passphrase is None and self.interactive:
            plan.passphrase = self.ask_passphrase(plan.filename)
        if verify_only:
            files, links = pipeline.verify_media_backup(plan)
            skipped = f"; {links} link(s) would be skipped" if links else ""
            self.say(f"{plan.filename} is readable and safe: {files} file(s){skipped}.", self.style.SUCCESS)
            return
        mode = "replacing existing files" if plan.replace else "keeping existing files"
        self.say(f"Restoring media from {plan.filename}, {mode}")
        if not self.confirm():
            self.say("Restore cancelled; nothing was changed.")
            return
        with self.progress("mediarestore") as progress:
            result = pipeline.execute_media_restore(
                plan, sender=type(self), report=self._report, progress=progress, announced=True
            )
        if result.removed_partials:
            self.say(f"Removed {result.removed_partials} temporary file(s) left by an interrupted restore")
        if result.removed_staging:
            self.say(f"Removed {result.removed_staging} staging folder(s) left by an interrupted restore")
        skipped = f"; skipped {result.skipped}" if result.skipped else ""
        kept = f"; kept {result.kept} existing file(s) (-r/--replace overwrites them)" if result.kept else ""
        self.say(
            f"Restored {result.written} media file(s) from {plan.filename}{kept}{skipped}.",
            self.style.SUCCESS,
        )

    def _report(self, event: str, name: str) -> None:
        if event == "kept":
            if self.verbosity >= 2:  # one line per file only when asked: the summary counts them
                self.say(f"Kept existing {name}")
        elif event == "link":
            self.stderr.write(self.style.WARNING(f"Skipped link {name}: storages hold files only"))
        else:
            self.stderr.write(self.style.WARNING(name))
