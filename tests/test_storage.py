import hashlib
import io
import os
import stat

import pytest
from django.core.files.storage import InMemoryStorage
from django.test import override_settings

from dbbackup import linux_fs, local_write
from dbbackup import storage as storage_module
from dbbackup.exceptions import BackupNotFoundError, DbbackupConfigurationError, StorageError
from dbbackup.storage import Storage, get_storage
from dbbackup.streams import IteratorReader

IN_MEMORY = {"dbbackup": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}


def failing_stream(good_bytes: int):
    def chunks():
        yield b"x" * good_bytes
        raise OSError("network went away")

    return IteratorReader(chunks())


def test_writes_go_to_the_configured_storage(backup_dir):
    storage = get_storage()
    assert (
        storage.write_file(io.BytesIO(b"data"), "a-h-2026-01-01-000000.dump") == "a-h-2026-01-01-000000.dump"
    )
    assert (backup_dir / "a-h-2026-01-01-000000.dump").read_bytes() == b"data"
    assert str(storage) == "dbbackup-FileSystemStorage"


def test_local_backups_are_private_even_without_a_permissions_option(backup_dir):
    get_storage().write_file(io.BytesIO(b"secret rows"), "x.dump")
    assert stat.S_IMODE((backup_dir / "x.dump").stat().st_mode) == 0o600


def test_failed_local_write_leaves_nothing_behind(backup_dir):
    storage = get_storage()
    with pytest.raises(OSError, match="network went away"):
        storage.write_file(failing_stream(3_000_000), "default-h-2026-01-01-000000.dump")
    assert list(backup_dir.iterdir()) == []


@override_settings(STORAGES=IN_MEMORY)
def test_failed_remote_style_write_leaves_nothing_behind():
    storage = get_storage()
    assert isinstance(storage.storage, InMemoryStorage)
    with pytest.raises(OSError, match="network went away"):
        storage.write_file(failing_stream(1000), "default-h-2026-01-01-000000.dump")
    assert storage.list_directory() == []


def test_an_existing_backup_is_never_overwritten(backup_dir):
    storage = get_storage()
    storage.write_file(io.BytesIO(b"first"), "same.dump")
    with pytest.raises(StorageError, match="already exists"):
        storage.write_file(io.BytesIO(b"second"), "same.dump")
    assert (backup_dir / "same.dump").read_bytes() == b"first"


def test_default_location_without_a_dbbackup_storage(settings, tmp_path):
    settings.STORAGES = {"default": settings.STORAGES["default"]}
    settings.BASE_DIR = tmp_path
    storage = get_storage()
    storage.write_file(io.BytesIO(b"x"), "x.dump")
    assert (tmp_path / "backups" / "x.dump").exists()
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "backups" / "x.dump").stat().st_mode) == 0o600


def test_option_names_are_lower_cased_like_django_dbbackup(settings, tmp_path):
    settings.STORAGES = {
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"LOCATION": str(tmp_path / "upper")},
        }
    }
    get_storage().write_file(io.BytesIO(b"x"), "x.dump")
    assert (tmp_path / "upper" / "x.dump").exists()


def test_a_bad_backend_is_a_configuration_error(settings):
    settings.STORAGES = {"dbbackup": {"BACKEND": "no.such.Storage"}}
    with pytest.raises(DbbackupConfigurationError, match="no.such.Storage"):
        get_storage()
    settings.STORAGES = {
        "dbbackup": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"x": 1}}
    }
    with pytest.raises(DbbackupConfigurationError, match="could not be created"):
        get_storage()


def _store(storage: Storage, *names: str) -> None:
    for name in names:
        storage.write_file(io.BytesIO(name.encode()), name)


@pytest.fixture(params=["filesystem", "memory"])
def any_storage(request, backup_dir, settings):
    if request.param == "memory":
        settings.STORAGES = {**settings.STORAGES, **IN_MEMORY}
    return get_storage()


