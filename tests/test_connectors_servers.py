"""PostgreSQL and MariaDB specifics, on the real servers: secrets, argv safety, upstream bugs."""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.db import connections

from dbbackup import pipeline
from dbbackup.db.base import get_connector
from dbbackup.db.mysql import MysqlDumpConnector
from dbbackup.db.postgresql import PgDumpBinaryConnector, PgDumpConnector, PgDumpGisConnector
from dbbackup.exceptions import (
    CommandConnectorError,
    CorruptBackupError,
    DbbackupConfigurationError,
    DumpError,
    RestoreError,
)
from tests.database_servers import REQUIRE_SERVERS
from tests.faults.support import files_containing
from tests.helpers import add_known_data, rows
from tests.testapp.models import Note

SECRET = "S3cret pass'word\"$"
PG = pytest.mark.postgres
MYSQL = pytest.mark.mysql


# -- argv and environment (no server needed) ---------------------------------------------------


def fake(connector_class, **settings):
    connector = connector_class("default")
    connector.__dict__["settings"] = {
        "ENGINE": "x", "NAME": "shop", "USER": "app", "PASSWORD": SECRET, "HOST": "db.internal",
        "PORT": 5433, "OPTIONS": {}, **settings,
    }  # fmt: skip
    return connector


def test_pg_connection_goes_in_one_quoted_conninfo_and_the_password_in_the_environment():
    connector = fake(
        PgDumpConnector, NAME="my db --help", OPTIONS={"sslmode": "require", "isolation_level": 1}
    )
    argv = connector.dump_argv()
    assert argv[:2] == [
        "pg_dump",
        "--dbname=dbname='my db --help' host='db.internal' port='5433' user='app' sslmode='require'",
    ]
    assert SECRET not in " ".join(argv)
    env = connector.dump_command().env
    assert env["PGPASSWORD"] == SECRET
    assert env["PGSSLMODE"] == "require"


def test_only_the_password_counts_as_a_secret_for_postgresql():
    connector = fake(PgDumpConnector, OPTIONS={"sslmode": "require"})
    assert connector.secrets() == (SECRET,)
    assert "require" in connector.dump_command().describe()  # not redacted


def test_conninfo_escapes_quotes_and_backslashes():
    connector = fake(PgDumpConnector, NAME="o'brien\\db")
    assert "dbname='o\\'brien\\\\db'" in connector.conninfo()


def test_pg_password_none_means_no_password_prompt():
    connector = fake(PgDumpConnector, PASSWORD=None)
    assert "--no-password" in connector.dump_argv()
    assert "PGPASSWORD" not in connector.connection_env()


def test_plain_restore_passes_no_positional_name_upstream_bug_2():
    argv = fake(PgDumpConnector, USER="").restore_argv()
    assert all(arg.startswith("-") for arg in argv[1:])
    assert "--single-transaction" not in argv  # psql would commit at EOF; dbbackup commits itself
    assert "--set=ON_ERROR_STOP=1" in argv


def test_plain_restore_refuses_schemas_and_no_drop_instead_of_ignoring_them_upstream_bug_2():
    from dbbackup.pipeline._common import apply_connector_options

    with pytest.raises(DbbackupConfigurationError, match="cannot be filtered by schema"):
        apply_connector_options(fake(PgDumpConnector), schemas=["public"], restoring=True)
    with pytest.raises(DbbackupConfigurationError, match="-r/--no-drop cannot remove them"):
        apply_connector_options(fake(PgDumpConnector), no_drop=True, restoring=True)
    apply_connector_options(fake(PgDumpConnector), schemas=["public"])  # fine when backing up
    # settings that shaped the dump do not block its restore
    assert fake_with(PgDumpConnector, SCHEMAS=["public"], DROP=False).restore_argv()[0] == "psql"


def test_binary_no_drop_sends_neither_clean_nor_if_exists_upstream_bug_1():
    connector = fake(PgDumpBinaryConnector)
    assert {"--clean", "--if-exists"} <= set(connector.restore_argv())
    connector.drop = False
    argv = connector.restore_argv()
    assert "--clean" not in argv
    assert "--if-exists" not in argv


