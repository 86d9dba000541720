"""listbackups --health: statuses, exit codes, JSON, Prometheus, the --output file, drills read
from hand-written sidecars, and the deploy-only system check W030."""

import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import checks, health, names, prometheus
from dbbackup.management.commands.listbackups import Command as ListBackups
from dbbackup.storage import get_storage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(backup_dir, settings):
    """Write synthetic backups: ``make(age, alias, server, size, kind, drill)`` -> name."""
    settings.DBBACKUP_DATABASES = ["default", "other"]
    storage = get_storage()

    def make(age, alias="default", server="web1", size=1000, kind="db", drill=None, sidecar=None):
        when = datetime.now(dt_timezone.utc).replace(tzinfo=None, microsecond=0) - age  # TIME_ZONE is UTC
        extension = "tar" if kind == "media" else "sqlite3"
        name = names.generate_filename(extension, alias, server, content_type=kind, when=when)
        storage.write_file(io.BytesIO(b"x" * size), name)
        if drill is not None or sidecar is not None:
            metadata = sidecar if sidecar is not None else {"dbbackup": {"format": 1, "drill": drill}}
            storage.write_file(io.BytesIO(json.dumps(metadata).encode()), name + ".metadata")
        return name

    return make


def drill(ago, ok=True):
    at = (datetime.now(dt_timezone.utc) - ago).isoformat().replace("+00:00", "Z")
    return {"at": at, "ok": ok, "error": None if ok else "boom", "rows": {}, "tools": {}, "seconds": 1.5}


def run_health(*args, **options):
    command = ListBackups()
    out = io.StringIO()
    call_command(command, *args, health=True, stdout=out, **options)
    return command.health_status, out.getvalue()


def healthy(store):
    store(timedelta(hours=30), size=1000)
    store(timedelta(hours=2), size=900)
    store(timedelta(hours=5), alias="other", size=500)


def test_all_fresh_is_ok_with_exit_status_0(store):
    healthy(store)
    status, out = run_health()
    assert status == 0
    assert out.splitlines()[-1] == "Overall: OK"
    assert re.search(r"^OK +db default on web1: newest default-web1-.*2 backup\(s\)", out, re.M)


def test_no_backup_of_a_database_is_critical(store):
    store(timedelta(hours=1))
    status, out = run_health()
    assert status == 2
    assert "CRITICAL db other: no backup" in out


def test_a_stale_backup_is_critical_and_the_max_age_accepts_a_duration_string(store, settings):
    healthy(store)
    store(timedelta(days=3), alias="other", server="web2")
    status, out = run_health()
    assert status == 2
    assert re.search(r"CRITICAL db other on web2: .*\n +critical: the newest backup is 3 days old", out)
    settings.DBBACKUP_HEALTH_MAX_AGE = "4d"
    assert run_health()[0] == 0
    settings.DBBACKUP_HEALTH_MAX_AGE = "a while"
    with pytest.raises(CommandError, match="DBBACKUP_HEALTH_MAX_AGE = 'a while' is not a duration"):
        run_health()


def test_a_size_drop_and_too_few_backups_are_warnings(store, settings):
    healthy(store)
    store(timedelta(hours=1), size=400)  # 900 -> 400: 56% smaller
    status, out = run_health()
    assert status == 1
    assert "warning: the newest backup is 56% smaller than the previous one (400 < 900 bytes)" in out
    settings.DBBACKUP_HEALTH_SIZE_DROP = 0.6
    assert run_health()[0] == 0
    settings.DBBACKUP_HEALTH_MIN_COUNT = 2
    status, out = run_health()
    assert status == 1
    assert "warning: 1 backup(s), fewer than 2" in out


def test_drills_from_sidecars(store, settings):
    store(timedelta(hours=20), drill=drill(timedelta(hours=19)))
    store(timedelta(hours=2))  # newest, not drilled
    store(timedelta(hours=1), alias="other", drill=drill(timedelta(minutes=30), ok=False))
    status, out = run_health(format="json")
    items = {item["database"]: item for item in json.loads(out)["items"]}
    assert items["default"]["newest_drill_ok"] is None
    assert 19 * 3600 <= items["default"]["last_drill_age_seconds"] < 19 * 3600 + 60
    assert items["other"]["newest_drill_ok"] is False
    assert items["other"]["last_drill_timestamp"] is None
    assert "critical: the newest backup's last restore drill failed" in items["other"]["problems"]
    assert status == 2
    settings.DBBACKUP_HEALTH_MAX_DRILL_AGE = "12h"
    _, out = run_health(format="json")
    problems = {item["database"]: item["problems"] for item in json.loads(out)["items"]}
    assert (
        "warning: the last successful restore drill is 19 hours old (more than 12 hours)"
        in problems["default"]
    )
    assert "warning: no successful restore drill" in problems["other"]


