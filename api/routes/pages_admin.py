"""The administrator's page: organisations, people and appointments, agreements, partner clients.

One page (``/admin``) lists everything and holds a form per action; each form posts to its
own route, which declares its action and calls one domain function (``trust.organisations``,
``api.auth.service``, ``trust.membership``, ``trust.agreements``, ``trust.identity``).
A new client's secret and a sign-in link are shown once, on the page that answers the form,
and never put in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.auth import service
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.problems import status_for
from api.routes.governance import read
from api.routes.pages_public import field_error, form_fields, page, require_page, sentence
from consent.principals import Principal, Scope
from consent.vocabulary import Term
from ledger.errors import DomainError
from trust import agreements, identity, membership, organisations
from trust.agreements import Agreement, Terms
from trust.config import OPERATIONS, vocabulary_in_force
from trust.membership import Member
from trust.organisations import ORGANISATION_KINDS, Organisation

router = APIRouter(tags=["pages"], include_in_schema=False)
Admin = Annotated[Principal, Depends(require_page("admin.read"))]
OrgManager = Annotated[Principal, Depends(require_page("organisations.manage"))]
PeopleManager = Annotated[Principal, Depends(require_page("people.manage"))]
AgreementManager = Annotated[Principal, Depends(require_page("agreements.manage"))]
ClientManager = Annotated[Principal, Depends(require_page("clients.manage"))]
OrgPath = Annotated[str, Path(pattern=r"^org_[a-z0-9_]{2,59}$")]
PersonPath = Annotated[str, Path(pattern=r"^person_[A-Za-z0-9_-]{1,56}$")]
AgreementPath = Annotated[str, Path(pattern=r"^agr_[A-Za-z0-9_-]{1,60}$")]
ClientPath = Annotated[str, Path(pattern=r"^client_[A-Za-z0-9_-]{1,60}$")]

DONE = {
    "organisation": "The organisation has been registered.",
    "suspended": "The organisation has been suspended. Every check it makes is refused from now on.",
    "person": "The account has been created.",
    "appointed": "The appointment has been recorded.",
    "agreement": (
        "The agreement has been proposed and signed by the trust. It is in force once the organisation signs it."
    ),
    "terminated": "The agreement has been terminated.",
    "client_suspended": "The client has been suspended. Its tokens stop working at once.",
}
SCOPE_WORDS = {
    Scope.CHECK: "Ask the trust before sharing (checks)",
    Scope.CONSENTS_WRITE: "Record and withdraw consents",
    Scope.REQUESTS_WRITE: "Submit access requests",
    Scope.AGREEMENTS_SIGN: "Sign agreements",
}


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the admin page lists."""

    organisations: list[Organisation]
    people: list[identity.Person]
    members: list[tuple[Member, str | None]]
    agreements: list[tuple[Agreement, str]]
    clients: list[identity.Client]
    purposes: list[Term]
    categories: list[Term]


def _overview(conn: Connection, *, at: datetime) -> Overview:
    vocabulary = vocabulary_in_force(conn)
    return Overview(
        organisations=organisations.list_organisations(conn),
        people=identity.list_people(conn),
        members=membership.directory(conn, at=at),
        agreements=[(a, a.status_at(at)) for a in agreements.list_agreements(conn)],
        clients=identity.list_clients(conn),
        purposes=[vocabulary.terms("purposes")[c] for c in sorted(vocabulary.purposes)],
        categories=[vocabulary.terms("categories")[c] for c in sorted(vocabulary.categories)],
    )


def _admin_page(
    request: Request,
    instance: Instance,
    now: datetime,
    *,
    status_code: int = 200,
    errors: list[dict[str, str]] | None = None,
    form: dict[str, Any] | None = None,
    shown_once: dict[str, str] | None = None,
) -> HTMLResponse:
    return page(
        request,
        "admin.html",
        title="Administration",
        nav="admin",
        overview=read(instance, _overview, at=now),
        kinds=ORGANISATION_KINDS,
        operations=OPERATIONS,
        scopes=SCOPE_WORDS,
        done=DONE.get(request.query_params.get("done", ""), ""),
        errors=errors or [],
        form=form or {},
        shown_once=shown_once,
        status_code=status_code,
    )


def _failed(
    request: Request, instance: Instance, now: datetime, exc: DomainError, *, field: str, form: dict[str, Any]
) -> HTMLResponse:
    errors = [field_error(field, sentence(exc.detail))]
    return _admin_page(request, instance, now, status_code=status_for(exc), errors=errors, form=form)


def _missing(form: dict[str, str], fields: dict[str, str]) -> list[dict[str, str]]:
    return [field_error(name, message) for name, message in fields.items() if not form.get(name, "").strip()]


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, instance: InstanceDep, now: ClockDep, _: Admin) -> HTMLResponse:
    """Organisations, people, agreements and clients, with a form for each action."""
    return _admin_page(request, instance, now)


