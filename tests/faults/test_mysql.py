"""MySQL/MariaDB restores under faults: kills, damaged files, locks, hostile dumps, secrets.

Every test ends with the live database either exactly as it was or fully restored, with no
scratch database and no secret left behind.
"""

from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path

import pytest
from django.db import connections

from dbbackup import pipeline
from dbbackup.exceptions import CorruptBackupError, RestoreError
from tests.faults.support import (
    child_settings,
    descendants,
    files_containing,
    fingerprint,
    kill,
    reap,
    run_command,
    start_command,
    wait_for,
)
from tests.helpers import add_known_data, rows
from tests.testapp.models import Note

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True, databases=["default", "mysql"])]

SECRET = "My5ql pass'word\"$ #x"


def live_name() -> str:
    return connections["mysql"].settings_dict["NAME"]


def scratch_databases() -> list[str]:
    with connections["mysql"].cursor() as cursor:
        cursor.execute("SHOW DATABASES")
        return [name for (name,) in cursor.fetchall() if name.startswith(live_name()[:36] + "_dbbackup_")]


def backup(compression: str | None = None) -> str:
    return pipeline.backup_database("mysql", compression=compression).filename


def make_busy() -> None:
    """Enough incompressible data that mysql is still loading when a test looks for it."""
    for _ in range(6):
        Note.objects.using("mysql").create(title="bulk", payload=os.urandom(2 * 1024 * 1024))


def changed_after_backup() -> str:
    """Change the live database after the backup; return its fingerprint."""
    Note.objects.using("mysql").create(title="newer than the backup")
    return fingerprint("mysql")


def wait_for_loader(proc) -> int:
    """The PID of the mysql client that loads the backup (not the ``--help`` probe)."""

    def find() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"dbrestore ended ({proc.returncode}) before mysql loaded anything")
        for pid, name in descendants(proc.pid):
            if name in ("mysql", "mariadb"):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                # An empty command line is a process on its way out (the probe that just ended).
                if cmdline and b"--help" not in cmdline:
                    return pid
        return None

    return wait_for(find, 60, "mysql to load the backup")


@pytest.fixture
def without_sidecar(backup_dir):
    def remove(name: str) -> None:
        (backup_dir / (name + ".metadata")).unlink()

    return remove


# -- a good restore ----------------------------------------------------------------------------


