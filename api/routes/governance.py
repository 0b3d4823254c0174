"""Governance configuration, trustees and ethics members, and organisations.

``/v1/governance/config`` (read, export as a TOML template, adopt a new one),
``/v1/governance/members`` (appoint, remove) and ``/v1/organisations`` (register, suspend).
Thin: parse, call one domain function, answer. Payload formats are in ``trust/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth.sessions import verify_csrf
from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from consent.principals import Principal
from ledger.entry import LedgerEntry
from trust import membership, organisations
from trust.config import (
    AdoptedConfig,
    GovernanceConfig,
    adopt_config,
    config_history,
    config_in_force,
    export_template,
)
from trust.organisations import ORGANISATION_KINDS, Organisation

router = APIRouter(tags=["governance"])
T = TypeVar("T")
CsrfChecked = Depends(verify_csrf)
Public = Annotated[Principal, Depends(require("public.read"))]
OrgPath = Annotated[str, Path(pattern=r"^org_[a-z0-9_]{2,59}$", description="The organisation id (org_…).")]
PersonPath = Annotated[str, Path(pattern=r"^person_[A-Za-z0-9_-]{1,56}$", description="The person id.")]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]


def read(instance: Instance, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call a domain read ``fn(conn, …)`` on a short read transaction."""
    with instance.db.engine.connect() as conn:
        return fn(conn, *args, **kwargs)


class EntryOut(BaseModel):
    """The ledger entry that recorded an action."""

    seq: int
    kind: str
    at: str
    leaf_hash: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, entry: LedgerEntry) -> EntryOut:
        """From a ledger entry."""
        return cls(seq=entry.seq, kind=entry.kind, at=entry.at, leaf_hash=entry.leaf_hash.hex(), payload=entry.payload)


# -- governance config ---------------------------------------------------------------------


class ConfigOut(BaseModel):
    """A governance configuration as adopted on the ledger."""

    seq: int
    at: str
    governance_hash: str
    governance: dict[str, Any]

    @classmethod
    def of(cls, adopted: AdoptedConfig) -> ConfigOut:
        """From an adopted configuration."""
        return cls(
            seq=adopted.seq,
            at=adopted.at,
            governance_hash=adopted.governance_hash,
            governance=adopted.config.to_document(),
        )


class ConfigIn(BaseModel):
    """A complete governance configuration document (the same tables as ``trust/governance.toml``)."""

    model_config = ConfigDict(extra="forbid")

    governance: dict[str, Any] = Field(max_length=32, description="The tables, by name.")


@router.get(
    "/v1/governance/config",
    response_model=ConfigOut,
    summary="The governance configuration in force",
    responses={200: {"content": {"application/toml": {}}, "description": "JSON, or a TOML template"}},
)
def get_config(
    instance: InstanceDep,
    _: Public,
    format_: Annotated[Literal["json", "toml"], Query(alias="format")] = "json",
) -> ConfigOut | PlainTextResponse:
    """Quorum, decision rule, periods and limits in force; ``?format=toml`` exports it as a template."""
    if format_ == "toml":
        return PlainTextResponse(read(instance, export_template, source=instance.name), media_type="application/toml")
    adopted = read(instance, config_in_force)
    return ConfigOut.of(adopted)


@router.get("/v1/governance/config/history", response_model=list[ConfigOut], summary="Every adopted configuration")
def get_config_history(instance: InstanceDep, _: Public) -> list[ConfigOut]:
    """Each configuration and the entry that adopted it, oldest first."""
    return [ConfigOut.of(a) for a in read(instance, config_history)]


@router.put(
    "/v1/governance/config",
    response_model=EntryOut,
    summary="Adopt a new governance configuration",
    dependencies=[CsrfChecked],
)
def put_config(
    body: ConfigIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("trust.configure"))],
) -> EntryOut:
    """Record ``trust.configured``: in force for requests submitted from now on (earlier ones keep theirs)."""
    config = GovernanceConfig.from_document(body.governance)
    return EntryOut.of(adopt_config(instance.ledger, config, actor=principal.actor, now=now))


# -- members -------------------------------------------------------------------------------


class MemberOut(BaseModel):
    """A trustee or ethics-committee member's appointment."""

    person_id: str
    display_name: str | None
    role: str
    is_chair: bool
    has_vote_key: bool
    appointed_seq: int
    appointed_at: str
    removed_seq: int | None
    removed_at: str | None
    removal_reason: str | None


class AppointIn(BaseModel):
    """Appoint a person (an existing account) as trustee or ethics-committee member."""

    model_config = ConfigDict(extra="forbid")

    person_id: str = Field(pattern=r"^person_[A-Za-z0-9_-]{1,56}$")
    role: Literal["trustee", "ethics"]
    is_chair: bool = False
    vote_key: str | None = Field(default=None, max_length=64, description="Base64 Ed25519 public key for signed votes.")


