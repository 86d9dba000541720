"""Media faults: a restore killed while it stages the archive, stopped by a full disk or by a
damaged archive, archives made by GNU tar, non-regular files and links in the media folder.

Each test compares the media folder file by file with the versions it may legitimately hold
(the one before the restore and the archived one), and looks for debris.
"""

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import leftovers
from tests.faults.support import debris, kill, reap, start_command, tree_fingerprint, wait_for

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@pytest.fixture
def media(settings, tmp_path, backup_dir):
    root = tmp_path / "media"
    root.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.MEDIA_ROOT = str(root)
    return root


def write_version(root, tag, big_size):
    """A media tree whose every file holds ``tag``; ``big.bin`` is ``big_size`` bytes."""
    block = hashlib.sha256(tag.encode()).digest()
    files = {
        "a.txt": f"a, {tag}".encode(),
        "big.bin": (block * (big_size // len(block) + 1))[:big_size],
        "zz.txt": f"zz, {tag}".encode(),
        "sub/c.txt": f"c, {tag}".encode(),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return tree_fingerprint(root)


def child(*argv, timeout=120):
    """Run a command in a child process; kill it (by PID) if it outlives ``timeout``."""
    proc = start_command(*argv)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc.pid)
        reap(proc)
        pytest.fail(f"{' '.join(argv)} was still running after {timeout}s")
    return proc.returncode, out.decode(), err.decode()


def partials(root):
    return [path for path in root.rglob("*") if ".dbbackup-partial-" in path.name]


def staging_folders(root):
    return [path for path in root.iterdir() if path.name.startswith(".dbbackup-restore-")]


def media_files(root):
    """The fingerprint of the media folder without the staging folders."""
    return {
        name: value
        for name, value in tree_fingerprint(root).items()
        if not name.startswith(".dbbackup-restore-")
    }


def test_a_restore_killed_while_staging_leaves_the_media_folder_unchanged(media):
    archived = write_version(media, "archived", 96 * MB)
    call_command("mediabackup", stdout=io.StringIO(), stderr=io.StringIO())
    current = write_version(media, "current", 64 * MB)

    proc = start_command("mediarestore", "-r", "--noinput")

    def big_file_being_staged():
        if proc.poll() is not None:
            raise AssertionError(f"the restore ended ({proc.returncode}) before it was killed")
        staged = [folder / "big.bin" for folder in staging_folders(media)]
        return staged and staged[0].exists() and staged[0].stat().st_size > 0

    wait_for(big_file_being_staged, timeout=120, what="big.bin to be half-staged")
    kill(proc.pid)
    reap(proc)

    assert media_files(media) == current  # not one file changed
    [left] = staging_folders(media)
    assert left.stat().st_mode & 0o777 == 0o700
    assert partials(media) == []

    # the next restore (without -r: it keeps what exists) removes the dead run's staging folder
    returncode, _, err = child("mediarestore", "--noinput")
    assert returncode == 0, err
    assert "Removed 1 staging folder(s) left by an interrupted restore" in err
    assert staging_folders(media) == []
    assert debris(media) == []
    assert tree_fingerprint(media) == current
    returncode, _, err = child("mediarestore", "-r", "--noinput")
    assert returncode == 0, err
    assert tree_fingerprint(media) == archived
    assert staging_folders(media) == []


def test_a_live_restore_s_staging_folder_is_never_swept(media):
    write_version(media, "archived", 1000)
    call_command("mediabackup", stdout=io.StringIO(), stderr=io.StringIO())
    live = media / f".dbbackup-restore-{leftovers.owner()}-0123abcd"  # this test process: alive
    (live / "sub").mkdir(parents=True)
    (live / "sub" / "a.txt").write_bytes(b"being staged")
    returncode, _, err = child("mediarestore", "--noinput", "-r")
    assert returncode == 0, err
    assert (live / "sub" / "a.txt").read_bytes() == b"being staged"
    shutil.rmtree(live)


@pytest.mark.parametrize("damage", ["truncated", "last-byte", "no-sidecar-truncated"])
def test_a_damaged_archive_leaves_the_media_folder_unchanged(media, backup_dir, damage):
    write_version(media, "archived", 3 * MB)
    call_command("mediabackup", stdout=io.StringIO(), stderr=io.StringIO())
    [backup] = [p for p in backup_dir.iterdir() if not p.name.endswith(".metadata")]
    data = bytearray(backup.read_bytes())
    if damage == "last-byte":  # in the zero padding after the end marker: only the checksum sees it
        data[-1] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    backup.write_bytes(bytes(data))
    if damage == "no-sidecar-truncated":
        (backup_dir / (backup.name + ".metadata")).unlink()
    for path in list(media.rglob("*")):
        if path.is_file():
            path.unlink()
    current = write_version(media, "current", 1 * MB)
    (media / "sub" / "c.txt").unlink()  # a file the archive would add
    current.pop("sub/c.txt")

    returncode, _, err = child("mediarestore", "-r", "--noinput")
    assert returncode != 0, err
    assert re.search(r"truncated|damaged|SHA-256", err), err
    assert tree_fingerprint(media) == current  # nothing written, replaced or added
    assert staging_folders(media) == []
    assert debris(media) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only), unmounted afterwards."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True, check=False
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


def test_a_full_disk_leaves_the_media_folder_unchanged_and_names_the_file(settings, small_disk, backup_dir):
    media = small_disk / "media"
    media.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    write_version(media, "archived", 1_400_000)
    call_command("mediabackup", stdout=io.StringIO(), stderr=io.StringIO())
    for path in list(media.rglob("*")):
        if path.is_file():
            path.unlink()
    current = write_version(media, "current", 800_000)

    returncode, _, err = child("mediarestore", "-r", "--noinput")
    assert returncode != 0, err
    assert "Could not restore the media file 'big.bin': No space left on device (while staging it)" in err
    assert "nothing in the media folder was changed" in err
    assert tree_fingerprint(media) == current  # a.txt, staged before the disk filled, is not in place
    assert staging_folders(media) == []
    assert debris(media) == []


@pytest.mark.parametrize("args", [[], ["-z"], ["--compression", "zstd"]], ids=["plain", "gzip", "zstd"])
def test_a_media_backup_that_fills_the_disk_leaves_nothing_and_stops_its_threads(
    settings, media, small_disk, args
):
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(small_disk)},
        },
    }
    for index in range(3):  # random bytes: 3 MB on a 2 MB disk, compressed or not
        (media / f"photo-{index}.jpg").write_bytes(os.urandom(MB))
    before = tree_fingerprint(media)
    with pytest.raises(CommandError, match="No space left on device"):
        call_command("mediabackup", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert list(small_disk.iterdir()) == []  # no backup, no partial file, no sidecar
    assert tree_fingerprint(media) == before
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("dbbackup-")] == []


