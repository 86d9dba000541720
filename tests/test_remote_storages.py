"""Backups through django-storages to real servers: S3 over HTTP (moto) and SFTP (OpenSSH)."""

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from dbbackup import s3
from dbbackup.storage import get_storage
from tests import remote_servers
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def s3_server():
    with remote_servers.s3_server() as server:
        yield server


@pytest.fixture
def s3_storages(s3_server, settings, request):
    client = s3_server.client()
    bucket = f"backups-{request.node.name.lower().replace('_', '-')[:40]}"
    media_bucket = bucket[:50] + "-media"
    for name in (bucket, media_bucket):
        client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_server.storage_options(bucket),
        },
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_server.storage_options(media_bucket),
        },
    }
    return client, bucket


def run(name, *args):
    err = io.StringIO()
    call_command(name, *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def test_s3_backup_list_restore_and_clean(s3_storages, settings):
    client, bucket = s3_storages
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    storage = get_storage()
    assert storage.name == "S3Storage"
    [first] = storage.list_backups(database="default")
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {first, first + ".metadata"}
    out = io.StringIO()
    call_command("listbackups", stdout=out)
    assert first in out.getvalue()
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")  # the latest
    assert snapshot() == before
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput", "-i", first)  # by name
    assert snapshot() == before

    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage.write_file(io.BytesIO(b"old"), "default-testhost-2020-01-01-000000.sqlite3.gz")
    run("dbbackup", "-d", "default", "-z", "--clean")
    remaining = storage.list_backups(database="default")
    assert len(remaining) == 1
    assert remaining[0] != first


def test_s3_media_backup_and_restore(s3_storages):
    default_storage.save("photos/ünïcode photo.jpg", ContentFile(b"\xff\xd8\xff jpeg"))
    default_storage.save("docs/empty.txt", ContentFile(b""))
    run("mediabackup", "--compression", "zstd")
    default_storage.delete("photos/ünïcode photo.jpg")
    run("mediarestore", "--noinput")
    with default_storage.open("photos/ünïcode photo.jpg") as handle:
        assert handle.read() == b"\xff\xd8\xff jpeg"
    assert default_storage.exists("docs/empty.txt")


def _keys(client, bucket) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_output_path_s3_uri_round_trips_through_the_backup_storage(s3_storages):
    client, bucket = s3_storages
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-O", f"s3://{bucket}/custom/name.sqlite3")
    assert _keys(client, bucket) == {"custom/name.sqlite3", "custom/name.sqlite3.metadata"}
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput", "-i", "custom/name.sqlite3")
    assert snapshot() == before
    # an existing object is never overwritten
    with pytest.raises(CommandError, match="already exists"):
        call_command("dbbackup", "-d", "default", "-O", f"s3://{bucket}/custom/name.sqlite3")
    assert _keys(client, bucket) == {"custom/name.sqlite3", "custom/name.sqlite3.metadata"}


def test_output_path_s3_uri_for_media_keeps_the_exact_key(s3_storages):
    client, bucket = s3_storages
    default_storage.save("photos/a.jpg", ContentFile(b"jpeg"))
    run("mediabackup", "-z", "-O", f"s3://{bucket}/media/site.tar.gz")
    assert _keys(client, bucket) == {"media/site.tar.gz", "media/site.tar.gz.metadata"}
    default_storage.delete("photos/a.jpg")
    run("mediarestore", "--noinput", "-i", "media/site.tar.gz")
    with default_storage.open("photos/a.jpg") as handle:
        assert handle.read() == b"jpeg"


def test_output_path_s3_uri_honours_the_storage_location(s3_server, s3_storages, settings):
    client, bucket = s3_storages
    settings.STORAGES["dbbackup"]["OPTIONS"] = s3_server.storage_options(bucket, location="backups")
    run("dbbackup", "-d", "default", "-O", f"s3://{bucket}/backups/x.sqlite3")
    assert _keys(client, bucket) == {"backups/x.sqlite3", "backups/x.sqlite3.metadata"}
    assert "x.sqlite3" in get_storage().list_directory()
    with pytest.raises(CommandError, match="under the backup storage's location"):
        call_command("dbbackup", "-d", "default", "-O", f"s3://{bucket}/elsewhere/x.sqlite3")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://another-bucket/x.sqlite3", "is not the backup storage's bucket"),
        ("s3:///x.sqlite3", "is not the backup storage's bucket"),
        ("s3://{bucket}/", "names no object"),
        ("s3://{bucket}/dir/", "names no object"),
        ("s3://{bucket}/x.sqlite3.metadata", "kept for sidecars"),
    ],
)
def test_output_path_s3_uri_outside_the_backup_bucket_is_refused(s3_storages, uri, message):
    client, bucket = s3_storages
    for command in ("dbbackup", "mediabackup"):
        args = ["-d", "default"] if command == "dbbackup" else []
        with pytest.raises(CommandError, match=message) as caught:
            call_command(command, *args, "-O", uri.format(bucket=bucket))
        assert "\n" not in str(caught.value)
    assert _keys(client, bucket) == set()


