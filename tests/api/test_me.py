"""The individual's API: access-code sign-in, own consents only, withdraw, erase."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.auth import service as auth_service
from consent import access_codes
from tests.consent.support import ORG
from tests.factories import bearer, individual_principal, partner_bearer

BODY = {
    "person": {"name": "Priya Shah", "contact": "priya@example.org"},
    "purposes": ["research.social"],
    "categories": ["housing", "financial"],
    "wording_version": "v1",
    "wording_hash": "cd" * 32,
}


def csrf(client: TestClient) -> dict[str, str]:
    """A CSRF header for this client's browser."""
    return {"X-CSRF-Token": client.get("/auth/csrf").json()["csrf_token"]}


def give(client: TestClient, partner: dict[str, str], **extra: Any) -> dict[str, Any]:
    """Record a consent through the partner API; return the answer."""
    response = client.post("/v1/consents", json={**BODY, **extra}, headers=partner)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def people(instance, client):
    """Two people, each with a consent (and a receipt code) from the food bank."""
    partner = partner_bearer(instance, ORG)
    return give(client, partner), give(client, partner, person={"name": "Joe Bloggs", "contact": "joe@example.org"})


def sign_in(client: TestClient, code: str):
    """Sign in with an access code (JSON)."""
    return client.post("/v1/me/sign-in", json={"access_code": code}, headers=csrf(client))


def test_sign_in_with_the_receipt_code(client, people):
    """The receipt code starts a session for that subject and returns a bearer token for API use."""
    alice, _bob = people
    response = sign_in(client, alice["receipt"]["access_code"])
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == alice["subject"]
    assert "dt_session" in response.cookies
    mine = client.get("/v1/me/consents").json()
    assert [c["consent"] for c in mine["consents"]] == [alice["consent"]]
    token = {"Authorization": f"Bearer {response.json()['access_token']}"}
    with TestClient(client.app) as fresh:
        assert fresh.get("/v1/me/consents", headers=token).json()["subject"] == alice["subject"]


def test_my_consents_are_described_in_plain_words(client, people):
    """Each consent comes with its status, the DPV term and a summary a person can read."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    [consent] = client.get("/v1/me/consents").json()["consents"]
    assert consent["status"] == "active"
    assert consent["dpv_status"] == "dpv:ConsentGiven"
    assert "Test Organisation" in consent["summary"] or ORG in consent["summary"]
    assert "social research" in consent["summary"]
    assert [t["label"] for t in consent["categories"]] == ["Housing", "Money and benefits"]


def test_one_individual_never_sees_or_touches_anothers_consent(instance, client, people):
    """Another subject's consent id is "not found" for reading and withdrawing, like a guessed id."""
    alice, bob = people
    headers = bearer(instance, individual_principal(alice["subject"]))
    for consent in (bob["consent"], "con_guessed0000000000000"):
        receipt = client.get(f"/v1/me/receipts/{consent}", headers=headers)
        withdraw = client.post(f"/v1/me/consents/{consent}/withdraw", headers=headers)
        assert receipt.status_code == withdraw.status_code == 404
        assert receipt.json()["detail"] == f"consent {consent} was not found"
    assert client.get(f"/v1/me/receipts/{alice['consent']}", headers=headers).status_code == 200
    bob_view = client.get("/v1/me/consents", headers=bearer(instance, individual_principal(bob["subject"]))).json()
    assert bob_view["consents"][0]["status"] == "active"


def test_a_code_signs_in_only_as_its_own_subject(client, people):
    """Reusing a code always signs in as the code's own subject, never as anyone else."""
    alice, bob = people
    for _ in range(2):
        assert sign_in(client, bob["receipt"]["access_code"]).json()["subject"] == bob["subject"]
    assert [c["consent"] for c in client.get("/v1/me/consents").json()["consents"]] == [bob["consent"]]
    assert client.get(f"/v1/me/receipts/{alice['consent']}").status_code == 404


