"""The measuring harness: run one command, sample it from outside, report peaks.

While the command runs, a thread samples every ``interval`` seconds (50 ms):

* the resident memory (``VmRSS`` in ``/proc/<pid>/status``) of the process and of every
  descendant (found through ``/proc/<pid>/task/<tid>/children``, falling back to a scan of
  ``/proc``), keeping the largest sum and the largest value of the root process alone; a child
  caught between fork and exec (its command line still its parent's) is left out, since it
  only repeats its parent's pages;
* the bytes in the dedicated temporary directory: the files in it, plus files that a process of
  the tree holds open there after unlinking them (seen through ``/proc/<pid>/fd``), each inode
  counted once;
* the bytes of hidden work files in other watched directories (a storage's
  ``.name.partial-*`` files, an SQLite restore's ``.dbbackup-*`` scratch database).

Only the standard library is used (no psutil). Peaks shorter than the interval can be missed;
the worker's own ``getrusage`` peak does not have that limit.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Watch:
    """A directory whose matching files count as temporary disk use."""

    directory: str
    matches: Callable[[str], bool]
    label: str


@dataclass
class Measurement:
    argv: list[str]
    returncode: int
    wall: float
    stdout: str
    stderr: str
    tree_rss_peak: int = 0
    root_rss_peak: int = 0
    max_processes: int = 0
    tmp_peak: int = 0
    watched_peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    #: user + system CPU seconds of the process and every descendant it waited for
    cpu: float = 0.0
    #: CPU seconds the whole machine spent meanwhile outside that tree: a database server's
    #: backend, and anything else running (which makes the timing less trustworthy)
    other_cpu: float = 0.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def _children_by_scan() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


HAVE_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def process_tree(root: int) -> list[tuple[int, int]]:
    """``(pid, parent pid)`` of ``root`` (parent 0) and of all its descendants."""
    tree = None if HAVE_CHILDREN_FILE else _children_by_scan()
    result, todo = [], [(root, 0)]
    while todo:
        pid, parent = todo.pop()
        result.append((pid, parent))
        children = _children(pid) if tree is None else tree.get(pid, [])
        todo.extend((child, pid) for child in children)
    return result


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def counted(tree: list[tuple[int, int]]) -> list[int]:
    """The pids whose memory counts: not a fork that has not exec'ed yet.

    Between ``fork``/``vfork`` and ``exec`` a child shares its parent's pages, and its
    ``VmRSS`` repeats the parent's; its command line is still the parent's, which tells it.
    """
    pids = []
    for pid, parent in tree:
        if parent and _cmdline(pid) == _cmdline(parent):
            continue
        pids.append(pid)
    return pids


def rss(pid: int) -> int:
    """``VmRSS`` of ``pid`` in bytes (0 if it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def directory_files(directory: str, matches: Callable[[str], bool] | None = None) -> dict[tuple, int]:
    """``{(device, inode): size}`` of the files under ``directory`` whose name ``matches``."""
    found: dict[tuple, int] = {}
    todo = [directory]
    while todo:
        current = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                elif matches is None or matches(entry.name):
                    stat = entry.stat(follow_symlinks=False)
                    found[(stat.st_dev, stat.st_ino)] = stat.st_size
            except OSError:
                continue
    return found


def open_files_under(pids: Sequence[int], directory: str) -> dict[tuple, int]:
    """Files under ``directory`` held open by ``pids``, including unlinked ones."""
    found: dict[tuple, int] = {}
    prefix = directory.rstrip("/") + "/"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith(prefix):
                    continue
                stat = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if stat.st_mode & 0o170000 == 0o100000:  # regular files only
                found[(stat.st_dev, stat.st_ino)] = stat.st_size
    return found


class Sampler(threading.Thread):
    """Samples a running process tree until :meth:`stop`."""

    def __init__(self, root: int, tmp_dir: str, watches: Sequence[Watch], interval: float) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.tmp_dir = os.path.realpath(tmp_dir)
        self.watches = list(watches)
        self.interval = interval
        self._stop_event = threading.Event()
        self.tree_rss_peak = 0
        self.root_rss_peak = 0
        self.max_processes = 0
        self.tmp_peak = 0
        self.watched_peaks = {watch.label: 0 for watch in self.watches}
        self.samples = 0

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while True:
            self.sample()
            if self._stop_event.wait(self.interval):
                return

    def sample(self) -> None:
        tree = process_tree(self.root)
        pids = [pid for pid, _ in tree]
        sizes = [rss(pid) for pid in counted(tree)]
        self.tree_rss_peak = max(self.tree_rss_peak, sum(sizes))
        self.root_rss_peak = max(self.root_rss_peak, sizes[0] if sizes else 0)
        self.max_processes = max(self.max_processes, sum(1 for size in sizes if size))
        tmp_files = directory_files(self.tmp_dir)
        tmp_files.update(open_files_under(pids, self.tmp_dir))
        self.tmp_peak = max(self.tmp_peak, sum(tmp_files.values()))
        for watch in self.watches:
            size = sum(directory_files(watch.directory, watch.matches).values())
            self.watched_peaks[watch.label] = max(self.watched_peaks[watch.label], size)
        self.samples += 1


def busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot (all CPUs, from ``/proc/stat``)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def measure(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    tmp_dir: str,
    log_dir: str,
    watches: Sequence[Watch] = (),
    interval: float = 0.05,
    timeout: float | None = None,
) -> Measurement:
    """Run ``argv`` to completion under the sampler; stdout and stderr go to files in ``log_dir``."""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    stdout_path = Path(log_dir) / "stdout"
    stderr_path = Path(log_dir) / "stderr"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        busy_before = busy_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        sampler = Sampler(proc.pid, tmp_dir, watches, interval)
        sampler.start()
        killer = threading.Timer(timeout, proc.kill) if timeout else None
        if killer:
            killer.start()
        try:
            # wait4 rather than wait: it also returns the CPU time of the whole tree.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait(timeout=60)
            raise
        finally:
            if killer:
                killer.cancel()
            sampler.stop()
        wall = time.perf_counter() - started
        busy = busy_cpu_seconds() - busy_before
        returncode = proc.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        argv=list(argv),
        returncode=returncode,
        wall=wall,
        stdout=stdout_path.read_text(errors="replace"),
        stderr=stderr_path.read_text(errors="replace"),
        tree_rss_peak=sampler.tree_rss_peak,
        root_rss_peak=sampler.root_rss_peak,
        max_processes=sampler.max_processes,
        tmp_peak=sampler.tmp_peak,
        watched_peaks=sampler.watched_peaks,
        samples=sampler.samples,
        cpu=usage.ru_utime + usage.ru_stime,
        other_cpu=max(0.0, busy - (usage.ru_utime + usage.ru_stime)),
    )
