"""Backups whose names no filename template reads but that carry a date (issue #14, part 2).

After a template change, or under django-dbbackup's older default names, such backups are
listed and can be restored as the newest of their database; retention deletes only those that
are certainly the database's (alias as a whole field, its connector's extension).
"""

import io

import pytest
from django.core.management import call_command

from dbbackup import catalog, loose_names, retention
from dbbackup.storage import get_storage
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

NEW_TEMPLATE = "{datetime}_{servername}_{databasename}.{extension}"


def store(*names_):
    storage = get_storage()
    for name in names_:
        storage.write_file(io.BytesIO(b"x"), name)
    return storage


def listing() -> list[list[str]]:
    out = io.StringIO()
    call_command("listbackups", stdout=out)
    return [line.split() for line in out.getvalue().splitlines()]


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_a_backup_under_the_old_template_is_listed_and_restored_as_the_newest(backup_dir, settings):
    add_known_data()
    before = snapshot()
    call_command("dbbackup", "-d", "default", stderr=io.StringIO())
    [old_name] = get_storage().list_backups()
    (backup_dir / f"{old_name}.metadata").unlink()  # as django-dbbackup < 5.1 left them
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE

    [entry] = catalog.find(get_storage(), database="default")
    assert (entry.name, entry.database, entry.loose, entry.deletable) == (old_name, "default", True, True)
    row = next(row for row in listing() if row[0] == old_name)
    assert row[1:5] == [entry.date.strftime("%Y-%m-%d"), entry.date.strftime("%H:%M:%S"), "db", "default"]

    Note.objects.all().delete()
    call_command("dbrestore", "-d", "default", "--noinput", stderr=io.StringIO())
    assert snapshot() == before


def test_the_newest_is_chosen_across_templates(backup_dir, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE
    storage = store(
        "default-testhost-2026-01-03-000000.sqlite3",  # old template, newest
        "2026-01-02-000000_testhost_default.sqlite3",  # current template
        "default-2026-01-01-000000.sqlite3",  # django-dbbackup's oldest layout
    )
    assert storage.get_latest_backup(content_type="db", database="default") == (
        "default-testhost-2026-01-03-000000.sqlite3"
    )
    oldest = storage.get_older_backup(content_type="db", database="default")
    assert oldest == "default-2026-01-01-000000.sqlite3"
    assert storage.list_backups(database="other") == []


def test_a_dated_name_without_an_alias_is_listed_but_never_chosen_or_deleted(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = store("2015-02-08-042810.bak", "default-testhost-2026-01-01-000000.sqlite3")
    row = next(row for row in listing() if row[0] == "2015-02-08-042810.bak")
    assert row[1:4] == ["2015-02-08", "04:28:10", "unrecognised"]
    assert storage.get_latest_backup(database="default") == "default-testhost-2026-01-01-000000.sqlite3"
    assert storage.list_backups(content_type="db") == ["default-testhost-2026-01-01-000000.sqlite3"]
    retention.prune(storage, content_type="db")
    retention.prune(storage, content_type="db", database="default")
    assert "2015-02-08-042810.bak" in storage.list_directory()


def test_cleanup_removes_only_certain_old_backups(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE
    certain = [f"default-testhost-2026-01-0{day}-000000.sqlite3" for day in (1, 2, 3)]
    uncertain = [
        "default-testhost-2025-01-01-000000.dump",  # not the sqlite connector's extension
        "backup-2025-01-01-000000.sqlite3",  # no alias
        "default-other-2025-01-01-000000.sqlite3",  # two aliases: whose is it?
    ]
    storage = store(*certain, *uncertain, "2026-01-04-000000_testhost_default.sqlite3")
    decisions = retention.prune(storage, content_type="db", database="default")
    remaining = set(storage.list_directory())
    assert certain[2] in remaining  # the newest loosely named backup is kept (its own group)
    assert not {certain[0], certain[1]} & remaining
    assert set(uncertain) <= remaining
    assert "2026-01-04-000000_testhost_default.sqlite3" in remaining
    reasons = {decision.entry.name: decision.reasons for decision in decisions}
    assert reasons["default-testhost-2025-01-01-000000.dump"] == [retention.UNCERTAIN]


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_cleanup_through_dbbackup_clean(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE
    storage = store(
        "default-testhost-2020-01-01-000000.sqlite3", "default-testhost-2020-01-02-000000.sqlite3"
    )
    call_command("dbbackup", "-d", "default", "--clean", stderr=io.StringIO())
    remaining = [name for name in storage.list_directory() if not name.endswith(".metadata")]
    assert "default-testhost-2020-01-01-000000.sqlite3" not in remaining
    assert "default-testhost-2020-01-02-000000.sqlite3" in remaining
    assert len(remaining) == 2


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize("configured", [True, False])
def test_default2_backups_are_never_touched_when_pruning_default(backup_dir, settings, configured):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE
    if configured:
        settings.DATABASES = {**settings.DATABASES, "default2": settings.DATABASES["other"]}
    others = [
        *(f"default2-testhost-2026-01-0{day}-000000.sqlite3" for day in (1, 2, 3)),
        *(f"default_2-2026-01-0{day}-000000.sqlite3" for day in (1, 2)),
        "2026-01-09-000000-default2.sqlite3",
    ]
    mine = ["default-testhost-2025-01-01-000000.sqlite3", "default-2025-01-02-000000.sqlite3"]
    storage = store(*others, *mine)
    assert storage.list_backups(database="default") == [
        "default-testhost-2025-01-01-000000.sqlite3",
        "default-2025-01-02-000000.sqlite3",
    ]
    assert storage.get_latest_backup(database="default") == "default-2025-01-02-000000.sqlite3"
    retention.prune(storage, content_type="db", database="default")
    remaining = set(storage.list_directory())
    assert set(others) <= remaining
    assert "default-testhost-2025-01-01-000000.sqlite3" not in remaining
    if configured:
        assert storage.get_latest_backup(database="default2") == "2026-01-09-000000-default2.sqlite3"


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_longer_alias_wins_over_its_prefix(backup_dir, settings):
    settings.DATABASES = {**settings.DATABASES, "default-replica": settings.DATABASES["other"]}
    parsed = loose_names.parse("x-default-replica-2026-01-01-000000.sqlite3")
    assert parsed.alias == "default-replica"
    assert loose_names.parse("default-2026-01-01-000000.sqlite3").alias == "default"


def test_loose_media_backups_are_listed_and_restorable_but_not_pruned(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP_MEDIA = 1
    settings.DBBACKUP_MEDIA_FILENAME_TEMPLATE = "media_{servername}_{datetime}.{extension}"
    storage = store("web1-2026-01-01-000000.tar", "web1-2026-01-02-000000.tar.gz")
    assert storage.get_latest_backup(content_type="media") == "web1-2026-01-02-000000.tar.gz"
    assert storage.list_backups(content_type="db") == []
    retention.prune(storage, content_type="media")
    assert len(storage.list_directory()) == 2


def test_an_upstream_sidecar_without_date_or_database_is_completed_from_the_name(backup_dir, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = NEW_TEMPLATE
    storage = store("default-testhost-2026-01-01-000000.sqlite3")
    storage.write_file(
        io.BytesIO(b'{"engine": "django.db.backends.sqlite3", "connector": "x.Y"}'),
        "default-testhost-2026-01-01-000000.sqlite3.metadata",
    )
    [entry] = catalog.find(storage, database="default")
    assert entry.has_metadata
    assert (entry.date.year, entry.database) == (2026, "default")
