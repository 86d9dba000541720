"""ScriptGuard: what a SQL script from a backup may ask of psql (no server needed)."""

from pathlib import Path

import pytest

from dbbackup.db.pgscript import ScriptGuard, UnsafeScriptError
from dbbackup.exceptions import CorruptBackupError

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "pg-plain.psql"
LOCK = b"SET lock_timeout = '5000ms';"


def run(script: bytes, chunk: int = 7, **kwargs) -> tuple[bytes, ScriptGuard]:
    guard = ScriptGuard(lock_timeout_sql=LOCK, **kwargs)
    out = b"".join(guard.feed(script[i : i + chunk]) for i in range(0, len(script), chunk))
    return out + guard.finish(), guard


def test_a_pg_dump_script_passes_but_for_restrict_lines_and_the_lock_timeout():
    data = GOLDEN.read_bytes()
    out, guard = run(data, chunk=777)
    assert guard.complete
    expected = [line for line in data.split(b"\n") if not line.startswith((b"\\restrict", b"\\unrestrict"))]
    expected = [LOCK if line == b"SET lock_timeout = 0;" else line for line in expected]
    assert out.split(b"\n") == expected


@pytest.mark.parametrize(
    "script",
    [
        b"SELECT 1;\n\\! id\n",
        b"SELECT 1; \\! id\n",
        b"SELECT 1 \\g |id\n",
        b"\\o /tmp/x\n",
        b"\\copy t to program 'id'\n",
        b"SELECT 1 \\; COMMIT;\n",
        b"SELECT (1\n\\! id\n);\n",
        b"\\restrict abc \\! id\n",
    ],
)
def test_meta_commands_are_refused_and_named(script):
    with pytest.raises(UnsafeScriptError, match=r"meta-command \\"):
        run(script)


@pytest.mark.parametrize(
    "script",
    [
        b"SELECT 'a \\! b';\n",
        b"SELECT E'\\' \\! b';\n",
        b"SELECT $x$ \\! $y$ $x$;\n",
        b'SELECT 1 AS "\\!";\n',
        b"/* \\! /* nested */ \\! */ SELECT 1; -- \\! id\n",
        b"COPY t (a) FROM stdin;\n\\! just data\n\\.\n",
        b"SET standard_conforming_strings = off;\nSELECT 'a\\'; \\! b';\n",
    ],
)
def test_backslashes_in_strings_comments_and_copy_data_are_data(script):
    out, _ = run(script)
    assert out == script


def test_transaction_control_of_the_dump_is_dropped_outside_function_bodies():
    script = (
        b"BEGIN;\nSELECT pg_catalog.lo_open('1', 131072);\nCOMMIT;\n"
        b"CREATE PROCEDURE p() LANGUAGE plpgsql AS $$\nBEGIN\n  COMMIT;\nEND;\n$$;\n"
        b"CREATE FUNCTION f() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\nEND;\n"
        b"START TRANSACTION;\nEND;\n"
    )
    out, _ = run(script)
    assert out == (
        b"SELECT pg_catalog.lo_open('1', 131072);\n"
        b"CREATE PROCEDURE p() LANGUAGE plpgsql AS $$\nBEGIN\n  COMMIT;\nEND;\n$$;\n"
        b"CREATE FUNCTION f() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\nEND;\n"
    )


def test_transaction_control_is_kept_when_the_restore_is_not_one_transaction():
    out, _ = run(b"BEGIN;\nSELECT 1;\nCOMMIT;\n", transaction=False)
    assert out == b"BEGIN;\nSELECT 1;\nCOMMIT;\n"


@pytest.mark.parametrize(
    ("script", "match"),
    [
        (b"SELECT 1; COMMIT;\n", "line with other statements"),
        (b"ROLLBACK;\n", "ROLLBACK"),
        (b"ABORT;\n", "ABORT"),
        (b"PREPARE TRANSACTION 'x';\n", "PREPARE TRANSACTION"),
        (b"COMMIT AND CHAIN;\n", "COMMIT"),
        (b"COPY t FROM PROGRAM 'id';\n", "PROGRAM"),
        (b"COPY t TO '/tmp/x';\n", "file on the server"),
        (b"COPY t FROM stdin; SELECT 1;\n", "after a COPY"),
        (b"SET client_encoding = 'SJIS';\n", "SJIS"),
    ],
)
def test_what_could_end_the_transaction_or_reach_the_server_files_is_refused(script, match):
    with pytest.raises(UnsafeScriptError, match=match):
        run(script)


