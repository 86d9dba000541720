"""PostgreSQL restores under fire: killed processes, damaged and hostile backups, held locks.

Every test takes a fingerprint of the database after the backup was made and changed, injects
one fault, and asserts that the database is exactly as it was and nothing was left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import psycopg
import pytest
from django.db import connections

from dbbackup import manifest, pipeline
from dbbackup.exceptions import CorruptBackupError, DbbackupError, RestoreError
from tests.faults.support import (
    child_settings,
    debris,
    fingerprint,
    kill,
    reap,
    run_command,
    start_command,
    wait_for,
    wait_for_tool,
)
from tests.helpers import add_known_data
from tests.testapp.models import Note

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
]

PLAIN = "dbbackup.db.postgresql.PgDumpConnector"
CUSTOM = "dbbackup.db.postgresql.PgDumpBinaryConnector"
CONNECTORS = pytest.mark.parametrize("connector", [PLAIN, CUSTOM], ids=["plain", "custom"])


def use(settings, connector: str, **options) -> None:
    settings.DBBACKUP_CONNECTORS = {"postgres": {"CONNECTOR": connector, **options}}


def bulk(count: int) -> None:
    """Rows that make a dump of a few MiB, hardly compressible."""
    Note.objects.using("postgres").bulk_create(
        Note(title=f"bulk {number}", body=os.urandom(400).hex(), payload=os.urandom(600), extra={"n": number})
        for number in range(count)
    )


def backup(**options) -> str:
    """Back up, then change the database, so that any restore would be visible."""
    name = pipeline.backup_database("postgres", **options).filename
    Note.objects.using("postgres").create(title="newer than the backup")
    return name


def reseal(backup_dir, name: str) -> None:
    """Make the sidecar agree with the (edited) file, as if the backup had been made that way."""
    path = backup_dir / name
    sidecar = backup_dir / (name + ".metadata")
    metadata = json.loads(sidecar.read_text())
    data = path.read_bytes()
    metadata[manifest.KEY]["sha256"] = hashlib.sha256(data).hexdigest()
    metadata[manifest.KEY]["size"] = len(data)
    sidecar.write_text(json.dumps(metadata))


def slow_storage(backup_dir) -> dict:
    """Child settings whose backup storage reads about 1.6 MB/s, whole lines at a time."""
    return child_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
            "dbbackup": {
                "BACKEND": "tests.faults.throttled.ThrottledStorage",
                "OPTIONS": {"location": str(backup_dir), "chunk": 32 * 1024, "delay": 0.02, "lines": True},
            },
        }
    )


def start_slow_restore(name: str, backup_dir):
    """``dbrestore`` of ``name`` in a child process, reading the backup slowly."""
    return start_command(
        "dbrestore", "-d", "postgres", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )


def restore_holds_the_table() -> bool:
    """Whether a psql session has dropped (and so exclusively locks) testapp_note, uncommitted."""
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.datname = current_database() AND a.application_name = 'psql' AND l.granted "
            "AND l.mode = 'AccessExclusiveLock' AND l.relation = 'public.testapp_note'::regclass"
        )
        return cursor.fetchone()[0] > 0


def assert_unchanged(before: str, backup_dir) -> None:
    wait_for(lambda: fingerprint("postgres") == before, timeout=10, what="the database to be as it was")
    assert debris(backup_dir) == []


# -- the dbrestore process itself killed ----------------------------------------------------------


@CONNECTORS
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("when", ["psql-started", "mid-stream"])
def test_killed_dbrestore_changes_nothing(settings, backup_dir, connector, sig, when):
    use(settings, connector)
    bulk(2000)
    name = backup()
    before = fingerprint("postgres")
    proc = start_command(
        "dbrestore", "-d", "postgres", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )
    wait_for_tool(proc, "psql")
    if when == "mid-stream":
        wait_for(restore_holds_the_table, timeout=30, what="the restore to drop testapp_note")
        time.sleep(0.3)
    kill(proc.pid, sig)
    assert reap(proc) == -sig
    assert_unchanged(before, backup_dir)


@CONNECTORS
def test_killed_psql_changes_nothing(settings, backup_dir, connector):
    use(settings, connector)
    bulk(2000)
    name = backup()
    before = fingerprint("postgres")
    proc = start_command(
        "dbrestore", "-d", "postgres", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )
    wait_for(restore_holds_the_table, timeout=30, what="the restore to drop testapp_note")
    kill(wait_for_tool(proc, "psql"))
    assert reap(proc) != 0
    assert "checksum verified" not in proc.stdout.read().decode()
    assert_unchanged(before, backup_dir)


def test_killed_pg_restore_changes_nothing(settings, backup_dir):
    use(settings, CUSTOM)
    bulk(2000)
    name = backup()
    before = fingerprint("postgres")
    proc = start_command(
        "dbrestore", "-d", "postgres", "-i", name, "--noinput", settings=slow_storage(backup_dir)
    )
    wait_for(restore_holds_the_table, timeout=30, what="the restore to drop testapp_note")
    kill(wait_for_tool(proc, "pg_restore"))
    assert reap(proc) != 0
    assert "pg_restore" in proc.stderr.read().decode()
    assert_unchanged(before, backup_dir)


# -- damaged backups ------------------------------------------------------------------------------


def damage(data: bytes, how: str, plain: bool) -> bytes:
    if how == "truncated":  # at a line boundary for SQL: every statement before it is whole
        half = len(data) // 2
        return data[: data.index(b"\n", half) + 1] if plain else data[:half]
    if how == "flipped":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x55]) + data[middle + 1 :]
    if how == "empty":
        return b""
    return data + os.urandom(4 * 1024 * 1024)  # appended


@CONNECTORS
@pytest.mark.parametrize("how", ["truncated", "flipped", "empty", "appended"])
@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_damaged_backup_changes_nothing(settings, backup_dir, connector, how, sidecar):
    use(settings, connector)
    add_known_data("postgres", count=5)
    bulk(300)
    # Without a checksum only a codec can notice a flipped byte: compress that one.
    name = backup(compression="gzip" if how == "flipped" and not sidecar else None)
    before = fingerprint("postgres")
    path = backup_dir / name
    path.write_bytes(damage(path.read_bytes(), how, plain=connector == PLAIN and name.endswith(".psql")))
    if not sidecar:
        (backup_dir / (name + ".metadata")).unlink()
    with pytest.raises(DbbackupError):
        pipeline.restore_database("postgres", input_filename=name)
    assert_unchanged(before, backup_dir)


def test_plain_dump_cut_at_a_line_without_sidecar_is_refused_as_truncated(settings, backup_dir):
    """django-dbbackup's backups have no checksum: pg_dump's completion marker must be there."""
    use(settings, PLAIN)
    bulk(2000)
    name = backup()
    before = fingerprint("postgres")
    path = backup_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
    (backup_dir / (name + ".metadata")).unlink()
    with pytest.raises(CorruptBackupError, match="truncated"):
        pipeline.restore_database("postgres", input_filename=name)
    assert_unchanged(before, backup_dir)


def test_custom_archive_with_bytes_appended_is_not_reported_verified(settings, backup_dir):
    """pg_restore stops at the archive's end; the rest must still be read and checked."""
    use(settings, CUSTOM)
    add_known_data("postgres", count=5)
    name = backup()
    before = fingerprint("postgres")
    path = backup_dir / name
    path.write_bytes(path.read_bytes() + os.urandom(4 * 1024 * 1024))
    result = run_command("dbrestore", "-d", "postgres", "-i", name, "--noinput")
    assert result.returncode != 0
    assert "its metadata says" in result.stderr
    assert "verified" not in result.stdout
    assert_unchanged(before, backup_dir)


