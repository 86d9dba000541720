"""Failure e-mails to the admins, as django-dbbackup sends them, minus the secrets.

``DBBACKUP_SEND_EMAIL`` turns them on (the default), ``DBBACKUP_ADMINS`` (or the older
``DBBACKUP_ADMIN``, or ``ADMINS``) says who gets them, ``DBBACKUP_SERVER_EMAIL`` who sends them
and ``DBBACKUP_EMAIL_SUBJECT_PREFIX`` how the subject starts. Every password of ``DATABASES``
and ``DBBACKUP_CONNECTORS``, and the passphrase given to the command, is cut out of the subject
and the body before anything is sent.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from datetime import datetime, timezone

from django.conf import settings as django_settings
from django.core.mail import EmailMessage

from dbbackup import settings
from dbbackup.process import redact

logger = logging.getLogger("dbbackup")
SECRET_KEYS = ("PASSWORD", "ADMIN_PASSWORD")


def configured_secrets() -> list[str]:
    """Every password dbbackup knows of, to be kept out of messages."""
    found = []
    for entries in (getattr(django_settings, "DATABASES", {}), settings.CONNECTORS or {}):
        for entry in entries.values():
            if isinstance(entry, dict):
                found += [str(value) for key, value in entry.items() if key.upper() in SECRET_KEYS and value]
    return found


def _address(admin: object) -> str | None:
    if isinstance(admin, (list, tuple)) and len(admin) == 2:
        return str(admin[1])
    return str(admin) if admin else None


def recipients() -> list[str]:
    return [address for address in map(_address, settings.ADMINS or []) if address]


def mail_failure(command: str, error: BaseException, extra_secrets: Iterable[str] = ()) -> bool:
    """E-mail the admins that ``manage.py <command>`` failed; ``True`` if a mail was sent."""
    to = recipients()
    if not settings.SEND_EMAIL or not to:
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
    try:
        EmailMessage(subject, body, from_email=settings.SERVER_EMAIL, to=to).send()
    except Exception:  # a broken mail setup must not hide the original failure
        logger.exception("Could not e-mail the failure of %s to the admins", command)
        return False
    return True
