"""Names that django-dbbackup users import from ``dbbackup.utils``, kept importable.

This module holds no logic of its own: each function adapts django-dbbackup's signature to the
module that owns the concept (names, crypto, codecs, display, notify, manifest, spooled). The
whole-file helpers (``compress_file``, ``encrypt_file``, ...) materialise their result in a
spooled temporary file, as django-dbbackup's did; the backup commands themselves stream and do
not use them.
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import datetime
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO

from dbbackup import codecs, crypto, display, manifest
from dbbackup.exceptions import DecryptionError, EncryptionError
from dbbackup.names import datefmt_to_regex, timestamp
from dbbackup.names import generate_filename as filename_generate
from dbbackup.notify import mail_admins
from dbbackup.notify import mail_uncaught_exceptions as email_uncaught_exception
from dbbackup.spooled import borrowed, spooled_copy


def filename_to_datestring(filename: str, datefmt: str | None = None) -> str | None:
    """The date part of a backup name, as written, or ``None``."""
    match = datefmt_to_regex(datefmt).search(filename)
    return match.group(1) if match else None


def filename_to_date(filename: str, datefmt: str | None = None):
    """The date of a backup name as a naive ``datetime``, or ``None``."""
    from dbbackup import settings

    datestring = filename_to_datestring(filename, datefmt)
    if datestring is None:
        return None
    try:
        return datetime.strptime(datestring, datefmt or settings.DATE_FORMAT)
    except ValueError:
        return None


def bytes_to_str(byte_val: int | float, decimals: int = 1) -> str:
    """``byte_val`` in binary units, e.g. ``bytes_to_str(115000) == "112.3 KiB"``."""
    return display.size_in_unit(byte_val, decimals)


def handle_size(filehandle: Any) -> str:
    """The size of a file object (its ``size``, or its length found by seeking to its end)."""
    size = getattr(filehandle, "size", None)
    if size is None:
        size = filehandle.seek(0, os.SEEK_END)
    return display.size_in_unit(size)


def create_spooled_temporary_file(filepath: str | None = None, fileobj: BinaryIO | None = None):
    """A spooled temporary file with the content of ``filepath`` or ``fileobj`` (or empty)."""
    return spooled_copy(fileobj, filepath)


def compress_file(inputfile: BinaryIO, filename: str) -> tuple[SpooledTemporaryFile, str]:
    """gzip ``inputfile`` (from its start): ``(spooled file, filename + ".gz")``."""
    return spooled_copy(codecs.by_name("gzip").compress(borrowed(inputfile))), f"{filename}.gz"


def uncompress_file(inputfile: BinaryIO, filename: str) -> tuple[SpooledTemporaryFile, str]:
    """gunzip ``inputfile``: ``(spooled file, basename of filename without ".gz")``."""
    stream = codecs.by_name("gzip").decompress(borrowed(inputfile), filename)
    return spooled_copy(stream), os.path.basename(filename).replace(".gz", "")


def encrypt_file(inputfile: BinaryIO, filename: str) -> tuple[SpooledTemporaryFile, str]:
    """Encrypt ``inputfile`` to ``DBBACKUP_GPG_RECIPIENT``: ``(spooled file, filename + ".gpg")``.

    The input must be binary (``ValueError`` otherwise) and is closed afterwards, as in
    django-dbbackup. Failures raise :class:`EncryptionError`.
    """
    if "b" not in getattr(inputfile, "mode", "b"):
        raise ValueError("Input file must be opened in binary mode.")
    try:
        return spooled_copy(crypto.encrypt(borrowed(inputfile))), f"{filename}.gpg"
    finally:
        inputfile.close()


def unencrypt_file(
    inputfile: BinaryIO, filename: str, passphrase: str | None = None
) -> tuple[SpooledTemporaryFile, str]:
    """Decrypt ``inputfile``: ``(spooled file, basename of filename without ".gpg")``.

    Without ``passphrase`` it is asked on the terminal (empty: none), as in django-dbbackup;
    without a terminal no passphrase is used. Failures raise :class:`DecryptionError`.
    """
    if not passphrase and sys.stdin is not None and sys.stdin.isatty():
        passphrase = getpass.getpass("Input Passphrase: ") or None
    stream = crypto.decrypt(borrowed(inputfile), passphrase or None)
    return spooled_copy(stream), os.path.basename(filename).replace(".gpg", "")


def get_user_metadata(metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys ``DBBACKUP_BACKUP_METADATA_SETTER`` adds to ``metadata`` (``{}`` without one)."""
    return manifest.user_metadata(metadata or {})


def validate_user_metadata(metadata: dict[str, Any]) -> bool | None:
    """``DBBACKUP_RESTORE_METADATA_VALIDATOR``'s verdict on ``metadata`` (``True`` without one)."""
    return manifest.user_verdict(metadata)


__all__ = [
    "DecryptionError",
    "EncryptionError",
    "bytes_to_str",
    "compress_file",
    "create_spooled_temporary_file",
    "datefmt_to_regex",
    "email_uncaught_exception",
    "encrypt_file",
    "filename_generate",
    "filename_to_date",
    "filename_to_datestring",
    "get_user_metadata",
    "handle_size",
    "mail_admins",
    "timestamp",
    "uncompress_file",
    "unencrypt_file",
    "validate_user_metadata",
]
