"""SQLite backups written straight into their partial file (dbbackup/pipeline/direct.py).

A plain SqliteBackupConnector backup to a local folder (or a local ``-O`` path) is copied by
SQLite's backup API into the hidden partial file beside its target, then hashed, synced and
linked into place: no scratch copy in DBBACKUP_TMP_DIR. These tests check that it is the same
backup as the streamed one (bytes, checksum, name rules, modes, signals), which combinations
still stream, and that a kill, a full disk or a failure at any step publishes nothing and
leaves nothing a later run does not sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import manifest, names, pipeline, signals
from dbbackup.db.base import get_connector
from dbbackup.db.sqlite import SqliteBackupConnector, SqliteConnector
from dbbackup.exceptions import DumpError, SignalReceiverError, StorageError
from dbbackup.streams import IteratorReader
from tests.faults.support import (
    child_settings,
    debris,
    fingerprint,
    kill,
    reap,
    run_command,
    start_command,
    tmpfs,
    wait_for,
)
from tests.helpers import add_known_data
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])
HEADER = b"SQLite format 3\x00"


def published(directory: Path) -> list[str]:
    """Finished backups in ``directory``: neither sidecars nor hidden files."""
    if not directory.exists():
        return []
    return sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".metadata")
    )


def assert_checksum_matches(path: Path) -> None:
    """The sidecar's SHA-256 and size are those of the published bytes."""
    data = path.read_bytes()
    metadata = json.loads(Path(f"{path}.metadata").read_text())
    assert manifest.integrity(metadata) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def scratch(tmp_path, settings) -> Path:
    """An empty private DBBACKUP_TMP_DIR, to see whether a scratch copy was made there."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    settings.DBBACKUP_TMP_DIR = str(directory)
    return directory


@pytest.fixture
def copies(monkeypatch) -> list[dict]:
    """Each call of SqliteBackupConnector.dump_into: its path, the file's mode and its folder."""
    calls: list[dict] = []
    real = SqliteBackupConnector.dump_into

    def spy(self, path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        real(self, path)
        calls.append({"path": Path(path), "mode": mode, "beside": sorted(os.listdir(Path(path).parent))})

    monkeypatch.setattr(SqliteBackupConnector, "dump_into", spy)
    return calls


# -- the same backup as the streamed one, written once ----------------------------------------


def test_a_plain_backup_is_copied_once_into_its_partial_file_and_is_the_streamed_backup(
    backup_dir, scratch, copies
):
    add_known_data()
    result = pipeline.backup_database("default")
    [copy] = copies
    assert copy["path"].parent == backup_dir
    assert copy["path"].name.startswith(f".{result.filename}.partial-")
    assert copy["mode"] == 0o600
    assert copy["beside"] == [copy["path"].name]  # no -journal, -wal or -shm beside it
    assert list(scratch.iterdir()) == []
    backup = backup_dir / result.filename
    data = backup.read_bytes()
    assert sorted(os.listdir(backup_dir)) == [result.filename, f"{result.filename}.metadata"]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert_checksum_matches(backup)
    assert (result.sha256, result.size) == (hashlib.sha256(data).hexdigest(), len(data))
    # a rollback-journal database file, byte for byte what the streamed path stores
    assert data.startswith(HEADER)
    assert data[18:20] == b"\x01\x01"
    assert get_connector("default").create_dump().read() == data
    expected = fingerprint("default")
    Note.objects.create(title="written after the backup")
    pipeline.restore_database("default", input_filename=result.filename)
    assert fingerprint("default") == expected


def _fresh_output(tmp_path: Path) -> str:
    (tmp_path / "out").mkdir(exist_ok=True)
    return str(tmp_path / "out" / "site.sqlite3")


STREAMED = {
    "gzip": {"compress": True},
    "zstd": {"compression": "zstd"},
    "output-path-gzip": {"compress": True, "output_path": _fresh_output},
}


@pytest.mark.parametrize("case", ["plain", "output-path", *STREAMED])
def test_only_a_plain_local_backup_is_written_straight(backup_dir, scratch, copies, tmp_path, case):
    options = dict(STREAMED.get(case, {"output_path": _fresh_output} if case == "output-path" else {}))
    if "output_path" in options:
        options["output_path"] = options["output_path"](tmp_path)
    add_known_data()
    expected = fingerprint("default")
    result = pipeline.backup_database("default", **options)
    [copy] = copies
    if case in STREAMED:  # the scratch copy in DBBACKUP_TMP_DIR, whose name is gone already
        assert copy["path"].parent == scratch
        assert copy["path"].name.startswith(".dbbackup-")
    elif case == "output-path":
        assert copy["path"].parent == tmp_path / "out"
        assert copy["path"].name.startswith(".site.sqlite3.partial-")
    assert list(scratch.iterdir()) == []
    stored = Path(result.local_path) if result.local_path else backup_dir / result.filename
    assert_checksum_matches(stored)
    assert debris(tmp_path) == []
    Note.objects.create(title="written after the backup")
    if result.local_path:
        pipeline.restore_database("default", input_path=result.local_path)
    else:
        pipeline.restore_database("default", input_filename=result.filename)
    assert fingerprint("default") == expected


def test_a_remote_storage_and_gpg_still_stream(settings, scratch, copies, gpg_settings, backup_dir):
    add_known_data()
    pipeline.backup_database("default", encrypt=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    result = pipeline.backup_database("default")
    assert [copy["path"].parent for copy in copies] == [scratch, scratch]
    expected = fingerprint("default")
    Note.objects.create(title="written after the backup")
    pipeline.restore_database("default", input_filename=result.filename)
    assert fingerprint("default") == expected


class ChangedStream(SqliteBackupConnector):
    """A project's subclass whose stream is not the plain backup-API copy."""

    def _create_dump(self):
        data = super()._create_dump().read()
        return IteratorReader([data])


def test_a_connector_that_changes_the_stream_is_never_bypassed(backup_dir, settings, copies, scratch):
    assert get_connector("default").can_dump_into()
    assert not SqliteConnector("default").can_dump_into()
    assert not ChangedStream("default").can_dump_into()
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": f"{__name__}.ChangedStream"}}
    pipeline.backup_database("default")
    assert [copy["path"].parent for copy in copies] == [scratch]


def test_a_wal_database_copy_keeps_its_header_and_no_log_is_left_beside_it(backup_dir, settings, tmp_path):
    source = tmp_path / "wal.sqlite3"
    writer = sqlite3.connect(source)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(300),) for _ in range(2000)])
    writer.commit()  # still in the -wal file: the open connection keeps it from being checkpointed
    assert Path(f"{source}-wal").stat().st_size > 0
    settings.DBBACKUP_CONNECTORS = {"default": {"NAME": str(source)}}
    try:
        result = pipeline.backup_database("default")
    finally:
        writer.close()
    backup = backup_dir / result.filename
    assert sorted(os.listdir(backup_dir)) == [result.filename, f"{result.filename}.metadata"]
    data = backup.read_bytes()
    assert data[18:20] == source.read_bytes()[18:20] == b"\x02\x02"  # the source's mode, as streamed
    assert_checksum_matches(backup)
    check = sqlite3.connect(f"file:{backup}?immutable=1", uri=True)  # opens without -wal or -shm
    assert check.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    assert check.execute("PRAGMA quick_check").fetchone() == ("ok",)
    check.close()
    assert sorted(os.listdir(backup_dir)) == [result.filename, f"{result.filename}.metadata"]


