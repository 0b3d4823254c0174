"""The one place that maps domain errors to HTTP: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ledger.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidStateError,
    LedgerIntegrityError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://datatrust.local/problems/"
_SQLITE_QUERY_ERRORS = ("no such ", "near ", "table ", "index ", "incomplete input", "too many ")

STATUS: list[tuple[type[DomainError], int]] = [
    (ValidationError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ForbiddenError, 403),
    (InvalidStateError, 409),
    (UnavailableError, 503),
    (LedgerIntegrityError, 422),
]


class UnauthorisedError(DomainError):
    """No valid credentials were presented (HTTP 401)."""

    slug = "unauthorised"
    title = "Sign-in required"


class PayloadTooLargeError(DomainError):
    """The request is larger than the API accepts (HTTP 413)."""

    slug = "payload-too-large"
    title = "Request too large"


def problem(
    status: int, *, slug: str, title: str, detail: str, instance: str, headers: dict[str, str] | None = None, **ext: Any
) -> JSONResponse:
    """Render one problem document."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update({k: v for k, v in ext.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def server_error(instance: str, request_id: str) -> JSONResponse:
    """The 500 answered for an unhandled exception: nothing about the error itself, only the request id.

    The exception's text and traceback (which may name files, queries or values) go to the log
    line carrying the same request id; the caller quotes the id to find it.
    """
    return problem(
        500,
        slug="internal-error",
        title="Internal server error",
        detail=f"the server failed to answer this request; it was logged under request id {request_id}",
        instance=instance,
        request_id=request_id,
    )


def status_for(exc: DomainError) -> int:
    """HTTP status for a domain error."""
    if isinstance(exc, UnauthorisedError):
        return 401
    if isinstance(exc, PayloadTooLargeError):
        return 413
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def database_unavailable(exc: BaseException) -> bool:
    """Whether *exc* means the database is unreachable, restarting, full or busy (not a bug in a query).

    SQLAlchemy wraps the driver's errors; a lost connection may surface as any DB-API class
    (``connection_invalidated``), the rest as the driver's ``OperationalError``.
    """
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and database_unavailable(exc.orig)
    if isinstance(exc, sqlite3.OperationalError):  # SQLite also reports a bad query this way
        return not str(exc).startswith(_SQLITE_QUERY_ERRORS)
    return isinstance(exc, psycopg.OperationalError)


def unavailable_detail(exc: BaseException) -> str:
    """A plain sentence for the caller (the driver's text names hosts and ports: it goes to the log only)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "disk is full" in text or "no space left" in text:
        return "the database's storage is full: nothing more can be recorded until space is freed"
    return "the database is unavailable (it may be restarting): try again shortly"


def install(app: FastAPI) -> None:
    """Register the handlers on *app*."""
    document(app)  # the OpenAPI document describes the errors as problem+json

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status == 503 else None  # noqa: PLR2004
        if status == 401:  # noqa: PLR2004
            headers = {"WWW-Authenticate": 'Bearer realm="datatrust"'}
        return problem(
            status,
            slug=exc.slug,
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            headers=headers,
            **exc.extensions,
        )

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            raise exc  # a bug, not an outage: the usual 500
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("database unavailable during %s %s: %s", request.method, request.url.path, first_line)
        return problem(
            503,
            slug=UnavailableError.slug,
            title=UnavailableError.title,
            detail=unavailable_detail(exc),
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    for error in (DBAPIError, PoolTimeoutError, psycopg.Error, sqlite3.Error):
        app.add_exception_handler(error, _database)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or "invalid request"
        return problem(
            422,
            slug="validation-error",
            title="The request is not valid",
            detail=detail,
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Sign-in required", 403: "Not allowed"}
        return problem(
            exc.status_code,
            slug=f"http-{exc.status_code}",
            title=titles.get(exc.status_code, "Request failed"),
            detail=str(exc.detail),
            instance=request.url.path,
            headers=allow_every_method(request, exc),
        )


def allow_every_method(request: Request, exc: StarletteHTTPException) -> dict[str, str] | None:
    """The exception's headers, with a 405's ``Allow`` naming every method served at the path (RFC 9110 §15.5.6).

    Starlette names only the methods of the first route matching the path, and FastAPI makes one
    route per method (``GET`` and ``POST /v1/agreements`` are two routes).
    """
    headers = getattr(exc, "headers", None)
    if exc.status_code != 405:  # noqa: PLR2004
        return headers
    methods = [
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes
        )
    ]
    return {**(headers or {}), "Allow": ", ".join(methods)} if methods else headers


# -- the errors in the OpenAPI document -----------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document. Refusals by the authorisation policy add `action` (and "
    "`required_scope`); validation errors add `errors`, one per field.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string", "description": "A short summary of the kind of problem."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong with this request, in plain words."},
        "instance": {"type": "string", "description": "The path of the request."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
PROBLEM_RESPONSES: dict[str, str] = {
    "422": "The request is not valid: the problem's `errors` name each field and what is wrong with it.",
    "4XX": "The request was refused: 400 malformed, 401 sign in first, 403 not allowed, 404 not found, "
    "409 conflicts with the current state, 413 too large, 429 too many attempts (see Retry-After).",
    "5XX": "500: the server failed (the problem's `request_id` names its log line); 503: the database is "
    "unavailable, try again after Retry-After seconds.",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def document(app: FastAPI) -> None:
    """Describe every operation's errors in *app*'s OpenAPI document as problem+json.

    FastAPI documents only its own 422 (as ``application/json`` with its ``HTTPValidationError``
    body, which this app never sends); this replaces it with the problem document the handlers
    above send, and adds the 4XX and 5XX ranges every operation may answer with. A response a
    route documents itself for a status (e.g. the OAuth token endpoint's errors) is left as it is.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in PROBLEM_RESPONSES.items():
                    current = responses.get(status)
                    if status == "422" and current is not None and "HTTPValidationError" in str(current):
                        responses[status] = _problem_response(description)  # FastAPI's, never sent as such
                    elif status != "422" and current is None:
                        responses[status] = _problem_response(description)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        if "HTTPValidationError" not in str(schema.get("paths", {})):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
