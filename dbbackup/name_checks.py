"""Checks that refuse naming settings under which backups would get wrong names.

Run before a backup starts (and by the system checks), so that a date format, a filename
template or a server name that would make backups unreadable, colliding or misplaced is
reported in one line before anything is written.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from dbbackup import settings
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.names import _template_setting, date_format, datefmt_to_regex, generate_filename, parse

#: Moments a backup date must tell apart: a day, a week, a month and a year after the first.
_SAMPLE_MOMENTS = tuple(
    datetime(2001, 2, 3, 4, 5, 6) + delta
    for delta in (timedelta(0), timedelta(days=1), timedelta(days=7), timedelta(days=31), timedelta(days=365))
)


def check_naming(
    content_type: str = "db",
    database: str = "default",
    servername: str | None = None,
    extension: str = "dump",
) -> None:
    """Refuse, before a backup starts, settings under which its name would be wrong.

    ``DBBACKUP_DATE_FORMAT`` must be a string that can be read back from names and that tells
    apart backups made on different days (``'%Y'`` or ``''`` cannot). The filename template
    (string or callable) is rendered for several dates: it must not fail, must return a string,
    must give a different name for each date (so it uses ``{datetime}``), and dbbackup must
    recognise the name as a backup again (or restore, listing and cleanup would not find it).
    Raises :class:`~dbbackup.exceptions.DbbackupConfigurationError` naming the setting.
    """
    fmt = date_format()
    datefmt_to_regex(fmt)
    dates = [moment.strftime(fmt) for moment in _SAMPLE_MOMENTS]
    if len(set(dates)) < len(dates):
        raise DbbackupConfigurationError(
            f"DBBACKUP_DATE_FORMAT = {fmt!r} writes the same date for backups made on different days, "
            "so they could not be told apart; include at least the year, month and day, as the "
            "default '%Y-%m-%d-%H%M%S' does."
        )
    setting = _template_setting(content_type)
    rendered = [
        generate_filename(extension, database, servername, content_type, when=moment)
        for moment in _SAMPLE_MOMENTS
    ]
    if len(set(rendered)) < len(rendered):
        raise DbbackupConfigurationError(
            f"{setting} gives backups made on different days the same name ({rendered[0]!r}), so each "
            "backup would replace or block the one before; put {datetime} in it."
        )
    if not rendered[0] or rendered[0].endswith("/") or parse(rendered[0], content_type) is None:
        if not (servername or settings.HOSTNAME):
            raise DbbackupConfigurationError(
                "The server name is empty (DBBACKUP_HOSTNAME is empty and no -s/--servername was "
                f"given), so the backup's name {rendered[0]!r} could not be read back; set one."
            )
        raise DbbackupConfigurationError(
            f"{setting} gives names such as {rendered[0]!r} that dbbackup cannot recognise as "
            f"{content_type} backups, so restore, listbackups and cleanup would not find them; keep "
            "{datetime} and end the name with .{extension}."
        )


_PATH_HOSTILE = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_servername(servername: str, *, option: str = "-s/--servername or DBBACKUP_HOSTNAME") -> str:
    """Return ``servername`` if it can be one field of a file name; refuse it otherwise.

    A server name lands in backup names, and a ``/`` (or ``\\``, ``..``, NUL or another control
    character) would make a sub-folder or a name no listing, restore or cleanup finds again,
    so such names are refused with :class:`DbbackupConfigurationError` before anything starts.
    """
    value = str(servername)
    if not value.strip():
        raise DbbackupConfigurationError(f"The server name ({option}) is empty.")
    if _PATH_HOSTILE.search(value) or ".." in value:
        raise DbbackupConfigurationError(
            f"The server name {value!r} ({option}) cannot be part of a file name: it must not contain "
            "'/', '\\', '..' or control characters; use e.g. 'web-1'."
        )
    return value
