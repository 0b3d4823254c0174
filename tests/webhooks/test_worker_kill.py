"""At least once: SIGKILL the delivery worker mid-batch, restart it, and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from api.instance import Instance
from api.webhooks.signing import webhook_signer
from consent.service import withdraw_consent
from datatrust_client import WebhookVerifier
from tests.webhooks.helpers import Receiver, grant, now, subscribe, wait_until
from trust.webhook_deliveries import get_delivery, list_deliveries

EVENTS = 12
HOLD_AT = 4  # the fourth request is in flight when the worker is killed
DATATRUST = str(Path(sys.executable).with_name("datatrust"))


def _start_worker(instance: Instance, db_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATATRUST_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
    options = ["--concurrency", "1", "--batch-size", "50", "--lease-seconds", "2", "--timeout-seconds", "1.5"]
    command = [
        DATATRUST,
        "webhooks",
        "deliver",
        "--data-dir",
        str(instance.data_dir),
        "--poll-interval",
        "0.1",
        *options,
    ]
    with log.open("ab") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_killed_worker_loses_nothing_and_duplicates_share_their_id(
    instance: Instance, db_url: str, tmp_path: Path
) -> None:
    """Kill -9 while a batch is half sent, restart: every event arrives, none is lost, a repeat has the same id."""
    receiver = Receiver(hold_at=HOLD_AT)
    public_key = webhook_signer(instance.data_dir).public_key
    subscribe(instance, "org_collector", receiver.url, event_types=["consent.withdrawn"])
    for consent in [grant(instance, "org_collector") for _ in range(EVENTS)]:
        withdraw_consent(
            instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
        )
    expected = {m.id for m in list_deliveries(instance.db, organisation="org_collector", limit=200)}
    assert len(expected) == EVENTS
    log = tmp_path / "worker.log"
    worker = _start_worker(instance, db_url, log)
    try:
        assert receiver.holding.wait(60), log.read_text()
        worker.send_signal(signal.SIGKILL)  # mid-batch: three answered, one in flight, eight leased but unsent
        worker.wait(10)
        held = receiver.ids()[HOLD_AT - 1]
        cut_short = get_delivery(instance.db, held, organisation=None)
        assert (cut_short.status, cut_short.history[-1].is_success) == ("pending", None)
        assert len(receiver.ids()) == HOLD_AT < EVENTS
        receiver.release.set()

        worker = _start_worker(instance, db_url, log)
        delivered = wait_until(
            lambda: (
                {m.status for m in list_deliveries(instance.db, organisation="org_collector", limit=200)}
                == {"delivered"}
            ),
            timeout=60,
        )
        assert delivered, log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
        receiver.close()

    counts = Counter(receiver.ids())
    assert set(counts) == expected  # none lost
    assert counts[held] >= 2  # the request cut short was sent again ...
    verifier = WebhookVerifier.from_public_key(public_key)
    bodies: dict[str, set[bytes]] = {}
    for request in receiver.requests:
        event = verifier.verify(request.body, request.headers)  # every copy validly signed
        assert event.id == request.id
        bodies.setdefault(request.id, set()).add(request.body)
    assert all(len(b) == 1 for b in bodies.values())  # ... with the same id and the same body
    history = get_delivery(instance.db, held, organisation=None).history
    assert [a.is_success for a in history] == [None, True]
