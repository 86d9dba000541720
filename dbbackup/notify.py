"""Failure e-mails to the admins, as django-dbbackup sends them, minus the secrets.

``DBBACKUP_SEND_EMAIL`` turns them on (the default), ``DBBACKUP_ADMINS`` (or the older
``DBBACKUP_ADMIN``, or ``ADMINS``) says who gets them, ``DBBACKUP_SERVER_EMAIL`` who sends them
and ``DBBACKUP_EMAIL_SUBJECT_PREFIX`` how the subject starts. Every password of ``DATABASES``
and ``DBBACKUP_CONNECTORS``, and the passphrase given to the command, is cut out of the subject
and the body before anything is sent.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from django.conf import settings as django_settings
from django.core.mail import EmailMessage, EmailMultiAlternatives

from dbbackup import settings
from dbbackup.redaction import redact

logger = logging.getLogger("dbbackup")
SECRET_KEYS = ("PASSWORD", "ADMIN_PASSWORD")
#: Set on a log record whose failure was already e-mailed here, so that a
#: :class:`dbbackup.log.DbbackupAdminEmailHandler` in the project's LOGGING does not mail it again.
MAILED = "dbbackup_mailed"

F = TypeVar("F", bound=Callable[..., Any])


def configured_secrets() -> list[str]:
    """Every password dbbackup knows of, to be kept out of messages.

    Tolerates malformed ``DATABASES`` / ``DBBACKUP_CONNECTORS`` (they are reported elsewhere):
    this runs on the failure path, where a second error would hide the first.
    """
    found = []
    for entries in (getattr(django_settings, "DATABASES", {}), settings.CONNECTORS):
        for entry in entries.values() if isinstance(entries, Mapping) else ():
            if isinstance(entry, Mapping):
                found += [
                    str(value)
                    for key, value in entry.items()
                    if isinstance(key, str) and key.upper() in SECRET_KEYS and value
                ]
    return found


def _address(admin: object) -> str | None:
    if isinstance(admin, str):  # Django 6 style: a plain address
        return admin.strip() or None
    if isinstance(admin, list | tuple) and len(admin) == 2 and isinstance(admin[1], str):
        return admin[1].strip() or None  # ("name", "address"), as ADMINS was before Django 6
    logger.warning("Ignoring %r in DBBACKUP_ADMINS: give an e-mail address or a (name, address) pair", admin)
    return None


def recipients() -> list[str]:
    """The admins' addresses: from a list of addresses and/or (name, address) pairs.

    A single string is one address (not a list of one-letter addresses).
    """
    admins = settings.ADMINS or []
    if isinstance(admins, str):
        admins = [admins]
    elif not isinstance(admins, list | tuple):
        logger.warning("Ignoring DBBACKUP_ADMINS: it must be a list of e-mail addresses, not %r", admins)
        return []
    return [address for address in map(_address, admins) if address]


def mail_failure(command: str, error: BaseException, extra_secrets: Iterable[str] = ()) -> bool:
    """E-mail the admins that ``manage.py <command>`` failed; ``True`` if a mail was sent.

    Never raises: a broken mail setup or a malformed setting is logged, and the caller goes on
    to report the original failure.
    """
    try:
        return _mail_failure(command, error, extra_secrets)
    except Exception as exc:  # one line on the console; the traceback for debug logging
        logger.warning(
            "Could not e-mail the failure of %s to the admins: %s: %s", command, type(exc).__name__, exc
        )
        logger.debug("Why the failure e-mail was not sent", exc_info=True)
        return False


def _mail_failure(command: str, error: BaseException, extra_secrets: Iterable[str]) -> bool:
    if not settings.SEND_EMAIL:
        return False
    to = recipients()
    if not to:
        return False
    secrets = [*configured_secrets(), *(secret for secret in extra_secrets if secret)]
    first_line = (str(error).splitlines() or [type(error).__name__])[0]
    subject = redact(f"{settings.EMAIL_SUBJECT_PREFIX}ERROR: {command} failed: {first_line}", secrets)[:200]
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    body = redact(
        f"manage.py {command} failed on {settings.HOSTNAME} at "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}.\n\n{error}\n\n{details}",
        secrets,
    )
    EmailMessage(subject, body, from_email=settings.SERVER_EMAIL, to=to).send()
    return True


def mail_admins(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    html_message: str | None = None,
) -> None:
    """E-mail the admins as django-dbbackup's ``utils.mail_admins`` does, secrets cut out.

    The subject gets ``DBBACKUP_EMAIL_SUBJECT_PREFIX``, the sender is ``DBBACKUP_SERVER_EMAIL``
    and the recipients are :func:`recipients`; with none, nothing is sent. ``html_message``
    becomes a ``text/html`` alternative. ``DBBACKUP_SEND_EMAIL`` is not consulted here (the
    logging filter and the commands consult it), as in django-dbbackup.
    """
    to = recipients()
    if not to:
        return
    secrets = configured_secrets()
    mail = EmailMultiAlternatives(
        redact(f"{settings.EMAIL_SUBJECT_PREFIX}{subject}", secrets),
        redact(message, secrets),
        settings.SERVER_EMAIL,
        to,
        connection=connection,
    )
    if html_message:
        mail.attach_alternative(redact(html_message, secrets), "text/html")
    mail.send(fail_silently=fail_silently)


def mail_uncaught_exceptions(func: F) -> F:
    """Decorate ``func`` so that an exception it raises is e-mailed to the admins, then re-raised.

    django-dbbackup's ``utils.email_uncaught_exception``: the failure is logged at ERROR on the
    ``dbbackup`` logger with its traceback as text (no frame variables, which could hold
    secrets), mailed with :func:`mail_failure` (which honours ``DBBACKUP_SEND_EMAIL``), and the
    default database connection is closed whatever happens. ``func``'s return value is passed on.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from django.db import connection

        try:
            return func(*args, **kwargs)
        except Exception as exc:
            sent = mail_failure(getattr(func, "__qualname__", "a function"), exc)
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            logger.error("%s: %s\n%s", type(exc).__name__, exc, details, extra={MAILED: sent})
            raise
        finally:
            connection.close()

    return wrapper  # type: ignore[return-value]