def gnu_tree(root):
    files = {
        "a.txt": b"made by GNU tar",
        "sub/b.bin": bytes(range(256)) * 10,
        "ünïcødé/文件.txt": "ünï".encode(),
        "long/" + "n" * 120 + ".txt": b"a name longer than 100 bytes",
        "empty.dat": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "empty-folder").mkdir()
    return tree_fingerprint(root)


@pytest.mark.parametrize("flags", ["-cf", "-czf", "--format=posix -cf"], ids=["gnu", "gnu-gzip", "pax"])
def test_an_archive_made_by_gnu_tar_restores(media, tmp_path, flags):
    source = tmp_path / "source"
    expected = gnu_tree(source)
    archive = tmp_path / "made-by-tar.tar"
    subprocess.run(["tar", "-C", str(source), *flags.split(), str(archive), "."], check=True)
    with tarfile.open(archive) as opened:
        assert "./a.txt" in opened.getnames()  # GNU tar's ./ prefix
    returncode, _, err = child("mediarestore", "--noinput", "-I", str(archive))
    assert returncode == 0, err
    assert tree_fingerprint(media) == expected
    assert debris(media) == []


def test_fifos_sockets_and_devices_are_skipped_and_never_opened(media, backup_dir):
    write_version(media, "v", 1000)
    os.mkfifo(media / "pipe")  # opening it would wait for a writer forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(media / "sub" / "sock"))
    device = False
    with contextlib.suppress(PermissionError, OSError):
        os.mknod(media / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        device = True
    try:
        returncode, _, err = child("mediabackup", "--noinput", timeout=60)
    finally:
        server.close()
    assert returncode == 0, err
    assert "Skipped media file pipe: it is a FIFO, not a regular file" in err
    assert "Skipped media file sub/sock: it is a socket, not a regular file" in err
    if device:
        assert "Skipped media file null: it is a character device, not a regular file" in err
    assert "Backed up 4 media file(s)" in err
    [name] = [p for p in backup_dir.iterdir() if not p.name.endswith(".metadata")]
    with tarfile.open(name) as archive:
        assert sorted(archive.getnames()) == ["a.txt", "big.bin", "sub/c.txt", "zz.txt"]


def test_links_out_of_the_media_folder_are_followed_neither_way(media, tmp_path, backup_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_bytes(b"not media")
    write_version(media, "v", 1000)
    (media / "escape").symlink_to(outside)
    (media / "escape.txt").symlink_to(outside / "private.txt")
    returncode, _, err = child("mediabackup", "--noinput")
    assert returncode == 0, err
    assert "Skipped media link escape: it points outside the media folder" in err
    assert "Skipped media link escape.txt: it points outside the media folder" in err
    [backup] = [p for p in backup_dir.iterdir() if not p.name.endswith(".metadata")]
    with tarfile.open(backup) as archive:
        assert not [name for name in archive.getnames() if name.startswith("escape")]

    # an archive whose members would land under the link (written by another tool)
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(hostile, "w") as archive:
        for name in ("escape/x.txt", "escape/deeper/y.txt", "escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 7
            archive.addfile(info, io.BytesIO(b"escaped"))
    before_outside = tree_fingerprint(outside)
    returncode, _, err = child("mediarestore", "--noinput", "-r", "-I", str(hostile))
    assert returncode == 0, err
    assert "Skipped escape/x.txt: escape is a symbolic link in the media folder, not followed" in err
    assert tree_fingerprint(outside) == before_outside
    assert sorted(p.name for p in outside.rglob("*")) == ["private.txt"]
    assert not (media / "escape.txt").is_symlink()  # the link was replaced, not written through
    assert debris(media, outside) == []
