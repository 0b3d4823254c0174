"""``/v1/requests``: access requests, public comments, conflicts, votes, pre-assessment and revocation.

The public register reads ``GET /v1/requests`` and ``GET /v1/requests/{id}``: plain-language
summaries, the Five Safes, the schedule, and once decided the tally and the rule applied.
Comments are open to anyone during public notice, limited in length and rate-limited per
address. The partner's organisation always comes from its credentials, never from the body.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import store
from api.auth.service import SignInThrottledError
from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.routes.governance import CsrfChecked, EntryOut, Public, Reason, read
from consent.principals import Principal
from ledger.errors import ForbiddenError
from trust import preassessment, requests, votes
from trust.requests import STATES, AccessRequest, RequestDraft

router = APIRouter(prefix="/v1/requests", tags=["requests"])
RequestPath = Annotated[str, Path(pattern=r"^req_[A-Za-z0-9_-]{1,60}$", description="The request id (req_…).")]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
Reviewer = Annotated[Principal, Depends(require("requests.review"))]
Trustee = Annotated[Principal, Depends(require("requests.vote"))]

COMMENT_WINDOW = timedelta(minutes=1)  # the sign-in limiter's window (they share its table)
COMMENT_LIMIT = 3  # comments per address per window


class CommentRateLimitedError(SignInThrottledError):
    """Too many comments from one address (HTTP 429)."""

    slug = "too-many-comments"
    title = "Too many comments"


class FiveSafesIn(BaseModel):
    """The UK Five Safes, in plain words."""

    model_config = ConfigDict(extra="forbid")

    people: Text
    projects: Text
    settings: Text
    data: Text
    outputs: Text


class ProportionalityIn(BaseModel):
    """Why this use, and no more than it needs."""

    model_config = ConfigDict(extra="forbid")

    necessity: Text
    minimisation: Text
    alternatives: Text


class RequestIn(BaseModel):
    """An access request. Give ``subjects`` (``sub_…`` references) or describe the ``cohort``, or both."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    purpose: Code
    categories: list[Code] = Field(min_length=1, max_length=50)
    operation: Literal["aggregate", "pseudonymised", "identifiable"]
    duration_days: int = Field(ge=1, le=3650)
    lay_summary: Text
    public_benefit: Text
    five_safes: FiveSafesIn
    proportionality: ProportionalityIn
    subjects: list[Annotated[str, Field(pattern=r"^sub_[A-Za-z0-9_-]{1,60}$")]] | None = Field(
        default=None, max_length=100_000
    )
    cohort: str | None = Field(default=None, max_length=4000)
    cohort_size: int | None = Field(default=None, ge=1, le=1_000_000_000)
    project: str | None = Field(default=None, max_length=200)
    vulnerable_people: bool = Field(default=False, description="The request concerns vulnerable people.")
    fast_track: bool = Field(
        default=False, description="Ask for the fast track (granted only if nothing is sensitive)."
    )

    def draft(self) -> RequestDraft:
        """As a domain draft."""
        return RequestDraft(
            title=self.title,
            purpose=self.purpose,
            categories=self.categories,
            operation=self.operation,
            duration_days=self.duration_days,
            lay_summary=self.lay_summary,
            public_benefit=self.public_benefit,
            five_safes=self.five_safes.model_dump(),
            proportionality=self.proportionality.model_dump(),
            subjects=self.subjects,
            cohort=self.cohort,
            cohort_size=self.cohort_size,
            project=self.project,
            vulnerable_people=self.vulnerable_people,
            fast_track=self.fast_track,
        )


class DecisionOut(BaseModel):
    """The recorded decision, the rule applied and the tally."""

    seq: int
    at: str
    outcome: str
    rule: str | None
    quorum: int | None
    tally: dict[str, Any] | None
    expires_at: str | None


