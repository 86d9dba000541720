"""``dbbackup --check``: try everything a backup needs, for real, and report.

For each database: its connector, each tool's ``--version``, a connection, and (PostgreSQL)
that ``pg_dump`` is not older than the server. Then the backup storage (write, read back and
delete a small object), the media storage (list it) and, when a GPG recipient is set, a real
encryption to it. Nothing is dumped or restored and nothing is left behind.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connections

from dbbackup import environment, process, settings
from dbbackup.db.base import get_connector


@dataclass
class Check:
    """One line of the report."""

    subject: str
    name: str
    ok: bool
    detail: str = ""


def _attempt(subject: str, name: str, action: Callable[[], str | None]) -> Check:
    try:
        detail = action() or ""
    except Exception as exc:
        return Check(subject, name, False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return Check(subject, name, True, detail)


def database_checks(alias: str) -> list[Check]:
    subject = f"database {alias}"
    connector_check = _attempt(subject, "connector", lambda: get_connector(alias).path())
    if not connector_check.ok:
        return [connector_check]
    connector = get_connector(alias)
    checks = [connector_check]
    for tool in environment.connector_tools(connector):
        checks.append(
            _attempt(
                subject,
                f"{tool} --version",
                lambda tool=tool: (
                    process.run(
                        process.Command(argv=[tool, "--version"], missing_hint=connector.install_hint),
                        timeout=30,
                    )
                    .strip()
                    .splitlines()[0]
                ),
            )
        )
    if connections.settings[alias]["ENGINE"].split(".")[-1] in {
        "sqlite3",
        "postgresql",
        "postgis",
        "mysql",
        "spatialite",
    }:
        checks.append(_attempt(subject, "connect", lambda: _connect(alias)))
    if hasattr(connector, "check_tool_version"):
        checks.append(_attempt(subject, "pg_dump not older than the server", lambda: _tool_fits(connector)))
    return checks


def _tool_fits(connector) -> str:
    """``pg_dump`` is at least as new as the server; an unknown server version is a failure."""
    server = connector._server_major_version()
    if server is None:
        raise ConnectionError("unknown: the server's version could not be read (see the connect line)")
    connector.check_tool_version()
    return f"yes (server {server})"


def _connect(alias: str) -> str:
    connection = connections[alias]
    connection.ensure_connection()
    return f"{connection.vendor} {'.'.join(map(str, connection.get_database_version()))}"


def storage_checks() -> list[Check]:
    from dbbackup.storage import get_storage

    def round_trip() -> str:
        storage = get_storage()
        payload = secrets.token_bytes(64)
        name = f".dbbackup-check-{secrets.token_hex(8)}"
        stored = storage.write_file(io.BytesIO(payload), name)
        try:
            with storage.read_file(stored) as handle:
                if handle.read() != payload:
                    raise OSError("what was read back differs from what was written")
        finally:
            storage.delete_file(stored)
        if storage.exists(stored):
            raise OSError("the test object could not be deleted")
        return f"{storage}: write, read, delete"

    def media_listing() -> str:
        from django.core.files.storage import default_storage

        try:
            directories, files = default_storage.listdir("")
        except FileNotFoundError:
            return "empty (its folder does not exist yet)"
        kind = type(default_storage._wrapped).__name__
        return f"{kind}: {len(files)} file(s), {len(directories)} folder(s) at the top"

    return [
        _attempt("backup storage", "write, read, delete", round_trip),
        _attempt("media storage", "list", media_listing),
    ]


def gpg_checks() -> list[Check]:
    if not settings.GPG_RECIPIENT:
        return []

    def encrypt() -> str:
        from dbbackup import crypto

        stream = crypto.encrypt(io.BytesIO(b"dbbackup preflight"))
        try:
            data = stream.read()
        finally:
            stream.close()
        return f"encrypted to {settings.GPG_RECIPIENT} ({len(data)} bytes)"

    return [_attempt("gpg", "encrypt to the recipient", encrypt)]


def run(databases: Iterable[str]) -> list[Check]:
    """Every check, in report order."""
    checks: list[Check] = []
    for alias in databases:
        checks += database_checks(alias)
    checks += storage_checks()
    checks += gpg_checks()
    for finding in environment.storage_problems():
        checks.append(
            Check("settings", finding.id, finding.id.startswith("dbbackup.W02") is False, finding.message)
        )
    return checks
