"""Media backups of several versions of dbbackup, run in turns with the raw ``tar`` pipelines.

::

    git archive OLD dbbackup | tar -x -C /tmp/before      # the version to compare with
    python tests/benchmarks/interleave.py --tree before=/tmp/before --tree after=. \\
        --size-mb 300 --files 6000 --rounds 8

A tree is a folder holding a ``dbbackup`` package (a checkout, or a ``git archive`` of one);
the worker (``worker.py``, the same for every tree) imports it first. Each round runs, per
variant, the raw baseline (``tar cf out .``, ``tar cf - . | zstd -3 -T0 > out``, ...) and each
tree's ``mediabackup`` once, after ``os.sync()``, into an emptied folder, ``sync`` included in
the time as in ``run.py``; the order rotates from round to round. On a shared machine the load
moves within seconds, so the table gives, besides the best and median of each, the median of
the ratios taken within one round. The tree is generated once (or reused with ``--media``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from media import DBBACKUP_FLAGS, DENSITY, RAW_BACKUPS, make_media_tree  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--variants", nargs="+", default=["plain", "zstd"], choices=sorted(DBBACKUP_FLAGS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--files", type=int)
    parser.add_argument("--media", help="an existing media tree to back up (nothing is generated)")
    parser.add_argument("--threads", type=int, help="DBBACKUP_COMPRESSION_THREADS")
    args = parser.parse_args()
    trees = dict(tree.split("=", 1) for tree in args.tree)
    scratch = Path(tempfile.mkdtemp(prefix="dbbackup-interleave-"))
    try:
        media = args.media or str(scratch / "media")
        if not args.media:
            made = make_media_tree(media, args.size_mb, args.files or int(args.size_mb * DENSITY))
            print(f"{made.files} files, {made.size / 2**20:.0f} MB", file=sys.stderr)
        times = run_rounds(args, trees, media, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(times)
    return 0


def run_rounds(args: argparse.Namespace, trees: dict[str, str], media: str, scratch: Path) -> dict:
    out, tmp = scratch / "out", scratch / "tmp"
    jobs = [(label, variant) for variant in args.variants for label in ["raw", *trees]]
    times: dict = {job: [] for job in jobs}
    for number in range(args.rounds):
        turn = number % len(jobs)
        for label, variant in jobs[turn:] + jobs[:turn]:
            for folder in (out, tmp):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
            os.sync()
            if label == "raw":
                command = RAW_BACKUPS[variant][0].format(media=media, out=out / "out") + " && sync"
                started = time.perf_counter()
                subprocess.run(["bash", "-c", command], check=True)
                times[(label, variant)].append((time.perf_counter() - started, 0.0))
            else:
                times[(label, variant)].append(dbbackup_run(trees[label], variant, media, out, tmp, args))
        done = ", ".join(
            f"{label}/{variant} {times[(label, variant)][-1][0]:.2f} s" for label, variant in jobs
        )
        print(f"round {number + 1}: {done}; load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return times


def dbbackup_run(tree: str, variant: str, media: str, out: Path, tmp: Path, args) -> tuple[float, float]:
    config = {
        "mode": "command",
        "command": "mediabackup",
        "args": DBBACKUP_FLAGS[variant],
        "database": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "media_dir": media,
        "storage_dir": str(out),
        "tmp_dir": str(tmp),
        "gpg_home": str(tmp),
        "gpg_recipient": None,
        "compression_threads": args.threads,
        "sync": True,
    }
    path = out.parent / "config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree), "TMPDIR": str(tmp)}
    done = subprocess.run(
        [sys.executable, str(HERE / "worker.py"), str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"mediabackup failed with the tree {tree}:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["op_seconds"], result["vm_hwm"] / 2**20


def report(times: dict) -> None:
    print(f"{'scenario':<18} {'best s':>7} {'median s':>9} {'best/best':>10} {'med/med':>8} "
          f"{'in-round med':>13} {'peak MB':>8}  all")  # fmt: skip
    for (label, variant), runs in times.items():
        seconds = [run[0] for run in runs]
        raw = [run[0] for run in times[("raw", variant)]]
        within = statistics.median(mine / base for mine, base in zip(seconds, raw, strict=True))
        peak = max(run[1] for run in runs)
        print(
            f"{label + '/' + variant:<18} {min(seconds):7.2f} {statistics.median(seconds):9.2f} "
            f"{min(seconds) / min(raw):9.2f}x {statistics.median(seconds) / statistics.median(raw):7.2f}x "
            f"{within:12.2f}x {peak if label != 'raw' else 0:8.1f}  " + " ".join(f"{s:.2f}" for s in seconds)
        )


if __name__ == "__main__":
    sys.exit(main())
