"""The management commands end to end, on real storages and the real SQLite test databases."""

import gzip
import io
import json
import stat

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup.storage import get_storage
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

IN_MEMORY = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


def run(name, *args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture(params=["filesystem", "memory"])
def storage_kind(request, backup_dir, settings):
    if request.param == "memory":
        settings.STORAGES = {**settings.STORAGES, "dbbackup": IN_MEMORY}
    return request.param


def stored_names():
    return get_storage().list_directory()


def test_backup_list_restore_round_trips_byte_for_byte(storage_kind):
    add_known_data()
    before = snapshot()
    _, err = run("dbbackup", "-d", "default", "--noinput")
    assert "Backed up 'default' to default-testhost-" in err
    out, _ = run("listbackups")
    [backup] = get_storage().list_backups(database="default")
    assert backup in out
    Note.objects.all().delete()
    _, err = run("dbrestore", "-d", "default", "--noinput")
    assert "checksum verified" in err
    assert snapshot() == before


def test_compressed_backup_is_gzip_and_restores_with_or_without_z(storage_kind):
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z")
    [name] = get_storage().list_backups(database="default")
    assert name.endswith(".sqlite3.gz")
    with get_storage().read_file(name) as handle:
        assert gzip.decompress(handle.read()).startswith(b"SQLite format 3\x00")
    for flags in ([], ["-z"]):
        Note.objects.all().delete()
        run("dbrestore", "-d", "default", "--noinput", *flags)
        assert snapshot() == before


def test_metadata_sidecar_is_django_dbbackup_compatible(backup_dir):
    run("dbbackup", "-d", "default")
    [name] = get_storage().list_backups(database="default")
    metadata = json.loads((backup_dir / (name + ".metadata")).read_text())
    assert metadata["engine"] == "django.db.backends.sqlite3"
    assert metadata["connector"] == "dbbackup.db.sqlite.SqliteBackupConnector"
    record = metadata["dbbackup"]
    assert record["size"] == (backup_dir / name).stat().st_size
    assert len(record["sha256"]) == 64
    assert record["database"] == "default"
    assert record["compression"] is None
    assert record["encrypted"] is False


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_every_database_is_backed_up_by_default(backup_dir, settings):
    run("dbbackup")
    storage = get_storage()
    for alias in settings.DATABASES:
        assert len(storage.list_backups(database=alias)) == 1, alias


def test_database_option_takes_a_comma_list(backup_dir, settings):
    settings.DBBACKUP_DATABASES = ["default"]
    run("dbbackup", "-d", " default, other ,")
    assert len(get_storage().list_backups()) == 2


def test_dbbackup_databases_setting_is_the_default(backup_dir, settings):
    settings.DBBACKUP_DATABASES = ["other"]
    run("dbbackup")
    assert get_storage().list_backups(database="default") == []
    assert len(get_storage().list_backups(database="other")) == 1


def test_servername_goes_into_the_name_and_filters_restore(backup_dir):
    add_known_data()
    run("dbbackup", "-d", "default", "-s", "web-1")
    [name] = get_storage().list_backups()
    assert name.startswith("default-web-1-")
    with pytest.raises(CommandError, match="servername='web-2'"):
        run("dbrestore", "-d", "default", "-s", "web-2", "--noinput")
    run("dbrestore", "-d", "default", "-s", "web-1", "--noinput")


def test_output_filename_replaces_the_stored_name(backup_dir):
    run("dbbackup", "-d", "default", "-z", "-o", "nightly.bin")
    assert sorted(stored_names()) == ["nightly.bin", "nightly.bin.metadata"]
    Note.objects.create(title="x")
    run("dbrestore", "-d", "default", "-i", "nightly.bin", "--noinput")
    assert not Note.objects.exists()


def test_output_path_writes_a_private_local_file(backup_dir, tmp_path):
    add_known_data()
    before = snapshot()
    target = tmp_path / "out" / "local.sqlite3"
    target.parent.mkdir()
    run("dbbackup", "-d", "default", "-O", str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads((tmp_path / "out" / "local.sqlite3.metadata").read_text())["engine"]
    assert stored_names() == []
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "-I", str(target), "--noinput")
    assert snapshot() == before


def test_clean_keeps_the_newest_backups_of_that_database_only(backup_dir, settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    storage = get_storage()
    for day in (1, 2):
        storage.write_file(io.BytesIO(b"old"), f"default-testhost-2020-01-0{day}-000000.sqlite3")
        storage.write_file(io.BytesIO(b"old"), f"default2-testhost-2020-01-0{day}-000000.sqlite3")
    _, err = run("dbbackup", "-d", "default", "-c")
    assert "Deleted old backup default-testhost-2020-01-01-000000.sqlite3" in err
    remaining = storage.list_backups(database="default")
    assert len(remaining) == 1
    assert not remaining[0].startswith("default-testhost-2020")
    assert len(storage.list_backups(database="default2")) == 2


def test_listbackups_filters(backup_dir):
    storage = get_storage()
    for name in (
        "default-h-2026-01-01-000000.sqlite3",
        "default-h-2026-01-02-000000.sqlite3.gz",
        "other-h-2026-01-03-000000.sqlite3.gz.gpg",
        "h-2026-01-04-000000.tar",
    ):
        storage.write_file(io.BytesIO(b"x"), name)

    def listed(*args):
        out, _ = run("listbackups", "-q", *args)
        return [line.split()[0] for line in out.splitlines()]

    assert len(listed()) == 4
    assert listed("-d", "default") == [
        "default-h-2026-01-01-000000.sqlite3",
        "default-h-2026-01-02-000000.sqlite3.gz",
    ]
    assert listed("-z") == [
        "default-h-2026-01-02-000000.sqlite3.gz",
        "other-h-2026-01-03-000000.sqlite3.gz.gpg",
    ]
    assert listed("-Z", "-c", "db") == ["default-h-2026-01-01-000000.sqlite3"]
    assert listed("-e") == ["other-h-2026-01-03-000000.sqlite3.gz.gpg"]
    assert len(listed("-E")) == 3
    assert listed("-c", "media") == ["h-2026-01-04-000000.tar"]
    out, _ = run("listbackups")
    assert out.splitlines()[0].split() == ["Name", "Datetime", "Type", "Database", "Server", "Size", "Drill"]
    assert "2026-01-04 00:00:00" in out


def test_listbackups_rejects_an_unknown_content_type(backup_dir):
    with pytest.raises(CommandError, match="invalid choice"):
        run("listbackups", "-c", "logs")


def test_call_command_keyword_names_match_django_dbbackup(backup_dir):
    add_known_data()
    call_command(
        "dbbackup",
        database="default",
        servername="kw",
        compress=True,
        clean=False,
        interactive=False,
        quiet=True,
    )
    [name] = get_storage().list_backups()
    assert name.startswith("default-kw-")
    assert name.endswith(".gz")
    call_command(
        "dbrestore", database="default", input_filename=name, uncompress=True, interactive=False, quiet=True
    )
    call_command("listbackups", content_type="db", compressed=True, encrypted=False, stdout=io.StringIO())


# -- confirmation -----------------------------------------------------------------------------


def test_restore_asks_and_an_answer_of_no_changes_nothing(backup_dir, monkeypatch):
    run("dbbackup", "-d", "default")
    Note.objects.create(title="keep me")
    monkeypatch.setattr("builtins.input", lambda question: "n")
    _, err = run("dbrestore", "-d", "default")
    assert "cancelled" in err
    assert Note.objects.filter(title="keep me").exists()
    monkeypatch.setattr("builtins.input", lambda question: "")
    run("dbrestore", "-d", "default")
    assert not Note.objects.exists()


def test_restore_without_anyone_to_answer_refuses(backup_dir, monkeypatch):
    run("dbbackup", "-d", "default")

    def no_input(question):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_input)
    with pytest.raises(CommandError, match="--noinput"):
        run("dbrestore", "-d", "default")


# -- bad input: one-line CommandErrors, database untouched ------------------------------------


def test_no_backups_at_all(backup_dir):
    with pytest.raises(CommandError, match="There is no backup in dbbackup-FileSystemStorage matching"):
        run("dbrestore", "-d", "default", "--noinput")


def test_missing_named_backup(backup_dir):
    with pytest.raises(CommandError, match="There is no backup 'nope.sqlite3'.*listbackups"):
        run("dbrestore", "-d", "default", "-i", "nope.sqlite3", "--noinput")
    with pytest.raises(CommandError, match="There is no file '/no/such/file'"):
        run("dbrestore", "-d", "default", "-I", "/no/such/file", "--noinput")


@pytest.mark.parametrize("command", ["dbbackup", "dbrestore"])
def test_unknown_database_alias(backup_dir, command, settings):
    known = ", ".join(settings.DATABASES)
    with pytest.raises(
        CommandError, match=rf"There is no database 'nope' in DATABASES \(known aliases: {known}\)"
    ):
        run(command, "-d", "nope", "--noinput")


def test_restore_needs_an_alias_when_there_are_several(backup_dir):
    with pytest.raises(CommandError, match="several databases.*-d/--database"):
        run("dbrestore", "--noinput")


def test_backup_of_another_engine_is_refused(backup_dir):
    add_known_data()
    before = snapshot()
    storage = get_storage()
    storage.write_file(io.BytesIO(b"PGDMP..."), "default-h-2026-01-01-000000.psql.bin")
    storage.write_file(
        io.BytesIO(json.dumps({"engine": "django.db.backends.postgresql", "connector": "x.Y"}).encode()),
        "default-h-2026-01-01-000000.psql.bin.metadata",
    )
    with pytest.raises(
        CommandError,
        match="is a backup of a django.db.backends.postgresql database and cannot be restored into",
    ):
        run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before


def test_tampered_backup_is_refused_and_the_database_kept(backup_dir):
    add_known_data()
    run("dbbackup", "-d", "default")
    [name] = get_storage().list_backups()
    data = bytearray((backup_dir / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (backup_dir / name).chmod(0o600)
    (backup_dir / name).write_bytes(bytes(data))
    Note.objects.create(title="newer")
    before = snapshot()
    with pytest.raises(CommandError, match="does not match the SHA-256"):
        run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before


def test_truncated_compressed_backup_is_refused_and_the_database_kept(backup_dir):
    add_known_data()
    run("dbbackup", "-d", "default", "-z")
    [name] = get_storage().list_backups()
    (backup_dir / name).write_bytes((backup_dir / name).read_bytes()[:-50])
    (backup_dir / (name + ".metadata")).unlink()  # no checksum: the codec must catch it
    before = snapshot()
    with pytest.raises(CommandError, match="not a valid gzip stream"):
        run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before


def test_file_that_is_not_what_its_suffix_says(backup_dir):
    get_storage().write_file(
        io.BytesIO(b"SQLite format 3\x00" + b"\x00" * 100), "default-h-2026-01-01-000000.sqlite3.gz"
    )
    with pytest.raises(CommandError, match="named as gzip-compressed"):
        run("dbrestore", "-d", "default", "--noinput")


def test_malformed_setting(backup_dir, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = ["not", "a", "template"]
    with pytest.raises(
        CommandError, match="DBBACKUP_FILENAME_TEMPLATE must be a format string or a callable"
    ):
        run("dbbackup", "-d", "default")
    assert stored_names() == []


def test_unknown_connector_key_is_named(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"DUMP_COMAND": "x"}}
    with pytest.raises(CommandError, match="unknown key.*DUMP_COMAND"):
        run("dbbackup", "-d", "default")


def test_unimportable_connector_is_named(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "dbbackup.db.nowhere.Connector"}}
    with pytest.raises(CommandError, match="dbbackup.db.nowhere.Connector' cannot be imported"):
        run("dbbackup", "-d", "default")


def test_recorded_connector_that_no_longer_exists_falls_back_with_a_warning(backup_dir):
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-o", "x.sqlite3")
    sidecar = backup_dir / "x.sqlite3.metadata"
    metadata = json.loads(sidecar.read_text())
    metadata["connector"] = "gone.module.Connector"
    sidecar.write_text(json.dumps(metadata))
    Note.objects.all().delete()
    _, err = run("dbrestore", "-d", "default", "-i", "x.sqlite3", "--noinput")
    assert "gone.module.Connector" in err
    assert "using the configured dbbackup.db.sqlite.SqliteBackupConnector instead" in err
    assert snapshot() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x", "testapp_tag"], "cannot exclude tables"),
        (["-n", "public"], "-n/--schema is for PostgreSQL"),
        (["-e"], "needs DBBACKUP_GPG_RECIPIENT"),
        (["--compression", "lzma"], "invalid choice"),
    ],
)
def test_backup_options_the_connector_cannot_honour_fail_clearly(backup_dir, args, message):
    with pytest.raises(CommandError, match=message):
        run("dbbackup", "-d", "default", *args)
    assert stored_names() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r"], "-r/--no-drop is for"),
        (["--pg-options", "-j 2"], "does not take --pg-options"),
        (["-n", "public"], "-n/--schema is for PostgreSQL"),
        (["-c"], "There is no backup .* encrypted=True"),
    ],
)
def test_restore_options_the_connector_cannot_honour_fail_clearly(backup_dir, args, message):
    run("dbbackup", "-d", "default")
    Note.objects.create(title="untouched")
    with pytest.raises(CommandError, match=message):
        run("dbrestore", "-d", "default", "--noinput", *args)
    assert Note.objects.filter(title="untouched").exists()


