"""Benchmark databases: realistic, moderately compressible rows, generated to a target size.

Both engines get the same shape of data, modelled on a web application's event log:

* ``bench_event``: an id, a user id (indexed), a timestamp with microseconds, a kind out of
  eight, a title and a body made of words (a 1,500-word made-up vocabulary with a skewed,
  Zipf-like frequency, sprinkled with numbers), a JSON payload with repeated keys, a URL and a
  user agent, 16 random bytes (a token), and an amount;
* ``bench_vocab`` / ``bench_phrase``: the vocabulary and 50,000 phrases the text is drawn from
  (small).

A plain dump of it compresses about 3.5x with ``gzip -6`` and a little better with
``zstd -3``, like real application data; the random bytes and microseconds keep it honest.

SQLite databases are written with the standard library's ``sqlite3`` module; PostgreSQL
databases are created with ``psql`` and filled server-side with ``INSERT ... SELECT`` over
``generate_series``, in batches until ``pg_database_size`` reaches the target.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import time
from dataclasses import dataclass

MB = 1024 * 1024

SYLLABLES = [
    "ba", "ko", "ri", "ta", "me", "lu", "no", "sa", "vi", "de", "po", "ga",
    "zu", "fe", "hi", "mo", "ne", "qu", "ra", "te", "an", "el", "or", "us",
]  # fmt: skip
ENDINGS = ["n", "s", "ly", "ed", "er", "ing", "tion", "ment"]
KINDS = ["signup", "login", "logout", "purchase", "refund", "view", "comment", "share"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "curl/8.1.2",
    "python-requests/2.31",
]
VOCABULARY_SIZE = 1500
PHRASES = 50_000


@dataclass
class Generated:
    """What was generated: rows in ``bench_event``, the size on disk, and how long it took."""

    rows: int
    size: int
    seconds: float


# -- SQLite -----------------------------------------------------------------------------------


def _vocabulary(rng: random.Random) -> list[str]:
    words = []
    for i in range(VOCABULARY_SIZE):
        word = rng.choice(SYLLABLES) + rng.choice(SYLLABLES)
        if i % 2 == 0:
            word += rng.choice(ENDINGS)
        words.append(word)
    return words


def _phrases(rng: random.Random, vocabulary: list[str]) -> list[str]:
    phrases = []
    for i in range(PHRASES):
        words = []
        for _ in range(3 + i % 10):
            if rng.random() < 0.06:
                words.append(str(rng.randint(0, 9999)))
            else:
                words.append(vocabulary[int(rng.random() ** 4 * VOCABULARY_SIZE)])
        phrases.append(" ".join(words))
    return phrases


def _sqlite_rows(rng: random.Random, phrases: list[str], first_id: int, count: int):
    pick = rng.choice
    rand = rng.random
    randint = rng.randint
    for row_id in range(first_id, first_id + count):
        p1, p2, p3, p4, p5 = pick(phrases), pick(phrases), pick(phrases), pick(phrases), pick(phrases)
        user_id = randint(1, 50_000)
        kind = pick(KINDS)
        seconds = int(rand() * 1500 * 86400)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1577836800 + seconds))
        created += f".{randint(0, 999_999):06d}"
        w2 = p2.split(" ", 2)
        url_slug = "-".join(w2[:2])
        payload = (
            f'{{"ip": "10.{randint(0, 255)}.{randint(0, 255)}.{randint(0, 255)}", '
            f'"ok": {"true" if rand() < 0.9 else "false"}, "ref": "INV-{randint(0, 1_000_000)}", '
            f'"url": "https://shop.example.com/products/{url_slug}/?utm_source=newsletter&utm_medium=email", '
            f'"tags": ["{p1.split(" ", 1)[0]}", "{p3.split(" ", 2)[1]}"], '
            f'"agent": "{pick(AGENTS)}", "score": {round(rand(), 4)}, '
            f'"address": {{"zip": "{user_id}", "city": "{p4.split(" ", 1)[0]}", "country": "{kind}"}}}}'
        )
        body = f"{p2} {randint(0, 100_000)} {p3}. {p4} {p5}."
        yield (row_id, user_id, created, kind, p1, body, payload, rng.randbytes(16), round(rand() * 10000, 2))


SQLITE_SCHEMA = """
CREATE TABLE bench_vocab (id INTEGER PRIMARY KEY, word TEXT NOT NULL);
CREATE TABLE bench_phrase (id INTEGER PRIMARY KEY, phrase TEXT NOT NULL);
CREATE TABLE bench_event (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, created_at TEXT NOT NULL,
    kind VARCHAR(20) NOT NULL, title VARCHAR(200) NOT NULL, body TEXT NOT NULL,
    payload TEXT NOT NULL, token BLOB NOT NULL, amount DECIMAL NOT NULL
);
CREATE INDEX bench_event_user_id ON bench_event (user_id);
"""


def make_sqlite(path: str, size_mb: float, seed: int = 42) -> Generated:
    """Create the SQLite database ``path`` (replacing it) of about ``size_mb`` MiB."""
    started = time.perf_counter()
    for leftover in (path, f"{path}-journal", f"{path}-wal"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    phrases = _phrases(rng, vocabulary)
    target = int(size_mb * MB)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.executescript(SQLITE_SCHEMA)
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO bench_vocab VALUES (?, ?)", enumerate(vocabulary))
        connection.executemany("INSERT INTO bench_phrase VALUES (?, ?)", enumerate(phrases))
        connection.execute("COMMIT")
        rows, batch = 0, 20_000
        insert = "INSERT INTO bench_event VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        while _sqlite_size(connection) < target:
            connection.execute("BEGIN")
            connection.executemany(insert, _sqlite_rows(rng, phrases, rows + 1, batch))
            connection.execute("COMMIT")
            rows += batch
            per_row = _sqlite_size(connection) / rows
            remaining = (target - _sqlite_size(connection)) / per_row
            batch = int(max(1000, min(200_000, remaining)))
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()
    return Generated(rows=rows, size=os.path.getsize(path), seconds=time.perf_counter() - started)


def _sqlite_size(connection: sqlite3.Connection) -> int:
    page_count = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    return page_count * page_size


# -- PostgreSQL -------------------------------------------------------------------------------


@dataclass
class Postgres:
    """Where the PostgreSQL server is; every call goes through ``psql``."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None

    def env(self) -> dict[str, str]:
        """The environment for libpq tools (PGHOST, PGPORT, PGUSER, PGPASSWORD if any)."""
        env = dict(os.environ)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user})
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` (one or more statements) in ``database``; return the unaligned output."""
        completed = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
            input=sql,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"psql failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed.stdout.strip()

    def available(self) -> str | None:
        """``None`` when the server answers, else why not."""
        try:
            self.psql("SELECT 1")
        except (OSError, RuntimeError) as exc:
            return str(exc)
        return None

    def create_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); CREATE DATABASE "{name}";')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')

    def database_size(self, name: str) -> int:
        return int(self.psql(f"SELECT pg_database_size('{name}')"))

    def django_database(self, name: str) -> dict:
        """The ``DATABASES`` entry Django needs for database ``name``."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "PASSWORD": self.password or "",
            "HOST": self.host,
            "PORT": str(self.port),
        }


PG_SCHEMA = f"""
SELECT setseed(0.42);
CREATE TABLE bench_vocab (id int PRIMARY KEY, word text NOT NULL);
INSERT INTO bench_vocab
SELECT i, (ARRAY{SYLLABLES!r})[1 + floor(random() * {len(SYLLABLES)})::int]
       || (ARRAY{SYLLABLES!r})[1 + floor(random() * {len(SYLLABLES)})::int]
       || CASE WHEN i % 2 = 0 THEN (ARRAY{ENDINGS!r})[1 + floor(random() * {len(ENDINGS)})::int] ELSE '' END
FROM generate_series(0, {VOCABULARY_SIZE - 1}) i;
CREATE TABLE bench_phrase (id int PRIMARY KEY, phrase text NOT NULL);
INSERT INTO bench_phrase
SELECT p.id, string_agg(CASE WHEN p.num THEN p.n::text ELSE v.word END, ' ' ORDER BY p.pos)
FROM (SELECT f.id, pos, floor(power(random(), 4) * {VOCABULARY_SIZE})::int AS k,
             random() < 0.06 AS num, floor(random() * 10000)::int AS n
      FROM generate_series(0, {PHRASES - 1}) f(id), generate_series(1, 3 + f.id % 10) pos) p
JOIN bench_vocab v ON v.id = p.k
GROUP BY p.id;
CREATE TABLE bench_event (
    id bigserial PRIMARY KEY, user_id int NOT NULL, created_at timestamptz NOT NULL,
    kind varchar(20) NOT NULL, title varchar(200) NOT NULL, body text NOT NULL,
    payload jsonb NOT NULL, token bytea NOT NULL, amount numeric(12, 2) NOT NULL
);
CREATE INDEX bench_event_user_id ON bench_event (user_id);
"""

PG_INSERT = f"""
INSERT INTO bench_event (user_id, created_at, kind, title, body, payload, token, amount)
SELECT r.user_id, r.created_at, r.kind, p1.phrase,
       p2.phrase || ' ' || r.n1 || ' ' || p3.phrase || '. ' || p4.phrase || ' ' || p5.phrase || '.',
       jsonb_build_object(
           'ip', r.ip, 'ok', r.ok, 'ref', 'INV-' || r.n2,
           'url', 'https://shop.example.com/products/' || split_part(p2.phrase, ' ', 1) || '-'
                  || split_part(p2.phrase, ' ', 2) || '/?utm_source=newsletter&utm_medium=email',
           'tags', ARRAY[split_part(p1.phrase, ' ', 1), split_part(p3.phrase, ' ', 2)],
           'agent', r.agent, 'score', r.score,
           'address', jsonb_build_object('zip', r.user_id::text, 'city', split_part(p4.phrase, ' ', 1),
                                         'country', r.kind)),
       r.token, r.amount
FROM (SELECT g,
             1 + floor(random() * 50000)::int AS user_id,
             timestamptz '2020-01-01 00:00:00+00' + random() * interval '1500 days' AS created_at,
             (ARRAY{KINDS!r})[1 + floor(random() * {len(KINDS)})::int] AS kind,
             floor(random() * {PHRASES})::int AS k1, floor(random() * {PHRASES})::int AS k2,
             floor(random() * {PHRASES})::int AS k3, floor(random() * {PHRASES})::int AS k4,
             floor(random() * {PHRASES})::int AS k5,
             floor(random() * 100001)::int AS n1, floor(random() * 1000001)::int AS n2,
             '10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.'
                   || floor(random() * 256)::int AS ip,
             round(random()::numeric, 4) AS score, random() < 0.9 AS ok,
             (ARRAY{AGENTS!r})[1 + floor(random() * {len(AGENTS)})::int] AS agent,
             decode(md5(random()::text), 'hex') AS token,
             round((random() * 10000)::numeric, 2) AS amount
      FROM generate_series(1, %(rows)d) g) r
JOIN bench_phrase p1 ON p1.id = r.k1
JOIN bench_phrase p2 ON p2.id = r.k2
JOIN bench_phrase p3 ON p3.id = r.k3
JOIN bench_phrase p4 ON p4.id = r.k4
JOIN bench_phrase p5 ON p5.id = r.k5;
"""


def make_postgres(pg: Postgres, name: str, size_mb: float) -> Generated:
    """Create database ``name`` (replacing it) and fill it to about ``size_mb`` MiB on disk."""
    started = time.perf_counter()
    pg.create_database(name)
    pg.psql(PG_SCHEMA, name)
    target = int(size_mb * MB)
    empty = pg.database_size(name)
    rows, batch = 0, 20_000
    while True:
        pg.psql(PG_INSERT % {"rows": batch}, name)
        rows += batch
        size = pg.database_size(name)
        if size >= target:
            break
        per_row = max(1.0, (size - empty) / rows)
        batch = int(max(1000, min(500_000, (target - size) / per_row)))
    pg.psql("VACUUM ANALYZE;", name)
    return Generated(rows=rows, size=pg.database_size(name), seconds=time.perf_counter() - started)
