"""The ledger commands of the `datatrust` executable, run exactly as a user types them (see :func:`run`)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from typer.testing import CliRunner

from api.cli import app
from ledger.checkpoint import open_checkpoint
from ledger.keys import Verifier
from ledger.merkle import verify_inclusion

DATATRUST = str(Path(sys.executable).parent / "datatrust")


def run(*args: str, db_url: str | None = None, in_process: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``datatrust ARGS`` in a clean environment and return what the user would see.

    *in_process* runs the same command line through typer's runner instead of a new
    interpreter: the executable's start-up costs seconds of CPU, so only the SQLite
    flow and the error cases pay it; the PostgreSQL flow runs the same commands in process.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATATRUST_")}
    if db_url is not None:
        env["DATATRUST_DATABASE_URL"] = db_url
    if in_process:
        overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DATATRUST_")}
        overrides.update({k: v for k, v in env.items() if k.startswith("DATATRUST_")})
        result = CliRunner().invoke(app, list(args), env=overrides)
        return subprocess.CompletedProcess([DATATRUST, *args], result.exit_code, result.stdout, result.stderr)
    return subprocess.run([DATATRUST, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def _line_after(text: str, label: str) -> str:
    return next(line.split(label, 1)[1].strip() for line in text.splitlines() if label in line)


@pytest.mark.slow
def test_ledger_commands_end_to_end(db_url: str, tmp_path: Path) -> None:
    """init, checkpoint, prove, keys rotate, export, verify-export, verify and replay all work and agree."""
    data = str(tmp_path / "trust")
    in_process = not db_url.startswith("sqlite")  # see run()

    init = run("init", "--data-dir", data, "--name", "Cli Trust", db_url=db_url, in_process=in_process)
    assert init.returncode == 0, init.stderr
    old_key = Verifier.from_text(_line_after(init.stdout, "Checkpoint verifier key:"))
    assert stat.S_IMODE((tmp_path / "trust" / "keys" / "log.key").stat().st_mode) == 0o600
    assert "PRIVATE+KEY" not in init.stdout + init.stderr

    checkpoint = run("ledger", "checkpoint", "--data-dir", data, db_url=db_url, in_process=in_process)
    assert checkpoint.returncode == 0, checkpoint.stderr
    kept = open_checkpoint(checkpoint.stdout, [old_key], origin=old_key.name)
    (tmp_path / "kept.txt").write_text(checkpoint.stdout)

    prove = run("ledger", "prove", "1", "--data-dir", data, db_url=db_url, in_process=in_process)
    assert prove.returncode == 0, prove.stderr
    document = json.loads(prove.stdout)
    assert document["seq"] == document["entry"]["seq"] == 1
    assert document["leaf_hash"] == hashlib.sha256(b"\x00" + rfc8785.dumps(document["entry"])).hexdigest()
    proven = open_checkpoint(document["checkpoint"], [old_key])
    assert proven.size == document["size"]
    path = [bytes.fromhex(p) for p in document["proof"]]
    verify_inclusion(1, proven.size, bytes.fromhex(document["leaf_hash"]), path, proven.root)

    rotate = run("keys", "rotate", "--data-dir", data, db_url=db_url, in_process=in_process)
    assert rotate.returncode == 0, rotate.stderr
    new_key = Verifier.from_text(_line_after(rotate.stdout, "New verifier key:"))
    assert new_key != old_key
    assert "PRIVATE+KEY" not in rotate.stdout + rotate.stderr

    export = tmp_path / "ledger.jsonl"
    exported = run("ledger", "export", str(export), "--data-dir", data, db_url=db_url, in_process=in_process)
    assert exported.returncode == 0, exported.stderr
    entries = sum(1 for line in export.read_text().splitlines() if line.startswith('{"actor":'))
    assert exported.stdout.strip() == f"Exported {entries} entries to {export}"

    key_file = tmp_path / "new.pub"
    key_file.write_text(new_key.to_text() + "\n")
    verified = run("ledger", "verify-export", str(export), "--public-key", str(key_file))  # no data dir, no database
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK: {entries} entries, ")
    stale = run("ledger", "verify-export", str(export), "--public-key", old_key.to_text(), in_process=in_process)
    assert stale.returncode == 1
    assert stale.stderr.strip().startswith("FAILED: the last checkpoint is not signed by the trusted key")
    assert len(stale.stderr.strip().splitlines()) == 1

    verify = run(
        "ledger",
        "verify",
        "--data-dir",
        data,
        "--checkpoint",
        str(tmp_path / "kept.txt"),
        db_url=db_url,
        in_process=in_process,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith(f"OK: {entries} entries, ")
    assert kept.size < entries

    replay = run("ledger", "replay", "--data-dir", data, db_url=db_url, in_process=in_process)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.startswith(f"OK: replayed {entries} entries")


@pytest.mark.parametrize(
    ("args", "message", "in_process"),
    [
        (("ledger", "verify", "--data-dir", "{tmp}/nowhere"), "is not a datatrust data directory", False),
        (
            ("ledger", "verify-export", "{tmp}/missing.jsonl", "--public-key", "{key}"),
            "No such file or directory",
            False,
        ),
        (
            ("ledger", "verify-export", "{tmp}/export.jsonl", "--public-key", "not a key"),
            "verifier key must look",
            True,
        ),
        (
            ("ledger", "verify-export", "{tmp}/export.jsonl", "--public-key", "{key}"),
            "not a datatrust ledger export",
            True,
        ),
        (("ledger", "prove", "0", "--data-dir", "{tmp}/nowhere"), "is not a datatrust data directory", True),
    ],
)
def test_bad_input_gives_one_line_and_non_zero_exit(
    tmp_path: Path, args: tuple[str, ...], message: str, in_process: bool
) -> None:
    """Bad input (no data dir, bad key text, missing or wrong file) prints one error line and exits non-zero."""
    (tmp_path / "export.jsonl").write_text('{"not": "an export"}\n')
    key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    result = run(*(a.format(tmp=tmp_path, key=key) for a in args), in_process=in_process)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
