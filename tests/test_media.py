"""mediabackup and mediarestore: streamed tar archives through real storages."""

import hashlib
import io
import json
import re
import tarfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import signals
from dbbackup.management.commands import mediabackup as mediabackup_command
from dbbackup.management.commands import mediarestore as mediarestore_command
from dbbackup.media_source import LocalSource
from dbbackup.storage import Storage, get_storage

pytestmark = pytest.mark.django_db
BIG = 50 * 1024 * 1024


@pytest.fixture
def media(settings, tmp_path, backup_dir):
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.MEDIA_ROOT = str(root)
    return root


def fill(root, big=False):
    files = {
        "top.txt": b"top level",
        "nested/deeper/still/leaf.bin": bytes(range(256)) * 40,
        "ünïcødé/文件 with spaces.txt": "ünïcødé ✓".encode(),
        "empty.dat": b"",
        "media/inside-a-media-folder.txt": b"a folder called media is fine",
    }
    if big:
        files["big/fifty.bin"] = hashlib.sha256(b"seed").digest() * (BIG // 32)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(name, *args):
    err = io.StringIO()
    call_command(name, *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


@pytest.mark.parametrize(
    "args",
    [[], ["-z"], ["--compression", "zstd"], ["-e"], ["-z", "-e"]],
    ids=["plain", "gzip", "zstd", "gpg", "gzip-gpg"],
)
def test_round_trip_gives_identical_bytes(media, args, gpg_settings):
    files = fill(media, big=True)
    run("mediabackup", *args)
    for path in media.rglob("*"):
        if path.is_file():
            path.unlink()
    run("mediarestore", "--noinput")
    assert tree(media) == files


def test_archive_layout_is_django_dbbackup_s(media, backup_dir):
    files = fill(media)
    run("mediabackup", "-s", "web1")
    [name] = get_storage().list_backups(content_type="media")
    assert name.startswith("web1-")
    assert name.endswith(".tar")
    with tarfile.open(backup_dir / name) as archive:
        members = archive.getmembers()
    assert sorted(m.name for m in members) == sorted(files)
    assert all(m.isfile() and m.mode == 0o644 and m.mtime == 0 for m in members)
    metadata = json.loads((backup_dir / (name + ".metadata")).read_text())
    assert metadata["content_type"] == "media"
    assert metadata["dbbackup"]["size"] == (backup_dir / name).stat().st_size


def test_a_django_dbbackup_style_tar_gz_restores(media, backup_dir):
    # what django-dbbackup's mediabackup -z writes: tarfile "w:gz", gzip level 9, no sidecar
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"a/b.txt": b"from django-dbbackup", "c.bin": b"\x00\xff"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    get_storage().write_file(io.BytesIO(buffer.getvalue()), "host-2026-01-01-000000.tar.gz")
    run("mediarestore", "--noinput", "-z")
    assert tree(media) == {"a/b.txt": b"from django-dbbackup", "c.bin": b"\x00\xff"}


def test_existing_files_are_kept_and_reported_unless_replace(media):
    fill(media)
    run("mediabackup")
    (media / "top.txt").write_bytes(b"changed since the backup")
    err = run("mediarestore", "--noinput")
    assert (media / "top.txt").read_bytes() == b"changed since the backup"
    assert "Kept existing top.txt (use -r/--replace to overwrite)" in err
    run("mediarestore", "--noinput", "-r")
    assert (media / "top.txt").read_bytes() == b"top level"
    assert sorted(p.name for p in media.iterdir() if p.name.startswith("top")) == ["top.txt"]  # no renames


def unsafe_archive(kind):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        good = tarfile.TarInfo("good.txt")
        good.size = 4
        archive.addfile(good, io.BytesIO(b"good"))
        info = tarfile.TarInfo({"absolute": "/etc/evil", "dotdot": "a/../../evil"}.get(kind, "evil"))
        if kind in ("absolute", "dotdot"):
            info.size = 4
            archive.addfile(info, io.BytesIO(b"evil"))
            return buffer.getvalue()
        info.type = {
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "device": tarfile.CHRTYPE,
            "fifo": tarfile.FIFOTYPE,
        }[kind]
        info.linkname = {"symlink": "../../etc/passwd", "hardlink": "/etc/passwd"}.get(kind, "")
        archive.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("absolute", "its name is absolute"),
        ("dotdot", "climbs out of the media folder"),
        ("symlink", "link to '../../etc/passwd', outside"),
        ("hardlink", "link to '/etc/passwd', outside"),
        ("device", "device file"),
        ("fifo", "FIFO"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(media, kind, reason):
    get_storage().write_file(io.BytesIO(unsafe_archive(kind)), "host-2026-01-01-000000.tar")
    with pytest.raises(CommandError, match=rf"unsafe member .*{re.escape(reason)}.*Nothing was restored"):
        run("mediarestore", "--noinput")
    assert not media.exists() or tree(media) == {}
    assert not (media.parent / "evil").exists()


def test_links_inside_the_archive_are_skipped_with_a_warning(media):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = tarfile.TarInfo("real.txt")
        data.size = 3
        archive.addfile(data, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("alias.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "real.txt"
        archive.addfile(link)
    get_storage().write_file(io.BytesIO(buffer.getvalue()), "host-2026-01-01-000000.tar")
    err = run("mediarestore", "--noinput")
    assert "Skipped link alias.txt" in err
    assert tree(media) == {"real.txt": b"abc"}


def test_damaged_archive_writes_nothing(media, backup_dir):
    fill(media, big=False)
    run("mediabackup", "-z")
    [name] = get_storage().list_backups(content_type="media")
    (backup_dir / name).write_bytes((backup_dir / name).read_bytes()[:-100])
    for path in list(media.rglob("*")):
        if path.is_file():
            path.unlink()
    with pytest.raises(CommandError, match="truncated|not a valid gzip"):
        run("mediarestore", "--noinput")
    assert tree(media) == {}


def test_media_signals(media, record):
    fill(media)
    pre_backup, post_backup = record(signals.pre_media_backup), record(signals.post_media_backup)
    run("mediabackup", "-s", "web1")
    [name] = get_storage().list_backups(content_type="media")
    assert pre_backup.calls[0].keys() == {"sender", "servername", "storage"}
    assert pre_backup.calls[0]["sender"] is mediabackup_command.Command
    assert pre_backup.calls[0]["servername"] == "web1"
    assert isinstance(pre_backup.calls[0]["storage"], Storage)
    assert post_backup.calls[0].keys() == {"sender", "filename", "servername", "storage"}
    assert post_backup.calls[0]["filename"] == name
    pre_restore, post_restore = record(signals.pre_media_restore), record(signals.post_media_restore)
    run("mediarestore", "--noinput", "-r")
    for calls in (pre_restore.calls, post_restore.calls):
        assert calls[0].keys() == {"sender", "filename", "servername", "storage"}
        assert calls[0]["sender"] is mediarestore_command.Command
        assert calls[0]["filename"] == name
        assert calls[0]["servername"] == "testhost"


def test_a_raising_pre_media_backup_receiver_stops_before_anything_is_written(media, record):
    fill(media)
    record(signals.pre_media_backup, raises=RuntimeError("no media backups today"))
    with pytest.raises(CommandError, match="no media backups today"):
        run("mediabackup")
    assert get_storage().list_directory() == []


def test_a_raising_pre_media_restore_receiver_stops_before_anything_is_written(media, record):
    fill(media)
    run("mediabackup")
    (media / "top.txt").unlink()
    record(signals.pre_media_restore, raises=RuntimeError("not now"))
    with pytest.raises(CommandError, match="not now"):
        run("mediarestore", "--noinput")
    assert not (media / "top.txt").exists()


def test_media_on_any_storage_is_backed_up_through_the_storage_api(settings, backup_dir):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    default_storage.save("remote/photo.jpg", ContentFile(b"\xff\xd8 jpeg"))
    run("mediabackup")
    default_storage.delete("remote/photo.jpg")
    run("mediarestore", "--noinput")
    with default_storage.open("remote/photo.jpg") as handle:
        assert handle.read() == b"\xff\xd8 jpeg"


def test_clean_keeps_the_newest_media_backups(media, settings):
    settings.DBBACKUP_CLEANUP_KEEP_MEDIA = 1
    storage = get_storage()
    storage.write_file(io.BytesIO(b"x"), "testhost-2020-01-01-000000.tar")
    storage.write_file(io.BytesIO(b"x"), "default-testhost-2020-01-01-000000.sqlite3")
    fill(media)
    run("mediabackup", "-c")
    assert len(storage.list_backups(content_type="media")) == 1
    assert storage.list_backups(content_type="db") == ["default-testhost-2020-01-01-000000.sqlite3"]


def test_output_filename_keeps_the_gpg_suffix_like_django_dbbackup(media, gpg_settings):
    fill(media)
    run("mediabackup", "-e", "-o", "media-copy.tar")
    assert get_storage().exists("media-copy.tar.gpg")


def test_verify_only_writes_nothing(media):
    fill(media)
    run("mediabackup")
    (media / "top.txt").unlink()
    err = run("mediarestore", "--verify-only", "--noinput")
    assert "is readable and safe: 5 file(s)" in err
    assert not (media / "top.txt").exists()


def test_no_media_backup(media):
    with pytest.raises(CommandError, match="There is no backup in .* matching content_type='media'"):
        run("mediarestore", "--noinput")


def test_a_media_file_deleted_during_the_backup_is_skipped_and_not_counted(media, monkeypatch):
    fill(media)
    real_names = LocalSource.names

    def with_a_ghost(source, path=""):
        yield "gone.txt"  # listed, then deleted before its turn
        yield from real_names(source, path)

    monkeypatch.setattr(LocalSource, "names", with_a_ghost)
    err = run("mediabackup")
    assert "WARNING: Skipped media file gone.txt: it was deleted while the backup ran" in err
    assert "Backed up 5 media file(s)" in err  # what went into the archive, not what was listed
    monkeypatch.undo()
    for path in list(media.rglob("*")):
        if path.is_file():
            path.unlink()
    run("mediarestore", "--noinput")
    assert tree(media) == fill(media)


def test_a_file_deleted_from_another_storage_during_the_backup_is_skipped_and_not_counted(
    settings, backup_dir, monkeypatch
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    default_storage.save("a.txt", ContentFile(b"a"))
    default_storage.save("b.txt", ContentFile(b"b"))
    real_open = InMemoryStorage.open

    def vanishing(storage, name, mode="rb"):
        if name == "a.txt":
            raise FileNotFoundError(name)
        return real_open(storage, name, mode)

    monkeypatch.setattr(InMemoryStorage, "open", vanishing)
    err = run("mediabackup")
    assert "WARNING: Skipped media file a.txt: it was deleted while the backup ran" in err
    assert "Backed up 1 media file(s)" in err
