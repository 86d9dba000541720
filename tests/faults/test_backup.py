"""Faults on the backup side: killed runs, failing storages, several databases, bad names.

Each test injects one fault and asserts what a user relies on afterwards: the command failed
with a one-line error (or succeeded), nothing that looks like a backup was left half-written,
the earlier backups are untouched, and no debris outlives the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import pipeline, signals
from dbbackup.storage import get_storage
from tests.faults.support import (
    child_settings,
    debris,
    fingerprint,
    kill,
    reap,
    run_command,
    start_command,
    tmpfs,
    tree_fingerprint,
    wait_for,
)
from tests.helpers import add_known_data
from tests.testapp.models import Note

PG = pytest.mark.postgres
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


def backups_in(directory) -> list[str]:
    """Names of the finished backups in a directory (neither sidecars nor hidden files)."""
    return sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".metadata")
    )


# -- server names that cannot be part of a file name --------------------------------------------


@pytest.mark.parametrize("servername", ["web/1", "..", "a..b", "web\\1", "nul\x00", "tab\there", " "])
def test_a_path_hostile_server_name_is_refused_before_anything_starts(backup_dir, servername):
    started = []
    signals.pre_backup.connect(receiver := lambda **kwargs: started.append(kwargs), weak=False)
    try:
        with pytest.raises(CommandError, match="server name") as info:
            call_command("dbbackup", "-d", "default", "-s", servername, "--noinput")
    finally:
        signals.pre_backup.disconnect(receiver)
    assert "\n" not in str(info.value)
    assert started == []
    assert not backup_dir.exists() or list(backup_dir.rglob("*")) == []


def test_a_path_hostile_hostname_setting_is_refused_for_media_too(backup_dir, settings, tmp_path):
    settings.DBBACKUP_HOSTNAME = "web/1"
    with pytest.raises(CommandError, match="DBBACKUP_HOSTNAME"):
        call_command("dbbackup", "-d", "default", "--noinput")
    with pytest.raises(CommandError, match="server name 'web/1'"):
        call_command("mediabackup", "--noinput")
    assert not backup_dir.exists() or list(backup_dir.rglob("*")) == []


def test_an_ordinary_server_name_with_dots_and_dashes_still_works(backup_dir):
    result = pipeline.backup_database("default", servername="web-1.example.com")
    assert "web-1.example.com" in result.filename
    assert pipeline.restore_database("default", servername="web-1.example.com").filename == result.filename


# -- several databases: one failure does not stop the others --------------------------------------


@PG
def test_every_database_is_backed_up_and_every_failure_reported(backup_dir, settings, mailoutbox):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"DUMP_CMD": "false"}}
    settings.DBBACKUP_ADMINS = [("Ops", "ops@example.com")]
    add_known_data("default")
    pairs = []

    def pre(**kwargs):
        pairs.append("pre_backup")

    def post(**kwargs):
        pairs.append("post_backup")

    signals.pre_backup.connect(pre)
    signals.post_backup.connect(post)
    try:
        with pytest.raises(CommandError) as info:
            call_command("dbbackup", "-d", "postgres,default", "--noinput")
    finally:
        signals.pre_backup.disconnect(pre)
        signals.post_backup.disconnect(post)
    message = str(info.value)
    assert message.splitlines()[0].startswith("1 of 2 database backups failed ('postgres')")
    assert len(message.splitlines()) == 2
    assert message.splitlines()[1].startswith("postgres: ")
    # the healthy database after the broken one was backed up, and restores
    [stored] = backups_in(backup_dir)
    assert stored.startswith("default-")
    assert debris(backup_dir) == []
    # each database had its own pre signal; only the healthy one its post signal
    assert pairs == ["pre_backup", "pre_backup", "post_backup"]
    # the failure e-mail names the failed database
    [mail] = mailoutbox
    assert "1 of 2 database backups failed ('postgres')" in mail.subject
    assert "postgres: " in mail.body


def test_several_failures_are_all_listed_one_line_each(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {
        "default": {"CONNECTOR": "dbbackup.db.sqlite.SqliteCPConnector", "NAME": "/nonexistent/a.sqlite3"},
        "other": {"CONNECTOR": "dbbackup.db.sqlite.SqliteCPConnector", "NAME": "/nonexistent/b.sqlite3"},
    }
    with pytest.raises(CommandError) as info:
        call_command("dbbackup", "-d", "default,other", "--noinput")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("2 of 2 database backups failed ('default', 'other')")
    assert [line.split(":")[0] for line in lines[1:]] == ["default", "other"]
    assert not backup_dir.exists() or backups_in(backup_dir) == []


# -- -O onto an existing backup: the old pair survives a failure ---------------------------------


def test_a_failing_sidecar_leaves_the_previous_local_backup_and_sidecar_intact(tmp_path, monkeypatch):
    add_known_data("default")
    before = fingerprint("default")
    path = tmp_path / "site.sqlite3"
    call_command("dbbackup", "-d", "default", "-O", str(path), "--noinput")
    old = tree_fingerprint(tmp_path)
    assert sorted(old) == ["site.sqlite3", "site.sqlite3.metadata"]

    add_known_data("default")  # the next backup differs
    real_open = os.open

    def no_space_for_sidecars(file, flags, *args, **kwargs):  # the fault, at the OS boundary
        if ".metadata" in os.fspath(file) and flags & os.O_CREAT:
            raise OSError(28, "No space left on device")
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_space_for_sidecars)
    with pytest.raises(CommandError, match="No space left on device") as info:
        call_command("dbbackup", "-d", "default", "-O", str(path), "--noinput")
    assert "\n" not in str(info.value)
    assert tree_fingerprint(tmp_path) == old  # neither replaced nor removed, nothing left beside
    assert debris(tmp_path) == []

    monkeypatch.undo()
    pipeline.restore_database("default", input_path=str(path))
    assert fingerprint("default") == before


def test_a_directory_in_the_way_of_the_sidecar_changes_nothing(tmp_path):
    add_known_data("default")
    path = tmp_path / "site.sqlite3"
    path.write_bytes(b"the previous backup")
    (tmp_path / "site.sqlite3.metadata").mkdir()
    with pytest.raises(CommandError, match="in the way"):
        call_command("dbbackup", "-d", "default", "-O", str(path), "--noinput")
    assert path.read_bytes() == b"the previous backup"
    assert debris(tmp_path) == []


def test_o_naming_an_existing_backup_in_the_storage_leaves_it_alone(backup_dir):
    add_known_data("default")
    before = fingerprint("default")
    call_command("dbbackup", "-d", "default", "-o", "named.sqlite3", "--noinput")
    old = tree_fingerprint(backup_dir)
    add_known_data("default")
    with pytest.raises(CommandError, match="already exists"):
        call_command("dbbackup", "-d", "default", "-o", "named.sqlite3", "--noinput")
    assert tree_fingerprint(backup_dir) == old
    pipeline.restore_database("default", input_filename="named.sqlite3")
    assert fingerprint("default") == before


# -- storages that fail mid-write ---------------------------------------------------------------


class FullStorage(InMemoryStorage):
    """An in-memory storage that is full after ``FULL_AFTER`` more bytes of one file."""

    FULL_AFTER = 4096

    def _save(self, name, content):
        data = b""
        for chunk in content.chunks():
            data += chunk
            if len(data) > self.FULL_AFTER:
                raise OSError(28, "No space left on device")
        return super()._save(name, ContentFile(data))


def test_a_storage_full_after_n_bytes_fails_in_one_line_and_leaves_no_backup(settings):
    settings.STORAGES = {**settings.STORAGES, "dbbackup": {"BACKEND": "tests.faults.test_backup.FullStorage"}}
    add_known_data("default")
    storage = get_storage()
    storage.storage.save("default-testhost-2020-01-01-000000.sqlite3", ContentFile(b"old backup"))
    with pytest.raises(CommandError, match="No space left on device") as info:
        call_command("dbbackup", "-d", "default", "--noinput")
    assert "\n" not in str(info.value)
    assert storage.list_backups() == ["default-testhost-2020-01-01-000000.sqlite3"]
    assert sorted(storage.walk()) == ["default-testhost-2020-01-01-000000.sqlite3"]


@pytest.fixture
def small_disk(tmp_path, settings):
    """Backups on a 1 MiB tmpfs; yields (directory, remount read-only).

    The SQLite test database is compacted first: tests that ran before may have left it larger
    than the tmpfs (free pages are copied too), which would fill the disk a step too early.
    """
    with connections["default"].cursor() as cursor:
        cursor.execute("VACUUM")
    location = tmp_path / "small"
    with tmpfs(location, "1m") as readonly:
        settings.STORAGES = {
            **settings.STORAGES,
            "dbbackup": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(location)},
            },
        }
        yield location, readonly


@pytest.mark.parametrize("compress", [[], ["-z"]], ids=["copied-straight", "streamed"])
def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_backups(small_disk, compress):
    location, _ = small_disk
    add_known_data("default")
    before = fingerprint("default")
    call_command("dbbackup", "-d", "default", *compress, "--noinput")
    old = tree_fingerprint(location)
    Note.objects.create(title="big", body="", payload=os.urandom(1_500_000), extra={})
    with pytest.raises(CommandError, match="No space left on device") as info:
        call_command("dbbackup", "-d", "default", *compress, "--noinput")
    assert "\n" not in str(info.value)
    assert tree_fingerprint(location) == old
    assert debris(location) == []
    pipeline.restore_database("default")
    assert fingerprint("default") == before


def test_a_read_only_storage_fails_in_one_line_and_keeps_the_previous_backups(small_disk):
    location, readonly = small_disk
    add_known_data("default")
    before = fingerprint("default")
    call_command("dbbackup", "-d", "default", "--noinput")
    old = tree_fingerprint(location)
    readonly()
    add_known_data("default")
    with pytest.raises(CommandError, match="Read-only file system") as info:
        call_command("dbbackup", "-d", "default", "--noinput")
    assert "\n" not in str(info.value)
    assert tree_fingerprint(location) == old
    pipeline.restore_database("default")
    assert fingerprint("default") == before


# -- killed runs: their leftovers are swept by the next run, a live run's are not ---------------


@pytest.fixture(scope="module")
def big_sqlite(tmp_path_factory):
    """A 120 MB SQLite database, so a backup takes long enough to be killed in the middle."""
    path = tmp_path_factory.mktemp("big") / "big.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    connection.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120) "
        "INSERT INTO blobs (data) SELECT zeroblob(1000000) FROM n"
    )
    connection.commit()
    connection.close()
    return path


@pytest.fixture
def big_child(big_sqlite, backup_dir, tmp_path, settings):
    """Child-command settings with a ``big`` SQLite database and a private DBBACKUP_TMP_DIR."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings.DBBACKUP_TMP_DIR = str(scratch)
    databases = {
        **settings.DATABASES,
        "big": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(big_sqlite)},
    }
    return child_settings(DATABASES=databases), scratch


