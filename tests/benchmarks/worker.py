"""One benchmark scenario in a fresh process: a dbbackup backup or restore through the Python API.

``python worker.py CONFIG.json`` (run by ``run.py``; ``TMPDIR`` points at the scenario's empty
temporary directory). Prints one JSON line on stdout: the time spent in the API call alone
(``op_seconds``), the time to get there (interpreter and Django start-up), the stored file,
this process's RSS before the call (``rss_before_op``) and its peak (``vm_hwm``).

The peak is ``VmHWM`` from ``/proc/self/status``, not ``getrusage(RUSAGE_SELF).ru_maxrss``: on
Linux the latter carries the high-water mark of the process this one was forked from across
fork and exec, so a worker started from a big parent would report the parent's peak.

``mode`` is ``backup`` or ``restore`` (the database API), or ``command``: run the management
command ``config["command"]`` with ``config["args"]`` through ``call_command`` (what
``manage.py`` does, minus the interpreter start-up and the import of the command's module,
which ``startup_seconds`` reports, as the database modes import the pipeline before the
timer), then, with ``config["sync"]``, ``sync`` the file systems inside the timed part.
"""

import json
import os
import resource
import sys
import time
import traceback

STARTED = time.perf_counter()


def main(config_path: str) -> dict:
    with open(config_path) as handle:
        config = json.load(handle)
    os.environ["DBBACKUP_BENCH_CONFIG"] = config_path
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_settings"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    import django

    django.setup()
    if config["mode"] != "command":  # command mode also runs django-dbbackup 5.4 (no pipeline)
        from dbbackup.pipeline import backup_database, restore_database
    else:  # imported here, as the pipeline is above: start-up, not the command's work
        from django.core.management import get_commands, load_command_class

        command = load_command_class(get_commands()[config["command"]], config["command"])

    ready = time.perf_counter()
    report: dict = {"startup_seconds": ready - STARTED, "rss_before_op": _vm_rss()}
    if config["mode"] == "backup":
        result = backup_database(
            "default",
            compress=bool(config.get("compression")),
            compression=config.get("compression"),
            encrypt=bool(config.get("encrypt")),
        )
        report.update(filename=result.filename, size=result.size, connector=result.connector)
    elif config["mode"] == "command":
        from django.core.management import call_command

        call_command(command, *config.get("args", []), verbosity=0)
        if config.get("sync"):
            os.sync()
        report.update(_newest_backup(config["storage_dir"]) if config.get("report_output") else {})
    else:
        result = restore_database("default", input_filename=config["input_filename"])
        report.update(filename=result.filename, size=result.size, connector=result.connector)
    report["op_seconds"] = time.perf_counter() - ready
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report.update(
        vm_hwm=_status_field("VmHWM"),
        ru_maxrss_self=usage_self.ru_maxrss * 1024,
        ru_maxrss_children=usage_children.ru_maxrss * 1024,
        cpu_self=usage_self.ru_utime + usage_self.ru_stime,
        cpu_children=usage_children.ru_utime + usage_children.ru_stime,
    )
    return report


def _status_field(name: str) -> int:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _vm_rss() -> int:
    """This process's resident memory now (``VmRSS``), in bytes."""
    return _status_field("VmRSS")


def _newest_backup(storage_dir: str) -> dict:
    """The backup a command just wrote to a file-system backup storage (the only one there,
    beside its ``.metadata`` sidecar)."""
    entries = [
        entry
        for entry in os.scandir(storage_dir)
        if entry.is_file() and ".partial-" not in entry.name and not entry.name.endswith(".metadata")
    ]
    newest = max(entries, key=lambda entry: entry.stat().st_mtime)
    return {"filename": newest.name, "size": newest.stat().st_size, "connector": ""}


if __name__ == "__main__":
    try:
        outcome = main(sys.argv[1])
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    print(json.dumps(outcome))
