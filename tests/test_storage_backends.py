"""Every Django storage backend: the write strategies of :mod:`dbbackup.upload`.

FTP runs against a real server (pyftpdlib) through django-storages' ``FTPStorage``; backends
that cannot run here (Azure, Dropbox, Google Cloud) get a storage whose ``_save`` starts as
theirs does (rewind, reopen, ask the size).
"""

import io
import os
import stat
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from dbbackup import names, upload
from dbbackup.storage import get_storage
from dbbackup.streams import IteratorReader
from tests import remote_servers
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

LIKE = ["AzureLikeStorage", "DropboxLikeStorage", "GoogleCloudLikeStorage"]


def run(name, *args):
    err = io.StringIO()
    call_command(name, *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def failing_stream(size=100_000):
    def chunks():
        yield b"x" * size
        raise OSError("the dump tool died")

    return IteratorReader(chunks())


@pytest.fixture(scope="module")
def ftp(tmp_path_factory):
    with remote_servers.ftp_server(tmp_path_factory.mktemp("ftp")) as server:
        yield server


@pytest.fixture
def ftp_storages(ftp, settings, request):
    folder = request.node.name.replace("[", "-").replace("]", "")
    for sub in ("backups", "media"):
        (ftp.root / folder / sub).mkdir(parents=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.ftp.FTPStorage",
            "OPTIONS": ftp.storage_options(f"{folder}/backups/"),
        },
        "default": {
            "BACKEND": "storages.backends.ftp.FTPStorage",
            "OPTIONS": ftp.storage_options(f"{folder}/media/"),
        },
    }
    return ftp.root / folder / "backups", ftp.root / folder / "media"


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.DBBACKUP_TMP_DIR = str(tmp_path / "spool")
    os.mkdir(settings.DBBACKUP_TMP_DIR)
    return Path(settings.DBBACKUP_TMP_DIR)


def test_ftp_backup_restore_round_trip(ftp_storages, spool_dir):
    backups, _ = ftp_storages
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    [backup] = get_storage().list_backups(database="default")
    assert sorted(path.name for path in backups.iterdir()) == [backup, backup + names.METADATA_SUFFIX]
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before
    assert list(spool_dir.iterdir()) == []


def test_ftp_reads_are_streamed_not_loaded_into_memory(ftp_storages, monkeypatch):
    from storages.backends.ftp import FTPStorage

    from dbbackup.exceptions import BackupNotFoundError

    backups, _ = ftp_storages
    (backups / "sub").mkdir()
    (backups / "sub" / "big.psql").write_bytes(b"0123456789" * 300_000)

    def whole_file_in_memory(self, name):
        raise AssertionError("FTPStorage._read loads the whole file into memory")

    monkeypatch.setattr(FTPStorage, "_read", whole_file_in_memory)
    storage = get_storage()
    with storage.read_file("sub/big.psql") as handle:
        assert handle.read(10) == b"0123456789"
        assert len(handle.read()) == 3_000_000 - 10
    assert storage.exists("sub/big.psql")  # the storage's own connection is still usable
    with pytest.raises(BackupNotFoundError):
        storage.read_file("missing.psql")


def test_ftp_media_backup_and_restore(ftp_storages, spool_dir):
    backups, media = ftp_storages
    default_storage.save("photos/photo.jpg", ContentFile(b"\xff\xd8\xff jpeg"))
    default_storage.save("docs/empty.txt", ContentFile(b""))
    run("mediabackup", "-z")
    assert [path.name.endswith(".tar.gz") for path in backups.iterdir()].count(True) == 1
    (media / "photos" / "photo.jpg").unlink()
    run("mediarestore", "--noinput")
    assert (media / "photos" / "photo.jpg").read_bytes() == b"\xff\xd8\xff jpeg"
    assert (media / "docs" / "empty.txt").read_bytes() == b""


