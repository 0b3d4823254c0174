"""Limits on what one request may carry: the size of its body and how deeply its JSON nests.

:class:`RequestLimitsMiddleware` is plain ASGI, so it sees the body as it arrives:

* a ``Content-Length`` over the route's limit is refused with 413 before a byte is read;
* otherwise the bytes are counted as they stream in (a chunked upload declares no length)
  and reading stops at the first byte over the limit, again with 413;
* a JSON body nested deeper than :data:`MAX_JSON_DEPTH` is refused with 422 before any
  parser recurses into it (Python's ``json`` raises ``RecursionError`` on very deep input).

Both refusals are problem+json and happen before the route runs, so nothing is recorded.
The limit is :data:`DEFAULT_MAX_BODY_BYTES` except for the routes in :data:`BODY_LIMITS`,
which take more by design. Lengths of lists and strings are limited by the request models
themselves (``max_length``), which answer 422 naming the field.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PayloadTooLargeError, problem

MIB = 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 1 * MIB
MAX_JSON_DEPTH = 32
BODY_LIMITS: dict[tuple[str, str], int] = {
    # An access request may name up to 100 000 subject references (api/routes/requests.py).
    ("POST", "/v1/requests"): 8 * MIB,
}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A JSON string (escapes included, possibly cut short at the end) or one bracket.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def body_limit(method: str, path: str) -> int:
    """The most bytes a request body to *method* *path* may have."""
    return BODY_LIMITS.get((method.upper(), path.rstrip("/") or "/"), DEFAULT_MAX_BODY_BYTES)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects in *body* nest more than *limit* deep (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKEN.finditer(body):
        token = match.group()
        if token in {b"[", b"{"}:
            depth += 1
            if depth > limit:
                return True
        elif token in {b"]", b"}"}:
            depth = max(depth - 1, 0)
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestLimitsMiddleware:
    """Refuse bodies over the route's size limit (413) and JSON nested too deeply (422)."""

    def __init__(self, app: ASGIApp, *, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, replay_body(b"", receive, first=message), send)
                return
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        content_type = (_header(scope, b"content-type") or "").lower()
        if body and not content_type.startswith(_FORM_TYPES) and json_depth_exceeds(body, self.max_json_depth):
            detail = f"the JSON body nests arrays and objects more than {self.max_json_depth} deep"
            response = problem(
                422,
                slug="json-too-deep",
                title="JSON nested too deeply",
                detail=detail,
                instance=scope["path"],
                errors=[{"field": "body", "message": detail}],
                limit=self.max_json_depth,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        detail = f"the request body is over the limit of {limit} bytes for {scope['method']} {scope['path']}"
        response = problem(
            413,
            slug=PayloadTooLargeError.slug,
            title=PayloadTooLargeError.title,
            detail=detail,
            instance=scope["path"],
            headers={"Connection": "close"},
            limit=limit,
        )
        await response(scope, receive, send)


def replay_body(body: bytes, receive: Receive, *, first: Message | None = None) -> Receive:
    """A receive callable that hands over *body* (or *first*) once, then defers to *receive*."""
    pending: list[Message] = [
        first if first is not None else {"type": "http.request", "body": body, "more_body": False}
    ]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def install(app: FastAPI) -> None:
    """Add the middleware to *app*."""
    app.add_middleware(RequestLimitsMiddleware)