@pytest.mark.parametrize(
    "sidecar",
    [
        {"dbbackup": {"drill": "yesterday"}},
        {"dbbackup": {"drill": {"at": "not a date", "ok": True}}},
        {"dbbackup": "old"},
        ["not", "a", "dict"],
    ],
)
def test_odd_drill_records_count_as_no_drill(store, sidecar):
    store(timedelta(hours=1), sidecar=sidecar)
    store(timedelta(hours=1), alias="other")
    status, out = run_health(format="json")
    assert status == 0
    assert json.loads(out)["items"][0]["last_drill_timestamp"] is None


def test_json_fields_are_stable(store):
    healthy(store)
    store(timedelta(hours=3), kind="media", server="web1", size=2048)
    status, out = run_health(format="json")
    document = json.loads(out)
    assert status == 0
    assert document["status"] == "ok"
    assert document["exit_status"] == 0
    assert document["thresholds"] == {
        "max_age_seconds": 26 * 3600.0,
        "min_count": 1,
        "max_drill_age_seconds": None,
        "size_drop": 0.5,
    }
    first = document["items"][0]
    assert set(first) == {
        "kind", "database", "server", "status", "count", "newest", "newest_timestamp",
        "newest_age_seconds", "newest_size", "previous_size", "size_change",
        "last_drill_timestamp", "last_drill_age_seconds", "newest_drill_ok", "problems",
    }  # fmt: skip
    assert (first["kind"], first["database"], first["server"], first["count"]) == ("db", "default", "web1", 2)
    assert (first["newest_size"], first["previous_size"], first["size_change"]) == (900, 1000, -0.1)
    assert 2 * 3600 <= first["newest_age_seconds"] < 2 * 3600 + 60
    assert abs(first["newest_timestamp"] + first["newest_age_seconds"] - document["generated_timestamp"]) < 1
    media_line = r"^OK +media on web1: newest web1-.*\.tar \(3 hours old, 2048 bytes\)"
    assert re.search(media_line, run_health()[1], re.M)
    media = document["items"][-1]
    assert (media["kind"], media["database"], media["server"], media["newest_size"]) == (
        "media",
        None,
        "web1",
        2048,
    )


LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*")*)\} (?P<value>-?[0-9.e+]+)$'
)


def parse_prometheus(text):
    """Check every line of the text exposition format; return {(name, labels): value}."""
    assert text.endswith("\n")
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(r"^# HELP dbbackup_\w+ \S.*$", line), line
        elif line.startswith("# TYPE "):
            name, kind = line.split()[2:]
            assert kind == "gauge"
            assert name not in typed
            typed.add(name)
        else:
            match = LINE.match(line)
            assert match, line
            assert match["name"] in typed, f"{line}: sample before its TYPE line"
            samples[match["name"], match["labels"]] = float(match["value"])
    return samples


def test_prometheus_output(store):
    healthy(store)
    store(timedelta(hours=1), alias="other", server="web2", drill=drill(timedelta(minutes=5)))
    status, out = run_health(format="prometheus")
    assert status == 0
    samples = parse_prometheus(out)
    default = 'database="default",server="web1",kind="db"'
    other2 = 'database="other",server="web2",kind="db"'
    assert samples["dbbackup_backups_count", default] == 2
    assert samples["dbbackup_last_backup_size_bytes", default] == 900
    assert samples["dbbackup_health_status", default] == 0
    age = health.report().items[0].newest_age_seconds
    assert (
        abs(samples["dbbackup_last_backup_timestamp_seconds", default] + age - datetime.now().timestamp()) < 5
    )
    assert samples["dbbackup_last_drill_success", other2] == 1
    assert "dbbackup_last_drill_success" not in {name for name, labels in samples if labels == default}
    assert {name for name, _ in samples} == {name for name, _, _ in prometheus.METRICS}


def test_prometheus_labels_are_escaped():
    item = health.Item("db", 'we"ird\\name', "line\nbreak", count=0, status=2)
    text = prometheus.render(health.Report([item], health.Thresholds(), 0.0))
    assert 'dbbackup_backups_count{database="we\\"ird\\\\name",server="line\\nbreak",kind="db"} 0' in text
    parse_prometheus(text)


