"""Fixtures shared by the whole suite."""

from __future__ import annotations

import shutil

import pytest
from django.conf import settings as django_settings

from tests import gpg
from tests.database_servers import REQUIRE_SERVERS
from tests.remote_servers import unavailable

#: marker -> the DATABASES aliases its tests need
SERVER_MARKERS = {"postgres": ("postgres",), "mysql": ("mysql",)}


def pytest_collection_modifyitems(config, items):
    """Skip server tests whose server is absent; never on CI, where they must run (and fail)."""
    if REQUIRE_SERVERS:
        return
    for item in items:
        missing = [
            alias
            for marker, aliases in SERVER_MARKERS.items()
            if item.get_closest_marker(marker)
            for alias in aliases
            if alias not in django_settings.DATABASES
        ]
        if missing:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"no server for {', '.join(missing)} (set DBBACKUP_REQUIRE_SERVERS to fail)"
                )
            )
        # pytest-django creates the test databases that collected tests name: a module-wide mark
        # naming server aliases must not ask for databases this machine does not have.
        marker = item.get_closest_marker("django_db")
        databases = marker.kwargs.get("databases") if marker else None
        if isinstance(databases, list | tuple) and any(
            alias not in django_settings.DATABASES for alias in databases
        ):
            kept = [alias for alias in databases if alias in django_settings.DATABASES]
            item.add_marker(pytest.mark.django_db(**{**marker.kwargs, "databases": kept}), append=False)


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


def require_gpg() -> None:
    """Skip a GPG test on a machine without the gpg binary (fail on CI, where it must run)."""
    if shutil.which("gpg") is None:
        unavailable("the GPG tests need the gpg binary (GnuPG 2; Debian: apt install gnupg)")


@pytest.fixture(scope="session")
def keyring(tmp_path_factory):
    require_gpg()
    home = gpg.make_keyring(tmp_path_factory.mktemp("gnupg") / "home")
    yield home
    gpg.stop_agent(home)


@pytest.fixture(scope="session")
def stranger_keyring(tmp_path_factory):
    require_gpg()
    home = gpg.make_keyring(tmp_path_factory.mktemp("gnupg") / "stranger", protected=False)
    yield home
    gpg.stop_agent(home)


@pytest.fixture
def gpg_settings(settings, keyring):
    settings.DBBACKUP_GPG_HOME = str(keyring)
    settings.DBBACKUP_GPG_RECIPIENT = "backup@example.com"
    return settings


class Recorder:
    """Connects a receiver function to a signal for one test and records every call."""

    def __init__(self, signal, raises=None):
        self.signal, self.calls = signal, []

        def receiver(signal, sender, **kwargs):
            self.calls.append({"sender": sender, **kwargs})
            if raises is not None:
                raise raises

        self.receiver = receiver
        signal.connect(receiver, weak=False)

    def disconnect(self):
        self.signal.disconnect(self.receiver)


@pytest.fixture
def record():
    recorders = []

    def make(signal, raises=None):
        recorders.append(Recorder(signal, raises))
        return recorders[-1]

    yield make
    for recorder in recorders:
        recorder.disconnect()