# -- organisations ------------------------------------------------------------------------------------


@router.post("/admin/organisations", response_class=HTMLResponse)
async def register_organisation(
    request: Request, instance: InstanceDep, now: ClockDep, principal: OrgManager
) -> Response:
    """Record ``org.registered``."""
    form = await form_fields(request)
    errors = _missing(
        form,
        {
            "org_id": "Enter an identifier such as org_riverside_food_bank.",
            "org_name": "Enter the organisation's name.",
        },
    )
    if errors:
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            organisations.register_organisation,
            instance.ledger,
            org_id=form["org_id"].strip(),
            name=form["org_name"],
            kind=form.get("org_kind", ""),
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        field = "org_kind" if "kind" in exc.detail else "org_name" if "name" in exc.detail else "org_id"
        return _failed(request, instance, now, exc, field=field, form=form)
    return RedirectResponse("/admin?done=organisation#organisations", status_code=303)


@router.post("/admin/organisations/{org_id}/suspend", response_class=HTMLResponse)
async def suspend_organisation(
    request: Request, org_id: OrgPath, instance: InstanceDep, now: ClockDep, principal: OrgManager
) -> Response:
    """Record ``org.suspended``."""
    form = await form_fields(request)
    field = f"suspend-{org_id}"
    reason = form.get(field, "").strip()
    if not reason:
        errors = [field_error(field, "Say why the organisation is being suspended.")]
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            organisations.suspend_organisation,
            instance.ledger,
            org_id=org_id,
            reason=reason,
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field=field, form=form)
    return RedirectResponse("/admin?done=suspended#organisations", status_code=303)


# -- people -------------------------------------------------------------------------------------------


@router.post("/admin/people", response_class=HTMLResponse)
async def create_person(request: Request, instance: InstanceDep, now: ClockDep, _: PeopleManager) -> Response:
    """Create an account (with a password, or none: then send a sign-in link)."""
    form = await form_fields(request)
    errors = _missing(form, {"username": "Enter a username.", "display_name": "Enter the person's name."})
    if errors:
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            service.create_account,
            instance,
            username=form["username"].strip(),
            display_name=form["display_name"].strip(),
            email=form.get("email", "").strip() or None,
            password=form.get("password") or None,
            is_admin=form.get("is_admin") == "yes",
            now=now,
        )
    except DomainError as exc:
        detail = exc.detail
        field = "password" if "password" in detail else "email" if "mail" in detail else "username"
        return _failed(request, instance, now, exc, field=field, form=form)
    return RedirectResponse("/admin?done=person#people", status_code=303)


@router.post("/admin/members", response_class=HTMLResponse)
async def appoint(request: Request, instance: InstanceDep, now: ClockDep, principal: PeopleManager) -> Response:
    """Record ``trustee.appointed`` (as trustee or ethics-committee member)."""
    form = await form_fields(request)
    errors = _missing(form, {"member_person": "Choose the person to appoint."})
    if errors:
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            membership.appoint,
            instance.ledger,
            person_id=form["member_person"],
            role=form.get("member_role", ""),
            is_chair=form.get("member_chair") == "yes",
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field="member_person", form=form)
    return RedirectResponse("/admin?done=appointed#people", status_code=303)


@router.post("/admin/people/{person_id}/sign-in-link", response_class=HTMLResponse)
async def sign_in_link(
    request: Request, person_id: PersonPath, instance: InstanceDep, now: ClockDep, _: PeopleManager
) -> Response:
    """A one-time sign-in link, shown once on the page."""
    try:
        token = await run_in_threadpool(service.issue_sign_in_link, instance, person_id=person_id, now=now)
    except DomainError as exc:
        return _failed(request, instance, now, exc, field="", form={})
    link = f"{str(request.base_url).rstrip('/')}/auth/link/{token}"
    shown = {"title": "One-time sign-in link", "label": "Link", "value": link}
    return _admin_page(request, instance, now, shown_once=shown)


# -- agreements ---------------------------------------------------------------------------------------


def _day(text: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(0), tzinfo=UTC)
    except ValueError:
        return None


