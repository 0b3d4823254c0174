"""Partner API for consent: record a consent collected by a partner, withdraw on the person's behalf.

Also the public vocabulary of purposes and data categories. The collecting
organisation always comes from the caller's token, never from the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.auth.sessions import verify_csrf
from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.pages import organisation_names, render, wants_html
from consent import actions
from consent.principals import Principal
from consent.schemas import ConsentIn, RecordedOut, VocabularyOut, WithdrawIn, WithdrawOut
from ledger.errors import ForbiddenError

router = APIRouter(prefix="/v1", tags=["consents"])
Csrf = Annotated[None, Depends(verify_csrf)]  # after the principal: the public gets 401 before any CSRF check
ConsentPath = Annotated[str, Path(pattern=r"^con_[A-Za-z0-9._-]{1,64}$", description="The consent id (con_…).")]
Partner = Annotated[Principal, Depends(require("consents.write"))]
CONSENT_EXAMPLES = {
    "new person": {
        "summary": "A referral consent from someone new to the trust",
        "value": {
            "person": {"name": "Tom Price", "contact": "07700 900123"},
            "purposes": ["service_delivery.referral"],
            "categories": ["contact", "housing"],
            "wording_version": "food-bank-2026-03",
            "wording_text": "We would like to refer you to Northside Housing. Do you agree?",
        },
    }
}


def _organisation(principal: Principal) -> str:
    if principal.organisation is None:
        msg = f"{principal.id} does not act for an organisation, so it cannot record consent"
        raise ForbiddenError(msg)
    return principal.organisation


@router.post(
    "/consents",
    status_code=201,
    response_model=RecordedOut,
    summary="Record a consent collected by your organisation",
    responses={201: {"content": {"text/html": {}}, "description": "The receipt (JSON, or a printable page)"}},
)
async def record_consent(
    request: Request,
    body: Annotated[ConsentIn, Body(openapi_examples=CONSENT_EXAMPLES)],
    instance: InstanceDep,
    now: ClockDep,
    principal: Partner,
    _csrf: Csrf,
    format_: Annotated[str | None, Query(alias="format", pattern="^(json|html)$")] = None,
) -> RecordedOut | HTMLResponse:
    """Append ``consent.granted`` and answer with the receipt, including the person's access code (shown once).

    Give ``person`` for someone new (the trust issues a ``sub_…`` and keeps the details
    encrypted in its vault) or ``subject`` for someone the trust already knows.
    Unknown purpose or category codes are refused with 422, naming the closest known codes.
    """
    recorded = await run_in_threadpool(
        actions.record,
        instance.ledger,
        instance.vault,
        body,
        organisation=_organisation(principal),
        actor=principal.actor,
        now=now,
    )
    if wants_html(request, format_):
        view = await run_in_threadpool(actions.consent_of, instance.ledger, recorded.consent, recorded.subject, at=now)
        return render(
            request,
            "receipt.html",
            status_code=201,
            consent=actions.present(view, at=now, name_of=organisation_names(instance)),
            receipt=recorded.receipt,
            sign_in_url=str(request.base_url).rstrip("/") + "/me/sign-in",
            receipt_json_url=None,
        )
    return recorded


@router.post(
    "/consents/{consent_id}/withdraw",
    response_model=WithdrawOut,
    summary="Withdraw a consent on the person's behalf",
)
def withdraw_consent(
    consent_id: ConsentPath,
    instance: InstanceDep,
    now: ClockDep,
    principal: Partner,
    _csrf: Csrf,
    body: Annotated[WithdrawIn | None, Body()] = None,
) -> WithdrawOut:
    """Append ``consent.withdrawn`` (``by: organisation``), effective at once; repeating it changes nothing.

    Only the organisation that collected the consent may withdraw it on the person's
    behalf; for any other caller the consent is "not found".
    """
    return actions.withdraw(
        instance.ledger,
        consent=consent_id,
        by="organisation",
        requester=_organisation(principal),
        actor=principal.actor,
        reason=(body or WithdrawIn()).reason,
        now=now,
    )


@router.get("/vocabularies", response_model=VocabularyOut, summary="Purposes and data categories in force")
def get_vocabularies(instance: InstanceDep, _: Annotated[Principal, Depends(require("public.read"))]) -> VocabularyOut:
    """The trust's vocabulary: every purpose and data category with its plain-language label.

    Consent to a broader code covers the narrower codes below it (``research`` covers
    ``research.health``), never the reverse. Special categories need explicit consent.
    """
    return actions.vocabulary(instance.ledger)
