"""``dbbackup.log``: LOGGING dicts that name django-dbbackup's logging classes keep working."""

import io
import logging
import logging.config

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import log

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

SECRET = "hunter2-db-password"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mail_enabled": {"()": "dbbackup.log.MailEnabledFilter"}},
    "handlers": {
        "dbbackup_mail": {
            "level": "ERROR",
            "class": "dbbackup.log.DbbackupAdminEmailHandler",
            "filters": ["mail_enabled"],
            "include_html": True,
        },
    },
    "loggers": {"dbbackup": {"handlers": ["dbbackup_mail"], "level": "INFO"}},
}


@pytest.fixture
def project_logging():
    """Apply the project's LOGGING dict as Django would, and undo it afterwards."""
    package_logger = logging.getLogger("dbbackup")
    saved = (package_logger.handlers[:], package_logger.level, package_logger.propagate)
    logging.config.dictConfig(LOGGING)
    yield package_logger
    package_logger.handlers[:], package_logger.level, package_logger.propagate = saved


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DBBACKUP_CONNECTORS = {"default": {"PASSWORD": SECRET}}
    return settings


def failing_restore():
    # The name carries the configured password: it must not reach the mail.
    with pytest.raises(CommandError):
        call_command("dbrestore", "-d", "default", "-i", f"{SECRET}.dump", "--noinput", stderr=io.StringIO())


def test_a_failure_mail_goes_out_through_the_configured_handler_without_secrets(
    project_logging, admins, backup_dir, mailoutbox
):
    [handler] = project_logging.handlers
    assert isinstance(handler, log.DbbackupAdminEmailHandler)
    failing_restore()
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com"]
    assert mail.subject.startswith("[dbbackup] ERROR: dbrestore failed")
    assert "There is no backup" in mail.body
    everything = mail.subject + mail.body + "".join(content for content, _ in mail.alternatives)
    assert SECRET not in everything


def test_dbbackup_send_email_false_silences_the_handler(project_logging, admins, backup_dir, mailoutbox):
    admins.DBBACKUP_SEND_EMAIL = False
    failing_restore()
    assert mailoutbox == []


def test_a_failed_backup_is_mailed_once_even_with_the_handler_configured(
    project_logging, admins, backup_dir, mailoutbox
):
    admins.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "tests.test_api_exceptions.BrokenToolConnector"}}
    with pytest.raises(CommandError):
        call_command("dbbackup", "-d", "default", stderr=io.StringIO())
    assert len(mailoutbox) == 1


def test_the_app_leaves_the_projects_handlers_and_load_only_adds_one():
    package_logger = logging.getLogger("dbbackup")
    saved = package_logger.handlers[:]
    mine = logging.StreamHandler(io.StringIO())
    package_logger.addHandler(mine)
    try:
        log.load()
        log.load()
        assert mine in package_logger.handlers
        assert sum(isinstance(h, log.DbbackupAdminEmailHandler) for h in package_logger.handlers) == 1
    finally:
        package_logger.handlers[:] = saved
    assert not any(isinstance(h, log.DbbackupAdminEmailHandler) for h in saved)  # nothing at start-up