def test_an_explicit_file_mode_is_applied_before_the_name_appears(settings, tmp_path, copies):
    location = tmp_path / "new" / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location), "file_permissions_mode": 0o640},
        },
    }
    result = pipeline.backup_database("default")
    assert copies[0]["mode"] == 0o600
    assert stat.S_IMODE((location / result.filename).stat().st_mode) == 0o640
    assert stat.S_IMODE(location.stat().st_mode) == 0o700


def test_progress_reports_every_stored_byte(backup_dir):
    add_known_data()
    reported: list[int] = []
    result = pipeline.backup_database("default", progress=reported.append)
    assert reported
    assert sum(reported) == result.size == (backup_dir / result.filename).stat().st_size


# -- names: never overwritten, the next second's name on a conflict ----------------------------


def test_two_backups_in_the_same_second_get_the_next_name(backup_dir, monkeypatch):
    monkeypatch.setattr(names, "now", lambda: datetime(2026, 12, 1, 10, 0, 0))
    first = pipeline.backup_database("default")
    second = pipeline.backup_database("default")
    assert first.filename.endswith("2026-12-01-100000.sqlite3")
    assert second.filename.endswith("2026-12-01-100001.sqlite3")
    for result in (first, second):
        assert_checksum_matches(backup_dir / result.filename)
    assert debris(backup_dir) == []