def test_restore_replaces_backed_up_tables_and_leaves_other_tables_alone(backup_dir):
    add_known_data("mysql")
    name = backup()
    expected = rows("mysql")
    Note.objects.using("mysql").create(title="newer than the backup")
    with connections["mysql"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS not_in_backup")
        cursor.execute("CREATE TABLE not_in_backup (x int)")
        cursor.execute("INSERT INTO not_in_backup VALUES (7)")
    try:
        pipeline.restore_database("mysql", input_filename=name)
        assert {key: value for key, value in rows("mysql").items() if key != "not_in_backup"} == expected
        with connections["mysql"].cursor() as cursor:
            cursor.execute("SELECT x FROM not_in_backup")
            assert cursor.fetchall() == ((7,),)
    finally:
        with connections["mysql"].cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS not_in_backup")
    assert scratch_databases() == []


# -- damaged, truncated and empty files --------------------------------------------------------


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_truncated_plain_dump_leaves_the_database_intact(backup_dir, without_sidecar, sidecar):
    add_known_data("mysql")
    name = backup()
    if not sidecar:
        without_sidecar(name)
    path = backup_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # cut inside the last table's data
    before = changed_after_backup()
    with pytest.raises((CorruptBackupError, RestoreError), match="truncated|Dump completed|SQL syntax"):
        pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_flipped_byte_changes_nothing(backup_dir, without_sidecar, sidecar):
    add_known_data("mysql")
    name = backup(compression="gzip")
    if not sidecar:
        without_sidecar(name)
    path = backup_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    before = changed_after_backup()
    with pytest.raises((CorruptBackupError, RestoreError)):
        pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_empty_file_is_never_a_backup(backup_dir, without_sidecar, sidecar):
    add_known_data("mysql")
    name = backup()
    if not sidecar:
        without_sidecar(name)
    (backup_dir / name).write_bytes(b"")
    before = fingerprint("mysql")
    with pytest.raises(CorruptBackupError):
        pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


def test_dump_cut_at_a_statement_boundary_without_sidecar_is_refused(backup_dir, without_sidecar):
    """mysql itself succeeds on such a file: only the missing '-- Dump completed' line tells."""
    add_known_data("mysql")
    name = backup()
    without_sidecar(name)
    path = backup_dir / name
    text = path.read_bytes()
    cut = text.index(b"\nUNLOCK TABLES;\n") + len(b"\nUNLOCK TABLES;\n")  # after the first table
    path.write_bytes(text[:cut])
    before = changed_after_backup()
    with pytest.raises(CorruptBackupError, match="Dump completed"):
        pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


# -- hostile dumps and the sandbox -------------------------------------------------------------


def test_shell_command_in_a_dump_does_not_run(backup_dir, without_sidecar, tmp_path):
    add_known_data("mysql")
    name = backup()
    without_sidecar(name)
    path = backup_dir / name
    evidence = tmp_path / "pwned"
    lines = path.read_bytes().split(b"\n")
    assert b"sandbox" in lines[0]  # MariaDB's own first line; a hostile dump leaves it out
    path.write_bytes(f"\\! id > {evidence}\n".encode() + b"\n".join(lines[1:]))
    before = changed_after_backup()
    with pytest.raises(RestoreError, match="sandbox|not changed"):
        pipeline.restore_database("mysql", input_filename=name)
    assert not evidence.exists()
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


def test_the_sandbox_line_of_a_mariadb_dump_restores_fine(backup_dir):
    add_known_data("mysql")
    name = backup()
    assert (backup_dir / name).read_bytes().startswith(b"/*M!999999\\- enable the sandbox mode */")
    expected = rows("mysql")
    changed_after_backup()
    pipeline.restore_database("mysql", input_filename=name)
    assert rows("mysql") == expected


@pytest.fixture
def client_without_sandbox(tmp_path, settings):
    client = tmp_path / "old-mysql"
    client.write_text(
        '#!/bin/sh\nif [ "$1" = "--help" ]; then echo "mysql Ver 15.1 Distrib 10.3.39-MariaDB"; '
        'echo "  --batch  Do not use history"; exit 0; fi\nexec mysql "$@"\n'
    )
    client.chmod(0o755)
    settings.DBBACKUP_CONNECTORS = {"mysql": {"RESTORE_CMD": str(client)}}
    return client


def test_client_without_sandbox_mode_is_refused(backup_dir, client_without_sandbox, settings):
    add_known_data("mysql")
    name = backup()
    before = changed_after_backup()
    with pytest.raises(RestoreError, match="no sandbox mode.*DBBACKUP_MYSQL_ALLOW_UNSANDBOXED"):
        pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []
    settings.DBBACKUP_MYSQL_ALLOW_UNSANDBOXED = True
    pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") != before


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "direct"])
def test_missing_mysql_binary_says_nothing_was_changed(backup_dir, settings, atomic):
    add_known_data("mysql")
    name = backup()
    before = changed_after_backup()
    settings.DBBACKUP_CONNECTORS = {"mysql": {"RESTORE_CMD": "/nonexistent/mysql", "ATOMIC": atomic}}
    with pytest.raises(RestoreError, match="not found.*\n.*was not changed") as info:
        pipeline.restore_database("mysql", input_filename=name)
    assert "partly restored" not in str(info.value)
    assert fingerprint("mysql") == before


# -- mysql failing, killed, and dbrestore killed -----------------------------------------------


def failing_client(tmp_path) -> Path:
    """A mysql that answers --help like the real one, then loads half of its input and dies."""
    client = tmp_path / "half-mysql"
    client.write_text(
        '#!/bin/sh\nif [ "$1" = "--help" ]; then exec mysql --help; fi\nhead -c 3000 | mysql "$@"\nexit 1\n'
    )
    client.chmod(0o755)
    return client