# -- hostile backups ------------------------------------------------------------------------------

HOSTILE = {
    "shell": "\\! touch {marker}",
    "output": "\\o {marker}",
    "write": "\\w {marker}",
    "copy-program": "\\copy (SELECT 1) TO PROGRAM 'touch {marker}'",
    "gexec-pipe": "SELECT 1 \\g |touch {marker}",
    "setenv": "\\setenv DBBACKUP_X 1",
    "include": "\\i {marker}",
    "unrestrict-first": "\\unrestrict abc\n\\! touch {marker}",
    "hidden-commit": "SELECT 1 \\; COMMIT;",
}


@pytest.mark.parametrize("command", list(HOSTILE))
@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_plain_backup_cannot_run_psql_meta_commands(settings, backup_dir, tmp_path, command, sidecar):
    use(settings, PLAIN)
    add_known_data("postgres", count=5)
    name = backup()
    before = fingerprint("postgres")
    marker = tmp_path / "pwned"
    path = backup_dir / name
    lines = path.read_bytes().split(b"\n")
    at = next(index for index, line in enumerate(lines) if line.startswith(b"SET row_security"))
    lines.insert(at + 1, HOSTILE[command].format(marker=marker).encode())
    path.write_bytes(b"\n".join(lines))
    if sidecar:
        reseal(backup_dir, name)
    else:
        (backup_dir / (name + ".metadata")).unlink()
    with pytest.raises(RestoreError, match="meta-command"):
        pipeline.restore_database("postgres", input_filename=name)
    assert not marker.exists()
    assert_unchanged(before, backup_dir)