def test_ftp_is_spooled_and_published_by_rename(ftp_storages, spool_dir, monkeypatch):
    backups, _ = ftp_storages
    storage = get_storage()
    assert upload.strategy(storage.storage) == "spool"
    renamed = []
    real = upload.RENAMERS["storages.backends.ftp.FTPStorage"]

    def watching(backend, old, new):
        assert Path(old).name.startswith(".")
        assert names.PARTIAL_MARKER in old
        assert [path.name for path in backups.iterdir()] == [Path(old).name]  # not yet published
        renamed.append((old, new))
        real(backend, old, new)

    monkeypatch.setitem(upload.RENAMERS, "storages.backends.ftp.FTPStorage", watching)
    name = storage.write_file(io.BytesIO(b"payload" * 1000), "default-2026-01-01-000000.psql")
    assert renamed
    assert renamed[0][1] == name
    assert (backups / name).read_bytes() == b"payload" * 1000


def test_a_failed_ftp_write_leaves_nothing(ftp_storages, spool_dir, monkeypatch):
    backups, _ = ftp_storages
    storage = get_storage()
    with pytest.raises(OSError, match="the dump tool died"):
        storage.write_file(failing_stream(), "default-2026-01-01-000000.psql")
    assert list(backups.iterdir()) == []

    def refuse(backend, old, new):
        raise OSError("550 rename refused")

    monkeypatch.setitem(upload.RENAMERS, "storages.backends.ftp.FTPStorage", refuse)
    with pytest.raises(Exception, match="rename refused"):
        storage.write_file(io.BytesIO(b"complete"), "default-2026-01-01-000000.psql")
    assert list(backups.iterdir()) == []
    assert list(spool_dir.iterdir()) == []


@pytest.fixture(params=LIKE)
def like_storage(request, settings, spool_dir):
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {"BACKEND": f"tests.storages.{request.param}", "OPTIONS": {}},
    }
    return get_storage()


def test_a_failed_ftp_publish_removes_the_partial_even_when_listings_hide_dot_files(
    ftp_storages, monkeypatch
):
    from storages.backends.ftp import FTPStorage

    backups, _ = ftp_storages
    real_exists = FTPStorage.exists
    # vsftpd, ProFTPD and others answer NLST without hidden files
    monkeypatch.setattr(
        FTPStorage,
        "exists",
        lambda self, name: not Path(name).name.startswith(".") and real_exists(self, name),
    )

    def refuse(backend, old, new):
        assert [path.name for path in backups.iterdir()] == [Path(old).name]
        raise OSError("550 rename refused")

    monkeypatch.setitem(upload.RENAMERS, "storages.backends.ftp.FTPStorage", refuse)
    with pytest.raises(Exception, match="rename refused"):
        get_storage().write_file(io.BytesIO(b"complete"), "default-2026-01-01-000000.psql")
    assert list(backups.iterdir()) == []


def test_backends_that_seek_reopen_or_size_get_a_private_spool(like_storage, spool_dir):
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    backend = like_storage.storage
    [backup] = like_storage.list_backups(database="default")
    assert set(backend.objects) == {backup, backup + names.METADATA_SUFFIX}
    # the backend got a real file, readable by its owner only, already unlinked
    assert backend.seen
    assert set(backend.seen) == {(stat.S_IRUSR | stat.S_IWUSR, 0)}
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before
    assert list(spool_dir.iterdir()) == []


def test_a_failed_dump_never_reaches_a_spooled_backend(like_storage, spool_dir):
    with pytest.raises(OSError, match="the dump tool died"):
        like_storage.write_file(failing_stream(), "default-2026-01-01-000000.psql")
    assert like_storage.storage.objects == {}
    assert like_storage.storage.seen == []
    assert list(spool_dir.iterdir()) == []


def test_a_failed_upload_is_deleted(like_storage, monkeypatch):
    backend = like_storage.storage
    real_save = type(backend)._save

    def save_then_fail(self, name, content):
        real_save(self, name, content)
        raise OSError("connection reset while committing")

    monkeypatch.setattr(type(backend), "_save", save_then_fail)
    monkeypatch.setattr(upload, "_save_owner", lambda storage: f"tests.storages.{type(storage).__name__}")
    with pytest.raises(OSError, match="connection reset"):
        like_storage.write_file(io.BytesIO(b"data"), "default-2026-01-01-000000.psql")
    assert backend.objects == {}


