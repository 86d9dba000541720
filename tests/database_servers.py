"""Which database servers the tests may use, and the DATABASES entries for them.

PostgreSQL and MariaDB tests run against real servers (127.0.0.1 by default; override with
``DBBACKUP_TEST_PG_HOST``/``_PORT`` and ``DBBACKUP_TEST_MYSQL_HOST``/``_PORT``). Without a
server they are skipped, unless ``DBBACKUP_REQUIRE_SERVERS`` is set (as on CI): then they
run and fail, so a missing server can never pass for a green build.
"""

from __future__ import annotations

import os
import socket

REQUIRE_SERVERS = bool(os.environ.get("DBBACKUP_REQUIRE_SERVERS"))

PG_HOST = os.environ.get("DBBACKUP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DBBACKUP_TEST_PG_PORT", "5432"))
MYSQL_HOST = os.environ.get("DBBACKUP_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("DBBACKUP_TEST_MYSQL_PORT", "3306"))
#: Test databases are named per run, so that two suites on one server never drop each other's.
RUN_ID = os.getpid()


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _driver(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _use_pymysql() -> bool:
    """Django's MySQL backend wants MySQLdb; PyMySQL stands in when mysqlclient is absent."""
    if _driver("MySQLdb"):
        return True
    if not _driver("pymysql"):
        return False
    import pymysql

    pymysql.install_as_MySQLdb()
    return True


def server_databases() -> dict[str, dict]:
    """DATABASES entries for the servers that are up (all of them when they are required)."""
    databases = {}
    if REQUIRE_SERVERS or (reachable(PG_HOST, PG_PORT) and _driver("psycopg")):
        common = {"HOST": PG_HOST, "PORT": PG_PORT, "USER": "postgres", "PASSWORD": ""}
        databases["postgres"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "dbbackup_pg",
            "TEST": {"NAME": f"test_dbbackup_pg_{RUN_ID}"},
            **common,
        }
    if REQUIRE_SERVERS or (reachable(MYSQL_HOST, MYSQL_PORT) and _use_pymysql()):
        _use_pymysql()
        databases["mysql"] = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "dbbackup_my",
            "HOST": MYSQL_HOST,
            "PORT": MYSQL_PORT,
            "USER": "root",
            "PASSWORD": "",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": f"test_dbbackup_my_{RUN_ID}", "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"},
        }
    return databases
