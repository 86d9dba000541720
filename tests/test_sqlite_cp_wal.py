"""SqliteCPConnector on WAL databases: the streamed file is the snapshot, whole and untorn.

In WAL mode, commits land in the ``-wal`` file and any connection's checkpoint later writes them
into the database file. A file copy must therefore keep writers out *and* fold the log into the
file first; these tests commit at the worst moments and check what the copy holds.
"""

import sqlite3

import pytest

from dbbackup.db import sqlite as sqlite_module
from dbbackup.db.sqlite import SqliteCPConnector
from dbbackup.exceptions import DumpError


def make_wal_database(path) -> sqlite3.Connection:
    """A WAL database with one committed row; the returned writer never checkpoints on its own."""
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    writer.execute("INSERT INTO t (v) VALUES ('first')")
    return writer


def rows_of_copy(data: bytes, tmp_path) -> list[str]:
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(data)
    con = sqlite3.connect(copy)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [v for (v,) in con.execute("SELECT v FROM t ORDER BY id")]
    finally:
        con.close()


def test_commits_still_in_the_log_are_in_the_copy(tmp_path):
    path = tmp_path / "db.sqlite3"
    writer = make_wal_database(path)
    writer.execute("INSERT INTO t (v) VALUES ('only in the wal')")
    assert (tmp_path / "db.sqlite3-wal").stat().st_size > 0
    data = SqliteCPConnector("default", NAME=str(path)).create_dump().read()
    writer.close()
    assert rows_of_copy(data, tmp_path) == ["first", "only in the wal"]


def test_a_commit_just_before_the_copy_locks_is_in_the_copy(tmp_path, monkeypatch):
    """The race of the old copy: a commit between its checkpoint and its read transaction."""
    path = tmp_path / "db.sqlite3"
    writer = make_wal_database(path)
    real_connect = sqlite3.connect
    connections = []

    def commit_as_the_copy_begins(statement):
        if statement.startswith("BEGIN"):
            writer.execute("INSERT INTO t (v) VALUES ('committed at the last moment')")

    def connect(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        if not connections:
            con.set_trace_callback(commit_as_the_copy_begins)
        connections.append(con)
        return con

    monkeypatch.setattr(sqlite_module.sqlite3, "connect", connect)
    data = SqliteCPConnector("default", NAME=str(path)).create_dump().read()
    monkeypatch.undo()
    writer.close()
    assert rows_of_copy(data, tmp_path) == ["first", "committed at the last moment"]


def test_no_commit_and_no_checkpoint_can_change_the_file_while_it_streams(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    writer = make_wal_database(path)
    monkeypatch.setattr(sqlite_module, "CHUNK_SIZE", 512)
    stream = SqliteCPConnector("default", NAME=str(path)).create_dump()
    head = stream.read(512)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        writer.execute("INSERT INTO t (v) VALUES ('during the copy')")
    other = sqlite3.connect(path, isolation_level=None)
    assert other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0  # nothing left
    other.close()
    data = head + stream.read()
    stream.close()
    writer.execute("INSERT INTO t (v) VALUES ('after the copy')")  # writers go on afterwards
    writer.close()
    assert rows_of_copy(data, tmp_path) == ["first"]


def test_a_reader_of_an_older_snapshot_makes_the_copy_refuse_not_tear(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    writer = make_wal_database(path)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds the snapshot with one row
    writer.execute("INSERT INTO t (v) VALUES ('newer than the reader')")
    monkeypatch.setattr(sqlite_module, "WAL_BACKFILL_WAIT", 0.2)
    with pytest.raises(DumpError, match="older snapshot"):
        SqliteCPConnector("default", NAME=str(path)).create_dump().read()
    reader.close()
    writer.close()


def test_rollback_journal_databases_keep_writers_out_while_the_file_streams(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    writer.execute("INSERT INTO t (v) VALUES ('first')")
    monkeypatch.setattr(sqlite_module, "CHUNK_SIZE", 512)
    stream = SqliteCPConnector("default", NAME=str(path)).create_dump()
    head = stream.read(512)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        writer.execute("INSERT INTO t (v) VALUES ('during the copy')")
    data = head + stream.read()
    stream.close()
    writer.close()
    assert rows_of_copy(data, tmp_path) == ["first"]
