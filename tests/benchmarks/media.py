"""The media benchmark: a generated media tree, ``mediabackup``/``mediarestore`` and raw ``tar``.

``run.py --engine media`` uses this module: :func:`make_media_tree` writes the tree (nested
folders, some non-ASCII names, a size mix like a real upload folder: many small files of 1-20
KB, some of 1-5 MB, a few of 50 MB; about half of the bytes compress like text, half are random
like photos), :func:`media_scenarios` lists the dbbackup commands and the raw ``tar`` pipelines
they are compared with.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from scenarios import Scenario

MB = 1024 * 1024
KB = 1024
#: Files per MB of the default tree (20,000 files in 1 GiB) and of the quick one (2,000 in 50 MB).
DENSITY = 20_000 / 1024
QUICK_DENSITY = 2_000 / 50
UNICODE_NAMES = ["café", "naïve-résumé", "日本語", "Ünïcödé", "фото", "emoji-😀", "ελληνικά"]


@dataclass
class MediaTree:
    files: int
    size: int
    seconds: float


def _text_blob(rng: random.Random) -> bytes:
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
        for _ in range(3000)
    ]
    return " ".join(rng.choice(words) for _ in range(400_000)).encode()[: 2 * MB]


def make_media_tree(root: str, size_mb: float, files: int, seed: int = 42) -> MediaTree:
    """Write about ``size_mb`` MB in ``files`` files under ``root`` (created empty)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    total = int(size_mb * MB)
    # 40 % of the bytes in 50 MB files, 40 % in 1-5 MB ones, the rest in small files.
    big = int(total * 0.4 // (50 * MB))
    medium = max(1, int((total * 0.8 - big * 50 * MB) // (3 * MB)))
    small = max(1, files - big - medium)
    small_budget = max(small * KB, total - big * 50 * MB - medium * 3 * MB)
    small_mean = min(20 * KB, max(KB, small_budget // small))
    sizes = [50 * MB] * big + [rng.randint(1 * MB, 5 * MB) for _ in range(medium)]
    sizes += [max(KB, min(20 * KB, int(rng.triangular(KB, 20 * KB, small_mean)))) for _ in range(small)]
    rng.shuffle(sizes)
    blob = _text_blob(rng)
    written = 0
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(sizes):
        folder = base / f"uploads-{index % 7}" / f"{2020 + index % 5}" / f"{index % 12 + 1:02d}"
        if index % 50 == 0:
            folder = folder / UNICODE_NAMES[index % len(UNICODE_NAMES)]
        folder.mkdir(parents=True, exist_ok=True)
        if index % 2:
            start = rng.randrange(0, len(blob) - 1)
            data = (blob[start:] + blob) * (size // len(blob) + 1)
            content, suffix = data[:size], ".txt"
        else:
            content, suffix = rng.randbytes(size), ".jpg"
        stem = f"{UNICODE_NAMES[index % len(UNICODE_NAMES)]}-{index}" if index % 17 == 0 else f"file-{index}"
        (folder / (stem + suffix)).write_bytes(content)
        written += size
    return MediaTree(files=len(sizes), size=written, seconds=time.perf_counter() - started)


def count_files(root: str) -> tuple[int, int]:
    """``(files, bytes)`` under ``root``."""
    files = size = 0
    for directory, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(directory, name)).st_size
    return files, size


TAR = "tar cf - -C {media} ."
RAW_BACKUPS = {
    "plain": ("tar cf {out} -C {media} .", "tar cf out .", ".tar"),
    "gzip": (TAR + " | gzip -6 > {out}", "tar cf - . | gzip -6 > out", ".tar.gz"),
    "pigz": (TAR + " | pigz -6 > {out}", "tar cf - . | pigz -6 > out (= tar -I pigz)", ".tar.gz"),
    "zstd": (TAR + " | zstd -3 -T0 -q > {out}", "tar cf - . | zstd -3 -T0 > out", ".tar.zst"),
}
RAW_RESTORES = {
    "plain": ("tar xf {in} -C {target}", "tar xf in"),
    "gzip": ("gzip -dc {in} | tar xf - -C {target}", "gzip -dc in | tar xf -"),
    "zstd": ("zstd -dcq {in} | tar xf - -C {target}", "zstd -dc in | tar xf -"),
}
DBBACKUP_FLAGS = {"plain": [], "gzip": ["-z"], "zstd": ["--compression", "zstd"]}


def media_scenarios(have_pigz: bool) -> list[Scenario]:
    """Raw ``tar`` pipelines and dbbackup's ``mediabackup``/``mediarestore``, plain, gzip, zstd."""
    found: list[Scenario] = []
    for variant, (command, label, extension) in RAW_BACKUPS.items():
        if variant == "pigz" and not have_pigz:
            continue
        found.append(Scenario(f"raw/media/backup/{variant}", "raw", "media", "backup", variant, label,
                              command=command, extension=extension))  # fmt: skip
    for variant, (command, label) in RAW_RESTORES.items():
        found.append(Scenario(f"raw/media/restore/{variant}", "raw", "media", "restore", variant, label,
                              command=command, source=f"raw/media/backup/{variant}"))  # fmt: skip
    for variant, flags in DBBACKUP_FLAGS.items():
        found.append(
            Scenario(f"dbbackup/media/backup/{variant}", "dbbackup", "media", "backup", variant,
                     " ".join(["mediabackup", *flags]), command="mediabackup",
                     baseline=f"raw/media/backup/{variant}")
        )  # fmt: skip
        found.append(
            Scenario(f"dbbackup/media/restore/{variant}", "dbbackup", "media", "restore", variant,
                     f"mediarestore --noinput -r ({variant})", command="mediarestore",
                     baseline=f"raw/media/restore/{variant}", source=f"dbbackup/media/backup/{variant}")
        )  # fmt: skip
    return found
