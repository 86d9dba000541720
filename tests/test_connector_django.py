"""DjangoConnector specifics: engine-neutral fixtures, exclusions, no-drop merging."""

import json

import pytest

from dbbackup import pipeline
from dbbackup.db.django import DjangoConnector
from dbbackup.exceptions import DbbackupConfigurationError
from tests.helpers import add_known_data
from tests.testapp.models import Note, Tag

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
DJANGO = {"CONNECTOR": "dbbackup.db.django.DjangoConnector"}


@pytest.mark.postgres
def test_a_fixture_from_sqlite_restores_into_postgresql(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO, "postgres": DJANGO}
    add_known_data("default")
    name = pipeline.backup_database("default").filename
    pipeline.restore_database("postgres", input_filename=name)

    def notes(alias):
        return [
            (note.pk, note.title, note.body, bytes(note.payload), note.extra)
            for note in Note.objects.using(alias).order_by("pk")
        ]

    assert notes("postgres") == notes("default")
    assert Note.objects.using("postgres").count() == 3


def test_the_fixture_keeps_primary_keys_and_uses_natural_keys_for_content_types(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    add_known_data("default")
    name = pipeline.backup_database("default").filename
    fixture = json.loads((backup_dir / name).read_text())
    notes = [item for item in fixture if item["model"] == "testapp.note"]
    assert [item["pk"] for item in notes] == list(Note.objects.values_list("pk", flat=True).order_by("pk"))
    permission = next(item for item in fixture if item["model"] == "auth.permission")
    assert isinstance(permission["fields"]["content_type"], list)  # ["app_label", "model"]


def test_exclude_accepts_tables_models_and_apps(settings):
    connector = DjangoConnector("default", EXCLUDE=["testapp_tag", "auth.Permission", "contenttypes"])
    assert connector.exclude_labels() == ["testapp.Tag", "auth.Permission", "contenttypes"]
    with pytest.raises(DbbackupConfigurationError, match="Cannot exclude 'no_such_table'"):
        DjangoConnector("default", EXCLUDE=["no_such_table"]).exclude_labels()


def test_excluded_tables_are_not_in_the_fixture(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    add_known_data("default")
    name = pipeline.backup_database("default", exclude_tables=["testapp_tag"]).filename
    models = {item["model"] for item in json.loads((backup_dir / name).read_text())}
    assert "testapp.note" in models
    assert "testapp.tag" not in models


def test_no_drop_merges_into_the_existing_rows(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    add_known_data("default")
    name = pipeline.backup_database("default").filename
    Tag.objects.all().delete()
    Note.objects.create(title="added after the backup")
    pipeline.restore_database("default", input_filename=name, no_drop=True)
    assert Note.objects.filter(title="added after the backup").exists()
    assert Tag.objects.count() == 3
    pipeline.restore_database("default", input_filename=name)
    assert not Note.objects.filter(title="added after the backup").exists()


def test_a_restore_leaves_excluded_tables_alone(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"default": DJANGO}
    add_known_data("default")
    name = pipeline.backup_database("default", exclude_tables=["testapp_tag"]).filename
    Tag.objects.all().delete()
    note = Note.objects.first()
    Tag.objects.create(note=note, label="made after the backup")
    pipeline.restore_database("default", input_filename=name)
    assert list(Tag.objects.values_list("label", flat=True)) == ["made after the backup"]
