#!/usr/bin/env python3
"""Benchmark dbbackup against the raw command-line tools; see README.md in this directory.

    python tests/benchmarks/run.py [--engine sqlite|postgresql|mysql|media] [--size-mb N] [--quick]
                                   [--files N] [--storage filesystem|s3]
                                   [--scenarios PATTERN ...] [--json out.json] [--markdown]
                                   [--flatness] [--repeat N] [--keep] [--upstream-venv DIR]

Generates a database, runs every scenario in its own process under the sampler of
``harness.py``, prints a table, and removes everything it created (scratch directory,
PostgreSQL/MariaDB databases, the throwaway GPG keyring and its agent).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datagen
import harness
import media
import mysql_bench
import report
import upstream
from scenarios import CONNECTORS, DUMPS, Scenario, dbbackup_scenarios, ordered, raw_scenarios

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
MB = datagen.MB
DEFAULT_SIZES = {"sqlite": 200, "postgresql": 1000, "mysql": 1000, "media": 1024}
FLATNESS_SIZES = {"sqlite": (50, 200), "postgresql": (100, 1000), "mysql": (100, 1000), "media": (100, 1000)}
QUICK_SIZE = 50
QUICK_FLATNESS_SIZES = (5, 50)

INSTALL_HINT = (
    "Debian/Ubuntu: apt-get update && apt-get install -y sqlite3 gzip zstd pigz gnupg postgresql-client "
    "mariadb-client; "
    "macOS: brew install sqlite zstd pigz gnupg libpq"
)
REQUIRED_TOOLS = {
    "sqlite": ["bash", "cat", "sync", "gzip", "zstd", "gpg", "gpgconf", "sqlite3"],
    "postgresql": ["bash", "cat", "sync", "gzip", "zstd", "gpg", "gpgconf", "psql", "pg_dump", "pg_restore"],
    "mysql": ["bash", "cat", "sync", "gzip", "zstd", "gpg", "gpgconf", "mysql", "mysqldump"],
    "media": ["bash", "tar", "sync", "gzip", "zstd", "gpg", "gpgconf"],
}
REQUIRED_MODULES = {
    "sqlite": ["django", "zstandard", "gnupg"],
    "postgresql": ["django", "zstandard", "gnupg", "psycopg"],
    "mysql": ["django", "zstandard", "gnupg", "pymysql"],
    "media": ["django", "zstandard", "gnupg"],
}
S3_MODULES = ["boto3", "storages", "moto"]
S3_BUCKET = "dbbackup-bench"


@dataclass
class Result:
    id: str
    tool: str
    dump: str
    op: str
    variant: str
    label: str
    ok: bool = True
    error: str = ""
    auto: bool = False  # run only because a selected restore needed its output
    wall: float = 0.0  # the whole process, start to exit
    op_seconds: float = 0.0  # dbbackup: the API call alone; raw: same as wall
    startup_seconds: float = 0.0
    cpu: float = 0.0
    other_cpu: float = 0.0  # CPU used outside the tree meanwhile (the database server, other work)
    raw_size: int = 0  # size of the uncompressed dump, for MB/s
    output_size: int = 0
    py_rss: int = 0  # peak of the Python worker: VmHWM read at its end
    py_rss_sampled: int = 0
    py_rss_before: int = 0  # the worker's RSS just before the call: interpreter, Django, imports
    tree_rss: int = 0
    max_processes: int = 0
    tmp_peak: int = 0
    partial_peak: int = 0
    scratch_peak: int = 0
    baseline: str | None = None
    time_ratio: float | None = None
    pigz_ratio: float | None = None  # -z backups: time s / the same dump through pigz -6
    size_ratio: float | None = None
    runs: int = 0
    walls: list[float] = field(default_factory=list)
    #: 1-minute load average before each run: anything else busy on the machine shows here
    loads: list[float] = field(default_factory=list)

    @property
    def mbps(self) -> float:
        return self.raw_size / MB / self.op_seconds if self.op_seconds and self.raw_size else 0.0


class Bench:
    """One benchmark run: its scratch directory, database, keyring and results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = args.engine
        self.root = Path(args.scratch).resolve() / f"run-{os.getpid()}"
        self.pg = datagen.Postgres(args.pg_host, args.pg_port, args.pg_user, os.environ.get("PGPASSWORD"))
        self.databases: list[str] = []  # PostgreSQL databases to drop at the end
        self.my = mysql_bench.Mysql(args.my_host, args.my_port, args.my_user, os.environ.get("MYSQL_PWD"))
        self.my_databases: list[str] = []  # MariaDB databases to drop at the end
        self.upstream_python: str | None = getattr(args, "upstream_python", None)
        self.results: dict[str, Result] = {}
        self.outputs: dict[str, str] = {}  # scenario id -> backup file (raw) / name in storage (dbbackup)
        self.storage_dirs: dict[str, str] = {}
        self.raw_sizes: dict[str, int] = {}
        self.source = ""  # the database under test: a path (SQLite) or a name (PostgreSQL)
        self.rows = 0
        self.gpg_home = str(self.root / "gnupg")
        self.recipient = ""
        self.s3: dict | None = None  # {"endpoint_url", "bucket"} with --storage s3
        self.moto: subprocess.Popen | None = None

    # -- set-up and clean-up ---------------------------------------------------------------

    def setup(self) -> None:
        for name in ("db", "tmp", "raw", "storage", "restore", "logs", "config"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.make_keyring()
        if self.args.storage == "s3":
            self.start_s3()

    def start_s3(self) -> None:
        """Start moto's S3 server on a free local port and create the bucket."""
        import socket

        import boto3

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = open(self.root / "logs" / "moto.log", "wb")  # noqa: SIM115
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
            region_name="us-east-1",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=S3_BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or self.moto.poll() is not None:
                    raise
                time.sleep(0.2)
        self.s3 = {"endpoint_url": endpoint, "bucket": S3_BUCKET}
        self.s3_client = client
        print(f"moto S3 server at {endpoint}, bucket {S3_BUCKET}", file=sys.stderr, flush=True)

    def make_keyring(self) -> None:
        Path(self.gpg_home).mkdir(mode=0o700, exist_ok=True)
        gpg = ["gpg", "--homedir", self.gpg_home, "--batch", "--quiet"]
        subprocess.run(
            [*gpg, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
             "Bench <bench@example.com>", "future-default", "default", "never"],
            check=True, capture_output=True,
        )  # fmt: skip
        listing = subprocess.run(
            [*gpg, "--list-keys", "--with-colons", "bench@example.com"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        self.recipient = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def cleanup(self) -> None:
        if self.moto is not None:
            self.moto.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.moto.wait(timeout=10)
        if Path(self.gpg_home).exists():
            subprocess.run(
                ["gpgconf", "--homedir", self.gpg_home, "--kill", "all"], check=False, capture_output=True
            )
        for name in self.databases:
            with contextlib.suppress(Exception):
                self.pg.drop_database(name)
        for name in self.my_databases:
            with contextlib.suppress(Exception):
                self.my.drop_scratch_databases(name)
                self.my.drop_database(name)
        if self.args.keep:
            print(f"\nKept the scratch directory {self.root}", file=sys.stderr)
            return
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()  # only if empty

    # -- the database under test -----------------------------------------------------------

    def generate(self, size_mb: float) -> None:
        """(Re)create the database under test, warm the caches, measure the raw dump sizes."""
        if self.engine == "media":
            self.generate_media(size_mb)
            return
        print(f"Generating a {size_mb:g} MB {self.engine} database ...", file=sys.stderr, flush=True)
        if self.engine == "sqlite":
            self.source = str(self.root / "db" / "bench.sqlite3")
            generated = datagen.make_sqlite(self.source, size_mb)
            subprocess.run(["cat", self.source], stdout=subprocess.DEVNULL, check=True)  # page cache
            self.raw_sizes = {
                "sqlite": generated.size,
                "sqlite-cp": generated.size,
                "sqlite-sql": self.dump_size(["sqlite3", self.source, ".dump"]),
            }
        elif self.engine == "mysql":
            self.source = f"dbbackup_bench_{os.getpid()}"
            if self.source not in self.my_databases:
                self.my_databases.append(self.source)
            generated = mysql_bench.make_mysql(self.my, self.source, size_mb)
            self.raw_sizes = {
                "mysql": self.dump_size(
                    ["mysqldump", *self.my.flags(), *mysql_bench.DUMP_FLAGS.split(), "--", self.source]
                )
            }
        else:
            self.source = f"dbbackup_bench_{os.getpid()}"
            if self.source not in self.databases:
                self.databases.append(self.source)
            generated = datagen.make_postgres(self.pg, self.source, size_mb)
            self.raw_sizes = {
                "pg-sql": self.dump_size(["pg_dump", "-d", self.source]),
                "pg-custom": self.dump_size(["pg_dump", "-Fc", "-Z0", "-d", self.source]),
            }
        self.rows = generated.rows
        self.db_size = generated.size
        print(
            f"  {generated.rows} rows, {generated.size / MB:.0f} MB on disk, "
            f"made in {generated.seconds:.1f} s; "
            + ", ".join(f"{dump} dump {size / MB:.0f} MB" for dump, size in self.raw_sizes.items()),
            file=sys.stderr,
            flush=True,
        )

    def generate_media(self, size_mb: float) -> None:
        """(Re)create the media tree under test and read it once (page cache)."""
        files = self.args.files
        if files is None or size_mb != self.args.size_mb:
            density = media.QUICK_DENSITY if self.args.quick else media.DENSITY
            files = max(10, round(size_mb * density))
        self.source = str(self.root / "db" / "media")
        shutil.rmtree(self.source, ignore_errors=True)
        print(f"Generating a {size_mb:g} MB media tree of {files} files ...", file=sys.stderr, flush=True)
        tree = media.make_media_tree(self.source, size_mb, files)
        self.dump_size(["tar", "cf", "-", "-C", self.source, "."])  # page cache (tar skips /dev/null)
        self.rows, self.db_size = tree.files, tree.size
        self.raw_sizes = {"media": tree.size}
        print(
            f"  {tree.files} files, {tree.size / MB:.0f} MB, made in {tree.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    def dump_size(self, argv: list[str]) -> int:
        """Bytes ``argv`` writes to stdout (run once as a cache warm-up, too)."""
        with subprocess.Popen(argv, stdout=subprocess.PIPE, env=self.pg.env()) as proc:
            total = 0
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
        if proc.returncode:
            raise RuntimeError(f"{shlex.join(argv)} failed with status {proc.returncode}")
        return total

    def fresh_target(self) -> str:
        """An empty restore target: an absent SQLite file (a copy of the database with
        ``--restore-over``) or a new PostgreSQL database."""
        if self.engine == "media":
            target = self.root / "restore" / "media"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            return str(target)
        if self.engine == "sqlite":
            target = self.root / "restore" / "target.sqlite3"
            for leftover in self.root.joinpath("restore").iterdir():
                leftover.unlink()
            if self.args.restore_over:  # a live database to replace, as in a real restore
                shutil.copyfile(self.source, target)
                os.sync()
            return str(target)
        name = f"{self.source}_restore"
        if self.engine == "mysql":
            if name not in self.my_databases:
                self.my_databases.append(name)
            self.my.create_database(name)
            return name
        if name not in self.databases:
            self.databases.append(name)
        self.pg.create_database(name)
        return name

    def count_rows(self, target: str) -> int:
        if self.engine == "media":
            files, size = media.count_files(target)
            if size != self.db_size:
                raise RuntimeError(f"the restored tree holds {size} bytes, not {self.db_size}")
            return files
        sql = "SELECT count(*) FROM bench_event"
        if self.engine == "sqlite":
            import sqlite3

            connection = sqlite3.connect(target)
            try:
                return connection.execute(sql).fetchone()[0]
            finally:
                connection.close()
        if self.engine == "mysql":
            return int(self.my.query(sql, target))
        return int(self.pg.psql(sql, target))

    def drop_target(self, target: str) -> None:
        if self.engine == "media":
            shutil.rmtree(target, ignore_errors=True)
        elif self.engine == "sqlite":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        elif self.engine == "mysql":
            self.my.drop_database(target)
        else:
            self.pg.drop_database(target)

    # -- running scenarios -----------------------------------------------------------------

    def fresh_tmp(self) -> str:
        tmp = self.root / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return str(tmp)

    def watches(self, storage_dir: str | None) -> list[harness.Watch]:
        watches = [
            harness.Watch(str(self.root / "db"), lambda name: name.startswith(".dbbackup-"), "scratch"),
            harness.Watch(str(self.root / "restore"), lambda name: name.startswith(".dbbackup-"), "scratch2"),
        ]
        if storage_dir and self.s3 is None:
            watches.append(harness.Watch(storage_dir, lambda name: ".partial-" in name, "partial"))
        return watches

    def environment(self, tmp: str) -> dict[str, str]:
        env = self.pg.env() if self.engine == "postgresql" else self.my.env()
        env["TMPDIR"] = tmp
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
        return env

    def run(self, scenario: Scenario, auto: bool = False, times: int | None = None) -> Result:
        result = Result(
            id=scenario.id, tool=scenario.tool, dump=scenario.dump, op=scenario.op, variant=scenario.variant,
            label=scenario.label, auto=auto, baseline=scenario.baseline,
            raw_size=self.raw_sizes.get(scenario.dump, 0),
        )  # fmt: skip
        print(f"  {scenario.id:<34} {scenario.label}", file=sys.stderr, flush=True)
        for _ in range(self.args.repeat if times is None else times):
            try:
                self.run_once(scenario, result)
            except Exception as exc:
                result.ok, result.error = False, str(exc).strip()[-2000:]
                print(f"    FAILED: {result.error}", file=sys.stderr, flush=True)
                break
        if result.ok:
            print(
                f"    {result.op_seconds:7.2f} s  {result.mbps:7.1f} MB/s  "
                f"out {result.output_size / MB:7.1f} MB  "
                f"tree RSS {result.tree_rss / MB:6.1f} MB  tmp {result.tmp_peak / MB:6.1f} MB",
                file=sys.stderr,
                flush=True,
            )
        self.results[scenario.id] = result
        return result

    def run_once(self, scenario: Scenario, result: Result) -> None:
        tmp = self.fresh_tmp()
        env = self.environment(tmp)
        if scenario.tool == "upstream":
            env = upstream.clean_env(env)
        target = self.fresh_target() if scenario.op == "restore" else None
        log_dir = str(self.root / "logs" / scenario.slug)
        storage_dir = None
        try:
            if scenario.tool == "raw":
                argv, output = self.raw_command(scenario, target)
            else:
                storage_dir, argv = self.dbbackup_command(scenario, target)
                output = None
            os.sync()  # start every run without the previous runs' dirty pages to write back
            result.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
            measured = harness.measure(
                argv, env=env, tmp_dir=tmp, log_dir=log_dir, watches=self.watches(storage_dir),
                interval=self.args.interval, timeout=self.args.timeout,
            )  # fmt: skip
            if measured.returncode != 0:
                raise RuntimeError(f"exit status {measured.returncode}\n{measured.stderr[-1500:]}")
            wall, op_seconds = measured.wall, measured.wall
            if scenario.tool != "raw":
                worker = json.loads(measured.stdout.strip().splitlines()[-1])
                op_seconds = worker["op_seconds"]
                result.startup_seconds = worker["startup_seconds"]
                result.py_rss = max(result.py_rss, worker["vm_hwm"])
                result.py_rss_sampled = max(result.py_rss_sampled, measured.root_rss_peak)
                result.py_rss_before = max(result.py_rss_before, worker.get("rss_before_op", 0))
                if scenario.op == "backup":
                    output = os.path.join(storage_dir, worker["filename"])
                    self.outputs[scenario.id] = worker["filename"]
                    self.storage_dirs[scenario.id] = storage_dir
            if scenario.op == "backup":
                result.output_size = (
                    worker["size"] if self.s3 and scenario.tool != "raw" else os.path.getsize(output)
                )
                if scenario.tool == "raw":
                    self.outputs[scenario.id] = output
            else:
                restored = self.count_rows(target)
                if restored != self.rows:
                    raise RuntimeError(f"the restored database has {restored} rows, not {self.rows}")
                result.output_size = self.restore_input_size(scenario)
            if not result.runs or op_seconds < result.op_seconds:
                result.wall, result.op_seconds, result.cpu = wall, op_seconds, measured.cpu
                result.other_cpu = measured.other_cpu
            result.walls.append(round(op_seconds, 3))
            result.runs += 1
            result.tree_rss = max(result.tree_rss, measured.tree_rss_peak)
            result.max_processes = max(result.max_processes, measured.max_processes)
            result.tmp_peak = max(result.tmp_peak, measured.tmp_peak)
            result.partial_peak = max(result.partial_peak, measured.watched_peaks.get("partial", 0))
            result.scratch_peak = max(
                result.scratch_peak, measured.watched_peaks["scratch"] + measured.watched_peaks["scratch2"]
            )
        finally:
            if target is not None:
                self.drop_target(target)

    def restore_input_size(self, scenario: Scenario) -> int:
        if self.s3 is not None and scenario.tool != "raw":
            return self.results[scenario.source].output_size
        source = self.outputs[scenario.source]
        if scenario.tool != "raw":
            source = os.path.join(self.storage_dirs[scenario.source], source)
        return os.path.getsize(source)

    def raw_command(self, scenario: Scenario, target: str | None) -> tuple[list[str], str | None]:
        gpg = f"gpg --homedir {shlex.quote(self.gpg_home)} --batch --quiet"
        armor = " --armor" if self.args.gpg_armor else ""
        values = {
            "db": shlex.quote(self.source),
            "enc": f"{gpg} --trust-model always --encrypt{armor} --recipient {self.recipient}",
            "dec": f"{gpg} --decrypt",
            "media": shlex.quote(self.source),
            "my": self.my.shell_flags(),
        }
        output = None
        if scenario.op == "backup":
            output = str(self.root / "raw" / f"{scenario.slug}{scenario.extension}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(output)
            values["out"] = shlex.quote(output)
            command = scenario.command.format(**values) + f" && sync {values['out']}"
        else:
            values["in"] = shlex.quote(self.outputs[scenario.source])
            values["target"] = shlex.quote(target)
            command = scenario.command.format(**values)
            if self.engine == "sqlite":
                command += f" && sync {values['target']}"
            elif self.engine == "media":
                command += " && sync"  # as the dbbackup worker does (its config's "sync")
        return ["bash", "-c", f"set -eo pipefail; {command}"], output

    def dbbackup_command(self, scenario: Scenario, target: str | None) -> tuple[str, list[str]]:
        if scenario.op == "backup":
            storage_dir = self.root / "storage" / scenario.slug
            shutil.rmtree(storage_dir, ignore_errors=True)
            storage_dir.mkdir(parents=True)
            database_name = self.source
        else:
            storage_dir = Path(self.storage_dirs[scenario.source])
            database_name = target
        if self.engine == "sqlite":
            database = {"ENGINE": "django.db.backends.sqlite3", "NAME": database_name}
        elif self.engine == "mysql":
            database = self.my.django_database(database_name)
        else:
            database = self.pg.django_database(database_name)
        compression = scenario.variant.split("+")[0] if scenario.variant != "plain" else None
        config = {
            "mode": scenario.op,
            "database": database,
            "storage_dir": str(storage_dir),
            "tmp_dir": str(self.root / "tmp"),
            "gpg_home": self.gpg_home,
            "gpg_recipient": self.recipient,
            "gpg_armor": self.args.gpg_armor,
            "connector": scenario.connector,
            "compression": compression,
            "encrypt": scenario.variant.endswith("+gpg"),
            "input_filename": self.outputs.get(scenario.source) if scenario.source else None,
            "compression_threads": self.args.threads,
        }
        if self.engine == "media":
            media_flags = media.DBBACKUP_FLAGS[scenario.variant]
            config.update(
                mode="command",
                command=scenario.command,
                database={"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
                media_dir=self.source if scenario.op == "backup" else target,
                args=media_flags
                if scenario.op == "backup"
                else ["--noinput", "-r", "-i", self.outputs[scenario.source]],
                sync=True,
                report_output=scenario.op == "backup",
            )
        if scenario.tool == "upstream":
            config.update(upstream.command_config(scenario, self.engine, config["input_filename"]))
        if self.s3 is not None:
            config["s3"] = self.s3
        config_path = self.root / "config" / f"{scenario.slug}.json"
        config_path.write_text(json.dumps(config, indent=2))
        python = self.upstream_python if scenario.tool == "upstream" else sys.executable
        return str(storage_dir), [python, str(HERE / "worker.py"), str(config_path)]

    # -- plans ---------------------------------------------------------------------------

    def run_all(self, selected: list[Scenario], every: dict[str, Scenario]) -> None:
        """Run ``selected`` in order, adding the backups that selected restores need."""
        wanted = {s.id for s in selected}
        plan = list(selected)
        for scenario in selected:
            if scenario.source and scenario.source not in wanted and scenario.source in every:
                wanted.add(scenario.source)
                plan.append(every[scenario.source])
        auto = wanted - {s.id for s in selected}
        times = 1 if self.args.interleave else None
        for scenario in ordered(plan):
            source = self.results.get(scenario.source) if scenario.source else None
            if scenario.source and (source is None or not source.ok):
                print(f"  {scenario.id:<34} skipped: {scenario.source} did not run", file=sys.stderr)
                continue
            self.run(scenario, auto=scenario.id in auto, times=times)
        if self.args.interleave:
            self.more_rounds(ordered(plan))
        self.compare()

    def more_rounds(self, plan: list[Scenario]) -> None:
        """``--interleave``: rounds 2 to N, each running every scenario once, in the same order."""
        for round_number in range(2, self.args.repeat + 1):
            print(f"  round {round_number} of {self.args.repeat}", file=sys.stderr, flush=True)
            for scenario in plan:
                result = self.results.get(scenario.id)
                source = self.results.get(scenario.source) if scenario.source else None
                if result is None or not result.ok or (source is not None and not source.ok):
                    continue
                try:
                    self.run_once(scenario, result)
                except Exception as exc:
                    result.ok, result.error = False, str(exc).strip()[-2000:]
                    print(f"  {scenario.id:<34} FAILED: {result.error}", file=sys.stderr, flush=True)

    def compare(self) -> None:
        for result in self.results.values():
            baseline = self.results.get(result.baseline or "")
            if result.ok and baseline and baseline.ok and baseline.op_seconds:
                result.time_ratio = result.op_seconds / baseline.op_seconds
                if result.op == "backup" and baseline.output_size:
                    result.size_ratio = result.output_size / baseline.output_size
            pigz = self.results.get(f"raw/{result.dump}/backup/pigz")
            gzip_backup = result.variant == "gzip" and result.op == "backup" and result.tool != "raw"
            if gzip_backup and result.ok and pigz and pigz.ok and pigz.op_seconds:
                result.pigz_ratio = result.op_seconds / pigz.op_seconds


# -- checks ------------------------------------------------------------------------------------


def check_requirements(engine: str, storage: str = "filesystem") -> list[str]:
    """Problems that stop the benchmark (missing tools or modules), each with how to fix it."""
    problems = []
    if storage == "s3":
        missing = [name for name in S3_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            problems.append(
                f"Missing Python packages for --storage s3: {', '.join(missing)}. "
                "Install them: pip install 'moto[server]' boto3 django-storages"
            )
    missing_tools = [tool for tool in REQUIRED_TOOLS[engine] if shutil.which(tool) is None]
    if missing_tools:
        problems.append(
            f"Missing command-line tools: {', '.join(missing_tools)}. Install them: {INSTALL_HINT}"
        )
    missing_modules = [name for name in REQUIRED_MODULES[engine] if importlib.util.find_spec(name) is None]
    if missing_modules:
        problems.append(
            f"Missing Python packages: {', '.join(missing_modules)}. Install the project's test extra: "
            f"pip install -e '{PROJECT}[test]'"
        )
    return problems


def available_connectors(engine: str) -> dict[str, bool]:
    """Which of the engine's connectors import (checked in a child: no Django set-up here)."""
    found = {}
    for dump in DUMPS.get(engine, []):
        module, name = CONNECTORS[dump].rsplit(".", 1)
        check = subprocess.run(
            [sys.executable, "-c", f"from {module} import {name}"],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(PROJECT)},
        )  # fmt: skip
        found[dump] = check.returncode == 0
    if engine in ("postgresql", "mysql") and not all(found.values()):
        missing = [CONNECTORS[d] for d, ok in found.items() if not ok]
        rest = "the raw baselines only" if not any(found.values()) else "the others and the raw baselines"
        print(
            f"{engine} connectors not available yet ({', '.join(missing)} cannot be imported); "
            f"skipping their scenarios, running {rest}.",
            file=sys.stderr,
        )
    return found


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "absent"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine() -> dict:
    info = {
        "cpus": os.cpu_count(),
        "cpu_model": "",
        "memory_gib": 0.0,
        "loadavg": "",
        "kernel": platform.release(),
        "os": "",
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    return info


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(PROJECT), *args], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip()


def metadata(bench: Bench, args: argparse.Namespace) -> dict:
    versions = {
        "gzip": tool_version(["gzip", "--version"]),
        "pigz": tool_version(["pigz", "--version"]),
        "zstd": tool_version(["zstd", "--version"]),
        "gpg": tool_version(["gpg", "--version"]),
    }
    if bench.engine == "media":
        versions["tar"] = tool_version(["tar", "--version"])
    elif bench.engine == "sqlite":
        versions["sqlite3"] = tool_version(["sqlite3", "--version"]).split(" ")[0]
    elif bench.engine == "mysql":
        versions["mysqldump"] = tool_version(["mysqldump", "--version"])
        with contextlib.suppress(Exception):
            versions["server"] = bench.my.query("SELECT VERSION()")
    else:
        versions["pg_dump"] = tool_version(["pg_dump", "--version"])
        with contextlib.suppress(Exception):
            versions["server"] = bench.pg.psql("SHOW server_version")
    with contextlib.suppress(Exception):
        import django

        versions["django"] = django.get_version()
    with contextlib.suppress(Exception):
        import zstandard

        versions["zstandard"] = zstandard.__version__
    git = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "dbbackup")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "engine": bench.engine,
        "storage": args.storage,
        "size_mb": args.size_mb,
        "rows": bench.rows,
        "database_size": getattr(bench, "db_size", 0),
        "raw_dump_sizes": bench.raw_sizes,
        "repeat": args.repeat,
        "gpg_armor": args.gpg_armor,
        "compression_threads": args.threads,
        "machine": machine(),
        "versions": versions,
        "upstream": f"django-dbbackup {upstream.VERSION}" if bench.upstream_python else "",
        "git": f"{git}{' + uncommitted changes in dbbackup/' if dirty else ''}",
    }


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "mysql", "media"], default="sqlite")
    parser.add_argument(
        "--storage",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="the backup storage: a directory, or S3Storage on a local moto server (database engines)",
    )
    parser.add_argument(
        "--files", type=int, help="media: files in the tree (default about 20 per MB; --quick 40 per MB)"
    )
    parser.add_argument(
        "--size-mb", type=float, help="database size on disk (default 200 sqlite, 1000 postgresql)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_SIZE} MB database (flatness: 5 and 50 MB)"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        metavar="PATTERN",
        help="run only the scenarios matching these patterns, e.g. '*/backup/gzip' 'raw/*'",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    parser.add_argument(
        "--flatness",
        action="store_true",
        help="run the gzip scenarios at two sizes and compare the peak Python RSS",
    )
    parser.add_argument("--flatness-sizes", type=float, nargs=2, metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the fastest is reported")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="with --repeat N: N rounds of every scenario in turn (raw, dbbackup, upstream, raw, ...) "
        "instead of N runs of one scenario after another, so that a drift of the machine (a file "
        "system that slows with every extraction, another job) hits every scenario alike",
    )
    parser.add_argument("--threads", type=int, help="DBBACKUP_COMPRESSION_THREADS (default: one per CPU)")
    parser.add_argument(
        "--no-armor",
        dest="gpg_armor",
        action="store_false",
        help="binary GPG output (DBBACKUP_GPG_ARMOR = False) instead of ASCII armour",
    )
    parser.add_argument(
        "--scratch", default=str(HERE / ".scratch"), help="where to work (default: %(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--restore-over",
        action="store_true",
        help="SQLite: restore over a copy of the database instead of into an absent file",
    )
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval in seconds")
    parser.add_argument("--timeout", type=float, default=3600, help="per-run timeout in seconds")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    parser.add_argument("--my-host", default="127.0.0.1", help="MariaDB/MySQL host (default %(default)s)")
    parser.add_argument("--my-port", type=int, default=3306, help="MariaDB/MySQL port (default %(default)s)")
    parser.add_argument("--my-user", default="root", help="MariaDB/MySQL user (MYSQL_PWD: its password)")
    parser.add_argument(
        "--upstream-venv",
        metavar="DIR",
        default=os.environ.get("DBBACKUP_UPSTREAM_VENV"),
        help="a venv with the released django-dbbackup 5.4: also run its commands on the same data "
        "(default: DBBACKUP_UPSTREAM_VENV)",
    )
    args = parser.parse_args(argv)
    if args.size_mb is None:
        args.size_mb = QUICK_SIZE if args.quick else DEFAULT_SIZES[args.engine]
    if args.flatness_sizes is None:
        args.flatness_sizes = QUICK_FLATNESS_SIZES if args.quick else FLATNESS_SIZES[args.engine]
    return args


def scenarios_of(
    engine: str, have_pigz: bool, connectors: dict[str, bool], with_upstream: bool = False
) -> list[Scenario]:
    extra = upstream.scenarios(engine) if with_upstream else []
    if engine == "media":
        return media.media_scenarios(have_pigz) + extra
    if engine == "mysql":
        return mysql_bench.raw_scenarios(have_pigz) + dbbackup_scenarios(engine, connectors) + extra
    return raw_scenarios(engine, have_pigz) + dbbackup_scenarios(engine, connectors) + extra


def select(scenarios: list[Scenario], patterns: list[str] | None) -> list[Scenario]:
    if not patterns:
        return scenarios
    return [s for s in scenarios if any(fnmatch.fnmatchcase(s.id, pattern) for pattern in patterns)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    have_pigz = shutil.which("pigz") is not None
    if args.list:
        connectors = dict.fromkeys(CONNECTORS, True)
        every = scenarios_of(args.engine, have_pigz, connectors, bool(args.upstream_venv))
        for scenario in ordered(select(every, args.scenarios)):
            print(f"{scenario.id:<36} {scenario.label}")
        return 0
    problems = check_requirements(args.engine, args.storage)
    try:
        args.upstream_python = upstream.venv_python(args.upstream_venv)
    except RuntimeError as exc:
        problems.append(f"--upstream-venv: {exc}")
    if args.engine == "media" and args.storage == "s3":
        problems.append("--storage s3 runs the database scenarios; use --engine sqlite or postgresql")
    if not have_pigz:
        print(f"pigz is not installed: its baseline is skipped ({INSTALL_HINT}).", file=sys.stderr)
    bench = Bench(args)
    if args.engine == "mysql":
        reason = bench.my.available()
        if reason:
            where = f"{args.my_host}:{args.my_port} as {args.my_user}"
            problems.append(f"MariaDB/MySQL is not reachable at {where}: {reason}")
    if args.engine == "postgresql":
        reason = bench.pg.available()
        if reason:
            problems.append(
                f"PostgreSQL is not reachable at {args.pg_host}:{args.pg_port} as {args.pg_user}: {reason}"
            )
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    connectors = available_connectors(args.engine)
    every = scenarios_of(args.engine, have_pigz, connectors, bool(args.upstream_python))
    by_id = {s.id: s for s in every}
    started = time.perf_counter()
    output: dict = {}
    try:
        bench.setup()
        print(f"Load average before the run: {machine()['loadavg']}", file=sys.stderr)
        if args.flatness:
            patterns = args.scenarios or ["dbbackup/*/backup/gzip", "dbbackup/*/restore/gzip"]
            output = run_flatness(bench, select(every, patterns), by_id)
        else:
            selected = select(every, args.scenarios)
            if not selected:
                print("No scenario matches; see --list.", file=sys.stderr)
                return 2
            bench.generate(args.size_mb)
            bench.run_all(selected, by_id)
            output = {"meta": metadata(bench, args), "results": [asdict(r) for r in bench.results.values()]}
            print(report.text(output))
            if args.markdown:
                print(report.markdown(output))
    finally:
        bench.cleanup()
    output.setdefault("meta", {})["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nTotal time: {output['meta']['elapsed_seconds']:.0f} s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=2) + "\n")
    failed = [r for run in output.get("runs", [output]) for r in run.get("results", []) if not r["ok"]]
    return 1 if failed else 0


def run_flatness(bench: Bench, selected: list[Scenario], by_id: dict[str, Scenario]) -> dict:
    runs = []
    for size in bench.args.flatness_sizes:
        bench.results.clear()
        bench.outputs.clear()
        bench.generate(size)
        bench.run_all(selected, by_id)
        runs.append({"size_mb": size, "meta": metadata(bench, bench.args),
                     "results": [asdict(r) for r in bench.results.values()]})  # fmt: skip
        shutil.rmtree(bench.root / "storage", ignore_errors=True)
        (bench.root / "storage").mkdir()
    output = {"meta": runs[-1]["meta"], "flatness": True, "runs": runs}
    print(report.flatness_text(output))
    if bench.args.markdown:
        print(report.flatness_markdown(output))
    return output


if __name__ == "__main__":
    sys.exit(main())