class RequestOut(BaseModel):
    """An access request as the public register shows it (subjects are counted, never listed)."""

    request: str
    organisation: str
    title: str
    state: str
    is_decision_due: bool
    purpose: str
    categories: list[str]
    operation: str
    subject_count: int | None
    cohort: str | None
    cohort_size: int | None
    duration_days: int
    project: str | None
    lay_summary: str
    public_benefit: str
    five_safes: dict[str, str]
    proportionality: dict[str, str]
    flags: dict[str, bool]
    track: str
    config_seq: int
    submitted_seq: int
    submitted_at: str
    notice_ends_at: str
    voting_ends_at: str
    decision: DecisionOut | None
    revoked_seq: int | None
    revoked_at: str | None
    revocation_reason: str | None

    @classmethod
    def of(cls, r: AccessRequest, now: datetime) -> RequestOut:
        """From the domain object, with the state at *now*."""
        decision = None
        if r.decided_seq is not None and r.decided_at is not None and r.outcome is not None:
            decision = DecisionOut(
                seq=r.decided_seq,
                at=r.decided_at,
                outcome=r.outcome,
                rule=r.rule,
                quorum=r.quorum,
                tally=r.tally,
                expires_at=r.expires_at,
            )
        return cls(
            request=r.id,
            organisation=r.organisation,
            title=r.title,
            state=r.state_at(now),
            is_decision_due=r.is_decision_due(now),
            purpose=r.purpose,
            categories=r.categories,
            operation=r.operation,
            subject_count=None if r.subjects is None else len(r.subjects),
            cohort=r.cohort,
            cohort_size=r.cohort_size,
            duration_days=r.duration_days,
            project=r.project,
            lay_summary=r.lay_summary,
            public_benefit=r.public_benefit,
            five_safes=r.five_safes,
            proportionality=r.proportionality,
            flags=r.flags,
            track=r.track,
            config_seq=r.config_seq,
            submitted_seq=r.submitted_seq,
            submitted_at=r.submitted_at,
            notice_ends_at=r.notice_ends_at,
            voting_ends_at=r.voting_ends_at,
            decision=decision,
            revoked_seq=r.revoked_seq,
            revoked_at=r.revoked_at,
            revocation_reason=r.revocation_reason,
        )


class CommentIn(BaseModel):
    """A public comment (at most 2000 characters)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)


class CommentOut(BaseModel):
    """A comment: its text (kept off-ledger) and the hash on the ledger."""

    comment: str
    seq: int
    at: str
    author: str
    text_hash: str
    text: str | None


class ConflictIn(BaseModel):
    """Declare an interest: you are recused from this request from now on."""

    model_config = ConfigDict(extra="forbid")

    interest: str = Field(min_length=1, max_length=1000)


class ConflictOut(BaseModel):
    """A declared conflict of interest."""

    trustee: str
    seq: int
    at: str
    interest: str


class VoteIn(BaseModel):
    """Your vote, with a reason; you may vote again until the vote closes (the last one counts)."""

    model_config = ConfigDict(extra="forbid")

    choice: Literal["approve", "reject", "abstain"]
    reason: Reason
    agrees_with_preassessment: bool
    signature: str | None = Field(
        default=None,
        max_length=128,
        description="Base64 Ed25519 signature with your vote key over trust.votes.vote_message (optional).",
    )


class VoteOut(BaseModel):
    """The recorded vote and, if it settled the outcome, the decision entry."""

    vote: EntryOut
    decision: EntryOut | None


class StandingOut(BaseModel):
    """Every vote cast so far and where the count stands now."""

    votes: list[dict[str, Any]]
    rule: str
    tally: dict[str, Any]
    would_decide: str | None


class RevokeIn(BaseModel):
    """Revoke an approval: every later check relying on it is denied."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


def _organisation(principal: Principal) -> str:
    if principal.organisation is None:
        msg = f"{principal.id} does not act for an organisation, so it cannot submit access requests"
        raise ForbiddenError(msg)
    return principal.organisation


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _throttle_comment(instance: Instance, address: str, now: datetime) -> None:
    """Refuse a comment beyond :data:`COMMENT_LIMIT` per address per window, else count it."""
    key = "comment:" + address
    with instance.db.engine.connect() as conn:
        recent = store.recent_failures(conn, key, now=now, window=COMMENT_WINDOW)
    if recent >= COMMENT_LIMIT:
        msg = f"at most {COMMENT_LIMIT} comments a minute from one address; wait a minute and try again"
        raise CommentRateLimitedError(msg, retry_after=int(COMMENT_WINDOW.total_seconds()))
    with instance.db.write_engine.begin() as conn:
        store.record_failure(conn, [key], now=now, window=COMMENT_WINDOW)


@router.get("", response_model=list[RequestOut], summary="The register of access requests")
def get_requests(
    instance: InstanceDep,
    now: ClockDep,
    _: Public,
    state: Annotated[str | None, Query(max_length=32, description=f"One of {', '.join(STATES)}.")] = None,
    organisation: Annotated[str | None, Query(pattern=r"^org_[a-z0-9_]{2,59}$")] = None,
) -> list[RequestOut]:
    """Every request (newest first), optionally in one state now or from one organisation."""
    found = read(instance, requests.list_requests, at=now, organisation=organisation, state=state)
    return [RequestOut.of(r, now) for r in found]


@router.get("/{request_id}", response_model=RequestOut, summary="One access request")
def get_request(request_id: RequestPath, instance: InstanceDep, now: ClockDep, _: Public) -> RequestOut:
    """The request as the public register shows it."""
    return RequestOut.of(read(instance, requests.get_request, request_id), now)


