import io
import sqlite3

import pytest
from django.db import connection, transaction

from dbbackup.db.base import get_connector
from dbbackup.db.sqlite import SqliteBackupConnector, SqliteConnector, SqliteCPConnector
from dbbackup.exceptions import CorruptBackupError, DumpError, RestoreError
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

CONNECTORS = [SqliteBackupConnector, SqliteConnector, SqliteCPConnector]
pytestmark = pytest.mark.django_db(transaction=True)


def dump_bytes(connector) -> bytes:
    stream = connector.create_dump()
    try:
        return stream.read()
    finally:
        stream.close()


@pytest.mark.parametrize("connector_class", CONNECTORS)
def test_round_trip_gives_back_exactly_the_backed_up_data(connector_class):
    add_known_data()
    before = snapshot()
    dump = dump_bytes(connector_class("default"))
    Note.objects.filter(pk__gt=1).delete()
    Note.objects.create(title="added after the backup")
    connector_class("default").restore_dump(io.BytesIO(dump))
    assert snapshot() == before


@pytest.mark.parametrize("connector_class", CONNECTORS)
def test_restore_over_a_changed_schema_gives_back_the_backed_up_schema(connector_class):
    add_known_data()
    before = snapshot()
    dump = dump_bytes(connector_class("default"))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE testapp_tag")
        cursor.execute("CREATE TABLE intruder (x TEXT)")
        cursor.execute('ALTER TABLE testapp_note ADD COLUMN "late" integer NULL')
    connector_class("default").restore_dump(io.BytesIO(dump))
    assert snapshot() == before


@pytest.mark.parametrize("connector_class", CONNECTORS)
def test_empty_database_round_trips(connector_class):
    before = snapshot()
    dump = dump_bytes(connector_class("default"))
    add_known_data()
    connector_class("default").restore_dump(io.BytesIO(dump))
    assert snapshot() == before


@pytest.mark.parametrize("connector_class", CONNECTORS)
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"\x00garbage" * 100, id="garbage"),
        pytest.param(lambda data: data[:100] + b"\xff" * 4096 + data[4196:], id="overwritten-pages"),
    ],
)
def test_damaged_input_leaves_the_database_as_it_was(connector_class, damage):
    add_known_data()
    dump = dump_bytes(connector_class("default"))
    Note.objects.create(title="state before the failed restore")
    before = snapshot()
    with pytest.raises((CorruptBackupError, RestoreError)):
        connector_class("default").restore_dump(io.BytesIO(damage(dump)))
    assert snapshot() == before


def test_sql_dump_is_one_statement_per_line_in_django_dbbackup_style():
    add_known_data()
    lines = dump_bytes(SqliteConnector("default")).decode().splitlines()
    assert any(line.startswith('CREATE TABLE IF NOT EXISTS "testapp_note"') for line in lines)
    assert any(line.startswith('INSERT OR REPLACE INTO "testapp_note"(') for line in lines)
    assert "DELETE FROM sqlite_sequence;" in lines


def test_sql_dump_excludes_the_rows_of_tables_not_the_tables():
    add_known_data()
    connector = SqliteConnector("default", EXCLUDE=["testapp_tag"])
    dump = dump_bytes(connector)
    text = dump.decode()
    assert 'INSERT OR REPLACE INTO "testapp_tag"' not in text
    assert 'INSERT OR REPLACE INTO "testapp_note"' in text
    connector.restore_dump(io.BytesIO(dump))
    assert Note.objects.count() == 3
    from tests.testapp.models import Tag

    assert Tag.objects.count() == 0  # the table is there, empty


def test_a_django_dbbackup_style_sql_dump_restores(tmp_path):
    legacy = (
        b'CREATE TABLE IF NOT EXISTS "note" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
        b'"title" text NOT NULL, "payload" BLOB NOT NULL);\n'
        b"INSERT OR REPLACE INTO \"note\" VALUES(7,'multi\nline ''quoted'' );\n',X'00FF');\n"
        b'CREATE TABLE IF NOT EXISTS "tag" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
        b'"note_id" integer NOT NULL REFERENCES "note" ("id") DEFERRABLE INITIALLY DEFERRED);\n'
        b'INSERT OR REPLACE INTO "tag" VALUES(1,7);\n'
        b'CREATE INDEX IF NOT EXISTS "tag_note_id" ON "tag" ("note_id");\n'
    )
    target = tmp_path / "target.sqlite3"
    SqliteConnector("default", NAME=str(target)).restore_dump(io.BytesIO(legacy))
    restored = sqlite3.connect(target)
    assert restored.execute("SELECT id, title, payload FROM note").fetchall() == [
        (7, "multi\nline 'quoted' );\n", b"\x00\xff")
    ]
    assert restored.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == [
        ("tag_note_id",)
    ]
    restored.close()


