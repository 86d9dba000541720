"""Tables for the terminal and for the docs, from the JSON-shaped output of ``run.py``."""

from __future__ import annotations

MB = 1024 * 1024
FLAT_TOLERANCE = 10 * MB
RSS_LIMIT = 100 * MB


def _mb(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value / MB:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _mbps(result: dict) -> float:
    return (
        result["raw_size"] / MB / result["op_seconds"] if result["op_seconds"] and result["raw_size"] else 0.0
    )


def _header(meta: dict) -> list[str]:
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    if meta.get("engine") == "media":
        subject = f"media tree {_mb(meta.get('database_size'), 0)} MB in {meta.get('rows')} files"
    else:
        subject = (
            f"database {_mb(meta.get('database_size'), 0)} MB on disk ({meta.get('rows')} rows), "
            + ", ".join(
                f"{dump} dump {_mb(size, 0)} MB" for dump, size in meta.get("raw_dump_sizes", {}).items()
            )
        )
    storage = meta.get("storage") or "filesystem"
    return [
        f"dbbackup benchmark, {meta.get('date', '?')}: engine {meta.get('engine')}, {subject}; "
        f"backup storage: {storage}",
        f"machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}), {machine.get('memory_gib')} GiB, "
        f"{machine.get('os')}, Linux {machine.get('kernel')}, Python {machine.get('python')}, "
        f"load average at the end {machine.get('loadavg')}; "
        f"dbbackup {meta.get('git')}",
        "tools: " + "; ".join(f"{name} {version}" for name, version in versions.items()),
        f"runs per scenario: {meta.get('repeat')} (fastest shown); GPG armour: {meta.get('gpg_armor')}; "
        f"compression threads: {meta.get('compression_threads') or 'one per CPU'}",
    ]


COLUMNS = [
    ("scenario", "<", lambda r: r["id"] + (" *" if r.get("auto") else "")),
    ("time s", ">", lambda r: f"{r['op_seconds']:.2f}" if r["ok"] else "FAILED"),
    ("wall s", ">", lambda r: f"{r['wall']:.2f}" if r["ok"] else ""),
    ("MB/s", ">", lambda r: f"{_mbps(r):.0f}" if r["ok"] else ""),
    ("out MB", ">", lambda r: _mb(r["output_size"]) if r["op"] == "backup" and r["ok"] else ""),
    ("×raw", ">", lambda r: _ratio(r.get("time_ratio")) if r["tool"] != "raw" else ""),
    ("×pigz", ">", lambda r: _ratio(r.get("pigz_ratio")) if r.get("pigz_ratio") else ""),
    (
        "size×raw",
        ">",
        lambda r: _ratio(r.get("size_ratio")) if r["tool"] != "raw" and r["op"] == "backup" else "",
    ),
    ("py RSS", ">", lambda r: _mb(r["py_rss"]) if r["tool"] != "raw" and r["ok"] else ""),
    ("(start)", ">", lambda r: _mb(r.get("py_rss_before")) if r["tool"] != "raw" and r["ok"] else ""),
    ("tree RSS", ">", lambda r: _mb(r["tree_rss"]) if r["ok"] else ""),
    ("tmp MB", ">", lambda r: _mb(r["tmp_peak"]) if r["ok"] else ""),
    ("scratch", ">", lambda r: _mb(r["scratch_peak"]) if r["ok"] else ""),
    ("partial", ">", lambda r: _mb(r["partial_peak"]) if r["tool"] != "raw" and r["ok"] else ""),
    ("CPU s", ">", lambda r: f"{r['cpu']:.1f}" if r["ok"] else ""),
    ("other", ">", lambda r: f"{r['other_cpu']:.1f}" if r["ok"] else ""),
    ("command", "<", lambda r: r["label"]),
]


def _table(results: list[dict]) -> list[str]:
    rows = [[cell(result) for _, _, cell in COLUMNS] for result in results]
    widths = [max(len(name), *(len(row[i]) for row in rows)) if rows else len(name)
              for i, (name, _, _) in enumerate(COLUMNS)]  # fmt: skip
    lines = [
        "  ".join(f"{name:{align}{width}}" for (name, align, _), width in zip(COLUMNS, widths, strict=True))
    ]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append(
            "  ".join(
                f"{cell:{align}{width}}"
                for cell, (_, align, _), width in zip(row, COLUMNS, widths, strict=True)
            )
        )
    return lines


def text(output: dict) -> str:
    lines = ["", *_header(output["meta"])]
    for op in ("backup", "restore"):
        results = [r for r in output["results"] if r["op"] == op]
        if results:
            lines += ["", f"{op.upper()}S", *_table(results)]
    failures = [r for r in output["results"] if not r["ok"]]
    for failure in failures:
        lines += ["", f"{failure['id']} FAILED:", failure["error"]]
    lines += [
        "",
        "time s: dbbackup = the API call alone (no interpreter/Django start-up), raw = the whole pipeline; "
        "wall s: the whole process; MB/s: uncompressed dump size / time s; ×raw: time s / the baseline's; "
        "×pigz: -z backups, time s / the same dump through pigz -6; "
        "size×raw: output size / the baseline's; py RSS: peak of the worker, its VmHWM at the end "
        "((start): its RSS just before the call, i.e. interpreter, Django and imports); tree RSS: peak "
        "sum of VmRSS over the process tree; tmp: peak bytes in TMPDIR/DBBACKUP_TMP_DIR; scratch: peak of "
        ".dbbackup-* files beside the database; partial: peak of the storage's .partial-* file (becomes "
        "the backup); CPU s: user+system time of the tree; other: CPU seconds used meanwhile outside the "
        "tree (the database server, and anything else running, which makes times less trustworthy). "
        "upstream/...: the released django-dbbackup 5.4 (--upstream-venv). "
        "* = run because a selected restore needed it.",
    ]
    return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_table(results: list[dict], by_id: dict[str, dict]) -> list[str]:
    """dbbackup's (and django-dbbackup 5.4's) scenarios, each beside its raw baseline."""
    head = ["dbbackup scenario", "Time (s)", "MB/s", "Output (MB)", "Raw baseline", "Raw time (s)", "Ratio",
            "Python RSS (MB)", "Tree RSS (MB)", "Temp disk (MB)"]  # fmt: skip
    lines = [_md_row(head), _md_row(["---", *["---:"] * 3, "---", *["---:"] * 5])]
    for r in results:
        if r["tool"] == "raw":
            continue
        base = by_id.get(r["baseline"] or "")
        base_cells = (
            [f"`{base['label']}`", f"{base['op_seconds']:.2f}" if base["ok"] else "failed"]
            if base
            else ["", ""]
        )
        if not r["ok"]:
            lines.append(_md_row([f"`{r['id']}`", "failed", "", "", *base_cells, "", "", "", ""]))
            continue
        lines.append(
            _md_row([
                f"`{r['id']}`",
                f"{r['op_seconds']:.2f}",
                f"{_mbps(r):.0f}",
                _mb(r["output_size"]) if r["op"] == "backup" else "",
                *base_cells,
                _ratio(r.get("time_ratio"))
                + (f" ({_ratio(r['pigz_ratio'])} pigz)" if r.get("pigz_ratio") else ""),
                _mb(r["py_rss"]),
                _mb(r["tree_rss"]),
                _mb(r["tmp_peak"] + r["scratch_peak"]),
            ])
        )  # fmt: skip
    return lines


def _md_others(results: list[dict], baselines: set[str]) -> list[str]:
    """The raw measurements that are no dbbackup scenario's baseline (pigz, pg_dump -Z0, ...)."""
    others = [r for r in results if r["tool"] == "raw" and r["id"] not in baselines]
    if not others:
        return []
    head = ["Other raw command", "Time (s)", "MB/s", "Output (MB)", "Tree RSS (MB)"]
    lines = ["", _md_row(head), _md_row(["---", *["---:"] * 4])]
    for r in others:
        lines.append(
            _md_row([
                f"`{r['label']}`",
                f"{r['op_seconds']:.2f}" if r["ok"] else "failed",
                f"{_mbps(r):.0f}" if r["ok"] else "",
                _mb(r["output_size"]) if r["op"] == "backup" and r["ok"] else "",
                _mb(r["tree_rss"]) if r["ok"] else "",
            ])
        )  # fmt: skip
    return lines


def markdown(output: dict) -> str:
    meta = output["meta"]
    by_id = {r["id"]: r for r in output["results"]}
    baselines = {r["baseline"] for r in output["results"] if r.get("baseline")}
    lines = ["", "<!-- " + " / ".join(_header(meta)) + " -->"]
    for op in ("backup", "restore"):
        results = [r for r in output["results"] if r["op"] == op]
        if results:
            lines += [
                "",
                f"**{op.capitalize()}s**",
                "",
                *_md_table(results, by_id),
                *_md_others(results, baselines),
            ]
    return "\n".join(lines)


def _flatness_rows(output: dict) -> list[tuple[str, list[dict], str]]:
    runs = output["runs"]
    ids = [r["id"] for r in runs[0]["results"] if r["tool"] == "dbbackup"]
    rows = []
    for scenario_id in ids:
        found = [next((r for r in run["results"] if r["id"] == scenario_id), None) for run in runs]
        if any(r is None or not r["ok"] for r in found):
            rows.append((scenario_id, found, "FAILED"))
            continue
        rss = [r["py_rss"] for r in found]
        verdict = "flat" if max(rss) - min(rss) <= FLAT_TOLERANCE else "GROWS"
        verdict += ", under 100 MB" if max(rss) < RSS_LIMIT else ", OVER 100 MB"
        rows.append((scenario_id, found, verdict))
    return rows


def flatness_text(output: dict) -> str:
    runs = output["runs"]
    sizes = [run["size_mb"] for run in runs]
    lines = [
        "",
        *_header(output["meta"]),
        "",
        f"FLATNESS: peak Python RSS at {sizes[0]:g} MB and {sizes[1]:g} MB",
    ]
    head = f"{'scenario':<34} " + " ".join(f"{f'RSS@{s:g}MB':>12}" for s in sizes)
    head += f" {'difference':>11} {'tree RSS':>10}  verdict (target: within 10 MB, under 100 MB)"
    lines += [head, "-" * len(head)]
    for scenario_id, found, verdict in _flatness_rows(output):
        if verdict == "FAILED":
            lines.append(f"{scenario_id:<34} FAILED")
            continue
        rss = [r["py_rss"] for r in found]
        lines.append(
            f"{scenario_id:<34} "
            + " ".join(f"{_mb(v):>12}" for v in rss)
            + f" {(rss[-1] - rss[0]) / MB:>+11.1f} {_mb(max(r['tree_rss'] for r in found)):>10}  {verdict}"
        )
    return "\n".join(lines)


def flatness_markdown(output: dict) -> str:
    sizes = [run["size_mb"] for run in output["runs"]]
    head = ["Scenario", *[f"Python RSS, {s:g} MB database" for s in sizes], "Difference", "Verdict"]
    lines = ["", _md_row(head), _md_row(["---"] + ["---:"] * (len(head) - 2) + ["---"])]
    for scenario_id, found, verdict in _flatness_rows(output):
        if verdict == "FAILED":
            lines.append(_md_row([f"`{scenario_id}`", *["failed"] * (len(head) - 1)]))
            continue
        rss = [r["py_rss"] for r in found]
        lines.append(
            _md_row(
                [
                    f"`{scenario_id}`",
                    *[f"{_mb(v)} MB" for v in rss],
                    f"{(rss[-1] - rss[0]) / MB:+.1f} MB",
                    verdict,
                ]
            )
        )
    return "\n".join(lines)
