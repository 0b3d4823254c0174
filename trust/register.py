"""The public register and the trustees' desk: what the trust shows about itself, read from projections.

:func:`public_register` gathers, at one instant, everything the public register page shows:
the trust's name and mission (its latest ``trust.configured`` entry), the governance rules
in force and who the trustees and ethics members are, requests on public notice, requests
being voted on (without the votes: a tally in progress is for trustees), decided and
revoked requests with the tally, the rule applied and each trustee's reason, agreements
and ethics decisions in force, and monthly counts of checks permitted and denied per
partner in which any count between 1 and the minimum cohort size is suppressed.

:func:`request_dossier` gathers one request. Public readers (``for_reviewer=False``) see
the request, its conflicts of interest, the ethics decisions about it and, once it is
decided, the votes; reviewers (trustees, ethics members, admins) also see public comments,
votes in progress, where the count stands and the pre-assessment. Who is a reviewer is the
caller's authorisation decision, not this module's.

:func:`decision_feed` lists recent decisions (requests decided or revoked, ethics
decisions) for the register's Atom feed. Nothing here needs a scan of the ledger: every
read is of a projection table (checks by month read ``check_decisions`` for the last
:data:`CHECK_MONTHS` months only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, select

from ledger.entry import format_at
from ledger.models import entries_table
from trust.agreements import Agreement, agreements_in_force
from trust.check_models import check_decisions_table
from trust.config import AdoptedConfig, config_by_seq, config_in_force, vocabulary_in_force
from trust.ethics import EthicsDecision, list_decisions
from trust.membership import directory
from trust.organisations import list_organisations
from trust.preassessment import PreAssessment, preassess
from trust.requests import (
    APPROVED,
    EXPIRED,
    PUBLIC_NOTICE,
    REJECTED,
    REVOKED,
    VOTING,
    AccessRequest,
    Comment,
    Conflict,
    Standing,
    get_request,
    list_comments,
    list_conflicts,
    list_requests,
    standing,
)
from trust.votes import Vote, list_votes

CHECK_MONTHS = 12
FEED_LIMIT = 50
DECIDED_STATES = (APPROVED, REJECTED, EXPIRED, REVOKED)

RULE_WORDS = {  # each completes "Approved when …"
    "simple_majority+chair_casting_vote": "more approvals than rejections; if they are equal, the chair's vote decides",
    "simple_majority+tie_rejects": "more approvals than rejections; if they are equal, the request is rejected",
    "simple_majority": "more approvals than rejections",
    "two_thirds": "at least two thirds of the approve and reject votes are approvals",
    "unanimity": "every trustee who votes approves",
    "any_veto": "at least one trustee approves and nobody rejects",
    "fast_track_no_objection": "enough trustees approve and nobody objects (the fast track)",
}
STATE_WORDS = {
    PUBLIC_NOTICE: "Open for comments",
    VOTING: "Trustees are voting",
    APPROVED: "Approved",
    REJECTED: "Rejected",
    EXPIRED: "Approval ended",
    REVOKED: "Approval withdrawn by the trustees",
}
OPERATION_WORDS = {
    "aggregate": "counts and totals about groups of people only",
    "pseudonymised": "records with names and contact details replaced by a code",
    "identifiable": "records that identify people",
}
CHOICE_WORDS = {"approve": "Approve", "reject": "Reject", "abstain": "Abstain"}
ETHICS_WORDS = {
    "approved": "Approved",
    "approved_with_conditions": "Approved with conditions",
    "rejected": "Rejected",
}


# -- the trust and its governance -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustProfile:
    """The trust as its latest ``trust.configured`` entry describes it."""

    name: str
    mission: str
    configured_seq: int
    configured_at: str


@dataclass(frozen=True, slots=True)
class Person:
    """A trustee or ethics-committee member as the register names them."""

    person_id: str
    name: str
    role: str
    is_chair: bool
    since: str


@dataclass(frozen=True, slots=True)
class Governance:
    """The rules in force and the people who apply them."""

    config: AdoptedConfig
    rule_words: str
    trustees: list[Person]
    ethics_members: list[Person]


def trust_profile(conn: Connection) -> TrustProfile:
    """The trust's name and mission from its latest ``trust.configured`` entry."""
    row = conn.execute(
        select(entries_table.c.seq, entries_table.c.at, entries_table.c.body)
        .where(entries_table.c.kind == "trust.configured")
        .order_by(entries_table.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return TrustProfile(name="", mission="", configured_seq=0, configured_at="")
    payload = json.loads(bytes(row[2]))["payload"]
    return TrustProfile(
        name=str(payload.get("name", "")),
        mission=str(payload.get("mission", "")),
        configured_seq=int(row[0]),
        configured_at=str(row[1]),
    )


def rule_words(rule: str | None) -> str:
    """A decision rule in plain words."""
    if rule is None:
        return ""
    return RULE_WORDS.get(rule, rule.replace("_", " "))


def _config_rule(adopted: AdoptedConfig) -> str:
    config = adopted.config
    if config.rule == "simple_majority":
        return rule_words(f"simple_majority+{'chair_casting_vote' if config.tie_break == 'chair' else 'tie_rejects'}")
    return rule_words(config.rule)


def people_names(conn: Connection, at: datetime) -> dict[str, str]:
    """Display names of everyone ever appointed trustee or ethics member."""
    return {member.person_id: name or "A former member" for member, name in directory(conn, at=at, include_former=True)}


def governance(conn: Connection, *, at: datetime) -> Governance:
    """The governance configuration in force and the members in office at *at*."""
    members = [
        Person(m.person_id, name or "A member", m.role, m.is_chair, m.appointed_at)
        for m, name in directory(conn, at=at)
    ]
    adopted = config_in_force(conn)
    return Governance(
        config=adopted,
        rule_words=_config_rule(adopted),
        trustees=[p for p in members if p.role == "trustee"],
        ethics_members=[p for p in members if p.role == "ethics"],
    )


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteView:
    """A vote with the trustee's name."""

    vote: Vote
    trustee_name: str

    @property
    def choice_words(self) -> str:
        """Approve, Reject or Abstain."""
        return CHOICE_WORDS.get(self.vote.choice, self.vote.choice)


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """A request as listed on the register."""

    request: AccessRequest
    organisation_name: str
    state: str
    purpose_label: str
    category_labels: list[str]

    @property
    def state_words(self) -> str:
        """The state in plain words."""
        return STATE_WORDS.get(self.state, self.state.replace("_", " "))

    @property
    def operation_words(self) -> str:
        """The operation in plain words."""
        return OPERATION_WORDS.get(self.request.operation, self.request.operation)

    @property
    def rule_words(self) -> str:
        """The decision rule applied, in plain words."""
        return rule_words(self.request.rule)


@dataclass(frozen=True, slots=True)
class Dossier:
    """Everything shown about one request (reviewer-only parts are empty for the public)."""

    summary: RequestSummary
    conflicts: list[tuple[Conflict, str]]
    ethics: list[EthicsDecision]
    votes: list[VoteView]
    comments: list[Comment] = field(default_factory=list)
    standing: Standing | None = None
    preassessment: PreAssessment | None = None
    min_cohort_size: int = 0
    is_reviewer_view: bool = False

    @property
    def rule_words(self) -> str:
        """The decision rule in plain words: the one applied, or (while voting) the one that will be."""
        if self.summary.request.rule is None and self.standing is not None:
            return rule_words(self.standing.spec.name)
        return self.summary.rule_words


def _summaries(
    conn: Connection, requests: list[AccessRequest], at: datetime, names: dict[str, str] | None = None
) -> list[RequestSummary]:
    names = names if names is not None else {o.id: o.name for o in list_organisations(conn)}
    vocabulary = vocabulary_in_force(conn)
    return [
        RequestSummary(
            request=r,
            organisation_name=names.get(r.organisation, r.organisation),
            state=r.state_at(at),
            purpose_label=vocabulary.label("purposes", r.purpose),
            category_labels=[vocabulary.label("categories", c) for c in r.categories],
        )
        for r in requests
    ]


def request_summaries(conn: Connection, *, at: datetime, states: tuple[str, ...] | None = None) -> list[RequestSummary]:
    """Every request (newest first), optionally only those in one of *states* at *at*."""
    found = _summaries(conn, list_requests(conn, at=at), at)
    return found if states is None else [s for s in found if s.state in states]


def _votes(conn: Connection, request_id: str, at: datetime, names: dict[str, str]) -> list[VoteView]:
    return [VoteView(v, names.get(v.trustee, "A trustee")) for v in list_votes(conn, request_id, at=at)]


def request_dossier(conn: Connection, request_id: str, *, at: datetime, for_reviewer: bool) -> Dossier:
    """One request with what its reader may see (:class:`NotFoundError` if there is none)."""
    request = get_request(conn, request_id)
    [summary] = _summaries(conn, [request], at)
    names = people_names(conn, at)
    conflicts = [(c, names.get(c.trustee, "A trustee")) for c in list_conflicts(conn, request_id, at=at)]
    ethics = [d for d in list_decisions(conn, request=request_id) if d.at <= format_at(at)]
    if request.project:
        ethics += [
            d
            for d in list_decisions(conn)
            if d.request is None and d.project == request.project and d.at <= format_at(at)
        ]
    is_decided = summary.state in DECIDED_STATES
    votes = _votes(conn, request_id, at, names) if (is_decided or for_reviewer) else []
    if not for_reviewer:
        return Dossier(summary, conflicts, ethics, [v for v in votes if v.vote.is_current])
    return Dossier(
        summary,
        conflicts,
        ethics,
        votes,
        comments=list_comments(conn, request_id),
        standing=None if is_decided else standing(conn, request, at=at),
        preassessment=preassess(conn, request_id, at=at),
        min_cohort_size=config_by_seq(conn, request.config_seq).config.min_cohort_size,
        is_reviewer_view=True,
    )


# -- checks by month ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthlyChecks:
    """Checks one partner asked for in one month; a count of 1 to ``minimum - 1`` is None (suppressed)."""

    month: str
    organisation: str
    organisation_name: str
    permitted: int | None
    denied: int | None

    @property
    def month_words(self) -> str:
        """``2026-11`` -> ``November 2026``."""
        year, month = self.month.split("-")
        return f"{datetime(int(year), int(month), 1):%B} {year}"  # noqa: DTZ001 - a calendar month, not an instant


def _months_back(at: datetime, months: int) -> str:
    """The first instant of the calendar month *months* - 1 before *at*'s month, as a ``format_at`` prefix."""
    index = at.year * 12 + at.month - 1 - (months - 1)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def suppress(count: int, minimum: int) -> int | None:
    """*count*, or None when it is between 1 and *minimum* - 1 (too few to publish safely)."""
    return None if 0 < count < minimum else count


def monthly_checks(conn: Connection, *, at: datetime, minimum: int, months: int = CHECK_MONTHS) -> list[MonthlyChecks]:
    """Checks permitted and denied per partner per month (newest month first), small counts suppressed."""
    d = check_decisions_table.c
    month = func.substr(d.at, 1, 7)
    rows = conn.execute(
        select(month, d.organisation, d.decision, func.count())
        .where(d.at >= _months_back(at, months), d.at <= format_at(at))
        .group_by(month, d.organisation, d.decision)
    )
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for month_text, organisation, decision, count in rows:
        counts.setdefault((str(month_text), str(organisation)), {})[str(decision)] = int(count)
    names = {o.id: o.name for o in list_organisations(conn)}
    ordered = sorted(counts.items(), key=lambda item: (item[0][0], names.get(item[0][1], item[0][1])))
    ordered.sort(key=lambda item: item[0][0], reverse=True)
    return [
        MonthlyChecks(
            month=month_text,
            organisation=organisation,
            organisation_name=names.get(organisation, organisation),
            permitted=suppress(by_decision.get("permit", 0), minimum),
            denied=suppress(by_decision.get("deny", 0), minimum),
        )
        for (month_text, organisation), by_decision in ordered
    ]


# -- agreements and ethics in force ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementView:
    """An agreement version in force, in words."""

    agreement: Agreement
    organisation_name: str
    purpose_labels: list[str]
    category_labels: list[str]
    operation_words: list[str]


@dataclass(frozen=True, slots=True)
class EthicsView:
    """An ethics decision in force, with what it is about."""

    decision: EthicsDecision
    about: str

    @property
    def outcome_words(self) -> str:
        """Approved, approved with conditions, or rejected."""
        return ETHICS_WORDS.get(self.decision.outcome, self.decision.outcome)


def agreements_now(conn: Connection, *, at: datetime) -> list[AgreementView]:
    """Every agreement version in force at *at*, by organisation."""
    vocabulary = vocabulary_in_force(conn)
    found: list[AgreementView] = []
    for org in list_organisations(conn):
        found.extend(
            AgreementView(
                agreement=a,
                organisation_name=org.name,
                purpose_labels=[vocabulary.label("purposes", p) for p in a.purposes],
                category_labels=[vocabulary.label("categories", c) for c in a.categories],
                operation_words=[OPERATION_WORDS.get(o, o) for o in a.operations],
            )
            for a in agreements_in_force(conn, org.id, at)
        )
    return found


def _ethics_about(decision: EthicsDecision, titles: dict[str, str]) -> str:
    if decision.request is not None:
        return titles.get(decision.request, decision.request)
    return f"The project “{decision.project}”" if decision.project else "—"


def ethics_now(conn: Connection, *, at: datetime) -> list[EthicsView]:
    """Ethics decisions recorded by *at* that are neither superseded nor expired, newest first."""
    moment = format_at(at)
    titles = {r.id: r.title for r in list_requests(conn, at=at)}
    current = [
        d
        for d in list_decisions(conn)
        if d.at <= moment
        and (d.superseded_at is None or d.superseded_at > moment)
        and (d.expires_at is None or d.expires_at > moment)
    ]
    return [EthicsView(d, _ethics_about(d, titles)) for d in reversed(current)]


# -- the whole register ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicRegister:
    """Everything on the public register page at one instant."""

    at: str
    profile: TrustProfile
    governance: Governance
    in_notice: list[RequestSummary]
    in_voting: list[RequestSummary]
    decided: list[tuple[RequestSummary, list[VoteView]]]
    agreements: list[AgreementView]
    ethics: list[EthicsView]
    checks: list[MonthlyChecks]
    min_cohort_size: int


def public_register(conn: Connection, *, at: datetime) -> PublicRegister:
    """The public register as it stands at *at*."""
    rules = governance(conn, at=at)
    minimum = rules.config.config.min_cohort_size
    summaries = request_summaries(conn, at=at)
    names = people_names(conn, at)
    decided = [
        (s, [v for v in _votes(conn, s.request.id, at, names) if v.vote.is_current])
        for s in summaries
        if s.state in DECIDED_STATES
    ]
    return PublicRegister(
        at=format_at(at),
        profile=trust_profile(conn),
        governance=rules,
        in_notice=[s for s in summaries if s.state == PUBLIC_NOTICE],
        in_voting=[s for s in summaries if s.state == VOTING],
        decided=decided,
        agreements=agreements_now(conn, at=at),
        ethics=ethics_now(conn, at=at),
        checks=monthly_checks(conn, at=at, minimum=minimum),
        min_cohort_size=minimum,
    )


# -- the feed of decisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One decision for the Atom feed."""

    seq: int
    at: str
    kind: str
    title: str
    summary: str
    request: str | None


def _request_items(summary: RequestSummary, at: str) -> list[FeedItem]:
    r = summary.request
    items = []
    if r.decided_seq is not None and r.decided_at is not None and r.decided_at <= at:
        outcome = "approved" if r.outcome == APPROVED else "rejected"
        tally = r.tally or {}
        items.append(
            FeedItem(
                seq=r.decided_seq,
                at=r.decided_at,
                kind="request.decided",
                title=f"Request {outcome}: {r.title}",
                summary=(
                    f"The trustees {outcome} this request from {summary.organisation_name}: "
                    f"{tally.get('approve', 0)} approved, {tally.get('reject', 0)} rejected, "
                    f"{tally.get('abstain', 0)} abstained (rule: {summary.rule_words})."
                ),
                request=r.id,
            )
        )
    if r.revoked_seq is not None and r.revoked_at is not None and r.revoked_at <= at:
        items.append(
            FeedItem(
                seq=r.revoked_seq,
                at=r.revoked_at,
                kind="request.revoked",
                title=f"Approval withdrawn: {r.title}",
                summary=f"The trustees withdrew the approval given to {summary.organisation_name}: "
                f"{r.revocation_reason or ''}",
                request=r.id,
            )
        )
    return items


def decision_feed(conn: Connection, *, at: datetime, limit: int = FEED_LIMIT) -> list[FeedItem]:
    """The most recent decisions recorded by *at*, newest first."""
    moment = format_at(at)
    items: list[FeedItem] = []
    summaries = request_summaries(conn, at=at)
    for summary in summaries:
        items.extend(_request_items(summary, moment))
    titles = {s.request.id: s.request.title for s in summaries}
    for decision in list_decisions(conn):
        if decision.at > moment:
            continue
        about = _ethics_about(decision, titles)
        items.append(
            FeedItem(
                seq=decision.seq,
                at=decision.at,
                kind="ethics.decided",
                title=f"Ethics decision: {ETHICS_WORDS.get(decision.outcome, decision.outcome)} — {about}",
                summary=decision.conditions_text or ETHICS_WORDS.get(decision.outcome, decision.outcome),
                request=decision.request,
            )
        )
    items.sort(key=lambda item: item.seq, reverse=True)
    return items[:limit]


# -- the trustees' desk ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A request on the trustees' desk, with where this reviewer stands on it."""

    summary: RequestSummary
    preassessment: str | None
    my_vote: str | None
    is_recused: bool
    votes_cast: int
    comments: int


@dataclass(frozen=True, slots=True)
class DeskQueue:
    """Requests awaiting a vote, on public notice, and decided (newest first)."""

    voting: list[QueueItem]
    notice: list[QueueItem]
    decided: list[QueueItem]


def desk_queue(conn: Connection, *, at: datetime, reviewer: str) -> DeskQueue:
    """The desk as *reviewer* (a person id) sees it at *at*: pre-assessments only for requests in voting."""
    voting, notice, decided = [], [], []
    for summary in request_summaries(conn, at=at):
        request_id = summary.request.id
        votes = list_votes(conn, request_id, at=at)
        current = {v.trustee: v.choice for v in votes if v.is_current}
        in_voting = summary.state == VOTING and not summary.request.is_decision_due(at)
        item = QueueItem(
            summary=summary,
            preassessment=preassess(conn, request_id, at=at).outcome if in_voting else None,
            my_vote=current.get(reviewer),
            is_recused=any(c.trustee == reviewer for c in list_conflicts(conn, request_id, at=at)),
            votes_cast=len(current),
            comments=len(list_comments(conn, request_id)),
        )
        if summary.state == VOTING:
            voting.append(item)
        elif summary.state == PUBLIC_NOTICE:
            notice.append(item)
        else:
            decided.append(item)
    return DeskQueue(voting=voting, notice=notice, decided=decided)
