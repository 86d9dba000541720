"""Names that django-dbbackup users import from ``dbbackup.utils``, kept importable.

This module holds no logic: each name lives with the concept it belongs to.
"""

from dbbackup.exceptions import DecryptionError, EncryptionError
from dbbackup.names import datefmt_to_regex
from dbbackup.names import generate_filename as filename_generate


def filename_to_datestring(filename: str, datefmt: str | None = None) -> str | None:
    """The date part of a backup name, as written, or ``None``."""
    match = datefmt_to_regex(datefmt).search(filename)
    return match.group(1) if match else None


def filename_to_date(filename: str, datefmt: str | None = None):
    """The date of a backup name as a naive ``datetime``, or ``None``."""
    from datetime import datetime

    from dbbackup import settings

    datestring = filename_to_datestring(filename, datefmt)
    if datestring is None:
        return None
    try:
        return datetime.strptime(datestring, datefmt or settings.DATE_FORMAT)
    except ValueError:
        return None


__all__ = [
    "DecryptionError",
    "EncryptionError",
    "datefmt_to_regex",
    "filename_generate",
    "filename_to_date",
    "filename_to_datestring",
]
