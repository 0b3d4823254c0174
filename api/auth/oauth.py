"""The OAuth 2.0 authorisation server for partner systems, built on Authlib.

One grant: client credentials (RFC 6749 §4.4). Two ways for a client to authenticate
at ``POST /oauth/token``:

* ``client_secret_basic``: HTTP Basic with the client id and the secret shown once at
  registration (stored only as a hash);
* ``private_key_jwt`` (RFC 7523 §2.2): a JWT assertion signed with the private half of
  the Ed25519 or EC key the partner registered. ``iss`` and ``sub`` are the client id,
  ``aud`` names this server (its issuer, or the token endpoint's URL), ``exp`` is
  required, and each ``jti`` is accepted once.

Authlib does the protocol (parsing, client authentication, error responses); this
module adapts it to Starlette and to the trust's storage. A client gets no token
while it or its organisation is suspended. The token is an access JWT from
:func:`api.auth.tokens.issue_access_token` carrying the granted scopes (all of the
client's scopes unless it asks for fewer) and the credential version, so rotating a
secret or key also retires the tokens issued under the old one.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InsecureTransportError,
    InvalidClientError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth.keys import auth_settings
from api.auth.store import use_assertion_id
from api.auth.tokens import ASSERTION_ALGORITHMS, DEFAULT_TTL_SECONDS, AssertionRegistry, issue_access_token
from api.deps import get_now
from api.instance import Instance
from consent.principals import Principal, Role, Scope
from ledger.errors import ForbiddenError
from trust.identity import AuthMethod, Client, check_client_standing, get_client, verify_client_secret

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
SCOPES = sorted(str(s) for s in Scope)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: dict[str, str], datalist: dict[str, list[str]]) -> None:
        self._data = data
        self._datalist = defaultdict(list, datalist)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An Authlib request built from a Starlette request whose form has been read."""

    def __init__(
        self, method: str, url: str, headers: Headers, form: list[tuple[str, str]], args: dict[str, str]
    ) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        datalist: dict[str, list[str]] = defaultdict(list)
        for key, value in [*args.items(), *form]:
            datalist[key].append(value)
        self._form = dict(form)
        self._args = args
        self.payload = _Payload({k: v[0] for k, v in datalist.items()}, dict(datalist))

    @property
    def form(self) -> dict[str, str]:
        """The form fields (last value of each)."""
        return self._form

    @property
    def args(self) -> dict[str, str]:
        """The query parameters."""
        return self._args

    @classmethod
    async def from_starlette(cls, request: Request) -> StarletteOAuth2Request:
        """Read the form of *request* and wrap it (raises InsecureTransportError over plain http)."""
        form = await request.form()
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        return cls(request.method, str(request.url), request.headers, pairs, dict(request.query_params))


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a registered partner client."""

    def __init__(self, instance: Instance, client: Client) -> None:
        self.instance = instance
        self.client = client

    def get_client_id(self) -> str:
        """The client id."""
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        """Partner clients have no redirect URI (no browser flow)."""

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this client holds (all of them when none were asked for)."""
        wanted = scope_to_list(scope) if scope else sorted(self.client.scopes)
        return " ".join(s for s in wanted if s in self.client.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """No redirect URI is ever valid for a machine client."""
        del redirect_uri
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        """Whether *client_secret* is the current secret (constant time)."""
        if self.client.auth_method is not AuthMethod.CLIENT_SECRET_BASIC:
            return False
        with self.instance.db.engine.connect() as conn:
            return verify_client_secret(conn, self.client.client_id, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Each client authenticates only with the method it registered."""
        return endpoint == "token" and method == str(self.client.auth_method)

    def check_response_type(self, response_type: str) -> bool:
        """No browser flows for partner clients."""
        del response_type
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        """Only the client credentials grant."""
        return grant_type == "client_credentials"


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """Client credentials, refusing suspended clients and scopes the client was not given."""

    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "private_key_jwt")

    def validate_token_request(self) -> None:
        """Authenticate the client, then refuse it while it or its organisation is suspended."""
        super().validate_token_request()
        client: OAuthClient = self.request.client
        with client.instance.db.engine.connect() as conn:
            try:
                check_client_standing(conn, client.client.client_id, at=get_now())
            except ForbiddenError as exc:
                raise UnauthorizedClientError(exc.detail) from None

    def validate_requested_scope(self) -> None:
        """Refuse scopes the client was not given (rather than silently dropping them)."""
        requested = set(scope_to_list(self.request.payload.scope) or [])
        client: OAuthClient = self.request.client
        missing = sorted(requested - client.client.scopes)
        if missing:
            raise InvalidScopeError(f"this client was not granted: {' '.join(missing)}")


class ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication with the partner's registered public key."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, instance: Instance, audiences: list[str]) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.instance = instance
        self.audiences = audiences

    def get_audiences(self) -> list[str]:
        """The ``aud`` values that name this server."""
        return self.audiences

    def resolve_client_public_key(self, client: OAuthClient) -> Any:
        """The public key the partner registered."""
        if client.client.public_jwk is None:
            raise InvalidClientError(description="this client has no registered public key")
        return import_key(client.client.public_jwk)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the assertion with the algorithms we accept, then its claims."""
        try:
            token = jwt.decode(
                assertion,
                resolve_key,
                algorithms=ASSERTION_ALGORITHMS,
                registry=AssertionRegistry(algorithms=ASSERTION_ALGORITHMS),
            )
        except JoseError as exc:
            raise InvalidClientError(description=f"client assertion rejected: {exc.description or exc.error}") from None
        self.verify_claims(token.claims)
        return dict(token.claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Accept each assertion id once (RFC 7523 §3 item 7)."""
        now = get_now()
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        with self.instance.db.write_engine.begin() as conn:
            return use_assertion_id(conn, client_id=str(claims["sub"]), jti=str(jti), expires_at=expires, now=now)


class TrustAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorisation server, answering for one trust."""

    def __init__(self, instance: Instance) -> None:
        super().__init__(scopes_supported=SCOPES)
        self.instance = instance
        self.register_grant(ClientCredentialsGrant)
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method("private_key_jwt", self._authenticate_with_assertion)

    def query_client(self, client_id: str) -> OAuthClient | None:
        """The registered client, or None."""
        with self.instance.db.engine.connect() as conn:
            client = get_client(conn, client_id)
        return None if client is None else OAuthClient(self.instance, client)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs: nothing is stored, the issue is logged."""
        log.info("issued an access token to %s (scope %r)", request.client.get_client_id(), token.get("scope"))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals."""
        del name, args, kwargs

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        """Requests arrive already wrapped by :meth:`token_response`."""
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        """A Starlette response with Authlib's status, JSON body and headers."""
        content = body if isinstance(body, str) else json.dumps(body)
        return Response(content, status_code=status, headers=dict(headers), media_type="application/json")

    def _authenticate_with_assertion(self, query_client: Any, request: StarletteOAuth2Request) -> Any:
        settings = auth_settings(self.instance.data_dir, origin=self.instance.origin)
        audiences = {settings.issuer, settings.issuer + TOKEN_PATH, request.uri.split("?")[0]}
        if settings.public_url:
            audiences.add(settings.public_url + TOKEN_PATH)
        return ClientAssertion(self.instance, sorted(audiences))(query_client, request)

    def _generate_token(
        self,
        *,
        grant_type: str,
        client: OAuthClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        del grant_type, user, include_refresh_token
        granted = client.get_allowed_scope(scope)
        ttl = expires_in or DEFAULT_TTL_SECONDS
        record = client.client
        principal = Principal(
            id=record.client_id,
            roles=frozenset({Role.PARTNER}),
            organisation=record.organisation,
            scopes=frozenset(granted.split()),
        )
        token = issue_access_token(
            self.instance, principal, now=get_now(), ttl_seconds=ttl, extra_claims={"cv": record.credential_version}
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": granted}

    async def token_response(self, request: Request) -> Response:
        """Answer one token request (form already parsed here; Authlib runs in a worker thread)."""
        from starlette.concurrency import run_in_threadpool  # noqa: PLC0415 - used only here

        try:
            oauth_request = await StarletteOAuth2Request.from_starlette(request)
        except InsecureTransportError as exc:
            return JSONResponse({"error": exc.error, "error_description": "use https"}, status_code=400)
        except OAuth2Error as exc:  # pragma: no cover - defensive
            return self.handle_error_response(None, exc)  # type: ignore[no-any-return]
        response: Response = await run_in_threadpool(self.create_token_response, oauth_request)
        return response


def server_metadata(instance: Instance, base_url: str) -> dict[str, Any]:
    """RFC 8414 metadata of this authorisation server."""
    settings = auth_settings(instance.data_dir, origin=instance.origin)
    base = settings.public_url or base_url.rstrip("/")
    return {
        "issuer": settings.issuer,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "scopes_supported": SCOPES,
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [str(m) for m in AuthMethod],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "service_documentation": base + "/docs",
    }