def test_a_file_that_takes_the_name_during_the_copy_is_kept(backup_dir, monkeypatch):
    monkeypatch.setattr(names, "now", lambda: datetime(2026, 12, 1, 10, 0, 0))
    taken = backup_dir / "default-testhost-2026-12-01-100000.sqlite3"
    real = SqliteBackupConnector.dump_into

    def racing(self, path):
        taken.write_bytes(b"another run's backup")  # published while this copy runs
        real(self, path)

    monkeypatch.setattr(SqliteBackupConnector, "dump_into", racing)
    result = pipeline.backup_database("default")
    assert result.filename == "default-testhost-2026-12-01-100001.sqlite3"
    assert taken.read_bytes() == b"another run's backup"
    assert_checksum_matches(backup_dir / result.filename)
    assert debris(backup_dir) == []


def test_an_existing_name_given_with_o_is_refused_and_nothing_is_left(backup_dir, monkeypatch):
    backup_dir.mkdir()
    (backup_dir / "mine.sqlite3").write_bytes(b"keep me")
    with pytest.raises(StorageError, match="already exists"):
        pipeline.backup_database("default", output_filename="mine.sqlite3")
    real = SqliteBackupConnector.dump_into

    def racing(self, path):
        (backup_dir / "late.sqlite3").write_bytes(b"keep me too")
        real(self, path)

    monkeypatch.setattr(SqliteBackupConnector, "dump_into", racing)
    with pytest.raises(StorageError, match="already exists"):
        pipeline.backup_database("default", output_filename="late.sqlite3")
    assert sorted(os.listdir(backup_dir)) == ["late.sqlite3", "mine.sqlite3"]
    assert (backup_dir / "late.sqlite3").read_bytes() == b"keep me too"


# -- failures publish nothing and leave nothing -----------------------------------------------


def test_a_raising_pre_backup_receiver_leaves_nothing(backup_dir, scratch, copies, record):
    record(signals.pre_backup, raises=RuntimeError("not now"))
    with pytest.raises(SignalReceiverError, match="not now"):
        pipeline.backup_database("default")
    assert copies == []
    assert published(backup_dir) == []
    assert debris(backup_dir, scratch) == []


@pytest.mark.parametrize("where", ["copy", "fsync"])
def test_a_failing_copy_or_fsync_publishes_nothing(backup_dir, scratch, monkeypatch, record, where):
    failed = record(signals.backup_failed)
    if where == "copy":

        def broken(self, path):
            Path(path).write_bytes(HEADER + b"half a copy")
            raise DumpError("SQLite could not back up: disk I/O error")

        monkeypatch.setattr(SqliteBackupConnector, "dump_into", broken)
    else:

        def no_fsync(descriptor):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises((DumpError, OSError)):
        pipeline.backup_database("default")
    assert len(failed.calls) == 1
    assert list(backup_dir.iterdir()) == []
    assert debris(backup_dir, scratch) == []


@pytest.fixture
def small_disk(tmp_path, settings):
    """Backups (and -O files) on a 1 MiB tmpfs; the test database compacted first."""
    with connections["default"].cursor() as cursor:
        cursor.execute("VACUUM")
    location = tmp_path / "small"
    with tmpfs(location, "1m"):
        settings.STORAGES = {
            **settings.STORAGES,
            "dbbackup": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(location / "backups")},
            },
        }
        yield location


