"""SIGKILL of a real server in the middle of a burst of consent writes and checks, then a restart.

Whatever the server acknowledged (a 2xx answer naming a seq and leaf hash) must be in the ledger
after the restart, exactly as acknowledged; the ledger must verify, the projections must match a
replay of the ledger, and the next write must continue the chain. Run on SQLite (the data
directory) and on PostgreSQL (a fresh database per test).
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.faults.support import CONSENT, Load, Server, cli, consent_ack, ledger_entries, prepare_trust, running

pytestmark = pytest.mark.slow

KILL_AFTER = 120  # acknowledgements before the kill: well into the burst


def test_nothing_acknowledged_is_lost_when_the_server_is_killed(tmp_path: Path, database_url: str | None) -> None:
    """Kill -9 mid-burst; after a restart every acknowledged write is there, verified, replayable, extendable."""
    data_dir = tmp_path / "trust"
    headers = prepare_trust(data_dir, database_url=database_url)

    first = Server(data_dir, tmp_path / "first.log", database_url=database_url)
    with running(first):
        load = Load(first.base_url, headers, threads=6).start()
        try:
            load.wait_for(acks=KILL_AFTER)
            status = first.kill()  # no clean-up at all, while requests are in flight
        finally:
            load.finish()
    assert status == -signal.SIGKILL, first.output()
    acks, refusals = load.snapshot()
    assert len(acks) >= KILL_AFTER
    assert refusals == [], [(r.status_code, r.text[:200]) for r in refusals]
    assert load.transport_errors, "the kill should have cut requests off mid-burst"
    assert {a.kind for a in acks} == {"consent.granted", "check.decided"}
    assert len({a.seq for a in acks}) == len(acks), "two acknowledgements name the same seq"

    second = Server(data_dir, tmp_path / "second.log", database_url=database_url)
    with running(second):
        entries = ledger_entries(second.base_url)
        assert sorted(entries) == list(range(len(entries))), "the ledger has a gap"
        missing = [a for a in acks if entries.get(a.seq) != a]
        assert missing == [], f"{len(missing)} acknowledged writes missing or changed, e.g. {missing[:3]}"

        response = httpx.post(second.base_url + "/v1/consents", json=CONSENT, headers=headers, timeout=30)
        assert response.status_code == 201, response.text
        new = consent_ack(response.json())
        assert new.seq == len(entries), "the first write after the restart does not continue the chain"
        prev = response.json()["receipt"]["entry"]["prev"]
        assert prev == entries[new.seq - 1].leaf_hash
        assert second.stop() == 0, second.output()

    verify = cli(data_dir, "verify", database_url=database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"OK: {len(entries) + 1} entries" in verify.stdout
    replay = cli(data_dir, "replay", database_url=database_url)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "projection tables match" in replay.stdout
