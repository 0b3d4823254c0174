"""The client library stands alone: it imports nothing from the server packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import datatrust_client

ALLOWED = {"httpx", "nacl", "rfc8785", "datatrust_client"}


def test_client_imports_only_its_declared_dependencies() -> None:
    """Every import in datatrust_client is the standard library, httpx, PyNaCl, rfc8785 or itself."""
    root = Path(datatrust_client.__file__).parent
    imported: set[str] = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "__future__"}
    assert third_party <= ALLOWED, third_party - ALLOWED
    assert (root / "py.typed").exists()
