"""The trustees' desk and the ethics committee's page.

``/desk`` lists requests awaiting a vote (with the pre-assessment), on public notice, and
decided or revoked; ``/desk/requests/{id}`` shows one request with the pre-assessment's
findings, public comments, votes so far, and the forms to declare a conflict, vote with
a reason, or revoke an approval. ``/desk/ethics`` lists ethics decisions and records one.
Every form calls one domain function (``trust.requests``, ``trust.votes``, ``trust.ethics``);
the rules (who may vote, when, recusal, deciding) live there.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.problems import status_for
from api.routes.governance import read
from api.routes.pages_public import RequestPath, field_error, form_fields, page, require_page, sentence
from consent.principals import Principal
from ledger.errors import DomainError, NotFoundError
from trust import ethics, register, requests, votes
from trust.config import OPERATIONS

router = APIRouter(tags=["pages"], include_in_schema=False)
Reviewer = Annotated[Principal, Depends(require_page("requests.review"))]
Trustee = Annotated[Principal, Depends(require_page("requests.vote"))]
Revoker = Annotated[Principal, Depends(require_page("requests.revoke"))]
EthicsMember = Annotated[Principal, Depends(require_page("ethics.decide"))]

DONE = {
    "vote": "Your vote has been recorded. You can change it until voting closes: the latest vote counts.",
    "decided": (
        "Your vote has been recorded, and with it the request is decided. The decision is on the public register."
    ),
    "conflict": (
        "Your conflict of interest has been recorded. You are no longer counted on this request and cannot vote on it."
    ),
    "revoked": "The approval has been revoked. Every check that relies on it is refused from now on.",
}
CHOICES = {"approve": "Approve", "reject": "Reject", "abstain": "Abstain"}


# -- the queue and one request ------------------------------------------------------------------------


@router.get("/desk", response_class=HTMLResponse)
def desk(request: Request, instance: InstanceDep, now: ClockDep, principal: Reviewer) -> HTMLResponse:
    """Requests awaiting a vote, on notice, and decided."""
    queue = read(instance, register.desk_queue, at=now, reviewer=principal.id)
    return page(request, "desk.html", title="Trustee desk", nav="desk", queue=queue)


def _request_page(
    request: Request,
    instance: Instance,
    request_id: str,
    principal: Principal,
    now: datetime,
    *,
    status_code: int = 200,
    errors: list[dict[str, str]] | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    try:
        dossier = read(instance, register.request_dossier, request_id, at=now, for_reviewer=True)
    except NotFoundError:
        return page(request, "not_found.html", title="Request not found", nav="desk", status_code=404, what="request")
    is_recused = any(c.trustee == principal.id for c, _ in dossier.conflicts)
    mine = [v for v in dossier.votes if v.vote.trustee == principal.id and v.vote.is_current]
    return page(
        request,
        "desk_request.html",
        title=dossier.summary.request.title,
        nav="desk",
        dossier=dossier,
        is_recused=is_recused,
        my_vote=mine[0] if mine else None,
        done=DONE.get(request.query_params.get("done", ""), ""),
        errors=errors or [],
        form=form or {},
        choices=CHOICES,
        status_code=status_code,
    )


@router.get("/desk/requests/{request_id}", response_class=HTMLResponse)
def desk_request(
    request: Request, request_id: RequestPath, instance: InstanceDep, now: ClockDep, principal: Reviewer
) -> HTMLResponse:
    """One request as trustees review it."""
    return _request_page(request, instance, request_id, principal, now)


def _refused(
    request: Request,
    instance: Instance,
    request_id: str,
    principal: Principal,
    now: datetime,
    exc: DomainError,
    *,
    field: str,
    form: dict[str, str],
) -> HTMLResponse:
    errors = [field_error(field, sentence(exc.detail))]
    return _request_page(
        request, instance, request_id, principal, now, status_code=status_for(exc), errors=errors, form=form
    )


@router.post("/desk/requests/{request_id}/conflict", response_class=HTMLResponse)
async def declare_conflict(
    request: Request, request_id: RequestPath, instance: InstanceDep, now: ClockDep, principal: Trustee
) -> Response:
    """Declare an interest: the trustee is recused from this request from now on."""
    form = await form_fields(request)
    interest = form.get("interest", "").strip()
    if not interest:
        errors = [
            field_error("interest", "Describe your interest, for example how you are connected to the organisation.")
        ]
        return _request_page(request, instance, request_id, principal, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            requests.declare_conflict,
            instance.ledger,
            request_id=request_id,
            trustee=principal.id,
            interest=interest,
            now=now,
        )
    except DomainError as exc:
        return _refused(request, instance, request_id, principal, now, exc, field="interest", form=form)
    return RedirectResponse(f"/desk/requests/{request_id}?done=conflict", status_code=303)


def _vote_errors(form: dict[str, str]) -> list[dict[str, str]]:
    errors = []
    if form.get("choice") not in CHOICES:
        errors.append(field_error("choice-approve", "Choose approve, reject or abstain."))
    if not form.get("reason", "").strip():
        errors.append(field_error("reason", "Give a reason for your vote. It is published with the decision."))
    elif len(form["reason"].strip()) > votes.MAX_REASON:
        errors.append(field_error("reason", f"Shorten your reason to {votes.MAX_REASON} characters or fewer."))
    if form.get("agrees") not in {"yes", "no"}:
        errors.append(field_error("agrees-yes", "Say whether you agree with the pre-assessment."))
    return errors


@router.post("/desk/requests/{request_id}/vote", response_class=HTMLResponse)
async def cast_vote(
    request: Request, request_id: RequestPath, instance: InstanceDep, now: ClockDep, principal: Trustee
) -> Response:
    """Record the trustee's vote; the request is decided at once if that settles it."""
    form = await form_fields(request)
    errors = _vote_errors(form)
    if errors:
        return _request_page(request, instance, request_id, principal, now, status_code=422, errors=errors, form=form)
    try:
        result = await run_in_threadpool(
            votes.cast_vote,
            instance.ledger,
            request_id=request_id,
            trustee=principal.id,
            choice=form["choice"],
            reason=form["reason"].strip(),
            agrees_with_preassessment=form["agrees"] == "yes",
            now=now,
        )
    except DomainError as exc:
        return _refused(request, instance, request_id, principal, now, exc, field="choice-approve", form=form)
    done = "decided" if result.decision is not None else "vote"
    return RedirectResponse(f"/desk/requests/{request_id}?done={done}", status_code=303)


