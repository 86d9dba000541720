"""Damaged SQLite backups, hostile SQL text dumps and killed restores leave the database as it was.

Every connector that can back up a SQLite database (the three SQLite ones and the Django one)
makes a backup; the database is then changed, the backup damaged (emptied, truncated, a byte
flipped, garbage appended), with and without its sidecar, and restored. The restore must fail
with a clear message and the database fingerprint must not change. Without a sidecar only the
format can prove anything, so the damage chosen there is damage the format shows (a flipped
byte inside a stored value is invisible without a checksum: see docs/connectors/sqlite.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from dbbackup import manifest
from dbbackup.db import sqlite as sqlite_module
from tests.faults.support import debris, fingerprint, kill, reap, start_command, wait_for
from tests.helpers import add_known_data
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])

CONNECTORS = {
    "backup-api": "dbbackup.db.sqlite.SqliteBackupConnector",
    "sql-text": "dbbackup.db.sqlite.SqliteConnector",
    "file-copy": "dbbackup.db.sqlite.SqliteCPConnector",
    "django": "dbbackup.db.django.DjangoConnector",
}
DAMAGES = ["empty", "truncated-line", "truncated-page", "truncated-mid", "flipped", "appended"]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def database_dir() -> Path:
    return Path(connections["default"].settings_dict["NAME"]).parent


def make_backup(settings, backup_dir: Path, connector: str, name: str = "x.bak") -> Path:
    """Back up known data with ``connector``, then change the database so a restore would show."""
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": connector}}
    add_known_data()
    run("dbbackup", "-d", "default", "-o", name, "--noinput")
    Note.objects.create(title="written after the backup")
    return backup_dir / name


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    is_database = data.startswith(b"SQLite format 3\x00")
    page = int.from_bytes(data[16:18], "big") if is_database else 0
    if how == "empty":
        data = b""
    elif how == "truncated-line":  # at a line (JSON: object) boundary; at a page boundary
        boundary = b"\n" if b"\n" in data[:-1] else b"},"
        cut = page * (len(data) // page // 2) if is_database else data.rindex(boundary, 0, len(data) * 2 // 3)
        data = data[: cut + (0 if is_database else len(boundary))]
    elif how == "truncated-page":  # only the first page of a database file; the first line of text
        boundary = b"\n" if b"\n" in data[:-1] else b"},"
        data = data[:page] if is_database else data[: data.index(boundary) + len(boundary)]
    elif how == "truncated-mid":
        data = data[: len(data) // 2 + 7]
    elif how == "flipped":
        # a byte the format shows: a b-tree page's type byte, the first byte of a text dump
        position = page if is_database else 0
        data = data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]
    elif how == "appended":
        data += b"appended garbage\n" * 100
    path.write_bytes(data)


def assert_refused(name: str, before: str, *extra: str) -> str:
    with pytest.raises(CommandError) as caught:
        run("dbrestore", "-d", "default", "-i", name, "--noinput", *extra)
    assert fingerprint("default") == before
    assert debris(database_dir()) == []
    return str(caught.value)


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_a_damaged_backup_changes_nothing(settings, backup_dir, connector, how, sidecar):
    path = make_backup(settings, backup_dir, connector)
    if not sidecar:
        Path(f"{path}.metadata").unlink()
    damage(path, how)
    before = fingerprint("default")
    message = assert_refused(path.name, before)
    if how == "empty":
        assert ("empty" if not sidecar else "0 bytes long") in message


@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_a_flipped_byte_anywhere_is_caught_by_the_checksum(settings, backup_dir, connector):
    path = make_backup(settings, backup_dir, connector)
    data = bytearray(path.read_bytes())
    # a letter whose case changes: only the checksum sees it
    position = next(
        index
        for index in range(len(data) - 1, 100, -1)  # the last letter: row data, not a header
        if chr(data[index]).isascii() and chr(data[index]).isalpha()
    )
    data[position] ^= 0x20
    path.write_bytes(bytes(data))
    before = fingerprint("default")
    assert "sha-256" in assert_refused(path.name, before).lower()


@pytest.mark.parametrize("connector", list(CONNECTORS.values()), ids=list(CONNECTORS))
def test_an_intact_backup_without_sidecar_restores_and_says_what_was_checked(settings, backup_dir, connector):
    path = make_backup(settings, backup_dir, connector)
    Note.objects.filter(title="written after the backup").delete()
    expected = fingerprint("default")
    Note.objects.create(title="written after the backup")
    Path(f"{path}.metadata").unlink()
    _, out = run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == expected
    assert "checksum verified" not in out
    assert "no checksum" in out
    if connector.endswith(("SqliteBackupConnector", "SqliteCPConnector")):
        assert "checked as a well-formed SQLite database only" in out
    elif connector.endswith("SqliteConnector"):
        assert "checked as a complete SQL text dump only" in out


def reseal(path: Path) -> None:
    """Make the sidecar agree with the (edited) file, as if the backup had been written that way."""
    sidecar = Path(f"{path}.metadata")
    metadata = json.loads(sidecar.read_text())
    data = path.read_bytes()
    metadata[manifest.KEY]["sha256"] = hashlib.sha256(data).hexdigest()
    metadata[manifest.KEY]["size"] = len(data)
    sidecar.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    "connector", [CONNECTORS["backup-api"], CONNECTORS["file-copy"]], ids=["backup-api", "file-copy"]
)
def test_quick_check_runs_unless_a_checksum_vouches_for_the_database_file(
    settings, backup_dir, connector, monkeypatch
):
    path = make_backup(settings, backup_dir, connector)
    checks: list[str] = []
    real_check = sqlite_module.check_integrity
    monkeypatch.setattr(
        sqlite_module, "check_integrity", lambda db: checks.append("quick_check") or real_check(db)
    )
    Note.objects.filter(title="written after the backup").delete()
    expected = fingerprint("default")
    Note.objects.create(title="written after the backup")
    run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == expected
    assert checks == []  # the checksum matched: these are the bytes the backup wrote
    Note.objects.create(title="written after the backup")
    Path(f"{path}.metadata").unlink()
    run("dbrestore", "-d", "default", "-i", path.name, "--noinput")
    assert fingerprint("default") == expected
    assert checks == ["quick_check"]  # no checksum: the format must prove the file sound


def test_a_drill_runs_quick_check_even_when_the_checksum_matches(settings, backup_dir, tmp_path):
    """A backup of an already damaged database passes its checksum; its drill must still fail."""
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    path = make_backup(settings, backup_dir, CONNECTORS["backup-api"])
    damage(path, "flipped")  # a b-tree page's type byte: header and size still agree
    reseal(path)
    with pytest.raises(CommandError, match=r"FAILED: The backup is not a usable SQLite database"):
        run("dbrestore", "--drill", "-d", "default", "-i", path.name)
    assert manifest.last_drill(json.loads(Path(f"{path}.metadata").read_text()))["ok"] is False


def test_our_sql_text_dump_ends_with_its_marker_and_a_cut_at_any_line_is_refused(settings, backup_dir):
    path = make_backup(settings, backup_dir, CONNECTORS["sql-text"])
    Path(f"{path}.metadata").unlink()
    data = path.read_bytes()
    assert data.startswith(b"-- dbbackup: SQLite dump\n")
    assert data.endswith(b"-- dbbackup: end of dump\n")
    before = fingerprint("default")
    line_ends = [index + 1 for index, byte in enumerate(data) if byte == ord("\n")][:-1]
    for cut in [*line_ends[:2], *line_ends[-3:]]:  # the first and the last lines (indexes)
        path.write_bytes(data[:cut])
        assert "no end" in assert_refused(path.name, before)


def test_upstream_style_text_dump_cut_before_its_indexes_is_refused(settings, backup_dir, tmp_path):
    """django-dbbackup's text dumps have no marker: they must end with the indexes they write last."""
    upstream = Path(__file__).parents[1] / "fixtures" / "golden" / "sqlite-sql.sqlite3"
    lines = upstream.read_bytes().splitlines(keepends=True)
    last_insert = max(number for number, line in enumerate(lines) if line.startswith(b"INSERT"))
    (backup_dir).mkdir(exist_ok=True)
    (backup_dir / "cut.sqlite3").write_bytes(b"".join(lines[: last_insert + 1]))
    add_known_data()
    before = fingerprint("default")
    assert "no end" in assert_refused("cut.sqlite3", before)