def test_media_backup_and_restore_through_a_spooled_media_storage(like_storage, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.storages.AzureLikeStorage", "OPTIONS": {}},
    }
    settings.MEDIA_ROOT = str(tmp_path / "unused-media-root")
    default_storage.save("a/b.txt", ContentFile(b"hello"))
    run("mediabackup")
    default_storage.delete("a/b.txt")
    run("mediarestore", "--noinput")
    assert default_storage.open("a/b.txt").read() == b"hello"


def test_a_full_spool_disk_is_a_clear_error(like_storage, monkeypatch):
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(upload.tempfile, "TemporaryFile", lambda dir: Full())
    with pytest.raises(Exception, match="DBBACKUP_TMP_DIR .* ran out of space"):
        like_storage.write_file(io.BytesIO(b"data"), "default-2026-01-01-000000.psql")
    assert like_storage.storage.objects == {}


def test_known_sequential_backends_are_streamed(settings):
    from django.core.files.storage import InMemoryStorage

    from tests.storages import AzureLikeStorage

    class Custom(InMemoryStorage):
        def _save(self, name, content):
            return super()._save(name, content)

    assert upload.strategy(InMemoryStorage()) == "stream"
    assert upload.strategy(AzureLikeStorage()) == "spool"
    assert upload.strategy(Custom()) == "spool"  # its own _save may seek: spooled to be safe
    # the media storage is default_storage, a LazyObject: judged by the storage it wraps
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "tests.storages.AzureLikeStorage"}}
    assert upload.strategy(default_storage) == "spool"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": "/x"}},
    }
    assert upload.strategy(default_storage) == "stream"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    with remote_servers.azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def azure_storages(azurite, settings, request, spool_dir):
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = "b" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    for name in (container, container + "-m"):
        client.create_container(name)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.azure_storage.AzureStorage",
            "OPTIONS": azurite.storage_options(container),
        },
        "default": {
            "BACKEND": "storages.backends.azure_storage.AzureStorage",
            "OPTIONS": azurite.storage_options(container + "-m"),
        },
    }
    return client.get_container_client(container)


def blob_names(container):
    return sorted(blob.name for blob in container.list_blobs())


def test_azure_backup_restore_round_trip(azure_storages, spool_dir):
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    [backup] = get_storage().list_backups(database="default")
    assert blob_names(azure_storages) == [backup, backup + names.METADATA_SUFFIX]
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before
    assert list(spool_dir.iterdir()) == []


def test_azure_media_backup_and_restore(azure_storages):
    default_storage.save("photos/ünïcode photo.jpg", ContentFile(b"\xff\xd8\xff jpeg"))
    default_storage.save("docs/empty.txt", ContentFile(b""))
    run("mediabackup", "-z")
    default_storage.delete("photos/ünïcode photo.jpg")
    run("mediarestore", "--noinput")
    with default_storage.open("photos/ünïcode photo.jpg") as handle:
        assert handle.read() == b"\xff\xd8\xff jpeg"
    assert default_storage.exists("docs/empty.txt")


def test_a_failed_azure_write_leaves_no_blob(azure_storages, spool_dir):
    from dbbackup import s3

    with pytest.raises(OSError, match="the dump tool died"):  # after a first block was staged
        get_storage().write_file(failing_stream(s3.FIRST_PART_SIZE + 10), "default-2026-01-01-000000.psql")
    assert blob_names(azure_storages) == []
    assert list(spool_dir.iterdir()) == []


def test_azure_backups_are_streamed_as_blocks_without_a_spool(azure_storages, monkeypatch):
    from dbbackup import s3

    def no_spool(stream):
        raise AssertionError("spooled")

    monkeypatch.setattr(upload, "spooled", no_spool)
    data = os.urandom(1024) * (s3.FIRST_PART_SIZE // 1024 + 300)  # two blocks
    name = get_storage().write_file(io.BytesIO(data), "default-2026-01-01-000000.psql.gz")
    blob = azure_storages.get_blob_client(name)
    assert blob.download_blob(decompress=False).readall() == data
    assert len(blob.get_block_list()[0]) == 2
    assert blob.get_blob_properties().content_settings.content_encoding is None
    with get_storage().read_file(name) as handle:
        assert handle.read() == data


def test_an_azure_upload_never_overwrites(azure_storages):
    from dbbackup import azure
    from dbbackup.exceptions import StorageError

    storage = get_storage().storage
    azure.upload(storage, "taken.psql", io.BytesIO(b"first"))
    with pytest.raises(StorageError, match="already exists"):
        azure.upload(storage, "taken.psql", io.BytesIO(b"second"))
    assert azure_storages.get_blob_client("taken.psql").download_blob().readall() == b"first"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with remote_servers.gcs_server(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def gcs_storages(gcs, settings, request, monkeypatch, spool_dir):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    bucket = "b" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    client = gcs.client()
    for name in (bucket, bucket + "-m"):
        client.create_bucket(name)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": gcs.storage_options(bucket),
        },
        "default": {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": gcs.storage_options(bucket + "-m"),
        },
    }
    return client.bucket(bucket)