def _terms(form: dict[str, str], lists: dict[str, list[str]]) -> tuple[Terms | None, list[dict[str, str]]]:
    errors = _missing(
        form,
        {"agreement_org": "Choose the organisation.", "agreement_title": "Give the agreement a title."},
    )
    for name, message in (
        ("purposes", "Choose at least one purpose."),
        ("categories", "Choose at least one kind of information."),
        ("agreement_operations", "Choose at least one form the data may take."),
    ):
        if not lists[name]:
            errors.append(field_error(f"{name}-0", message))
    retention = form.get("retention_days", "").strip()
    if not retention.isdigit() or int(retention) < 1:
        errors.append(field_error("retention_days", "Enter how many days the data may be kept, as a whole number."))
    valid_from, valid_until = _day(form.get("valid_from", "")), _day(form.get("valid_until", ""))
    if valid_from is None:
        errors.append(field_error("valid_from", "Enter the start date, for example 2027-01-01."))
    if valid_until is None:
        errors.append(field_error("valid_until", "Enter the end date, for example 2028-01-01."))
    geography = [g.strip().upper() for g in form.get("geography", "GB").split(",") if g.strip()]
    if errors or valid_from is None or valid_until is None:
        return None, errors
    return Terms(
        organisation=form["agreement_org"],
        title=form["agreement_title"].strip(),
        purposes=tuple(lists["purposes"]),
        categories=tuple(lists["categories"]),
        operations=tuple(lists["agreement_operations"]),
        retention_days=int(retention),
        geography=tuple(geography),
        valid_from=valid_from,
        valid_until=valid_until,
    ), []


@router.post("/admin/agreements", response_class=HTMLResponse)
async def propose_agreement(
    request: Request, instance: InstanceDep, now: ClockDep, principal: AgreementManager
) -> Response:
    """Record the trust's ``agreement.signed`` (the organisation signs the same terms through the API)."""
    raw = await request.form()
    form = await form_fields(request)
    lists = {name: [str(v) for v in raw.getlist(name)] for name in ("purposes", "categories", "agreement_operations")}
    kept: dict[str, Any] = {**form, **lists}
    terms, errors = _terms(form, lists)
    if terms is None:
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=kept)
    try:
        await run_in_threadpool(
            agreements.propose_agreement, instance.ledger, terms=terms, actor=principal.actor, now=now
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field="agreement_title", form=kept)
    return RedirectResponse("/admin?done=agreement#agreements", status_code=303)


@router.post("/admin/agreements/{agreement_id}/terminate", response_class=HTMLResponse)
async def terminate_agreement(
    request: Request, agreement_id: AgreementPath, instance: InstanceDep, now: ClockDep, principal: AgreementManager
) -> Response:
    """Record ``agreement.terminated``."""
    form = await form_fields(request)
    field = f"terminate-{agreement_id}"
    reason = form.get(field, "").strip()
    if not reason:
        errors = [field_error(field, "Say why the agreement is being terminated.")]
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            agreements.terminate_agreement,
            instance.ledger,
            agreement_id=agreement_id,
            reason=reason,
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field=field, form=form)
    return RedirectResponse("/admin?done=terminated#agreements", status_code=303)


# -- partner clients ----------------------------------------------------------------------------------


@router.post("/admin/clients", response_class=HTMLResponse)
async def register_client(request: Request, instance: InstanceDep, now: ClockDep, principal: ClientManager) -> Response:
    """Record ``client.registered``; its secret is shown once on the page that answers."""
    raw = await request.form()
    form = await form_fields(request)
    scopes = [str(s) for s in raw.getlist("client_scopes")]
    kept: dict[str, Any] = {**form, "client_scopes": scopes}
    errors = _missing(
        form, {"client_org": "Choose the organisation.", "client_name": "Say what the system is, in a few words."}
    )
    if not scopes:
        errors.append(field_error("client_scopes-0", "Choose at least one thing the system may do."))
    if errors:
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=kept)
    try:
        client_id, secret = await run_in_threadpool(
            lambda: identity.register_client(
                instance.ledger,
                organisation=form["client_org"],
                name=form["client_name"].strip(),
                scopes=scopes,
                auth_method="client_secret_basic",
                public_jwk=None,
                actor=principal.actor,
                now=now,
            )
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field="client_name", form=kept)
    shown = {"title": f"Client {client_id} registered", "label": "Client secret", "value": secret or ""}
    return _admin_page(request, instance, now, shown_once=shown)


@router.post("/admin/clients/{client_id}/suspend", response_class=HTMLResponse)
async def suspend_client(
    request: Request, client_id: ClientPath, instance: InstanceDep, now: ClockDep, principal: ClientManager
) -> Response:
    """Record ``client.suspended``."""
    form = await form_fields(request)
    field = f"client-suspend-{client_id}"
    reason = form.get(field, "").strip()
    if not reason:
        errors = [field_error(field, "Say why the client is being suspended.")]
        return _admin_page(request, instance, now, status_code=422, errors=errors, form=form)
    try:
        await run_in_threadpool(
            identity.suspend_client,
            instance.ledger,
            client_id=client_id,
            reason=reason,
            actor=principal.actor,
            now=now,
        )
    except DomainError as exc:
        return _failed(request, instance, now, exc, field=field, form=form)
    return RedirectResponse("/admin?done=client_suspended#clients", status_code=303)
