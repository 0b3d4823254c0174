"""A real ``datatrust serve`` and its append process (``ledger/remote.py``): one lives and stops with the other.

A service manager stops a server by signalling its whole process group, and Ctrl-C at a terminal
reaches the whole group too. The append process must outlive both signals and stop only when its
server closes its input, after answering everything it was sent and signing a checkpoint of it,
so that a clean stop leaves every recorded check covered by a checkpoint. Run on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from api.instance import Instance
from tests.faults.support import CHECK, Server, child_pids, cli, prepare_trust, running

pytestmark = pytest.mark.slow


def _append_process(server_pid: int) -> int:
    """The server's child running ``api.append_process``."""
    found = child_pids(server_pid, running=b"api.append_process")
    assert len(found) == 1, f"expected one append process, found {found}"
    return found[0]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


def test_the_append_process_ignores_stop_signals_and_stops_with_its_server(
    tmp_path: Path, database_url: str | None
) -> None:
    """SIGTERM and SIGINT leave it appending; the server's clean stop ends it, with every check checkpointed."""
    data_dir = tmp_path / "trust"
    headers = prepare_trust(data_dir, database_url=database_url)
    server = Server(data_dir, tmp_path / "server.log", database_url=database_url)
    with running(server):
        child = _append_process(server.pid)
        for stop in (signal.SIGTERM, signal.SIGINT):
            os.kill(child, stop)
        time.sleep(0.5)
        assert not _gone(child), "the append process died of a stop signal meant for its server"
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            answers = [client.post("/v1/checks", json=CHECK) for _ in range(20)]
        assert [a.status_code for a in answers] == [200] * 20, answers[-1].text
        assert server.stop() == 0, server.output()
    assert _gone(child), "the append process outlived its server"
    assert "append process stopped" not in server.output()  # it never fell back to appending in the server

    instance = Instance.open(data_dir, database_url=database_url, check_index=False)
    try:
        size = instance.ledger.size()
        assert max(a.json()["decision_id"] for a in answers) == size - 1
        assert f"\n{size}\n" in instance.ledger.latest_checkpoint(), "the last checks are not checkpointed"
    finally:
        instance.close()
    verify = cli(data_dir, "verify", database_url=database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