def test_binary_restore_options():
    connector = fake(PgDumpBinaryConnector, NAME="shop")
    connector.schemas = ["sales", "hr"]
    connector.pg_options = "--no-owner --role=app"
    argv = connector.restore_argv()
    assert argv[:3] == ["pg_restore", "--no-owner", "--role=app"]
    assert argv[-2:] == ["--schema=sales", "--schema=hr"]
    assert "--exit-on-error" in argv


def test_custom_format_skips_internal_compression_when_the_stream_is_compressed():
    connector = fake(PgDumpBinaryConnector)
    assert "--compress=0" not in connector.dump_argv()  # django-dbbackup's format by default
    connector.stream_compressed = True
    assert "--compress=0" in connector.dump_argv()
    explicit = PgDumpBinaryConnector("default", INTERNAL_COMPRESSION=9)
    explicit.__dict__["settings"] = connector.settings
    explicit.stream_compressed = True
    assert "--compress=9" in explicit.dump_argv()


def test_drop_and_if_exists_settings_shape_the_plain_dump():
    assert {"--clean", "--if-exists"} <= set(fake(PgDumpConnector).dump_argv())
    assert "--if-exists" not in fake_with(PgDumpConnector, IF_EXISTS=False).dump_argv()
    assert "--clean" not in fake_with(PgDumpConnector, DROP=False).dump_argv()
    assert "--enable-row-security" in fake_with(PgDumpConnector, ENABLE_ROW_SECURITY=True).dump_argv()


def fake_with(connector_class, **options):
    connector = connector_class("default", **options)
    connector.__dict__["settings"] = fake(connector_class).settings
    return connector


def test_exclude_and_schemas_on_dump():
    connector = fake(PgDumpBinaryConnector, EXCLUDE=["django_session"])
    connector.exclude = ["django_session", "audit log"]
    connector.schemas = ["public"]
    argv = connector.dump_argv()
    assert "--exclude-table-data=audit log" in argv
    assert "--schema=public" in argv


def test_postgis_extension_is_created_in_the_target_database_upstream_bug_3():
    connector = fake(PgDumpGisConnector, ADMIN_USER="admin", ADMIN_PASSWORD="adm1n")
    argv = connector.enable_postgis_argv("admin")
    assert "dbname='shop'" in argv[1]
    assert "user='admin'" in argv[1]
    assert argv[-1] == "--command=CREATE EXTENSION IF NOT EXISTS postgis;"


def test_mysql_argv_keeps_names_after_double_dash_and_no_password():
    connector = fake(MysqlDumpConnector, NAME="--all-databases", HOST="db.internal", PORT=3307)
    connector.exclude = ["django_session"]
    command = connector.dump_command()
    argv = list(command.argv)
    assert argv[0] == "mysqldump"
    assert argv[1] == "--defaults-extra-file=/dev/fd/{fd}"  # a pipe, filled when the tool starts
    assert argv[-2:] == ["--", "--all-databases"]
    assert "--ignore-table=--all-databases.django_session" in argv
    assert SECRET not in " ".join(argv)
    [(index, content)] = command.pipe_inputs
    assert index == 1
    assert 'password="S3cret pass\'word\\"$"' in content.decode()


def test_mysql_socket_and_options():
    connector = fake(
        MysqlDumpConnector,
        HOST="/run/mysqld/mysqld.sock",
        PORT="",
        PASSWORD="",
        OPTIONS={"charset": "utf8mb4", "ssl": {"ca": "/etc/ca.pem"}},
    )
    flags = connector.connection_flags()
    assert "--socket=/run/mysqld/mysqld.sock" in flags
    assert "--default-character-set=utf8mb4" in flags
    assert "--ssl-ca=/etc/ca.pem" in flags
    assert not connector.dump_command().argv[1].startswith("--defaults-extra-file")


def test_pg_dump_older_than_the_server_is_refused(tmp_path):
    old = tmp_path / "pg_dump"
    old.write_text(f"#!{sys.executable}\nprint('pg_dump (PostgreSQL) 11.22')\n")
    old.chmod(0o755)
    connector = fake(PgDumpConnector, DUMP_CMD=str(old))
    connector.dump_cmd = str(old)
    connector._server_major_version = lambda: 15
    with pytest.raises(
        DumpError, match=r"pg_dump 11 cannot dump a PostgreSQL 15 server; install postgresql-client-15"
    ):
        connector.create_dump()


# -- real servers -----------------------------------------------------------------------------

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres", "mysql"])


