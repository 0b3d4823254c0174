"""The individual's pages: sign in with a receipt's access code, see and withdraw consents, see uses, erase.

An individual is signed in for exactly one subject (the session made from the access
code), and every page acts on that subject only: another person's consent is "not
found", as in the API (``api/routes/me.py``), whose domain calls these pages share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.auth import store
from api.auth.service import SignInThrottledError
from api.auth.sessions import end_session, start_individual_session
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.pages import organisation_names
from api.routes.governance import read
from api.routes.me import redeem_throttled
from api.routes.pages_public import Csrf, field_error, form_fields, page, require_page
from consent import actions
from consent.principals import Principal
from consent.schemas import ConsentOut
from ledger.errors import DomainError, ForbiddenError, NotFoundError, ValidationError
from trust import uses

router = APIRouter(tags=["pages"], include_in_schema=False)
ConsentPath = Annotated[str, Path(pattern=r"^con_[A-Za-z0-9._-]{1,64}$")]
Anyone = Annotated[Principal, Depends(require_page("session.create"))]
Reader = Annotated[Principal, Depends(require_page("me.read"))]
Writer = Annotated[Principal, Depends(require_page("me.write"))]
WITHDRAWABLE = ("active", "pending")
MAX_REASON = 500


def _subject(principal: Principal) -> str:
    if principal.subject is None:
        msg = f"{principal.id} is not signed in as an individual"
        raise ForbiddenError(msg)
    return principal.subject


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/me") or target.startswith("//") or "\\" in target:
        return "/me"
    return target


# -- signing in -------------------------------------------------------------------------------------


def _sign_in_page(
    request: Request, *, next_: str, status_code: int = 200, errors: list[dict[str, str]] | None = None
) -> HTMLResponse:
    return page(
        request,
        "me_sign_in.html",
        title="Sign in with your access code",
        nav="me",
        next=_safe_next(next_),
        errors=errors or [],
        status_code=status_code,
    )


@router.get("/me/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, _: Anyone) -> HTMLResponse:
    """The access-code form."""
    return _sign_in_page(request, next_=request.query_params.get("next", "/me"))


@router.post("/me/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, instance: InstanceDep, now: ClockDep, _: Anyone, _csrf: Csrf) -> Response:
    """Check the code (rate-limited per address) and start a session for its subject."""
    form = await form_fields(request)
    code, target = form.get("access_code", "").strip(), _safe_next(form.get("next"))
    if not code:
        errors = [field_error("access_code", "Enter the access code from your consent receipt.")]
        return _sign_in_page(request, next_=target, status_code=422, errors=errors)
    address = request.client.host if request.client else "unknown"
    try:
        subject = await run_in_threadpool(redeem_throttled, instance, code, address=address, now=now)
    except SignInThrottledError:
        message = "There have been too many attempts to sign in from your connection. Wait a minute and try again."
        return _sign_in_page(request, next_=target, status_code=429, errors=[field_error("access_code", message)])
    except (ForbiddenError, ValidationError):
        message = (
            "We could not sign you in with that code. Check that you typed it exactly as it appears on your "
            "receipt, including the dashes."
        )
        return _sign_in_page(request, next_=target, status_code=403, errors=[field_error("access_code", message)])
    response = RedirectResponse(target, status_code=303)
    start_individual_session(response, instance, subject, now)
    return response


# -- my consents and their uses -----------------------------------------------------------------------


@router.get("/me", response_class=HTMLResponse)
def my_page(request: Request, instance: InstanceDep, now: ClockDep, principal: Reader) -> HTMLResponse:
    """Every consent in plain words, its status, what was asked and decided, and what to do next."""
    subject = _subject(principal)
    org_name = organisation_names(instance)
    mine = actions.consents_of(instance.ledger, subject, at=now, name_of=org_name)
    history = read(instance, uses.uses_of, subject)
    withdrawn = next(
        (c for c in mine.consents if c.consent == request.query_params.get("withdrawn") and c.withdrawal), None
    )
    return page(
        request,
        "me.html",
        title="Your consents",
        nav="me",
        consents=mine.consents,
        history=history,
        withdrawn=withdrawn,
        withdrawable=WITHDRAWABLE,
        org_name=org_name,
    )


def _own_consent(instance: Instance, consent_id: str, subject: str, now: datetime) -> ConsentOut:
    view = actions.consent_of(instance.ledger, consent_id, subject, at=now)
    return actions.present(view, at=now, name_of=organisation_names(instance))


def _withdraw_page(
    request: Request,
    instance: Instance,
    consent: ConsentOut,
    *,
    status_code: int = 200,
    errors: list[dict[str, str]] | None = None,
) -> HTMLResponse:
    return page(
        request,
        "me_withdraw.html",
        title="Withdraw your consent",
        nav="me",
        consent=consent,
        withdrawable=WITHDRAWABLE,
        org_name=organisation_names(instance),
        errors=errors or [],
        status_code=status_code,
    )


def _not_found(request: Request) -> HTMLResponse:
    return page(request, "not_found.html", title="Consent not found", nav="me", status_code=404, what="consent")


@router.get("/me/consents/{consent_id}/withdraw", response_class=HTMLResponse)
def withdraw_page(
    request: Request, consent_id: ConsentPath, instance: InstanceDep, now: ClockDep, principal: Reader
) -> HTMLResponse:
    """What withdrawing means, and the button that does it."""
    try:
        consent = _own_consent(instance, consent_id, _subject(principal), now)
    except NotFoundError:
        return _not_found(request)
    return _withdraw_page(request, instance, consent)


@router.post("/me/consents/{consent_id}/withdraw", response_class=HTMLResponse)
async def withdraw(
    request: Request, consent_id: ConsentPath, instance: InstanceDep, now: ClockDep, principal: Writer
) -> Response:
    """Withdraw at once, then show the consents page with the result."""
    subject = _subject(principal)
    reason = (await form_fields(request)).get("reason", "").strip()
    try:
        if len(reason) > MAX_REASON:
            consent = _own_consent(instance, consent_id, subject, now)
            message = (
                f"Your reason is {len(reason)} characters long. Shorten it to {MAX_REASON} or fewer, or leave it out."
            )
            return _withdraw_page(request, instance, consent, status_code=422, errors=[field_error("reason", message)])
        await run_in_threadpool(
            actions.withdraw,
            instance.ledger,
            consent=consent_id,
            by="subject",
            requester=subject,
            actor=subject,
            reason=reason,
            now=now,
        )
    except NotFoundError:
        return _not_found(request)
    except DomainError as exc:
        consent = _own_consent(instance, consent_id, subject, now)
        return _withdraw_page(request, instance, consent, status_code=409, errors=[field_error("", exc.detail)])
    return RedirectResponse(f"/me?withdrawn={consent_id}#consent-{consent_id}", status_code=303)


# -- erasure ----------------------------------------------------------------------------------------


@router.get("/me/erase", response_class=HTMLResponse)
def erase_page(request: Request, principal: Reader) -> HTMLResponse:
    """What erasure removes and what it keeps, and the confirmation."""
    _subject(principal)
    return page(request, "me_erase.html", title="Erase your personal details", nav="me", errors=[])


@router.post("/me/erase", response_class=HTMLResponse)
async def erase(request: Request, instance: InstanceDep, now: ClockDep, principal: Writer) -> Response:
    """Destroy the key to the person's details, end every consent and sign them out."""
    subject = _subject(principal)
    if (await form_fields(request)).get("confirm") != "yes":
        message = "Tick the box to confirm that you understand erasure cannot be undone."
        return page(
            request,
            "me_erase.html",
            title="Erase your personal details",
            nav="me",
            errors=[field_error("confirm", message)],
            status_code=422,
        )

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
    response = page(request, "me_erased.html", title="Your details have been erased", result=result, signed_out=True)
    end_session(request, response, instance)
    return response
