"""Django app configuration for dbbackup."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DbbackupConfig(AppConfig):
    """Registers the system checks; nothing else happens at start-up."""

    name = "dbbackup"
    label = "dbbackup"
    verbose_name = _("Backup and restore")
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from dbbackup import checks  # noqa: F401 - registers the checks
