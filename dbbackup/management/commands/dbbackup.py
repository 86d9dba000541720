"""``manage.py dbbackup``: back up one or more databases."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from dbbackup import name_checks, pipeline, preflight, settings
from dbbackup.db.base import check_alias
from dbbackup.exceptions import DbbackupError
from dbbackup.management.commands._base import BaseDbBackupCommand


def _first_line(error: BaseException) -> str:
    line = (str(error).splitlines() or [""])[0]
    if isinstance(error, DbbackupError | ImproperlyConfigured):
        return line or type(error).__name__
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


class BackupsFailed(DbbackupError):
    """Some of several databases could not be backed up; the others were.

    The message has a summary line, then one line per failed database, so the command's error
    and the failure e-mail name every one of them.
    """

    def __init__(self, failures: list[tuple[str, BaseException]], total: int) -> None:
        self.failures = failures
        lines = [f"{database}: {_first_line(error)}" for database, error in failures]
        failed = ", ".join(repr(database) for database, _ in failures)
        others = "; the others were backed up" if len(failures) < total else ""
        super().__init__(
            f"{len(failures)} of {total} database backups failed ({failed}){others}.\n" + "\n".join(lines)
        )


def _comma_list(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [item.strip() for item in items if item and item.strip()]


class Command(BaseDbBackupCommand):
    mail_on_failure = True
    help = "Back up databases to the backup storage (STORAGES['dbbackup'])."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-c", "--clean", action="store_true", help="Delete old backups afterwards.")
        parser.add_argument(
            "-d", "--database", help="Comma-separated aliases (default: DBBACKUP_DATABASES, or all)."
        )
        parser.add_argument(
            "-s", "--servername", help="Server name in the file name (default: DBBACKUP_HOSTNAME)."
        )
        parser.add_argument(
            "-z",
            "--compress",
            action="store_true",
            help="Compress with DBBACKUP_COMPRESSION (gzip unless set): .gz or .zst.",
        )
        parser.add_argument(
            "--compression",
            choices=["gzip", "zstd"],
            help="Compress with this codec (implies -z; default for -z: DBBACKUP_COMPRESSION).",
        )
        parser.add_argument("-e", "--encrypt", action="store_true", help="Encrypt with GPG (.gpg).")
        parser.add_argument("-o", "--output-filename", dest="filename", help="Store under this exact name.")
        parser.add_argument(
            "-O",
            "--output-path",
            dest="path",
            help="Write to this local file instead, or to s3://BUCKET/KEY in the S3 backup storage.",
        )
        parser.add_argument("-x", "--exclude-tables", help="Comma-separated tables whose data is left out.")
        parser.add_argument(
            "-n", "--schema", action="append", default=[], help="PostgreSQL schema to back up (repeatable)."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Back up nothing: try the tools, connections, storages and GPG key, and report.",
        )

    def interrupted_outcome(self) -> str:
        return "the backup being written was not stored (backups finished before it are kept)."

    def handle(self, *args: Any, **options: Any) -> None:
        databases = _comma_list(options.get("database")) or settings.database_aliases()
        if not databases:
            raise CommandError("No database to back up: DATABASES and DBBACKUP_DATABASES are empty.")
        for database in databases:  # every alias is checked before the first backup starts
            check_alias(database)
        if options.get("check"):
            self.report_preflight(databases)
            return
        if len(databases) > 1 and (options.get("filename") or options.get("path")):
            raise CommandError(
                "-o/--output-filename and -O/--output-path name one file; back up one database at "
                "a time with -d."
            )
        name_checks.check_servername(options.get("servername") or settings.HOSTNAME)
        failures: list[tuple[str, BaseException]] = []
        for database in databases:
            try:
                self.backup_one(database, options)
            except Exception as exc:  # one database's failure must not stop the others
                if len(databases) == 1:
                    raise
                failures.append((database, exc))
                self.stderr.write(self.style.ERROR(f"Backup of {database!r} failed: {_first_line(exc)}"))
        if failures:
            raise BackupsFailed(failures, len(databases))

    def backup_one(self, database: str, options: dict[str, Any]) -> None:
        """Back up one database and say so; its own pre/post signals are sent by the pipeline."""
        self.say(f"Backing up database {database!r}")
        with self.progress(f"dbbackup {database}") as progress:
            result = pipeline.backup_database(
                database,
                servername=options.get("servername"),
                compress=options.get("compress", False),
                compression=options.get("compression"),
                encrypt=options.get("encrypt", False),
                output_filename=options.get("filename"),
                output_path=options.get("path"),
                exclude_tables=_comma_list(options.get("exclude_tables")),
                schemas=options.get("schema") or [],
                clean=options.get("clean", False),
                sender=type(self),
                progress=progress,
            )
        self.say(
            f"Backed up {database!r} to {result.local_path or result.filename} ({result.size} bytes)",
            self.style.SUCCESS,
        )
        for name in result.cleaned:
            self.say(f"Deleted old backup {name}")

    def report_preflight(self, databases: list[str]) -> None:
        checks = preflight.run(databases)
        width = max(len(f"{check.subject}: {check.name}") for check in checks)
        for check in checks:
            label = f"{check.subject}: {check.name}"
            verdict = self.style.SUCCESS("ok  ") if check.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{verdict}  {label:<{width}}  {check.detail}")
        failed = [check for check in checks if not check.ok]
        if failed:
            raise CommandError(
                f"The preflight found {len(failed)} problem(s) of {len(checks)} checks; see above."
            )
        self.stdout.write(self.style.SUCCESS(f"All {len(checks)} checks passed: backups can run."))