def partials(directory) -> list:
    return sorted(Path(directory).rglob(".*.partial-*"))


def stored_rows(path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM blobs").fetchone()[0]
    finally:
        connection.close()


def test_a_compressed_sqlite_backup_killed_while_copying_leaves_a_scratch_file_the_next_run_removes(
    big_child, backup_dir, big_sqlite
):
    """A compressed backup streams from a scratch copy in DBBACKUP_TMP_DIR (a plain one is
    copied straight into its partial file: tests/faults/test_sqlite_direct.py)."""
    settings, scratch = big_child
    proc = start_command("dbbackup", "-d", "big", "-z", "--noinput", settings=settings)
    wait_for(lambda: list(scratch.glob(".dbbackup-*.sqlite3")), what="the scratch copy")
    kill(proc.pid)
    assert reap(proc) == -signal.SIGKILL
    assert debris(scratch, backup_dir), "the kill should have left the scratch copy behind"

    result = run_command("dbbackup", "-d", "big", "--noinput", settings=settings)
    assert result.returncode == 0, result.stderr
    assert debris(scratch, backup_dir, big_sqlite.parent) == []
    [stored] = backups_in(backup_dir)
    assert stored_rows(backup_dir / stored) == 120


@pytest.mark.parametrize("compress", [[], ["-z"]], ids=["copied-straight", "streamed"])
def test_a_sqlite_backup_killed_mid_upload_leaves_a_partial_the_next_run_removes(
    big_child, backup_dir, big_sqlite, compress
):
    settings, scratch = big_child
    proc = start_command("dbbackup", "-d", "big", *compress, "--noinput", settings=settings)
    wait_for(lambda: partials(backup_dir), what="the upload")
    kill(proc.pid)
    assert reap(proc) == -signal.SIGKILL
    assert partials(backup_dir), "the kill should have left a partial upload behind"
    assert backups_in(backup_dir) == []

    result = run_command("dbbackup", "-d", "big", "--noinput", settings=settings)
    assert result.returncode == 0, result.stderr
    assert debris(scratch, backup_dir, big_sqlite.parent) == []
    [stored] = backups_in(backup_dir)
    assert stored_rows(backup_dir / stored) == 120


def test_the_partial_of_a_live_run_is_not_swept_and_both_runs_finish(big_child, backup_dir):
    settings, scratch = big_child
    slow = start_command("dbbackup", "-d", "big", "--noinput", settings=settings)
    try:
        [partial] = wait_for(lambda: partials(backup_dir), what="the upload")
        kill(slow.pid, signal.SIGSTOP)  # alive, but writing nothing while the other run sweeps
        other = run_command("dbbackup", "-d", "default", "--noinput", settings=settings)
        assert other.returncode == 0, other.stderr
        assert partial.exists()
    finally:
        kill(slow.pid, signal.SIGCONT)
    assert reap(slow) == 0, slow.stderr.read().decode()
    stored = backups_in(backup_dir)
    assert [name.split("-")[0] for name in stored] == ["big", "default"]
    assert stored_rows(backup_dir / stored[0]) == 120
    assert debris(scratch, backup_dir) == []


def test_concurrent_runs_both_store_complete_distinct_backups(backup_dir):
    add_known_data("default")
    procs = [start_command("dbbackup", "-d", "default", "--noinput") for _ in range(2)]
    for proc in procs:
        assert reap(proc) == 0, proc.stderr.read().decode()
    stored = backups_in(backup_dir)
    assert len(stored) == 2
    for name in stored:
        record = json.loads((backup_dir / f"{name}.metadata").read_text())
        data = (backup_dir / name).read_bytes()
        assert json.dumps(record).count(hashlib.sha256(data).hexdigest()) == 1
        assert data.startswith(b"SQLite format 3\x00")
    assert debris(backup_dir) == []


@PG
def test_a_postgresql_backup_killed_mid_upload_leaves_a_partial_the_next_run_removes(backup_dir):
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 32) AS data "
            "FROM generate_series(1, 30000) AS g"
        )
    try:
        before = fingerprint("postgres")
        proc = start_command("dbbackup", "-d", "postgres", "--noinput")
        wait_for(lambda: partials(backup_dir), what="the upload")
        kill(proc.pid)
        assert reap(proc) == -signal.SIGKILL
        assert partials(backup_dir), "the kill should have left a partial upload behind"

        result = run_command("dbbackup", "-d", "postgres", "--noinput")
        assert result.returncode == 0, result.stderr
        assert debris(backup_dir) == []
        [stored] = backups_in(backup_dir)
        with connections["postgres"].cursor() as cursor:
            cursor.execute("DROP TABLE bulk")
        pipeline.restore_database("postgres", input_filename=stored)
        assert fingerprint("postgres") == before
    finally:
        with connections["postgres"].cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bulk")