def test_listing_and_latest_match_aliases_exactly(any_storage):
    _store(
        any_storage,
        "default-h-2026-01-01-000000.sqlite3",
        "default-h-2026-01-03-000000.sqlite3",
        "default2-h-2026-01-05-000000.sqlite3",
        "default-h-2026-01-03-000000.sqlite3.metadata",
        "h-2026-01-04-000000.tar",
        "README.txt",
    )
    assert any_storage.list_backups(content_type="db", database="default") == [
        "default-h-2026-01-01-000000.sqlite3",
        "default-h-2026-01-03-000000.sqlite3",
    ]
    assert (
        any_storage.get_latest_backup(content_type="db", database="default")
        == "default-h-2026-01-03-000000.sqlite3"
    )
    assert (
        any_storage.get_older_backup(content_type="db", database="default")
        == "default-h-2026-01-01-000000.sqlite3"
    )
    assert any_storage.list_backups(content_type="media") == ["h-2026-01-04-000000.tar"]
    assert len(any_storage.list_backups()) == 4


def test_compression_and_encryption_filters(any_storage):
    _store(
        any_storage,
        "d-h-2026-01-01-000000.dump",
        "d-h-2026-01-02-000000.dump.gz",
        "d-h-2026-01-03-000000.dump.gz.gpg",
    )
    assert any_storage.list_backups(compressed=True) == [
        "d-h-2026-01-02-000000.dump.gz",
        "d-h-2026-01-03-000000.dump.gz.gpg",
    ]
    assert any_storage.list_backups(compressed=False) == ["d-h-2026-01-01-000000.dump"]
    assert any_storage.list_backups(encrypted=True) == ["d-h-2026-01-03-000000.dump.gz.gpg"]
    assert any_storage.list_backups(encrypted=False, compressed=True) == ["d-h-2026-01-02-000000.dump.gz"]


def test_no_backup_is_a_clear_error(any_storage):
    with pytest.raises(
        BackupNotFoundError, match="There is no backup in dbbackup-.* matching database='default'"
    ):
        any_storage.get_latest_backup(database="default", content_type="db")


def test_unknown_content_type_is_refused(any_storage):
    with pytest.raises(ValueError, match="content_type"):
        any_storage.list_backups(content_type="logs")