def test_a_sqlite3_shell_style_dump_restores():
    add_known_data()
    before = snapshot()
    source = sqlite3.connect(connection.settings_dict["NAME"])
    script = "\n".join(source.iterdump()).encode()  # BEGIN TRANSACTION; ... COMMIT;
    source.close()
    Note.objects.all().delete()
    SqliteConnector("default").restore_dump(io.BytesIO(script))
    assert snapshot()["testapp_note"] == before["testapp_note"]


def test_any_sqlite_connector_restores_any_sqlite_backup():
    add_known_data()
    before = snapshot()
    raw_file = dump_bytes(SqliteBackupConnector("default"))
    sql_text = dump_bytes(SqliteConnector("default"))
    for restorer, dump in [(SqliteConnector, raw_file), (SqliteCPConnector, sql_text)]:
        Note.objects.all().delete()
        restorer("default").restore_dump(io.BytesIO(dump))
        assert snapshot() == before


def test_restoring_inside_a_transaction_is_refused():
    dump = dump_bytes(SqliteBackupConnector("default"))
    with transaction.atomic(), pytest.raises(RestoreError, match="inside a transaction"):
        SqliteBackupConnector("default").restore_dump(io.BytesIO(dump))


def test_file_copy_of_an_in_memory_database_is_refused(settings):
    connector = SqliteCPConnector("default", NAME=":memory:")
    with pytest.raises(DumpError, match="in-memory"):
        connector.create_dump()


def test_backup_connector_works_on_a_database_django_does_not_hold(tmp_path):
    path = tmp_path / "standalone.sqlite3"
    standalone = sqlite3.connect(path)
    standalone.execute("CREATE TABLE t (x BLOB)")
    standalone.execute("INSERT INTO t VALUES (?)", (b"\x00\x01",))
    standalone.commit()
    standalone.close()
    connector = SqliteBackupConnector("default", NAME=str(path))
    dump = dump_bytes(connector)
    restored = tmp_path / "restored.sqlite3"
    SqliteBackupConnector("default", NAME=str(restored)).restore_dump(io.BytesIO(dump))
    assert sqlite3.connect(restored).execute("SELECT x FROM t").fetchall() == [(b"\x00\x01",)]


def test_wal_mode_database_round_trips(tmp_path):
    path = tmp_path / "wal.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [(str(i),) for i in range(1000)])
    db.commit()  # rows live in the -wal file, not yet in the main file
    for connector_class in CONNECTORS:
        dump = dump_bytes(connector_class("default", NAME=str(path)))
        db.execute("DELETE FROM t")
        db.commit()
        connector_class("default", NAME=str(path)).restore_dump(io.BytesIO(dump))
        assert db.execute("SELECT count(*) FROM t").fetchone() == (1000,), connector_class
    db.close()


def test_scratch_files_are_removed(tmp_path, settings):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    dump = dump_bytes(SqliteBackupConnector("default"))
    SqliteBackupConnector("default").restore_dump(io.BytesIO(dump))
    with pytest.raises(CorruptBackupError):
        SqliteBackupConnector("default").restore_dump(io.BytesIO(b"SQLite format 3\x00" + b"\x00" * 10))
    assert list(tmp_path.iterdir()) == []
    db_dir = connection.settings_dict["NAME"].rsplit("/", 1)[0]
    import os

    assert not [name for name in os.listdir(db_dir) if name.startswith(".dbbackup-")]


def test_get_connector_applies_connector_settings(settings):
    settings.DBBACKUP_CONNECTORS = {
        "default": {"CONNECTOR": "dbbackup.db.sqlite.SqliteConnector", "EXCLUDE": ["a"]}
    }
    connector = get_connector("default")
    assert isinstance(connector, SqliteConnector)
    assert connector.exclude == ["a"]
    assert connector.settings["ENGINE"] == "django.db.backends.sqlite3"


def test_restore_gives_up_when_another_process_holds_the_lock(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    dump = dump_bytes(SqliteBackupConnector("default", NAME=str(path)))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        connector = SqliteBackupConnector("default", NAME=str(path), OPTIONS={"timeout": 0.5})
        with pytest.raises(
            RestoreError, match="stayed locked by another connection for 0.5 s; nothing was restored"
        ):
            connector.restore_dump(io.BytesIO(dump))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
