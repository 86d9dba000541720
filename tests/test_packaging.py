"""The distribution installs this project under a name of its own, and the docs say so."""

import re
from importlib import metadata
from pathlib import Path

import dbbackup

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "django-dbbackup-ng"
INSTALL_PAGES = ("README.md", "docs/installation.md", "docs/migration.md")
#: "pip install dbbackup", with or without extras or quotes: PyPI's unrelated project.
WRONG_INSTALL = re.compile(r"pip install [\"']?dbbackup(?:[\[\"'\s]|$)", re.MULTILINE)


def project_table() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return text.split("[project]", 1)[1].split("\n[", 1)[0]


def test_the_distribution_has_a_name_of_its_own_and_a_release_version():
    assert re.search(rf'^name = "{DISTRIBUTION}"$', project_table(), re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+", dbbackup.__version__), dbbackup.__version__


def test_the_installed_distribution_is_this_checkout():
    assert metadata.version(DISTRIBUTION) == dbbackup.__version__
    top_level = {Path(str(file)).parts[0] for file in metadata.files(DISTRIBUTION) or []}
    assert "dbbackup" in top_level or any(name.endswith(".pth") for name in top_level)


def test_install_pages_name_the_distribution_and_never_the_unrelated_package():
    for page in INSTALL_PAGES:
        text = (ROOT / page).read_text()
        assert DISTRIBUTION in text, page
        assert not WRONG_INSTALL.search(text), f"{page}: {WRONG_INSTALL.search(text).group(0)!r}"


def test_hints_in_messages_name_the_distribution():
    for path in (ROOT / "dbbackup").rglob("*.py"):
        assert not WRONG_INSTALL.search(path.read_text()), path