def keep_the_tool_busy(alias: str) -> None:
    """Incompressible data far beyond a pipe's buffer: the dump tool cannot finish (and vanish
    from /proc) before the test has read its first bytes and looked at it."""
    Note.objects.using(alias).create(title="bulk", payload=os.urandom(4 * 1024 * 1024))


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode()


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\x00", b"\n").decode()


@pytest.fixture
def pg_password_role():
    connection = connections["postgres"]
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dbbackup_pw")
        cursor.execute(
            f"CREATE ROLE dbbackup_pw LOGIN SUPERUSER PASSWORD '{SECRET.replace(chr(39), chr(39) * 2)}'"
        )
    yield "dbbackup_pw"
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dbbackup_pw")


@PG
def test_pg_password_never_reaches_the_command_line(settings, pg_password_role):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"USER": pg_password_role, "PASSWORD": SECRET}}
    keep_the_tool_busy("postgres")
    connector = get_connector("postgres")
    stream = connector.create_dump()
    try:
        assert stream.read(10)
        assert SECRET not in _cmdline(stream.pid)
        assert f"PGPASSWORD={SECRET}" in _environ(stream.pid)
        assert stream.read()
    finally:
        stream.close()


@MYSQL
def test_mysql_password_never_reaches_the_command_line(settings, tmp_path):
    connection = connections["mysql"]
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS 'dbbackup_pw'@'%'")
        cursor.execute("CREATE USER 'dbbackup_pw'@'%%' IDENTIFIED BY %s", [SECRET])
        cursor.execute(f"GRANT ALL ON `{name}`.* TO 'dbbackup_pw'@'%'")
    try:
        settings.DBBACKUP_CONNECTORS = {"mysql": {"USER": "dbbackup_pw", "PASSWORD": SECRET}}
        settings.DBBACKUP_TMP_DIR = str(tmp_path)
        keep_the_tool_busy("mysql")
        connector = get_connector("mysql")
        command = connector.dump_command()
        from dbbackup import process

        stream = process.ProcessOutput(command)
        try:
            assert stream.read(10)
            cmdline = _cmdline(stream.pid)
            assert SECRET not in cmdline
            option_file = cmdline.split("--defaults-extra-file=", 1)[1].split(" ", 1)[0]
            assert option_file.startswith("/dev/fd/")  # an inherited pipe, not a file on disk
            assert SECRET not in _environ(stream.pid)
            assert files_containing(SECRET, tmp_path) == []
            assert b"testapp_note" in stream.read()
        finally:
            stream.close()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS 'dbbackup_pw'@'%'")


@PG
def test_pg_no_drop_restore_works_with_the_default_connector(backup_dir):
    add_known_data("postgres")
    before = rows("postgres")
    name = pipeline.backup_database("postgres").filename
    with connections["postgres"].cursor() as cursor:  # --no-drop restores into an empty database
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    pipeline.restore_database("postgres", input_filename=name, no_drop=True)
    assert rows("postgres") == before


@PG
def test_pg_binary_restore_of_one_schema(backup_dir):
    with connections["postgres"].cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS extra CASCADE")
        cursor.execute("CREATE SCHEMA extra")
        cursor.execute("CREATE TABLE extra.kept (x text)")
        cursor.execute("INSERT INTO extra.kept VALUES ('backed up')")
    try:
        name = pipeline.backup_database("postgres").filename
        with connections["postgres"].cursor() as cursor:
            cursor.execute("UPDATE extra.kept SET x = 'changed'")
            cursor.execute(
                "INSERT INTO testapp_note (title, body, payload, extra) VALUES ('untouched', '', '', '{}')"
            )
        pipeline.restore_database("postgres", input_filename=name, schemas=["extra"])
        with connections["postgres"].cursor() as cursor:
            cursor.execute("SELECT x FROM extra.kept")
            assert cursor.fetchall() == [("backed up",)]
        assert Note.objects.using("postgres").filter(title="untouched").exists()
    finally:
        with connections["postgres"].cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS extra CASCADE")