@router.post("/desk/requests/{request_id}/revoke", response_class=HTMLResponse)
async def revoke(
    request: Request, request_id: RequestPath, instance: InstanceDep, now: ClockDep, principal: Revoker
) -> Response:
    """Revoke an approval: binding on every check from this instant."""
    form = await form_fields(request)
    reason = form.get("revoke_reason", "").strip()
    if not reason:
        errors = [field_error("revoke_reason", "Say why the approval is being revoked. The reason is published.")]
        return _request_page(request, instance, request_id, principal, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            requests.revoke_request,
            instance.ledger,
            request_id=request_id,
            reason=reason,
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        return _refused(request, instance, request_id, principal, now, exc, field="revoke_reason", form=form)
    return RedirectResponse(f"/desk/requests/{request_id}?done=revoked", status_code=303)


# -- the ethics committee -----------------------------------------------------------------------------


def _ethics_page(
    request: Request,
    instance: Instance,
    now: datetime,
    *,
    status_code: int = 200,
    errors: list[dict[str, str]] | None = None,
    form: dict[str, Any] | None = None,
    done: bool = False,
) -> HTMLResponse:
    decisions = read(instance, ethics.list_decisions)
    summaries = read(instance, register.request_summaries, at=now)
    titles = {s.request.id: s.request.title for s in summaries}
    return page(
        request,
        "desk_ethics.html",
        title="Ethics committee",
        nav="ethics",
        decisions=list(reversed(decisions)),
        titles=titles,
        requests=summaries,
        outcomes=register.ETHICS_WORDS,
        operations=OPERATIONS,
        errors=errors or [],
        form=form or {},
        done=done,
        status_code=status_code,
    )


@router.get("/desk/ethics", response_class=HTMLResponse)
def ethics_page(request: Request, instance: InstanceDep, now: ClockDep, _: EthicsMember) -> HTMLResponse:
    """Decisions recorded so far, and the form to record one."""
    return _ethics_page(request, instance, now, done="done" in request.query_params)


def _date(form: dict[str, str], name: str, errors: list[dict[str, str]], label: str) -> date | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(field_error(name, f"Enter {label} as a date, for example 2027-06-30."))
        return None


def _obligations(form: dict[str, str], operations: list[str], errors: list[dict[str, str]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cohort = form.get("min_cohort", "").strip()
    if cohort:
        if cohort.isdigit() and int(cohort) > 0:
            found.append({"type": "min_cohort", "value": int(cohort)})
        else:
            errors.append(field_error("min_cohort", "Enter the smallest group size as a whole number, such as 20."))
    for name, label in (("delete_by", "the deletion date"), ("review_by", "the report-back date")):
        when = _date(form, name, errors, label)
        if when is not None:
            found.append({"type": name, "value": when.isoformat()})
    if operations:
        found.append({"type": "operations", "value": operations})
    return found


@router.post("/desk/ethics", response_class=HTMLResponse)
async def record_ethics_decision(
    request: Request, instance: InstanceDep, now: ClockDep, principal: EthicsMember
) -> Response:
    """Record ``ethics.decided`` from the form."""
    raw = await request.form()
    form = await form_fields(request)
    operations = [str(o) for o in raw.getlist("operations") if str(o) in OPERATIONS]
    errors: list[dict[str, str]] = []
    if form.get("outcome") not in register.ETHICS_WORDS:
        errors.append(field_error("outcome-approved", "Choose the committee's decision."))
    about, project = form.get("request", "").strip(), form.get("project", "").strip()
    if not about and not project:
        errors.append(field_error("request", "Choose the request this decision is about, or name a project."))
    obligations = _obligations(form, operations, errors)
    expires = _date(form, "expires_at", errors, "the end date")
    kept = {**form, "operations": operations}
    if errors:
        return _ethics_page(request, instance, now, status_code=422, errors=errors, form=kept)
    try:
        await run_in_threadpool(
            ethics.record_decision,
            instance.ledger,
            outcome=form["outcome"],
            request=about or None,
            project=project or None,
            conditions_text=form.get("conditions_text", ""),
            obligations=obligations,
            expires_at=None if expires is None else datetime.combine(expires, time(0), tzinfo=UTC),
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        field = "conditions_text" if "condition" in exc.detail or "obligation" in exc.detail else ""
        errors = [field_error(field, sentence(exc.detail))]
        return _ethics_page(request, instance, now, status_code=status_for(exc), errors=errors, form=kept)
    return RedirectResponse("/desk/ethics?done=1", status_code=303)
