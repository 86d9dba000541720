"""System checks (``manage.py check``), registered by the app config.

Ids keep django-dbbackup's meaning where it had one (W001-W005); new ones start at W011.

dbbackup's checks never stop ``migrate``, ``runserver``, ``test`` or any other command: every
problem is reported as a Warning, also those whose id starts with ``E`` (ids are stable; the E
says that a backup command will refuse to run until it is fixed, with a clear error then).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings as django_settings
from django.core.checks import ERROR, CheckMessage, Error, Tags, Warning, register

from dbbackup import name_checks, names, settings
from dbbackup.exceptions import DbbackupConfigurationError

W001 = Warning(
    "DBBACKUP_HOSTNAME is empty.", hint="Set DBBACKUP_HOSTNAME to a non-empty string.", id="dbbackup.W001"
)


def _template_problem(name: str, check_id: str) -> list:
    template = settings.get(name)
    setting = settings.SETTING_NAMES[name]
    if not (isinstance(template, str) or callable(template)):
        return [Error(f"{setting} must be a format string or a callable.", id="dbbackup.E001")]
    if isinstance(template, str) and "{datetime}" not in template:
        return [
            Warning(
                f"{setting} has no {{datetime}} field.",
                hint="Without the date, backups cannot be ordered, found or cleaned up.",
                id=check_id,
            )
        ]
    return []


def _never_blocking(check: Callable[..., list]) -> Callable[..., list]:
    """Report the problems ``check`` finds as Warnings, so that they never stop a command."""

    @functools.wraps(check)
    def reporting(app_configs=None, **kwargs) -> list[CheckMessage]:
        try:
            problems = check(app_configs, **kwargs)
        except Exception as exc:  # a broken setting must not stop migrate either
            return [
                Warning(f"A dbbackup check could not run: {type(exc).__name__}: {exc}", id="dbbackup.W019")
            ]
        return [
            Warning(problem.msg, hint=problem.hint, obj=problem.obj, id=problem.id)
            if problem.level >= ERROR
            else problem
            for problem in problems
        ]

    return reporting


@register(Tags.compatibility)
@_never_blocking
def check_settings(app_configs=None, **kwargs) -> list:
    """Check the dbbackup settings that a typo would silently break."""
    problems: list = []
    if not settings.HOSTNAME:
        problems.append(W001)
    problems += _template_problem("FILENAME_TEMPLATE", "dbbackup.W003")
    problems += _template_problem("MEDIA_FILENAME_TEMPLATE", "dbbackup.W004")
    try:
        names.datefmt_to_regex()
    except DbbackupConfigurationError as exc:
        problems.append(Warning(str(exc), id="dbbackup.W005"))
    if not problems:  # what a backup would refuse: colliding dates or names, unreadable names
        for content_type in names.CONTENT_TYPES:
            try:
                name_checks.check_naming(content_type, extension="tar" if content_type == "media" else "dump")
            except DbbackupConfigurationError as exc:
                problems.append(Error(str(exc), id="dbbackup.E007"))
    for legacy in ("DBBACKUP_STORAGE", "DBBACKUP_STORAGE_OPTIONS"):
        if hasattr(django_settings, legacy):
            in_use = (
                "is ignored, as STORAGES['dbbackup'] is set"
                if "dbbackup" in getattr(django_settings, "STORAGES", {})
                else "still works but is deprecated"
            )
            problems.append(
                Warning(
                    f"{legacy} is a django-dbbackup 4.x setting and {in_use}.",
                    hint='Move it to STORAGES["dbbackup"] = {"BACKEND": ..., "OPTIONS": {...}}.',
                    id="dbbackup.W012",
                )
            )
    media_path = getattr(django_settings, "DBBACKUP_MEDIA_PATH", None)
    if media_path is not None and str(media_path) != str(django_settings.MEDIA_ROOT):
        problems.append(
            Warning(
                "DBBACKUP_MEDIA_PATH is ignored: mediabackup archives the files of "
                'STORAGES["default"], as django-dbbackup does.',
                hint='Point STORAGES["default"] at the media you want backed up, or remove the setting.',
                id="dbbackup.W013",
            )
        )
    if (
        settings.STORAGES_DBBACKUP_ALIAS not in getattr(django_settings, "STORAGES", {})
        and not settings.STORAGE
    ):
        from dbbackup.storage import default_location

        problems.append(
            Warning(
                f'STORAGES["{settings.STORAGES_DBBACKUP_ALIAS}"] is not configured; backups go to '
                f"{default_location()}.",
                hint='Add STORAGES["dbbackup"] = {"BACKEND": ..., "OPTIONS": {"location": ...}}.',
                id="dbbackup.W011",
            )
        )
    return problems


@register("dbbackup")
@_never_blocking
def check_environment(app_configs=None, **kwargs) -> list:
    """Tools on PATH, the GPG recipient's key, and a safe, writable backup location."""
    from dbbackup import environment

    return [
        (Error if finding.id.startswith("dbbackup.E") else Warning)(
            finding.message, hint=finding.hint or None, id=finding.id
        )
        for finding in environment.all_findings()
    ]


@register("dbbackup", deploy=True)
def check_backup_age(app_configs=None, **kwargs) -> list:
    """``check --deploy`` only (W030): warn when a database of ``DBBACKUP_DATABASES`` has no
    backup, or its newest backup is older than ``DBBACKUP_HEALTH_MAX_AGE``. Never raises: a
    storage that cannot be read, or a bad setting, is a W030 warning too."""
    from dbbackup import health

    try:
        max_age = health.Thresholds.from_settings().max_age
        thresholds = health.Thresholds(max_age=max_age, min_count=0, size_drop=None)
        report = health.report(thresholds=thresholds, drills=False)
        problems = []
        for item in report.items:
            if item.kind != "db":
                continue
            stale = (
                max_age is not None
                and item.newest_age_seconds is not None
                and item.newest_age_seconds > max_age.total_seconds()
            )
            if item.newest is None or stale:
                where = f"Database {item.database!r}" + (f" on {item.server}" if item.server else "")
                reasons = [problem.split(": ", 1)[1] for problem in item.problems if "drill" not in problem]
                problems.append(
                    Warning(
                        f"{where}: {'; '.join(reasons)}.",
                        hint="Check that the backup job runs; manage.py listbackups --health gives details.",
                        id="dbbackup.W030",
                    )
                )
        return problems
    except Exception as exc:
        return [
            Warning(
                f"The age of the backups could not be checked: {type(exc).__name__}: {exc}",
                id="dbbackup.W030",
            )
        ]