def test_an_empty_newest_backup_is_picked_and_refused_not_skipped(settings, backup_dir):
    """`dbrestore --noinput` picks the newest backup; an empty one refuses (older data is not restored)."""
    add_known_data()
    run("dbbackup", "-d", "default", "--noinput")
    (older,) = [path for path in backup_dir.iterdir() if not path.name.endswith(".metadata")]
    empty = backup_dir / re.sub(r"\d{4}-\d\d-\d\d-\d{6}", "2099-01-01-000000", older.name)
    assert empty.name != older.name
    empty.write_bytes(b"")
    Note.objects.create(title="written after the backup")
    before = fingerprint("default")
    with pytest.raises(CommandError, match=f"{empty.name} is empty"):
        run("dbrestore", "-d", "default", "--noinput")
    assert fingerprint("default") == before


# -- a SQL text dump cannot reach another file ------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{target}' AS elsewhere;",
        "VACUUM INTO '{target}';",
        "SELECT load_extension('{target}');",
        "PRAGMA journal_mode=WAL;",
        "PRAGMA temp_store_directory='{directory}';",
    ],
    ids=["attach", "vacuum-into", "load-extension", "journal-mode", "temp-store-directory"],
)
def test_a_hostile_text_dump_touches_no_other_file(backup_dir, tmp_path, statement):
    target = tmp_path / "xyz.sqlite3"
    backup_dir.mkdir(exist_ok=True)
    hostile = (
        'CREATE TABLE IF NOT EXISTS "planted" ("id" integer);\n'
        + statement.format(target=target, directory=tmp_path)
        + "\nCREATE TABLE IF NOT EXISTS elsewhere_t (x);\n"
        + "-- dbbackup: end of dump\n"
    )
    (backup_dir / "hostile.dump").write_text(hostile)
    add_known_data()
    before = fingerprint("default")
    message = assert_refused("hostile.dump", before)
    assert "Statement 2" in message
    assert "refused" in message
    assert not target.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["backups"]