def test_mysql_failing_half_way_changes_nothing(backup_dir, settings, tmp_path):
    add_known_data("mysql", count=20)
    name = backup()
    before = changed_after_backup()
    settings.DBBACKUP_CONNECTORS = {"mysql": {"RESTORE_CMD": str(failing_client(tmp_path))}}
    with pytest.raises(RestoreError, match="was not changed") as info:
        pipeline.restore_database("mysql", input_filename=name)
    assert "partly restored" not in str(info.value)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


def test_direct_restore_failing_half_way_says_partly_restored(backup_dir, settings, tmp_path):
    add_known_data("mysql", count=20)
    name = backup()
    client = tmp_path / "failing-mysql"  # fails without touching anything: the test db stays usable
    client.write_text(
        '#!/bin/sh\nif [ "$1" = "--help" ]; then exec mysql --help; fi\ncat >/dev/null\nexit 1\n'
    )
    client.chmod(0o755)
    settings.DBBACKUP_CONNECTORS = {"mysql": {"RESTORE_CMD": str(client), "ATOMIC": False}}
    with pytest.raises(
        RestoreError, match="MySQL cannot roll back a restore: database .* may be partly restored"
    ):
        pipeline.restore_database("mysql", input_filename=name)


def test_killing_mysql_changes_nothing(backup_dir):
    add_known_data("mysql")
    make_busy()
    name = backup()
    before = changed_after_backup()
    proc = start_command("dbrestore", "-d", "mysql", "-i", name, "--noinput")
    kill(wait_for_loader(proc))
    assert reap(proc) != 0
    assert "was not changed" in proc.stderr.read().decode()
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


@pytest.mark.parametrize("delay", [0.0, 0.3], ids=["at-start", "mid-load"])
def test_killing_dbrestore_changes_nothing_and_the_next_restore_cleans_up(backup_dir, delay):
    add_known_data("mysql")
    make_busy()
    name = backup()
    expected = rows("mysql")
    before = changed_after_backup()
    proc = start_command("dbrestore", "-d", "mysql", "-i", name, "--noinput")
    wait_for_loader(proc)
    time.sleep(delay)
    kill(proc.pid)
    reap(proc)
    time.sleep(0.3)  # the server notices the dead connections
    assert fingerprint("mysql") == before
    pipeline.restore_database("mysql", input_filename=name)  # drops the killed run's scratch
    assert scratch_databases() == []
    assert rows("mysql") == expected


def test_scratch_database_of_a_running_restore_is_not_dropped(backup_dir):
    add_known_data("mysql")
    make_busy()
    name = backup()
    expected = rows("mysql")
    proc = start_command("dbrestore", "-d", "mysql", "-i", name, "--noinput")
    try:
        wait_for_loader(proc)
        pipeline.restore_database("mysql", input_filename=name)  # runs alongside
        assert reap(proc) == 0, proc.stderr.read().decode()
    finally:
        kill(proc.pid)
        reap(proc)
    assert rows("mysql") == expected
    assert scratch_databases() == []


# -- locks -------------------------------------------------------------------------------------


def test_open_transaction_makes_the_restore_fail_fast_and_change_nothing(backup_dir, settings):
    add_known_data("mysql")
    name = backup()
    before = changed_after_backup()
    settings.DBBACKUP_RESTORE_LOCK_TIMEOUT = 1
    from dbbackup.db.mysql_swap import control_connection

    with control_connection("mysql", dict(connections["mysql"].settings_dict)) as blocker:
        with blocker.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            [(blocker_id,)] = cursor.fetchall()
            cursor.execute("BEGIN")
            cursor.execute("SELECT COUNT(*) FROM testapp_note")
        started = time.monotonic()
        with pytest.raises(RestoreError, match=f"was not changed.*session {blocker_id} ") as info:
            pipeline.restore_database("mysql", input_filename=name)
        assert time.monotonic() - started < 20
        assert "DBBACKUP_RESTORE_LOCK_TIMEOUT" in str(info.value)
        blocker.rollback()
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


