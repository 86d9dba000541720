"""MongoDumpConnector against stand-in mongodump/mongorestore executables (no MongoDB here).

What is proven: the argv and environment the tools receive, that the password travels only in a
--config "file" that is an inherited pipe (/dev/fd/N) and never touches the disk, that the
archive streams both ways byte for byte, and that a failing tool is reported.
What is not: behaviour against a real MongoDB server.
"""

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from django.db import connections

from dbbackup import pipeline
from dbbackup.db.base import get_connector
from dbbackup.db.mongodb import MongoDumpConnector
from dbbackup.exceptions import CommandConnectorError, CorruptBackupError
from dbbackup.storage import get_storage
from tests.faults.support import files_containing
from tests.standins.mongo_tool import archive_bytes

SECRET = "m0ngo pass'word: {x}"
STANDIN = Path(__file__).parent / "standins" / "mongo_tool.py"


@pytest.fixture
def mongo_tools(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("mongodump", "mongorestore"):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n" + STANDIN.read_text())
        tool.chmod(0o755)
    log = tmp_path / "mongo.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MONGO_LOG", str(log))

    def records():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return records


@pytest.fixture
def mongo_alias(settings, backup_dir):
    entry = {
        "ENGINE": "django_mongodb_backend",
        "NAME": "shop",
        "HOST": "mongo.internal",
        "PORT": 27018,
        "USER": "app",
        "PASSWORD": SECRET,
        "AUTH_SOURCE": "admin",
    }
    # configure_settings fills in Django's defaults; it insists on a "default" key.
    connections.settings["mongo"] = connections.configure_settings({"default": dict(entry)})["default"]
    databases = {**settings.DATABASES, "mongo": entry}
    settings.DBBACKUP_DATABASES = ["mongo"]
    with pytest.warns(UserWarning, match="Overriding setting DATABASES"):
        settings.DATABASES = databases
    yield "mongo"
    del connections.settings["mongo"]


def test_engine_maps_to_the_mongo_connector(mongo_alias):
    assert isinstance(get_connector("mongo"), MongoDumpConnector)


def test_dump_argv_and_restore_argv():
    connector = MongoDumpConnector("default", EXCLUDE=["sessions", "logs"], OBJECT_CHECK=False)
    connector.__dict__["settings"] = {"NAME": "shop", "HOST": "", "PORT": "", "USER": "", "PASSWORD": ""}
    assert connector.dump_argv() == [
        "mongodump", "--host=localhost:27017", "--db=shop",
        "--excludeCollection=sessions", "--excludeCollection=logs", "--archive",
    ]  # fmt: skip
    assert connector.restore_argv() == ["mongorestore", "--host=localhost:27017", "--drop", "--archive"]
    connector.drop = False
    assert "--drop" not in connector.restore_argv()
    assert connector.dump_command().argv == connector.dump_argv()  # no password: no config file


def test_backup_and_restore_stream_through_the_tools_without_the_password_on_argv(
    mongo_alias, mongo_tools, tmp_path, monkeypatch, settings
):
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    monkeypatch.setenv("FAKE_MONGO_ARCHIVE_SIZE", str(5 * 1024 * 1024))
    result = pipeline.backup_database("mongo", compression="gzip")
    [dump] = mongo_tools()
    assert re.fullmatch(r"--config=/dev/fd/\d+", dump["argv"][0])
    assert dump["argv"][1:] == [
        "--host=mongo.internal:27018",
        "--username=app",
        "--authenticationDatabase=admin",
        "--db=shop",
        "--archive",
    ]
    assert SECRET not in " ".join(dump["argv"])
    assert dump["config"] == "password: 'm0ngo pass''word: {x}'\n"
    assert dump["config_mode"] == 0o600
    assert dump["config_is_pipe"]
    assert files_containing(SECRET, tmp_path) == []  # DBBACKUP_TMP_DIR is below it
    assert result.filename.endswith(".dump.gz")

    pipeline.restore_database("mongo", input_filename=result.filename)
    restore = mongo_tools()[1]
    assert restore["argv"][1:] == [
        "--host=mongo.internal:27018", "--username=app", "--authenticationDatabase=admin",
        "--objcheck", "--drop", "--archive",
    ]  # fmt: skip
    assert restore["config"] == dump["config"]
    assert restore["config_is_pipe"]
    assert restore["received_sha256"] == dump["sent_sha256"]
    assert restore["received_size"] == 5 * 1024 * 1024


def test_the_archive_is_read_while_mongodump_still_runs(mongo_alias, mongo_tools, tmp_path, monkeypatch):
    go = tmp_path / "go"
    monkeypatch.setenv("FAKE_MONGO_GO", str(go))
    stream = get_connector("mongo").create_dump()
    try:
        first = stream.read(1 << 20)  # mongodump is paused until we have read this
        assert first[:4] == bytes.fromhex("6de29981")
        go.touch()
        rest = stream.read()
    finally:
        stream.close()
    assert hashlib.sha256(first + rest).hexdigest() == hashlib.sha256(archive_bytes(3000000)).hexdigest()


def test_a_failing_tool_is_reported_and_nothing_is_stored(mongo_alias, mongo_tools, monkeypatch):
    monkeypatch.setenv("FAKE_MONGO_FAIL", "connection refused")
    with pytest.raises(CommandConnectorError, match="error connecting to host: connection refused") as info:
        pipeline.backup_database("mongo")
    assert SECRET not in str(info.value)
    assert get_storage().list_directory() == []


def test_missing_tools_name_the_package(mongo_alias, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        CommandConnectorError, match="'mongodump' was not found on PATH. Install the MongoDB Database Tools"
    ):
        pipeline.backup_database("mongo")
    assert shutil.which("mongodump") is None


def test_a_damaged_backup_never_reaches_mongorestore(mongo_alias, mongo_tools, backup_dir):
    result = pipeline.backup_database("mongo", compression="gzip")
    (backup_dir / result.filename).write_bytes((backup_dir / result.filename).read_bytes()[:-20])
    with pytest.raises(CorruptBackupError):
        pipeline.restore_database("mongo", input_filename=result.filename)
    assert [record["tool"] for record in mongo_tools()] == ["mongodump"]


def test_an_archive_without_checksum_or_compression_is_handed_to_mongorestore_as_is(
    mongo_alias, mongo_tools, backup_dir
):
    """mongorestore cannot be rolled back and dbbackup cannot parse its archives: a truncated
    uncompressed archive without a sidecar reaches mongorestore, whose own archive checks are
    all that stands between it and a partial restore (documented on the MongoDB page)."""
    result = pipeline.backup_database("mongo")
    (backup_dir / (result.filename + ".metadata")).unlink()
    (backup_dir / result.filename).write_bytes((backup_dir / result.filename).read_bytes()[:-20])
    pipeline.restore_database("mongo", input_filename=result.filename)
    assert mongo_tools()[1]["received_size"] == 3000000 - 20


def test_with_a_sidecar_a_truncated_archive_never_reaches_mongorestore(mongo_alias, mongo_tools, backup_dir):
    result = pipeline.backup_database("mongo")
    (backup_dir / result.filename).write_bytes((backup_dir / result.filename).read_bytes()[:-20])
    with pytest.raises(CorruptBackupError):
        pipeline.restore_database("mongo", input_filename=result.filename)
    assert [record["tool"] for record in mongo_tools()] == ["mongodump"]