def test_output_options_with_several_databases_are_refused(backup_dir):
    with pytest.raises(CommandError, match="one database at a time"):
        run("dbbackup", "-o", "x.dump")


def test_exclude_tables_with_the_sql_connector(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "dbbackup.db.sqlite.SqliteConnector"}}
    add_known_data()
    run("dbbackup", "-d", "default", "-x", "testapp_tag, django_content_type")
    [name] = get_storage().list_backups()
    text = (backup_dir / name).read_text()
    assert 'INSERT OR REPLACE INTO "testapp_note"' in text
    assert 'CREATE TABLE IF NOT EXISTS "testapp_tag"' in text  # the table stays...
    assert 'INSERT OR REPLACE INTO "testapp_tag"' not in text  # ...without its rows


def test_errors_are_one_line_command_errors_not_tracebacks(backup_dir, capsys):
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "dbrestore", "-d", "default", "--noinput"]).execute()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("CommandError: There is no backup in")
    assert "Traceback" not in err


def test_an_impossible_compression_level_is_refused_before_anything_happens(backup_dir, settings):
    from dbbackup import signals

    sent = []
    settings.DBBACKUP_GZIP_LEVEL = 42

    def receiver(**kwargs):
        sent.append(kwargs)

    signals.pre_backup.connect(receiver)
    try:
        with pytest.raises(
            CommandError, match="DBBACKUP_GZIP_LEVEL must be a whole number from 0 to 9, not 42"
        ):
            run("dbbackup", "-d", "default", "-z")
    finally:
        signals.pre_backup.disconnect(receiver)
    assert sent == []


