"""One benchmark scenario in a fresh process: a dbbackup backup or restore through the Python API.

``python worker.py CONFIG.json`` (run by ``run.py``; ``TMPDIR`` points at the scenario's empty
temporary directory). Prints one JSON line on stdout: the time spent in the API call alone
(``op_seconds``), the time to get there (interpreter and Django start-up), the stored file,
this process's RSS before the call (``rss_before_op``) and its peak from ``getrusage``.
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
    from dbbackup.pipeline import backup_database, restore_database

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
    else:
        result = restore_database("default", input_filename=config["input_filename"])
        report.update(filename=result.filename, size=result.size, connector=result.connector)
    report["op_seconds"] = time.perf_counter() - ready
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report.update(
        ru_maxrss_self=usage_self.ru_maxrss * 1024,
        ru_maxrss_children=usage_children.ru_maxrss * 1024,
        cpu_self=usage_self.ru_utime + usage_self.ru_stime,
        cpu_children=usage_children.ru_utime + usage_children.ru_stime,
    )
    return report


def _vm_rss() -> int:
    """This process's resident memory now (``VmRSS``), in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    try:
        outcome = main(sys.argv[1])
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    print(json.dumps(outcome))
