"""Rules of the house, checked on the source: who may start processes, and how."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dbbackup"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_process_module_imports_subprocess(path):
    if path.name == "process.py":
        return
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            assert all(alias.name != "subprocess" for alias in node.names), path
        if isinstance(node, ast.ImportFrom):
            assert node.module != "subprocess", path
        if isinstance(node, ast.Attribute):
            assert not (
                isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in {"system", "popen"}
            )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_shell_and_no_unbounded_wait(path):
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.keyword) and node.arg == "shell":
            raise AssertionError(f"{path}: shell= is not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "wait":
            assert node.args or node.keywords, (
                f"{path}:{node.lineno}: wait() needs a timeout and drained pipes"
            )


def test_module_budgets():
    too_big = {p.name: n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert too_big == {}
