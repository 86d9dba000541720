"""The one exception tree of dbbackup.

::

    DbbackupError                     anything dbbackup raises on purpose (a Django CommandError)
    ├── ConnectorError                a database connector failed
    │   ├── DumpError                 ... while dumping
    │   ├── RestoreError              ... while restoring
    │   └── CommandConnectorError     ... because an external tool failed or is missing
    ├── StorageError                  the backup storage failed, or holds no such backup
    │   └── BackupNotFoundError       ... no backup matches what was asked for (also a
    │                                 FileNotFoundError)
    ├── EncryptionError               GPG could not encrypt
    ├── DecryptionError               GPG could not decrypt (wrong key, wrong passphrase, ...)
    ├── CorruptBackupError            the backup is damaged: bad checksum, truncated, not its format
    ├── MetadataError                 the ``.metadata`` sidecar refuses this restore
    └── SignalReceiverError           a ``pre_*`` receiver vetoed, or a ``post_*`` receiver failed

    DbbackupConfigurationError        a setting is wrong (an ``ImproperlyConfigured`` and a
                                      ``CommandError``, on purpose outside DbbackupError so that
                                      nothing swallows it)
    ├── DbbackupImproperlyInstalled   an optional dependency is missing (also an ``ImportError``)
    └── UnknownDatabaseError          no such alias in DATABASES (also ``ConnectionDoesNotExist``)

The names django-dbbackup users import keep working: ``dbbackup.db.exceptions`` re-exports the
connector errors, ``dbbackup.storage.StorageError`` and ``dbbackup.utils.EncryptionError`` /
``DecryptionError`` are these same classes.

Messages never contain secrets: the process module redacts them before an error is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.utils.connection import ConnectionDoesNotExist


class DbbackupError(CommandError):
    """Root of every error dbbackup raises on purpose.

    It is a Django ``CommandError``, so code that calls the commands with ``call_command`` and
    catches ``CommandError`` catches every dbbackup failure, while code that catches the class
    django-dbbackup raised (``CommandConnectorError``, ``FileNotFoundError``, ...) still does.
    On the command line the commands print it as one line (``CommandError: <message>``).
    """


class ConnectorError(DbbackupError):
    """A database connector failed."""


class DumpError(ConnectorError):
    """Dumping a database failed."""


class RestoreError(ConnectorError):
    """Restoring a database failed."""


class CommandConnectorError(ConnectorError):
    """An external tool (pg_dump, mysql, ...) is missing or failed.

    ``argv`` is the command with secrets redacted, ``exit_status`` the tool's exit status
    (``None`` when the tool never ran) and ``stderr_tail`` the last lines it wrote to stderr.
    ``returncode`` stays the ``CommandError`` exit code of ``manage.py`` (1): a tool that was
    killed or exited 0 must never turn into a successful command.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.argv = list(argv)
        self.exit_status = returncode
        self.stderr_tail = stderr_tail


class StorageError(DbbackupError):
    """The backup storage failed."""


class BackupNotFoundError(StorageError, FileNotFoundError):
    """No backup matches the request, or the named backup file does not exist.

    Also a ``FileNotFoundError``, which is what django-dbbackup let through when a named file
    was missing (``-i``/``-I``).
    """


class EncryptionError(DbbackupError):
    """GPG encryption failed."""


class DecryptionError(DbbackupError):
    """GPG decryption failed."""


class CorruptBackupError(DbbackupError):
    """A backup is damaged or is not what its name says; nothing was restored from it."""


class MetadataError(DbbackupError):
    """The metadata sidecar (or the metadata validator) refuses the restore."""


class SignalReceiverError(DbbackupError):
    """A signal receiver raised.

    ``signal_name`` names the signal; ``__cause__`` is the receiver's exception. For a ``pre_*``
    signal nothing was written or restored; for a ``post_*`` signal the work is complete and kept.
    """

    def __init__(self, message: str, *, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class DbbackupConfigurationError(ImproperlyConfigured, CommandError):
    """A dbbackup setting is missing or wrong; the message names the setting.

    Also a ``CommandError``, so ``call_command`` callers catching that catch it too.
    """


class DbbackupImproperlyInstalled(DbbackupConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, *, missing_package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f'{purpose} needs the {missing_package!r} package: pip install "django-dbbackup-ng[{extra}]"'
        )
        self.missing_package = missing_package
        self.extra = extra


class UnknownDatabaseError(DbbackupConfigurationError, ConnectionDoesNotExist):
    """The database alias is not in ``DATABASES`` (also Django's ``ConnectionDoesNotExist``,
    which django-dbbackup let through)."""