def test_the_output_path_sidecar_is_private(backup_dir, tmp_path):
    target = tmp_path / "local.sqlite3"
    run("dbbackup", "-d", "default", "-O", str(target))
    assert stat.S_IMODE((tmp_path / "local.sqlite3.metadata").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left


def test_errors_are_printed_once(backup_dir, capfd):
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit):
        ManagementUtility(["manage.py", "dbrestore", "-d", "default", "--noinput"]).execute()
    err = capfd.readouterr().err
    assert err.count("There is no backup") == 1


def test_a_lowercase_connector_key_picks_the_connector(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"connector": "dbbackup.db.sqlite.SqliteConnector"}}
    run("dbbackup", "-d", "default")
    assert get_storage().list_backups()[0].endswith(".dump")


def test_dbbackup_warnings_reach_the_user_during_a_command(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"EXCLUDE": ["django_session"]}}
    _, err = run("dbbackup", "-d", "default")
    assert "WARNING: DBBACKUP_CONNECTORS['default']['EXCLUDE'] is ignored" in err
    _, err = run("dbbackup", "-d", "default", "-q", "-o", "quiet.sqlite3")
    assert err == ""


def test_bad_django_connector_exclusions_stop_before_pre_backup(backup_dir, settings):
    from dbbackup import signals

    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": "dbbackup.db.django.DjangoConnector"}}
    sent = []

    def receiver(sender, **kwargs):
        sent.append(sender)

    signals.pre_backup.connect(receiver)
    try:
        with pytest.raises(CommandError, match="Cannot exclude 'no_such_table'"):
            run("dbbackup", "-d", "default", "-x", "no_such_table")
    finally:
        signals.pre_backup.disconnect(receiver)
    assert sent == []


def test_a_boolean_is_not_a_compression_level(backup_dir, settings):
    settings.DBBACKUP_GZIP_LEVEL = True
    with pytest.raises(CommandError, match="DBBACKUP_GZIP_LEVEL must be a whole number"):
        run("dbbackup", "-d", "default", "-z")


def test_settings_cannot_smuggle_options_past_the_connector(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"default": {"DROP": True, "SCHEMAS": ["public"]}}
    run("dbbackup", "-d", "default")
    with pytest.raises(CommandError, match="-r/--no-drop is for"):
        run("dbrestore", "-d", "default", "--noinput", "-r")
    with pytest.raises(CommandError, match="-n/--schema is for PostgreSQL"):
        run("dbrestore", "-d", "default", "--noinput", "-n", "public")
