"""Access tokens that must not work: expired, early, foreign, forged, confused, under-scoped, or revoked."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OKPKey

from api.app import create_app
from api.auth import keys as auth_keys_module
from api.auth.keys import auth_keys
from api.auth.principal import _token_principal
from api.auth.tokens import LEEWAY_SECONDS, TokenRegistry, decode_access_token, issue_access_token
from api.authz import POLICY, authorise
from api.instance import Instance, initialise
from api.problems import UnauthorisedError
from consent.principals import Principal, Role
from ledger.errors import ForbiddenError
from tests.api.test_auth_matrix import concrete, endpoints
from tests.factories import admin_principal, make_client, make_organisation, partner_principal
from trust.identity import rotate_client_secret, suspend_client

BASE = "https://trust.test"
ORG = "org_riverside_food_bank"
T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)  # a whole second, so the arithmetic below is exact


@pytest.fixture
def api(instance: Instance) -> Iterator[TestClient]:
    """An API client (no cookies kept between calls matter here)."""
    make_organisation(instance, ORG)
    with TestClient(create_app(instance), base_url=BASE) as client:
        yield client


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def valid_claims(instance: Instance) -> dict[str, Any]:
    """The claims of a token this trust just issued to an admin."""
    token = issue_access_token(instance, admin_principal(), now=datetime.now(UTC))
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built by hand (for tokens no honest library would make)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def whoami(api: TestClient, token: str) -> Any:
    """Call the API with *token*."""
    return api.get("/auth/session", headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: Any, words: str) -> None:
    """A 401 problem+json with a Bearer challenge whose detail contains *words*."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert words in response.json()["detail"]


def test_a_valid_token_works(instance: Instance, api: TestClient) -> None:
    """The baseline: a fresh token of this trust is accepted."""
    token = issue_access_token(instance, admin_principal(), now=datetime.now(UTC))
    assert whoami(api, token).json()["roles"] == ["admin"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"exp_offset": -3600}, "expired"),  # expired an hour ago
        ({"now_offset": 3600}, "not valid"),  # issued for an hour from now: nbf and iat in the future
        ({"iss": "https://another-trust.example"}, "iss"),  # someone else's issuer
        ({"audience": "another-api"}, "aud"),  # meant for another API
    ],
)
def test_time_issuer_and_audience_are_checked(
    instance: Instance, api: TestClient, change: dict[str, Any], words: str
) -> None:
    """Expired, not-yet-valid, wrong-issuer and wrong-audience tokens get 401."""
    now = datetime.now(UTC) + timedelta(seconds=change.get("now_offset", 0))
    ttl = 900 if "exp_offset" not in change else 60
    if "exp_offset" in change:
        now += timedelta(seconds=change["exp_offset"])
    extra = {"iss": change["iss"]} if "iss" in change else None
    token = issue_access_token(
        instance,
        admin_principal(),
        now=now,
        ttl_seconds=ttl,
        audience=change.get("audience", "datatrust-api"),
        extra_claims=extra,
    )
    assert_refused(whoami(api, token), words)


def test_token_signed_with_another_key_is_refused(instance: Instance, api: TestClient) -> None:
    """Same header, same claims, another Ed25519 key: the signature does not verify."""
    other = OKPKey.generate_key("Ed25519", private=True)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": auth_keys(instance.data_dir).kid}
    token = jwt.encode(header, valid_claims(instance), other, registry=TokenRegistry(algorithms=["EdDSA"]))
    assert_refused(whoami(api, token), "signature")


def test_alg_none_is_refused(instance: Instance, api: TestClient) -> None:
    """An unsigned token (``alg: none``) is refused before its claims are read."""
    header = {"alg": "none", "typ": "at+jwt", "kid": auth_keys(instance.data_dir).kid}
    assert_refused(whoami(api, unsigned(header, valid_claims(instance))), "Algorithm of 'none'")


def _public_key_forms(instance: Instance) -> list[bytes]:
    public = auth_keys(instance.data_dir).public_jwks["keys"][0]
    raw = base64.urlsafe_b64decode(public["x"] + "==")
    return [raw, public["x"].encode(), json.dumps(public).encode()]