def test_output_file_is_written_atomically(store, tmp_path, monkeypatch):
    healthy(store)
    target = tmp_path / "textfile" / "dbbackup.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    replaced = []
    real_replace = os.replace

    def spy(source, destination):
        assert Path(destination) == target
        assert target.read_text() == "old\n"
        assert Path(source).parent == target.parent  # same file system, so the rename is atomic
        replaced.append(Path(source).read_text())
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    status, out = run_health(format="prometheus", output=str(target))
    assert (status, out) == (0, "")
    assert replaced == [target.read_text()]
    parse_prometheus(target.read_text())
    assert sorted(os.listdir(target.parent)) == ["dbbackup.prom"]  # no temporary file left
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    target = tmp_path / "dbbackup.prom"
    target.write_text("old\n")
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        prometheus.write_atomically(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["dbbackup.prom"]


def test_list_options_stay_as_they_were_and_conflicts_are_refused(store):
    healthy(store)
    out = io.StringIO()
    call_command("listbackups", stdout=out)
    assert out.getvalue().splitlines()[0].split()[:2] == ["Name", "Datetime"]
    with pytest.raises(CommandError, match="go with --health"):
        call_command("listbackups", format="prometheus", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--health reports every database and media; it takes no -d"):
        call_command("listbackups", health=True, database="default", stdout=io.StringIO())


def test_a_storage_that_cannot_be_listed_is_critical(store, monkeypatch):
    from dbbackup import catalog

    def broken(*args, **kwargs):
        raise OSError("bucket gone")

    monkeypatch.setattr(catalog, "find", broken)
    status, out = run_health()
    assert status == 2
    assert "the backup storage could not be listed: OSError: bucket gone" in out


def test_the_exit_status_reaches_the_shell(tmp_path):
    """A child process on the test settings, with its own storage: 2 with the report printed."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DBBACKUP_TEST_DIR": str(tmp_path),
    }
    child = subprocess.run(
        [sys.executable, "-m", "django", "listbackups", "--health", "--format", "json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 2, child.stderr
    assert json.loads(child.stdout)["status"] == "critical"
    assert "CommandError" not in child.stderr
    assert "Traceback" not in child.stderr


# -- the deploy check ----------------------------------------------------------------------------


def deploy_messages(deploy):
    from django.core import checks as django_checks

    messages = django_checks.run_checks(include_deployment_checks=deploy)
    return [message for message in messages if message.id == "dbbackup.W030"]


@pytest.mark.django_db(databases="__all__")  # Django 6 checks connect to every database
def test_the_deploy_check_warns_about_stale_and_missing_backups_only_with_deploy(store):
    store(timedelta(days=2))
    store(timedelta(hours=1), alias="other", drill=drill(timedelta(minutes=1), ok=False))
    assert deploy_messages(deploy=False) == []
    messages = deploy_messages(deploy=True)
    assert [message.msg for message in messages] == [
        "Database 'default' on web1: the newest backup is 2 days old (more than 1 day 2 hours)."
    ]
    assert messages[0].level == checks.Warning("", id="x").level


@pytest.mark.django_db(databases="__all__")  # Django 6 checks connect to every database
def test_the_deploy_check_never_fails(store, settings, monkeypatch):
    settings.DBBACKUP_HEALTH_MAX_AGE = "soon"
    [message] = deploy_messages(deploy=True)
    assert "DBBACKUP_HEALTH_MAX_AGE = 'soon' is not a duration" in message.msg
    settings.DBBACKUP_HEALTH_MAX_AGE = "1d"
    messages = deploy_messages(deploy=True)
    assert [message.msg for message in messages] == [
        "Database 'default': no backup.",
        "Database 'other': no backup.",
    ]

    def broken(*args, **kwargs):
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(health, "report", broken)
    [message] = deploy_messages(deploy=True)
    assert message.msg == "The age of the backups could not be checked: RuntimeError: storage exploded"


@pytest.mark.django_db(databases="__all__")  # Django 6 checks connect to every database
def test_manage_py_check_deploy_reports_w030_without_failing(store, settings):
    settings.SILENCED_SYSTEM_CHECKS = ["mail.E001"]  # Django 6.1: the tests' locmem mailer is no deploy
    store(timedelta(days=2))
    store(timedelta(hours=1), alias="other")
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "W030" not in out.getvalue() + err.getvalue()
    call_command("check", "--deploy", stdout=out, stderr=err)  # warnings never raise SystemCheckError
    assert "(dbbackup.W030) Database 'default' on web1: the newest backup is 2 days old" in err.getvalue()
