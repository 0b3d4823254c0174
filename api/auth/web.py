"""Wiring the auth machinery into the app: middleware and the 429 problem for throttled sign-ins."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth.keys import auth_keys, auth_settings
from api.auth.oidc import FLOW_COOKIE
from api.auth.service import SignInThrottledError
from api.auth.sessions import AuthMiddleware
from api.auth.standing import StandingCache
from api.instance import Instance
from api.problems import problem

FLOW_MAX_AGE_SECONDS = 600
OIDC_PREFIX = "/auth/oidc/"  # the only routes that keep state in the signed flow cookie (request.session)


class OnlyUnder:
    """Runs *middleware* for requests whose path starts with *prefix*; every other request skips it.

    The OpenID Connect flow cookie is read and re-signed by Starlette's SessionMiddleware on
    every request it sees; only the two OIDC routes use it, so the API's hot paths do not pay for it.
    """

    def __init__(self, app: ASGIApp, *, prefix: str, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app = app
        self.prefix = prefix
        self.wrapped = middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self.wrapped(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add the CSRF/https middleware, the OIDC flow cookie, and the throttling error handler."""
    instance: Instance = app.state.instance
    secret = auth_keys(instance.data_dir).cookie_secret.hex()
    app.add_middleware(
        OnlyUnder,
        prefix=OIDC_PREFIX,
        middleware=partial(
            SessionMiddleware,
            secret_key="flow:" + secret,
            session_cookie=FLOW_COOKIE,
            max_age=FLOW_MAX_AGE_SECONDS,
            same_site="lax",
            https_only=auth_settings(instance.data_dir, origin=instance.origin).secure_cookies is True,
        ),
    )
    app.add_middleware(AuthMiddleware)
    app.state.standing = StandingCache.following(instance.ledger)  # bearer standing, not re-read per request

    @app.exception_handler(SignInThrottledError)
    async def _throttled(request: Request, exc: SignInThrottledError) -> JSONResponse:
        return problem(
            429,
            slug=exc.slug,
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            headers={"Retry-After": str(exc.retry_after)},
        )
