"""docs/reliability.md names only tests that exist, so the fault matrix cannot drift from them."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: `file.py::test_name` (tests/faults/file.py), `tests/x.py::test_name`, `::test_name` (in the file
#: named before it in the row) and `test_prefix_*` (any test whose name starts so).
REFERENCE = re.compile(r"`((?:tests/)?[\w/]*\.py)?(?:::(\w+\*?))?`")


def test_every_test_the_matrix_names_exists():
    page = (ROOT / "docs" / "reliability.md").read_text()
    checked, missing = 0, []
    for line in page.splitlines():
        if not line.startswith("|"):
            continue
        current = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            if path:
                # a bare file name is one of the fault tests; others are given as tests/...
                candidates = [ROOT / "tests" / "faults" / path, ROOT / path]
                current = next((c for c in candidates if c.is_file()), None)
                if current is None:
                    missing.append(path)
                    continue
            if not name or current is None:
                continue
            source = current.read_text()
            pattern = rf"^def {re.escape(name.rstrip('*'))}" + ("" if name.endswith("*") else r"\(")
            checked += 1
            if not re.search(pattern, source, re.MULTILINE):
                missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert checked > 60
    assert missing == []
