"""``/v1/checks``: the partner asks before it shares (DESIGN.md, "The check")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.authz import require
from api.deps import ClockDep, InstanceDep, get_now
from api.instance import Instance
from api.metrics import Metrics
from api.problems import PayloadTooLargeError
from consent.principals import Principal, Role
from ledger.errors import NotFoundError, ValidationError
from trust.checks import MAX_SUBJECTS, CheckService, recorded_check, replay_check
from trust.rules.base import ProposedAction

router = APIRouter(prefix="/v1/checks", tags=["checks"])

Code = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")]
SubjectRef = Annotated[str, Field(min_length=5, max_length=64, pattern=r"^sub_[A-Za-z0-9_-]+$")]
EARLIEST_AT = datetime(1970, 1, 1, tzinfo=UTC)
DecisionPath = Annotated[int, Path(ge=0, le=2**62, description="The decision id (its ledger sequence number).")]


class CheckIn(BaseModel):
    """A proposed share. The partner is the token's organisation: it cannot be set here."""

    model_config = ConfigDict(extra="forbid")

    purpose: Code
    data_categories: list[Code] = Field(min_length=1, max_length=50)
    operation: Literal["aggregate", "pseudonymised", "identifiable"]
    request: str = Field(min_length=5, max_length=64, pattern=r"^req_[A-Za-z0-9_-]+$")
    subjects: list[SubjectRef] = Field(min_length=1, max_length=MAX_SUBJECTS + 50_000)
    cohort_size: int | None = Field(default=None, ge=0, le=1_000_000_000)
    recipient: str | None = Field(default=None, max_length=64, description="Must be the caller's own organisation.")
    geography: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166 country of processing.")


class ExcludedOut(BaseModel):
    """A subject left out of the decision, and why."""

    subject: str
    rule: str
    reason: str


class SubjectsOut(BaseModel):
    """Who the decision covers."""

    permitted: list[str]
    excluded: list[ExcludedOut]


class ReasonOut(BaseModel):
    """One rule's outcome."""

    rule: str
    outcome: Literal["pass", "fail", "not_applicable", "indeterminate"]
    message: str
    evidence: list[int]


class EntryRef(BaseModel):
    """The ledger entry recording the decision."""

    seq: int
    leaf_hash: str


class CheckOut(BaseModel):
    """The explained decision a partner cites by ``decision_id``."""

    decision: Literal["permit", "deny"]
    decision_id: int | None
    entry: EntryRef | None
    subjects: SubjectsOut
    obligations: list[dict[str, Any]]
    reasons: list[ReasonOut]
    as_of: int
    evaluated_at: str
    dry_run: bool


class RecordedCheckOut(CheckOut):
    """A recorded decision with the action it answered."""

    action: dict[str, Any]


class ReplayOut(BaseModel):
    """A recorded decision evaluated again from the ledger prefix it relied on."""

    decision_id: int
    identical: bool
    recorded: dict[str, Any]
    replayed: dict[str, Any]


def _checks_of(instance: Instance) -> CheckService:
    if instance.checks is None:  # pragma: no cover - Instance.open always starts it
        msg = "the check service is not running"
        raise NotFoundError(msg)
    return instance.checks


async def _service(instance: InstanceDep) -> CheckService:
    return _checks_of(instance)


ServiceDep = Annotated[CheckService, Depends(_service)]


@dataclass(frozen=True, slots=True)
class _CheckContext:
    service: CheckService
    now: datetime
    metrics: Metrics


async def _check_context(request: Request) -> _CheckContext:
    """The check service, the current instant and the metrics in one dependency.

    ``POST /v1/checks`` runs before every share; each FastAPI dependency costs tens of
    microseconds to solve, so the hot path asks for one instead of three.
    """
    return _CheckContext(_checks_of(request.app.state.instance), get_now(), request.app.state.metrics)


def action_of(body: CheckIn, principal: Principal, *, on_behalf_of: str | None = None) -> ProposedAction:
    """The proposed share *body* asks about, for *principal*'s organisation (raises on a refusal)."""
    if len(body.subjects) > MAX_SUBJECTS:
        msg = f"{len(body.subjects)} subjects in one check; the limit is {MAX_SUBJECTS}: split the call"
        raise PayloadTooLargeError(msg, limit=MAX_SUBJECTS)
    organisation = principal.organisation or on_behalf_of
    if organisation is None:
        msg = "only a partner organisation's client can ask for a share decision"
        raise ValidationError(msg)
    if body.recipient is not None and body.recipient != organisation:
        msg = f"the recipient must be your own organisation ({organisation}), not {body.recipient}"
        raise ValidationError(msg, field="recipient")
    return ProposedAction(
        organisation=organisation,
        purpose=body.purpose,
        categories=tuple(body.data_categories),
        operation=body.operation,
        request=body.request,
        subjects=tuple(body.subjects),
        cohort_size=body.cohort_size,
        geography=body.geography,
    )


