"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


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
