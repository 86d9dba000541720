"""One suite that every built-in connector passes on its real engine.

SQLite always runs; PostgreSQL and MariaDB run against the servers (skipped without them,
failed on CI). Each case goes through the whole pipeline: connector, codec, storage, digest.
"""

import io
import sys
import types
from pathlib import Path

import pytest
from django.db import connections

from dbbackup import pipeline
from dbbackup.db.base import get_connector
from dbbackup.exceptions import CommandConnectorError, ConnectorError, CorruptBackupError
from dbbackup.storage import get_storage
from tests.helpers import BINARY, UNICODE_TEXT, add_known_data, columns, rows
from tests.testapp.models import Note


def _load_documented_example() -> str:
    """Import the example connector of docs/writing-a-connector.md as ``documented_connector``."""
    page = (Path(__file__).parent.parent / "docs" / "writing-a-connector.md").read_text()
    code = page.split("## An example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("documented_connector")
    exec(compile(code, "docs/writing-a-connector.md", "exec"), module.__dict__)  # noqa: S102 - our own docs
    sys.modules[module.__name__] = module
    return "documented_connector.SqliteShellConnector"


DOCUMENTED_CONNECTOR = _load_documented_example()

CASES = [
    pytest.param(("default", "dbbackup.db.sqlite.SqliteBackupConnector"), id="sqlite-backup"),
    pytest.param(("default", "dbbackup.db.sqlite.SqliteConnector"), id="sqlite-sql"),
    pytest.param(("default", "dbbackup.db.sqlite.SqliteCPConnector"), id="sqlite-cp"),
    pytest.param(
        ("postgres", "dbbackup.db.postgresql.PgDumpBinaryConnector"),
        marks=pytest.mark.postgres,
        id="pg-binary",
    ),
    pytest.param(
        ("postgres", "dbbackup.db.postgresql.PgDumpConnector"), marks=pytest.mark.postgres, id="pg-plain"
    ),
    pytest.param(
        ("postgres", "dbbackup.db.postgresql.PgDumpGisConnector"), marks=pytest.mark.postgres, id="pg-gis"
    ),
    pytest.param(("mysql", "dbbackup.db.mysql.MysqlDumpConnector"), marks=pytest.mark.mysql, id="mysql"),
    pytest.param(("default", "dbbackup.db.django.DjangoConnector"), id="django-sqlite"),
    pytest.param(("default", DOCUMENTED_CONNECTOR), id="documented-example"),
    pytest.param(
        ("postgres", "dbbackup.db.django.DjangoConnector"), marks=pytest.mark.postgres, id="django-pg"
    ),
    pytest.param(("mysql", "dbbackup.db.django.DjangoConnector"), marks=pytest.mark.mysql, id="django-mysql"),
]
ALL_DATABASES = ["default", "other", "postgres", "mysql"]


@pytest.fixture(params=CASES)
def case(request, settings, backup_dir):
    alias, connector = request.param
    settings.DBBACKUP_CONNECTORS = {alias: {"CONNECTOR": connector}}
    return alias, connector


pytestmark = pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)


def backup(alias, **options):
    return pipeline.backup_database(alias, **options).filename


def restore(alias, filename, **options):
    return pipeline.restore_database(alias, input_filename=filename, **options)


def big_data(alias):
    add_known_data(alias)
    Note.objects.using(alias).create(title="large", body="ünïcødé " * 150_000, payload=BINARY * 500)
    Note.objects.using(alias).create(title="gap: deleted, so the sequence is past the newest row").delete()


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_round_trip_is_exact_including_sequences(case, compression):
    alias, _ = case
    big_data(alias)
    before = rows(alias)
    name = backup(alias, compression=compression)
    Note.objects.using(alias).all().delete()
    Note.objects.using(alias).create(title="added after the backup")
    restore(alias, name)
    assert rows(alias) == before
    newest = max(row[0] for row in before["testapp_note"])
    next_id = Note.objects.using(alias).create(title="next").pk
    if getattr(get_connector(alias), "restores_sequences", True):
        assert next_id == newest + 2  # the sequence continues: ids of deleted rows are not reused
    else:
        assert next_id > newest


def test_unicode_binary_and_json_come_back_as_values(case):
    alias, _ = case
    add_known_data(alias)
    name = backup(alias)
    Note.objects.using(alias).all().delete()
    restore(alias, name)
    note = Note.objects.using(alias).order_by("pk").first()
    assert UNICODE_TEXT in note.body
    assert bytes(note.payload) == BINARY
    assert note.extra == {"n": 0, "text": UNICODE_TEXT, "list": [1.5, None, True]}


def test_empty_database_round_trips(case):
    alias, _ = case
    before = rows(alias)
    name = backup(alias)
    add_known_data(alias)
    restore(alias, name)
    assert rows(alias) == before


def test_restore_over_changed_and_dropped_tables(case):
    alias, _ = case
    if not getattr(get_connector(alias), "restores_schema", True):
        pytest.skip("this connector restores rows into the schema the migrations made")
    add_known_data(alias)
    before, before_columns = rows(alias), columns(alias)
    name = backup(alias)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name('testapp_tag')}")
        cursor.execute(
            f"ALTER TABLE {connection.ops.quote_name('testapp_note')} ADD COLUMN late_column integer NULL"
        )
        cursor.execute(f"DELETE FROM {connection.ops.quote_name('testapp_note')}")
    restore(alias, name)
    assert rows(alias) == before
    assert columns(alias) == before_columns


def test_tampered_backup_changes_nothing(case, backup_dir):
    alias, _ = case
    add_known_data(alias)
    name = backup(alias, compression="gzip")
    data = bytearray((backup_dir / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (backup_dir / name).write_bytes(bytes(data))
    Note.objects.using(alias).create(title="newer")
    before = rows(alias)
    with pytest.raises(CorruptBackupError):
        restore(alias, name)
    assert rows(alias) == before


def test_garbage_input_changes_nothing(case):
    alias, _ = case
    add_known_data(alias)
    get_storage().write_file(io.BytesIO(b"this is not a dump at all\x00\x01"), "garbage.dump")
    before = rows(alias)
    with pytest.raises((ConnectorError, CorruptBackupError)):
        restore(alias, "garbage.dump")
    assert rows(alias) == before


def test_missing_binary_names_the_tool(case, settings):
    alias, connector = case
    if ".sqlite." in connector or ".django." in connector:
        pytest.skip("this connector runs no external tool")
    settings.DBBACKUP_CONNECTORS[alias]["DUMP_CMD"] = "no-such-dump-tool"
    with pytest.raises(
        CommandConnectorError, match=r"'no-such-dump-tool' was not found on PATH\. Install the"
    ):
        backup(alias)
    assert get_storage().list_directory() == []