@PG
@pytest.mark.parametrize("connector", ["PgDumpBinaryConnector", "PgDumpConnector"])
def test_pg_restore_killed_half_way_leaves_the_database_as_it_was(backup_dir, settings, tmp_path, connector):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"CONNECTOR": f"dbbackup.db.postgresql.{connector}"}}
    add_known_data("postgres", count=20)
    name = pipeline.backup_database("postgres").filename
    Note.objects.using("postgres").create(title="newer than the backup")
    before = rows("postgres")
    # A restore tool that gets the first half of the backup, then is killed (kill -9): it never
    # sees the end of its input, so its single transaction must not commit.
    real = "pg_restore" if connector == "PgDumpBinaryConnector" else "psql"
    wrapper = tmp_path / "killed-restore"
    wrapper.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import os, signal, subprocess, sys, time
            data = sys.stdin.buffer.read()
            tool = subprocess.Popen([{real!r}, *sys.argv[1:]], stdin=subprocess.PIPE)
            tool.stdin.write(data[: len(data) // 2])
            tool.stdin.flush()
            time.sleep(0.5)
            tool.kill()
            tool.wait()
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    wrapper.chmod(0o755)
    settings.DBBACKUP_CONNECTORS["postgres"]["RESTORE_CMD"] = str(wrapper)
    with pytest.raises(CommandConnectorError, match="exit status -9"):
        pipeline.restore_database("postgres", input_filename=name)
    time.sleep(0.2)
    assert rows("postgres") == before


@PG
def test_postgis_extension_is_created_in_the_target_database(settings):
    alias = "postgres"
    name = connections[alias].settings_dict["NAME"]
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
        if not cursor.fetchall() and not REQUIRE_SERVERS:
            pytest.skip(
                "PostGIS is not installed on this PostgreSQL server (apt install postgresql-15-postgis-3)"
            )
        cursor.execute("DROP EXTENSION IF EXISTS postgis CASCADE")
    connector = PgDumpGisConnector(alias, ADMIN_USER="postgres")
    connector.enable_postgis("postgres")
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'postgis'")
        assert cursor.fetchall() == [("postgis",)], f"postgis missing in {name}"
        cursor.execute("DROP EXTENSION postgis CASCADE")


@PG
def test_pg_failing_tool_error_has_stderr_without_secrets(settings, backup_dir):
    settings.DBBACKUP_CONNECTORS = {"postgres": {"PASSWORD": SECRET, "NAME": "no_such_database"}}
    with pytest.raises(Exception, match="no_such_database") as info:
        pipeline.backup_database("postgres")
    assert SECRET not in str(info.value)


@MYSQL
def test_mysql_tool_failing_says_the_database_was_not_changed(settings, backup_dir, tmp_path):
    add_known_data("mysql")
    name = pipeline.backup_database("mysql").filename
    failing = tmp_path / "failing-mysql"
    failing.write_text(
        '#!/bin/sh\nif [ "$1" = "--help" ]; then exec mysql --help; fi\ncat >/dev/null\nexit 1\n'
    )
    failing.chmod(0o755)
    settings.DBBACKUP_CONNECTORS = {"mysql": {"RESTORE_CMD": str(failing)}}
    with pytest.raises(RestoreError, match="was not changed") as info:
        pipeline.restore_database("mysql", input_filename=name)
    assert "partly restored" not in str(info.value)


@MYSQL
def test_mysql_damaged_backup_changes_nothing(settings, backup_dir, tmp_path):
    add_known_data("mysql")
    name = pipeline.backup_database("mysql", compression="gzip").filename
    (backup_dir / (name + ".metadata")).unlink()  # no checksum: decodability alone must catch it
    (backup_dir / name).write_bytes((backup_dir / name).read_bytes()[:-64])
    before = rows("mysql")
    with pytest.raises(CorruptBackupError):
        pipeline.restore_database("mysql", input_filename=name)
    assert rows("mysql") == before


def test_mysql_suffix_options_come_before_the_database_name():
    connector = fake_with(MysqlDumpConnector, DUMP_SUFFIX="--routines --events", RESTORE_SUFFIX="--force")
    assert connector.dump_command().argv[-4:] == ["--routines", "--events", "--", "shop"]
    assert connector.restore_command().argv[-3:] == ["--force", "--", "shop"]


def test_connector_keys_are_case_insensitive():
    connector = PgDumpConnector("default", name="other_db", dump_cmd="/opt/pg/bin/pg_dump")
    assert connector.settings["NAME"] == "other_db"
    assert connector.dump_cmd == "/opt/pg/bin/pg_dump"
