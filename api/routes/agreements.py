"""``/v1/agreements``: data-use agreements, their signatures, amendments and termination."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.routes.governance import CsrfChecked, EntryOut, Public, Reason, read
from consent.principals import Principal, Role
from trust import agreements
from trust.agreements import Agreement, Terms

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])
AgreementPath = Annotated[str, Path(pattern=r"^agr_[A-Za-z0-9_-]{1,60}$", description="The agreement id (agr_…).")]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")]
Manager = Annotated[Principal, Depends(require("agreements.manage"))]


def _instant(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(0), tzinfo=UTC)


class TermsIn(BaseModel):
    """What the agreement permits. Dates without a time mean midnight UTC."""

    model_config = ConfigDict(extra="forbid")

    organisation: str = Field(pattern=r"^org_[a-z0-9_]{2,59}$")
    title: str = Field(min_length=1, max_length=200)
    purposes: list[Code] = Field(min_length=1, max_length=50)
    categories: list[Code] = Field(min_length=1, max_length=100)
    operations: list[Literal["aggregate", "pseudonymised", "identifiable"]] = Field(min_length=1, max_length=3)
    retention_days: int = Field(ge=1, le=3650)
    geography: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=50, examples=[["GB"]])
    valid_from: date | datetime
    valid_until: date | datetime

    def terms(self) -> Terms:
        """As domain terms."""
        return Terms(
            organisation=self.organisation,
            title=self.title,
            purposes=tuple(self.purposes),
            categories=tuple(self.categories),
            operations=tuple(self.operations),
            retention_days=self.retention_days,
            geography=tuple(self.geography),
            valid_from=_instant(self.valid_from),
            valid_until=_instant(self.valid_until),
        )


class SignIn(BaseModel):
    """Sign exactly the terms you read: quote their hash."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, le=1_000_000, description="Defaults to the latest version.")
    terms_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class TerminateIn(BaseModel):
    """End an agreement: it stops being in force at once."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class AgreementOut(BaseModel):
    """One version of an agreement and its status now."""

    agreement: str
    version: int
    supersedes: str | None
    organisation: str
    title: str
    purposes: list[str]
    categories: list[str]
    operations: list[str]
    retention_days: int
    geography: list[str]
    valid_from: str
    valid_until: str
    terms_hash: str
    status: str
    trust_signed_seq: int | None
    organisation_signed_seq: int | None
    terminated_seq: int | None
    termination_reason: str | None
    superseded_seq: int | None


class AgreementDetailOut(AgreementOut):
    """The latest version with every earlier one."""

    versions: list[AgreementOut]


def _out(agreement: Agreement, now: datetime) -> AgreementOut:
    return AgreementOut(**agreements.summary(agreement, now))


@router.get("", response_model=list[AgreementOut], summary="Data-use agreements (latest versions)")
def get_agreements(
    instance: InstanceDep,
    now: ClockDep,
    _: Public,
    organisation: Annotated[str | None, Query(pattern=r"^org_[a-z0-9_]{2,59}$")] = None,
) -> list[AgreementOut]:
    """Every agreement's latest version, with its status now."""
    return [_out(a, now) for a in read(instance, agreements.list_agreements, organisation=organisation)]


@router.get("/{agreement_id}", response_model=AgreementDetailOut, summary="One agreement and its versions")
def get_agreement(agreement_id: AgreementPath, instance: InstanceDep, now: ClockDep, _: Public) -> AgreementDetailOut:
    """The latest version and every version before it."""
    latest: dict[str, Any] = agreements.summary(read(instance, agreements.get_agreement, agreement_id), now)
    versions = read(instance, agreements.agreement_versions, agreement_id)
    return AgreementDetailOut(**latest, versions=[_out(v, now) for v in versions])


@router.post(
    "",
    status_code=201,
    response_model=EntryOut,
    summary="Propose an agreement (the trust signs first)",
    dependencies=[CsrfChecked],
)
def post_agreement(body: TermsIn, instance: InstanceDep, now: ClockDep, principal: Manager) -> EntryOut:
    """Record the trust's ``agreement.signed``; it is in force once the organisation signs the same terms."""
    return EntryOut.of(
        agreements.propose_agreement(instance.ledger, terms=body.terms(), actor=principal.actor, now=now)
    )


@router.post(
    "/{agreement_id}/versions",
    status_code=201,
    response_model=EntryOut,
    summary="Amend an agreement (a new version)",
    dependencies=[CsrfChecked],
)
def post_version(
    agreement_id: AgreementPath, body: TermsIn, instance: InstanceDep, now: ClockDep, principal: Manager
) -> EntryOut:
    """Record the trust's signature on version n+1; it supersedes version n once the organisation signs."""
    entry = agreements.amend_agreement(
        instance.ledger, agreement_id=agreement_id, terms=body.terms(), actor=principal.actor, now=now
    )
    return EntryOut.of(entry)


@router.post(
    "/{agreement_id}/signatures",
    status_code=201,
    response_model=EntryOut,
    summary="Sign an agreement",
    dependencies=[CsrfChecked],
)
def post_signature(
    agreement_id: AgreementPath,
    body: SignIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("agreements.sign"))],
) -> EntryOut:
    """An admin signs for the trust; a partner signs for its own organisation (from its credentials)."""
    party = "trust" if principal.has(Role.ADMIN) else "organisation"
    entry = agreements.sign_agreement(
        instance.ledger,
        agreement_id=agreement_id,
        version=body.version,
        party=party,
        expected_terms_hash=body.terms_hash,
        organisation=principal.organisation,
        actor=principal.actor,
        now=now,
    )
    return EntryOut.of(entry)


@router.post(
    "/{agreement_id}/termination",
    response_model=EntryOut,
    summary="Terminate an agreement",
    dependencies=[CsrfChecked],
)
def post_termination(
    agreement_id: AgreementPath, body: TerminateIn, instance: InstanceDep, now: ClockDep, principal: Manager
) -> EntryOut:
    """Record ``agreement.terminated``."""
    entry = agreements.terminate_agreement(
        instance.ledger, agreement_id=agreement_id, reason=body.reason, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)
