"""Retention rules on synthetic timestamps, discovery by name and by sidecar, prune and listing."""

import io
import json
import re
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import catalog, manifest, retention
from dbbackup.catalog import Entry
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.storage import get_storage

NOW = datetime(2026, 11, 21, 15, 0, 0)


def entries(*dates):
    return [Entry(f"b-{d:%Y%m%d%H%M}", "db", "default", "h", d, None, False) for d in dates]


def kept(decisions):
    return [d.entry.date for d in decisions if d.keep]


def test_keep_last():
    dates = [NOW - timedelta(days=n) for n in range(5)]
    assert kept(retention.plan(entries(*dates), retention.Policy(last=2))) == dates[:2]


def test_keep_within_counts_back_from_the_newest_backup():
    dates = [NOW - timedelta(days=n) for n in (0, 1, 6, 7, 8)]
    decisions = retention.plan(entries(*dates), retention.Policy(within=timedelta(days=7)))
    assert kept(decisions) == dates[:4]
    assert decisions[0].reasons == ["within 7 days of the newest"]


@pytest.mark.parametrize(
    ("rule", "step", "expected"),
    [
        ("hourly", timedelta(minutes=20), 3),
        ("daily", timedelta(hours=8), 3),
        ("weekly", timedelta(days=3), 3),
        ("monthly", timedelta(days=12), 3),
        ("yearly", timedelta(days=150), 3),
    ],
)
def test_calendar_rules_keep_the_newest_backup_of_each_recent_period(rule, step, expected):
    dates = [NOW - step * n for n in range(40)]
    decisions = retention.plan(entries(*dates), retention.Policy(**{rule: expected}))
    bucket = retention.CALENDAR_RULES[rule]
    kept_dates = kept(decisions)
    assert len(kept_dates) == expected
    assert len({bucket(d) for d in kept_dates}) == expected  # one per period
    for date in kept_dates:  # and the newest of its period
        assert date == max(d for d in dates if bucket(d) == bucket(date))
    assert kept_dates[0] == NOW


def test_rules_combine_as_a_union_and_say_why():
    dates = [NOW - timedelta(days=n) for n in range(60)]
    decisions = retention.plan(entries(*dates), retention.Policy(last=2, weekly=4, monthly=2))
    reasons = {d.entry.date: d.reasons for d in decisions if d.keep}
    assert reasons[NOW] == ["one of the last 2", "weekly 1/4", "monthly 1/2"]
    assert len(reasons) == len({*dates[:2], *(d for d in reasons)})


def test_keep_filter_pins_and_undated_backups_are_never_deleted():
    pinned, plain = entries(NOW - timedelta(days=3), NOW - timedelta(days=4))
    undated = Entry("custom-name", "db", "default", "h", None, None, False)
    decisions = retention.plan([pinned, plain, undated], retention.Policy(last=0), lambda n: n == pinned.name)
    assert [(d.entry.name, d.keep) for d in decisions] == [
        (pinned.name, True),
        (plain.name, False),
        ("custom-name", True),
    ]


@pytest.mark.parametrize(("text", "days"), [("30d", 30), ("2w", 14), ("1y", 365), ("6m", 180), ("1w 2d", 9)])
def test_durations(text, days):
    assert retention.parse_duration(text) == timedelta(days=days)
    assert retention.parse_duration("12h") == timedelta(hours=12)


def test_bad_policy_values_are_configuration_errors(settings):
    with pytest.raises(DbbackupConfigurationError, match="not a duration"):
        retention.parse_duration("a fortnight")
    settings.DBBACKUP_CLEANUP_KEEP_DAILY = -1
    with pytest.raises(DbbackupConfigurationError, match="'daily' retention count"):
        retention.Policy.from_settings("db")


# -- against a storage ---------------------------------------------------------------------


def store(*names, metadata=None):
    storage = get_storage()
    for name in names:
        storage.write_file(io.BytesIO(name.encode()), name)
        if metadata is not None:
            storage.write_file(io.BytesIO(json.dumps(metadata(name)).encode()), name + ".metadata")
    return storage


def day(n, alias="default", server="web1", ext="sqlite3"):
    return f"{alias}-{server}-2026-01-{n:02d}-000000.{ext}"


def test_prune_keeps_n_per_database_and_per_server(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 2
    names = [
        day(n, alias, server)
        for n in range(1, 5)
        for alias in ("default", "other")
        for server in ("web1", "web2")
    ]
    storage = store(*names)
    retention.prune(storage, content_type="db", database="default")
    remaining = set(storage.list_directory())
    for server in ("web1", "web2"):
        assert {day(3, "default", server), day(4, "default", server)} <= remaining
        assert day(2, "default", server) not in remaining
    assert all(day(n, "other", server) in remaining for n in range(1, 5) for server in ("web1", "web2"))


def test_dry_run_deletes_nothing_and_says_what_and_why(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = store(day(1), day(2), day(3))
    out = io.StringIO()
    call_command("prunebackups", "-d", "default", "-c", "db", "--dry-run", stderr=out, stdout=io.StringIO())
    text = out.getvalue()
    assert re.search(rf"keep +{re.escape(day(3))}  \(one of the last 1\)", text)
    assert f"would delete  {day(1)}" in text
    assert "Would delete 2 backup(s); kept 1." in text
    assert sorted(storage.list_directory()) == [day(1), day(2), day(3)]


def test_prunebackups_options_override_the_settings(backup_dir):
    storage = store(*(day(n) for n in range(1, 8)))
    call_command("prunebackups", "-c", "db", "--keep-last", "0", "--keep-daily", "3", stderr=io.StringIO())
    assert storage.list_directory() == [day(5), day(6), day(7)]


def test_sidecars_go_with_their_backups_and_orphans_are_swept(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = store(day(1), day(2), metadata=lambda name: {"engine": "x", "connector": "y"})
    storage.write_file(io.BytesIO(b"{}"), day(9) + ".metadata")  # its backup is gone
    storage.delete_file(day(2) + ".metadata")  # a backup without sidecar is still a backup
    retention.prune(storage, content_type="db", database="default")
    assert storage.list_directory() == [day(2)]


def test_backups_under_custom_names_are_found_by_their_sidecar(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    created = {"nightly.bin": "2026-01-05T00:00:00+00:00", "weekly.bin": "2026-01-01T00:00:00+00:00"}

    def sidecar(name):
        return {"engine": "x", "connector": "y", "dbbackup": {"created": created[name], "database": "default",
                "servername": "web1", "content_type": "db"}}  # fmt: skip

    storage = store("nightly.bin", "weekly.bin", metadata=sidecar)
    assert storage.get_latest_backup(database="default", content_type="db") == "nightly.bin"
    assert storage.list_backups(database="other") == []
    retention.prune(storage, content_type="db", database="default")
    assert sorted(storage.list_directory()) == ["nightly.bin", "nightly.bin.metadata"]


def test_custom_string_and_callable_templates(backup_dir, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = "backup_{servername}_{databasename}_{datetime}.{extension}"
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = store(*(f"backup_web1_default_2026-01-0{n}-000000.dump" for n in (1, 2)))
    retention.prune(storage, content_type="db", database="default")
    assert storage.list_directory() == ["backup_web1_default_2026-01-02-000000.dump"]

    def by_folder(databasename, servername, datetime, extension, content_type):
        return f"{content_type}/{databasename}/{datetime}.{extension}"

    settings.DBBACKUP_FILENAME_TEMPLATE = by_folder
    storage = store(
        "db/default/2026-01-01-000000.dump",
        "db/default/2026-01-02-000000.dump",
        "db/other/2026-01-01-000000.dump",
    )
    retention.prune(storage, content_type="db", database="default")
    assert storage.list_backups(content_type="db") == [
        "db/other/2026-01-01-000000.dump",
        "db/default/2026-01-02-000000.dump",
    ]


def test_a_storage_listing_full_keys_under_its_location(settings):
    settings.STORAGES = {**settings.STORAGES, "dbbackup": {"BACKEND": "tests.storages.KeyListingStorage"}}
    storage = store(day(1), day(2))
    assert sorted(storage.storage.listdir("")[1]) == [f"backups/{day(1)}", f"backups/{day(2)}"]
    assert storage.list_backups(database="default") == [day(1), day(2)]


def test_listbackups_json_for_scripts(backup_dir):
    store(
        day(1),
        metadata=lambda name: {"engine": "x", "connector": "y", "dbbackup": {"sha256": "ab" * 32, "size": 5}},
    )
    store(day(2, ext="sqlite3.gz.gpg"), "notes.txt")
    out = io.StringIO()
    call_command("listbackups", "--format", "json", stdout=out)
    listed = {item["name"]: item for item in json.loads(out.getvalue())}
    first = listed[day(1)]
    assert first == {
        "name": day(1),
        "content_type": "db",
        "database": "default",
        "servername": "web1",
        "size": len(day(1)),
        "created": "2026-01-01T00:00:00",
        "compressed": False,
        "encrypted": False,
        "codec": None,
        "checksum": "sha256:" + "ab" * 32,
        "recognised": True,
        "drill": None,
    }
    second = listed[day(2, ext="sqlite3.gz.gpg")]
    assert (second["codec"], second["compressed"], second["encrypted"], second["checksum"]) == (
        "gzip",
        True,
        True,
        None,
    )
    assert listed["notes.txt"]["recognised"] is False


def test_listbackups_table_has_human_sizes_and_shows_unrecognised_files(backup_dir):
    storage = store(day(1), "notes.txt")
    storage.write_file(io.BytesIO(b"x" * 3000), day(2))
    out = io.StringIO()
    call_command("listbackups", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["Name", "Datetime", "Type", "Database", "Server", "Size", "Drill"]
    assert any(line.startswith(day(2)) and line.endswith("2.9 KiB") for line in lines)
    assert any(line.startswith("notes.txt") and "unrecognised" in line for line in lines)


def test_catalog_groups(backup_dir):
    store(day(1), day(2, server="web2"))
    groups = dict(catalog.iter_groups(catalog.find(get_storage(), content_type="db")))
    assert set(groups) == {("db", "default", "web1"), ("db", "default", "web2")}


def test_restoring_the_wrong_kind_is_refused(backup_dir):
    store("web1-2026-01-01-000000.tar")
    with pytest.raises(CommandError, match="is a media backup; restore it with `manage.py mediarestore`"):
        call_command("dbrestore", "-d", "default", "-i", "web1-2026-01-01-000000.tar", "--noinput")
    store(day(3), metadata=lambda name: {"engine": "x", "connector": "y"})
    with pytest.raises(CommandError, match="is a database backup; restore it with `manage.py dbrestore`"):
        call_command("mediarestore", "-i", day(3), "--noinput")
    assert manifest.content_type({"engine": "x"}) == "db"


def test_the_newest_backup_of_a_group_is_always_kept():
    dates = [NOW - timedelta(days=n) for n in range(3)]
    decisions = retention.plan(entries(*dates), retention.Policy(last=0))
    assert [(d.entry.date, d.reasons) for d in decisions if d.keep] == [
        (NOW, ["the newest backup is always kept"])
    ]
    assert retention.describe_duration(timedelta(hours=36)) == "1 day 12 hours"


def test_bad_retention_settings_stop_a_backup_before_it_starts(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP_WITHIN = "a while"
    with pytest.raises(CommandError, match="DBBACKUP_CLEANUP_KEEP_WITHIN = 'a while' is not a duration"):
        call_command("dbbackup", "-d", "default", "--clean", "-q")
    assert get_storage().list_directory() == []
    with pytest.raises(CommandError, match="--keep-within = 'soon' is not a duration"):
        call_command("prunebackups", "--keep-within", "soon", "--noinput", "-q")


def test_interactive_prune_asks_first(backup_dir, settings, monkeypatch):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = store(day(1), day(2))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda question: "n")
    call_command("prunebackups", "-c", "db", stderr=io.StringIO())
    assert storage.list_directory() == [day(1), day(2)]
    call_command("prunebackups", "-c", "db", "--noinput", stderr=io.StringIO())
    assert storage.list_directory() == [day(2)]


def test_dry_run_lines_up_its_columns(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    for stamp in ("2026-01-01-000000", "2026-01-02-000000", "2026-01-03-000000"):
        (backup_dir / f"default-testhost-{stamp}.sqlite3").parent.mkdir(parents=True, exist_ok=True)
        (backup_dir / f"default-testhost-{stamp}.sqlite3").write_bytes(b"x")
    (backup_dir / "default-testhost-2026-01-04-000000.sqlite3.gz").write_bytes(b"x")
    out = io.StringIO()
    call_command("prunebackups", "-d", "default", "-c", "db", "--dry-run", stderr=out, stdout=io.StringIO())
    rows = [line for line in out.getvalue().splitlines() if line.startswith("  ")]
    assert len(rows) == 4
    name_columns = {line.index("default-testhost") for line in rows}
    assert len(name_columns) == 1, rows
    kept = [line for line in rows if line.lstrip().startswith("keep")]
    assert kept
    assert all(line.index("(") == kept[0].index("(") for line in kept)
