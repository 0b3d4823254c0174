"""``/v1/webhooks`` and ``/v1/deletions`` over HTTP: a partner manages and sees only its own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.instance import Instance
from api.routes.webhooks import ALLOW_LOCAL_ENV
from consent.service import withdraw_consent
from tests.factories import admin_principal, bearer, individual_principal, partner_bearer
from tests.webhooks.helpers import grant, now, permit

HOOK = {"url": "https://partner.example/hooks/datatrust", "event_types": ["consent.withdrawn", "request.revoked"]}


def test_partner_manages_its_endpoints(client: TestClient, instance: Instance) -> None:
    """Create, list, read, change, pause and delete an endpoint; the v1 secret is shown only when issued."""
    auth = partner_bearer(instance, "org_alpha")
    created = client.post("/v1/webhooks", json={**HOOK, "scheme": "v1"}, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["organisation"], body["scheme"], body["is_active"]) == ("org_alpha", "v1", True)
    assert body["secret"].startswith("whsec_")
    hook = f"/v1/webhooks/{body['id']}"
    assert client.get(hook, headers=auth).json()["secret"] is None
    assert [s["id"] for s in client.get("/v1/webhooks", headers=auth).json()["subscriptions"]] == [body["id"]]
    rotated = client.patch(hook, json={"rotate_secret": True, "is_active": False}, headers=auth).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != body["secret"]
    assert rotated["is_active"] is False
    switched = client.patch(hook, json={"scheme": "v1a", "event_types": ["subject.erased"]}, headers=auth).json()
    assert (switched["scheme"], switched["event_types"], switched["secret"]) == ("v1a", ["subject.erased"], None)
    assert client.delete(hook, headers=auth).status_code == 204
    assert client.get(hook, headers=auth).status_code == 404


def test_another_partner_can_neither_see_nor_change_an_endpoint(client: TestClient, instance: Instance) -> None:
    """Organisation B gets 404 for A's endpoint on every method, and lists none of A's; an admin sees all."""
    alpha = partner_bearer(instance, "org_alpha")
    beta = partner_bearer(instance, "org_beta")
    hook_id = client.post("/v1/webhooks", json=HOOK, headers=alpha).json()["id"]
    hook = f"/v1/webhooks/{hook_id}"
    assert client.get(hook, headers=beta).status_code == 404
    assert client.patch(hook, json={"url": "https://evil.example/x"}, headers=beta).status_code == 404
    assert client.patch(hook, json={"rotate_secret": True}, headers=beta).status_code == 404
    assert client.delete(hook, headers=beta).status_code == 404
    assert client.get("/v1/webhooks", headers=beta).json()["subscriptions"] == []
    assert client.get(hook, headers=alpha).json()["url"] == HOOK["url"]  # untouched
    mixed = client.post("/v1/webhooks", json={**HOOK, "organisation": "org_alpha"}, headers=beta)
    assert mixed.status_code == 422
    admin = bearer(instance, admin_principal())
    assert [s["id"] for s in client.get("/v1/webhooks", headers=admin).json()["subscriptions"]] == [hook_id]


def test_deliveries_are_visible_to_their_partner_and_admins_only(client: TestClient, instance: Instance) -> None:
    """The partner lists its deliveries with their outcome and body; another partner sees nothing of them."""
    alpha = partner_bearer(instance, "org_alpha")
    beta = partner_bearer(instance, "org_beta")
    client.post("/v1/webhooks", json=HOOK, headers=alpha)
    consent = grant(instance, "org_alpha")
    withdraw_consent(
        instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
    )
    (delivery,) = client.get("/v1/webhooks/deliveries", headers=alpha).json()["deliveries"]
    assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == ("consent.withdrawn", "pending", 0)
    detail = client.get(f"/v1/webhooks/deliveries/{delivery['id']}", headers=alpha).json()
    assert detail["payload"]["data"]["consent"] == consent.consent
    assert detail["history"] == []
    assert client.get("/v1/webhooks/deliveries", headers=beta).json()["deliveries"] == []
    assert client.get(f"/v1/webhooks/deliveries/{delivery['id']}", headers=beta).status_code == 404
    admin = bearer(instance, admin_principal())
    assert len(client.get("/v1/webhooks/deliveries", headers=admin).json()["deliveries"]) == 1
    assert client.get("/v1/webhooks/deliveries?status=delivered", headers=alpha).json()["deliveries"] == []


def test_replay_requeues_the_partners_events(client: TestClient, instance: Instance) -> None:
    """POST /v1/webhooks/replay?since=SEQ queues the partner's past events again, with their ids."""
    alpha = partner_bearer(instance, "org_alpha")
    consent = grant(instance, "org_alpha")
    seq = withdraw_consent(
        instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
    ).seq
    client.post("/v1/webhooks", json=HOOK, headers=alpha)
    answer = client.post(f"/v1/webhooks/replay?since={seq}", headers=alpha)
    assert answer.json() == {"requeued": 1, "scanned": 1, "next_since": None}
    assert client.post(f"/v1/webhooks/replay?since={seq + 1}", headers=alpha).json()["requeued"] == 0
    beta = partner_bearer(instance, "org_beta")
    assert client.post("/v1/webhooks/replay?since=0", headers=beta).status_code == 422  # no endpoint


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://partner.example/x", "https"),  # plain http
        ("https://127.0.0.1:5432/", "public host"),  # the trust's own machine
        ("https://10.0.0.7/hooks", "public host"),  # the trust's private network
        ("https://localhost/hooks", "public host"),
        ("https://user:pw@partner.example/x", "credentials"),
    ],
)
def test_unsafe_endpoints_are_refused(client: TestClient, instance: Instance, url: str, reason: str) -> None:
    """Plain http, loopback or private addresses and embedded credentials are 422 with the reason."""
    alpha = partner_bearer(instance, "org_alpha")
    answer = client.post("/v1/webhooks", json={**HOOK, "url": url}, headers=alpha)
    assert answer.status_code == 422
    assert reason in answer.json()["detail"]


