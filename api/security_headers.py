"""Security headers on every response, and ``Secure`` on every cookie sent over https.

:func:`secure_headers` (applied to every http response by :class:`api.logs.EdgeMiddleware`)
adds, unless the response already set them:

* ``Content-Security-Policy``: HTML gets the pages' policy
  (:data:`api.routes.pages_public.CONTENT_SECURITY_POLICY`: scripts, styles and images from this
  app only); anything else (JSON, problem documents, feeds, static files) gets :data:`API_POLICY`,
  which allows nothing at all. The interactive API documentation (``/docs``, ``/redoc``) loads
  FastAPI's script and style from its CDN: those pages get :data:`DOCS_POLICY` (through
  :func:`hold_docs_page`), which names the CDN hosts and allows their one inline script or style
  by its SHA-256 hash. No policy here has ``'unsafe-inline'``.
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
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import FastAPI

from api.routes.pages_public import CONTENT_SECURITY_POLICY as PAGE_POLICY

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

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
CSP = b"content-security-policy"
_API_POLICY = API_POLICY.encode()
_PAGE_POLICY = PAGE_POLICY.encode()
_HSTS = (b"strict-transport-security", HSTS.encode())
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)
MAX_DOCS_PAGE = 64 * 1024  # FastAPI's documentation pages are about 1 kB


def docs_paths(app: FastAPI) -> frozenset[str]:
    """The paths of *app*'s API documentation pages (the ones :func:`hold_docs_page` is for)."""
    return frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)


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


def secure_headers(raw: Iterable[tuple[bytes, bytes]], *, https: bool) -> Headers:
    """*raw* response headers with the security headers added (and ``Secure`` cookies over https)."""
    headers: Headers = []
    present: set[bytes] = set()
    content_type = b""
    for key, value in raw:
        name = key.lower()
        present.add(name)
        if name == b"content-type" and not content_type:
            content_type = value
        elif https and name == b"set-cookie":
            value = _secure_cookie(value)  # noqa: PLW2901
        headers.append((key, value))
    if CSP not in present:
        headers.append((CSP, _PAGE_POLICY if content_type.startswith(b"text/html") else _API_POLICY))
    headers.extend((k, v) for k, v in FIXED_HEADERS.items() if k not in present)
    if https and _HSTS[0] not in present:
        headers.append(_HSTS)
    return headers


def hold_docs_page(send: Send) -> Send:
    """A send that holds a documentation page until its body is complete, then gives it its hashed policy.

    The policy goes in as the page's own ``Content-Security-Policy`` (unless it has one), so
    :func:`secure_headers` downstream keeps it. A page over :data:`MAX_DOCS_PAGE` gets
    :data:`API_POLICY` instead. Until the body is complete nothing reaches *send*.
    """
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
        headers = list(start.get("headers", []))
        if all(k.lower() != CSP for k, _ in headers):
            headers.append((CSP, policy.encode()))
        start["headers"] = headers
        await send(start)
        await send({**message, "body": bytes(body)})
        start = None  # anything after this (there is nothing) goes straight through
        body.clear()

    return hold
