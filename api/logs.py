"""Structured logs: one JSON object per line, and one line per HTTP request, each with a request id.

:class:`RequestLogMiddleware` gives every request an id -- the caller's ``X-Request-ID`` when it
matches :data:`REQUEST_ID_PATTERN`, a fresh random one otherwise -- returns it in the
``X-Request-ID`` response header, and logs one line on ``datatrust.access``::

    {"timestamp": "2026-11-26T09:00:00.123Z", "level": "INFO", "logger": "datatrust.access",
     "message": "GET /v1/ledger/checkpoint 200", "request_id": "3f9c…", "method": "GET",
     "path": "/v1/ledger/checkpoint", "status": 200, "duration_ms": 1.8}

What is never logged: query strings, bodies, headers, cookies and tokens. The path is logged
without its query string, and a path parameter that is itself a secret (the one-time sign-in
link ``/auth/link/{token}``) is logged as its route template. Records logged by any other
logger while a request is handled carry its ``request_id`` too.

:func:`configure_logging` (called by ``datatrust serve`` and ``datatrust demo``) sends every
record to standard error through :class:`JsonFormatter`: this project's own loggers
(``datatrust``, ``api``, ``trust``, ``consent``, ``ledger``) from INFO, everything else --
uvicorn, httpx, SQLAlchemy -- from WARNING. Uvicorn's access log is turned off there, since
the line above replaces it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from fastapi import FastAPI

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ACCESS_LOGGER = "datatrust.access"
PROJECT_LOGGERS = ("datatrust", "api", "trust", "consent", "ledger")
SECRET_PARAM = re.compile(r"token|secret|code|password|key", re.IGNORECASE)  # path parameters never logged
MAX_LOGGED_PATH = 256
_HANDLER_MARK = "_datatrust_json"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger(ACCESS_LOGGER)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, request_id and ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render *record* as one line of JSON."""
        stamp = datetime.fromtimestamp(record.created, UTC)
        document: dict[str, Any] = {
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            document["request_id"] = request_id
        document.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "request_id"})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def configure_logging(stream: TextIO | None = None) -> None:
    """Send every log record to *stream* (standard error) as JSON lines; safe to call twice."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` when it is safe to repeat, else a new random id."""
    for key, value in headers:
        if key.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID_PATTERN.match(text):
                return text
            break
    return secrets.token_hex(16)


def logged_path(scope: Scope, path: str) -> str:
    """*path* (as requested, without its query string), or its route template when a parameter is a secret."""
    template = getattr(scope.get("route"), "path", None)
    params = scope.get("path_params") or {}
    if isinstance(template, str) and any(SECRET_PARAM.search(str(name)) for name in params):
        return template
    return path[:MAX_LOGGED_PATH]


class RequestLogMiddleware:
    """Assigns the request id, echoes it in the response, and logs the request when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        requested = str(scope.get("path", ""))  # before routing: a mount changes root_path, not this
        status = 500  # unless the app answers
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            method, path = str(scope.get("method", "")), logged_path(scope, requested)
            access_log.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
            request_id_var.reset(token)


def install(app: FastAPI) -> None:
    """Add :class:`RequestLogMiddleware` (outside every middleware added before it)."""
    app.add_middleware(RequestLogMiddleware)