# -- what cannot be swapped atomically ---------------------------------------------------------


def test_backup_with_a_view_is_refused_unless_atomic_is_off(backup_dir, settings):
    add_known_data("mysql")
    with connections["mysql"].cursor() as cursor:
        cursor.execute("CREATE OR REPLACE VIEW note_titles AS SELECT title FROM testapp_note")
    try:
        name = backup()
        before = changed_after_backup()
        with pytest.raises(
            RestoreError, match=r"views \(note_titles\).*Nothing was changed.*\"ATOMIC\"\] = False"
        ):
            pipeline.restore_database("mysql", input_filename=name)
        assert fingerprint("mysql") == before
        assert scratch_databases() == []
        settings.DBBACKUP_CONNECTORS = {"mysql": {"ATOMIC": False}}
        pipeline.restore_database("mysql", input_filename=name)
        assert not Note.objects.using("mysql").filter(title="newer than the backup").exists()
    finally:
        with connections["mysql"].cursor() as cursor:
            cursor.execute("DROP VIEW IF EXISTS note_titles")


# -- secrets -----------------------------------------------------------------------------------


@pytest.fixture
def password_user():
    with connections["mysql"].cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS 'dbbackup_fault'@'%'")
        cursor.execute("CREATE USER 'dbbackup_fault'@'%%' IDENTIFIED BY %s", [SECRET])
        cursor.execute("GRANT ALL ON *.* TO 'dbbackup_fault'@'%'")
    yield "dbbackup_fault"
    with connections["mysql"].cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS 'dbbackup_fault'@'%'")


@pytest.mark.parametrize("command", ["dbbackup", "dbrestore"])
@pytest.mark.parametrize("victim", ["command", "tool"])
def test_killed_runs_leave_no_password_anywhere(
    backup_dir, settings, tmp_path, password_user, command, victim
):
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    settings.DBBACKUP_TMP_DIR = str(tmp_dir)
    add_known_data("mysql")
    make_busy()
    name = backup()
    before = fingerprint("mysql")
    settings.DBBACKUP_CONNECTORS = {"mysql": {"USER": password_user, "PASSWORD": SECRET}}
    argv = (
        ["dbbackup", "-d", "mysql", "--noinput"]
        if command == "dbbackup"
        else ["dbrestore", "-d", "mysql", "-i", name, "--noinput"]
    )
    proc = start_command(*argv, settings=child_settings())
    if command == "dbbackup":
        tool = wait_for(
            lambda: next((p for p, n in descendants(proc.pid) if n == "mysqldump"), None), 60, "mysqldump"
        )
    else:
        tool = wait_for_loader(proc)
    cmdline = Path(f"/proc/{tool}/cmdline").read_bytes()
    assert SECRET.encode() not in cmdline
    assert b"--defaults-extra-file=/dev/fd/" in cmdline
    assert files_containing(SECRET, tmp_dir, backup_dir) == []
    kill(tool if victim == "tool" else proc.pid, signal.SIGKILL)
    reap(proc)
    assert files_containing(SECRET, tmp_dir, backup_dir) == []
    stderr = proc.stderr.read().decode()
    assert SECRET not in stderr
    time.sleep(0.3)
    assert fingerprint("mysql") == before


def test_a_password_user_restores_through_the_pipe(backup_dir, settings, password_user):
    add_known_data("mysql")
    name = backup(compression="gzip")
    expected = rows("mysql")
    changed_after_backup()
    settings.DBBACKUP_CONNECTORS = {"mysql": {"USER": password_user, "PASSWORD": SECRET}}
    result = run_command("dbrestore", "-d", "mysql", "-i", name, "--noinput", settings=child_settings())
    assert result.returncode == 0, result.stderr
    assert rows("mysql") == expected
    assert gzip  # the backup was compressed: the pipe carries the secret, stdin the data


