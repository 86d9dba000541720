"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from tests.database_servers import REQUIRE_SERVERS

#: marker -> the DATABASES aliases its tests need
SERVER_MARKERS = {"postgres": ("postgres",), "mysql": ("mysql",)}


def pytest_collection_modifyitems(config, items):
    """Skip server tests whose server is absent; never on CI, where they must run (and fail)."""
    if REQUIRE_SERVERS:
        return
    for item in items:
        for marker, aliases in SERVER_MARKERS.items():
            missing = [alias for alias in aliases if alias not in django_settings.DATABASES]
            if item.get_closest_marker(marker) and missing:
                # pytest-django creates the test databases every collected test names, so point
                # the skipped test at "default" only.
                item.add_marker(pytest.mark.django_db(transaction=True, databases=["default"]), append=False)
                item.add_marker(
                    pytest.mark.skip(reason=f"no {marker} server (set DBBACKUP_REQUIRE_SERVERS to fail)")
                )


@pytest.fixture
def backup_dir(tmp_path, settings):
    """A fresh FileSystemStorage for backups, in a temporary directory."""
    location = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    return location