def test_a_wrong_code_says_nothing_about_anyone(client, people):
    """An unknown code and an erased subject's code get exactly the same answer; a mistyped one a 422."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    assert client.post("/v1/me/erasure", json={"confirm": True}, headers=csrf(client)).status_code == 200
    erased = sign_in(client, alice["receipt"]["access_code"])
    unknown = sign_in(client, access_codes.new_code())
    assert erased.status_code == unknown.status_code == 403
    assert erased.json()["detail"] == unknown.json()["detail"]
    typo = sign_in(
        client,
        alice["receipt"]["access_code"][:-1] + ("A" if not alice["receipt"]["access_code"].endswith("A") else "B"),
    )
    assert typo.status_code == 422


def test_withdraw_my_consent(client, people):
    """Withdrawing is effective at once and idempotent; the list then shows it withdrawn."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    first = client.post(
        f"/v1/me/consents/{alice['consent']}/withdraw", json={"reason": "moved away"}, headers=csrf(client)
    )
    assert first.status_code == 200, first.text
    assert first.json()["withdrawal"]["by"] == "subject"
    again = client.post(f"/v1/me/consents/{alice['consent']}/withdraw", headers=csrf(client))
    assert again.json()["already_withdrawn"] is True
    [consent] = client.get("/v1/me/consents").json()["consents"]
    assert consent["status"] == "withdrawn"
    assert consent["dpv_status"] == "dpv:ConsentWithdrawn"
    assert consent["withdrawal"]["reason"] == "moved away"


def test_erasure_needs_confirmation_and_ends_the_session(instance, client, people):
    """Erasure needs confirm: true; afterwards the vault is unreadable and the session is over."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    refused = client.post("/v1/me/erasure", json={"confirm": False}, headers=csrf(client))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "confirm"
    done = client.post("/v1/me/erasure", json={"confirm": True}, headers=csrf(client))
    assert done.status_code == 200
    assert done.json()["already_erased"] is False
    with instance.db.engine.connect() as conn:
        assert not instance.vault.has_key(conn, alice["subject"])
    assert client.get("/v1/me/consents").status_code == 401
    erased_view = client.get("/v1/me/consents", headers=bearer(instance, individual_principal(alice["subject"])))
    assert {c["status"] for c in erased_view.json()["consents"]} == {"withdrawn"}


def test_state_changes_from_a_browser_need_the_csrf_token(client, people):
    """A cookie-borne withdrawal without the CSRF token is refused."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    assert client.post(f"/v1/me/consents/{alice['consent']}/withdraw").status_code == 403


def test_form_sign_in_redirects_and_a_bad_code_shows_a_page(client, people):
    """The HTML form signs in and redirects; a wrong code re-shows an accessible error page."""
    alice, _ = people
    token = csrf(client)["X-CSRF-Token"]
    ok = client.post(
        "/v1/me/sign-in",
        data={"access_code": alice["receipt"]["access_code"], "csrf_token": token, "next": "//evil.example"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert ok.headers["location"] == "/me"
    bad = client.post("/v1/me/sign-in", data={"access_code": access_codes.new_code(), "csrf_token": token})
    assert bad.status_code == 403
    assert "We could not sign you in" in bad.text
    assert 'role="alert"' in bad.text


def test_sign_in_is_rate_limited_per_address(client, people, monkeypatch):
    """After too many failures from one address, further attempts are refused unchecked with 429."""
    alice, _ = people
    monkeypatch.setattr(auth_service, "ADDRESS_LIMIT", 3)
    for _ in range(3):
        assert sign_in(client, access_codes.new_code()).status_code == 403
    throttled = sign_in(client, alice["receipt"]["access_code"])
    assert throttled.status_code == 429
    assert "Retry-After" in throttled.headers


def test_printable_receipt_page(client, people):
    """The person's receipt page shows what they agreed to and the proof, without the access code."""
    alice, _ = people
    sign_in(client, alice["receipt"]["access_code"])
    page = client.get(f"/v1/me/receipts/{alice['consent']}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "What you agreed to" in page.text
    assert "Social research" in page.text
    assert alice["receipt"]["access_code"] not in page.text
    assert re.search(r"<main id=\"main\"", page.text)
    as_json = client.get(f"/v1/me/receipts/{alice['consent']}").json()
    assert "access_code" not in as_json or as_json["access_code"] is None


def test_me_routes_need_an_individual(instance, client):
    """A partner or the public cannot use the individual's routes."""
    assert client.get("/v1/me/consents").status_code == 401
    assert client.get("/v1/me/consents", headers=partner_bearer(instance, ORG)).status_code == 403
    assert client.post("/v1/me/erasure", json={"confirm": True}).status_code == 401
