"""``datatrust serve --workers 2``: two processes behind one port append to one chain and answer alike.

Each worker has its own ledger writer and check index. Consent writes and checks sent to the port
land in whichever process the kernel hands the connection to; afterwards every acknowledged write
must be in the ledger exactly as acknowledged, with no gap or fork, the ledger must verify, and a
withdrawal must bind checks whichever worker answers them. Run on SQLite (the data directory) and
on PostgreSQL (a fresh database per test).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.support import CHECK, Load, Server, cli, ledger_entries, prepare_trust, running
from tests.faults.test_two_servers import DEADLINE, HEALTH_CONSENT

pytestmark = pytest.mark.slow
CONSECUTIVE = 20  # answers in a row, each on a new connection (so from either worker)


def test_two_workers_append_to_one_chain(tmp_path: Path, database_url: str | None) -> None:
    """Writes and checks through two worker processes: every acknowledgement is in one verified chain."""
    data_dir = tmp_path / "trust"
    headers = prepare_trust(data_dir, database_url=database_url)
    server = Server(data_dir, tmp_path / "server.log", database_url=database_url, workers=2)
    with running(server):
        assert len(server.worker_pids()) == 2, server.output()
        load = Load(server.base_url, headers, threads=8, per_thread=40).start()
        load.wait_for(acks=8 * 40)
        load.finish()
        acks, refusals = load.snapshot()
        assert load.transport_errors == []
        assert refusals == [], [(r.status_code, r.text[:200]) for r in refusals]
        assert len(acks) == 8 * 40
        assert len({a.seq for a in acks}) == len(acks), "two acknowledgements name the same seq"
        entries = ledger_entries(server.base_url)
        assert sorted(entries) == list(range(len(entries))), "the ledger has a gap"
        missing = [a for a in acks if entries.get(a.seq) != a]
        assert missing == [], f"{len(missing)} acknowledged writes missing or changed, e.g. {missing[:3]}"
        assert server.stop() == 0, server.output()[-4000:]
    verify = cli(data_dir, "verify", database_url=database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"OK: {len(entries)} entries" in verify.stdout


def test_a_withdrawal_binds_checks_in_every_worker(tmp_path: Path, database_url: str | None) -> None:
    """After a withdrawal, checks from either worker deny within the follow interval, and keep denying."""
    data_dir = tmp_path / "trust"
    headers = prepare_trust(data_dir, database_url=database_url)
    server = Server(data_dir, tmp_path / "server.log", database_url=database_url, workers=2)

    def fresh_check(subject: str) -> dict[str, Any]:
        # A new connection each time, so that the kernel spreads the checks over both workers.
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            response = client.post(
                "/v1/checks", json={**CHECK, "operation": "pseudonymised", "subjects": [subject], "cohort_size": None}
            )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    with running(server), httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        recorded = client.post("/v1/consents", json=HEALTH_CONSENT)
        assert recorded.status_code == 201, recorded.text
        consent, subject = recorded.json()["consent"], recorded.json()["subject"]
        assert until(lambda: fresh_check(subject)["decision"] == "permit", times=CONSECUTIVE)

        withdrawn = client.post(f"/v1/consents/{consent}/withdraw", json={"reason": "asked us by phone"})
        assert withdrawn.status_code == 200, withdrawn.text
        withdrawal: int = withdrawn.json()["withdrawal"]["seq"]
        stale: list[dict[str, Any]] = []

        def denied() -> bool:
            answer = fresh_check(subject)
            if answer["decision"] == "permit":
                stale.append(answer)
            return bool(answer["decision"] == "deny" and answer["as_of"] >= withdrawal)

        assert until(denied, times=CONSECUTIVE), stale[-1:]
        # A permit after the withdrawal only ever comes from a worker that had not yet seen it.
        assert all(answer["as_of"] < withdrawal for answer in stale), stale
        assert server.stop() == 0, server.output()[-4000:]


def until(condition: Callable[[], bool], *, times: int) -> bool:
    """Whether *condition* held *times* calls in a row within DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if condition() else 0
        if streak >= times:
            return True
    return False