def test_a_user_who_cannot_create_the_scratch_database_gets_a_clear_error(backup_dir, settings):
    add_known_data("mysql")
    name = backup()
    before = changed_after_backup()
    with connections["mysql"].cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS 'dbbackup_narrow'@'%'")
        cursor.execute("CREATE USER 'dbbackup_narrow'@'%%' IDENTIFIED BY %s", [SECRET])
        cursor.execute(f"GRANT ALL ON `{live_name()}`.* TO 'dbbackup_narrow'@'%'")
    try:
        settings.DBBACKUP_CONNECTORS = {"mysql": {"USER": "dbbackup_narrow", "PASSWORD": SECRET}}
        with pytest.raises(
            RestoreError, match="needs CREATE and DROP privileges.*Nothing was changed"
        ) as info:
            pipeline.restore_database("mysql", input_filename=name)
        assert SECRET not in str(info.value)
    finally:
        with connections["mysql"].cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS 'dbbackup_narrow'@'%'")
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


def test_a_dump_of_an_empty_database_changes_nothing(backup_dir, settings):
    settings.DBBACKUP_CONNECTORS = {"mysql": {"EXCLUDE": []}}
    add_known_data("mysql")
    name = backup()
    path = backup_dir / name
    text = path.read_bytes()
    start = text.index(b"\n--\n-- Table structure")
    end = text.rindex(b"UNLOCK TABLES;\n") + len(b"UNLOCK TABLES;\n")
    path.write_bytes(text[:start] + text[end:])  # a complete dump with no tables
    (backup_dir / (name + ".metadata")).unlink()
    before = changed_after_backup()
    pipeline.restore_database("mysql", input_filename=name)
    assert fingerprint("mysql") == before
    assert scratch_databases() == []


def test_killing_dbrestore_while_the_swap_waits_leaves_old_or_new_never_a_mix(backup_dir, settings):
    add_known_data("mysql")
    name = backup()
    expected = rows("mysql")
    before = changed_after_backup()
    from dbbackup.db.mysql_swap import control_connection

    def waiting_rename():
        with connections["mysql"].cursor() as cursor:
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'RENAME TABLE%%' "
                "AND STATE LIKE '%%metadata lock%%'"
            )
            return cursor.fetchall()

    with control_connection("mysql", dict(connections["mysql"].settings_dict)) as blocker:
        with blocker.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT COUNT(*) FROM testapp_tag")
        proc = start_command("dbrestore", "-d", "mysql", "-i", name, "--noinput")
        wait_for(waiting_rename, 60, "the swap to wait for the lock")
        kill(proc.pid)
        reap(proc)
        blocker.rollback()
    wait_for(lambda: not waiting_rename(), 60, "the orphaned RENAME to end")
    assert fingerprint("mysql") == before or rows("mysql") == expected  # all old or all new
    pipeline.restore_database("mysql", input_filename=name)  # drops what the killed run left
    assert rows("mysql") == expected
    assert scratch_databases() == []


def test_ctrl_c_during_the_load_changes_nothing_and_leaves_no_scratch_database(backup_dir):
    add_known_data("mysql")
    make_busy()
    name = backup()
    before = changed_after_backup()
    proc = start_command("dbrestore", "-d", "mysql", "-i", name, "--noinput")
    wait_for_loader(proc)
    time.sleep(0.3)  # the first tables are dropped and recreated by now
    kill(proc.pid, signal.SIGINT)
    assert reap(proc) != 0
    assert fingerprint("mysql") == before
    assert scratch_databases() == []  # dropped by the interrupted run itself


def test_a_live_table_outside_the_backup_referencing_a_restored_table_is_refused(backup_dir):
    add_known_data("mysql")
    name = backup()
    with connections["mysql"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE audit_outside (id int PRIMARY KEY, note_id int, "
            "FOREIGN KEY (note_id) REFERENCES testapp_note (id)) ENGINE=InnoDB"
        )
    try:
        before = changed_after_backup()
        with pytest.raises(
            RestoreError, match="audit_outside, not in the backup, references restored table testapp_note"
        ):
            pipeline.restore_database("mysql", input_filename=name)
        assert fingerprint("mysql") == before
        assert scratch_databases() == []
    finally:
        with connections["mysql"].cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS audit_outside")