@router.post(
    "", status_code=201, response_model=EntryOut, summary="Submit an access request", dependencies=[CsrfChecked]
)
def post_request(
    body: RequestIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("requests.submit"))],
) -> EntryOut:
    """Record ``request.submitted`` for your organisation; it goes on public notice at once."""
    entry = requests.submit_request(
        instance.ledger, organisation=_organisation(principal), draft=body.draft(), actor=principal.actor, now=now
    )
    return EntryOut.of(entry)


@router.get("/{request_id}/preassessment", summary="What the rules would say now")
def get_preassessment(request_id: RequestPath, instance: InstanceDep, now: ClockDep, _: Reviewer) -> dict[str, Any]:
    """Organisation, agreement, retention, ethics, cohort size and consent cover, each with its evidence."""
    return read(instance, preassessment.preassess, request_id, at=now).to_json()


@router.get("/{request_id}/comments", response_model=list[CommentOut], summary="Public comments")
def get_comments(request_id: RequestPath, instance: InstanceDep, _: Reviewer) -> list[CommentOut]:
    """Comments made during public notice, oldest first."""
    found = read(instance, requests.list_comments, request_id)
    return [
        CommentOut(comment=c.id, seq=c.seq, at=c.at, author=c.author, text_hash=c.text_hash, text=c.text) for c in found
    ]


@router.post(
    "/{request_id}/comments",
    status_code=201,
    response_model=EntryOut,
    summary="Comment during public notice",
    dependencies=[CsrfChecked],
)
def post_comment(
    request_id: RequestPath,
    body: CommentIn,
    request: Request,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("requests.comment"))],
) -> EntryOut:
    """Record ``request.commented`` (the text stays off the ledger; its hash goes on it)."""
    _throttle_comment(instance, _address(request), now)
    entry = requests.comment_on_request(
        instance.ledger, request_id=request_id, text=body.text, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)


@router.get("/{request_id}/conflicts", response_model=list[ConflictOut], summary="Declared conflicts")
def get_conflicts(request_id: RequestPath, instance: InstanceDep, _: Public) -> list[ConflictOut]:
    """Trustees who declared an interest and are recused."""
    found = read(instance, requests.list_conflicts, request_id)
    return [ConflictOut(trustee=c.trustee, seq=c.seq, at=c.at, interest=c.interest) for c in found]


@router.post(
    "/{request_id}/conflicts",
    status_code=201,
    response_model=EntryOut,
    summary="Declare a conflict of interest",
    dependencies=[CsrfChecked],
)
def post_conflict(
    request_id: RequestPath, body: ConflictIn, instance: InstanceDep, now: ClockDep, principal: Trustee
) -> EntryOut:
    """Record ``request.conflict_declared``: you are recused and no longer count towards quorum."""
    entry = requests.declare_conflict(
        instance.ledger, request_id=request_id, trustee=principal.id, interest=body.interest, now=now
    )
    return EntryOut.of(entry)


@router.get("/{request_id}/votes", response_model=StandingOut, summary="Votes and the count so far")
def get_votes(request_id: RequestPath, instance: InstanceDep, now: ClockDep, _: Reviewer) -> StandingOut:
    """Every vote (the latest per trustee counts) and the tally under the request's rule."""
    found, standing = read(instance, votes.votes_and_standing, request_id, at=now)
    return StandingOut(
        votes=[v.to_json() for v in found],
        rule=standing.spec.name,
        tally=standing.tally.to_json(),
        would_decide=None if standing.decision is None else standing.decision.outcome,
    )


@router.post("/{request_id}/votes", status_code=201, response_model=VoteOut, summary="Vote", dependencies=[CsrfChecked])
def post_vote(
    request_id: RequestPath, body: VoteIn, instance: InstanceDep, now: ClockDep, principal: Trustee
) -> VoteOut:
    """Record ``vote.cast``; if that settles the outcome under the rule, ``request.decided`` follows at once."""
    result = votes.cast_vote(
        instance.ledger,
        request_id=request_id,
        trustee=principal.id,
        choice=body.choice,
        reason=body.reason,
        agrees_with_preassessment=body.agrees_with_preassessment,
        signature=body.signature,
        now=now,
    )
    return VoteOut(
        vote=EntryOut.of(result.vote), decision=None if result.decision is None else EntryOut.of(result.decision)
    )


@router.post(
    "/{request_id}/revocation",
    response_model=EntryOut,
    summary="Revoke an approval",
    dependencies=[CsrfChecked],
)
def post_revocation(
    request_id: RequestPath,
    body: RevokeIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("requests.revoke"))],
) -> EntryOut:
    """Record ``request.revoked``: binding on every check from this instant."""
    entry = requests.revoke_request(
        instance.ledger, request_id=request_id, reason=body.reason, actor=principal.actor, now=now
    )
    return EntryOut.of(entry)
