"""Partner systems get tokens with a real, independent OAuth 2.0 client (Authlib's httpx client).

The client talks to the app over an in-process ASGI transport, exactly as it would
over the network: HTTP Basic for ``client_secret_basic``, an RFC 7523 assertion
signed with the partner's own key for ``private_key_jwt``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

from api.app import create_app
from api.instance import Instance
from tests.event_loop import run_on_new_loop
from tests.factories import admin_principal, bearer, make_client, make_organisation

BASE = "https://trust.test"
TOKEN_URL = BASE + "/oauth/token"


@pytest.fixture
def app(instance: Instance) -> FastAPI:
    """The full app, with the partner organisation registered."""
    make_organisation(instance, "org_riverside_food_bank", name="Riverside Food Bank")
    return create_app(instance)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def run(coro: Any) -> Any:
    """Run one coroutine to completion (each test owns its event loop)."""
    return run_on_new_loop(coro)


def oauth_client(app: FastAPI, client_id: str, credential: Any, method: str, **kwargs: Any) -> AsyncOAuth2Client:
    """Authlib's own OAuth 2.0 client, wired to the app in-process."""
    client = AsyncOAuth2Client(
        client_id,
        credential,
        token_endpoint_auth_method=method,
        transport=httpx2.ASGITransport(app=app),
        base_url=BASE,
        **kwargs,
    )
    if method == "private_key_jwt":
        alg = "Ed25519" if isinstance(credential, OKPKey) else "ES256"
        client.register_client_auth_method(PrivateKeyJWT(TOKEN_URL, alg=alg))
    return client


async def fetch_and_call(client: AsyncOAuth2Client, **params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Get a token, then call an API endpoint with it."""
    async with client:
        token = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", **params)
        response = await client.get("/auth/session")
        response.raise_for_status()
        return dict(token), response.json()


def test_client_secret_basic_gets_a_token_and_calls_the_api(instance: Instance, app: FastAPI) -> None:
    """client_secret_basic: Authlib's client gets a Bearer JWT and the API sees the partner principal."""
    client_id, secret = make_client(
        instance, organisation="org_riverside_food_bank", scopes=["check", "consents:write"]
    )
    token, me = run(fetch_and_call(oauth_client(app, client_id, secret, "client_secret_basic")))
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 900
    assert token["scope"] == "check consents:write"
    assert me == {
        "id": client_id,
        "roles": ["partner"],
        "display_name": None,
        "organisation": "org_riverside_food_bank",
        "subject": None,
        "scopes": ["check", "consents:write"],
    }


@pytest.mark.parametrize("curve", ["Ed25519", "P-256"])
def test_private_key_jwt_gets_a_token_and_calls_the_api(instance: Instance, app: FastAPI, curve: str) -> None:
    """private_key_jwt (RFC 7523) with the partner's registered Ed25519 or EC P-256 key."""
    key: OKPKey | ECKey = (
        OKPKey.generate_key("Ed25519", private=True)
        if curve == "Ed25519"
        else ECKey.generate_key("P-256", private=True)
    )
    public = key.as_dict(private=False)
    client_id, secret = make_client(
        instance, organisation="org_riverside_food_bank", scopes=["check"], method="private_key_jwt", public_jwk=public
    )
    assert secret is None
    token, me = run(fetch_and_call(oauth_client(app, client_id, key, "private_key_jwt")))
    assert me["id"] == client_id
    assert me["scopes"] == ["check"]
    assert token["scope"] == "check"


def test_a_client_can_ask_for_fewer_scopes_but_not_more(instance: Instance, app: FastAPI) -> None:
    """Asking for a subset narrows the token; asking for a scope never granted is invalid_scope."""
    client_id, secret = make_client(
        instance, organisation="org_riverside_food_bank", scopes=["check", "consents:write"]
    )
    token, me = run(fetch_and_call(oauth_client(app, client_id, secret, "client_secret_basic"), scope="check"))
    assert me["scopes"] == ["check"]
    assert token["scope"] == "check"
    with pytest.raises(OAuthError, match="invalid_scope"):
        run(fetch_and_call(oauth_client(app, client_id, secret, "client_secret_basic"), scope="agreements:sign"))


def test_wrong_secret_and_wrong_key_are_invalid_client(instance: Instance, app: FastAPI) -> None:
    """A wrong secret, or an assertion signed with a key other than the registered one, gets no token."""
    client_id, _ = make_client(instance, organisation="org_riverside_food_bank", scopes=["check"])
    with pytest.raises(OAuthError, match="invalid_client"):
        run(fetch_and_call(oauth_client(app, client_id, "dts_not-the-secret", "client_secret_basic")))
    registered = OKPKey.generate_key("Ed25519", private=True)
    key_client, _ = make_client(
        instance,
        organisation="org_riverside_food_bank",
        scopes=["check"],
        method="private_key_jwt",
        public_jwk=registered.as_dict(private=False),
    )
    impostor = OKPKey.generate_key("Ed25519", private=True)
    with pytest.raises(OAuthError, match="invalid_client"):
        run(fetch_and_call(oauth_client(app, key_client, impostor, "private_key_jwt")))
    with pytest.raises(OAuthError, match="invalid_client"):  # a key client cannot fall back to a secret
        run(fetch_and_call(oauth_client(app, key_client, "anything", "client_secret_basic")))


def _assertion(key: OKPKey, client_id: str, *, aud: str = TOKEN_URL, jti: str = "jti-1", exp: int | None = None) -> str:
    import time  # noqa: PLC0415

    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": exp or now + 60, "jti": jti}
    return jwt.encode({"alg": "Ed25519"}, claims, key, algorithms=["Ed25519"])


def _post_assertion(app: FastAPI, assertion: str) -> Any:
    with TestClient(app, base_url=BASE) as client:
        return client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )


def test_client_assertions_cannot_be_replayed_or_misdirected(instance: Instance, app: FastAPI) -> None:
    """An assertion works once; one for another audience, or expired, is refused."""
    key = OKPKey.generate_key("Ed25519", private=True)
    client_id, _ = make_client(
        instance,
        organisation="org_riverside_food_bank",
        scopes=["check"],
        method="private_key_jwt",
        public_jwk=key.as_dict(private=False),
    )
    once = _assertion(key, client_id)
    assert _post_assertion(app, once).status_code == 200
    replay = _post_assertion(app, once)
    assert replay.status_code in {400, 401}
    assert replay.json()["error"] == "invalid_client"
    elsewhere = _post_assertion(app, _assertion(key, client_id, aud="https://other.example/token", jti="jti-2"))
    assert elsewhere.json()["error"] == "invalid_client"
    expired = _post_assertion(app, _assertion(key, client_id, jti="jti-3", exp=1_000_000_000))
    assert expired.json()["error"] == "invalid_client"


def test_token_endpoint_refuses_plain_http_off_loopback(instance: Instance, app: FastAPI) -> None:
    """Over plain http (not loopback) the token endpoint refuses, as OAuth 2.0 requires TLS."""
    client_id, secret = make_client(instance, organisation="org_riverside_food_bank", scopes=["check"])
    with TestClient(app, base_url="http://trust.test") as client:
        response = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret or "")
        )
    assert response.status_code == 400
    assert response.json()["error"] == "insecure_transport"


def test_jwks_and_metadata_let_anyone_verify_the_tokens(instance: Instance, app: FastAPI) -> None:
    """The JWKS verifies an issued token, and the RFC 8414 metadata describes the endpoint and methods."""
    client_id, secret = make_client(instance, organisation="org_riverside_food_bank", scopes=["check"])
    token, _ = run(fetch_and_call(oauth_client(app, client_id, secret, "client_secret_basic")))
    with TestClient(app, base_url=BASE) as client:
        jwks = client.get("/.well-known/jwks.json").json()
        metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert all("d" not in key for key in jwks["keys"])
    head, body, signature = token["access_token"].split(".")
    assert json.loads(_b64(head)) == {"alg": "EdDSA", "typ": "at+jwt", "kid": jwks["keys"][0]["kid"]}
    # verify with nothing but the published key and the cryptography library
    public = Ed25519PublicKey.from_public_bytes(_b64(jwks["keys"][0]["x"]))
    public.verify(_b64(signature), f"{head}.{body}".encode())
    claims = json.loads(_b64(body))
    assert claims["iss"] == metadata["issuer"]
    assert claims["aud"] == "datatrust-api"
    assert claims["exp"] - claims["iat"] == 900
    assert metadata["token_endpoint"] == TOKEN_URL
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "private_key_jwt"}
    model = AuthorizationServerMetadata(metadata)
    for check in ("issuer", "token_endpoint", "jwks_uri", "scopes_supported", "grant_types_supported"):
        getattr(model, f"validate_{check}")()


@pytest.fixture
def admin_api(instance: Instance, app: FastAPI) -> Iterator[TestClient]:
    """An admin's API client (bearer token)."""
    with TestClient(app, base_url=BASE, headers=bearer(instance, admin_principal("person_root"))) as client:
        yield client


def test_admin_api_registers_rotates_and_suspends_clients(
    instance: Instance, app: FastAPI, admin_api: TestClient
) -> None:
    """An admin registers a client (secret shown once), rotates it away, and suspends it, all on the ledger."""
    created = admin_api.post(
        "/v1/admin/clients",
        json={"organisation": "org_riverside_food_bank", "name": "Case system", "scopes": ["check"]},
    )
    assert created.status_code == 201
    client_id, old = created.json()["client_id"], created.json()["client_secret"]
    listed = admin_api.get("/v1/admin/clients").json()
    assert [c["client_id"] for c in listed] == [client_id]
    assert old not in json.dumps(listed)
    entry = instance.ledger.get(instance.ledger.size() - 1)
    assert (entry.kind, entry.actor) == ("client.registered", "person_root")
    assert old.encode() not in entry.body

    rotated = admin_api.post(f"/v1/admin/clients/{client_id}/rotate", json={})
    new = rotated.json()["client_secret"]
    assert new != old
    with pytest.raises(OAuthError, match="invalid_client"):
        run(fetch_and_call(oauth_client(app, client_id, old, "client_secret_basic")))
    run(fetch_and_call(oauth_client(app, client_id, new, "client_secret_basic")))

    suspended = admin_api.post(f"/v1/admin/clients/{client_id}/suspend", json={"reason": "contract ended"})
    assert suspended.json()["is_suspended"] is True
    with pytest.raises(OAuthError, match=r"invalid_client|unauthorized_client"):
        run(fetch_and_call(oauth_client(app, client_id, new, "client_secret_basic")))
