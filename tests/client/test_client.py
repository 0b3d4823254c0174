"""DatatrustClient against the real app: token, check, proofs, rollback detection, errors."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from fastapi.testclient import TestClient

from api.instance import Instance
from datatrust_client import ApiError, CheckDecision, DatatrustClient, ProofError, TokenError
from tests.factories import make_client, make_organisation
from tests.webhooks.helpers import as_httpx

BASE = "https://testserver"  # the token endpoint insists on https


@pytest.fixture
def trust(client: TestClient, instance: Instance) -> Iterator[DatatrustClient]:
    """A partner client of the test trust, registered with client_secret_basic."""
    make_organisation(instance, "org_partner", name="Partner")
    client_id, secret = make_client(instance, organisation="org_partner")
    assert secret is not None
    with DatatrustClient(BASE, client_id=client_id, client_secret=secret, http=as_httpx(client)) as partner:
        yield partner


def _ask(trust: DatatrustClient) -> CheckDecision:
    return trust.check(
        purpose="research",
        data_categories=["housing"],
        operation="aggregate",
        request="req_unknown",
        subjects=["sub_abcdefgh1234"],
        cohort_size=50,
    )


def test_check_is_answered_recorded_and_provable(trust: DatatrustClient) -> None:
    """The check call returns an explained decision whose id is an entry provably under a signed checkpoint."""
    answer = _ask(trust)
    assert answer.decision == "deny"  # no agreement, no approved request: the trust says why
    assert answer.reasons
    assert answer.decision_id is not None
    proof = trust.verify_decision(answer.decision_id)
    assert proof.entry["kind"] == "check.decided"
    assert proof.checkpoint.size > answer.decision_id


def test_token_is_fetched_once_and_reused(trust: DatatrustClient) -> None:
    """Two calls share one access token."""
    first = trust.token()
    trust.request("GET", "/v1/webhooks")
    assert trust.token() == first


def test_wrong_secret_is_a_token_error(client: TestClient, instance: Instance) -> None:
    """A refused client_credentials grant raises TokenError carrying the status."""
    make_organisation(instance, "org_partner")
    client_id, _ = make_client(instance, organisation="org_partner")
    with (
        DatatrustClient(BASE, client_id=client_id, client_secret="not-the-secret", http=as_httpx(client)) as partner,
        pytest.raises(TokenError) as caught,
    ):
        partner.token()
    assert caught.value.status in {400, 401}


def test_api_problems_become_api_errors(trust: DatatrustClient) -> None:
    """An RFC 9457 problem answer raises ApiError with its status and detail."""
    with pytest.raises(ApiError) as caught:
        trust.request("GET", "/v1/webhooks/whk_doesnotexist")
    assert caught.value.status == 404
    assert "not found" in caught.value.detail


def test_checkpoints_must_extend_the_one_kept(trust: DatatrustClient, instance: Instance) -> None:
    """A later checkpoint is proven to extend a kept one; a kept checkpoint the ledger no longer extends is caught."""
    kept = trust.checkpoint()
    _ask(trust)  # the ledger grows by one recorded decision
    instance.ledger.sign_checkpoint()
    later = trust.checkpoint(previous=kept)
    assert later.size > kept.size
    forged = replace(kept, root=bytes(32))  # what a rolled-back or rewritten ledger would not extend
    with pytest.raises(ProofError):
        trust.checkpoint(previous=forged)
    with pytest.raises(ProofError, match="shrank"):
        trust.checkpoint(previous=replace(later, size=later.size + 5))


def test_verify_decision_refuses_other_entries(trust: DatatrustClient) -> None:
    """Entry 0 (trust.configured) is not a check decision, so verify_decision refuses it."""
    with pytest.raises(ProofError, match="not a check decision"):
        trust.verify_decision(0)


def test_client_secret_basic_form_encodes_credentials() -> None:
    """RFC 6749 §2.3.1: id and secret are form-encoded before Basic; the grant is client_credentials."""
    seen: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "t0k", "token_type": "Bearer", "expires_in": 900})

    http = httpx.Client(transport=httpx.MockTransport(token_endpoint))
    with DatatrustClient("https://trust.example", client_id="client_a b", client_secret="s:e/c", http=http) as partner:
        assert partner.token() == "t0k"
    (request,) = seen
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "client_a+b:s%3Ae%2Fc"
    assert urllib.parse.parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}
    assert str(request.url) == "https://trust.example/oauth/token"
    http.close()
