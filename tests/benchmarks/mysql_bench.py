"""The MySQL/MariaDB benchmark: a generated database, ``mysqldump``/``mysql`` raw baselines.

``run.py --engine mysql`` uses this module: :class:`Mysql` talks to the server through the
``mysql`` client (like :class:`datagen.Postgres` through ``psql``), :func:`make_mysql` fills a
database with the same shape of rows as the PostgreSQL generator (an event log of words from a
skewed vocabulary, a JSON payload, 16 random bytes, ...), server-side with ``INSERT ... SELECT``
over MariaDB's sequence tables (``seq_1_to_N``), and :func:`raw_scenarios` lists the command
lines dbbackup's ``MysqlDumpConnector`` is compared with.

The databases are ``dbbackup_bench_<pid>`` (and ``..._restore``); ``run.py`` drops them at the end.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass

from datagen import AGENTS, ENDINGS, KINDS, MB, PHRASES, SYLLABLES, VOCABULARY_SIZE, Generated
from scenarios import DECODE, ENCODE, SUFFIX, VARIANTS, Scenario, _raw, _short

#: The options ``MysqlDumpConnector`` gives mysqldump (its ``dump_argv``), for the raw baseline.
DUMP_FLAGS = "--single-transaction --quick --hex-blob"


@dataclass
class Mysql:
    """Where the MySQL/MariaDB server is; every call goes through the ``mysql`` client."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str | None = None

    def flags(self) -> list[str]:
        """Connection flags for ``mysql`` and ``mysqldump`` (the password goes in the environment)."""
        return [f"--host={self.host}", f"--port={self.port}", f"--user={self.user}"]

    def shell_flags(self) -> str:
        return shlex.join(self.flags())

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["MYSQL_PWD"] = self.password
        return env

    def query(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` (one or more statements); return the tab-separated output without headers."""
        argv = ["mysql", *self.flags(), "--batch", "--skip-column-names"]
        if database:
            argv += ["--database", database]
        completed = subprocess.run(
            argv, input=sql, env=self.env(), capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(f"mysql failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed.stdout.strip()

    def available(self) -> str | None:
        """``None`` when the server answers, else why not."""
        try:
            self.query("SELECT 1")
        except (OSError, RuntimeError) as exc:
            return str(exc)
        return None

    def create_database(self, name: str) -> None:
        self.query(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4;")

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE IF EXISTS `{name}`;")

    def drop_scratch_databases(self, name: str) -> None:
        """Scratch databases a killed dbbackup restore of ``name`` may have left
        (``<name>_dbbackup_<hex>``); a finished restore drops its own."""
        pattern = name.replace("_", "\\_") + "\\_dbbackup\\_%"
        for leftover in self.query(f"SHOW DATABASES LIKE '{pattern}'").split():
            self.drop_database(leftover)

    def database_size(self, name: str) -> int:
        self.query("ANALYZE TABLE bench_event;", name)  # InnoDB's sizes are estimates until then
        return int(
            self.query(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                f"WHERE table_schema = '{name}'"
            )
        )

    def django_database(self, name: str) -> dict:
        """The ``DATABASES`` entry Django needs for database ``name``."""
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": self.user,
            "PASSWORD": self.password or "",
            "HOST": self.host,
            "PORT": str(self.port),
        }


def _elt(values: list[str]) -> str:
    """A random pick among ``values`` in SQL."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"ELT(1 + FLOOR(RAND() * {len(values)}), {quoted})"


SCHEMA = f"""
CREATE TABLE bench_vocab (id int PRIMARY KEY, word varchar(40) NOT NULL);
INSERT INTO bench_vocab
SELECT seq, CONCAT({_elt(SYLLABLES)}, {_elt(SYLLABLES)}, IF(seq % 2 = 0, {_elt(ENDINGS)}, ''))
FROM seq_0_to_{VOCABULARY_SIZE - 1};
CREATE TABLE bench_phrase (id int PRIMARY KEY, phrase text NOT NULL);
INSERT INTO bench_phrase
SELECT p.id, GROUP_CONCAT(IF(p.num, p.n, v.word) ORDER BY p.pos SEPARATOR ' ')
FROM (SELECT f.seq AS id, pos.seq AS pos, FLOOR(POW(RAND(), 4) * {VOCABULARY_SIZE}) AS k,
             RAND() < 0.06 AS num, FLOOR(RAND() * 10000) AS n
      FROM seq_0_to_{PHRASES - 1} f JOIN seq_1_to_12 pos ON pos.seq <= 3 + f.seq % 10) p
JOIN bench_vocab v ON v.id = p.k
GROUP BY p.id;
CREATE TABLE bench_event (
    id bigint AUTO_INCREMENT PRIMARY KEY, user_id int NOT NULL, created_at datetime(6) NOT NULL,
    kind varchar(20) NOT NULL, title varchar(200) NOT NULL, body text NOT NULL,
    payload json NOT NULL, token varbinary(16) NOT NULL, amount decimal(12, 2) NOT NULL,
    KEY bench_event_user_id (user_id)
) ENGINE=InnoDB;
SET SESSION max_heap_table_size = 1024 * 1024 * 1024;  -- a MEMORY table's limit is set when it is made
CREATE TABLE bench_draw (
    g int PRIMARY KEY, user_id int, created_at datetime(6), kind varchar(20), k1 int, k2 int, k3 int,
    k4 int, k5 int, n1 int, n2 int, ip varchar(20), score decimal(6, 4), ok bool, agent varchar(60),
    token varbinary(16), amount decimal(12, 2)
) ENGINE=MEMORY;
"""

# The random draws go into a table first: a derived table with RAND() in a join would be
# re-evaluated per comparison.
DRAW = f"""
DELETE FROM bench_draw;
INSERT INTO bench_draw
SELECT seq, 1 + FLOOR(RAND() * 50000),
       TIMESTAMP('2020-01-01') + INTERVAL FLOOR(RAND() * 1500 * 86400 * 1000000) MICROSECOND,
       {_elt(KINDS)},
       FLOOR(RAND() * {PHRASES}), FLOOR(RAND() * {PHRASES}), FLOOR(RAND() * {PHRASES}),
       FLOOR(RAND() * {PHRASES}), FLOOR(RAND() * {PHRASES}),
       FLOOR(RAND() * 100001), FLOOR(RAND() * 1000001),
       CONCAT('10.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256)),
       ROUND(RAND(), 4), RAND() < 0.9, {_elt(AGENTS)}, UNHEX(MD5(RAND())), ROUND(RAND() * 10000, 2)
FROM seq_1_to_%(rows)d;
INSERT INTO bench_event (user_id, created_at, kind, title, body, payload, token, amount)
SELECT r.user_id, r.created_at, r.kind, p1.phrase,
       CONCAT(p2.phrase, ' ', r.n1, ' ', p3.phrase, '. ', p4.phrase, ' ', p5.phrase, '.'),
       JSON_OBJECT(
           'ip', r.ip, 'ok', r.ok = 1, 'ref', CONCAT('INV-', r.n2),
           'url', CONCAT('https://shop.example.com/products/', SUBSTRING_INDEX(p2.phrase, ' ', 1), '-',
                         SUBSTRING_INDEX(SUBSTRING_INDEX(p2.phrase, ' ', 2), ' ', -1),
                         '/?utm_source=newsletter&utm_medium=email'),
           'tags', JSON_ARRAY(SUBSTRING_INDEX(p1.phrase, ' ', 1),
                              SUBSTRING_INDEX(SUBSTRING_INDEX(p3.phrase, ' ', 2), ' ', -1)),
           'agent', r.agent, 'score', r.score,
           'address', JSON_OBJECT('zip', CAST(r.user_id AS char), 'city', SUBSTRING_INDEX(p4.phrase, ' ', 1),
                                  'country', r.kind)),
       r.token, r.amount
FROM bench_draw r
JOIN bench_phrase p1 ON p1.id = r.k1
JOIN bench_phrase p2 ON p2.id = r.k2
JOIN bench_phrase p3 ON p3.id = r.k3
JOIN bench_phrase p4 ON p4.id = r.k4
JOIN bench_phrase p5 ON p5.id = r.k5;
"""


def make_mysql(server: Mysql, name: str, size_mb: float) -> Generated:
    """Create database ``name`` (replacing it) and fill it to about ``size_mb`` MiB on disk
    (InnoDB data and indexes)."""
    started = time.perf_counter()
    server.create_database(name)
    server.query(SCHEMA, name)
    target = int(size_mb * MB)
    empty = server.database_size(name)
    rows, batch = 0, 20_000
    while True:
        server.query(DRAW % {"rows": batch}, name)
        rows += batch
        size = server.database_size(name)
        if size >= target:
            break
        per_row = max(1.0, (size - empty) / rows)
        batch = int(max(1000, min(200_000, (target - size) / per_row)))
    server.query("DROP TABLE bench_draw;", name)
    return Generated(rows=rows, size=server.database_size(name), seconds=time.perf_counter() - started)


def raw_scenarios(have_pigz: bool) -> list[Scenario]:
    """``mysqldump`` into files and pipes, and ``mysql`` restores of them."""
    dump = "mysqldump {my} " + DUMP_FLAGS + " -- {db}"
    found: list[Scenario] = []
    for variant in ["plain", "gzip", "pigz", "zstd", "gzip+gpg", "zstd+gpg"]:
        if variant == "pigz" and not have_pigz:
            continue
        pipeline = dump + ENCODE[variant] + " > {out}"
        label = _short(pipeline).replace("{my} ", "").replace(" " + DUMP_FLAGS, "")
        found.append(_raw("mysql", "backup", variant, pipeline, label, extension=".sql" + SUFFIX[variant]))
    restore = "mysql {my} {target}"
    for variant in VARIANTS:
        pipeline = restore + " < {in}" if variant == "plain" else DECODE[variant] + " | " + restore
        label = _short(pipeline).replace("{my} ", "")
        found.append(_raw("mysql", "restore", variant, pipeline, label, source=f"raw/mysql/backup/{variant}"))
    return found
