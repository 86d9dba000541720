"""Scratch databases of drills that were killed: by owner on this host, by age otherwise."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.db import connections

from dbbackup import drill_scratch, leftovers, pipeline

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres", "mysql"])

DAY = 24 * 60 * 60
#: A host id that is not this machine's boot: owners of such names cannot be checked from here.
FOREIGN = "f0f0f0f0f0f0"
SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
]


def name(host: str, pid: int, start: str, born: float | None) -> str:
    if born is None:  # the format of older versions
        return f"dbbackup_drill_{host}_{pid}_{start}_{os.urandom(3).hex()}"
    return f"dbbackup_drill_{host}_{pid}_{start}_{int(born)}_{os.urandom(2).hex()}"


def dead_pid() -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = leftovers._start_time(proc.pid)
    proc.wait()
    return proc.pid, start


def test_names_record_owner_and_creation_time_and_fit_in_an_identifier():
    assert leftovers._host_id() != FOREIGN
    made = drill_scratch.scratch_name(now=1_780_000_000)
    host, pid, start = leftovers.owner().split("-")
    assert made.startswith(f"dbbackup_drill_{host}_{pid}_{start}_1780000000_")
    assert len(made) <= 63
    longest = name("f" * 12, 4_194_304, "9" * 10, 9_999_999_999)
    assert len(longest) <= 63
    assert drill_scratch._NAME.match(longest)
    assert not drill_scratch.is_stale(made)  # ours, and we are alive


def test_foreign_names_go_by_age_and_this_hosts_by_owner(settings):
    settings.DBBACKUP_LEFTOVER_MAX_AGE = DAY
    now = time.time()
    assert drill_scratch.is_stale(name(FOREIGN, 4242, "12345", now - 2 * DAY), now)
    assert not drill_scratch.is_stale(name(FOREIGN, 4242, "12345", now - 60), now)
    assert not drill_scratch.is_stale(name(FOREIGN, 4242, "12345", None), now)  # old format: no age
    pid, start = dead_pid()
    host = leftovers._host_id()
    assert drill_scratch.is_stale(name(host, pid, start, now), now)  # gone: at once, young or not
    assert drill_scratch.is_stale(name(host, pid, start, None), now)  # old format too
    assert not drill_scratch.is_stale(name(host, os.getpid(), leftovers._start_time(os.getpid()), 0), now)
    assert not drill_scratch.is_stale("dbbackup_drill_not_ours", now)
    settings.DBBACKUP_LEFTOVER_MAX_AGE = None
    assert not drill_scratch.is_stale(name(FOREIGN, 4242, "12345", now - 365 * DAY), now)


def server_names(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbbackup_drill_%%'")
        else:
            cursor.execute("SHOW DATABASES LIKE 'dbbackup\\_drill\\_%%'")
        return {row[0] for row in cursor.fetchall()}


def execute(alias: str, sql: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)


def quoted(alias: str, name: str) -> str:
    return connections[alias].ops.quote_name(name)


@pytest.mark.parametrize("alias", SERVERS)
def test_a_drill_drops_old_scratch_databases_of_other_hosts_and_keeps_young_ones(backup_dir, settings, alias):
    settings.DBBACKUP_LEFTOVER_MAX_AGE = DAY
    now = time.time()
    pid = os.getpid()  # unique to this test run on a shared server
    old = name(FOREIGN, pid, "1", now - 2 * DAY)
    young = name(FOREIGN, pid, "2", now - 60)
    former = name(FOREIGN, pid, "3", None)  # older versions' names have no age: kept
    made = [old, young, former]
    try:
        for scratch in made:
            execute(alias, f"CREATE DATABASE {quoted(alias, scratch)}")
        backup = pipeline.backup_database(alias).filename
        out, err = io.StringIO(), io.StringIO()
        call_command("dbrestore", "--drill", "-d", alias, "-i", backup, "--noinput", stdout=out, stderr=err)
        said = out.getvalue() + err.getvalue()
        assert f"Dropped {old}" in said
        assert "passed" in said
        present = server_names(alias)
        assert old not in present
        assert {young, former} <= present
    finally:
        force = " WITH (FORCE)" if connections[alias].vendor == "postgresql" else ""
        for scratch in made:
            execute(alias, f"DROP DATABASE IF EXISTS {quoted(alias, scratch)}{force}")
