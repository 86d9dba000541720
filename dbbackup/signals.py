"""The eight signals dbbackup sends around its operations, and four failure signals.

Every signal is sent with ``Signal.send()``: a receiver's exception propagates. A raising
``pre_*`` receiver stops the operation before anything is written or restored. ``post_*``
signals are sent once the work is complete and kept; every receiver runs, and a failure is
reported afterwards without undoing anything.

``sender`` is the management command's class (``Command`` in
``dbbackup.management.commands.<name>``). ``servername`` is the effective server name: the
``--servername`` value, else ``DBBACKUP_HOSTNAME``. ``storage`` is the
:class:`dbbackup.storage.Storage` wrapper.

The failure signals (``backup_failed``, ``restore_failed``, ``media_backup_failed``,
``media_restore_failed``) are new in dbbackup. Each is sent with its ``pre_*`` signal's
arguments plus ``exception`` when the operation fails after its ``pre_*`` signal was sent and
before the work is complete (a ``post_*`` receiver's failure is not a failure of the work, and a
``pre_*`` veto is not a failure either: nothing was attempted). They are sent with
``send_robust``: a failing receiver is logged and never hides the original error, which is
raised unchanged afterwards.
"""

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from django.dispatch import Signal

#: Before a database backup. Kwargs: ``database`` (the connector's settings dict: the
#: ``DATABASES`` entry merged with ``DBBACKUP_CONNECTORS[alias]``), ``connector``, ``servername``.
pre_backup = Signal()

#: After a database backup is stored. Kwargs: ``database``, ``connector``, ``servername``,
#: ``filename`` (the stored name), ``storage``.
post_backup = Signal()

#: Before a database restore. Kwargs: ``database`` (the ``DATABASES`` entry), ``database_name``
#: (the alias), ``filename`` (the stored name, or the local path given with ``-I``),
#: ``servername``, ``storage``.
pre_restore = Signal()

#: After a database restore. Kwargs: ``database``, ``database_name``, ``filename``,
#: ``servername``, ``connector`` (the connector that restored), ``storage``.
post_restore = Signal()

#: Before a media backup. Kwargs: ``servername``, ``storage``.
pre_media_backup = Signal()

#: After a media backup is stored. Kwargs: ``filename``, ``servername``, ``storage``.
post_media_backup = Signal()

#: Before a media restore. Kwargs: ``filename``, ``servername``, ``storage``.
pre_media_restore = Signal()

#: After a media restore. Kwargs: ``filename``, ``servername``, ``storage``.
post_media_restore = Signal()

#: New in dbbackup: a database backup failed after ``pre_backup``. Kwargs: those of
#: ``pre_backup`` (``database``, ``connector``, ``servername``) and ``exception``.
backup_failed = Signal()

#: New in dbbackup: a database restore failed after ``pre_restore``. Kwargs: those of
#: ``pre_restore`` (``database``, ``database_name``, ``filename``, ``servername``, ``storage``)
#: and ``exception``.
restore_failed = Signal()

#: New in dbbackup: a media backup failed after ``pre_media_backup``. Kwargs: ``servername``,
#: ``storage``, ``exception``.
media_backup_failed = Signal()

#: New in dbbackup: a media restore failed after ``pre_media_restore``. Kwargs: ``filename``,
#: ``servername``, ``storage``, ``exception``.
media_restore_failed = Signal()

FAILURE_SIGNALS = {
    "backup_failed": backup_failed,
    "restore_failed": restore_failed,
    "media_backup_failed": media_backup_failed,
    "media_restore_failed": media_restore_failed,
}

logger = logging.getLogger("dbbackup.signals")


def send_pre(signal: Signal, name: str, sender: type | None, **kwargs) -> None:
    """Send a ``pre_*`` signal; a receiver's exception becomes a veto.

    Raises :class:`~dbbackup.exceptions.SignalReceiverError` whose message is the receiver's.
    """
    from dbbackup.exceptions import SignalReceiverError

    try:
        signal.send(sender=sender, **kwargs)
    except Exception as exc:
        raise SignalReceiverError(
            f"A {name} receiver stopped the operation before anything was changed: {_message(exc)}",
            signal_name=name,
        ) from exc


def send_post(signal: Signal, name: str, sender: type | None, done: str, **kwargs) -> None:
    """Send a ``post_*`` signal to every receiver, then report the first failure, if any.

    ``done`` says what was completed (and is kept), for the error message.
    """
    from dbbackup.exceptions import SignalReceiverError

    with _quiet_dispatch_log():
        responses = signal.send_robust(sender=sender, **kwargs)
    failures = [response for _, response in responses if isinstance(response, Exception)]
    if failures:
        raise SignalReceiverError(
            f"{done}, and is kept, but a {name} receiver failed: {_message(failures[0])}",
            signal_name=name,
        ) from failures[0]


@contextlib.contextmanager
def on_failure(name: str, sender: type | None, **kwargs: Any) -> Iterator[None]:
    """Send the failure signal called ``name`` (``"backup_failed"``...) with ``kwargs`` and
    ``exception`` if the block raises an ``Exception`` or ``KeyboardInterrupt``, then re-raise
    it unchanged.

    Every receiver runs (``send_robust``); one that raises is logged as a warning, and the
    original error still propagates.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        send_failed(FAILURE_SIGNALS[name], name, sender, exc, **kwargs)
        raise


def send_failed(
    signal: Signal, name: str, sender: type | None, exception: BaseException, **kwargs: Any
) -> None:
    """Send a failure signal to every receiver; a receiver's own error is logged, never raised."""
    with _quiet_dispatch_log():
        responses = signal.send_robust(sender=sender, exception=exception, **kwargs)
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.warning(
                "A %s receiver (%s) failed: %s",
                name,
                getattr(receiver, "__qualname__", repr(receiver)),
                _message(response),
            )


def _message(exc: BaseException) -> str:
    messages = getattr(exc, "messages", None)  # ValidationError
    if isinstance(messages, list) and messages:
        return "; ".join(str(message) for message in messages)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _quiet_dispatch_log() -> Iterator[None]:
    """Keep Django's own traceback log of a failing receiver (``django.dispatch``, printed on
    the console under ``DEBUG = True``) out of this thread's send: dbbackup reports the failure
    itself, in one line."""
    thread = threading.get_ident()

    def other_threads_only(record: logging.LogRecord) -> bool:
        return record.thread != thread

    dispatch_logger = logging.getLogger("django.dispatch")
    dispatch_logger.addFilter(other_threads_only)
    try:
        yield
    finally:
        dispatch_logger.removeFilter(other_threads_only)