def test_unknown_event_types_are_refused(client: TestClient, instance: Instance) -> None:
    """An event type the trust does not send is a 422."""
    alpha = partner_bearer(instance, "org_alpha")
    assert (
        client.post("/v1/webhooks", json={**HOOK, "event_types": ["consent.granted"]}, headers=alpha).status_code == 422
    )


def test_local_endpoints_only_where_the_operator_allows_them(
    client: TestClient, instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DATATRUST_WEBHOOKS_ALLOW_LOCAL=1 (development, demo) a receiver on 127.0.0.1 over http is accepted."""
    alpha = partner_bearer(instance, "org_alpha")
    local = {**HOOK, "url": "http://127.0.0.1:8001/hooks"}
    assert client.post("/v1/webhooks", json=local, headers=alpha).status_code == 422
    monkeypatch.setenv(ALLOW_LOCAL_ENV, "1")
    assert client.post("/v1/webhooks", json=local, headers=alpha).status_code == 201


def test_webhook_actions_need_a_partner_or_admin(client: TestClient, instance: Instance) -> None:
    """The public is asked to sign in; an individual may not manage webhooks or confirm deletions."""
    assert client.get("/v1/webhooks").status_code == 401
    person = bearer(instance, individual_principal("sub_someone1234"))
    assert client.get("/v1/webhooks", headers=person).status_code == 403
    deletion = {"subject": "sub_someone1234", "deleted_at": now().isoformat()}
    assert client.post("/v1/deletions", json=deletion, headers=person).status_code == 403


def test_public_key_is_published(client: TestClient) -> None:
    """Anyone can fetch the whpk_ key that verifies v1a signatures."""
    body = client.get("/v1/webhooks/public-key").json()
    assert (body["scheme"], body["algorithm"]) == ("v1a", "Ed25519")
    assert body["public_key"].startswith("whpk_")


def test_partner_confirms_deletion_once(client: TestClient, instance: Instance) -> None:
    """POST /v1/deletions records deletion.confirmed (201); repeating it answers 200 with the same record."""
    alpha = partner_bearer(instance, "org_alpha")
    consent = grant(instance, "org_collector")
    decision = permit(instance, "org_alpha", [consent.subject])
    body = {
        "subject": consent.subject,
        "consent": consent.consent,
        "decision_id": decision.seq,
        "deleted_at": (now() - timedelta(minutes=1)).isoformat(),
    }
    first = client.post("/v1/deletions", json=body, headers=alpha)
    assert first.status_code == 201, first.text
    assert (first.json()["organisation"], first.json()["decision_id"]) == ("org_alpha", decision.seq)
    again = client.post("/v1/deletions", json=body, headers=alpha)
    assert (again.status_code, again.json()["seq"]) == (200, first.json()["seq"])
    assert instance.ledger.get(first.json()["seq"]).kind == "deletion.confirmed"
    stranger = partner_bearer(instance, "org_beta")
    assert client.post("/v1/deletions", json=body, headers=stranger).status_code == 404
    naive = {**body, "deleted_at": "2026-11-26T09:00:00"}
    assert client.post("/v1/deletions", json=naive, headers=alpha).status_code == 422