def test_output_path_s3_uri_needs_an_s3_backup_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    for command, args in (("dbbackup", ["-d", "default"]), ("mediabackup", [])):
        with pytest.raises(CommandError, match="must then be S3Storage"):
            call_command(command, *args, "-O", "s3://bucket/x.bin")
    assert list(tmp_path.rglob("*")) == []
    assert not Path("s3:").exists()


def test_a_failed_s3_upload_leaves_no_object_and_no_pending_upload(s3_storages):
    client, bucket = s3_storages

    def failing():
        yield b"x" * (s3.FIRST_PART_SIZE + 10)
        raise OSError("the dump tool died")

    from dbbackup.streams import IteratorReader

    with pytest.raises(OSError, match="the dump tool died"):
        get_storage().write_file(IteratorReader(failing()), "default-testhost-2026-01-01-000000.sqlite3")
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_part_sizes_fit_five_terabytes_in_ten_thousand_parts():
    assert s3.largest_backup() > 5 * 10**12
    assert s3.part_size(s3.MAX_PARTS) < 5 * 1024**3  # S3's largest part
    assert s3.part_size(1) >= 5 * 1024**2  # S3's smallest (but last) part


def _watch_directory(directory: Path, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        total = 0
        for path in directory.rglob("*"):
            with_size = path.stat().st_size if path.is_file() else 0
            total += with_size
        peak[0] = max(peak[0], total)
        time.sleep(0.05)


def _run_measured(command: str, env: dict, tmpdir: Path) -> int:
    """Run a management command in a fresh Python; return its peak RSS in bytes.

    The peak is VmHWM of the child's own address space: ``ru_maxrss`` would not do, as Linux
    carries the parent's high-water mark over fork and exec.
    """
    code = (
        "import django, re\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        f"call_command(*{command.split()!r}, '-q')\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024)\n"
    )
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_watch_directory, args=(tmpdir, stop, peak))
    watcher.start()
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert peak[0] < 16 * 1024 * 1024, f"{peak[0]} bytes of temporary files"
    return int(result.stdout.strip().splitlines()[-1])


def test_a_200_mb_backup_streams_to_s3_in_parts_with_bounded_memory(s3_storages, tmp_path):
    client, bucket = s3_storages
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.remote_settings",
        "PYTHONPATH": str(ROOT),
        "S3_ENDPOINT": s3_storages_endpoint(client),
        "S3_BUCKET": bucket,
        "TMPDIR": str(tmpdir),
        "DBBACKUP_TEST_DIR": str(tmp_path / "scratch"),
        "GENERATED_SIZE": str(200 * 1024 * 1024),
        "GENERATED_RESULT": str(tmp_path / "result"),
    }
    backup_rss = _run_measured("dbbackup -d default -o big.bin", env, tmpdir)
    head = client.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 200 * 1024 * 1024
    parts, stored = 0, 0
    while stored < 200 * 1024 * 1024:
        parts += 1
        stored += s3.part_size(parts)
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart upload, parts growing from 8 MiB
    restore_rss = _run_measured("dbrestore -d default -i big.bin --noinput", env, tmpdir)
    assert (tmp_path / "result").read_text() == (tmp_path / "result.dumped").read_text()
    assert backup_rss < 150 * 1024 * 1024, backup_rss
    assert restore_rss < 150 * 1024 * 1024, restore_rss


def s3_storages_endpoint(client) -> str:
    return client.meta.endpoint_url


# -- SFTP -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory):
    with remote_servers.sftp_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def test_sftp_backup_list_restore_and_clean(sftp_server, settings, tmp_path):
    root = tmp_path / "sftp-root"
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "storages.backends.sftpstorage.SFTPStorage",
            "OPTIONS": sftp_server.storage_options(root),
        },
    }
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    storage = get_storage()
    assert storage.name == "SFTPStorage"
    [name] = storage.list_backups(database="default")
    assert (root / name).exists()  # written over SFTP into the server's directory
    out = io.StringIO()
    call_command("listbackups", stdout=out)
    assert name in out.getvalue()
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage.write_file(io.BytesIO(b"old"), "default-testhost-2020-01-01-000000.sqlite3.gz")
    run("dbbackup", "-d", "default", "-z", "-c")
    assert len(storage.list_backups(database="default")) == 1
    assert not (root / "default-testhost-2020-01-01-000000.sqlite3.gz").exists()