class RemoveIn(BaseModel):
    """End an appointment."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["trustee", "ethics"]
    reason: Reason


@router.get("/v1/governance/members", response_model=list[MemberOut], summary="Trustees and ethics members")
def get_members(
    instance: InstanceDep,
    now: ClockDep,
    _: Public,
    include_former: Annotated[bool, Query(description="Also list people no longer in office.")] = False,
) -> list[MemberOut]:
    """Who holds office now (and, if asked, everyone who ever did)."""
    rows = read(instance, membership.directory, at=now, include_former=include_former)
    return [
        MemberOut(
            person_id=m.person_id,
            display_name=name,
            role=m.role,
            is_chair=m.is_chair,
            has_vote_key=m.vote_key is not None,
            appointed_seq=m.appointed_seq,
            appointed_at=m.appointed_at,
            removed_seq=m.removed_seq,
            removed_at=m.removed_at,
            removal_reason=m.removal_reason,
        )
        for m, name in rows
    ]


@router.post(
    "/v1/governance/members",
    status_code=201,
    response_model=EntryOut,
    summary="Appoint a trustee or ethics member",
    dependencies=[CsrfChecked],
)
def post_member(
    body: AppointIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("people.manage"))],
) -> EntryOut:
    """Record ``trustee.appointed``."""
    entry = membership.appoint(
        instance.ledger,
        person_id=body.person_id,
        role=body.role,
        is_chair=body.is_chair,
        vote_key=body.vote_key,
        actor=principal.actor,
        now=now,
    )
    return EntryOut.of(entry)


@router.post(
    "/v1/governance/members/{person_id}/removal",
    response_model=EntryOut,
    summary="Remove a trustee or ethics member",
    dependencies=[CsrfChecked],
)
def post_member_removal(
    person_id: PersonPath,
    body: RemoveIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("people.manage"))],
) -> EntryOut:
    """Record ``trustee.removed``: the person stops holding the role from this instant."""
    entry = membership.remove(
        instance.ledger, person_id=person_id, role=body.role, reason=body.reason, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)


# -- organisations -------------------------------------------------------------------------


class OrganisationOut(BaseModel):
    """A registered organisation and its standing."""

    id: str
    name: str
    kind: str
    status: str
    registered_seq: int
    registered_at: str
    suspended_seq: int | None
    suspended_at: str | None
    suspension_reason: str | None

    @classmethod
    def of(cls, org: Organisation) -> OrganisationOut:
        """From the domain object."""
        return cls(
            id=org.id,
            name=org.name,
            kind=org.kind,
            status=org.status,
            registered_seq=org.registered_seq,
            registered_at=org.registered_at,
            suspended_seq=org.suspended_seq,
            suspended_at=org.suspended_at,
            suspension_reason=org.suspension_reason,
        )


class OrganisationIn(BaseModel):
    """Register an organisation under an id of your choosing."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^org_[a-z0-9][a-z0-9_]{1,58}$", examples=["org_riverside_food_bank"])
    name: str = Field(min_length=1, max_length=200)
    kind: Literal[ORGANISATION_KINDS]  # type: ignore[valid-type]


class SuspendIn(BaseModel):
    """Suspend an organisation: every check for it is denied from this instant."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


@router.get("/v1/organisations", response_model=list[OrganisationOut], summary="Registered organisations")
def get_organisations(instance: InstanceDep, _: Public) -> list[OrganisationOut]:
    """Every organisation, in order of registration."""
    return [OrganisationOut.of(o) for o in read(instance, organisations.list_organisations)]


@router.get("/v1/organisations/{org_id}", response_model=OrganisationOut, summary="One organisation")
def get_organisation(org_id: OrgPath, instance: InstanceDep, _: Public) -> OrganisationOut:
    """An organisation and whether it is in good standing."""
    return OrganisationOut.of(read(instance, organisations.require_organisation, org_id))


@router.post(
    "/v1/organisations",
    status_code=201,
    response_model=EntryOut,
    summary="Register an organisation",
    dependencies=[CsrfChecked],
)
def post_organisation(
    body: OrganisationIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("organisations.manage"))],
) -> EntryOut:
    """Record ``org.registered``."""
    entry = organisations.register_organisation(
        instance.ledger, org_id=body.id, name=body.name, kind=body.kind, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)


@router.post(
    "/v1/organisations/{org_id}/suspension",
    response_model=EntryOut,
    summary="Suspend an organisation",
    dependencies=[CsrfChecked],
)
def post_suspension(
    org_id: OrgPath,
    body: SuspendIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("organisations.manage"))],
) -> EntryOut:
    """Record ``org.suspended``."""
    entry = organisations.suspend_organisation(
        instance.ledger, org_id=org_id, reason=body.reason, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)