def test_hs256_signed_with_the_public_key_is_refused(instance: Instance, api: TestClient) -> None:
    """Algorithm confusion: an HMAC over the token keyed with any form of our public key is refused."""
    claims = valid_claims(instance)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": auth_keys(instance.data_dir).kid}
    for secret in _public_key_forms(instance):
        head = b64(json.dumps(header).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        assert_refused(whoami(api, f"{head}.{body}.{b64(mac)}"), "Algorithm of 'HS256'")


def test_a_jwt_that_is_not_an_access_token_is_refused(instance: Instance, api: TestClient) -> None:
    """A JWT signed with our key but typed as something else (``typ: JWT``) is not an access token."""
    keys = auth_keys(instance.data_dir)
    token = jwt.encode(
        {"alg": "EdDSA", "typ": "JWT", "kid": keys.kid},
        valid_claims(instance),
        keys.signing_key,
        registry=TokenRegistry(algorithms=["EdDSA"]),
    )
    assert_refused(whoami(api, token), "not an access token")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",  # garbage
        "Bearer a.b.c",  # three parts, none of them JSON
        "Basic YWRtaW46YWRtaW4=",  # another scheme
        "Bearer ",  # empty
    ],
)
def test_malformed_credentials_are_refused(api: TestClient, authorization: str) -> None:
    """Anything in Authorization but a valid Bearer token is 401, never a silent fallback to the public."""
    response = api.get("/auth/session", headers={"Authorization": authorization})
    assert response.status_code == 401


def test_missing_scope_is_refused_with_the_scope_named(instance: Instance, api: TestClient) -> None:
    """A partner token without the route's scope gets 403 naming the scope; with it, the policy lets it through."""
    with pytest.raises(ForbiddenError) as refused:
        authorise(partner_principal(ORG, []), "checks.create")
    assert refused.value.extensions["required_scope"] == "check"
    authorise(partner_principal(ORG, ["check"]), "checks.create")
    scoped = [
        e for e in endpoints(api.app) if e.action and POLICY[e.action].scope and Role.PARTNER in POLICY[e.action].roles
    ]
    assert scoped, "no route needs a scope"
    for endpoint in scoped:
        rule = POLICY[endpoint.action or ""]
        token = issue_access_token(instance, partner_principal(ORG, []), now=datetime.now(UTC))
        response = api.request(
            endpoint.method, concrete(endpoint), json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403, endpoint
        assert response.json()["required_scope"] == str(rule.scope)


def _client_token(instance: Instance, api: TestClient) -> tuple[str, str, str]:
    client_id, secret = make_client(instance, organisation=ORG, scopes=["check"])
    assert secret is not None
    response = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return client_id, secret, response.json()["access_token"]


def test_suspended_client_gets_no_token_and_its_tokens_stop_working(instance: Instance, api: TestClient) -> None:
    """After client.suspended, the token it holds is refused and the token endpoint gives no new one."""
    client_id, secret, token = _client_token(instance, api)
    assert whoami(api, token).json()["id"] == client_id
    suspend_client(instance.ledger, client_id=client_id, reason="key leaked", actor="trust", now=datetime.now(UTC))
    assert_refused(whoami(api, token), f"client {client_id} is suspended")
    again = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert again.status_code in {400, 401}
    assert "access_token" not in again.json()


def test_suspended_organisation_stops_its_clients(instance: Instance, api: TestClient) -> None:
    """After org.suspended, its clients' tokens are refused and no new token is issued."""
    from trust.organisations import suspend_organisation  # noqa: PLC0415

    client_id, secret, token = _client_token(instance, api)
    suspend_organisation(instance.ledger, org_id=ORG, reason="misconduct", actor="trust", now=datetime.now(UTC))
    assert_refused(whoami(api, token), f"organisation {ORG}")
    again = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert again.json()["error"] == "unauthorized_client"
    assert ORG in again.json()["error_description"]
    staff = issue_access_token(instance, Principal("person_x", frozenset({Role.PARTNER}), ORG), now=datetime.now(UTC))
    assert_refused(whoami(api, staff), f"organisation {ORG}")


def test_rotated_away_secret_and_its_tokens_stop_working(instance: Instance, api: TestClient) -> None:
    """After rotation the old secret gets no token and tokens issued under it are refused."""
    client_id, old_secret, old_token = _client_token(instance, api)
    new_secret = rotate_client_secret(instance.ledger, client_id=client_id, actor="trust", now=datetime.now(UTC))
    assert new_secret is not None
    refused = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, old_secret))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert_refused(whoami(api, old_token), "rotated")
    fresh = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, new_secret))
    assert whoami(api, fresh.json()["access_token"]).json()["id"] == client_id


