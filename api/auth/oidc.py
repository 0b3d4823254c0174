"""OpenID Connect sign-in for people, with Authlib's Starlette client.

The provider is configured by issuer URL, client id and secret (``[oidc]`` in
``datatrust.toml``, or ``DATATRUST_OIDC_*``); its endpoints and keys come from
``<issuer>/.well-known/openid-configuration``. The flow is the authorization code
flow with PKCE (S256); Authlib generates ``state``, ``nonce`` and the code verifier
and keeps them in the short-lived, signed ``dt_flow`` cookie (Starlette's
SessionMiddleware). On the way back Authlib checks the state against that cookie,
redeems the code with the verifier, verifies the ID token's signature, issuer,
audience, expiry and nonce; we then require ``email_verified`` and map the e-mail
address to an existing person. Nobody gets an account by signing in.

``app.state.oidc_transport`` may hold an httpx transport for talking to the
provider (a custom TLS setup, or an in-process provider in tests).
"""

from __future__ import annotations

from typing import Any

import httpx2
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import Response

from api.auth.keys import OidcSettings, auth_settings
from api.instance import Instance
from ledger.errors import ForbiddenError, NotFoundError

FLOW_COOKIE = "dt_flow"
PROVIDER = "oidc"


def oidc_settings(instance: Instance) -> OidcSettings | None:
    """The configured provider, or None."""
    return auth_settings(instance.data_dir, origin=instance.origin).oidc


def _client(request: Request) -> Any:
    instance: Instance = request.app.state.instance
    settings = oidc_settings(instance)
    if settings is None:
        msg = "sign-in with an external identity provider is not configured for this trust"
        raise NotFoundError(msg)
    state = request.app.state
    key = (settings.issuer, settings.client_id, settings.client_secret)
    if getattr(state, "oidc_key", None) != key:
        client_kwargs: dict[str, Any] = {"scope": settings.scope, "code_challenge_method": "S256"}
        transport = getattr(state, "oidc_transport", None)
        if transport is not None:
            client_kwargs["transport"] = transport
        oauth = OAuth()
        oauth.register(
            PROVIDER,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            server_metadata_url=settings.issuer + "/.well-known/openid-configuration",
            client_kwargs=client_kwargs,
        )
        state.oidc_registry = oauth
        state.oidc_key = key
    return state.oidc_registry.create_client(PROVIDER)


async def start(request: Request, redirect_uri: str) -> Response:
    """Redirect the browser to the provider (state, nonce and PKCE verifier kept in the flow cookie)."""
    client = _client(request)
    try:
        response: Response = await client.authorize_redirect(request, redirect_uri)
    except (OAuthError, OSError) as exc:
        msg = f"the identity provider could not be reached: {exc}"
        raise ForbiddenError(msg) from None
    return response


async def finish(request: Request) -> dict[str, Any]:
    """Complete the flow; return the verified ID token claims (raises ForbiddenError on any failure)."""
    client = _client(request)
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        msg = f"sign-in with the identity provider failed: {exc.description or exc.error}"
        raise ForbiddenError(msg) from None
    except (JoseError, httpx2.HTTPError, ValueError, KeyError) as exc:  # ID token claims (nonce, aud, exp), transport
        description = getattr(exc, "description", None) or str(exc) or exc.__class__.__name__
        msg = f"sign-in with the identity provider failed: {description}"
        raise ForbiddenError(msg) from None
    userinfo = token.get("userinfo")
    if not userinfo:
        msg = "sign-in with the identity provider failed: no verified ID token was returned"
        raise ForbiddenError(msg)
    return dict(userinfo)
