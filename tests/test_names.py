from datetime import datetime

import pytest
from django.test import override_settings

from dbbackup import names
from dbbackup.exceptions import DbbackupConfigurationError

WHEN = datetime(2026, 11, 21, 15, 1, 15)


def test_default_names_match_django_dbbackup():
    assert names.generate_filename("sqlite3", "default", "host1", when=WHEN) == (
        "default-host1-2026-11-21-150115.sqlite3"
    )
    assert (
        names.generate_filename("tar.gz", "", "msrv", "media", when=WHEN) == "msrv-2026-11-21-150115.tar.gz"
    )


def test_servername_defaults_to_hostname():
    assert names.generate_filename("dump", "default", when=WHEN) == "default-testhost-2026-11-21-150115.dump"


def test_databasename_is_alias_basename_cut_at_first_dot():
    assert names.database_name_for_filename("path/to/my.db.sqlite3") == "my"
    assert names.generate_filename("dump", "a.b", "h", when=WHEN).startswith("a-h-")


def test_runs_of_dashes_collapse_and_a_leading_dash_goes():
    with override_settings(
        DBBACKUP_FILENAME_TEMPLATE="{databasename}--{servername}---{datetime}.{extension}"
    ):
        assert names.generate_filename("dump", "", "h", when=WHEN) == "h-2026-11-21-150115.dump"


def test_callable_template_gets_keyword_fields():
    seen = {}

    def template(**fields):
        seen.update(fields)
        return f"{fields['content_type']}/{fields['databasename']}/{fields['datetime']}.{fields['extension']}"

    with override_settings(DBBACKUP_FILENAME_TEMPLATE=template):
        name = names.generate_filename("sqlite3", "default", "h", when=WHEN)
        assert name == "db/default/2026-11-21-150115.sqlite3"
        assert set(seen) == set(names.FIELDS)
        parsed = names.parse(name, "db", database="default")
        assert parsed is not None
        assert parsed.date == WHEN
        assert names.parse(name, "db", database="other") is None


def test_bad_template_type_is_a_configuration_error():
    with (
        override_settings(DBBACKUP_FILENAME_TEMPLATE=42),
        pytest.raises(DbbackupConfigurationError, match="DBBACKUP_FILENAME_TEMPLATE"),
    ):
        names.generate_filename("dump", "default")


def test_unknown_template_field_is_a_configuration_error():
    with (
        override_settings(DBBACKUP_FILENAME_TEMPLATE="{database}-{datetime}.{extension}"),
        pytest.raises(DbbackupConfigurationError, match="may use"),
    ):
        names.generate_filename("dump", "default")


def test_parse_reads_every_field_back():
    parsed = names.parse("default-web-1-2026-11-21-150115.psql.bin.gz.gpg")
    assert parsed == names.ParsedName(
        name="default-web-1-2026-11-21-150115.psql.bin.gz.gpg",
        content_type="db",
        extension="psql.bin",
        compression="gzip",
        encrypted=True,
        databasename="default",
        servername="web-1",
        datestring="2026-11-21-150115",
    )
    assert parsed.date == WHEN


def test_database_filter_matches_the_whole_field_not_a_substring():
    name2 = "default2-host-2026-11-21-150115.sqlite3"
    assert names.parse(name2, "db", database="default") is None
    assert names.parse(name2, "db", database="default2") is not None
    assert names.parse("default-host-2026-11-21-150115.sqlite3", "db", database="default2") is None


def test_servername_filter_matches_the_whole_field():
    name = "default-web-12-2026-11-21-150115.sqlite3"
    assert names.parse(name, "db", database="default", servername="web-12") is not None
    assert names.parse(name, "db", database="default", servername="web-1") is None
    assert names.parse(name, "db", database="default", servername="12") is None


def test_media_and_db_are_told_apart_by_the_tar_extension():
    assert names.parse("host-2026-11-21-150115.tar.gz").content_type == "media"
    assert names.parse("default-host-2026-11-21-150115.dump").content_type == "db"
    assert names.parse("host-2026-11-21-150115.tar", "db") is None


@pytest.mark.parametrize(
    "name",
    [
        "default-host-2026-11-21-150115.sqlite3.metadata",
        ".default-host-2026-11-21-150115.sqlite3.partial-0123abcd",
        "notes.txt",
        "default-host-2026-13-21.sqlite3",
    ],
)
def test_non_backups_are_not_recognised(name):
    assert names.parse(name) is None


def test_custom_date_format_round_trips():
    with override_settings(DBBACKUP_DATE_FORMAT="%Y%m%dT%H%M%S"):
        name = names.generate_filename("dump", "default", "h", when=WHEN)
        assert name == "default-h-20261121T150115.dump"
        assert names.parse(name).date == WHEN


def test_date_format_that_cannot_be_read_back_is_refused():
    with pytest.raises(DbbackupConfigurationError, match="%Z"):
        names.datefmt_to_regex("%Y-%Z")


def test_folder_templates_are_detected():
    assert not names.template_has_folders("db")
    with override_settings(DBBACKUP_FILENAME_TEMPLATE="{databasename}/{datetime}.{extension}"):
        assert names.template_has_folders("db")


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        ("sqlite3", ("sqlite3", None, False)),
        ("sqlite3.gz", ("sqlite3", "gzip", False)),
        ("psql.bin.gz.gpg", ("psql.bin", "gzip", True)),
        ("tar.gpg", ("tar", None, True)),
        ("dump.zst", ("dump", "zstd", False)),
    ],
)
def test_split_suffixes(extension, expected):
    assert names.split_suffixes(extension) == expected


def test_utils_reexports_keep_working():
    from dbbackup import utils

    assert utils.filename_to_datestring("x-2026-11-21-150115.dump") == "2026-11-21-150115"
    assert utils.filename_to_date("x-2026-11-21-150115.dump") == WHEN
    assert utils.filename_to_date("nothing") is None
    assert utils.filename_generate("dump", "default", "h").startswith("default-h-")


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_longer_alias_that_extends_another_keeps_its_backups(settings):
    settings.DATABASES = {**settings.DATABASES, "default-replica": settings.DATABASES["default"]}
    name = "default-replica-web1-2026-11-21-150115.sqlite3"
    assert names.parse(name, "db", database="default") is None
    assert names.parse(name, "db", database="default-replica").servername == "web1"
    assert (
        names.parse("default-web1-2026-11-21-150115.sqlite3", "db", database="default").servername == "web1"
    )


def test_a_callable_template_that_cannot_be_read_backwards_refuses_filtered_lookups(settings):
    def strict(**fields):
        datetime.strptime(fields["datetime"], "%Y-%m-%d-%H%M%S")  # fails on placeholders
        return f"{fields['databasename']}-{fields['datetime']}.{fields['extension']}"

    settings.DBBACKUP_FILENAME_TEMPLATE = strict
    name = "other-2026-11-21-150115.dump"
    assert names.parse(name) is not None  # plain listing still works
    with pytest.raises(DbbackupConfigurationError, match="cannot be told apart"):
        names.parse(name, "db", database="default")


def test_a_slash_in_the_date_format_means_folders(settings):
    settings.DBBACKUP_DATE_FORMAT = "%Y/%m/%d-%H%M%S"
    assert names.template_has_folders("db")
    name = names.generate_filename("dump", "default", "h", when=WHEN)
    assert name == "default-h-2026/11/21-150115.dump"
    assert names.parse(name, "db", database="default").date == WHEN
