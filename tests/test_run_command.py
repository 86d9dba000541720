"""``BaseCommandDBConnector.run_command``: connectors written for django-dbbackup keep working."""

import io
import sqlite3
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup.db.base import BaseCommandDBConnector
from dbbackup.db.exceptions import CommandConnectorError

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


class SqliteCliConnector(BaseCommandDBConnector):
    """A custom connector written the way django-dbbackup's docs show: it calls run_command."""

    extension = "sql"

    def _create_dump(self):
        stdout, _stderr = self.run_command(f"sqlite3 {self.settings['NAME']} .dump", env=self.dump_env)
        return stdout

    def _restore_dump(self, dump):
        name = self.settings["NAME"]
        stdout, stderr = self.run_command(f"sqlite3 -bail {name}", stdin=dump, env=self.restore_env)
        return stdout, stderr


def make_database(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE pet (id INTEGER PRIMARY KEY, name TEXT, photo BLOB)")
        db.executemany(
            "INSERT INTO pet (name, photo) VALUES (?, ?)",
            [("Rex", b"\x00\xff\x10"), ("Tom 'the cat'", None), ("Ünïcode", b"")],
        )
    db.close()


def contents(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, name, photo FROM pet ORDER BY id").fetchall()
    finally:
        db.close()


def connector(tmp_path, **options):
    return SqliteCliConnector("other", NAME=str(tmp_path / "app.sqlite3"), **options)


def test_custom_connector_using_run_command_round_trips_through_the_commands(tmp_path, backup_dir, settings):
    database = tmp_path / "app.sqlite3"
    make_database(database)
    before = contents(database)
    settings.DBBACKUP_CONNECTORS = {
        "other": {"CONNECTOR": f"{__name__}.SqliteCliConnector", "NAME": str(database)}
    }
    call_command("dbbackup", "-d", "other", stdout=io.StringIO(), stderr=io.StringIO())
    [backup] = [path for path in backup_dir.iterdir() if path.suffix == ".sql"]
    assert backup.read_bytes().startswith(b"PRAGMA foreign_keys=OFF;")
    database.unlink()  # the database is lost
    call_command("dbrestore", "-d", "other", "--noinput", stdout=io.StringIO(), stderr=io.StringIO())
    assert contents(database) == before


def test_outputs_are_rewound_files_and_the_tool_reads_bytes_file_objects_and_django_files(tmp_path):
    conn = connector(tmp_path)
    script = (
        "import sys; data = sys.stdin.buffer.read(); "
        "sys.stdout.buffer.write(data[::-1]); sys.stderr.write('done')"
    )
    for given in (b"abc\xff", io.BytesIO(b"abc\xff"), ContentFile(b"abc\xff", name="dump")):
        stdout, stderr = conn.run_command(f"{sys.executable} -c {script!r}", stdin=given)
        assert (stdout.tell(), stderr.tell()) == (0, 0)
        assert stdout.read() == b"\xffcba"
        assert stderr.read() == b"done"
        assert stdout.fileno() >= 0  # a real file, not memory
        stdout.close()
        stderr.close()


def test_environment_is_parent_then_env_then_the_call(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYER_A", "parent")
    monkeypatch.setenv("LAYER_B", "parent")
    conn = connector(tmp_path, ENV={"LAYER_B": "env", "LAYER_C": "env"})
    script = "import os; print(os.environ.get('LAYER_A'), os.environ['LAYER_B'], os.environ['LAYER_C'])"
    stdout, _ = conn.run_command(f"{sys.executable} -c {script!r}", env={"LAYER_C": "call"})
    assert stdout.read().split() == [b"parent", b"env", b"call"]
    conn = connector(tmp_path, ENV={"LAYER_B": "env", "LAYER_C": "env"}, USE_PARENT_ENV=False)
    stdout, _ = conn.run_command(f"{sys.executable} -c {script!r}")
    assert stdout.read().split() == [b"None", b"env", b"env"]


def test_arguments_are_split_like_a_shell_but_no_shell_runs(tmp_path):
    marker = tmp_path / "should-not-exist"
    stdout, _ = connector(tmp_path).run_command(f"echo 'two words' ; touch {marker}")
    assert stdout.read() == f"two words ; touch {marker}\n".encode()
    assert not marker.exists()


def test_a_failing_tool_raises_upstreams_error_with_stderr_and_no_secret(tmp_path):
    conn = connector(tmp_path, PASSWORD="s3cr3t-pw")
    script = "import sys; sys.stderr.write('bad login for s3cr3t-pw and tok-123'); sys.exit(3)"
    with pytest.raises(CommandConnectorError) as info:
        conn.run_command(f"{sys.executable} -c {script!r} --password=s3cr3t-pw", env={"API_TOKEN": "tok-123"})
    message = str(info.value)
    assert message.startswith("Error running: ")
    assert "exit status 3" in message
    assert "bad login for" in message
    assert "s3cr3t-pw" not in message
    assert "tok-123" not in message
    assert isinstance(info.value, CommandError)


def test_a_missing_tool_raises_a_connector_error_naming_it(tmp_path):
    with pytest.raises(CommandConnectorError, match="no-such-dump-tool"):
        connector(tmp_path).run_command("no-such-dump-tool --all")


def test_temporary_files_live_in_dbbackup_tmp_dir_and_vanish(tmp_path, settings):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings.DBBACKUP_TMP_DIR = str(scratch)
    stdout, _stderr = connector(tmp_path).run_command("echo hi")
    assert list(scratch.iterdir()) == []  # already unlinked: nothing is left behind
    assert stdout.read() == b"hi\n"
    with pytest.raises(CommandConnectorError):
        connector(tmp_path).run_command("false")
    assert list(scratch.iterdir()) == []
