"""The individual's API: sign in with a receipt access code, see, withdraw, erase.

An individual is signed in for exactly one subject. Every route acts on that
subject only: another subject's consent id is "not found", the same answer as an
id that does not exist, so nothing is revealed about anyone else.

Sign-in is rate-limited per client address with the identity machinery's failure
counter (``api/auth/store.py``), shared with password sign-ins. ``GET /v1/me/uses`` lists the
check decisions that named the subject and the deletions partners confirmed (``trust/uses.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.auth import service as auth_service
from api.auth import store
from api.auth.sessions import end_session, start_individual_session, verify_csrf
from api.auth.tokens import DEFAULT_TTL_SECONDS, issue_access_token
from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.pages import organisation_names, render, wants_html
from api.routes.auth import json_body
from api.routes.governance import read
from consent import actions
from consent.principals import Principal, Role
from consent.schemas import (
    ConsentsOut,
    ErasureIn,
    ErasureOut,
    ReceiptOut,
    SignedInOut,
    SignInIn,
    WithdrawIn,
    WithdrawOut,
)
from ledger.errors import ForbiddenError, ValidationError
from trust import uses
from trust.uses import UsesOut

router = APIRouter(prefix="/v1/me", tags=["me"])
CsrfChecked = Depends(verify_csrf)
Csrf = Annotated[None, Depends(verify_csrf)]  # after the principal: the public gets 401 before any CSRF check
ConsentPath = Annotated[str, Path(pattern=r"^con_[A-Za-z0-9._-]{1,64}$", description="The consent id (con_…).")]
Reader = Annotated[Principal, Depends(require("me.read"))]
Writer = Annotated[Principal, Depends(require("me.write"))]
AFTER_SIGN_IN = "/me"


def _subject(principal: Principal) -> str:
    if principal.subject is None:
        msg = f"{principal.id} is not signed in as an individual"
        raise ForbiddenError(msg)
    return principal.subject


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return AFTER_SIGN_IN
    return target


def redeem_throttled(instance: Instance, code: str, *, address: str, now: datetime) -> str:
    """Redeem an access code, refusing unchecked once the address has failed too often."""
    # Its own counter per address: sharing the password sign-in's "address:" key let mistyped receipt codes
    # lock trustees at the same address out of password sign-in (and the reverse). A success clears nothing:
    # a code can be used again, so clearing would let one valid code reset the limit between guesses.
    key = "access-code-address:" + address
    with instance.db.engine.connect() as conn:
        failures = store.recent_failures(conn, key, now=now, window=auth_service.WINDOW)
    if failures >= auth_service.ADDRESS_LIMIT:
        msg = "too many failed sign-ins from your address in the last minute; wait a minute and try again"
        raise auth_service.SignInThrottledError(msg, retry_after=int(auth_service.WINDOW.total_seconds()))
    try:
        return actions.redeem(instance.ledger, code, now=now)
    except (ForbiddenError, ValidationError):
        with instance.db.write_engine.begin() as conn:
            store.record_failure(conn, [key], now=now, window=auth_service.WINDOW)
        raise


@router.post(
    "/sign-in",
    response_model=SignedInOut,
    summary="Sign in with the access code on a consent receipt (JSON or form)",
    dependencies=[CsrfChecked],
    responses={303: {"description": "A form sign-in: on to the individual's pages"}},
    openapi_extra=json_body(SignInIn),
)
async def sign_in(
    request: Request, instance: InstanceDep, now: ClockDep, _: Annotated[Principal, Depends(require("session.create"))]
) -> Response:
    """Start a session for the receipt's subject and return a short-lived bearer token for API use.

    A wrong code gets the same answer whether or not anyone has such a code, and
    whether or not its subject was erased.
    """
    form = _is_form(request)
    if form:
        data = await request.form()
        code, target = str(data.get("access_code") or ""), _safe_next(str(data.get("next") or ""))
    else:
        try:
            code, target = SignInIn.model_validate_json(await request.body()).access_code, AFTER_SIGN_IN
        except PydanticValidationError:
            msg = 'send a JSON object such as {"access_code": "XXXX-XXXX-…"}'
            raise ValidationError(msg) from None
    address = request.client.host if request.client else "unknown"
    try:
        subject = await run_in_threadpool(redeem_throttled, instance, code, address=address, now=now)
    except (ForbiddenError, ValidationError, auth_service.SignInThrottledError) as exc:
        if not form:
            raise
        status = 429 if isinstance(exc, auth_service.SignInThrottledError) else 403
        return render(
            request,
            "problem.html",
            status_code=status,
            title="We could not sign you in",
            detail=exc.detail,
            back_url="/me/sign-in",
        )
    principal = Principal(id=subject, roles=frozenset({Role.INDIVIDUAL}), subject=subject)
    token = issue_access_token(instance, principal, now=now)
    response: Response
    if form:
        response = RedirectResponse(target, status_code=303)
    else:
        body = SignedInOut(subject=subject, access_token=token, expires_in=DEFAULT_TTL_SECONDS)
        response = JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
    start_individual_session(response, instance, subject, now)
    return response


@router.get("/consents", response_model=ConsentsOut, summary="Every consent I gave, with its status")
def my_consents(instance: InstanceDep, now: ClockDep, principal: Reader) -> ConsentsOut:
    """Newest first, each with its status now (and the W3C DPV term) and a plain-language summary."""
    return actions.consents_of(instance.ledger, _subject(principal), at=now, name_of=organisation_names(instance))


@router.get("/uses", response_model=UsesOut, summary="Who asked to use my data, and what was decided")
def my_uses(instance: InstanceDep, principal: Reader) -> UsesOut:
    """Every check decision that named me (newest first: who asked, for what, the answer for me) and deletions."""
    return read(instance, uses.uses_of, _subject(principal))


@router.get(
    "/receipts/{consent_id}",
    response_model=ReceiptOut,
    summary="The receipt of one of my consents (JSON, or a printable page)",
    responses={200: {"content": {"text/html": {}}}},
)
def my_receipt(
    request: Request,
    consent_id: ConsentPath,
    instance: InstanceDep,
    now: ClockDep,
    principal: Reader,
    format_: Annotated[str | None, Query(alias="format", pattern="^(json|html)$")] = None,
) -> ReceiptOut | HTMLResponse:
    """The ledger entry, its inclusion proof and a signed checkpoint; verifiable offline.

    The access code is not part of it: the trust showed it once and keeps only its hash.
    """
    view, receipt = actions.receipt_of(instance.ledger, consent_id, _subject(principal), at=now)
    if wants_html(request, format_):
        return render(
            request,
            "receipt.html",
            consent=actions.present(view, at=now, name_of=organisation_names(instance)),
            receipt=receipt,
            sign_in_url=str(request.base_url).rstrip("/") + "/me/sign-in",
            receipt_json_url=f"/v1/me/receipts/{consent_id}?format=json",
        )
    return receipt


@router.post(
    "/consents/{consent_id}/withdraw",
    response_model=WithdrawOut,
    summary="Withdraw one of my consents",
    responses={303: {"description": "A form post: back to the page it came from"}},
    openapi_extra=json_body(WithdrawIn, required=False),
)
async def withdraw(
    request: Request, consent_id: ConsentPath, instance: InstanceDep, now: ClockDep, principal: Writer, _csrf: Csrf
) -> Response | WithdrawOut:
    """Effective from this instant for every check; withdrawing again changes nothing and says so."""
    form = _is_form(request)
    if form:
        data = await request.form()
        reason, target = str(data.get("reason") or "")[:500], _safe_next(str(data.get("next") or ""))
    else:
        raw = await request.body()
        try:
            reason, target = (WithdrawIn.model_validate_json(raw) if raw.strip() else WithdrawIn()).reason, ""
        except PydanticValidationError:
            msg = 'send nothing, or a JSON object such as {"reason": "…"} (at most 500 characters)'
            raise ValidationError(msg, errors=[{"field": "reason", "message": msg}]) from None
    subject = _subject(principal)
    result = await run_in_threadpool(
        actions.withdraw,
        instance.ledger,
        consent=consent_id,
        by="subject",
        requester=subject,
        actor=subject,
        reason=reason,
        now=now,
    )
    return RedirectResponse(target, status_code=303) if form else result


@router.post(
    "/erasure",
    response_model=ErasureOut,
    summary="Erase my personal details and end all my consents",
    responses={303: {"description": "A form post: on to the home page"}},
    openapi_extra=json_body(ErasureIn),
)
async def erase(request: Request, instance: InstanceDep, now: ClockDep, principal: Writer, _csrf: Csrf) -> Response:
    """Destroy the key that encrypts my details (crypto-shredding); my access codes stop working.

    Needs ``{"confirm": true}``: it cannot be undone. The ledger keeps only the
    opaque subject reference and still verifies.
    """
    form = _is_form(request)
    if form:
        confirm = str((await request.form()).get("confirm") or "").lower() in {"true", "yes", "on", "1"}
    else:
        try:
            confirm = ErasureIn.model_validate_json(await request.body()).confirm
        except PydanticValidationError:
            msg = 'send {"confirm": true} to erase your personal details'
            raise ValidationError(msg, errors=[{"field": "confirm", "message": msg}]) from None
    if not confirm:
        msg = "erasure cannot be undone: confirm it by sending confirm = true"
        raise ValidationError(msg, errors=[{"field": "confirm", "message": msg}])
    subject = _subject(principal)

    def end_sessions(conn: Connection) -> None:
        store.revoke_sessions_for(conn, subject)

    result = await run_in_threadpool(
        actions.erase,
        instance.ledger,
        instance.vault,
        subject=subject,
        by="subject",
        actor=subject,
        now=now,
        also=end_sessions,
    )
    response: Response = RedirectResponse("/", status_code=303) if form else JSONResponse(result.model_dump())
    end_session(request, response, instance)
    return response