def test_savepoints_and_prepared_statements_are_kept():
    script = b"SAVEPOINT a;\nROLLBACK TO SAVEPOINT a;\nPREPARE q AS SELECT 1;\n"
    assert run(script)[0] == script


@pytest.mark.parametrize(
    "script", [b"SELECT 1\n", b"COPY t (a) FROM stdin;\n1\n", b"SELECT 'open\n", b"SELECT $$ x\n"]
)
def test_a_script_that_stops_mid_statement_is_truncated(script):
    with pytest.raises(CorruptBackupError, match="truncated"):
        run(script)


def test_the_completion_marker_counts_only_at_the_end():
    marker = b"--\n-- PostgreSQL database dump complete\n--\n"
    assert run(b"SELECT 1;\n" + marker)[1].complete
    assert not run(b"SELECT 1;\n" + marker + b"SELECT 2;\n")[1].complete
    assert not run(b"SELECT '\n-- PostgreSQL database dump complete\n';\n")[1].complete


def test_long_copy_rows_are_passed_on_without_waiting_for_their_end():
    guard = ScriptGuard()
    guard.feed(b"COPY t (a) FROM stdin;\n")
    out = guard.feed(b"x" * (2 * 1024 * 1024))
    assert len(out) > 1024 * 1024
    rest = guard.feed(b"y\n\\.\n") + guard.finish()
    assert out + rest == b"x" * (2 * 1024 * 1024) + b"y\n\\.\n"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("psql (PostgreSQL) 15.13", False),
        ("psql (PostgreSQL) 15.14 (Debian 15.14-1)", True),
        ("psql (PostgreSQL) 12.22", False),
        ("psql (PostgreSQL) 17.6", True),
        ("psql (PostgreSQL) 18beta1", True),
        ("no version here", False),
    ],
)
def test_restrict_is_used_only_with_a_psql_that_has_it(tmp_path, version, expected):
    from dbbackup.db.pgsession import supports_restrict
    from dbbackup.db.postgresql import PgDumpConnector

    fake_psql = tmp_path / "psql"
    fake_psql.write_text(f"#!/bin/sh\necho '{version}'\n")
    fake_psql.chmod(0o755)
    connector = PgDumpConnector("default", RESTORE_CMD=str(fake_psql))
    assert supports_restrict(connector) is expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize(
    "script",
    [
        b"COPY t (a) FROM stdin;\n\\\\.x\n\\.\nSELECT 1;\n",
        b"COPY t (a) FROM stdin;\r\n1\r\n\\.\r\nSELECT 1;\r\n",
        b"COPY t (a) FROM stdin;\n\\.\nCOPY u (b) FROM stdin;\n2\n\\.\n",
        b"COPY t (a) FROM stdin;\n1\n\\.",
    ],
)
def test_copy_data_ends_only_at_a_backslash_dot_line_whatever_the_chunks(script, chunk):
    out, guard = run(script, chunk=chunk)
    assert out.rstrip(b"\n") == script.rstrip(b"\n")
    assert not guard._copy


def test_sql_after_copy_data_is_checked_again():
    with pytest.raises(UnsafeScriptError, match="meta-command"):
        run(b"COPY t (a) FROM stdin;\n\\! data\n\\.\n\\! not data\n", chunk=3)


@pytest.mark.parametrize(("value", "expected"), [(30, 30000), (0.5, 500), (None, None), (0, None)])
def test_lock_timeout_setting_in_milliseconds(settings, value, expected):
    from dbbackup.db.pgsession import lock_timeout_ms

    settings.DBBACKUP_RESTORE_LOCK_TIMEOUT = value
    assert lock_timeout_ms() == expected


@pytest.mark.parametrize("value", [-1, "30", True])
def test_a_bad_lock_timeout_is_a_configuration_error(settings, value):
    from dbbackup.db.pgsession import lock_timeout_ms
    from dbbackup.exceptions import DbbackupConfigurationError

    settings.DBBACKUP_RESTORE_LOCK_TIMEOUT = value
    with pytest.raises(DbbackupConfigurationError, match="DBBACKUP_RESTORE_LOCK_TIMEOUT"):
        lock_timeout_ms()
