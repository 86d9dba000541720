"""Fault matrix: wrong settings, and backups from a newer schema.

A wrong setting must stop a command with one line naming the setting (exit status 1, no
traceback), before ``pre_backup`` is sent and before anything is written; the failure e-mail
must report that real error, whatever else is wrong. A backup whose database has migrations
this code does not know must not restore silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connections

from dbbackup import manifest, name_checks, notify, signals
from tests.faults.support import child_settings, debris, fingerprint, run_command
from tests.helpers import add_known_data

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


def raising_keep_filter(name: str) -> bool:
    """A DBBACKUP_CLEANUP_KEEP_FILTER that fails (importable by the child command)."""
    raise ValueError("the filter broke")


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit status 1 and, with -q, exactly one line on stderr naming every fragment."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- bad settings, as the user sees them (a child process) ------------------------------------

CHILD_CASES = {
    "date format not a string": ({"DBBACKUP_DATE_FORMAT": 5}, [], "DBBACKUP_DATE_FORMAT"),
    "date format '%Y'": ({"DBBACKUP_DATE_FORMAT": "%Y"}, [], "DBBACKUP_DATE_FORMAT = '%Y'"),
    "date format empty": ({"DBBACKUP_DATE_FORMAT": ""}, [], "DBBACKUP_DATE_FORMAT = ''"),
    "date format unreadable": ({"DBBACKUP_DATE_FORMAT": "%Y-%m-%d-%Z"}, [], "DBBACKUP_DATE_FORMAT"),
    "template {datetime.year}": (
        {"DBBACKUP_FILENAME_TEMPLATE": "{datetime.year}-{databasename}.{extension}"},
        [],
        "DBBACKUP_FILENAME_TEMPLATE",
    ),
    "template without {datetime}": (
        {"DBBACKUP_FILENAME_TEMPLATE": "{databasename}.{extension}"},
        [],
        "put {datetime} in it",
    ),
    "template names that cannot be found again": (
        {"DBBACKUP_FILENAME_TEMPLATE": "{databasename}-{datetime}.{extension}.metadata"},
        [],
        "cannot recognise",
    ),
    "GPG recipient a number": ({"DBBACKUP_GPG_RECIPIENT": 123}, ["-e"], "DBBACKUP_GPG_RECIPIENT"),
    "connectors a string": ({"DBBACKUP_CONNECTORS": "default"}, [], "DBBACKUP_CONNECTORS"),
    "databases a number": ({"DBBACKUP_DATABASES": 5}, [], "DBBACKUP_DATABASES"),
    "databases unknown alias": ({"DBBACKUP_DATABASES": ["default", "nope"]}, [], "'nope'"),
    "keep filter raises": (
        {"DBBACKUP_CLEANUP_KEEP_FILTER": f"{__name__}.raising_keep_filter"},
        ["-c"],
        "DBBACKUP_CLEANUP_KEEP_FILTER raised ValueError",
    ),
}


@pytest.mark.parametrize("case", list(CHILD_CASES))
def test_a_bad_setting_stops_the_backup_in_one_line_before_anything_is_written(case, backup_dir):
    overrides, argv, fragment = CHILD_CASES[case]
    if "DBBACKUP_DATABASES" not in overrides:
        argv = ["-d", "default", *argv]
    before = fingerprint("default")
    result = run_command("dbbackup", "--noinput", "-q", *argv, settings=child_settings(**overrides))
    assert_one_line_error(result, fragment)
    assert files(backup_dir) == []
    assert fingerprint("default") == before


def test_a_string_file_mode_is_refused_before_a_backup_without_sidecar_is_left(backup_dir):
    settings = child_settings()
    settings["STORAGES"]["dbbackup"]["OPTIONS"]["file_permissions_mode"] = "644"
    result = run_command("dbbackup", "-d", "default", "--noinput", "-q", settings=settings)
    assert_one_line_error(result, "file_permissions_mode", "'644'")
    assert files(backup_dir) == []


def test_an_octal_file_mode_is_set_before_the_backup_appears(backup_dir, settings):
    settings.STORAGES["dbbackup"]["OPTIONS"]["file_permissions_mode"] = 0o640
    call_command("dbbackup", "-d", "default", "--noinput", "-q")
    [backup] = [p for p in backup_dir.iterdir() if not p.name.endswith(".metadata")]
    assert backup.stat().st_mode & 0o777 == 0o640
    assert debris(backup_dir) == []


def test_a_bad_media_template_stops_mediabackup_in_one_line(backup_dir):
    result = run_command(
        "mediabackup",
        "--noinput",
        "-q",
        settings=child_settings(DBBACKUP_MEDIA_FILENAME_TEMPLATE="{datetime.year}.{extension}"),
    )
    assert_one_line_error(result, "DBBACKUP_MEDIA_FILENAME_TEMPLATE")
    assert files(backup_dir) == []


def test_without_quiet_the_error_is_still_one_line_and_no_traceback(backup_dir):
    result = run_command(
        "dbbackup", "-d", "default", "--noinput", settings=child_settings(DBBACKUP_DATE_FORMAT=5)
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("CommandError: DBBACKUP_DATE_FORMAT must be")


def test_listbackups_with_a_date_format_not_a_string_says_so(backup_dir):
    result = run_command("listbackups", settings=child_settings(DBBACKUP_DATE_FORMAT=5))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "DBBACKUP_DATE_FORMAT" in result.stderr


def test_the_failure_mail_reports_the_real_error_when_connectors_is_a_string(backup_dir, tmp_path):
    outbox = tmp_path / "mail"
    settings = child_settings(
        DBBACKUP_CONNECTORS="default",
        ADMINS=[["Ops", "ops@example.com"]],
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(outbox),
    )
    result = run_command("dbbackup", "-d", "default", "--noinput", "-q", settings=settings)
    assert_one_line_error(result, "DBBACKUP_CONNECTORS must be a dict")
    [message] = [path.read_text() for path in outbox.iterdir()]
    assert "DBBACKUP_CONNECTORS must be a dict" in message
    assert "To: ops@example.com" in message


def test_a_broken_mail_setup_is_one_warning_and_the_real_error_stays(backup_dir):
    settings = child_settings(
        DBBACKUP_DATE_FORMAT=5,
        ADMINS=[["Ops", "ops@example.com"]],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=9,  # discard: nothing listens, the connection is refused
    )
    result = run_command("dbbackup", "-d", "default", "--noinput", settings=settings)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("WARNING: Could not e-mail the failure of dbbackup") for line in lines)
    assert lines[-1].startswith("CommandError: DBBACKUP_DATE_FORMAT must be")


# -- bad settings in process: no pre_backup, callables -----------------------------------------


def broken_template(**fields):
    raise KeyError("no such field")


def dateless_template(**fields):
    return f"{fields['databasename']}.{fields['extension']}"


def good_template(**fields):
    return f"{fields['databasename']}/{fields['datetime']}.{fields['extension']}"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"DBBACKUP_FILENAME_TEMPLATE": broken_template}, "DBBACKUP_FILENAME_TEMPLATE (a callable) raised"),
        ({"DBBACKUP_FILENAME_TEMPLATE": dateless_template}, "same name"),
        ({"DBBACKUP_FILENAME_TEMPLATE": lambda **f: 42}, "returned int"),
        ({"DBBACKUP_DATE_FORMAT": "%H%M%S"}, "DBBACKUP_DATE_FORMAT = '%H%M%S'"),
        ({"DBBACKUP_CLEANUP_KEEP_FILTER": raising_keep_filter}, "DBBACKUP_CLEANUP_KEEP_FILTER"),
        ({"DBBACKUP_CLEANUP_KEEP_FILTER": 5}, "DBBACKUP_CLEANUP_KEEP_FILTER must be a callable"),
    ],
    ids=["raising", "dateless", "not-a-string", "no-day", "keep-filter-raises", "keep-filter-not-callable"],
)
def test_no_pre_backup_signal_for_a_bad_setting(overrides, fragment, backup_dir, settings, record):
    pre = record(signals.pre_backup)
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(CommandError) as caught:
        call_command("dbbackup", "-d", "default", "--noinput", "-q", "-c")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert pre.calls == []
    assert files(backup_dir) == []


@pytest.mark.parametrize("date_format", ["%Y-%m-%d", "%Y%m%d%H%M", "%d.%m.%Y_%H-%M-%S"])
def test_date_formats_that_tell_days_apart_are_accepted(date_format, backup_dir, settings):
    settings.DBBACKUP_DATE_FORMAT = date_format
    call_command("dbbackup", "-d", "default", "--noinput", "-q", "-c")
    assert len([name for name in files(backup_dir) if not name.endswith(".metadata")]) == 1
    call_command("dbrestore", "-d", "default", "--noinput", "-q")


def test_a_callable_template_that_dates_its_names_still_works(backup_dir, settings):
    settings.DBBACKUP_FILENAME_TEMPLATE = good_template
    call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert any(path.parent.name == "default" for path in backup_dir.rglob("*.sqlite3"))
    call_command("dbrestore", "-d", "default", "--noinput", "-q")


def test_a_keep_filter_raising_on_an_old_backup_deletes_nothing(backup_dir, settings):
    for _ in range(3):
        call_command("dbbackup", "-d", "default", "--noinput", "-q", "-o", _next_name())
    before = files(backup_dir)
    settings.DBBACKUP_CLEANUP_KEEP = 1
    settings.DBBACKUP_CLEANUP_KEEP_FILTER = lambda name: name.endswith("2020-01-01-000001.sqlite3") and 1 / 0
    with pytest.raises(CommandError, match="DBBACKUP_CLEANUP_KEEP_FILTER raised ZeroDivisionError"):
        call_command("prunebackups", "-c", "db", "--noinput", "-q")
    assert files(backup_dir) == before


_names = iter(f"default-testhost-2020-01-01-00000{n}.sqlite3" for n in range(10))


def _next_name() -> str:
    return next(_names)


def test_system_check_reports_what_a_backup_would_refuse(settings):
    from dbbackup.checks import check_settings

    settings.DBBACKUP_DATE_FORMAT = "%Y"
    assert "dbbackup.E007" in [problem.id for problem in check_settings()]
    settings.DBBACKUP_DATE_FORMAT = "%Y-%m-%d"
    assert "dbbackup.E007" not in [problem.id for problem in check_settings()]


def test_check_naming_accepts_the_defaults():
    name_checks.check_naming("db", "default", "web1", "sqlite3.gz.gpg")
    name_checks.check_naming("media", "", "web1", "tar.gz")


# -- DBBACKUP_ADMINS -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("admins", "expected"),
    [
        ("ops@example.com", ["ops@example.com"]),  # one address, not 15 one-letter ones
        (["a@example.com", ("B", "b@example.com")], ["a@example.com", "b@example.com"]),
        ([("Ops", "ops@example.com"), 5, ("x",)], ["ops@example.com"]),
        (5, []),
    ],
    ids=["string", "mixed", "junk-entries", "number"],
)
def test_admins_forms(admins, expected, settings):
    settings.DBBACKUP_ADMINS = admins
    assert notify.recipients() == expected


def test_a_string_admins_gets_one_mail_with_the_real_error(backup_dir, settings):
    settings.DBBACKUP_ADMINS = "ops@example.com"
    settings.DBBACKUP_DATE_FORMAT = 5
    with pytest.raises(CommandError, match="DBBACKUP_DATE_FORMAT"):
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert "DBBACKUP_DATE_FORMAT must be" in message.subject


def test_mail_failure_never_raises(settings):
    settings.DBBACKUP_ADMINS = ["ops@example.com"]
    settings.DBBACKUP_CONNECTORS = "default"
    settings.DBBACKUP_EMAIL_SUBJECT_PREFIX = object()
    settings.EMAIL_BACKEND = "no.such.Backend"
    if hasattr(settings, "MAILERS"):  # Django 6.1+: the mailers replace EMAIL_BACKEND
        settings.MAILERS = {"default": {"BACKEND": "no.such.Backend"}}
    assert notify.mail_failure("dbbackup", RuntimeError("the real error")) is False


# -- schema versions: backups from newer code --------------------------------------------------

FUTURE = ("auth", "9999_from_newer_code")


@pytest.fixture
def migrations_table(request):
    """The rows of django_migrations as they were, put back after the test."""
    connection = connections[getattr(request, "param", "default")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        original = set(cursor.fetchall())
    yield connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        now = set(cursor.fetchall())
        for app, name in now - original:
            cursor.execute("DELETE FROM django_migrations WHERE app = %s AND name = %s", [app, name])
        for app, name in original - now:
            cursor.execute(
                "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, CURRENT_TIMESTAMP)",
                [app, name],
            )


def _execute(connection, sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def backup_with_future_migration(connection, backup_dir) -> str:
    _execute(
        connection,
        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, CURRENT_TIMESTAMP)",
        list(FUTURE),
    )
    call_command("dbbackup", "-d", connection.alias, "--noinput", "-q")
    _execute(connection, "DELETE FROM django_migrations WHERE app = %s AND name = %s", list(FUTURE))
    [sidecar] = backup_dir.glob("*.metadata")
    assert FUTURE[1] in manifest.recorded_migrations(json.loads(sidecar.read_text()))["auth"]
    return sidecar.name.removesuffix(".metadata")


def test_a_backup_from_newer_code_is_refused_before_anything_changes(backup_dir, migrations_table):
    name = backup_with_future_migration(migrations_table, backup_dir)
    add_known_data("default")
    before = fingerprint("default")
    result = run_command("dbrestore", "-d", "default", "--noinput", "-q")
    line = assert_one_line_error(result, "auth.9999_from_newer_code", "--allow-unknown-migrations", name)
    assert "newer code" in line
    assert fingerprint("default") == before


def test_allow_unknown_migrations_restores_with_a_warning(backup_dir, migrations_table, capsys):
    backup_with_future_migration(migrations_table, backup_dir)
    call_command("dbrestore", "-d", "default", "--noinput", "--allow-unknown-migrations")
    err = capsys.readouterr().err
    assert "auth.9999_from_newer_code" in err
    assert "Restored 'default'" in err
    with migrations_table.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE name = %s", [FUTURE[1]])
        assert cursor.fetchone()[0] == 1


def test_verify_only_reads_a_backup_from_newer_code(backup_dir, migrations_table):
    backup_with_future_migration(migrations_table, backup_dir)
    call_command("dbrestore", "-d", "default", "--noinput", "-q", "--verify-only")


def test_a_backup_from_older_code_restores_and_says_to_migrate(backup_dir, migrations_table, capsys):
    _execute(
        migrations_table,
        "DELETE FROM django_migrations WHERE app = %s AND name = %s",
        ["auth", "0012_alter_user_first_name_max_length"],
    )
    call_command("dbbackup", "-d", "default", "--noinput", "-q")
    call_command("dbrestore", "-d", "default", "--noinput")
    err = capsys.readouterr().err
    assert "predates 1 migration(s) of this code (auth.0012_alter_user_first_name_max_length)" in err
    assert "manage.py migrate --database default" in err
    assert "Restored 'default'" in err


def test_a_sidecar_without_migrations_is_not_checked(backup_dir, migrations_table):
    name = backup_with_future_migration(migrations_table, backup_dir)
    sidecar = backup_dir / f"{name}.metadata"
    metadata = json.loads(sidecar.read_text())
    del metadata["dbbackup"]["migrations"]  # as older dbbackup and django-dbbackup write them
    sidecar.write_text(json.dumps(metadata))
    call_command("dbrestore", "-d", "default", "--noinput", "-q")


def test_migrations_of_apps_not_installed_here_do_not_block(backup_dir, migrations_table):
    _execute(
        migrations_table,
        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, CURRENT_TIMESTAMP)",
        ["some_removed_app", "0001_initial"],
    )
    call_command("dbbackup", "-d", "default", "--noinput", "-q")
    call_command("dbrestore", "-d", "default", "--noinput", "-q")


def test_no_record_when_the_connector_dumps_another_database(settings, migrations_table):
    from dbbackup import schema

    assert schema.applied_migrations("default") is not None
    other = {**connections.settings["default"], "NAME": "/elsewhere.sqlite3"}
    assert schema.applied_migrations("default", other) is None


@pytest.mark.parametrize(
    "migrations_table",
    [
        pytest.param(
            alias,
            marks=[
                getattr(pytest.mark, marker),
                pytest.mark.django_db(transaction=True, databases=["default", alias]),
            ],
            id=alias,
        )
        for alias, marker in (("postgres", "postgres"), ("mysql", "mysql"))
    ],
    indirect=True,
)
def test_a_server_backup_from_newer_code_is_refused(backup_dir, migrations_table):
    alias = migrations_table.alias
    backup_with_future_migration(migrations_table, backup_dir)
    add_known_data(alias)
    before = fingerprint(alias)
    with pytest.raises(CommandError, match="auth.9999_from_newer_code"):
        call_command("dbrestore", "-d", alias, "--noinput", "-q")
    assert fingerprint(alias) == before
    call_command("dbrestore", "-d", alias, "--noinput", "-q", "--allow-unknown-migrations")
    assert fingerprint(alias) != before  # the backup (without the new rows) is back


def test_an_empty_hostname_is_named_when_it_makes_names_unreadable(backup_dir):
    result = run_command(
        "dbbackup", "-d", "default", "--noinput", "-q", settings=child_settings(DBBACKUP_HOSTNAME="")
    )
    assert_one_line_error(result, "DBBACKUP_HOSTNAME) is empty")
    assert files(backup_dir) == []
    assert (
        run_command(
            "dbbackup",
            "-d",
            "default",
            "-s",
            "web1",
            "--noinput",
            "-q",
            settings=child_settings(DBBACKUP_HOSTNAME=""),
        ).returncode
        == 0
    )


def test_an_unforeseen_error_is_one_line_and_traceback_shows_it(backup_dir, monkeypatch):
    from dbbackup import pipeline

    def broken(*args, **kwargs):
        raise TypeError("something nobody foresaw")

    monkeypatch.setattr(pipeline, "backup_database", broken)
    with pytest.raises(CommandError) as caught:
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert str(caught.value) == (
        "TypeError: something nobody foresaw (unexpected; run with --traceback to see where)"
    )
    with pytest.raises(TypeError):
        call_command("dbbackup", "-d", "default", "--noinput", "-q", "--traceback")


def test_squashed_migrations_count_for_what_they_replace(monkeypatch):
    from types import SimpleNamespace

    from dbbackup import schema

    squash = SimpleNamespace(replaces=[("shop", "0001_initial"), ("shop", "0002_price")])
    disk = {("shop", "0001_0002_squashed"): squash, ("shop", "0003_discount"): SimpleNamespace(replaces=[])}
    monkeypatch.setattr(schema, "_disk_migrations", lambda: (disk, {"shop"}))
    # an old database: the replaced migrations, whose files were deleted after squashing
    old = schema.compare({"shop": ["0001_initial", "0002_price"]})
    assert old.unknown == []
    assert old.missing == ["shop.0003_discount"]
    newer = schema.compare({"shop": ["0001_0002_squashed", "0003_discount", "0004_coupon"], "gone": ["0001"]})
    assert newer.unknown == ["shop.0004_coupon"]
    assert newer.missing == []


def test_a_failing_chmod_leaves_no_backup_without_its_sidecar(backup_dir, settings, monkeypatch):
    import os

    from dbbackup import storage

    settings.STORAGES["dbbackup"]["OPTIONS"]["file_permissions_mode"] = 0o640
    real_chmod = os.chmod

    def chmod(path, mode, *args, **kwargs):
        if mode == 0o640:
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(storage.os, "chmod", chmod)
    with pytest.raises(CommandError, match="PermissionError"):
        call_command("dbbackup", "-d", "default", "--noinput", "-q")
    assert [name for name in files(backup_dir) if not name.startswith(".")] == []
    assert debris(backup_dir) == []