def test_plain_backup_cannot_run_server_programs(settings, backup_dir, tmp_path):
    use(settings, PLAIN)
    add_known_data("postgres", count=5)
    name = backup()
    before = fingerprint("postgres")
    marker = tmp_path / "pwned-server"
    path = backup_dir / name
    path.write_bytes(
        path.read_bytes().replace(
            b"SET row_security = off;\n",
            f"SET row_security = off;\nCOPY public.testapp_tag FROM PROGRAM 'touch {marker}';\n".encode(),
        )
    )
    reseal(backup_dir, name)
    with pytest.raises(RestoreError, match="PROGRAM"):
        pipeline.restore_database("postgres", input_filename=name)
    assert not marker.exists()
    assert_unchanged(before, backup_dir)


def test_custom_archive_cannot_smuggle_meta_commands_through_its_toc(settings, backup_dir, tmp_path):
    """pg_restore -f - prints TOC text as it is: a crafted archive must not reach psql's shell."""
    use(settings, CUSTOM)
    add_known_data("postgres", count=5)
    placeholder = "Q" * 200
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f"COMMENT ON TABLE testapp_tag IS '{placeholder}'")
    name = backup()
    before = fingerprint("postgres")
    marker = tmp_path / "pwned-archive"
    payload = f"'';\n\\! touch {marker}\n-- ".encode()
    old = f"'{placeholder}';".encode()
    assert len(payload) <= len(old)
    path = backup_dir / name
    data = path.read_bytes()
    assert old in data, "the TOC is stored uncompressed in a custom archive"
    path.write_bytes(data.replace(old, payload + b"-" * (len(old) - len(payload))))
    reseal(backup_dir, name)
    with pytest.raises(RestoreError, match="meta-command"):
        pipeline.restore_database("postgres", input_filename=name)
    assert not marker.exists()
    assert_unchanged(before, backup_dir)


def test_meta_commands_inside_strings_and_copy_data_are_only_data(settings, backup_dir):
    use(settings, PLAIN)
    Note.objects.using("postgres").create(title="\\! touch /nonexistent", body="line\n\\o /tmp/x\n\\.x")
    name = pipeline.backup_database("postgres").filename
    expected = fingerprint("postgres")
    Note.objects.using("postgres").all().delete()
    pipeline.restore_database("postgres", input_filename=name)
    assert fingerprint("postgres") == expected


# -- locks ----------------------------------------------------------------------------------------


@CONNECTORS
def test_a_held_lock_fails_fast_naming_the_session(settings, backup_dir, connector):
    use(settings, connector)
    settings.DBBACKUP_RESTORE_LOCK_TIMEOUT = 1
    add_known_data("postgres", count=5)
    name = backup()
    before = fingerprint("postgres")
    params = connections["postgres"].get_connection_params()
    with psycopg.connect(**{**params, "application_name": "holder"}) as holder:
        holder.execute("SELECT count(*) FROM testapp_note").fetchone()  # idle in transaction now
        started = time.monotonic()
        with pytest.raises(RestoreError, match="DBBACKUP_RESTORE_LOCK_TIMEOUT") as info:
            pipeline.restore_database("postgres", input_filename=name)
        assert time.monotonic() - started < 20
        assert "'holder'" in str(info.value)
        assert "idle in transaction" in str(info.value)
        assert f"pid {holder.info.backend_pid}" in str(info.value)
        holder.rollback()
    assert_unchanged(before, backup_dir)


def test_the_restore_waits_for_a_lock_within_the_timeout(settings, backup_dir):
    use(settings, PLAIN)
    settings.DBBACKUP_RESTORE_LOCK_TIMEOUT = 30
    add_known_data("postgres", count=5)
    name = pipeline.backup_database("postgres").filename
    expected = fingerprint("postgres")
    Note.objects.using("postgres").create(title="newer")
    params = connections["postgres"].get_connection_params()
    holder = psycopg.connect(**params)
    holder.execute("SELECT count(*) FROM testapp_note").fetchone()
    threading.Timer(1.0, holder.rollback).start()
    try:
        pipeline.restore_database("postgres", input_filename=name)
    finally:
        holder.close()
    assert fingerprint("postgres") == expected


class _NoGuard:
    """Stands in for ScriptGuard to show that psql's \\restrict is a second, independent wall."""

    complete = True

    def __init__(self, **kwargs) -> None:
        pass

    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


def test_psql_restrict_mode_refuses_meta_commands_even_without_the_filter(
    settings, backup_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("dbbackup.db.pgsession.ScriptGuard", _NoGuard)
    use(settings, PLAIN)
    add_known_data("postgres", count=5)
    name = backup()
    before = fingerprint("postgres")
    marker = tmp_path / "pwned-unfiltered"
    path = backup_dir / name
    data = path.read_bytes().replace(
        b"SET row_security = off;\n", f"SET row_security = off;\n\\! touch {marker}\n".encode()
    )
    path.write_bytes(data)
    reseal(backup_dir, name)
    with pytest.raises(DbbackupError, match="restricted"):
        pipeline.restore_database("postgres", input_filename=name)
    assert not marker.exists()
    assert_unchanged(before, backup_dir)