def test_the_sqlite3_shell_dump_format_still_restores(backup_dir):
    """`sqlite3 db .dump` output (PRAGMA foreign_keys, BEGIN, COMMIT) passes the file guard."""
    add_known_data()
    source = sqlite3.connect(connections["default"].settings_dict["NAME"])
    text = "PRAGMA foreign_keys=OFF;\n" + "\n".join(source.iterdump()) + "\n"
    source.close()
    assert text.rstrip().endswith("COMMIT;")
    backup_dir.mkdir(exist_ok=True)
    (backup_dir / "shell.dump").write_text(text)
    expected = fingerprint("default")
    Note.objects.create(title="written after the dump")
    run("dbrestore", "-d", "default", "-i", "shell.dump", "--noinput")
    assert fingerprint("default") == expected


# -- a dbrestore child killed by PID ----------------------------------------------------------


def _big_text_backup(settings, backup_dir: Path, connector: str = CONNECTORS["sql-text"]) -> str:
    """A backup that takes a while to restore (as ``big.dump``); returns the fingerprint it restores."""
    settings.DBBACKUP_CONNECTORS = {"default": {"CONNECTOR": connector}}
    Note.objects.bulk_create([Note(title=f"n{number}", body="x" * 2000) for number in range(10000)])
    run("dbbackup", "-d", "default", "-o", "big.dump", "--noinput")
    restored = fingerprint("default")
    Note.objects.create(title="written after the backup")
    return restored


def _scratch_files() -> list[Path]:
    return sorted(database_dir().glob(".dbbackup-*.sqlite3*"))


def _target_journal() -> Path:
    return Path(f"{connections['default'].settings_dict['NAME']}-journal")


