"""Access requests: submission, public notice and comments, conflicts, decision, revocation.

Ledger payloads (actor in brackets)::

    request.submitted  [the partner's client or staff member]
        {"request": "req_…", "organisation": "org_…", "title": "plain words",
         "purpose": "research.health", "categories": ["health.mental"],
         "operation": "aggregate" | "pseudonymised" | "identifiable",
         "subjects": ["sub_…", …] | null, "cohort": "who, in words" | null, "cohort_size": 120 | null,
         "duration_days": 180, "project": "project name" | null,
         "lay_summary": "…", "public_benefit": "…",
         "five_safes": {"people": "…", "projects": "…", "settings": "…", "data": "…", "outputs": "…"},
         "proportionality": {"necessity": "…", "minimisation": "…", "alternatives": "…"},
         "flags": {"special_categories": bool, "vulnerable_people": bool, "identifiable_output": bool,
                   "ethics_required": bool},
         "track": "full" | "fast", "config_seq": <seq of the governance config in force>,
         "notice_ends_at": "…Z", "voting_ends_at": "…Z"}
    request.commented  [anyone; "public" when not signed in]
        {"request": "req_…", "comment": "cmt_…", "text_hash": "<hex SHA-256 of the UTF-8 text>"}
    request.conflict_declared  [the trustee]
        {"request": "req_…", "trustee": "person_…", "interest": "plain words"}
    request.decided  [trust]
        {"request": "req_…", "outcome": "approved" | "rejected",
         "reason": "rule_met" | "voting_period_ended" | "quorum_not_reached",
         "rule": "simple_majority+chair_casting_vote" | …, "quorum": <votes required>,
         "tally": {"eligible", "recused", "approve", "reject", "abstain", "cast",
                   "quorum_required", "quorum_met", "chair", "chair_vote"},
         "config_seq": <the request's config_seq>, "votes": [seqs of the votes counted],
         "expires_at": "…Z" | null}
    request.revoked  [a trustee or admin]
        {"request": "req_…", "reason": "plain words"}

Vote entries are documented in :mod:`trust.votes`.

Lifecycle (states are derived from the recorded instants and ``now`` at read time)::

    submitted ──► public_notice ──► voting ──► approved ──► expired
                  (notice_days)     (voting_days)   │
                                               └──► rejected     approved ──► revoked

``submitted`` is the entry itself: the request is on public notice from that instant (on the
fast track, which has no notice, it is in voting from that instant). The schedule is fixed at
submission by the governance config then in force (``config_seq``) and written into the entry;
so are the rule and quorum used to decide it. A decision is RECORDED (``request.decided``) as
soon as the rule is met — checked after every vote — or, once the voting period has ended, by
:func:`close_due_requests`, which the server runs every few seconds (:func:`start_closer`).
Until it is recorded, an overdue request still reads as ``voting`` with ``is_decision_due``.
Every refusal raises a :class:`~ledger.errors.DomainError` inside the ledger's writer
transaction, so nothing is appended.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from ledger.entry import LedgerEntry, format_at, parse_at
from ledger.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from ledger.service import Ledger
from trust.config import (
    OPERATIONS,
    GovernanceConfig,
    categories_needing_ethics,
    config_by_seq,
    config_in_force,
    special_categories,
    vocabulary_in_force,
)
from trust.decision_rules import Ballot, Decision, RuleSpec, Tally, evaluate, tally
from trust.membership import active_members, chair_of, current_appointment
from trust.models import (
    comment_texts_table,
    comments_table,
    conflicts_table,
    loads,
    new_id,
    requests_table,
    votes_table,
)
from trust.organisations import require_active

log = logging.getLogger(__name__)

TRUST_ACTOR = "trust"
PUBLIC_NOTICE, VOTING, APPROVED, REJECTED, EXPIRED, REVOKED = (
    "public_notice",
    "voting",
    "approved",
    "rejected",
    "expired",
    "revoked",
)
STATES = ("submitted", PUBLIC_NOTICE, VOTING, APPROVED, REJECTED, EXPIRED, REVOKED)
FIVE_SAFES = ("people", "projects", "settings", "data", "outputs")
PROPORTIONALITY = ("necessity", "minimisation", "alternatives")
SUBJECT = re.compile(r"^sub_[A-Za-z0-9_-]{1,60}$")
MAX_TEXT = 4000
MAX_TITLE = 200
MAX_COMMENT = 2000
MAX_INTEREST = 1000
MAX_SUBJECTS = 100_000


# -- the request as read -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """An access request as projected (instants are ``format_at`` strings)."""

    id: str
    organisation: str
    submitted_by: str
    title: str
    purpose: str
    categories: list[str]
    operation: str
    subjects: list[str] | None
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
    decided_seq: int | None
    decided_at: str | None
    outcome: str | None
    rule: str | None
    quorum: int | None
    tally: dict[str, Any] | None
    expires_at: str | None
    revoked_seq: int | None
    revoked_at: str | None
    revoked_by: str | None
    revocation_reason: str | None

    def state_at(self, at: datetime) -> str:
        """public_notice | voting | approved | rejected | expired | revoked at *at*."""
        moment = format_at(at)
        if self.revoked_at is not None and self.revoked_at <= moment:
            return REVOKED
        if self.decided_at is not None and self.decided_at <= moment:
            if self.outcome != APPROVED:
                return REJECTED
            return EXPIRED if self.expires_at is not None and self.expires_at <= moment else APPROVED
        return PUBLIC_NOTICE if moment < self.notice_ends_at else VOTING

    def is_decision_due(self, at: datetime) -> bool:
        """Whether the voting period is over but no decision has been recorded yet."""
        return self.decided_seq is None and format_at(at) >= self.voting_ends_at

    @property
    def is_sensitive(self) -> bool:
        """Whether a sensitive flag forces a full vote."""
        return any(self.flags.get(k) for k in ("special_categories", "vulnerable_people", "identifiable_output"))


def _from_row(row: Row[Any]) -> AccessRequest:
    return AccessRequest(
        id=row.request_id,
        organisation=row.organisation,
        submitted_by=row.submitted_by,
        title=row.title,
        purpose=row.purpose,
        categories=loads(row.categories),
        operation=row.operation,
        subjects=loads(row.subjects),
        cohort=row.cohort,
        cohort_size=row.cohort_size,
        duration_days=int(row.duration_days),
        project=row.project,
        lay_summary=row.lay_summary,
        public_benefit=row.public_benefit,
        five_safes=loads(row.five_safes),
        proportionality=loads(row.proportionality),
        flags=loads(row.flags),
        track=row.track,
        config_seq=int(row.config_seq),
        submitted_seq=int(row.submitted_seq),
        submitted_at=row.submitted_at,
        notice_ends_at=row.notice_ends_at,
        voting_ends_at=row.voting_ends_at,
        decided_seq=row.decided_seq,
        decided_at=row.decided_at,
        outcome=row.outcome,
        rule=row.rule,
        quorum=row.quorum,
        tally=loads(row.tally),
        expires_at=row.expires_at,
        revoked_seq=row.revoked_seq,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revocation_reason=row.revocation_reason,
    )


def find_request(conn: Connection, request_id: str) -> AccessRequest | None:
    """The request, or None."""
    row = conn.execute(select(requests_table).where(requests_table.c.request_id == request_id)).first()
    return None if row is None else _from_row(row)


def get_request(conn: Connection, request_id: str) -> AccessRequest:
    """The request, or :class:`NotFoundError`."""
    found = find_request(conn, request_id)
    if found is None:
        msg = f"access request {request_id} does not exist"
        raise NotFoundError(msg)
    return found


def list_requests(
    conn: Connection, *, at: datetime, organisation: str | None = None, state: str | None = None
) -> list[AccessRequest]:
    """Requests (optionally of one organisation, or in one state at *at*), newest first."""
    if state is not None and state not in STATES:
        msg = f"state must be one of {', '.join(STATES)}; got {state!r}"
        raise ValidationError(msg)
    query = select(requests_table).order_by(requests_table.c.submitted_seq.desc())
    if organisation is not None:
        query = query.where(requests_table.c.organisation == organisation)
    found = [_from_row(row) for row in conn.execute(query)]
    return found if state is None else [r for r in found if r.state_at(at) == state]


# -- submission --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestDraft:
    """What a partner submits (its organisation comes from its credentials, not from here)."""

    title: str
    purpose: str
    categories: list[str]
    operation: str
    duration_days: int
    lay_summary: str
    public_benefit: str
    five_safes: dict[str, str]
    proportionality: dict[str, str]
    subjects: list[str] | None = None
    cohort: str | None = None
    cohort_size: int | None = None
    project: str | None = None
    vulnerable_people: bool = False
    fast_track: bool = False


def _text(value: str | None, name: str, *, limit: int = MAX_TEXT, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        msg = f"{name} must not be empty"
        raise ValidationError(msg)
    if len(text) > limit:
        msg = f"{name} must be at most {limit} characters"
        raise ValidationError(msg)
    return text


def _structured(values: dict[str, str], keys: tuple[str, ...], name: str) -> dict[str, str]:
    missing = [k for k in keys if not (values.get(k) or "").strip()]
    extra = sorted(set(values) - set(keys))
    if missing or extra:
        msg = f"{name} needs exactly {', '.join(keys)}" + (f"; missing {', '.join(missing)}" if missing else "")
        raise ValidationError(msg)
    return {k: _text(values[k], f"{name}.{k}") for k in keys}


def _check_scope(draft: RequestDraft, config: GovernanceConfig) -> tuple[list[str] | None, int | None]:
    if draft.operation not in OPERATIONS:
        msg = f"operation must be one of {', '.join(OPERATIONS)}; got {draft.operation!r}"
        raise ValidationError(msg)
    if not config.min_duration_days <= draft.duration_days <= config.max_duration_days:
        msg = (
            f"duration_days must be between {config.min_duration_days} and {config.max_duration_days} "
            f"under the governance config in force; got {draft.duration_days}"
        )
        raise ValidationError(msg)
    subjects = None
    if draft.subjects is not None:
        subjects = list(dict.fromkeys(draft.subjects))
        if not subjects or len(subjects) > MAX_SUBJECTS or not all(SUBJECT.match(s) for s in subjects):
            msg = f"subjects must be 1 to {MAX_SUBJECTS} subject references such as sub_…"
            raise ValidationError(msg)
    if subjects is None and not (draft.cohort or "").strip():
        msg = "describe the cohort in words or list the subjects"
        raise ValidationError(msg)
    cohort_size = draft.cohort_size if draft.cohort_size is not None else (len(subjects) if subjects else None)
    if cohort_size is not None and cohort_size < 1:
        msg = "cohort_size must be at least 1"
        raise ValidationError(msg)
    if draft.operation == "aggregate" and cohort_size is None:
        msg = "an aggregate request must state its cohort_size (the minimum is checked against it)"
        raise ValidationError(msg)
    return subjects, cohort_size


def _track(draft: RequestDraft, config: GovernanceConfig, flags: dict[str, bool], cohort_size: int | None) -> str:
    """Fast only when asked for, allowed by the config, and nothing sensitive is involved."""
    eligible = (
        draft.fast_track
        and config.fast_track_enabled
        and draft.operation in config.fast_track_operations
        and not any(flags.values())
        and (draft.operation != "aggregate" or (cohort_size or 0) >= config.min_cohort_size)
    )
    return "fast" if eligible else "full"


def submit_request(ledger: Ledger, *, organisation: str, draft: RequestDraft, actor: str, now: datetime) -> LedgerEntry:
    """Record ``request.submitted`` for *organisation* (refused if it is suspended or the request is invalid)."""
    title = _text(draft.title, "title", limit=MAX_TITLE)
    lay_summary = _text(draft.lay_summary, "lay_summary")
    public_benefit = _text(draft.public_benefit, "public_benefit")
    five_safes = _structured(draft.five_safes, FIVE_SAFES, "five_safes")
    proportionality = _structured(draft.proportionality, PROPORTIONALITY, "proportionality")
    cohort = _text(draft.cohort, "cohort", required=False) or None
    project = _text(draft.project, "project", limit=MAX_TITLE, required=False) or None
    request_id = new_id("req")

    def prepare(conn: Connection) -> dict[str, Any]:
        require_active(conn, organisation, now)
        adopted = config_in_force(conn)
        config = adopted.config
        vocabulary = vocabulary_in_force(conn)
        purpose = vocabulary.check("purposes", [draft.purpose], field="purpose")[0]
        categories = vocabulary.check("categories", draft.categories, field="categories")
        subjects, cohort_size = _check_scope(draft, config)
        flags = {
            "special_categories": bool(special_categories(conn, categories)),
            "vulnerable_people": draft.vulnerable_people,
            "identifiable_output": draft.operation == "identifiable",
            "ethics_required": bool(categories_needing_ethics(conn, config, categories)),
        }
        track = _track(draft, config, flags, cohort_size)
        notice_ends = now if track == "fast" else now + timedelta(days=config.notice_days)
        voting_days = config.fast_track_voting_days if track == "fast" else config.voting_days
        return {
            "request": request_id,
            "organisation": organisation,
            "title": title,
            "purpose": purpose,
            "categories": categories,
            "operation": draft.operation,
            "subjects": subjects,
            "cohort": cohort,
            "cohort_size": cohort_size,
            "duration_days": draft.duration_days,
            "project": project,
            "lay_summary": lay_summary,
            "public_benefit": public_benefit,
            "five_safes": five_safes,
            "proportionality": proportionality,
            "flags": flags,
            "track": track,
            "config_seq": adopted.seq,
            "notice_ends_at": format_at(notice_ends),
            "voting_ends_at": format_at(notice_ends + timedelta(days=voting_days)),
        }

    return ledger.append("request.submitted", actor=actor, now=now, prepare=prepare)


# -- comments ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comment:
    """A public comment: hash and time on the ledger, text off it (None if removed)."""

    id: str
    request: str
    seq: int
    at: str
    author: str
    text_hash: str
    text: str | None


def comment_on_request(ledger: Ledger, *, request_id: str, text: str, actor: str, now: datetime) -> LedgerEntry:
    """Record ``request.commented`` (only during public notice); the text is kept off-ledger."""
    text = text.strip()
    if not text:
        msg = "a comment must not be empty"
        raise ValidationError(msg)
    if len(text) > MAX_COMMENT:
        msg = f"a comment must be at most {MAX_COMMENT} characters; this one has {len(text)}"
        raise ValidationError(msg)
    comment_id = new_id("cmt")

    def prepare(conn: Connection) -> dict[str, Any]:
        request = get_request(conn, request_id)
        if request.state_at(now) != PUBLIC_NOTICE:
            msg = f"comments on {request_id} closed when its public notice ended at {request.notice_ends_at}"
            raise InvalidStateError(msg)
        return {
            "request": request_id,
            "comment": comment_id,
            "text_hash": hashlib.sha256(text.encode()).hexdigest(),
        }

    def keep_text(conn: Connection, _entry: LedgerEntry) -> None:
        conn.execute(insert(comment_texts_table).values(comment_id=comment_id, text=text))

    return ledger.append("request.commented", actor=actor, now=now, prepare=prepare, project=keep_text)


def list_comments(conn: Connection, request_id: str) -> list[Comment]:
    """Comments on a request, oldest first, with their text where it is still held."""
    c, x = comments_table.c, comment_texts_table.c
    rows = conn.execute(
        select(c.comment_id, c.request, c.seq, c.at, c.author, c.text_hash, x.text)
        .select_from(comments_table.outerjoin(comment_texts_table, c.comment_id == x.comment_id))
        .where(c.request == request_id)
        .order_by(c.seq)
    )
    return [Comment(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6]) for r in rows]


# -- conflicts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conflict:
    """A declared conflict of interest."""

    request: str
    trustee: str
    seq: int
    at: str
    interest: str


def list_conflicts(conn: Connection, request_id: str, *, at: datetime | None = None) -> list[Conflict]:
    """Conflicts declared on a request (by *at*, if given), oldest first."""
    t = conflicts_table.c
    query = select(conflicts_table).where(t.request == request_id).order_by(t.seq)
    if at is not None:
        query = query.where(t.at <= format_at(at))
    return [Conflict(r.request, r.trustee, int(r.seq), r.at, r.interest) for r in conn.execute(query)]


def require_trustee(conn: Connection, person_id: str, at: datetime) -> None:
    """Raise :class:`ForbiddenError` unless *person_id* is a trustee at *at*."""
    if current_appointment(conn, person_id, "trustee", at) is None:
        msg = f"{person_id} is not a trustee (never appointed, or removed)"
        raise ForbiddenError(msg)


def declare_conflict(ledger: Ledger, *, request_id: str, trustee: str, interest: str, now: datetime) -> LedgerEntry:
    """Record ``request.conflict_declared``: the trustee is recused from this request from now on."""
    interest = _text(interest, "interest", limit=MAX_INTEREST)

    def prepare(conn: Connection) -> dict[str, Any]:
        request = get_request(conn, request_id)
        require_trustee(conn, trustee, now)
        state = request.state_at(now)
        if state not in {PUBLIC_NOTICE, VOTING} or request.is_decision_due(now):
            msg = f"access request {request_id} is {state}: conflicts are declared before it is decided"
            raise InvalidStateError(msg)
        if any(c.trustee == trustee for c in list_conflicts(conn, request_id)):
            msg = f"{trustee} already declared a conflict on {request_id}"
            raise ConflictError(msg)
        return {"request": request_id, "trustee": trustee, "interest": interest}

    return ledger.append("request.conflict_declared", actor=trustee, now=now, prepare=prepare)


# -- counting and deciding ---------------------------------------------------------------


def current_ballots(conn: Connection, request_id: str, *, at: datetime | None = None) -> dict[str, Ballot]:
    """Each trustee's latest vote on the request (cast by *at*, if given)."""
    t = votes_table.c
    query = select(t.trustee, t.choice, t.seq).where(t.request == request_id).order_by(t.seq)
    if at is not None:
        query = query.where(t.at <= format_at(at))
    return {trustee: Ballot(trustee, choice, int(seq)) for trustee, choice, seq in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a vote stands at an instant: the count, and the decision if one is due now."""

    spec: RuleSpec
    tally: Tally
    decision: Decision | None
    is_final: bool


def standing(conn: Connection, request: AccessRequest, *, at: datetime) -> Standing:
    """Count the votes as of *at* (eligibility and the chair as of the close, if the period ended)."""
    spec = RuleSpec.from_config(config_by_seq(conn, request.config_seq).config, track=request.track)
    is_final = format_at(at) >= request.voting_ends_at
    moment = parse_at(request.voting_ends_at) if is_final else at
    recused = {c.trustee for c in list_conflicts(conn, request.id, at=moment)}
    in_office = [m.person_id for m in active_members(conn, "trustee", moment)]
    eligible = [p for p in in_office if p not in recused]
    ballots = current_ballots(conn, request.id, at=moment)
    chair = chair_of(conn, "trustee", moment)
    recused_count = sum(p in recused for p in in_office)
    count = tally(spec, eligible=eligible, recused=recused_count, ballots=ballots, chair=chair)
    decision = evaluate(spec, eligible=eligible, recused=recused_count, ballots=ballots, chair=chair, is_final=is_final)
    return Standing(spec, count, decision, is_final)


def _undecided_reason(request: AccessRequest, state: Standing) -> str:
    count = state.tally
    if not count.quorum_met:
        return (
            f"access request {request.id} cannot be decided yet: quorum not reached "
            f"({count.cast} of {count.quorum_required} votes needed from {count.eligible} eligible trustees)"
        )
    return (
        f"access request {request.id} cannot be decided yet: the outcome under {state.spec.name} "
        f"could still change before voting closes at {request.voting_ends_at}"
    )


def decide_request(ledger: Ledger, *, request_id: str, now: datetime) -> LedgerEntry:
    """Record ``request.decided`` if the rule is met or the voting period has ended; else refuse."""

    def prepare(conn: Connection) -> dict[str, Any]:
        request = get_request(conn, request_id)
        if request.decided_seq is not None:
            msg = f"access request {request_id} was already decided (entry {request.decided_seq})"
            raise InvalidStateError(msg)
        if request.state_at(now) == PUBLIC_NOTICE:
            msg = (
                f"access request {request_id} is on public notice until {request.notice_ends_at}; voting has not opened"
            )
            raise InvalidStateError(msg)
        state = standing(conn, request, at=now)
        if state.decision is None:
            raise InvalidStateError(_undecided_reason(request, state))
        decision = state.decision
        expires = now + timedelta(days=request.duration_days) if decision.outcome == APPROVED else None
        return {
            "request": request_id,
            "outcome": decision.outcome,
            "reason": decision.reason,
            "rule": decision.rule,
            "quorum": decision.tally.quorum_required,
            "tally": decision.tally.to_json(),
            "config_seq": request.config_seq,
            "votes": decision.votes,
            "expires_at": None if expires is None else format_at(expires),
        }

    return ledger.append("request.decided", actor=TRUST_ACTOR, now=now, prepare=prepare)


def close_due_requests(
    ledger: Ledger, conn: Connection, *, now: datetime, only: str | None = None
) -> list[LedgerEntry]:
    """Record ``request.decided`` for every request in voting whose rule is met or whose period ended.

    *conn* is a read connection used to find candidates; each decision is re-checked inside the
    writer's transaction, so running this from several threads or servers never decides twice.
    """
    t = requests_table.c
    query = select(requests_table).where(t.decided_seq.is_(None), t.notice_ends_at <= format_at(now))
    if only is not None:
        query = query.where(t.request_id == only)
    candidates = [_from_row(row) for row in conn.execute(query)]
    decided: list[LedgerEntry] = []
    for request in candidates:
        if standing(conn, request, at=now).decision is None:
            continue
        try:
            decided.append(decide_request(ledger, request_id=request.id, now=now))
        except InvalidStateError:
            continue  # decided meanwhile by another closer, or a vote changed the count
    return decided


# -- revocation --------------------------------------------------------------------------


def revoke_request(ledger: Ledger, *, request_id: str, reason: str, actor: str, now: datetime) -> LedgerEntry:
    """Record ``request.revoked``: every check relying on the approval is denied from this instant."""
    reason = _text(reason, "reason")

    def prepare(conn: Connection) -> dict[str, Any]:
        request = get_request(conn, request_id)
        state = request.state_at(now)
        if state != APPROVED:
            msg = f"only an approved request can be revoked; {request_id} is {state.replace('_', ' ')}"
            raise InvalidStateError(msg)
        return {"request": request_id, "reason": reason}

    return ledger.append("request.revoked", actor=actor, now=now, prepare=prepare)


# -- the background closer ---------------------------------------------------------------


@dataclass
class Closer:
    """A daemon thread recording due decisions every *interval* seconds (no web framework involved)."""

    ledger: Ledger
    clock: Callable[[], datetime]
    interval: float = 5.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Closer:
        """Start the thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="request-closer", daemon=True)
        self._thread.start()
        return self

    def run_once(self) -> list[LedgerEntry]:
        """Close every due request now."""
        with self.ledger.db.engine.connect() as conn:
            return close_due_requests(self.ledger, conn, now=self.clock())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except DomainError as exc:
                log.warning("closing due requests failed: %s", exc.detail)
            except Exception:
                log.exception("closing due requests failed")

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def start_closer(ledger: Ledger, *, clock: Callable[[], datetime], interval: float = 5.0) -> Closer:
    """Start recording due decisions in the background (``datatrust serve`` and ``demo`` call this)."""
    return Closer(ledger, clock, interval).start()
