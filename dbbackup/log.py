"""Logging classes that django-dbbackup projects name in their ``LOGGING`` setting.

``DbbackupAdminEmailHandler`` is Django's ``AdminEmailHandler`` that sends through
:func:`dbbackup.notify.mail_admins`: the ``DBBACKUP_ADMINS`` recipients, the
``DBBACKUP_EMAIL_SUBJECT_PREFIX`` subject prefix, ``DBBACKUP_SERVER_EMAIL`` as sender, and every
configured database password cut out. ``MailEnabledFilter`` lets records through only while
``DBBACKUP_SEND_EMAIL`` is true. Example::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"dbbackup_mail": {"()": "dbbackup.log.MailEnabledFilter"}},
        "handlers": {
            "dbbackup_admins": {
                "class": "dbbackup.log.DbbackupAdminEmailHandler",
                "level": "ERROR",
                "filters": ["dbbackup_mail"],
            },
        },
        "loggers": {"dbbackup": {"handlers": ["dbbackup_admins"], "level": "INFO"}},
    }

Unlike django-dbbackup, nothing here runs at start-up: the app never replaces the handlers a
project's ``LOGGING`` put on the ``dbbackup`` logger. :func:`load` adds the handler for
projects that called it themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.log import AdminEmailHandler

from dbbackup import notify, settings


class MailEnabledFilter(logging.Filter):
    """Passes records only while ``DBBACKUP_SEND_EMAIL`` is true (read at each record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(settings.SEND_EMAIL)


class DbbackupAdminEmailHandler(AdminEmailHandler):
    """Django's admin e-mail handler, sending to dbbackup's admins without secrets.

    A failure the command already e-mailed (its record carries ``dbbackup_mailed``) is not sent
    a second time.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, notify.MAILED, False):
            return
        super().emit(record)

    def send_mail(self, subject: str, message: str, *args: Any, **kwargs: Any) -> None:
        # Django before 6.1 builds the connection from the handler's email_backend; from 6.1
        # (MAILERS) the handler has no connection() and the default mailer is used.
        connection = self.connection() if callable(getattr(self, "connection", None)) else None
        notify.mail_admins(subject, message, *args, connection=connection, **kwargs)


def load() -> None:
    """Make sure the ``dbbackup`` logger e-mails errors to the admins; idempotent.

    django-dbbackup ran this at start-up and replaced every handler of the ``dbbackup`` logger.
    Here it is never called by the app, and when called it only adds a
    :class:`DbbackupAdminEmailHandler` (level ERROR, HTML included, with
    :class:`MailEnabledFilter`) if the logger has none; the project's handlers stay.
    """
    package_logger = logging.getLogger("dbbackup")
    if any(isinstance(handler, DbbackupAdminEmailHandler) for handler in package_logger.handlers):
        return
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)
    handler = DbbackupAdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    handler.addFilter(MailEnabledFilter())
    package_logger.addHandler(handler)
