"""Partner API for consent: record (with receipt), withdraw on the person's behalf, vocabularies."""

from __future__ import annotations

import pytest

from consent.principals import Scope
from consent.receipts import verify_receipt
from tests.consent.support import ORG, OTHER_ORG
from tests.factories import bearer, make_organisation, partner_bearer, partner_principal

BODY = {
    "person": {"name": "Tom Price", "contact": "07700 900123"},
    "purposes": ["service_delivery.referral"],
    "categories": ["contact", "housing"],
    "recipients": ["org_northside_housing"],
    "wording_version": "food-bank-2026-03",
    "wording_text": "We would like to refer you to Northside Housing. Do you agree?",
}


@pytest.fixture
def partner(instance):
    """The collecting partner's token."""
    return partner_bearer(instance, ORG)


def test_record_a_consent_and_get_a_verifiable_receipt(instance, client, partner):
    """The answer holds the new subject, the access code and a receipt that verifies with the trust's key."""
    response = client.post("/v1/consents", json=BODY, headers=partner)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["subject"].startswith("sub_")
    assert body["status"] == "active"
    receipt = body["receipt"]
    assert len(receipt["access_code"].replace("-", "")) == 28
    verified = verify_receipt(receipt, instance.ledger.signer.verifier)
    assert verified.entry.payload["organisation"] == ORG
    assert verified.entry.payload["recipients"] == ["org_northside_housing"]
    key = client.get("/v1/ledger/verifier-key").text.strip()
    assert receipt["verifier_key"] == key


def test_the_organisation_comes_from_the_token_never_the_body(client, partner):
    """A body naming an organisation is refused: the collecting partner is whoever holds the token."""
    response = client.post("/v1/consents", json={**BODY, "organisation": OTHER_ORG}, headers=partner)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "organisation"


def test_unknown_codes_are_a_422_naming_the_closest_codes(client, partner):
    """An unknown category is a 422 problem naming the code and the closest known ones."""
    response = client.post("/v1/consents", json={**BODY, "categories": ["housin"]}, headers=partner)
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["code"] == "housin"
    assert "housing" in problem["errors"][0]["closest"]
    assert "did you mean 'housing'" in problem["detail"]


def test_a_partner_without_consents_write_is_refused(instance, client):
    """A partner token without the consents:write scope cannot record or withdraw."""
    make_organisation(instance, ORG)
    headers = bearer(instance, partner_principal(ORG, scopes=[Scope.CHECK]))
    response = client.post("/v1/consents", json=BODY, headers=headers)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "consents:write"
    assert client.post("/v1/consents/con_x/withdraw", headers=headers).status_code == 403


def test_the_public_is_asked_to_sign_in(client):
    """Without credentials, recording a consent is a 401."""
    assert client.post("/v1/consents", json=BODY).status_code == 401


def test_withdraw_on_behalf(instance, client, partner):
    """The collecting partner withdraws on the person's behalf; repeating it changes nothing."""
    consent = client.post("/v1/consents", json=BODY, headers=partner).json()["consent"]
    first = client.post(f"/v1/consents/{consent}/withdraw", json={"reason": "asked by phone"}, headers=partner)
    assert first.status_code == 200, first.text
    assert first.json()["withdrawal"]["by"] == "organisation"
    assert first.json()["already_withdrawn"] is False
    size = instance.ledger.size()
    again = client.post(f"/v1/consents/{consent}/withdraw", headers=partner)
    assert again.json()["already_withdrawn"] is True
    assert again.json()["withdrawal"] == first.json()["withdrawal"]
    assert instance.ledger.size() == size


def test_another_partner_cannot_withdraw(instance, client, partner):
    """A partner that did not collect the consent gets the same 404 as for a consent that does not exist."""
    consent = client.post("/v1/consents", json=BODY, headers=partner).json()["consent"]
    other = partner_bearer(instance, OTHER_ORG)
    theirs = client.post(f"/v1/consents/{consent}/withdraw", headers=other)
    missing = client.post("/v1/consents/con_nosuchconsent/withdraw", headers=other)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(consent, "X") == missing.json()["detail"].replace("con_nosuchconsent", "X")


def test_printable_receipt_for_the_person(client, partner):
    """Asked for HTML, the partner gets a printable receipt page with the access code, in British English."""
    response = client.post("/v1/consents?format=html", json=BODY, headers=partner)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en-GB">' in html
    assert "Your access code" in html
    assert "Referral to another service" in html
    assert "<script" not in html
    assert '<link rel="stylesheet" href="/static/style.css">' in html


def test_vocabularies_are_public(client):
    """Anyone can read the purposes and categories in force, with labels and special marks."""
    response = client.get("/v1/vocabularies")
    assert response.status_code == 200
    body = response.json()
    categories = {t["code"]: t for t in body["categories"]}
    assert categories["health.mental"]["special"] is True
    assert categories["housing"]["label"] == "Housing"
    assert {t["code"] for t in body["purposes"]} >= {"research", "research.health", "statistics.aggregate"}
    assert body["adopted_seq"] is None  # nothing recorded yet: the shipped default applies


def test_stylesheet_is_served_by_the_app(client):
    """The one stylesheet comes from the app itself, not a CDN."""
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
