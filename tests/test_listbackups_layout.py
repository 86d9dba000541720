"""``listbackups`` keeps django-dbbackup's table layout first: Name in 40 columns, Datetime in 20."""

import io

import pytest
from django.core.management import call_command

from dbbackup.storage import get_storage

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

NAMES = ["default-h-2026-01-01-000000.sqlite3", "h-2026-01-04-000000.tar"]


def listing(*args):
    out = io.StringIO()
    call_command("listbackups", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


@pytest.fixture
def stored(backup_dir):
    storage = get_storage()
    for name in NAMES:
        storage.write_file(io.BytesIO(b"x"), name)


def test_header_is_upstreams_name_and_datetime_then_ours(stored):
    header = listing()[0]
    assert header.startswith(f"{'Name':<40} {'Datetime':<20}")  # django-dbbackup's exact header
    assert header.split() == ["Name", "Datetime", "Type", "Database", "Server", "Size", "Drill"]


def test_rows_keep_the_name_and_date_at_upstreams_columns(stored):
    rows = listing()[1:]
    assert [row[:40].rstrip() for row in rows] == NAMES
    assert [row[41:61].rstrip() for row in rows] == ["2026-01-01 00:00:00", "2026-01-04 00:00:00"]
    assert [row.split()[0] for row in rows] == NAMES  # awk '{print $1}' gets the name


def test_quiet_leaves_out_the_header_only(stored):
    assert [row.split()[0] for row in listing("-q")] == NAMES


def test_a_long_name_widens_the_column_for_every_row(backup_dir):
    long_name = "a-very-long-database-alias-name-h-2026-01-02-000000.sqlite3"
    get_storage().write_file(io.BytesIO(b"x"), long_name)
    get_storage().write_file(io.BytesIO(b"x"), NAMES[0])
    lines = listing()
    width = len(long_name)
    assert lines[0][: width + 1] == f"{'Name':<{width}} "
    assert all(line[width + 1 :].startswith("2026-01-0") for line in lines[1:])
