"""Backup file names: generate them from the templates, and recognise them again.

A name is ``<template rendered>``, where ``{extension}`` already carries the compression and
encryption suffixes (``sqlite3.gz.gpg``). Recognising a name runs the same template backwards:
the template is rendered with placeholders for the unknown fields, the result becomes a regular
expression, and a name matches only if that template could have produced it. Filtering by
database or server name therefore compares whole fields, never substrings: cleaning
``default`` never touches ``default2``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from django.utils import timezone

from dbbackup import settings
from dbbackup.exceptions import DbbackupConfigurationError

CONTENT_TYPES = ("db", "media")
FIELDS = ("databasename", "servername", "datetime", "extension", "content_type")

#: Suffixes that stages add after the connector's extension, outermost last.
COMPRESSION_SUFFIXES = {"gz": "gzip", "zst": "zstd"}
ENCRYPTION_SUFFIX = "gpg"
METADATA_SUFFIX = ".metadata"
PARTIAL_MARKER = ".partial-"

_DATE_TOKEN_PATTERNS = {
    "a": r"[A-Za-z]+",
    "A": r"[A-Za-z]+",
    "b": r"[A-Za-z]+",
    "B": r"[A-Za-z]+",
    "w": r"\d",
    "d": r"\d{2}",
    "m": r"\d{2}",
    "y": r"\d{2}",
    "H": r"\d{2}",
    "I": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "U": r"\d{2}",
    "W": r"\d{2}",
    "Y": r"\d{4}",
    "f": r"\d{6}",
    "j": r"\d{3}",
    "p": r"[AP]M",
    "%": "%",
}
_RUNS_OF_DASHES = re.compile(r"-{2,}")


def date_format() -> str:
    """``DBBACKUP_DATE_FORMAT``, refused with a clear error unless it is a string."""
    fmt = settings.DATE_FORMAT
    if not isinstance(fmt, str):
        raise DbbackupConfigurationError(
            f"DBBACKUP_DATE_FORMAT must be a strftime format string such as '%Y-%m-%d-%H%M%S', "
            f"not {type(fmt).__name__} {fmt!r}."
        )
    return fmt


def datefmt_to_regex(fmt: str | None = None) -> re.Pattern[str]:
    """A pattern with one group matching dates written with ``fmt`` (``DATE_FORMAT``)."""
    return re.compile(f"({_date_fragment(fmt or date_format())})")


def _date_fragment(fmt: str) -> str:
    parts = []
    tokens = iter(re.split(r"(%.)", fmt))
    for token in tokens:
        if len(token) == 2 and token[0] == "%":
            try:
                parts.append(_DATE_TOKEN_PATTERNS[token[1]])
            except KeyError:
                raise DbbackupConfigurationError(
                    f"DBBACKUP_DATE_FORMAT {fmt!r} uses {token!r}, which cannot be read back from "
                    f"file names; use only %{', %'.join(sorted(set(_DATE_TOKEN_PATTERNS) - {'%'}))}."
                ) from None
        else:
            parts.append(re.escape(token))
    return "".join(parts)


def database_name_for_filename(alias: str) -> str:
    """The ``{databasename}`` field for a database alias: its basename, cut at the first dot."""
    return alias.rsplit("/", 1)[-1].split(".", 1)[0]


def now() -> datetime:
    """The time written into new names: local time in Django's ``TIME_ZONE``."""
    return timezone.localtime() if timezone.is_aware(timezone.now()) else datetime.now()


def _template_setting(content_type: str) -> str:
    name = "MEDIA_FILENAME_TEMPLATE" if content_type == "media" else "FILENAME_TEMPLATE"
    return settings.SETTING_NAMES[name]


def _template(content_type: str) -> str | Callable[..., str]:
    name = "MEDIA_FILENAME_TEMPLATE" if content_type == "media" else "FILENAME_TEMPLATE"
    template = settings.get(name)
    if not (isinstance(template, str) or callable(template)):
        raise DbbackupConfigurationError(
            f"{settings.SETTING_NAMES[name]} must be a format string or a callable, "
            f"not {type(template).__name__}."
        )
    return template


