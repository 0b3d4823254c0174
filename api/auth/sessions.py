"""Browser sessions and CSRF protection.

**Sessions.** The cookie ``dt_session`` carries a random session id signed with
itsdangerous (HMAC-SHA1 over a key derived from the token key, with a timestamp, so
it expires after 8 hours even if the row is left). The database keeps only a hash
of the id, so a session can be ended server-side: sign-out deletes it, and
:func:`revoke_sessions_for` ends every session of a person or of an individual's
subject (erasure must call it). Cookies are ``HttpOnly``, ``SameSite=Lax``, path
``/``, and ``Secure`` when the request came over https (or ``secure_cookies`` is set).

**CSRF** (double-submit, signed): :class:`AuthMiddleware` gives every browser a random
``dt_csrf`` cookie; :func:`csrf_token` renders a token that is that nonce signed with
the trust's cookie key, for a hidden ``csrf_token`` form field (or the
``X-CSRF-Token`` header of a script). :func:`verify_csrf` refuses a state-changing
request whose token is missing, forged, or made for another browser's nonce, with
403 problem+json. Requests that carry ``Authorization: Bearer`` are exempt: the
principal then comes from the token alone and no cookie is consulted, and a
cross-site form cannot set that header.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from datetime import datetime, timedelta
from http.cookies import SimpleCookie

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import store
from api.auth.keys import auth_keys, auth_settings
from api.auth.principal import SESSION_COOKIE, SESSION_MAX_AGE_SECONDS, session_signer
from api.instance import Instance
from ledger.errors import DomainError, ForbiddenError

CSRF_COOKIE = "dt_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_SALT = "datatrust.csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
_served_over_https: ContextVar[bool] = ContextVar("served_over_https", default=False)


revoke_sessions_for = store.revoke_sessions_for


def _secure(instance: Instance, secure: bool | None) -> bool:
    if secure is not None:
        return secure
    configured = auth_settings(instance.data_dir, origin=instance.origin).secure_cookies
    return configured if configured is not None else _served_over_https.get()


def _start(
    response: Response, instance: Instance, *, principal_id: str, kind: str, now: datetime, secure: bool | None
) -> None:
    with instance.db.write_engine.begin() as conn:
        store.purge_expired_sessions(conn, now=now)
        session_id = store.create_session(
            conn, principal_id=principal_id, kind=kind, now=now, ttl=timedelta(seconds=SESSION_MAX_AGE_SECONDS)
        )
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(instance).sign(session_id).decode(),
        max_age=SESSION_MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(instance, secure),
    )


def start_person_session(
    response: Response, instance: Instance, person_id: str, now: datetime, *, secure: bool | None = None
) -> None:
    """Sign *person_id* in: record a session and set its cookie on *response*."""
    _start(response, instance, principal_id=person_id, kind="person", now=now, secure=secure)


def start_individual_session(
    response: Response, instance: Instance, subject: str, now: datetime, *, secure: bool | None = None
) -> None:
    """Sign an individual in as *subject* (after a receipt access code was verified)."""
    _start(response, instance, principal_id=subject, kind="individual", now=now, secure=secure)


def end_session(request: Request, response: Response, instance: Instance) -> None:
    """Sign out: delete the session row and the cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            session_id = session_signer(instance).unsign(cookie).decode()
        except BadSignature:
            session_id = None
        if session_id is not None:
            with instance.db.write_engine.begin() as conn:
                store.delete_session(conn, session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


# -- CSRF ---------------------------------------------------------------------------------


def _serializer(instance: Instance) -> URLSafeSerializer:
    return URLSafeSerializer(auth_keys(instance.data_dir).cookie_secret, salt=CSRF_SALT)


class CsrfNotApplicableError(DomainError):
    """A CSRF token (or a page carrying one) was asked for with an Authorization header (HTTP 400)."""

    slug = "csrf-not-applicable"
    title = "No CSRF token for requests with credentials in a header"


def csrf_token(request: Request) -> str:
    """The CSRF token to put in a form (``<input type=hidden name=csrf_token>``) or header."""
    nonce = request.scope.get("state", {}).get("csrf_nonce") or request.cookies.get(CSRF_COOKIE)
    if not nonce and "authorization" in request.headers:
        msg = "a request with an Authorization header needs no CSRF token, so none is issued for it"
        raise CsrfNotApplicableError(msg)
    if not nonce:
        msg = "no CSRF nonce: is AuthMiddleware installed?"
        raise RuntimeError(msg)
    token: str = _serializer(request.app.state.instance).dumps(nonce)
    return token


def is_valid_csrf(instance: Instance, token: str | None, nonce: str | None) -> bool:
    """Whether *token* is this trust's signature over *nonce*."""
    if not token or not nonce:
        return False
    try:
        signed = _serializer(instance).loads(token)
    except BadSignature:
        return False
    return isinstance(signed, str) and secrets.compare_digest(signed, nonce)


async def verify_csrf(request: Request) -> None:
    """Dependency: refuse a state-changing cookie-borne request without a valid CSRF token."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization", "")[:7].lower() == "bearer ":
        return
    token = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if token is None and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not is_valid_csrf(request.app.state.instance, token, request.cookies.get(CSRF_COOKIE)):
        msg = (
            "this form was not sent from one of this trust's own pages (missing or invalid CSRF token); "
            "reload the page and try again"
        )
        raise ForbiddenError(msg)


def _csrf_nonce(cookie_header: str) -> str | None:
    """The well-formed CSRF nonce in a Cookie header, if any."""
    cookie = SimpleCookie()
    try:
        cookie.load(cookie_header)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is treated as no cookie
        return None
    morsel = cookie.get(CSRF_COOKIE)
    return morsel.value if morsel is not None and _NONCE_RE.match(morsel.value) else None


class AuthMiddleware:
    """Gives each browser a CSRF nonce cookie and notes whether the request came over https."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie_header = ""
        authorised = False
        for name, value in scope.get("headers", ()):  # ASGI header names are lower-case bytes
            if name == b"cookie":
                cookie_header = value.decode("latin-1")
            elif name == b"authorization":
                authorised = True
        nonce = _csrf_nonce(cookie_header) if cookie_header else None
        fresh = None
        if nonce is None and not authorised:
            fresh = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf_nonce"] = nonce or fresh
        https = scope.get("scheme") == "https"
        reply = send
        if fresh is not None:

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    value = f"{CSRF_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if https else "")
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", value.encode("latin-1"))]
                await send(message)

            reply = send_with_cookie
        token = _served_over_https.set(https)
        try:
            await self.app(scope, receive, reply)
        finally:
            _served_over_https.reset(token)
