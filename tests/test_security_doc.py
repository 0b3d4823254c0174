"""SECURITY.md names the tests behind each claim: every one it names must exist.

A claim whose test was renamed or deleted would otherwise go on reading as proven.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`|`::(\w+)`")


def _references() -> list[tuple[str, str | None]]:
    """``(file, test or None)`` for each test named; ``::name`` refers to the file named last."""
    found: list[tuple[str, str | None]] = []
    last_file: str | None = None
    for match in REFERENCE.finditer((ROOT / "SECURITY.md").read_text()):
        path, name, continued = match.groups()
        if path is not None:
            last_file = path
            found.append((path, name))
        elif continued is not None:
            assert last_file is not None, f"`::{continued}` comes before any test file is named"
            found.append((last_file, continued))
    return found


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_security_md_names_only_tests_that_exist() -> None:
    """Every ``tests/…::name`` in SECURITY.md is a test that exists."""
    references = _references()
    assert len(references) > 30  # the page is built on them; a broken pattern must not pass silently
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.exists():
            missing.append(file)
        elif name is not None and name not in _defined(path):
            missing.append(f"{file}::{name}")
    assert missing == []
