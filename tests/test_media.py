"""mediabackup and mediarestore: streamed tar archives through real storages."""

import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import threading
import tracemalloc

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage, default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import linux_fs, pipeline, signals, tar
from dbbackup.management.commands import mediabackup as mediabackup_command
from dbbackup.management.commands import mediarestore as mediarestore_command
from dbbackup.media_source import LocalSource
from dbbackup.media_staging import StagingTarget
from dbbackup.pipeline import media as pipeline_media
from dbbackup.storage import Storage, get_storage
from tests.test_remote_storages import s3_server, s3_storages  # noqa: F401 - fixtures

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
    assert "kept 5 existing file(s) (-r/--replace overwrites them)" in err
    assert "Kept existing top.txt" not in err  # one summary line, not a line per file
    assert "Kept existing top.txt" in run("mediarestore", "--noinput", "-v", "2")
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


def archive_of(members):
    """A plain tar archive of ``{name: bytes}`` (or TarInfo-type tweaks), in the backup storage."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    get_storage().write_file(io.BytesIO(buffer.getvalue()), "host-2026-01-01-000000.tar")


def test_dot_slash_member_names_are_normalised(media):
    archive_of({"./": None, "./a.txt": b"a", "./sub/": None, "./sub/b.txt": b"b", "c//./d.txt": b"d"})
    run("mediarestore", "--noinput")
    assert tree(media) == {"a.txt": b"a", "sub/b.txt": b"b", "c/d.txt": b"d"}


@pytest.mark.parametrize("name", ["./../evil", "./a/../../evil", "/./evil"])
def test_dot_slash_does_not_hide_an_escape(media, name):
    archive_of({"./good.txt": b"good", name: b"evil"})
    with pytest.raises(CommandError, match="unsafe member"):
        run("mediarestore", "--noinput")
    assert not media.exists() or tree(media) == {}


def test_replace_stages_the_whole_archive_before_renaming_any_file(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    for name in files:
        (media / name).write_bytes(b"new version")
    seen = []
    real_replace = os.replace

    def watching(src, dst, **kwargs):
        if not seen:  # the first rename: every file is staged, none is in place yet
            [staging] = [p for p in media.iterdir() if p.name.startswith(".dbbackup-restore-")]
            assert staging.stat().st_mode & 0o777 == 0o700
            assert tree(staging) == files
            assert all((media / name).read_bytes() == b"new version" for name in files)
        seen.append(dst)
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", watching)
    run("mediarestore", "--noinput", "-r")
    assert sorted(seen) == sorted(os.path.basename(name) for name in files)
    assert tree(media) == files
    assert [p.name for p in media.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_storage_without_staging_writes_through_a_temporary_name(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    (media / "top.txt").write_bytes(b"new version")
    monkeypatch.setattr(pipeline_media, "staging_supported", lambda storage: False)
    seen = []
    real_replace = os.replace

    def watching(src, dst, **kwargs):
        seen.append((src, dst))
        if dst == "top.txt":
            assert (media / "top.txt").read_bytes() == b"new version"  # the old one is still whole
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", watching)
    run("mediarestore", "--noinput", "-r")
    assert (media / "top.txt").read_bytes() == b"top level"
    assert any(
        re.fullmatch(r"\.top\.txt\.dbbackup-partial-[0-9a-f]{8}", src) and dst == "top.txt"
        for src, dst in seen
    )
    assert tree(media) == files  # no temporary file left


def test_leftover_temporary_files_are_removed_and_never_archived(media, backup_dir):
    fill(media)
    leftover = media / "nested" / ".leaf.bin.dbbackup-partial-0123abcd"
    leftover.write_bytes(b"torn")
    err = run("mediabackup")
    assert "Backed up 5 media file(s)" in err
    [name] = get_storage().list_backups(content_type="media")
    with tarfile.open(backup_dir / name) as archive:
        assert not [m for m in archive.getnames() if "dbbackup-partial" in m]
    err = run("mediarestore", "--noinput")
    assert not leftover.exists()
    assert "Removed 1 temporary file(s) left by an interrupted restore" in err


def test_a_disk_error_while_staging_changes_nothing_and_names_the_file(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    for name in files:
        (media / name).write_bytes(b"old version")
    before = tree(media)
    real_write = StagingTarget._write

    def full(target, name, base, content, size):
        if base == "leaf.bin":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(target, name, base, content, size)

    monkeypatch.setattr(StagingTarget, "_write", full)
    with pytest.raises(
        CommandError,
        match=r"'nested/deeper/still/leaf\.bin': No space left on device \(while staging it\); nothing in",
    ):
        run("mediarestore", "--noinput", "-r")
    assert tree(media) == before
    assert [p.name for p in media.iterdir() if p.name.startswith(".")] == []


def test_without_staging_disk_errors_name_the_file_and_keep_the_old_version(media, monkeypatch):
    fill(media)
    monkeypatch.setattr(pipeline_media, "staging_supported", lambda storage: False)
    run("mediabackup")
    (media / "top.txt").write_bytes(b"old version")
    real_fsync = os.fsync

    def full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".top.txt.dbbackup-partial-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CommandError, match=r"'top\.txt': No space left on device; its previous version"):
        run("mediarestore", "--noinput", "-r")
    assert (media / "top.txt").read_bytes() == b"old version"
    assert not [p for p in media.rglob("*") if "dbbackup-partial" in p.name]


class FailingStorage(FileSystemStorage):
    """A storage used through its API whose disk is full after ``LIMIT`` bytes of one save."""

    LIMIT = 1000

    def _save(self, name, content):
        if content.size > self.LIMIT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super()._save(name, content)


def test_storages_without_rename_keep_the_old_version_when_a_save_fails(settings, tmp_path, backup_dir):
    root = tmp_path / "remote"
    backend = {"BACKEND": "tests.test_media.FailingStorage", "OPTIONS": {"location": str(root)}}
    settings.STORAGES = {**settings.STORAGES, "default": backend}
    (root / "sub").mkdir(parents=True)
    (root / "small.txt").write_bytes(b"x" * 10)
    (root / "sub" / "large.bin").write_bytes(b"y" * 5000)
    run("mediabackup")
    (root / "small.txt").write_bytes(b"old small")
    (root / "sub" / "large.bin").write_bytes(b"old large")
    with pytest.raises(
        CommandError,
        match=r"'sub/large\.bin': \[Errno 28\] No space left on device\. 1 file\(s\) were restored before",
    ):
        run("mediarestore", "--noinput", "-r")
    assert tree(root) == {"small.txt": b"x" * 10, "sub/large.bin": b"old large"}


def test_storages_without_rename_replace_files_without_renamed_copies(settings, backup_dir):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    default_storage.save("dir/a.txt", ContentFile(b"archived"))
    run("mediabackup")
    default_storage.delete("dir/a.txt")
    default_storage.save("dir/a.txt", ContentFile(b"current"))
    default_storage.save(
        "dir/.a.txt.dbbackup-partial-" + hashlib.sha256(b"dir/a.txt").hexdigest()[:8], ContentFile(b"torn")
    )
    run("mediarestore", "--noinput", "-r")
    with default_storage.open("dir/a.txt") as handle:
        assert handle.read() == b"archived"
    assert default_storage.listdir("dir") == ([], ["a.txt"])


def test_links_leaving_the_media_folder_are_not_followed_by_a_backup(media, tmp_path, backup_dir):
    fill(media)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not media")
    (media / "away").symlink_to(outside)
    (media / "away.txt").symlink_to(outside / "secret.txt")
    (media / "alias.txt").symlink_to("top.txt")  # inside: followed, as Django's listdir does
    (media / "nested" / "loop").symlink_to(media / "nested")
    err = run("mediabackup")
    assert f"Skipped media link away: it points outside the media folder ({outside})" in err
    assert "Skipped media link away.txt" in err
    assert "Skipped media link nested/loop: it leads back into a folder above it (a loop)" in err
    [name] = get_storage().list_backups(content_type="media")
    with tarfile.open(backup_dir / name) as archive:
        assert sorted(archive.getnames()) == sorted([*fill(media), "alias.txt"])


def test_a_restore_never_writes_through_a_link_in_the_media_folder(media, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    media.mkdir()
    (media / "link").symlink_to(outside)
    (media / "file.txt").symlink_to(outside / "target.txt")
    (outside / "target.txt").write_bytes(b"outside, unchanged")
    archive_of({"link/x": b"escaped", "link/deeper/y": b"escaped", "file.txt": b"restored", "ok.txt": b"ok"})
    err = run("mediarestore", "--noinput", "-r")
    assert "Skipped link/x: link is a symbolic link in the media folder, not followed" in err
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert (outside / "target.txt").read_bytes() == b"outside, unchanged"
    assert not (media / "file.txt").is_symlink()  # the link itself was replaced by the file
    assert (media / "file.txt").read_bytes() == b"restored"
    assert (media / "ok.txt").read_bytes() == b"ok"
    assert "Restored 2 media file(s) from host-2026-01-01-000000.tar; skipped 2." in err


def test_verify_and_restore_memory_does_not_grow_with_the_number_of_members(media, tmp_path):
    count = 20_000
    path = tmp_path / "many.tar"
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for index in range(count):
            archive.addfile(tarfile.TarInfo(f"d{index % 100}/member-{index:06d}.txt"))

    def peak_of(work):
        tracemalloc.start()
        try:
            value = work()
            return value, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    (files, _), verify_peak = peak_of(
        lambda: pipeline.verify_media_backup(pipeline.plan_media_restore(input_path=str(path)))
    )

    def second_pass():  # what the restore's writing pass iterates, without the writes
        with path.open("rb") as stream:
            return sum(1 for _ in tar.files(stream))

    written, restore_peak = peak_of(second_pass)
    assert files == written == count
    # tarfile keeps every TarInfo it reads (~15 MB more for these); dbbackup lets them go
    assert verify_peak < 6 * 1024 * 1024, verify_peak  # flat: ~3 MB of stream buffers
    assert restore_peak < 6 * 1024 * 1024, restore_peak


@pytest.mark.usefixtures("s3_storages")
def test_media_on_s3_is_replaced_without_leaving_a_temporary_object():
    default_storage.save("photos/a.jpg", ContentFile(b"archived"))
    run("mediabackup")
    default_storage.save("photos/a.jpg", ContentFile(b"current"))  # S3 overwrites in place
    run("mediarestore", "--noinput", "-r")
    with default_storage.open("photos/a.jpg") as handle:
        assert handle.read() == b"archived"
    assert default_storage.listdir("photos") == ([], ["a.jpg"])


def test_a_file_where_a_folder_is_needed_is_named_in_the_error(media):
    media.mkdir()
    (media / "a.txt").write_bytes(b"a file")
    archive_of({"a.txt/b.txt": b"b"})
    with pytest.raises(CommandError, match=r"'a\.txt/b\.txt': 'a\.txt' is a file, not a folder"):
        run("mediarestore", "--noinput")
    assert tree(media) == {"a.txt": b"a file"}


def test_a_name_near_the_length_limit_restores(media):
    name = "é" * 125 + ".txt"  # 254 bytes: its temporary name must be shortened
    archive_of({name: b"long"})
    run("mediarestore", "--noinput")
    assert tree(media) == {name: b"long"}


@pytest.mark.parametrize("renameat2", [True, False], ids=["folders-moved-whole", "file-by-file"])
def test_restored_files_and_folders_get_django_s_permissions(media, settings, monkeypatch, renameat2):
    settings.FILE_UPLOAD_PERMISSIONS = 0o640
    settings.FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
    files = fill(media)
    run("mediabackup")
    shutil.rmtree(media / "nested")
    (media / "top.txt").unlink()
    if not renameat2:
        monkeypatch.setattr(linux_fs, "rename_noreplace", lambda *args: False)
    err = run("mediarestore", "--noinput")
    assert "Restored 2 media file(s)" in err  # nested/deeper/still/leaf.bin and top.txt
    assert "kept 3 existing file(s)" in err
    assert tree(media) == files
    for path in (media / "nested", media / "nested/deeper", media / "nested/deeper/still"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
    for path in (media / "top.txt", media / "nested/deeper/still/leaf.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in media.iterdir() if p.name.startswith(".")] == []


def test_a_file_that_appears_before_the_renames_is_kept_without_replace(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    (media / "top.txt").unlink()
    real_commit = StagingTarget.commit

    def meanwhile(target):
        (media / "top.txt").write_bytes(b"uploaded meanwhile")
        return real_commit(target)

    monkeypatch.setattr(StagingTarget, "commit", meanwhile)
    err = run("mediarestore", "--noinput", "-v", "2")
    assert (media / "top.txt").read_bytes() == b"uploaded meanwhile"
    assert "Kept existing top.txt" in err
    assert "Restored 0 media file(s)" in err
    assert "kept 5 existing file(s)" in err
    assert tree(media) == {**files, "top.txt": b"uploaded meanwhile"}


def test_without_syncfs_each_staged_file_is_flushed(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    shutil.rmtree(media)
    monkeypatch.setattr(linux_fs, "has_syncfs", lambda: False)
    monkeypatch.setattr(linux_fs, "syncfs", lambda fd: False)
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: flushed.append(fd) or real_fsync(fd))
    run("mediarestore", "--noinput")
    assert tree(media) == files
    assert len(flushed) == len(files)


def test_a_staging_folder_is_never_archived(media, backup_dir):
    files = fill(media)
    staging = media / ".dbbackup-restore-000000000000-1-1-0123abcd"
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "staged.txt").write_bytes(b"half a restore")
    run("mediabackup")
    [name] = get_storage().list_backups(content_type="media")
    with tarfile.open(backup_dir / name) as archive:
        assert sorted(archive.getnames()) == sorted(files)


def test_duplicate_members_the_later_one_wins_with_replace_only(media):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo("a.txt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    get_storage().write_file(io.BytesIO(buffer.getvalue()), "host-2026-01-02-000000.tar")
    err = run("mediarestore", "--noinput", "-i", "host-2026-01-02-000000.tar")
    assert tree(media) == {"a.txt": b"first"}
    assert "Restored 1 media file(s)" in err
    assert "kept 1 existing file(s)" in err
    (media / "a.txt").unlink()
    run("mediarestore", "--noinput", "-r", "-i", "host-2026-01-02-000000.tar")
    assert tree(media) == {"a.txt": b"second"}


@pytest.mark.parametrize("when", ["before-its-first-file", "after-its-first-file"])
def test_a_folder_swapped_for_a_link_during_the_backup_is_not_followed(
    media, tmp_path, backup_dir, monkeypatch, when
):
    (media / "sub").mkdir(parents=True)
    (media / "sub" / "a.txt").write_bytes(b"media")
    (media / "sub" / "b.txt").write_bytes(b"media")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_bytes(b"secret")
    (outside / "b.txt").write_bytes(b"secret")
    real_names = LocalSource.names

    def swapping(source, path=""):
        for name in real_names(source, path):
            if name == ("sub/a.txt" if when == "before-its-first-file" else "sub/b.txt"):
                (media / "sub").rename(media / "sub-old")
                (media / "sub").symlink_to(outside)
            yield name

    monkeypatch.setattr(LocalSource, "names", swapping)
    err = run("mediabackup")
    [name] = get_storage().list_backups(content_type="media")
    with tarfile.open(backup_dir / name) as archive:
        archived = {member: archive.extractfile(member).read() for member in archive.getnames()}
    if when == "before-its-first-file":
        assert "Skipped media link sub/a.txt: it points outside the media folder" in err
        assert archived == {}
    else:  # read from the folder held open since its first file, never from outside
        assert archived == {"sub/a.txt": b"media", "sub/b.txt": b"media"}


@pytest.mark.parametrize(
    "name",
    ["a", "top.txt", "uploads-1/2021/02/file-123.jpg", "x" * 100, "x" * 101, "ünï/é.txt", "a b/c\tq"],
)
@pytest.mark.parametrize("size", [0, 1, 511, 512, 50 * 1024 * 1024, 8**11 - 1, 8**11])
def test_member_headers_are_byte_for_byte_tarfile_s(name, size):
    assert tar._header(name, size) == tar._tarfile_header(name, size)


def test_an_interrupt_while_staging_changes_nothing_and_removes_the_staging_folder(media, monkeypatch):
    files = fill(media)
    run("mediabackup")
    for name in files:
        (media / name).write_bytes(b"old version")
    before = tree(media)
    real_write = StagingTarget._write
    calls = []

    def interrupted(target, name, base, content, size):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(target, name, base, content, size)

    monkeypatch.setattr(StagingTarget, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("mediarestore", "--noinput", "-r")
    assert tree(media) == before
    assert [p.name for p in media.iterdir() if p.name.startswith(".")] == []


def tarfile_archive(files):
    """What Python's ``tarfile`` (django-dbbackup's writer) makes of ``[(name, bytes)]``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ReadOnlySource:
    """A media source of another storage: its files are read with ``read()``, which may return
    short pieces; their ``readinto()`` is not trusted (django-storages' FTP file's reads an
    empty buffer until ``read()`` has loaded the file)."""

    class Handle:
        def __init__(self, data):
            self._stream = io.BytesIO(data)

        def read(self, size=-1):
            return self._stream.read(min(size, 700) if size and size > 0 else size)  # short reads

        def readinto(self, buffer):
            raise AssertionError("the archive was read through readinto()")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    def __init__(self, files):
        self.files = dict(files)

    def names(self):
        return iter(self.files)

    def open(self, name):
        return self.Handle(self.files[name]), len(self.files[name])

    def close(self):
        return None


