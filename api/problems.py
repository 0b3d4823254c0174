"""The one place that maps domain errors to HTTP: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://datatrust.local/problems/"

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


def install(app: FastAPI) -> None:
    """Register the handlers on *app*."""

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
            headers=getattr(exc, "headers", None),
        )
