"""The whole test command: linters, type checks, import contracts, then the test suite.

Run it as ``python -m tests.check`` from the repository root (the README's test
command and ``.ci/run`` do). Extra arguments are passed to pytest.
"""

from __future__ import annotations

import subprocess
import sys
import time

STEPS: list[tuple[str, list[str]]] = [
    ("ruff check", [sys.executable, "-m", "ruff", "check", "."]),
    ("ruff format", [sys.executable, "-m", "ruff", "format", "--check", "."]),
    ("mypy", [sys.executable, "-m", "mypy", "."]),
    (
        "import contracts",
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
    ),
]


def main(argv: list[str]) -> int:
    """Run every step; stop at the first failure."""
    for name, command in STEPS:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            print(f"FAILED: {name}", flush=True)
            return 1
        print(f"   ok ({time.monotonic() - started:.1f}s)", flush=True)
    print("== pytest (SQLite, and PostgreSQL where reachable)", flush=True)
    pytest_cmd = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", *argv]
    return subprocess.run(pytest_cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