def test_unknown_role_claim_is_refused(instance: Instance, api: TestClient) -> None:
    """A token naming a role the trust does not have is refused."""
    token = issue_access_token(instance, admin_principal(), now=datetime.now(UTC), extra_claims={"roles": ["root"]})
    assert_refused(whoami(api, token), "unknown role")


def test_a_verified_token_is_remembered_only_for_its_exact_bytes(instance: Instance, api: TestClient) -> None:
    """Signatures are checked once per token; a lookalike with one changed signature byte is still refused."""
    token = issue_access_token(instance, admin_principal(), now=datetime.now(UTC))
    assert whoami(api, token).status_code == 200  # verified and remembered
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[7] ^= 0x01
    assert_refused(whoami(api, f"{head}.{body}.{b64(bytes(raw))}"), "signature")
    assert whoami(api, token).status_code == 200


def test_a_token_remembered_by_one_trust_is_refused_by_another(
    instance: Instance, api: TestClient, tmp_path: Path
) -> None:
    """Two trusts in one process: a token verified by the first means nothing to the second."""
    token = issue_access_token(instance, admin_principal(), now=datetime.now(UTC))
    assert whoami(api, token).status_code == 200
    other = initialise(tmp_path / "other", name="Other Trust", mission="Testing.", clock=lambda: datetime.now(UTC))
    try:
        with TestClient(create_app(other), base_url=BASE) as other_api:
            assert_refused(whoami(other_api, token), "signature")
    finally:
        other.close()


def test_a_remembered_token_still_expires(instance: Instance) -> None:
    """Remembering the signature does not remember the claims: expiry is checked on every use."""
    issued = datetime.now(UTC)
    token = issue_access_token(instance, admin_principal(), now=issued, ttl_seconds=60)
    assert decode_access_token(instance, token, now=issued)["sub"] == "person_admin"
    with pytest.raises(UnauthorisedError, match="expired"):
        decode_access_token(instance, token, now=issued + timedelta(seconds=60 + LEEWAY_SECONDS + 1))


def test_a_remembered_token_is_refused_from_the_second_it_expires(instance: Instance) -> None:
    """Accepted and remembered, a token holds until exp + leeway and is refused from then on, as if never seen."""
    token = issue_access_token(instance, admin_principal(), now=T0, ttl_seconds=60)
    expires = T0 + timedelta(seconds=60 + LEEWAY_SECONDS)
    assert decode_access_token(instance, token, now=T0)["sub"] == "person_admin"  # accepted and remembered
    last_moment = expires - timedelta(microseconds=1)
    assert decode_access_token(instance, token, now=last_moment)["sub"] == "person_admin"
    assert _token_principal(instance, token, now=last_moment)[0].id == "person_admin"
    for ask in (decode_access_token, _token_principal):
        with pytest.raises(UnauthorisedError) as refused:
            ask(instance, token, now=expires)
        assert refused.value.detail == "the access token has expired"


@pytest.mark.parametrize(
    ("later", "words"),
    [("nbf", "The token is not yet valid"), ("iat", "The token was issued in the future")],
)
def test_a_remembered_token_is_refused_before_it_is_valid(instance: Instance, later: str, words: str) -> None:
    """Remembered at a moment it holds, a token is refused at an earlier moment before its nbf or iat, less the leeway."""
    starts = T0 + timedelta(seconds=100)
    token = issue_access_token(instance, admin_principal(), now=T0, extra_claims={later: int(starts.timestamp())})
    assert decode_access_token(instance, token, now=starts)["sub"] == "person_admin"  # accepted and remembered
    first_moment = starts - timedelta(seconds=LEEWAY_SECONDS)
    assert decode_access_token(instance, token, now=first_moment)["sub"] == "person_admin"
    too_early = first_moment - timedelta(microseconds=1)
    for ask in (decode_access_token, _token_principal):
        with pytest.raises(UnauthorisedError) as refused:
            ask(instance, token, now=too_early)
        assert refused.value.detail == f"the access token is not valid: {words}"


