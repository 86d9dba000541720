"""The scenarios: dbbackup through its Python API, and the raw command lines it is compared with.

Every scenario has an id ``<tool>/<dump>/<op>/<variant>`` that ``--scenarios`` matches with
shell-style patterns (``'*/backup/gzip'``, ``'raw/*'``):

* tool: ``dbbackup`` (a worker process calling ``backup_database`` / ``restore_database``),
  ``raw`` (a shell pipeline of the command-line tools) or ``upstream`` (the released
  django-dbbackup 5.4's commands, with ``--upstream-venv``: see ``upstream.py``);
* dump: what the database turns into: ``sqlite`` (the database file, through SQLite's backup
  API: ``SqliteBackupConnector``), ``sqlite-cp`` (the file copied as it is:
  ``SqliteCPConnector``), ``sqlite-sql`` (SQL text: ``SqliteConnector``), ``pg-sql``
  (``pg_dump`` plain SQL: ``PgDumpConnector``), ``pg-custom`` (``pg_dump -Fc``: ``PgDumpBinaryConnector``)
  or ``mysql`` (``mysqldump``: ``MysqlDumpConnector``; its raw baselines are in ``mysql_bench.py``);
* op: ``backup`` or ``restore``;
* variant: ``plain``, ``gzip``, ``zstd``, ``gzip+gpg``, ``zstd+gpg`` (and, for raw tools only,
  a few extras such as ``pigz``).

Each dbbackup scenario names the raw scenario it is compared with (``baseline``); each restore
names the backup whose output it restores (``source``).
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ["plain", "gzip", "zstd", "gzip+gpg", "zstd+gpg"]

CONNECTORS = {
    "sqlite": "dbbackup.db.sqlite.SqliteBackupConnector",
    "sqlite-cp": "dbbackup.db.sqlite.SqliteCPConnector",
    "sqlite-sql": "dbbackup.db.sqlite.SqliteConnector",
    "pg-sql": "dbbackup.db.postgresql.PgDumpConnector",
    "pg-custom": "dbbackup.db.postgresql.PgDumpBinaryConnector",
    "mysql": "dbbackup.db.mysql.MysqlDumpConnector",
}
#: The dump kinds each engine benchmarks; the first is the engine's default connector.
DUMPS = {
    "sqlite": ["sqlite", "sqlite-cp", "sqlite-sql"],
    "postgresql": ["pg-custom", "pg-sql"],
    "mysql": ["mysql"],
}
#: Dumps whose restores are benchmarked (SqliteCPConnector restores exactly like the default).
RESTORED_DUMPS = {
    "sqlite": ["sqlite", "sqlite-sql"],
    "postgresql": ["pg-custom", "pg-sql"],
    "mysql": ["mysql"],
}

ENCODE = {
    "plain": "",
    "gzip": " | gzip -6",
    "pigz": " | pigz -6",
    "zstd": " | zstd -3 -T0 -q",
    "gzip+gpg": " | gzip -6 | {enc}",
    "zstd+gpg": " | zstd -3 -T0 -q | {enc}",
}
DECODE = {
    "gzip": "gzip -dc {in}",
    "zstd": "zstd -dcq {in}",
    "gzip+gpg": "{dec} {in} | gzip -dc",
    "zstd+gpg": "{dec} {in} | zstd -dcq",
}
SUFFIX = {
    "plain": "",
    "gzip": ".gz",
    "pigz": ".gz",
    "zstd": ".zst",
    "gzip+gpg": ".gz.gpg",
    "zstd+gpg": ".zst.gpg",
}
PSQL_RESTORE = "psql -X -q -1 -v ON_ERROR_STOP=1 -d {target}"
PG_RESTORE = "pg_restore -1 -d {target}"


@dataclass
class Scenario:
    id: str
    tool: str
    dump: str
    op: str
    variant: str
    label: str
    connector: str | None = None
    command: str | None = None
    extension: str = ""
    baseline: str | None = None
    source: str | None = None

    @property
    def slug(self) -> str:
        return self.id.replace("/", "_").replace("+", "-")


def _raw(dump: str, op: str, variant: str, command: str, label: str, **kwargs) -> Scenario:
    return Scenario(
        id=f"raw/{dump}/{op}/{variant}",
        tool="raw",
        dump=dump,
        op=op,
        variant=variant,
        label=label,
        command=command,
        **kwargs,
    )


def _short(pipeline: str) -> str:
    """A readable label: placeholders shortened to what they stand for."""
    return (
        pipeline.replace("{enc}", "gpg -e")
        .replace("{dec} {in}", "gpg -d in")
        .replace("{db}", "db")
        .replace("{in}", "in")
        .replace("{out}", "out")
        .replace("{target}", "fresh_db")
        .replace(" -q", "")
        .replace("-X -q ", "")
        .replace(" -dcq", " -dc")
    )


def raw_scenarios(engine: str, have_pigz: bool) -> list[Scenario]:
    """The raw command-line baselines of ``engine``."""
    found: list[Scenario] = []
    backup_variants = [
        v for v in ["plain", "gzip", "pigz", "zstd", "gzip+gpg", "zstd+gpg"] if have_pigz or v != "pigz"
    ]
    if engine == "sqlite":
        found.append(
            _raw(
                "sqlite",
                "backup",
                "plain",
                'sqlite3 {db} ".backup {out}"',
                'sqlite3 db ".backup out"',
                extension=".sqlite3",
            )
        )
        found.append(
            _raw("sqlite-cp", "backup", "plain", "cat {db} > {out}", "cat db > out", extension=".sqlite3")
        )
        for variant in backup_variants[1:]:
            pipeline = "cat {db}" + ENCODE[variant] + " > {out}"
            found.append(
                _raw(
                    "sqlite",
                    "backup",
                    variant,
                    pipeline,
                    _short(pipeline),
                    extension=".sqlite3" + SUFFIX[variant],
                )
            )
        plain_in = "raw/sqlite/backup/plain"
        found.append(
            _raw("sqlite", "restore", "plain", "cat {in} > {target}", "cat in > file", source=plain_in)
        )
        found.append(
            _raw(
                "sqlite",
                "restore",
                "sqlite3",
                'sqlite3 {target} ".restore {in}"',
                'sqlite3 file ".restore in"',
                source=plain_in,
            )
        )
        for variant in VARIANTS[1:]:
            pipeline = DECODE[variant] + " > {target}"
            found.append(
                _raw(
                    "sqlite",
                    "restore",
                    variant,
                    pipeline,
                    _short(pipeline).replace("fresh_db", "file"),
                    source=f"raw/sqlite/backup/{variant}",
                )
            )
        # SQL text, as SqliteConnector writes it (sqlite3's .dump wraps it in one transaction).
        for variant in backup_variants:
            if variant == "pigz":
                continue
            pipeline = "sqlite3 {db} .dump" + ENCODE[variant] + " > {out}"
            found.append(
                _raw(
                    "sqlite-sql",
                    "backup",
                    variant,
                    pipeline,
                    _short(pipeline),
                    extension=".sql" + SUFFIX[variant],
                )
            )
        for variant in VARIANTS:
            pipeline = (
                "sqlite3 {target} < {in}" if variant == "plain" else DECODE[variant] + " | sqlite3 {target}"
            )
            found.append(
                _raw(
                    "sqlite-sql",
                    "restore",
                    variant,
                    pipeline,
                    _short(pipeline).replace("fresh_db", "file"),
                    source=f"raw/sqlite-sql/backup/{variant}",
                )
            )
        return found

    for variant in backup_variants:
        pipeline = "pg_dump -d {db}" + ENCODE[variant] + " > {out}"
        found.append(
            _raw("pg-sql", "backup", variant, pipeline, _short(pipeline), extension=".sql" + SUFFIX[variant])
        )
    found.append(
        _raw(
            "pg-custom",
            "backup",
            "plain",
            "pg_dump -Fc -d {db} > {out}",
            "pg_dump -Fc db > out",
            extension=".dump",
        )
    )
    found.append(
        _raw(
            "pg-custom",
            "backup",
            "Z0",
            "pg_dump -Fc -Z0 -d {db} > {out}",
            "pg_dump -Fc -Z0 db > out",
            extension=".dump",
        )
    )
    for variant in backup_variants[1:]:
        pipeline = "pg_dump -Fc -Z0 -d {db}" + ENCODE[variant] + " > {out}"
        found.append(
            _raw(
                "pg-custom",
                "backup",
                variant,
                pipeline,
                _short(pipeline),
                extension=".dump" + SUFFIX[variant],
            )
        )
    found.append(
        _raw(
            "pg-sql",
            "restore",
            "plain",
            PSQL_RESTORE + " -f {in}",
            _short(PSQL_RESTORE + " -f {in}"),
            source="raw/pg-sql/backup/plain",
        )
    )
    found.append(
        _raw(
            "pg-custom",
            "restore",
            "plain",
            PG_RESTORE + " {in}",
            _short(PG_RESTORE + " {in}"),
            source="raw/pg-custom/backup/plain",
        )
    )
    found.append(
        _raw(
            "pg-custom",
            "restore",
            "Z0",
            PG_RESTORE + " {in}",
            _short(PG_RESTORE + " {in}") + " (-Z0)",
            source="raw/pg-custom/backup/Z0",
        )
    )
    for variant in VARIANTS[1:]:
        for dump, tool in (("pg-sql", PSQL_RESTORE), ("pg-custom", PG_RESTORE)):
            pipeline = DECODE[variant] + " | " + tool
            found.append(
                _raw(
                    dump,
                    "restore",
                    variant,
                    pipeline,
                    _short(pipeline),
                    source=f"raw/{dump}/backup/{variant}",
                )
            )
    return found


def dbbackup_scenarios(engine: str, available: dict[str, bool]) -> list[Scenario]:
    """dbbackup's scenarios for ``engine``, for the connectors that can be imported."""
    found: list[Scenario] = []
    for dump in DUMPS[engine]:
        if not available.get(dump):
            continue
        connector = CONNECTORS[dump]
        short = connector.rsplit(".", 1)[1]
        for variant in VARIANTS:
            baseline_dump = "sqlite" if dump == "sqlite-cp" and variant != "plain" else dump
            found.append(
                Scenario(
                    id=f"dbbackup/{dump}/backup/{variant}",
                    tool="dbbackup",
                    dump=dump,
                    op="backup",
                    variant=variant,
                    label=f"{short} {_flags(variant)}".strip(),
                    connector=connector,
                    baseline=f"raw/{baseline_dump}/backup/{variant}",
                )
            )
        if dump in RESTORED_DUMPS[engine]:
            for variant in VARIANTS:
                found.append(
                    Scenario(
                        id=f"dbbackup/{dump}/restore/{variant}",
                        tool="dbbackup",
                        dump=dump,
                        op="restore",
                        variant=variant,
                        label=f"{short} restore of {_flags(variant) or 'plain'}",
                        connector=connector,
                        baseline=f"raw/{dump}/restore/{variant}",
                        source=f"dbbackup/{dump}/backup/{variant}",
                    )
                )
    return found


def _flags(variant: str) -> str:
    return {
        "plain": "",
        "gzip": "-z (gzip)",
        "zstd": "zstd",
        "gzip+gpg": "-z -e (gzip + gpg)",
        "zstd+gpg": "zstd -e (zstd + gpg)",
    }[variant]


def ordered(scenarios: list[Scenario]) -> list[Scenario]:
    """Backups before restores; per variant, the raw baseline right before dbbackup."""
    rank = {
        variant: i
        for i, variant in enumerate(
            ["plain", "Z0", "sqlite3", "gzip", "pigz", "zstd", "gzip+gpg", "zstd+gpg"]
        )
    }
    return sorted(
        scenarios,
        key=lambda s: (s.op != "backup", rank.get(s.variant, 99), s.dump, s.tool != "raw"),
    )
