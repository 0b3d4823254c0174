"""A SQLite trust whose disk fills up: a clear refusal, a server that keeps running, an intact ledger.

The data directory is a 2 MiB tmpfs mounted for the test (needs root; skipped, or failed under
``DATATRUST_REQUIRE_SYSTEM=1``, where mounting is not permitted). Consent writes and checks go
through the HTTP API until the disk is full; then the file system is grown and writing resumes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.faults.support import (
    CHECK,
    CONSENT,
    PROBLEM_JSON,
    Ack,
    Load,
    Server,
    check_ack,
    cli,
    consent_ack,
    ledger_entries,
    prepare_trust,
    running,
)

pytestmark = pytest.mark.slow


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on a fresh directory, unmounted afterwards."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        skip_or_fail("mounting a small tmpfs needs root")
    mounted = _mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint))
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60, check=False)


def _assert_storage_full(response: httpx.Response) -> None:
    """A 503 or 507 problem document saying plainly that storage is full (no stack trace)."""
    assert response.status_code in {503, 507}, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["status"] == response.status_code
    assert "full" in problem["detail"], problem
    assert "Traceback" not in problem["detail"]


def _until_refused(
    client: httpx.Client, path: str, body: dict[str, Any], ack: Callable[[dict[str, Any]], Ack]
) -> list[Ack]:
    """POST *body* until the full disk refuses it (asserting the refusal); return what was accepted first."""
    accepted: list[Ack] = []
    for _ in range(50):
        response = client.post(path, json=body)
        if not response.is_success:
            _assert_storage_full(response)
            return accepted
        accepted.append(ack(response.json()))
    pytest.fail(f"50 writes to {path} were accepted on a full disk")


def test_a_full_disk_is_a_clear_refusal_and_the_ledger_stays_intact(tmp_path: Path, small_disk: Path) -> None:
    """Fill the disk through the API: clean refusals, reads still served; grow it: writes resume, ledger verifies."""
    data_dir = small_disk / "trust"
    headers = prepare_trust(data_dir)
    server = Server(data_dir, tmp_path / "server.log")
    with running(server):
        load = Load(server.base_url, headers, threads=4, per_thread=2000, timeout=60).start()
        try:
            load.wait_for(refusals=20)  # the disk is full: every write is refused now
        finally:
            load.finish()
        acks, refusals = load.snapshot()
        assert acks, "nothing was written before the disk filled up"
        for response in refusals:
            _assert_storage_full(response)
        assert load.transport_errors == [], load.transport_errors[:5]

        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            # Each kind of write is refused now, plainly. A write smaller than the one that last failed
            # may still fit in the space SQLite's log had already taken (it is then durable, and checked
            # below with the others), so each is tried until the disk refuses it.
            acks += _until_refused(client, "/v1/consents", CONSENT, consent_ack)
            acks += _until_refused(client, "/v1/checks", CHECK, check_ack)
            full = ledger_entries(server.base_url)  # reading still works
            assert server.alive()

            grown = _mount("-o", "remount,size=16m", str(small_disk))
            assert grown.returncode == 0, grown.stderr
            response = client.post("/v1/consents", json=CONSENT)
            assert response.status_code == 201, response.text
            assert response.json()["seq"] == len(full), (
                "the first write after the disk grew does not continue the chain"
            )
            assert client.post("/v1/checks", json=CHECK).status_code == 200

        entries = ledger_entries(server.base_url)
        assert sorted(entries) == list(range(len(full) + 2)), "the ledger has a gap"
        missing = [a for a in acks if entries.get(a.seq) != a]
        assert missing == [], f"{len(missing)} acknowledged writes missing or changed, e.g. {missing[:3]}"
        assert "Exception in ASGI application" not in server.output()
        assert server.stop() == 0, server.output()

    verify = cli(data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"OK: {len(full) + 2} entries" in verify.stdout
    replay = cli(data_dir, "replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr
