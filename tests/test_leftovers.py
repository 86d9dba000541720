"""Leftovers of killed runs: whose they are, when they are stale, and what sweeping removes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.core.files.base import ContentFile

from dbbackup import leftovers, pipeline
from dbbackup.storage import get_storage

DAY = 24 * 60 * 60


@pytest.fixture
def sleeper():
    """A live process that is not us."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def owner_of(pid: int, start: str | None = None) -> str:
    start = start if start is not None else leftovers._start_time(pid)
    return f"{leftovers._host_id()}-{pid}-{start}"


def dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = owner_of(proc.pid)
    proc.wait()
    return owner


FOREIGN = "0123456789ab-4242-12345"


def make(directory, name, age: float = 0) -> str:
    path = directory / name
    path.write_bytes(b"x")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return name


def test_the_names_carry_their_owner():
    name = leftovers.partial_name("folder/db-host-2024.sqlite3")
    assert name.startswith(f"folder/.db-host-2024.sqlite3.partial-{leftovers.owner()}-")
    assert leftovers.scratch_prefix() == f".dbbackup-{leftovers.owner()}-"
    assert leftovers.is_leftover(name.split("/")[1])
    assert leftovers._start_time(os.getpid()) is not None


def test_only_leftovers_of_gone_or_old_runs_are_swept(tmp_path, sleeper, settings):
    dead, live = dead_owner(), owner_of(sleeper.pid)
    kept = [
        make(tmp_path, f".db.sqlite3.partial-{live}-abcd1234"),  # a live run on this host
        make(tmp_path, f".dbbackup-{live}-x1y2z3.sqlite3", age=3 * DAY),  # live, however old
        make(tmp_path, f".db.sqlite3.partial-{leftovers.owner()}-abcd1234"),  # ourselves
        make(tmp_path, f".db.sqlite3.partial-{FOREIGN}-abcd1234", age=DAY - 60),  # another host, young
        make(tmp_path, ".db.sqlite3.partial-0f1e2d3c4b5a69788796a5b4c3d2e1f0"),  # no owner, young
        make(tmp_path, "db-host-2024.sqlite3", age=30 * DAY),  # a backup
        make(tmp_path, "db-host-2024.sqlite3.metadata", age=30 * DAY),
        make(tmp_path, ".gitkeep", age=30 * DAY),
        make(tmp_path, ".dbbackup-notes.txt", age=30 * DAY),
        make(tmp_path, ".download.partial", age=30 * DAY),  # not ours: names are matched strictly
        make(tmp_path, ".notes.partial-draft", age=30 * DAY),
    ]
    swept = [
        make(tmp_path, f".db.sqlite3.partial-{dead}-abcd1234"),  # its process is gone
        make(tmp_path, f".dbbackup-{dead}-x1y2z3.sqlite3"),
        make(tmp_path, f".dbbackup-{dead}-x1y2z3.sqlite3-journal"),
        make(tmp_path, f".db.sqlite3.partial-{owner_of(sleeper.pid, '1')}-ab"),  # its PID was reused
        make(tmp_path, f".db.sqlite3.partial-{FOREIGN}-abcd1234x", age=DAY + 60),  # another host, old
        make(tmp_path, ".db.sqlite3.partial-0f1e2d3c4b5a69788796a5b4c3d2e1f0x", age=DAY + 60),
        make(tmp_path, ".dbbackup-k3j4h5g6.sqlite3", age=DAY + 60),  # an older version's scratch
        make(tmp_path, ".site.sqlite3.k3j4h5g6.partial", age=DAY + 60),  # an older version's -O
    ]
    removed = leftovers.sweep_directory(tmp_path)
    assert sorted(os.path.basename(path) for path in removed) == sorted(swept)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


def test_a_killed_but_unreaped_process_owns_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    name = make(tmp_path, f".db.sqlite3.partial-{owner_of(proc.pid)}-1")
    assert leftovers.sweep_directory(tmp_path) == []
    proc.kill()
    deadline = time.monotonic() + 10
    while leftovers._start_time(proc.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # a zombie until we reap it below
    try:
        assert os.path.exists(f"/proc/{proc.pid}")
        assert leftovers.sweep_directory(tmp_path) == [str(tmp_path / name)]
    finally:
        proc.wait()


def test_the_age_limit_is_a_setting_and_none_keeps_what_cannot_be_checked(tmp_path, settings):
    settings.DBBACKUP_LEFTOVER_MAX_AGE = 60
    make(tmp_path, f".a.partial-{FOREIGN}-1", age=120)
    assert len(leftovers.sweep_directory(tmp_path)) == 1
    settings.DBBACKUP_LEFTOVER_MAX_AGE = None
    make(tmp_path, f".a.partial-{FOREIGN}-1", age=30 * DAY)
    assert leftovers.sweep_directory(tmp_path) == []


@pytest.mark.django_db
def test_a_backup_sweeps_stale_partials_from_any_storage_but_not_live_ones(settings, sleeper):
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    storage = get_storage()
    stale = f"folder/.db.sqlite3.partial-{dead_owner()}-1"
    live = f".db.sqlite3.partial-{owner_of(sleeper.pid)}-1"
    young_foreign = f".db.sqlite3.partial-{FOREIGN}-1"
    for name in (stale, live, young_foreign):
        storage.storage.save(name, ContentFile(b"half a backup"))
    result = pipeline.backup_database("default")
    assert sorted(storage.walk()) == sorted(
        [live, young_foreign, result.filename, result.filename + ".metadata"]
    )
