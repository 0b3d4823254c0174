"""Go's own golang.org/x/mod/sumdb/note and sumdb/tlog verify our checkpoints and proofs, unchanged.

The Go program (tests/ledger/go/verify/main.go) is built offline from the Debian
packages golang-go and golang-golang-x-mod-dev (GOPATH mode, no module proxy).
It opens the checkpoint with ``note.Open`` and checks proofs with
``tlog.CheckRecord`` / ``tlog.CheckTree`` against the root it carries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.instance import Instance
from ledger.keys import Signer
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from tests.conftest import skip_or_fail

SOURCE = Path(__file__).resolve().parent / "go" / "verify"
GOPATH = Path("/usr/share/gocode")
NOTE_PACKAGE = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb" / "note"


@pytest.fixture(scope="session")
def go_verify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go verifier, built once per test session (offline, from the Debian Go sources)."""
    go = shutil.which("go")
    if go is None or not NOTE_PACKAGE.is_dir():
        skip_or_fail(
            "Go or golang.org/x/mod is missing: apt-get install golang-go golang-golang-x-mod-dev "
            f"(go found: {go}, {NOTE_PACKAGE} present: {NOTE_PACKAGE.is_dir()})"
        )
    assert go is not None
    work = tmp_path_factory.mktemp("go")
    binary = work / "verify"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "GO111MODULE": "off",  # GOPATH mode: imports resolve in /usr/share/gocode, nothing is downloaded
        "GOPATH": str(GOPATH),
        "GOCACHE": str(work / "cache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=SOURCE, env=env, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr
    return binary


class GoRun:
    """Files for one run of the Go verifier."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder

    def file(self, name: str, content: str | bytes) -> str:
        """Write *content* to a file named *name* and return its path."""
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the verifier with *args*."""
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def go(go_verify: Path, tmp_path: Path) -> GoRun:
    """The Go verifier with a folder for its input files."""
    return GoRun(go_verify, tmp_path)


def _filled(instance: Instance) -> Ledger:
    """Give the trust 20 more entries under checkpoints (a bare ledger with its key: no projections)."""
    signer = instance.ledger.signer
    instance.ledger.close()
    instance.ledger = Ledger(instance.db, signer=signer, origin=instance.origin)
    now = datetime.now(UTC)
    for first in (2, 12):
        specs = [
            AppendSpec("check.decided", "org_go", now, payload={"n": n, "t": f"\u00e9\U0001f600{n}"})
            for n in range(first, first + 10)
        ]
        instance.ledger.append_all(specs, checkpoint=True)
    return instance.ledger


def test_go_verifies_live_checkpoint_and_proofs(client: TestClient, instance: Instance, go: GoRun) -> None:
    """note.Open accepts the served checkpoint, and tlog.CheckRecord / CheckTree accept every served proof."""
    old_note = client.get("/v1/ledger/checkpoint").text  # what an outsider kept at size 2
    ledger = _filled(instance)
    key = go.file("key.txt", client.get("/v1/ledger/verifier-key").text)
    note = client.get("/v1/ledger/checkpoint").text
    checkpoint = go.file("checkpoint.txt", note)
    size = int(note.split("\n")[1])
    assert size == 22
    for seq in range(size):
        proof = client.get("/v1/ledger/proofs/inclusion", params={"seq": seq, "size": size}).json()
        result = go(
            "-key", key, "-checkpoint", checkpoint,
            "-inclusion", go.file("inclusion.json", json.dumps(proof)),
            "-entry", go.file("entry.bin", ledger.get(seq).body),
        )  # fmt: skip
        assert result.returncode == 0, f"seq {seq}: {result.stderr}"
        assert result.stdout.strip() == "OK"
    for old_size, old_text in [(2, old_note), (12, ledger.checkpoint_covering(11))]:
        assert int(old_text.split("\n")[1]) == old_size
        consistency = client.get("/v1/ledger/proofs/consistency", params={"from": old_size, "to": size}).json()
        result = go(
            "-key", key, "-checkpoint", checkpoint,
            "-old-checkpoint", go.file("old.txt", old_text),
            "-consistency", go.file("consistency.json", json.dumps(consistency)),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_go_refuses_tampering(client: TestClient, instance: Instance, go: GoRun) -> None:
    """Go refuses a checkpoint with a changed size, another key, a flipped proof hash and altered entry bytes."""
    ledger = _filled(instance)
    key_text = client.get("/v1/ledger/verifier-key").text
    key = go.file("key.txt", key_text)
    note = client.get("/v1/ledger/checkpoint").text
    proof = client.get("/v1/ledger/proofs/inclusion", params={"seq": 7, "size": 22}).json()
    inclusion = go.file("inclusion.json", json.dumps(proof))
    entry = ledger.get(7).body

    def refused(*, key: str = key, note: str = note, inclusion: str = inclusion, entry: bytes | None = entry) -> str:
        args = ["-key", key, "-checkpoint", go.file("cp.txt", note), "-inclusion", inclusion]
        if entry is not None:
            args += ["-entry", go.file("e.bin", entry)]
        result = go(*args)
        assert result.returncode == 1, result.stdout
        return result.stderr

    assert go("-key", key, "-checkpoint", go.file("cp.txt", note), "-inclusion", inclusion).returncode == 0
    assert "note.Open" in refused(note=note.replace("\n22\n", "\n23\n", 1))  # the signed text changed
    other = Signer.generate(instance.origin).verifier.to_text()  # same name, different key
    assert "note.Open" in refused(key=go.file("other.txt", other))
    first = proof["proof"][0]
    flipped = dict(proof, proof=[first[:-1] + ("1" if first[-1] == "0" else "0"), *proof["proof"][1:]])
    assert "invalid transparency proof" in refused(inclusion=go.file("flipped.json", json.dumps(flipped)))
    assert "do not hash to leaf_hash" in refused(entry=entry.replace(b'"n":7', b'"n":8'))
    moved = go.file("moved.json", json.dumps(dict(proof, seq=8)))  # a valid path presented for another entry
    assert "invalid transparency proof" in refused(inclusion=moved, entry=None)