def _render(
    template: str | Callable[..., str], fields: dict[str, str], setting: str = "The filename template"
) -> str:
    """Render a template; any failure is a configuration error naming ``setting``."""
    if callable(template):
        try:
            name = template(**fields)
        except Exception as exc:
            raise DbbackupConfigurationError(
                f"{setting} (a callable) raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(name, str):
            raise DbbackupConfigurationError(
                f"{setting} (a callable) returned {type(name).__name__}, not a string."
            )
        return name
    try:
        name = template.format(**fields)
    except Exception as exc:  # unknown field, {datetime.year}, bad format spec, stray brace
        raise DbbackupConfigurationError(
            f"{setting} {template!r} cannot be rendered ({type(exc).__name__}: {exc}); it may use "
            f"these fields, each a plain string: {', '.join('{' + f + '}' for f in FIELDS)}."
        ) from exc
    return _RUNS_OF_DASHES.sub("-", name).removeprefix("-")


def generate_filename(
    extension: str,
    database_name: str = "",
    servername: str | None = None,
    content_type: str = "db",
    when: datetime | None = None,
) -> str:
    """Render the filename template for a new backup.

    ``extension`` includes any compression/encryption suffixes. ``database_name`` is the
    database alias (reduced with :func:`database_name_for_filename` for ``db`` backups).
    """
    if content_type == "db":
        database_name = database_name_for_filename(database_name)
    fields = {
        "databasename": database_name,
        "servername": servername or settings.HOSTNAME,
        "datetime": (when or now()).strftime(date_format()),
        "extension": extension,
        "content_type": content_type,
    }
    return _render(_template(content_type), fields, _template_setting(content_type))


@dataclass(frozen=True)
class ParsedName:
    """What a backup's name says about it."""

    name: str
    content_type: str
    extension: str  # the connector's extension, without stage suffixes: "sqlite3", "tar"
    compression: str | None  # "gzip", "zstd" or None
    encrypted: bool
    databasename: str | None
    servername: str | None
    datestring: str | None
    #: Read by :func:`dbbackup.loose_names.parse` (a date and an alias found anywhere).
    loose: bool = False
    #: The configured alias :func:`dbbackup.loose_names.parse` recognised (``None`` otherwise).
    alias: str | None = None

    @property
    def date(self) -> datetime | None:
        if self.datestring is None:
            return None
        try:
            return datetime.strptime(self.datestring, date_format())
        except ValueError:
            return None


def split_suffixes(extension: str) -> tuple[str, str | None, bool]:
    """Split ``sqlite3.gz.gpg`` into ``("sqlite3", "gzip", True)``."""
    encrypted = False
    compression = None
    parts = extension.split(".")
    if len(parts) > 1 and parts[-1] == ENCRYPTION_SUFFIX:
        encrypted = True
        parts.pop()
    if len(parts) > 1 and parts[-1] in COMPRESSION_SUFFIXES:
        compression = COMPRESSION_SUFFIXES[parts.pop()]
    return ".".join(parts), compression, encrypted


_PLACEHOLDER = "\ue000{}\ue001"


class _TemplatePattern(NamedTuple):
    """A filename template run backwards: the regex, and whether names contain folders."""

    regex: re.Pattern[str]
    has_folders: bool


@lru_cache(maxsize=64)
def _pattern_for(
    template: str | Callable[..., str],
    date_format: str,
    content_type: str,
    databasename: str | None,
    servername: str | None,
) -> _TemplatePattern | None:
    fields = {
        "databasename": databasename if databasename is not None else _PLACEHOLDER.format(0),
        "servername": servername if servername is not None else _PLACEHOLDER.format(1),
        "datetime": _PLACEHOLDER.format(2),
        "extension": _PLACEHOLDER.format(3),
        "content_type": content_type,
    }
    try:
        rendered = _render(template, fields)
    except Exception:  # a callable that cannot take placeholders: no exact pattern
        return None
    group_patterns = {
        "0": ("databasename", r"[^/]*?"),
        "1": ("servername", r"[^/]+?"),
        "2": ("datetime", _date_fragment(date_format)),
        "3": ("extension", r"[^/]+"),
    }
    seen: set[str] = set()
    pattern = []
    for index, piece in enumerate(re.split("\ue000(\\d)\ue001", rendered)):
        if index % 2:  # odd pieces are the captured placeholder numbers
            name, fragment = group_patterns[piece]
            pattern.append(f"(?P={name})" if name in seen else f"(?P<{name}>{fragment})")
            seen.add(name)
        else:
            pattern.append(re.escape(piece))
    if "datetime" not in seen:
        return None
    has_folders = "/" in "".join(re.split("\ue000\\d\ue001", rendered)) or "/" in date_format
    return _TemplatePattern(re.compile("".join(pattern) + r"\Z"), has_folders)


def parse(
    name: str,
    content_type: str | None = None,
    *,
    database: str | None = None,
    servername: str | None = None,
) -> ParsedName | None:
    """Read ``name`` back through the filename templates; ``None`` when it is not a backup.

    With ``database`` (an alias) and/or ``servername``, only names written for exactly that
    database/server match. ``content_type`` limits the match to ``"db"`` or ``"media"``.
    """
    if name.endswith(METADATA_SUFFIX) or PARTIAL_MARKER in name.rsplit("/", 1)[-1]:
        return None
    for kind in (content_type,) if content_type else CONTENT_TYPES:
        if kind == "media" and database is not None:
            continue  # media backups belong to no database
        dbname = database_name_for_filename(database) if database is not None else None
        pattern = _pattern_for(_template(kind), date_format(), kind, dbname, servername)
        if pattern is None:
            if dbname is not None or servername is not None:
                raise DbbackupConfigurationError(
                    "The filename template callable fails when called with placeholder strings, so "
                    "backups of one database or server cannot be told apart; make it accept any "
                    "string for its fields, or name the backup with -i."
                )
            parsed = _parse_loosely(name, kind)
        else:
            match = pattern.regex.match(name)
            parsed = _from_match(name, kind, match.groupdict(), dbname, servername) if match else None
        if (
            parsed is not None
            and dbname is not None
            and _belongs_to_longer_alias(name, kind, dbname, servername)
        ):
            parsed = None
        if parsed is not None and (parsed.extension == "tar") == (kind == "media"):
            return parsed
    return None


def _belongs_to_longer_alias(name: str, kind: str, dbname: str, servername: str | None) -> bool:
    """Whether ``name`` also reads as a backup of a longer database alias.

    With aliases ``default`` and ``default-replica``, ``default-replica-web1-<date>.dump``
    matches ``default`` with server ``replica-web1`` too; the longer alias is the better reading.
    """
    from django.conf import settings as django_settings

    for alias in django_settings.DATABASES:
        other = database_name_for_filename(alias)
        if len(other) > len(dbname) and other.startswith(dbname):
            pattern = _pattern_for(_template(kind), date_format(), kind, other, servername)
            if pattern is not None and pattern.regex.match(name):
                return True
    return False


def _from_match(
    name: str, kind: str, groups: dict[str, str], dbname: str | None, servername: str | None
) -> ParsedName:
    extension, compression, encrypted = split_suffixes(groups.get("extension", ""))
    return ParsedName(
        name=name,
        content_type=kind,
        extension=extension,
        compression=compression,
        encrypted=encrypted,
        databasename=groups.get("databasename", dbname),
        servername=groups.get("servername", servername),
        datestring=groups.get("datetime"),
    )


def _parse_loosely(name: str, kind: str) -> ParsedName | None:
    """For callable templates that cannot be run backwards: any name holding a date."""
    match = datefmt_to_regex().search(name)
    if match is None:
        return None
    basename = name.rsplit("/", 1)[-1]
    extension = basename.split(".", 1)[1] if "." in basename else ""
    return _from_match(name, kind, {"datetime": match.group(1), "extension": extension}, None, None)


def template_has_folders(content_type: str) -> bool:
    """Whether names of this content type may contain ``/`` (so storage must be walked)."""
    pattern = _pattern_for(_template(content_type), date_format(), content_type, None, None)
    return pattern is None or pattern.has_folders


def timestamp(value: datetime) -> str:
    """``value`` written with ``DBBACKUP_DATE_FORMAT``: aware times in Django's ``TIME_ZONE``
    first, naive ones as they are (django-dbbackup's ``utils.timestamp``)."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(settings.DATE_FORMAT)
