"""End to end: an individual withdraws; the partner that received them is told, verifies, deletes and says so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.instance import Instance
from api.routes.webhooks import ALLOW_LOCAL_ENV
from api.webhooks.worker import FIRST_ATTEMPT_WITHIN, start_delivery_worker
from datatrust_client import DatatrustClient
from ledger.entry import parse_at
from tests.factories import bearer, individual_principal, make_client, make_organisation
from tests.webhooks.helpers import Receiver, as_httpx, grant, permit, wait_until
from trust.webhook_deliveries import get_delivery, list_deliveries
from trust.webhooks import deletions_for_subject


def test_withdrawal_reaches_the_partner_who_confirms_deletion(
    client: TestClient, instance: Instance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """consent.withdrawn reaches the permitted partner within the documented time; its deletion shows for the person."""
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "1")  # the partner's receiver runs on 127.0.0.1 in this test
    make_organisation(instance, "org_riverside_food_bank", name="Riverside Food Bank")
    client_id, secret = make_client(instance, organisation="org_riverside_food_bank")
    assert secret is not None
    consent = grant(instance, "org_collector")
    decision = permit(instance, "org_riverside_food_bank", [consent.subject])
    stop = start_delivery_worker(instance, poll_interval=0.2)
    trust = DatatrustClient("https://testserver", client_id=client_id, client_secret=secret, http=as_httpx(client))
    try:
        trust.request("POST", "/v1/webhooks", json={"url": receiver.url, "event_types": ["consent.withdrawn"]})

        person = bearer(instance, individual_principal(consent.subject))
        withdrawn = client.post(f"/v1/me/consents/{consent.consent}/withdraw", json={}, headers=person)
        assert withdrawn.status_code == 200, withdrawn.text
        assert wait_until(lambda: len(receiver.ids()) >= 1, timeout=60)

        (request,) = receiver.requests
        event = trust.webhook_verifier().verify(request.body, request.headers)  # signed by the trust
        assert (event.type, event.data["subject"], event.data["decision_ids"]) == (
            "consent.withdrawn",
            consent.subject,
            [decision.seq],
        )
        proof = trust.verify_entry(event.data["entry"]["seq"])  # the withdrawal is on the ledger, under a checkpoint
        assert proof.entry["kind"] == "consent.withdrawn"

        confirmed = trust.confirm_deletion(
            subject=consent.subject, consent=consent.consent, decision_id=decision.seq, deleted_at=datetime.now(UTC)
        )
    finally:
        stop()
        trust.close()

    (delivery,) = list_deliveries(instance.db, organisation="org_riverside_food_bank")
    first_attempt = get_delivery(instance.db, delivery.id, organisation=None).history[0]
    assert delivery.status == "delivered"
    assert parse_at(first_attempt.started_at) - parse_at(delivery.event_at) <= FIRST_ATTEMPT_WITHIN
    with instance.db.engine.connect() as conn:
        shown = deletions_for_subject(conn, consent.subject)
    assert [(d.organisation_name, d.seq) for d in shown] == [("Riverside Food Bank", confirmed["seq"])]
