"""A SQLite restore renames the checked scratch file in when no process has the database open,
and copies it in with the backup API when one does (see dbbackup/db/sqlite_swap.py)."""

import gc
import io
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from dbbackup.db import sqlite_swap
from dbbackup.db.sqlite import SqliteBackupConnector, SqliteConnector
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not sqlite_swap.can_lease(), reason="file leases are Linux only"),
]


def dump_of(connector) -> bytes:
    stream = connector.create_dump()
    try:
        return stream.read()
    finally:
        stream.close()


def make_file(path, rows: int = 100, wal: bool = False) -> None:
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [(str(i),) for i in range(rows)])
    db.commit()
    db.close()


def execute(path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()


def count(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        db.close()


def beside(path) -> list[str]:
    return sorted(name for name in os.listdir(os.path.dirname(path)) if name != os.path.basename(path))


@pytest.mark.parametrize("connector_class", [SqliteBackupConnector, SqliteConnector])
def test_djangos_own_database_is_renamed_in_and_django_reconnects(connector_class):
    add_known_data()
    expected = snapshot()
    dump = dump_of(connector_class("default"))
    Note.objects.create(title="written after the backup")
    path = connection.settings_dict["NAME"]
    os.chmod(path, 0o640)
    inode = os.stat(path).st_ino
    gc.collect()  # unreachable sqlite3 connections left by earlier tests still hold the file
    connector_class("default").restore_dump(io.BytesIO(dump))
    assert os.stat(path).st_ino != inode  # renamed in, not copied
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)  # the live file's mode is kept
    assert snapshot() == expected  # Django's connection reopened the new file
    assert not [name for name in beside(path) if name.startswith(".dbbackup-") or name.endswith("-journal")]


def test_an_idle_connection_in_another_process_makes_the_restore_copy(tmp_path):
    """A rename would leave that process on the old file: the backup API copies instead."""
    path = tmp_path / "held.sqlite3"
    make_file(path, rows=10)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(path)))
    execute(path, "DELETE FROM t")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('SELECT 1').fetchone(); "
            "print('open', flush=True); sys.stdin.readline(); "
            "print(db.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        inode = path.stat().st_ino
        SqliteBackupConnector("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
        assert path.stat().st_ino == inode  # copied into the file the other process holds
        out, _ = holder.communicate("\n", timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert out.strip() == "10"  # the other process sees the restored rows


def test_an_idle_connection_in_this_process_makes_the_restore_copy(tmp_path):
    path = tmp_path / "held.sqlite3"
    make_file(path, rows=10)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(path)))
    holder = sqlite3.connect(path)
    holder.execute("DELETE FROM t")
    holder.commit()
    inode = path.stat().st_ino
    SqliteBackupConnector("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
    assert path.stat().st_ino == inode
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (10,)
    holder.close()


def test_a_stale_write_ahead_log_is_not_replayed_into_the_restored_file(tmp_path):
    """A -wal left by a killed writer is settled into the old file, then removed before the rename."""
    path = tmp_path / "wal.sqlite3"
    make_file(path, rows=10, wal=True)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(path)))
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
            "db.execute('PRAGMA wal_autocheckpoint=0'); "
            "db.executemany('INSERT INTO t VALUES (?)', [('late',)] * 500); db.commit(); os._exit(0)",
            str(path),
        ],
        timeout=30,
    )
    assert writer.returncode == 0
    assert os.path.getsize(f"{path}-wal") > 0  # the killed writer's log, not checkpointed
    inode = path.stat().st_ino
    SqliteBackupConnector("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
    assert path.stat().st_ino != inode
    assert count(path) == 10
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    db.close()
    assert beside(path) == []


def test_a_symlinked_database_keeps_its_link(tmp_path):
    real = tmp_path / "real.sqlite3"
    make_file(real, rows=3)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(real)))
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)
    execute(real, "DELETE FROM t")
    SqliteBackupConnector("default", NAME=str(link)).restore_dump(io.BytesIO(dump))
    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert count(real) == 3


def test_a_hard_linked_database_is_copied_into(tmp_path):
    """Another name for the same file would keep the old data after a rename."""
    path = tmp_path / "db.sqlite3"
    make_file(path, rows=3)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(path)))
    os.link(path, tmp_path / "other-name.sqlite3")
    execute(path, "DELETE FROM t")
    SqliteBackupConnector("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
    assert count(tmp_path / "other-name.sqlite3") == 3  # same inode: copied into


def test_an_open_that_waits_on_the_lease_gets_a_poisoned_old_file(tmp_path, monkeypatch):
    """A process that looked the name up before the rename and opens during it sees no old data."""
    path = tmp_path / "db.sqlite3"
    make_file(path, rows=3)
    scratch = tmp_path / ".dbbackup-test.sqlite3"
    make_file(scratch, rows=7)
    opened: dict = {}
    real_replace = os.replace

    def replace_while_someone_opens(source, destination):
        # the old file is open only through the lease's descriptor: reach it through /proc
        fds = [f"/proc/self/fd/{fd}" for fd in os.listdir("/proc/self/fd")]
        old = next(fd for fd in fds if os.path.realpath(fd) == str(path))

        def open_old():
            with open(old, "rb") as handle:  # blocks until the lease is released
                opened["head"] = handle.read(16)

        thread = threading.Thread(target=open_old)
        thread.start()
        time.sleep(0.2)
        opened["blocked"] = thread.is_alive()
        real_replace(source, destination)
        opened["thread"] = thread

    monkeypatch.setattr(sqlite_swap.os, "replace", replace_while_someone_opens)
    monkeypatch.setattr(sqlite_swap, "_settle", lambda *args: None)
    assert sqlite_swap.swap_in(str(scratch), str(path))
    opened["thread"].join(30)
    assert opened["blocked"] is True
    assert opened["head"] != b"SQLite format 3\x00"
    assert count(path) == 7


def test_no_lease_means_no_rename(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    make_file(path, rows=3)
    scratch = tmp_path / ".dbbackup-test.sqlite3"
    make_file(scratch, rows=7)
    monkeypatch.setattr(sqlite_swap, "can_lease", lambda: False)
    assert not sqlite_swap.swap_in(str(scratch), str(path))
    assert count(path) == 3
    assert scratch.exists()


def test_a_missing_database_file_is_linked_in_with_sqlites_mode(tmp_path):
    source = tmp_path / "source.sqlite3"
    make_file(source, rows=5)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(source)))
    target = tmp_path / "new" / "db.sqlite3"
    target.parent.mkdir()
    umask = os.umask(0o022)
    os.umask(umask)
    SqliteBackupConnector("default", NAME=str(target)).restore_dump(io.BytesIO(dump))
    assert count(target) == 5
    assert target.stat().st_nlink == 1
    assert oct(target.stat().st_mode & 0o777) == oct(0o644 & ~umask)
    assert beside(target) == []


def test_a_failed_rename_leaves_the_database_and_the_restore_copies(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    make_file(path, rows=3)
    dump = dump_of(SqliteBackupConnector("default", NAME=str(path)))
    execute(path, "DELETE FROM t")

    def refuse(source, destination):
        raise PermissionError("refused by the test")

    monkeypatch.setattr(sqlite_swap.os, "replace", refuse)
    inode = path.stat().st_ino
    SqliteBackupConnector("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
    assert path.stat().st_ino == inode
    assert count(path) == 3
    assert beside(path) == []
