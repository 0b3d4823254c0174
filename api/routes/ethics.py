"""``/v1/ethics-decisions``: the ethics committee's decisions, with conditions in words and as obligations."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.routes.governance import CsrfChecked, EntryOut, Public, read
from consent.principals import Principal
from trust import ethics
from trust.ethics import EthicsDecision

router = APIRouter(prefix="/v1/ethics-decisions", tags=["ethics"])
DecisionPath = Annotated[str, Path(pattern=r"^eth_[A-Za-z0-9_-]{1,60}$", description="The decision id (eth_…).")]


class ObligationIn(BaseModel):
    """A machine-checkable condition (types: min_cohort, delete_by, review_by, retention_days, operations, ...)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=32)
    value: (
        Annotated[int, Field(ge=-(2**53) + 1, le=2**53 - 1)]  # what canonical JSON (RFC 8785) can hash
        | Annotated[str, Field(max_length=200)]
        | Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=50)]
    )


class DecisionIn(BaseModel):
    """An ethics decision about an access request or a project."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["approved", "approved_with_conditions", "rejected"]
    request: str | None = Field(default=None, pattern=r"^req_[A-Za-z0-9_-]{1,60}$")
    project: str | None = Field(default=None, min_length=1, max_length=200)
    conditions_text: str = Field(default="", max_length=4000)
    obligations: list[ObligationIn] = Field(default_factory=list, max_length=50)
    expires_at: date | datetime | None = Field(default=None, description="A date means midnight UTC.")


class DecisionOut(BaseModel):
    """A recorded ethics decision."""

    decision: str
    seq: int
    at: str
    decided_by: str
    outcome: str
    request: str | None
    project: str | None
    conditions_text: str
    obligations: list[dict[str, Any]]
    expires_at: str | None
    superseded_seq: int | None

    @classmethod
    def of(cls, decision: EthicsDecision) -> DecisionOut:
        """From the domain object."""
        return cls(**decision.to_json())


def _instant(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(0), tzinfo=UTC)


@router.get("", response_model=list[DecisionOut], summary="Ethics decisions")
def get_decisions(
    instance: InstanceDep,
    _: Public,
    request: Annotated[str | None, Query(pattern=r"^req_[A-Za-z0-9_-]{1,60}$")] = None,
) -> list[DecisionOut]:
    """Every decision (or those about one request), oldest first."""
    return [DecisionOut.of(d) for d in read(instance, ethics.list_decisions, request=request)]


@router.get("/{decision_id}", response_model=DecisionOut, summary="One ethics decision")
def get_decision(decision_id: DecisionPath, instance: InstanceDep, _: Public) -> DecisionOut:
    """A decision with its conditions."""
    return DecisionOut.of(read(instance, ethics.get_decision, decision_id))


@router.post(
    "",
    status_code=201,
    response_model=EntryOut,
    summary="Record an ethics decision",
    dependencies=[CsrfChecked],
)
def post_decision(
    body: DecisionIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("ethics.decide"))],
) -> EntryOut:
    """Record ``ethics.decided`` (you must be a member of the ethics committee, or its chair if the config says so)."""
    entry = ethics.record_decision(
        instance.ledger,
        outcome=body.outcome,
        request=body.request,
        project=body.project,
        conditions_text=body.conditions_text,
        obligations=[o.model_dump() for o in body.obligations],
        expires_at=_instant(body.expires_at),
        actor=principal.actor,
        now=now,
    )
    return EntryOut.of(entry)