def test_clean_keeps_newest_per_alias_and_deletes_sidecars(any_storage, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 2
    old = [f"default-h-2026-01-0{day}-000000.sqlite3" for day in range(1, 6)]
    _store(any_storage, *old, *(name + ".metadata" for name in old), "default2-h-2026-01-01-000000.sqlite3")
    deleted = any_storage.clean_old_backups(content_type="db", database="default")
    assert deleted == old[:3]
    remaining = sorted(any_storage.list_directory())
    assert remaining == sorted(
        [*old[3:], *(name + ".metadata" for name in old[3:]), "default2-h-2026-01-01-000000.sqlite3"]
    )


def test_clean_keep_filter_pins_files(any_storage, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    settings.DBBACKUP_CLEANUP_KEEP_FILTER = lambda name: "01-01" in name
    _store(any_storage, *(f"default-h-2026-01-0{day}-000000.dump" for day in range(1, 4)))
    assert any_storage.clean_old_backups(content_type="db", database="default") == [
        "default-h-2026-01-02-000000.dump"
    ]


def test_folder_templates_are_listed_through_sub_folders(any_storage, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = "{databasename}/{servername}-{datetime}.{extension}"
    _store(any_storage, "default/h-2026-01-01-000000.dump", "other/h-2026-01-02-000000.dump")
    assert any_storage.list_backups(content_type="db", database="default") == [
        "default/h-2026-01-01-000000.dump"
    ]


def test_read_file_of_a_missing_name_is_backup_not_found(any_storage):
    with pytest.raises(BackupNotFoundError, match="no file 'nope.dump'"):
        any_storage.read_file("nope.dump")


def test_module_keeps_django_dbbackup_names():
    assert storage_module.StorageError is StorageError
    assert callable(storage_module.get_storage_class)


def test_names_escaping_the_storage_are_refused(backup_dir):
    storage = get_storage()
    with pytest.raises(StorageError, match="not a valid name"):
        storage.write_file(io.BytesIO(b"x"), "../escaped.dump")
    with pytest.raises(StorageError, match="not a valid name"):
        storage.exists("../../etc/passwd")
    assert not (backup_dir.parent / "escaped.dump").exists()


def test_a_storage_entry_with_only_options_uses_the_default_backend(settings, tmp_path):
    settings.STORAGES = {"dbbackup": {"OPTIONS": {"location": str(tmp_path / "only-options")}}}
    get_storage().write_file(io.BytesIO(b"x"), "x.dump")
    assert (tmp_path / "only-options" / "x.dump").exists()


def test_every_new_folder_is_private(backup_dir):
    get_storage().write_file(io.BytesIO(b"x"), "web1/2026/x.dump")
    for folder in (backup_dir, backup_dir / "web1", backup_dir / "web1" / "2026"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# -- the hidden partial file of a local write (dbbackup.local_write) ---------------------------


def test_a_local_write_syncs_the_folder_after_the_link(backup_dir, monkeypatch):
    synced = []
    monkeypatch.setattr(linux_fs, "fsync_directory", synced.append)
    get_storage().write_file(io.BytesIO(b"data"), "x.dump")
    assert synced == [backup_dir]


def test_a_partial_filled_by_path_is_hashed_synced_and_linked(backup_dir, monkeypatch):
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: flushed.append(fd) or real_fsync(fd))
    data = os.urandom(9 * 1024 * 1024 + 7)  # more than two SEAL_CHUNKs, not a multiple
    counted = []
    with get_storage().local_partial("x.sqlite3") as partial:
        assert stat.S_IMODE(partial.path.stat().st_mode) == 0o600
        assert partial.path.parent == backup_dir
        assert partial.path.name.startswith(".x.sqlite3.partial-")
        with pytest.raises(RuntimeError, match="before the file was written"):
            partial.publish()
        digest = partial.fill(lambda path: open(path, "wb").write(data), counted.append)  # noqa: SIM115
        assert flushed
        assert partial.publish() == "x.sqlite3"
    assert digest == local_write.FileDigest(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert sum(counted) == len(data)
    assert os.listdir(backup_dir) == ["x.sqlite3"]
    assert (backup_dir / "x.sqlite3").read_bytes() == data


def test_a_failing_writer_leaves_nothing(backup_dir):
    def writer(path):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), get_storage().local_partial("x.sqlite3") as partial:
        partial.fill(writer)
    assert os.listdir(backup_dir) == []


def test_a_name_taken_during_the_write_moves_on_or_is_refused(backup_dir):
    storage = get_storage()
    with storage.local_partial("a.dump", on_conflict=lambda name: "b.dump") as partial:
        partial.write_stream(io.BytesIO(b"mine"))
        (backup_dir / "a.dump").write_bytes(b"theirs")
        assert partial.publish() == "b.dump"
    with storage.local_partial("c.dump") as partial:
        partial.write_stream(io.BytesIO(b"mine"))
        (backup_dir / "c.dump").write_bytes(b"theirs")
        with pytest.raises(StorageError, match="already exists"):
            partial.publish()
    assert {name: (backup_dir / name).read_bytes() for name in os.listdir(backup_dir)} == {
        "a.dump": b"theirs",
        "b.dump": b"mine",
        "c.dump": b"theirs",
    }


@override_settings(STORAGES=IN_MEMORY)
def test_only_a_local_storage_has_partial_files():
    storage = get_storage()
    assert not storage.is_local()
    with pytest.raises(StorageError, match="not a local folder"):
        storage.local_partial("x.sqlite3")
