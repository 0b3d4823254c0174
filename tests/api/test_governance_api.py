"""Governance over HTTP: a request from submission to revocation, with time moved by freezegun."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time

from api.app import create_app
from api.instance import Instance
from consent.principals import Principal
from tests.factories import admin_principal, bearer, make_person, partner_principal, trustee_principal
from trust.config import GovernanceConfig
from trust.requests import Closer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ORG = "org_riverside_food_bank"

REQUEST = {
    "title": "How many families needed the food bank more than once this winter",
    "purpose": "statistics.aggregate",
    "categories": ["service_use"],
    "operation": "aggregate",
    "duration_days": 90,
    "lay_summary": "We want to count repeat visits to plan winter stock.",
    "public_benefit": "Fuller shelves in January.",
    "five_safes": {
        "people": "Two trained analysts.",
        "projects": "Winter planning only.",
        "settings": "The trust's secure environment.",
        "data": "Visit counts only.",
        "outputs": "Totals of 10 or more.",
    },
    "proportionality": {
        "necessity": "We cannot size stock otherwise.",
        "minimisation": "Monthly totals only.",
        "alternatives": "A survey misses those most in need.",
    },
    "cohort": "Households visiting between November and February",
    "cohort_size": 240,
}


@pytest.fixture
def web(instance: Instance) -> Iterator[TestClient]:
    """An https client of the app (bearer tokens and CSRF cookies behave as in production)."""
    with TestClient(create_app(instance), base_url="https://testserver") as test_client:
        test_client.get("/v1/governance/config")  # build the routes before freezegun swaps datetime
        yield test_client


def auth(instance: Instance, principal: Principal) -> dict[str, str]:
    """A fresh bearer header (tokens are short-lived, and the tests move time)."""
    return bearer(instance, principal)


def ok(response: Any, status: int = 200) -> Any:
    """Assert the status and return the JSON body."""
    assert response.status_code == status, response.text
    return response.json()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_request_lifecycle_over_http(instance: Instance, web: TestClient) -> None:
    """Register, agree, submit, comment, recuse, vote with a casting vote, close, revoke — all over the API."""
    with freeze_time(T0) as frozen:
        admin = admin_principal()
        partner = partner_principal(ORG)
        document = copy.deepcopy(GovernanceConfig.default().to_document())
        document["quorum"]["minimum_votes"] = 2
        ok(web.put("/v1/governance/config", json={"governance": document}, headers=auth(instance, admin)))
        assert "minimum_votes = 2" in web.get("/v1/governance/config?format=toml").text
        ok(
            web.post(
                "/v1/organisations",
                json={"id": ORG, "name": "Riverside Food Bank", "kind": "charity"},
                headers=auth(instance, admin),
            ),
            201,
        )
        people = [make_person(instance) for _ in range(3)]
        for index, person in enumerate(people):
            body = {"person_id": person, "role": "trustee", "is_chair": index == 0}
            ok(web.post("/v1/governance/members", json=body, headers=auth(instance, admin)), 201)
        members = ok(web.get("/v1/governance/members"))
        assert [m["is_chair"] for m in members] == [True, False, False]
        assert all(m["display_name"] for m in members)

        terms = {
            "organisation": ORG,
            "title": "Food bank planning",
            "purposes": ["statistics"],
            "categories": ["service_use"],
            "operations": ["aggregate"],
            "retention_days": 365,
            "geography": ["GB"],
            "valid_from": "2026-12-01",
            "valid_until": "2027-12-01",
        }
        agreement = ok(web.post("/v1/agreements", json=terms, headers=auth(instance, admin)), 201)["payload"]
        shown = ok(web.get(f"/v1/agreements/{agreement['agreement']}"))
        assert shown["status"] == "awaiting_signature"
        sign = {"terms_hash": shown["terms_hash"]}
        ok(web.post(f"/v1/agreements/{shown['agreement']}/signatures", json=sign, headers=auth(instance, partner)), 201)
        assert ok(web.get(f"/v1/agreements/{shown['agreement']}"))["status"] == "in_force"

        submitted = ok(web.post("/v1/requests", json=REQUEST, headers=auth(instance, partner)), 201)["payload"]
        request_id = submitted["request"]
        assert submitted["organisation"] == ORG  # from the token, not the body
        second = ok(web.post("/v1/requests", json=REQUEST, headers=auth(instance, partner)), 201)["payload"]["request"]
        public = ok(web.get(f"/v1/requests/{request_id}"))
        assert public["state"] == "public_notice"
        assert public["decision"] is None
        assert len(ok(web.get("/v1/requests?state=public_notice"))) == 2

        csrf = ok(web.get("/auth/csrf"))["csrf_token"]
        ok(
            web.post(
                f"/v1/requests/{request_id}/comments", json={"text": "Good idea."}, headers={"X-CSRF-Token": csrf}
            ),
            201,
        )
        comments = ok(
            web.get(f"/v1/requests/{request_id}/comments", headers=auth(instance, trustee_principal(people[0])))
        )
        assert [c["text"] for c in comments] == ["Good idea."]
        t1, t2, t3 = (trustee_principal(p) for p in people)
        ok(
            web.post(
                f"/v1/requests/{request_id}/conflicts",
                json={"interest": "I volunteer there."},
                headers=auth(instance, t3),
            ),
            201,
        )
        assert [c["trustee"] for c in ok(web.get(f"/v1/requests/{request_id}/conflicts"))] == [people[2]]
        vote = {"choice": "approve", "reason": "Clear benefit.", "agrees_with_preassessment": True}
        early = web.post(f"/v1/requests/{request_id}/votes", json=vote, headers=auth(instance, t1))
        assert early.status_code == 409
        assert "public notice" in early.json()["detail"]

        frozen.move_to(T0 + 15 * DAY)
        size_before = instance.ledger.size()
        barred = web.post(f"/v1/requests/{request_id}/votes", json=vote, headers=auth(instance, t3))
        assert barred.status_code == 403, barred.text  # the recused trustee may not vote
        assert "recused" in barred.json()["detail"]
        assert instance.ledger.size() == size_before  # and nothing was recorded
        report = ok(web.get(f"/v1/requests/{request_id}/preassessment", headers=auth(instance, t1)))
        assert {f["rule"]: f["outcome"] for f in report["findings"]}["agreement"] == "pass"
        first = ok(web.post(f"/v1/requests/{request_id}/votes", json=vote, headers=auth(instance, t1)), 201)
        assert first["decision"] is None
        against = {"choice": "reject", "reason": "Not convinced.", "agrees_with_preassessment": False}
        second_vote = ok(web.post(f"/v1/requests/{request_id}/votes", json=against, headers=auth(instance, t2)), 201)
        assert second_vote["decision"]["payload"]["outcome"] == "approved"  # tie broken by the chair's vote
        recused = web.post(f"/v1/requests/{request_id}/votes", json=vote, headers=auth(instance, t3))
        assert recused.status_code == 409  # closed already
        decided = ok(web.get(f"/v1/requests/{request_id}"))
        assert decided["state"] == "approved"
        assert decided["decision"]["rule"] == "simple_majority+chair_casting_vote"
        assert (decided["decision"]["tally"]["approve"], decided["decision"]["tally"]["recused"]) == (1, 1)
        standing = ok(web.get(f"/v1/requests/{request_id}/votes", headers=auth(instance, t1)))
        assert [v["agrees_with_preassessment"] for v in standing["votes"]] == [True, False]

        frozen.move_to(T0 + 29 * DAY)
        assert ok(web.get(f"/v1/requests/{second}"))["is_decision_due"] is True
        closed = Closer(instance.ledger, lambda: datetime.now(UTC)).run_once()
        assert [(e.payload["request"], e.payload["reason"]) for e in closed] == [(second, "quorum_not_reached")]
        assert ok(web.get(f"/v1/requests/{second}"))["state"] == "rejected"

        revoked = web.post(
            f"/v1/requests/{request_id}/revocation", json={"reason": "Breach."}, headers=auth(instance, t2)
        )
        ok(revoked)
        assert ok(web.get(f"/v1/requests/{request_id}"))["state"] == "revoked"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_comments_are_limited(instance: Instance, web: TestClient) -> None:
    """Comments are length-limited and rate-limited per address."""
    with freeze_time(T0):
        ok(
            web.post(
                "/v1/organisations",
                json={"id": ORG, "name": "Riverside Food Bank", "kind": "charity"},
                headers=auth(instance, admin_principal()),
            ),
            201,
        )
        request_id = ok(web.post("/v1/requests", json=REQUEST, headers=auth(instance, partner_principal(ORG))), 201)[
            "payload"
        ]["request"]
        headers = {"X-CSRF-Token": ok(web.get("/auth/csrf"))["csrf_token"]}
        url = f"/v1/requests/{request_id}/comments"
        assert web.post(url, json={"text": "x" * 2001}, headers=headers).status_code == 422
        for _ in range(3):
            ok(web.post(url, json={"text": "Please publish the results."}, headers=headers), 201)
        limited = web.post(url, json={"text": "One more."}, headers=headers)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "60"
        size = instance.ledger.size()
        assert web.post(url, json={"text": "And another."}, headers=headers).status_code == 429
        assert instance.ledger.size() == size
