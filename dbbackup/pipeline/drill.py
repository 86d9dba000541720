"""Restore drills: prove a backup restorable by restoring it somewhere harmless, and record it.

``dbrestore --drill`` restores a planned backup into a scratch database on the same server
(:mod:`dbbackup.drill_scratch`) with the normal connector pointed at it (the Django connector
through a temporary alias whose schema ``migrate`` builds, :mod:`dbbackup.drill_alias`), checks
that every table of the Django models routed to that database exists there and can be counted,
and drops the scratch database whatever happened. ``mediarestore --drill`` extracts the archive
into a scratch folder, checking every member, and removes the folder. The real database and the
media storage are never touched, and no restore signals are sent: their receivers (maintenance mode,
cache clearing...) are about the real database.

The outcome goes into the backup's sidecar under ``dbbackup.drill`` (see
:func:`dbbackup.manifest.record_drill`), written by :func:`record_outcome`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.core.files.storage import FileSystemStorage
from django.db import router

from dbbackup import catalog, drill_alias, drill_scratch, leftovers, manifest, names, process, tar
from dbbackup.db.django import DjangoConnector
from dbbackup.db.mysql import MysqlDumpConnector
from dbbackup.db.sqlite import _SqliteConnectorBase
from dbbackup.exceptions import DbbackupError
from dbbackup.media_target import target_for
from dbbackup.pipeline.media import MediaRestorePlan, _open_archive, verify_media_backup
from dbbackup.pipeline.restore import RestorePlan, stream_into_connector
from dbbackup.storage import _local_path
from dbbackup.streams import CHUNK_SIZE

logger = logging.getLogger("dbbackup.drill")


@dataclass
class DrillResult:
    """A drill's outcome (``record`` is what goes into the sidecar) and where it was recorded."""

    filename: str
    record: dict[str, Any]
    #: Where the outcome was recorded, or why it was not.
    recorded: str = ""
    swept: list[str] = field(default_factory=list)
    media: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.record["ok"])


def model_tables(alias: str) -> list[str]:
    """The tables of the installed apps' concrete, managed models that route to ``alias``."""
    tables = set()
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed or meta.swapped:
            continue
        if router.allow_migrate_model(alias, model):
            tables.add(meta.db_table)
    return sorted(tables)


def tool_versions(plan: RestorePlan, family: str) -> dict[str, str]:
    """The restore tool's ``--version`` line (or SQLite's library version, and Django's for the
    Django connector); empty when unknown."""
    versions = {"django": django.get_version()} if isinstance(plan.connector, DjangoConnector) else {}
    if family == "sqlite":
        return {**versions, "sqlite3": sqlite3.sqlite_version}
    tool = getattr(plan.connector, "restore_cmd", "")
    if not tool:
        return versions
    try:
        output = process.run(process.Command(argv=[tool, "--version"]))
    except DbbackupError:
        return versions
    line = output.strip().splitlines()
    return {**versions, Path(tool).name: line[0]} if line else versions


def excluded_tables(plan: RestorePlan) -> set[str]:
    """The tables the backup left out (its sidecar's ``exclude``), which the drill does not check."""
    excluded = set(manifest.record(plan.metadata).get("exclude") or [])
    if excluded and isinstance(plan.connector, DjangoConnector):  # labels: app or app.Model
        with contextlib.suppress(DbbackupError, LookupError):
            excluded |= DjangoConnector(plan.database, EXCLUDE=sorted(excluded)).excluded_tables()
    return excluded


@contextlib.contextmanager
def aimed_at(plan: RestorePlan, scratch: drill_scratch.ScratchDatabase) -> Iterator[None]:
    """Point ``plan``'s connector at the scratch database for the duration.

    The Django connector gets a temporary alias (:func:`drill_alias.temporary_alias`) whose
    schema ``migrate`` builds first; the others get the scratch database's settings, and the
    MySQL connector loads straight into it (it is a scratch database already: no swap, the
    same checks).
    """
    connector = plan.connector
    if isinstance(connector, DjangoConnector):
        with drill_alias.temporary_alias(plan.database, scratch.settings) as alias:
            drill_alias.migrate(alias)
            connector.database_name, connector.drop = alias, True  # migrate's own rows go first
            try:
                yield
            finally:
                connector.database_name = plan.database
        return
    connector.settings = scratch.settings
    if isinstance(connector, _SqliteConnectorBase):
        connector.always_quick_check = True  # a drill proves the database sound, not just the bytes
    if isinstance(connector, MysqlDumpConnector):
        connector.into_scratch = True
    yield


