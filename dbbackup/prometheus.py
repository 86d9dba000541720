"""The health report (:mod:`dbbackup.health`) as Prometheus metrics, and the atomic file write
that node_exporter's textfile collector needs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbbackup.health import Report

METRICS: list[tuple[str, str, str]] = [
    ("dbbackup_last_backup_timestamp_seconds", "gauge", "Unix time of the newest backup."),
    ("dbbackup_last_backup_size_bytes", "gauge", "Size of the newest backup in bytes."),
    ("dbbackup_backups_count", "gauge", "Number of backups in the backup storage."),
    (
        "dbbackup_last_drill_timestamp_seconds",
        "gauge",
        "Unix time of the last successful restore drill of any backup of the group.",
    ),
    (
        "dbbackup_last_drill_success",
        "gauge",
        "1 if the newest backup's most recent restore drill succeeded, 0 if it failed.",
    ),
    ("dbbackup_health_status", "gauge", "Health of the group: 0 ok, 1 warning, 2 critical."),
]


def _label(value: str | None) -> str:
    text = value or ""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(health: Report) -> str:
    """``health`` in the Prometheus text exposition format (version 0.0.4).

    A metric whose value is unknown for an item (no backup, no drill) is left out for that
    item rather than written as a made-up number.
    """
    lines: list[str] = []
    for name, kind, text in METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for item in health.items:
            value = {
                "dbbackup_last_backup_timestamp_seconds": item.newest_timestamp,
                "dbbackup_last_backup_size_bytes": item.newest_size,
                "dbbackup_backups_count": item.count,
                "dbbackup_last_drill_timestamp_seconds": item.last_drill_timestamp,
                "dbbackup_last_drill_success": item.newest_drill_ok,
                "dbbackup_health_status": item.status,
            }[name]
            if value is None:
                continue
            labels = f'database="{_label(item.database)}",server="{_label(item.server)}",kind="{item.kind}"'
            lines.append(f"{name}{{{labels}}} {_value(value)}")
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and
    ``os.replace``, so a reader (node_exporter's textfile collector) never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, scratch = tempfile.mkstemp(prefix=".dbbackup-health-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise
