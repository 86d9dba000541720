"""Names no filename template reads, read loosely: a date anywhere, and a database alias.

Backups written under an earlier ``DBBACKUP_FILENAME_TEMPLATE``, or under django-dbbackup's
older default names, carry a date (and usually their database) but no template reads them
back. :func:`parse` finds what can be found; :mod:`dbbackup.catalog` decides how far to trust
it (see the "Which files are backups" section of ``docs/retention.md``).
"""

from __future__ import annotations

import re
from datetime import datetime

from dbbackup import names

_WORD_CHARACTERS = "A-Za-z0-9_"


def find_date(name: str) -> tuple[str, re.Match[str]] | None:
    """The first ``DBBACKUP_DATE_FORMAT`` date in the basename of ``name`` that really parses.

    Returns the date string and its match in the basename; ``None`` when there is none.
    """
    basename = name.rsplit("/", 1)[-1]
    fmt = names.date_format()
    for match in names.datefmt_to_regex(fmt).finditer(basename):
        try:
            datetime.strptime(match.group(1), fmt)
        except ValueError:
            continue
        return match.group(1), match
    return None


def _aliases_in(text: str) -> list[tuple[str, str]]:
    """The configured aliases whose ``{databasename}`` is a whole field of ``text``.

    A field is bounded by the ends of ``text`` or by characters other than letters, digits and
    ``_`` (so ``default`` is not found in ``default2`` nor in ``default_2``). An alias found
    only inside the span of a longer one (``default`` inside ``default-replica``) is dropped.
    Returns ``(alias, databasename)`` pairs.
    """
    from django.conf import settings as django_settings

    spans = []
    for alias in django_settings.DATABASES:
        dbname = names.database_name_for_filename(alias)
        if not dbname:
            continue
        field = re.compile(rf"(?<![{_WORD_CHARACTERS}]){re.escape(dbname)}(?![{_WORD_CHARACTERS}])")
        spans += [(match.start(), match.end(), alias, dbname) for match in field.finditer(text)]
    return [
        (alias, dbname)
        for start, end, alias, dbname in spans
        if not any(
            (other_end - other_start) > (end - start) and other_start <= start and end <= other_end
            for other_start, other_end, *_ in spans
        )
    ]


def parse(name: str) -> names.ParsedName | None:
    """Read loosely a name that no filename template reads but that carries a date.

    Such names come from an earlier template, another tool, or django-dbbackup's older
    defaults (``default-2015-02-08-042810.dump``, ``2015-02-08-042810.bak``). The first
    ``DBBACKUP_DATE_FORMAT`` date that parses is the backup's date; what follows the first dot
    after it is the extension (``tar`` makes it a media backup). For a database backup,
    ``databasename`` (and ``alias``) is set only when exactly one configured alias is a whole
    field of the rest of the name (see :func:`_aliases_in`); otherwise it is ``None`` and the
    name cannot be attributed to a database. The server is never known. ``None`` when the name
    holds no date, is a sidecar or a partial upload.
    """
    basename = name.rsplit("/", 1)[-1]
    if name.endswith(names.METADATA_SUFFIX) or names.PARTIAL_MARKER in basename:
        return None
    found = find_date(basename)
    if found is None:
        return None
    datestring, match = found
    after = basename[match.end() :]
    stem_after, _, extension = after.partition(".")
    extension, compression, encrypted = names.split_suffixes(extension)
    content_type = "media" if extension == "tar" else "db"
    alias = dbname = None
    if content_type == "db":
        found_aliases = _aliases_in(f"{basename[: match.start()]}/{stem_after}")
        if len({dbname for _, dbname in found_aliases}) == 1:
            alias, dbname = found_aliases[0]
    return names.ParsedName(
        name=name,
        content_type=content_type,
        extension=extension,
        compression=compression,
        encrypted=encrypted,
        databasename=dbname,
        servername=None,
        datestring=datestring,
        loose=True,
        alias=alias,
    )