def drill_database(plan: RestorePlan) -> DrillResult:
    """Restore ``plan``'s backup into a scratch database, check it, drop it; record the outcome.

    Never raises for a failed drill: the failure is the outcome (``record["ok"]`` is false and
    ``record["error"]`` says why in one line). A drill that cannot even start (a connector
    without drill support) raises :class:`DbbackupError`.
    """
    started = time.monotonic()
    family = drill_scratch.engine_family(plan.connector)
    excluded = excluded_tables(plan)
    rows: dict[str, int] = {}
    error: str | None = None
    swept: list[str] = []
    tools = tool_versions(plan, family)
    try:
        with drill_scratch.ScratchDatabase(plan.connector) as scratch:
            swept = scratch.swept
            with aimed_at(plan, scratch):
                stream_into_connector(plan)
            tables = [table for table in model_tables(plan.database) if table not in excluded]
            rows, missing = drill_scratch.count_tables(plan.database, scratch.settings, tables)
            if missing:
                error = f"the restored database lacks {len(missing)} model table(s): {', '.join(missing[:5])}"
    except DbbackupError as exc:
        error = _line(exc)
    except Exception as exc:  # a driver error is the drill's outcome too
        error = f"{type(exc).__name__}: {_line(exc)}"
    record = _record(error is None, error, rows, tools, started)
    result = DrillResult(plan.filename, record, swept=swept)
    result.recorded = record_outcome(plan.storage, plan.filename, plan.local, record)
    return result


def drill_media(plan: MediaRestorePlan) -> DrillResult:
    """Extract ``plan``'s archive into a scratch folder, checking every member; remove it; record."""
    started = time.monotonic()
    error: str | None = None
    rows: dict[str, int] = {}
    folder = None
    try:
        folder = drill_scratch.scratch_folder()
        verify_media_backup(plan)  # the first pass checks every member, as mediarestore does
        skipped: list[str] = []
        target = target_for(FileSystemStorage(location=folder), replace=True, warn=skipped.append)
        target.prepare()
        files = links = 0

        def on_link(_name: str) -> None:
            nonlocal links
            links += 1

        stream, _ = _open_archive(plan)
        try:
            for member in tar.files(stream, on_link):
                target.write(member.name, member.content, member.size)
                files += 1
            while stream.read(CHUNK_SIZE):
                pass
        finally:
            stream.close()
        rows = {"files": files, "links": links}
        if skipped:
            error = f"{len(skipped)} member(s) could not be extracted: {skipped[0]}"
    except DbbackupError as exc:
        error = _line(exc)
    except Exception as exc:
        error = f"{type(exc).__name__}: {_line(exc)}"
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    record = _record(error is None, error, rows, {}, started)
    result = DrillResult(plan.filename, record, media=True)
    result.recorded = record_outcome(plan.storage, plan.filename, plan.local, record)
    return result


def _record(ok: bool, error: str | None, rows: dict[str, int], tools: dict[str, str], started: float) -> dict:
    return {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ok": ok,
        "error": error,
        "rows": rows,
        "tools": tools,
        "seconds": round(time.monotonic() - started, 3),
    }


def record_outcome(storage: Any, filename: str, local: bool, drill: dict[str, Any]) -> str:
    """Write ``drill`` into the backup's sidecar; return where, or why not, in words.

    Nothing is recorded for a backup without a sidecar, with a sidecar that does not parse, or
    with django-dbbackup's sidecar (``engine`` and ``connector`` only): a new or extended
    sidecar could make such a backup look different to django-dbbackup or to a restore.

    On a local disk (``-I`` files, a ``FileSystemStorage``) the new sidecar is written to a
    private temporary file beside the old one and renamed over it, an atomic replacement. Other
    storages have no rename: the old sidecar is deleted and the new one written under its name;
    if that write fails, the old content is written back.
    """
    sidecar = f"{filename}{names.METADATA_SUFFIX}"
    path = sidecar if local else _local_path(storage.storage, sidecar)
    try:
        if path is not None:
            if not os.path.exists(path):
                return "not recorded: the backup has no sidecar"
            old = Path(path).read_bytes()
        else:
            if not storage.exists(sidecar):
                return "not recorded: the backup has no sidecar"
            with contextlib.closing(storage.read_file(sidecar)) as handle:
                old = handle.read()
        metadata = manifest.loads(old, sidecar)
        if metadata is None:
            return "not recorded: the sidecar is not a JSON object"
        try:
            new = manifest.dumps(manifest.record_drill(metadata, drill))
        except DbbackupError as exc:
            return f"not recorded: {exc}"
        if path is not None:
            _replace_local(Path(path), new)
        else:
            _replace_in_storage(storage, sidecar, old, new)
    except Exception as exc:  # recording is secondary to the drill's outcome
        logger.warning("Could not record the drill in %s: %s", sidecar, exc)
        return f"not recorded: {_line(exc)}"
    return f"recorded in {sidecar}"


def _replace_local(path: Path, content: bytes) -> None:
    temporary = path.parent / leftovers.partial_name(path.name)
    mode = path.stat().st_mode & 0o777
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _replace_in_storage(storage: Any, name: str, old: bytes, new: bytes) -> None:
    storage.storage.delete(name)
    try:
        storage.write_file(io.BytesIO(new), name)
    except BaseException:
        with contextlib.suppress(Exception):
            storage.write_file(io.BytesIO(old), name)
        raise


def read_drill(storage: Any, entry: catalog.Entry) -> dict[str, Any] | None:
    """The last drill recorded for a listed backup, or ``None``."""
    metadata = entry.metadata
    if metadata is None and entry.has_metadata:
        metadata = catalog.read_metadata(storage, entry.name)
    return manifest.last_drill(metadata)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
