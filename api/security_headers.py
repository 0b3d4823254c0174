"""Security headers on every response, and ``Secure`` on every cookie sent over https.

:class:`SecurityHeadersMiddleware` adds, unless the response already set them:

* ``Content-Security-Policy``: HTML gets the pages' policy
  (:data:`api.routes.pages_public.CONTENT_SECURITY_POLICY`: scripts, styles and images from this
  app only); anything else (JSON, problem documents, feeds, static files) gets :data:`API_POLICY`,
  which allows nothing at all. The interactive API documentation (``/docs``, ``/redoc``) loads
  FastAPI's script and style from its CDN: those pages get :data:`DOCS_POLICY`, which names the
  CDN hosts and allows their one inline script or style by its SHA-256 hash. No policy here has
  ``'unsafe-inline'``.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``
  (with ``frame-ancestors 'none'`` in every policy).
* ``Strict-Transport-Security: max-age=31536000``, only when the request came over https.
  ``datatrust serve`` runs uvicorn with its default proxy-header handling, which believes
  ``X-Forwarded-Proto`` from 127.0.0.1 only, so behind a local TLS proxy "https" means the
  browser really used https.

Over https, a ``Set-Cookie`` without ``Secure`` gets it (the session and CSRF cookies already
set it there; this also covers the OpenID Connect flow cookie).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from api.routes.pages_public import CONTENT_SECURITY_POLICY as PAGE_POLICY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's documentation pages: Swagger UI and ReDoc from jsDelivr, ReDoc's Google fonts, the favicon.
DOCS_POLICY = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net{scripts}; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com{styles}; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; font-src https://fonts.gstatic.com; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HSTS = "max-age=31536000"
FIXED_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)
MAX_DOCS_PAGE = 64 * 1024  # FastAPI's documentation pages are about 1 kB


def docs_policy(html: bytes) -> str:
    """:data:`DOCS_POLICY` allowing exactly the inline ``<script>`` and ``<style>`` blocks of *html*."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for match in _INLINE.finditer(html):
        digest = base64.b64encode(hashlib.sha256(match.group(2)).digest()).decode()
        hashes[match.group(1)].append(f" 'sha256-{digest}'")
    return DOCS_POLICY.format(scripts="".join(hashes[b"script"]), styles="".join(hashes[b"style"]))


def _secure_cookie(value: bytes) -> bytes:
    attributes = [part.strip().lower() for part in value.split(b";")[1:]]
    return value if b"secure" in attributes else value + b"; Secure"


class SecurityHeadersMiddleware:
    """Adds the headers described in the module documentation to every http response."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        if scope.get("path") in self.docs_paths:
            await self._docs(scope, receive, send, https=https)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._headers(message.get("headers", []), https=https, policy=None)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send, *, https: bool) -> None:
        """Hold a documentation page until its body is complete, so its inline blocks can be hashed."""
        start: Message | None = None
        body = bytearray()

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False) and len(body) <= MAX_DOCS_PAGE:
                return
            policy = docs_policy(bytes(body)) if len(body) <= MAX_DOCS_PAGE else API_POLICY
            start["headers"] = self._headers(start.get("headers", []), https=https, policy=policy)
            await send(start)
            await send({**message, "body": bytes(body)})
            start = None  # anything after this (there is nothing) goes straight through
            body.clear()

        await self.app(scope, receive, hold)

    @staticmethod
    def _headers(raw: list[tuple[bytes, bytes]], *, https: bool, policy: str | None) -> list[tuple[bytes, bytes]]:
        headers = [(k, _secure_cookie(v) if https and k.lower() == b"set-cookie" else v) for k, v in raw]
        present = {k.lower() for k, _ in headers}
        if b"content-security-policy" not in present:
            if policy is None:
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                policy = PAGE_POLICY if content_type.startswith(b"text/html") else API_POLICY
            headers.append((b"content-security-policy", policy.encode()))
        headers.extend((k, v) for k, v in FIXED_HEADERS.items() if k not in present)
        if https and b"strict-transport-security" not in present:
            headers.append((b"strict-transport-security", HSTS.encode()))
        return headers


def install(app: FastAPI) -> None:
    """Add :class:`SecurityHeadersMiddleware` (outside every middleware added before it)."""
    docs = frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs)