# Up to this many subjects a check is evaluated on the event loop (~20 µs a subject); larger
# ones go to the thread pool so that one big call never holds up everyone else's small ones.
ON_LOOP_SUBJECTS = 64


@router.post("", response_model=CheckOut, summary="Decide a proposed share (recorded unless dry_run)")
async def create_check(
    body: CheckIn,
    context: Annotated[_CheckContext, Depends(_check_context)],
    principal: Annotated[Principal, Depends(require("checks.create"))],
    dry_run: Annotated[bool, Query(description="Evaluate without recording.")] = False,
    at: Annotated[datetime | None, Query(description="With dry_run: evaluate as of this past instant.")] = None,
) -> Response:
    """Evaluate the share against the trust's rules; the decision is on the ledger before the answer."""
    if at is not None and not dry_run:
        msg = "at= evaluates as of a past instant and is only allowed with dry_run=true"
        raise ValidationError(msg, field="at")
    service, now = context.service, context.now
    _check_at(at, now)
    action = action_of(body, principal)
    if dry_run or len(action.subjects) > ON_LOOP_SUBJECTS:
        result = await run_in_threadpool(
            partial(service.decide, action, actor=principal.actor, now=now, dry_run=dry_run, at=at)
        )
    else:
        result = await service.decide_recorded(action, actor=principal.actor, now=now)
    context.metrics.check_decided(result.decision.decision)
    # The answer is built from the recorded decision as it is, not validated against CheckOut
    # again (which documents it; tests hold the two to each other).
    return Response(result.answer(), media_type="application/json")


def _check_at(at: datetime | None, now: datetime) -> None:
    if at is None:
        return
    if at.tzinfo is None:
        msg = "at= must include a time zone, e.g. 2026-11-26T09:00:00Z"
        raise ValidationError(msg, field="at")
    if at > now:
        msg = "at= must not be in the future: a dry run looks at the trust as it was, not as it may be"
        raise ValidationError(msg, field="at")
    if at < EARLIEST_AT:
        msg = "at= must not be before 1970-01-01: no trust's ledger reaches back further"
        raise ValidationError(msg, field="at")


@router.post("/dry-run", response_model=CheckOut, summary="Pre-assess a share without recording it")
def dry_run_check(
    body: CheckIn,
    service: ServiceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("checks.dry_run"))],
    organisation: Annotated[
        str | None,
        Query(max_length=64, description="Trustees, ethics members and admins: the partner to assess for."),
    ] = None,
    at: Annotated[datetime | None, Query(description="Evaluate as of this past instant.")] = None,
) -> dict[str, Any]:
    """What the rules would answer, for trustees' pre-assessment and partners' planning. Nothing is recorded."""
    if principal.organisation is not None and organisation not in (None, principal.organisation):
        msg = f"a partner can only assess shares for its own organisation ({principal.organisation})"
        raise ValidationError(msg, field="organisation")
    if principal.organisation is None and organisation is None:
        msg = "name the partner organisation to assess for with ?organisation=org_…"
        raise ValidationError(msg, field="organisation")
    _check_at(at, now)
    action = action_of(body, principal, on_behalf_of=organisation)
    return service.decide(action, actor=principal.actor, now=now, dry_run=True, at=at).to_json()


def _readable(principal: Principal, entry_payload: dict[str, Any], decision_id: int) -> None:
    if principal.roles & {Role.ADMIN, Role.TRUSTEE, Role.ETHICS}:
        return
    if principal.organisation != entry_payload["action"]["organisation"]:
        msg = f"there is no check decision {decision_id}"
        raise NotFoundError(msg)


@router.get("/{decision_id}", response_model=RecordedCheckOut, summary="A recorded decision")
def get_check(
    decision_id: DecisionPath,
    instance: InstanceDep,
    principal: Annotated[Principal, Depends(require("checks.read"))],
) -> dict[str, Any]:
    """The decision exactly as recorded, with its ledger entry."""
    entry = recorded_check(instance.ledger, decision_id)
    _readable(principal, entry.payload, decision_id)
    body = dict(entry.payload)
    body.update(decision_id=entry.seq, entry={"seq": entry.seq, "leaf_hash": entry.leaf_hash.hex()}, dry_run=False)
    return body


@router.get("/{decision_id}/replay", response_model=ReplayOut, summary="Re-evaluate a recorded decision")
def get_replay(
    decision_id: DecisionPath,
    instance: InstanceDep,
    principal: Annotated[Principal, Depends(require("checks.read"))],
) -> dict[str, Any]:
    """Fold the ledger prefix the decision relied on, decide again, and compare."""
    entry = recorded_check(instance.ledger, decision_id)
    _readable(principal, entry.payload, decision_id)
    return replay_check(instance.ledger, entry).to_json()