def test_a_token_remembered_for_one_audience_is_refused_for_another(instance: Instance) -> None:
    """Accepted for one audience, a token is still refused when validated for another, either way round."""
    ours = issue_access_token(instance, admin_principal(), now=T0)
    assert decode_access_token(instance, ours, now=T0)["aud"] == "datatrust-api"
    with pytest.raises(UnauthorisedError, match="Invalid claim: 'aud'"):
        decode_access_token(instance, ours, now=T0, audience="another-api")
    theirs = issue_access_token(instance, admin_principal(), now=T0, audience="another-api")
    assert decode_access_token(instance, theirs, now=T0, audience="another-api")["aud"] == "another-api"
    for ask in (decode_access_token, _token_principal):
        with pytest.raises(UnauthorisedError, match="Invalid claim: 'aud'"):
            ask(instance, theirs, now=T0)


def test_a_token_remembered_under_one_issuer_is_refused_once_the_issuer_changes(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trust that changes its issuer no longer accepts the tokens it accepted under the old one."""
    token = issue_access_token(instance, admin_principal(), now=T0)
    assert decode_access_token(instance, token, now=T0)["sub"] == "person_admin"  # accepted and remembered
    assert _token_principal(instance, token, now=T0)[0].id == "person_admin"
    monkeypatch.setenv("DATATRUST_ISSUER", "https://renamed-trust.example")
    monkeypatch.setattr(auth_keys_module, "_recent", {})  # forget the settings read within the last second
    for ask in (decode_access_token, _token_principal):
        with pytest.raises(UnauthorisedError, match="Invalid claim: 'iss'"):
            ask(instance, token, now=T0)


def test_changing_the_returned_claims_changes_nothing_remembered(instance: Instance) -> None:
    """The claims returned are the caller's own: changing them, nested lists too, does not reach the next caller."""
    partner = partner_principal(ORG, ["check"])
    token = issue_access_token(instance, partner, now=T0)
    claims = decode_access_token(instance, token, now=T0)
    expected = copy.deepcopy(claims)
    claims["roles"].append("admin")
    claims["sub"] = "person_mallory"
    claims["scope"] += " consents:write"
    assert decode_access_token(instance, token, now=T0) == expected
    assert _token_principal(instance, token, now=T0)[0] == partner


def test_a_remembered_tokens_principal_is_built_once(instance: Instance) -> None:
    """The same remembered token gives the very same (immutable) principal; another token, its own."""
    token = issue_access_token(instance, partner_principal(ORG, ["check"]), now=T0)
    first, key = _token_principal(instance, token, now=T0)
    again, same_key = _token_principal(instance, token, now=T0 + timedelta(seconds=1))
    assert again is first
    assert same_key == key == (first.id, None, ORG)


def test_a_token_remembered_by_one_trust_is_refused_by_another_of_the_same_name(
    instance: Instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trusts with one issuer and audience in one process: only the key that signed the token accepts it."""
    monkeypatch.setenv("DATATRUST_ISSUER", "https://one-name.example")
    monkeypatch.setattr(auth_keys_module, "_recent", {})  # forget the settings read within the last second
    token = issue_access_token(instance, admin_principal(), now=T0)
    assert decode_access_token(instance, token, now=T0)["iss"] == "https://one-name.example"
    other = initialise(tmp_path / "other", name="Other Trust", mission="Testing.", clock=lambda: datetime.now(UTC))
    try:
        for ask in (decode_access_token, _token_principal):
            with pytest.raises(UnauthorisedError, match="signature"):
                ask(other, token, now=T0)
    finally:
        other.close()