def sample_files():
    sizes = [0, 1, 511, 512, 513, 999, 1000, 4096, 70_000, 3 * 1024 * 1024 + 7]
    return [(f"f{index}-{size}.bin", os.urandom(size)) for index, size in enumerate(sizes)] + [
        ("ünï/" + "n" * 120 + ".txt", b"pax header"),
        ("x" * 100, b"a name of exactly 100 characters"),
    ]


@pytest.mark.parametrize("chunk_size", [512, 1000, 4096, 1024 * 1024])
@pytest.mark.parametrize("reader", ["readinto", "read"])
def test_the_tar_stream_is_tarfile_s_bytes_in_chunks_of_one_size(media, chunk_size, reader):
    files = sample_files()
    if reader == "readinto":
        for name, data in files:
            (media / name).parent.mkdir(parents=True, exist_ok=True)
            (media / name).write_bytes(data)
        source = LocalSource(FileSystemStorage(location=str(media)))
        files = [(name, data) for name, data in sorted(files, key=lambda item: walk_order(item[0]))]
    else:
        source = ReadOnlySource(files)
    added = []
    chunks = list(tar.stream_tar(source, on_added=added.append, chunk_size=chunk_size))
    assert b"".join(chunks) == tarfile_archive(files)
    assert {len(chunk) for chunk in chunks[:-1]} <= {chunk_size}
    assert 0 < len(chunks[-1]) <= chunk_size
    assert added == [name for name, _ in files]


def walk_order(name):
    """The order of LocalSource's walk: a folder's files (sorted), then its folders (sorted)."""
    *folders, base = name.split("/")
    return [(1, folder) for folder in folders] + [(0, base)]


@pytest.mark.parametrize(("change", "word"), [(+1000, "shrank"), (-1000, "grew"), (-1, "grew")])
@pytest.mark.parametrize("args", [[], ["--compression", "zstd"]], ids=["plain", "zstd"])
def test_a_file_whose_size_changes_while_archived_stops_the_backup(
    media, backup_dir, monkeypatch, change, word, args
):
    fill(media, big=True)  # big/fifty.bin spans many chunks of the stream
    real_open = LocalSource.open

    def changing(source, name):  # the size at opening differs from what the reads find
        handle, size = real_open(source, name)
        return handle, size + change if name == "big/fifty.bin" else size

    monkeypatch.setattr(LocalSource, "open", changing)
    with pytest.raises(CommandError, match=f"The media file 'big/fifty.bin' {word} while it was archived"):
        run("mediabackup", *args)
    assert [path.name for path in backup_dir.rglob("*")] == []  # no backup, no partial file
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("dbbackup-")] == []
