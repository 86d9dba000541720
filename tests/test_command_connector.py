"""BaseCommandDBConnector with real stand-in tools (small Python scripts)."""

import io
import os
import sys
import textwrap

import pytest

from dbbackup.db.base import BaseCommandDBConnector
from dbbackup.exceptions import CommandConnectorError, CorruptBackupError
from dbbackup.streams import DigestReader


class FileToolConnector(BaseCommandDBConnector):
    """Dumps and restores the file named by NAME with two tiny scripts; tests only."""

    extension = "txt"
    dump_cmd = sys.executable
    restore_cmd = sys.executable
    install_hint = "Install the file tools."

    def dump_argv(self):
        return [
            self.dump_cmd,
            "-c",
            "import os, sys; sys.stdout.buffer.write(open(os.environ['TARGET'], 'rb').read())",
        ]

    def restore_argv(self):
        script = textwrap.dedent(
            """
            import os, sys
            data = sys.stdin.buffer.read()
            if not os.environ.get("SECRET", "").startswith("hunter"):
                sys.exit("no secret")
            open(os.environ["TARGET"], "wb").write(data)
            """
        )
        return [self.restore_cmd, "-c", script]

    def connection_env(self):
        return {"SECRET": "hunter2"}


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"original \xff data")
    return path


def connector(target, **options):
    return FileToolConnector("default", ENV={"TARGET": str(target)}, **options)


def test_dump_and_restore_through_real_processes(target):
    dump = connector(target).create_dump()
    assert dump.read() == b"original \xff data"
    dump.close()
    connector(target).restore_dump(io.BytesIO(b"restored"))
    assert target.read_bytes() == b"restored"


def test_secrets_go_through_the_environment_not_argv(target):
    command = connector(target).restore_command()
    assert "hunter2" not in " ".join(command.argv)
    assert command.env["SECRET"] == "hunter2"
    assert command.secrets == ("hunter2",)


def test_prefix_and_suffix_wrap_the_argv(target):
    command = connector(target, DUMP_PREFIX="nice -n 5", DUMP_SUFFIX="--flag 'two words'").dump_command()
    assert command.argv[:3] == ["nice", "-n", "5"]
    assert command.argv[-2:] == ["--flag", "two words"]


def test_environment_layers_and_use_parent_env(target, monkeypatch):
    monkeypatch.setenv("FROM_PARENT", "1")
    assert connector(target).dump_command().env["FROM_PARENT"] == "1"
    command = connector(target, USE_PARENT_ENV=False, DUMP_ENV={"PHASE": "dump"}).dump_command()
    assert "FROM_PARENT" not in command.env
    assert command.env["PHASE"] == "dump"
    assert command.env["TARGET"] == str(target)


def test_missing_tool_names_the_setting_to_change(target):
    broken = connector(target, DUMP_CMD="no-such-tool")
    broken.dump_argv = lambda: [broken.dump_cmd]
    with pytest.raises(
        CommandConnectorError, match=r"'no-such-tool' was not found.*Install the file tools\. Or set DUMP_CMD"
    ):
        broken.create_dump()


def test_a_failing_restore_tool_reports_its_stderr_without_the_secret(target):
    failing = connector(target)
    failing.connection_env = lambda: {"SECRET": "wrong-secret"}
    with pytest.raises(CommandConnectorError, match="no secret") as info:
        failing.restore_dump(io.BytesIO(b"x"))
    assert "wrong-secret" not in str(info.value)
    assert target.read_bytes() == b"original \xff data"


def test_a_bad_checksum_at_the_end_stops_the_tool_before_it_writes(target):
    stream = DigestReader(io.BytesIO(b"tampered" * 10000), expected_sha256="0" * 64)
    with pytest.raises(CorruptBackupError):
        connector(target).restore_dump(stream)
    assert target.read_bytes() == b"original \xff data"


def test_options_copies_are_per_instance(target):
    first = connector(target, EXCLUDE=["a"])
    first.exclude.append("b")
    assert connector(target, EXCLUDE=["a"]).exclude == ["a"]
    assert os.environ.get("TARGET") is None
