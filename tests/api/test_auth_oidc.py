"""OpenID Connect sign-in against a small OpenID provider served in-process by Authlib.

The provider below is built from Authlib's own server classes (authorization code
grant, the OpenID Connect extension and PKCE) and serves discovery, JWKS, the
authorization endpoint and the token endpoint. The trust reaches it over an
in-process ASGI transport; the "browser" is a TestClient that carries the trust's
cookies from the login redirect to the callback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx2
import pytest
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.app import create_app
from api.auth.oauth import StarletteOAuth2Request
from api.instance import Instance
from consent.principals import Role
from tests.factories import make_person

OP = "https://op.test"
TRUST = "https://trust.test"
CALLBACK = TRUST + "/auth/oidc/callback"


@dataclass
class Provider:
    """The provider's state: its key, registered client, users, issued codes, and test switches."""

    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True, auto_kid=True))
    email: str = "amira.haddad@riverside.example"
    email_verified: bool = True
    wrong_nonce: bool = False
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)


class _OpClient(ClientMixin):  # type: ignore[misc]
    """The trust, as registered at the provider."""

    client_id = "datatrust"
    client_secret = "op-client-secret"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return CALLBACK

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "email", "profile"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == CALLBACK

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" or endpoint != "token"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class _Code:
    """An issued authorization code."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.code_challenge = data["code_challenge"]
        self.code_challenge_method = data["code_challenge_method"]

    def get_redirect_uri(self) -> str:
        return str(self.data["redirect_uri"])

    def get_scope(self) -> str:
        return str(self.data["scope"])

    def get_nonce(self) -> str | None:
        nonce: str | None = self.data["nonce"]
        return nonce

    def get_auth_time(self) -> int:
        return int(self.data["auth_time"])

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _StrictPkce(CodeChallenge):  # type: ignore[misc]
    """PKCE required of every client, confidential ones included (RFC 9700 §2.1.1)."""

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge")
        super().validate_code_challenge(grant, redirect_uri)


def build_provider(state: Provider) -> Starlette:
    """An OpenID provider on Authlib's server classes."""

    class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        def save_authorization_code(self, code: str, request: Any) -> None:
            data = request.payload.data
            state.codes[code] = {
                "redirect_uri": data.get("redirect_uri"),
                "scope": data.get("scope"),
                "nonce": data.get("nonce"),
                "code_challenge": data.get("code_challenge"),
                "code_challenge_method": data.get("code_challenge_method"),
                "auth_time": int(time.time()),
            }

        def query_authorization_code(self, code: str, client: Any) -> _Code | None:
            del client
            found = state.codes.get(code)
            return None if found is None else _Code(found)

        def delete_authorization_code(self, authorization_code: _Code) -> None:
            for key, value in list(state.codes.items()):
                if value is authorization_code.data:
                    del state.codes[key]

        def authenticate_user(self, authorization_code: _Code) -> dict[str, Any]:
            del authorization_code
            return {"sub": "op-user-1"}

    class _IdToken(OpenIDCode):  # type: ignore[misc]
        def exists_nonce(self, nonce: str, request: Any) -> bool:
            del request
            return any(c["nonce"] == nonce for c in state.codes.values())

        def resolve_client_private_key(self, client: Any) -> ECKey:
            del client
            return state.key

        def get_client_algorithm(self, client: Any) -> str:
            del client
            return "ES256"

        def get_encode_header(self, client: Any) -> dict[str, str]:
            del client
            return {"alg": "ES256", "kid": state.key.kid or ""}

        def get_client_claims(self, client: Any) -> dict[str, Any]:
            return {"iss": OP, "aud": [client.get_client_id()]}

        def get_authorization_code_claims(self, authorization_code: _Code) -> dict[str, Any]:
            claims = dict(super().get_authorization_code_claims(authorization_code))
            if state.wrong_nonce:
                claims["nonce"] = "a-nonce-from-another-flow"
            return claims

        def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
            del scope
            return UserInfo(sub=user["sub"], email=state.email, email_verified=state.email_verified)

    class _Server(AuthorizationServer):  # type: ignore[misc]
        def query_client(self, client_id: str) -> _OpClient | None:
            return _OpClient() if client_id == _OpClient.client_id else None

        def save_token(self, token: dict[str, Any], request: Any) -> None:
            del token, request

        def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
            del name, args, kwargs

        def create_oauth2_request(self, request: Any) -> Any:
            return request

        def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
            if isinstance(body, dict):
                return JSONResponse(body, status_code=status, headers=dict(headers))
            return Response(body, status_code=status, headers=dict(headers))

    server = _Server()
    server.register_grant(_CodeGrant, [_IdToken(require_nonce=True), _StrictPkce(required=True)])
    server.register_token_generator("default", _bearer_generator)

    async def discovery(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": OP,
                "authorization_endpoint": OP + "/authorize",
                "token_endpoint": OP + "/token",
                "jwks_uri": OP + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def jwks(_: Request) -> JSONResponse:
        return JSONResponse({"keys": [state.key.as_dict(private=False)]})

    async def authorize(request: Request) -> Response:
        state.authorize_requests.append(dict(request.query_params))
        wrapped = await StarletteOAuth2Request.from_starlette(request)
        grant = server.get_consent_grant(wrapped, end_user={"sub": "op-user-1"})
        response: Response = server.create_authorization_response(wrapped, grant_user={"sub": "op-user-1"}, grant=grant)
        return response

    async def token(request: Request) -> Response:
        response: Response = server.create_token_response(await StarletteOAuth2Request.from_starlette(request))
        return response

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
        ]
    )


def _bearer_generator(*, grant_type: str, client: Any, user: Any, scope: str, **_: Any) -> dict[str, Any]:
    del grant_type, client, user
    return {"token_type": "Bearer", "access_token": f"op-at-{time.time_ns()}", "expires_in": 3600, "scope": scope}


@pytest.fixture
def provider() -> Provider:
    """The provider's switches and records."""
    return Provider()


@pytest.fixture
def app(instance: Instance, provider: Provider) -> FastAPI:
    """The trust, configured to sign people in with the in-test provider."""
    config = instance.data_dir / "datatrust.toml"
    config.write_text(
        config.read_text()
        + f'\n[oidc]\nissuer = "{OP}"\nclient_id = "datatrust"\nclient_secret = "{_OpClient.client_secret}"\n'
    )
    trust = create_app(instance)
    trust.state.oidc_transport = httpx2.ASGITransport(app=build_provider(provider))
    return trust


@pytest.fixture
def op(provider: Provider) -> Iterator[TestClient]:
    """The browser's view of the provider (it signs the user in and redirects back at once)."""
    with TestClient(build_provider_for(provider), base_url=OP) as client:
        yield client


def build_provider_for(provider: Provider) -> Starlette:
    """The same provider state behind a second app object (one per transport)."""
    return build_provider(provider)


def login(browser: TestClient, op: TestClient) -> str:
    """Start at the trust, sign in at the provider; return the callback URL the provider sends back."""
    start = browser.get("/auth/oidc/login", follow_redirects=False)
    assert start.status_code == 302
    assert start.headers["location"].startswith(OP + "/authorize?")
    back = op.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302, back.text
    callback: str = back.headers["location"]
    assert callback.startswith(CALLBACK + "?")
    return callback


def test_oidc_sign_in_maps_a_verified_email_to_a_person(
    instance: Instance, app: FastAPI, op: TestClient, provider: Provider
) -> None:
    """Authorization code + PKCE (S256) + nonce + state: the verified e-mail signs in its trustee."""
    person_id = make_person(instance, roles={Role.ADMIN}, username="amira", email="Amira.Haddad@riverside.example")
    with TestClient(app, base_url=TRUST) as browser:
        callback = login(browser, op)
        asked = provider.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256"
        assert asked["code_challenge"]
        assert asked["nonce"]
        assert asked["state"]
        assert asked["scope"] == "openid email profile"
        done = browser.get(callback, follow_redirects=False)
        assert done.status_code == 303, done.text
        me = browser.get("/auth/session").json()
    assert me["id"] == person_id
    assert me["roles"] == ["admin"]
    assert provider.codes == {}  # the code was redeemed and deleted


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_state_mismatch_is_refused(instance: Instance, app: FastAPI, op: TestClient) -> None:
    """A callback whose state is not the one this browser was given is refused (CSRF on the login)."""
    make_person(instance, username="amira", email="amira.haddad@riverside.example")
    with TestClient(app, base_url=TRUST) as browser:
        callback = login(browser, op)
        refused = browser.get(_with_query(callback, state="forged-state"), follow_redirects=False)
        assert refused.status_code == 403
        assert "state" in refused.json()["detail"].lower()
        assert browser.get("/auth/session").json()["id"] == "public"


def test_callback_from_another_browser_is_refused(instance: Instance, app: FastAPI, op: TestClient) -> None:
    """A victim's browser fed an attacker's callback has no matching state in its flow cookie."""
    make_person(instance, username="amira", email="amira.haddad@riverside.example")
    with TestClient(app, base_url=TRUST) as attacker, TestClient(app, base_url=TRUST) as victim:
        callback = login(attacker, op)
        refused = victim.get(callback, follow_redirects=False)
        assert refused.status_code == 403
        assert victim.get("/auth/session").json()["id"] == "public"


def test_pkce_binds_the_code_to_the_browser_that_asked_for_it(instance: Instance, app: FastAPI, op: TestClient) -> None:
    """A stolen code redeemed under another flow's state (and so its verifier) fails the S256 check."""
    make_person(instance, username="amira", email="amira.haddad@riverside.example")
    with TestClient(app, base_url=TRUST) as victim, TestClient(app, base_url=TRUST) as attacker:
        stolen = parse_qs(urlsplit(login(victim, op)).query)["code"][0]
        own = login(attacker, op)
        refused = attacker.get(_with_query(own, code=stolen), follow_redirects=False)
        assert refused.status_code == 403
        assert "code challenge failed" in refused.json()["detail"].lower()
        assert attacker.get("/auth/session").json()["id"] == "public"


def test_wrong_nonce_is_refused(instance: Instance, app: FastAPI, op: TestClient, provider: Provider) -> None:
    """An ID token whose nonce is not the one this flow sent is refused (replay protection)."""
    make_person(instance, username="amira", email="amira.haddad@riverside.example")
    provider.wrong_nonce = True
    with TestClient(app, base_url=TRUST) as browser:
        refused = browser.get(login(browser, op), follow_redirects=False)
        assert refused.status_code == 403
        assert "nonce" in refused.json()["detail"].lower()
        assert browser.get("/auth/session").json()["id"] == "public"


@pytest.mark.parametrize(
    ("verified", "email", "words"),
    [
        (False, "amira.haddad@riverside.example", "email_verified"),  # the provider does not vouch for it
        (True, "someone.else@riverside.example", "no account"),  # vouched for, but nobody here has it
    ],
)
def test_unverified_or_unknown_email_is_refused(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    instance: Instance, app: FastAPI, op: TestClient, provider: Provider, verified: bool, email: str, words: str
) -> None:
    """Only a verified e-mail address that belongs to an existing account signs anyone in."""
    make_person(instance, username="amira", email="amira.haddad@riverside.example")
    provider.email_verified = verified
    provider.email = email
    with TestClient(app, base_url=TRUST) as browser:
        refused = browser.get(login(browser, op), follow_redirects=False)
        assert refused.status_code == 403
        assert words in refused.json()["detail"]


def test_oidc_is_off_until_configured(instance: Instance) -> None:
    """Without an [oidc] section the login route says it is not configured."""
    with TestClient(create_app(instance), base_url=TRUST) as browser:
        response = browser.get("/auth/oidc/login", follow_redirects=False)
    assert response.status_code == 404
    assert "not configured" in response.json()["detail"]