def test_an_orphan_sidecar_does_not_block_a_backup_under_its_name(backup_dir):
    add_known_data("default")
    before = fingerprint("default")
    backup_dir.mkdir()
    (backup_dir / "named.sqlite3.metadata").write_text('{"sha256": "of a backup deleted long ago"}')
    call_command("dbbackup", "-d", "default", "-o", "named.sqlite3", "--noinput")
    assert "long ago" not in (backup_dir / "named.sqlite3.metadata").read_text()
    pipeline.restore_database("default", input_filename="named.sqlite3")
    assert fingerprint("default") == before


def test_a_killed_sqlite_restore_leaves_a_scratch_database_the_next_run_removes(
    big_child, backup_dir, big_sqlite
):
    settings, scratch = big_child
    result = run_command("dbbackup", "-d", "big", "--noinput", settings=settings)
    assert result.returncode == 0, result.stderr
    proc = start_command("dbrestore", "-d", "big", "--noinput", settings=settings)
    wait_for(
        lambda: list(big_sqlite.parent.glob(".dbbackup-*.sqlite3")), what="the restore's scratch database"
    )
    kill(proc.pid)
    assert reap(proc) == -signal.SIGKILL
    assert debris(big_sqlite.parent), "the kill should have left the scratch database behind"

    result = run_command("dbrestore", "-d", "big", "--noinput", settings=settings)
    assert result.returncode == 0, result.stderr
    assert debris(scratch, backup_dir, big_sqlite.parent) == []
    assert stored_rows(big_sqlite) == 120


def test_a_killed_mediabackup_leaves_a_partial_the_next_backup_removes(backup_dir, settings, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    proc = start_command("mediabackup", "--noinput")
    wait_for(lambda: partials(backup_dir), what="the upload")
    kill(proc.pid)
    assert reap(proc) == -signal.SIGKILL
    assert partials(backup_dir)

    result = run_command("mediabackup", "--noinput")
    assert result.returncode == 0, result.stderr
    assert debris(backup_dir) == []
    assert len(backups_in(backup_dir)) == 1


def test_the_failure_mail_of_a_one_character_password_shows_words_whole(backup_dir, settings, mailoutbox):
    settings.DBBACKUP_CONNECTORS = {"default": {"PASSWORD": "x"}}
    settings.DBBACKUP_ADMINS = ["ops@example.com"]
    with pytest.raises(CommandError):
        call_command("dbbackup", "-d", "example", "--noinput")
    [mail] = mailoutbox
    assert "'example'" in mail.subject
    assert "********" not in mail.subject + mail.body