@pytest.mark.parametrize(
    "delay", [None, 0.0, 0.3, "copying", 1.0], ids=["before-scratch", "scratch", "0.3s", "copying", "1s"]
)
@pytest.mark.parametrize("connector", ["sql-text", "backup-api", "django"])
def test_a_killed_restore_leaves_the_database_as_it_was_or_fully_restored(
    settings, backup_dir, delay, connector
):
    if connector == "django" and delay in (0.0, "copying"):
        pytest.skip("the Django connector loads into the live database in one transaction: no scratch file")
    restored = _big_text_backup(settings, backup_dir, CONNECTORS[connector])
    before = fingerprint("default")
    connections["default"].close()
    # an idle connection elsewhere makes the restore copy with the backup API instead of renaming
    database = django_settings.DATABASES["default"]["TEST"]["NAME"]
    holder = sqlite3.connect(database) if delay == "copying" else None
    proc = start_command("dbrestore", "-d", "default", "-i", "big.dump", "--noinput")
    if delay is None:
        time.sleep(0.2)  # still starting Django: nothing opened yet
    elif delay == "copying":  # the backup API is writing into the target (its journal exists)
        deadline = time.monotonic() + 60
        while not _target_journal().exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _target_journal().exists(), "the restore should have copied into the held database"
    else:
        deadline = time.monotonic() + 60
        while not _scratch_files() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
    kill(proc.pid)
    returncode = reap(proc)
    if holder is not None:
        holder.close()
    journal = _target_journal()
    # a kill while SQLite starts or ends its write transaction may leave the target's journal
    # empty or with a zeroed magic number: not hot, so SQLite ignores it (and nothing was written
    # to the database before the journal's header was synced, or everything was)
    cold_journal = journal.exists() and not journal.read_bytes()[:8].strip(b"\0")
    connections["default"].close()
    after = fingerprint("default")
    # all or nothing: a kill after SQLite's commit leaves the database fully restored
    assert after in (before, restored)
    if returncode == 0:
        assert after == restored
    check = sqlite3.connect(django_settings.DATABASES["default"]["TEST"]["NAME"])
    assert check.execute("PRAGMA quick_check").fetchone() == ("ok",)
    check.close()
    # SIGKILL gives no chance to clean up: the scratch database may stay (swept by later runs)
    for path in _scratch_files():
        path.unlink()
    allowed = [journal.name] if cold_journal else []
    assert debris(database_dir(), allowed=allowed) == []


def test_an_interrupted_restore_removes_its_scratch_database(settings, backup_dir):
    """Ctrl-C (SIGINT) lets the restore clean up: no scratch file, the database unchanged."""
    _big_text_backup(settings, backup_dir)
    before = fingerprint("default")
    connections["default"].close()
    proc = start_command("dbrestore", "-d", "default", "-i", "big.dump", "--noinput")
    deadline = time.monotonic() + 60
    while not _scratch_files() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    kill(proc.pid, signal.SIGINT)
    assert reap(proc) != 0
    assert fingerprint("default") == before
    assert _scratch_files() == []
    assert debris(database_dir()) == []


@pytest.mark.parametrize("point", ["before-rename", "after-rename"])
@pytest.mark.parametrize("connector", ["sql-text", "backup-api"])
def test_a_restore_killed_around_the_rename_leaves_the_old_or_the_restored_database(
    settings, backup_dir, tmp_path, point, connector
):
    """No process holds the database, so the checked scratch file is renamed in: a kill just
    before the rename changes nothing, a kill just after it leaves the restored database, and
    neither leaves a journal or write-ahead log beside it that SQLite would replay."""
    restored = _big_text_backup(settings, backup_dir, CONNECTORS[connector])
    before = fingerprint("default")
    connections["default"].close()
    mark = tmp_path / "paused"
    proc = start_command(
        "dbrestore", "-d", "default", "-i", "big.dump", "--noinput",
        env={
            "DJANGO_SETTINGS_MODULE": "tests.faults.pausing_settings",
            "DBBACKUP_PAUSE_AT": point,
            "DBBACKUP_PAUSE_MARK": str(mark),
        },
    )  # fmt: skip
    wait_for(lambda: mark.exists() or proc.poll() is not None, 120, "the restore to reach the rename")
    assert mark.exists(), proc.communicate()
    kill(proc.pid)
    assert reap(proc) != 0
    database = Path(django_settings.DATABASES["default"]["TEST"]["NAME"])
    assert not Path(f"{database}-wal").exists()
    assert not _target_journal().exists()
    check = sqlite3.connect(database)
    assert check.execute("PRAGMA quick_check").fetchone() == ("ok",)
    check.close()
    assert fingerprint("default") == (before if point == "before-rename" else restored)
    # before the rename the checked scratch file stays; the next restore sweeps it
    assert bool(_scratch_files()) == (point == "before-rename")
    run("dbrestore", "-d", "default", "-i", "big.dump", "--noinput")
    assert fingerprint("default") == restored
    assert debris(database_dir()) == []