def test_gcs_backup_restore_round_trip(gcs_storages, spool_dir):
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    [backup] = get_storage().list_backups(database="default")
    assert sorted(blob.name for blob in gcs_storages.list_blobs()) == [backup, backup + names.METADATA_SUFFIX]
    assert gcs_storages.get_blob(backup).content_encoding is None  # never served un-gzipped
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before
    assert list(spool_dir.iterdir()) == []  # streamed, not spooled


def test_gcs_media_backup_and_restore(gcs_storages):
    default_storage.save("photos/ünïcode photo.jpg", ContentFile(b"\xff\xd8\xff jpeg"))
    default_storage.save("docs/empty.txt", ContentFile(b""))
    run("mediabackup", "-z")
    default_storage.delete("photos/ünïcode photo.jpg")
    run("mediarestore", "--noinput")
    with default_storage.open("photos/ünïcode photo.jpg") as handle:
        assert handle.read() == b"\xff\xd8\xff jpeg"
    assert default_storage.exists("docs/empty.txt")


def test_a_failed_gcs_upload_leaves_no_object(gcs_storages):
    from dbbackup import gcs

    with pytest.raises(OSError, match="the dump tool died"):  # after a first chunk went up
        get_storage().write_file(failing_stream(gcs.CHUNK_SIZE + 10), "default-2026-01-01-000000.psql")
    assert list(gcs_storages.list_blobs()) == []


@pytest.fixture(scope="module")
def sftp(tmp_path_factory):
    with remote_servers.sftp_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def sftp_backups(sftp, settings, tmp_path):
    root = tmp_path / "sftp-root"
    root.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.sftpstorage.SFTPStorage",
            "OPTIONS": sftp.storage_options(root),
        },
    }
    return root


def test_sftp_is_streamed_to_a_partial_name_then_renamed(sftp_backups, monkeypatch):
    def no_spool(stream):
        raise AssertionError("spooled")

    monkeypatch.setattr(upload, "spooled", no_spool)
    storage = get_storage()
    assert upload.strategy(storage.storage) == "stream"
    seen = []
    real = upload.RENAMERS["storages.backends.sftpstorage.SFTPStorage"]

    def watching(backend, old, new):
        seen.append(sorted(path.name for path in sftp_backups.iterdir()))
        real(backend, old, new)

    monkeypatch.setitem(upload.RENAMERS, "storages.backends.sftpstorage.SFTPStorage", watching)
    name = storage.write_file(io.BytesIO(b"dump"), "default-2026-01-01-000000.psql")
    [before_rename] = seen
    assert len(before_rename) == 1
    assert before_rename[0].startswith(".default-2026-01-01-000000.psql" + names.PARTIAL_MARKER)
    assert sorted(path.name for path in sftp_backups.iterdir()) == [name]


def test_a_failed_sftp_write_leaves_nothing(sftp_backups):
    with pytest.raises(OSError, match="the dump tool died"):
        get_storage().write_file(failing_stream(), "default-2026-01-01-000000.psql")
    assert list(sftp_backups.iterdir()) == []


def test_the_sftp_rename_never_replaces_a_backup(sftp_backups):
    from dbbackup.exceptions import StorageError

    (sftp_backups / "taken.psql").write_bytes(b"first")
    with pytest.raises(StorageError, match="Could not rename"):
        upload.store(get_storage().storage, "taken.psql", io.BytesIO(b"second"))
    assert [path.name for path in sftp_backups.iterdir()] == ["taken.psql"]
    assert (sftp_backups / "taken.psql").read_bytes() == b"first"
