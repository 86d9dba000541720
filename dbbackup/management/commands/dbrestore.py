"""``manage.py dbrestore``: restore a database from a backup."""

from __future__ import annotations

from typing import Any

from dbbackup import pipeline
from dbbackup.exceptions import DbbackupError
from dbbackup.management.commands._base import BaseDbBackupCommand
from dbbackup.pipeline.drill import DrillResult, drill_database


class Command(BaseDbBackupCommand):
    help = "Restore a database from a backup (by default the newest one for that database)."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-d", "--database", help="Alias of the database to restore into.")
        parser.add_argument("-i", "--input-filename", help="Name of the backup in the backup storage.")
        parser.add_argument("-I", "--input-path", help="Path of a local backup file.")
        parser.add_argument("-s", "--servername", help="Only consider backups made on this server.")
        parser.add_argument(
            "-c",
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
            "-n", "--schema", action="append", default=[], help="PostgreSQL schema to restore (repeatable)."
        )
        parser.add_argument(
            "-r", "--no-drop", action="store_true", default=False, help="Do not drop existing objects first."
        )
        parser.add_argument("--pg-options", help="Extra options for pg_restore.")
        parser.add_argument(
            "--allow-unknown-migrations",
            action="store_true",
            help="Restore even a backup whose database has migrations this code does not know "
            "(made by newer code).",
        )
        parser.add_argument(
            "--ignore-metadata",
            action="store_true",
            help="Restore as if the backup had no .metadata sidecar (e.g. a damaged one): no checksum, "
            "no engine check, the configured connector; only the backup's format is checked.",
        )
        parser.add_argument(
            "--verify-only",
            action="store_true",
            help="Read the backup through checksum, decryption and decompression; restore nothing.",
        )
        parser.add_argument(
            "--drill",
            action="store_true",
            help="Restore into a scratch database on the same server, check every model's table, drop "
            "it, and record the outcome in the backup's sidecar; the real database is not touched.",
        )

    #: The connector of the restore under way, if one started (for the interruption message).
    restoring = None

    def interrupted_outcome(self) -> str:
        if self.restoring is None:
            return "nothing was changed."
        if self.restoring.atomic_restore:
            return "the restore was abandoned before its commit; the database is as it was."
        return "the database may be partly restored; restore a good backup again."

    def handle(self, *args: Any, **options: Any) -> None:
        plan = pipeline.plan_restore(
            options.get("database"),
            input_filename=options.get("input_filename"),
            input_path=options.get("input_path"),
            servername=options.get("servername"),
            decrypt=options.get("decrypt", False),
            passphrase=options.get("passphrase"),
            uncompress=options.get("uncompress", False),
            schemas=options.get("schema") or [],
            no_drop=options.get("no_drop", False),
            pg_options=options.get("pg_options"),
            # checking a newer backup's bytes is harmless: --verify-only restores nothing
            allow_unknown_migrations=options.get("allow_unknown_migrations") or options.get("verify_only"),
            ignore_metadata=options.get("ignore_metadata", False),
        )
        for warning in plan.warnings:
            self.stderr.write(self.style.WARNING(warning))
        verify_only = options.get("verify_only")
        if options.get("drill"):
            self._drill(plan)
            return
        if not verify_only:  # a receiver's veto comes before any question, as in django-dbbackup
            pipeline.announce_restore(plan, sender=type(self))
        if plan.encrypted and plan.passphrase is None and self.interactive:
            plan.passphrase = self.ask_passphrase(plan.filename)
        if verify_only:
            self.say(f"Verifying {plan.filename}")
            result = pipeline.verify_backup(plan)
            self.say(
                f"{plan.filename} is readable: {result.size} bytes stored, {result.content_size} bytes "
                f"of dump ({result.checked}).",
                self.style.SUCCESS,
            )
            return
        for note in plan.notes:
            self.say(note)
        self.say(f"Restoring {plan.filename} into database {plan.database!r}")
        if not self.confirm():
            self.say("Restore cancelled; nothing was changed.")
            return
        self.restoring = plan.connector
        with self.progress(f"dbrestore {plan.database}") as progress:
            result = pipeline.execute_restore(plan, sender=type(self), progress=progress, announced=True)
        self.say(f"Restored {plan.database!r} from {plan.filename} ({result.checked})", self.style.SUCCESS)

    def _drill(self, plan: pipeline.RestorePlan) -> None:
        """Restore into a scratch database (no restore signals, no confirmation: nothing real changes)."""
        if plan.encrypted and plan.passphrase is None and self.interactive:
            plan.passphrase = self.ask_passphrase(plan.filename)
        self.say(f"Drill: restoring {plan.filename} into a scratch database")
        report(self, drill_database(plan))


def report(command: BaseDbBackupCommand, result: DrillResult) -> None:
    """Say how a drill went; a failed drill is an error (exit status 1)."""
    for name in result.swept:
        command.say(f"Dropped {name}, left by a drill that was killed")
    record = result.record
    if not record["ok"]:
        raise DbbackupError(f"Drill of {result.filename} FAILED: {record['error']} ({result.recorded}).")
    rows = record["rows"]
    found = (
        f"{rows.get('files', 0)} file(s)"
        if result.media
        else f"{len(rows)} table(s), {sum(rows.values())} row(s)"
    )
    command.say(
        f"Drill of {result.filename} passed in {record['seconds']:.1f} s: {found} ({result.recorded}).",
        command.style.SUCCESS,
    )
