"""docs/commands.md documents every option of every command, and nothing that does not exist."""

import re
from pathlib import Path

import pytest
from django.core.management import load_command_class

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("dbbackup", "dbrestore", "mediabackup", "mediarestore", "listbackups", "prunebackups")
#: Django's own options, the same for every command and described once at the top of the page.
DJANGO_OPTIONS = {
    "-h", "--help", "--version", "-v", "--verbosity", "--settings", "--pythonpath", "--traceback",
    "--no-color", "--force-color", "--skip-checks",
}  # fmt: skip
OPTION = re.compile(r"`(-{1,2}[a-zA-Z][\w-]*)")


def command_options(name: str) -> set[str]:
    parser = load_command_class("dbbackup", name).create_parser("manage.py", name)
    return {flag for action in parser._actions for flag in action.option_strings} - DJANGO_OPTIONS


def documented_options(name: str) -> set[str]:
    """The flags in the first two columns of the option table under ``## `name` ``."""
    page = (ROOT / "docs" / "commands.md").read_text()
    section = page.split(f"\n## `{name}`\n", 1)[1].split("\n## ", 1)[0]
    flags = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 3 and not set(line) <= set("|- "):
            flags.update(OPTION.findall(cells[1] + cells[2]))
    return flags - {"--short", "--long"}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_documented_and_every_documented_option_exists(name):
    options, documented = command_options(name), documented_options(name)
    assert options - documented == set(), f"{name}: options missing from docs/commands.md"
    assert documented - options == set(), f"{name}: docs/commands.md names options it does not have"


def test_options_every_command_has_are_documented_at_the_top():
    page = (ROOT / "docs" / "commands.md").read_text()
    top = page.split("\n## `", 1)[0]
    for flag in ("--noinput", "--quiet", "--skip-checks", "--traceback", "--settings"):
        assert f"`{flag}`" in top, flag
