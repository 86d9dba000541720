"""The built documentation site, seen in a real headless browser at 1280 px.

The site is built with ``mkdocs build --strict``; each checked page is opened in Chromium with a
small script added that measures every table against the text column, and a screenshot is kept
(``DBBACKUP_DOCS_SCREENSHOTS``, if set, names the folder). The site must also load nothing from
another host, so it works offline.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remote_servers import unavailable

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("index.html", "commands/index.html", "signals/index.html", "configuration/index.html")
WIDTH = 1280
#: Added to each page before </body>: measures the tables, reports in the page title.
PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var content = document.querySelector(".wy-nav-content");
  var limit = content.getBoundingClientRect().right;
  var wide = [];
  document.querySelectorAll("table").forEach(function (table, index) {
    var cut = false;
    table.querySelectorAll("th, td").forEach(function (cell) {
      cut = cut || cell.getBoundingClientRect().right > limit + 1;
    });
    for (var box = table; box && box !== content; box = box.parentElement) {
      cut = cut || box.scrollWidth > box.clientWidth + 1;
    }
    if (cut) wide.push(index + ": " + (table.rows[0] ? table.rows[0].innerText.slice(0, 60) : ""));
  });
  document.title = "PROBE " + JSON.stringify({tables: document.querySelectorAll("table").length, wide: wide});
}, 500); });
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    unavailable("the docs-site test needs Chromium (Debian: apt install chromium)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(target)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return target


def open_in_browser(browser: str, page: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WIDTH},1000", "--virtual-time-budget=5000", *flags, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_no_table_is_cut_off_at_1280_px(site, page, tmp_path):
    browser = chromium()
    probed = site / page.replace(".html", ".probe.html")
    probed.write_text((site / page).read_text().replace("</body>", PROBE + "</body>"))
    dom = open_in_browser(browser, probed, "--dump-dom").stdout
    report = json.loads(re.search(r"<title>PROBE (.*?)</title>", dom).group(1).replace("&quot;", '"'))
    assert report["tables"] > 0 or page == "signals/index.html"
    assert report["wide"] == [], f"{page}: tables wider than the text column: {report['wide']}"
    shots = Path(__import__("os").environ.get("DBBACKUP_DOCS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / (page.replace("/", "-").replace(".html", ".png"))
    open_in_browser(browser, site / page, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def test_the_site_loads_nothing_from_another_host(site):
    external = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](?:https?:)?//""")
    offenders = [
        str(page.relative_to(site)) for page in site.rglob("*.html") if external.search(page.read_text())
    ]
    assert offenders == []
