"""Helpers for the tests: known data, and exact snapshots of SQLite databases."""

from __future__ import annotations

from django.db import connections

from tests.testapp.models import Note, Tag

UNICODE_TEXT = "Zürich – 東京 – ☃ – emoji 🎉 – quote ' \" – tab\t– newline\n– end"
BINARY = bytes(range(256)) * 3 + b"\x00\x00\xff"


def add_known_data(alias: str = "default", count: int = 3) -> None:
    """Rows with unicode, binary, JSON and foreign keys, plus a deleted row (a gap in the ids)."""
    for number in range(count):
        note = Note.objects.using(alias).create(
            title=f"note {number} {UNICODE_TEXT[:20]}",
            body=UNICODE_TEXT * (number + 1),
            payload=BINARY[number:],
            extra={"n": number, "text": UNICODE_TEXT, "list": [1.5, None, True]},
        )
        Tag.objects.using(alias).create(note=note, label=f"tag-{number}")
    Note.objects.using(alias).create(title="deleted").delete()


def snapshot(alias: str = "default") -> dict[str, object]:
    """Every table's schema and rows (in rowid order), including sqlite_sequence."""
    connection = connections[alias]
    connection.ensure_connection()
    raw = connection.connection
    tables = raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    result: dict[str, object] = {}
    for name, sql in tables:
        quoted = '"' + name.replace('"', '""') + '"'
        order = "" if name == "sqlite_sequence" else " ORDER BY rowid"
        result[name] = (sql, raw.execute(f"SELECT * FROM {quoted}{order}").fetchall())
    return result


def rows(alias: str) -> dict[str, list[tuple]]:
    """Every table's rows on any engine, ordered by the first column, binary as bytes."""
    connection = connections[alias]
    result = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted} ORDER BY 1")  # introspected names only
            result[table] = [
                tuple(bytes(value) if isinstance(value, memoryview | bytearray) else value for value in row)
                for row in cursor.fetchall()
            ]
    return result


def columns(alias: str) -> dict[str, list[str]]:
    """Every table's column names on any engine."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        return {
            table: [column.name for column in connection.introspection.get_table_description(cursor, table)]
            for table in sorted(connection.introspection.table_names(cursor))
        }