@pytest.mark.parametrize("output", [False, True], ids=["storage", "output-path"])
def test_a_full_disk_during_the_copy_fails_cleanly_and_leaves_nothing(small_disk, scratch, output):
    add_known_data()
    target = ["-O", str(small_disk / "site.sqlite3")] if output else []
    call_command("dbbackup", "-d", "default", "--noinput", *target)
    before = {path: path.read_bytes() for path in small_disk.rglob("*") if path.is_file()}
    Note.objects.create(title="big", body="", payload=os.urandom(1_500_000), extra={})
    with pytest.raises(CommandError, match="No space left on device") as info:
        call_command("dbbackup", "-d", "default", "--noinput", *target)
    assert "\n" not in str(info.value)
    assert "SQLite could not back up" in str(info.value)
    assert {path: path.read_bytes() for path in small_disk.rglob("*") if path.is_file()} == before
    assert debris(small_disk, scratch) == []
    with pytest.raises(DumpError, match="No space left on device"):
        pipeline.backup_database("default")


# -- a killed run publishes nothing; the next run sweeps its partial file ----------------------


@pytest.fixture(scope="module")
def blob_database(tmp_path_factory) -> Path:
    """A 20 MB SQLite database (5,000 pages): a copy in 256-page steps can be paused half-way."""
    path = tmp_path_factory.mktemp("blobs") / "blobs.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    connection.executemany(
        "INSERT INTO blobs (data) VALUES (?)", [(os.urandom(100_000),) for _ in range(200)]
    )
    connection.commit()
    connection.close()
    return path


@pytest.mark.parametrize(
    ("point", "output"),
    [
        ("copying", False),
        ("sealing", False),
        ("before-link", False),
        ("copying", True),
        ("sealing", True),
    ],
    ids=["copying", "sealing", "before-link", "output-path-copying", "output-path-sealing"],
)
def test_a_backup_killed_before_its_link_publishes_nothing_and_the_next_run_sweeps_it(
    blob_database, backup_dir, scratch, tmp_path, settings, point, output
):
    blobs = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(blob_database)}
    child = child_settings(DATABASES={**settings.DATABASES, "blobs": blobs})
    folder = tmp_path / "out" if output else backup_dir
    target = ["-O", str(folder / "blobs.sqlite3")] if output else []
    folder.mkdir(exist_ok=True)
    mark = tmp_path / "paused"
    proc = start_command(
        "dbbackup", "-d", "blobs", "--noinput", *target,
        settings=child,
        env={
            "DJANGO_SETTINGS_MODULE": "tests.faults.pausing_backup_settings",
            "DBBACKUP_PAUSE_AT": point,
            "DBBACKUP_PAUSE_MARK": str(mark),
        },
    )  # fmt: skip
    wait_for(lambda: mark.exists() or proc.poll() is not None, 60, f"the backup to reach {point}")
    assert mark.exists(), proc.communicate()
    [partial] = [path for path in folder.iterdir() if ".partial-" in path.name]
    assert sorted(os.listdir(folder)) == [partial.name]  # no -journal, -wal or -shm beside it
    if point == "copying":
        assert 0 < partial.stat().st_size < blob_database.stat().st_size
    kill(proc.pid)
    assert reap(proc) == -signal.SIGKILL
    assert os.listdir(folder) == [partial.name]  # no backup, no sidecar: only the partial file
    assert list(scratch.iterdir()) == []

    result = run_command("dbbackup", "-d", "blobs", "--noinput", *target, settings=child)
    assert result.returncode == 0, result.stderr
    assert not partial.exists()
    assert debris(folder, scratch, blob_database.parent) == []
    [stored] = published(folder)
    assert_checksum_matches(folder / stored)
    assert (folder / stored).read_bytes()[: len(HEADER)] == HEADER
    check = sqlite3.connect(folder / stored)
    assert check.execute("SELECT count(*) FROM blobs").fetchone() == (200,)
    check.close()
