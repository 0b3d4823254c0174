"""The access-request state machine: every allowed transition, and every refused one with nothing appended."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from api.instance import Instance
from ledger.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    SignatureInvalidError,
    ValidationError,
)
from ledger.keys import Signer, Verifier
from tests.trust.governance_helpers import ADMIN, DAY, ORG, T0, Gov, config_with, make_gov, read
from trust import membership, organisations
from trust.requests import (
    close_due_requests,
    comment_on_request,
    decide_request,
    declare_conflict,
    get_request,
    list_comments,
    revoke_request,
)
from trust.votes import cast_vote, vote_message

NOTICE_END = T0 + 14 * DAY
VOTING = NOTICE_END + DAY
VOTING_END = NOTICE_END + 14 * DAY


@pytest.fixture
def gov(instance: Instance) -> Gov:
    """A trust with the food bank registered, on each database."""
    return make_gov(instance)


def vote(gov: Gov, request: str, trustee: str, choice: str, *, now: Any = VOTING) -> Any:
    """Cast a vote with a reason."""
    return cast_vote(
        gov.ledger,
        request_id=request,
        trustee=trustee,
        choice=choice,
        reason=f"{trustee} votes {choice}",
        agrees_with_preassessment=True,
        now=now,
    )


def state(gov: Gov, request: str, at: Any) -> str:
    """The request's state at *at*."""
    return str(read(gov, get_request, request).state_at(at))


def test_notice_then_voting_then_approved_then_expired(gov: Gov) -> None:
    """A request is on notice, then in voting, is approved as soon as the rule is met, and later expires."""
    trustees = gov.trustees(5)
    request = gov.submit(duration_days=30)
    assert state(gov, request, T0) == "public_notice"
    comment_on_request(gov.ledger, request_id=request, text="Please publish the results.", actor="public", now=T0 + DAY)
    assert [c.text for c in read(gov, list_comments, request)] == ["Please publish the results."]
    assert state(gov, request, NOTICE_END - DAY) == "public_notice"
    assert state(gov, request, NOTICE_END) == "voting"
    assert vote(gov, request, trustees[0], "approve").decision is None
    assert vote(gov, request, trustees[1], "approve").decision is None
    result = vote(gov, request, trustees[2], "approve")
    assert result.decision is not None
    assert result.decision.payload["outcome"] == "approved"
    assert result.decision.payload["reason"] == "rule_met"
    assert state(gov, request, VOTING) == "approved"
    assert state(gov, request, VOTING + 29 * DAY) == "approved"
    assert state(gov, request, VOTING + 30 * DAY) == "expired"


def test_rejected_when_majority_rejects(gov: Gov) -> None:
    """Three rejections out of five settle a simple-majority vote as rejected."""
    trustees = gov.trustees(5)
    request = gov.submit()
    for trustee in trustees[:3]:
        result = vote(gov, request, trustee, "reject")
    assert result.decision is not None
    assert result.decision.payload["outcome"] == "rejected"
    assert state(gov, request, VOTING) == "rejected"


def test_approved_then_revoked(gov: Gov) -> None:
    """An approved request can be revoked, and reads as revoked from that instant."""
    trustees = gov.trustees(3)
    request = gov.submit()
    for trustee in trustees:
        vote(gov, request, trustee, "approve")
    revoke_request(gov.ledger, request_id=request, reason="Partner broke the agreement.", actor=ADMIN, now=VOTING + DAY)
    assert state(gov, request, VOTING) == "approved"
    assert state(gov, request, VOTING + DAY) == "revoked"


def test_closed_at_end_of_voting_period(gov: Gov) -> None:
    """When the rule is not met early, the closer records the decision once the voting period ends."""
    trustees = gov.trustees(5)
    request = gov.submit()
    vote(gov, request, trustees[0], "approve")
    vote(gov, request, trustees[1], "abstain")
    vote(gov, request, trustees[2], "abstain")
    with gov.conn() as conn:
        assert close_due_requests(gov.ledger, conn, now=VOTING_END - DAY) == []
    assert read(gov, get_request, request).is_decision_due(VOTING_END)
    with gov.conn() as conn:
        decided = close_due_requests(gov.ledger, conn, now=VOTING_END)
    assert [e.payload["reason"] for e in decided] == ["voting_period_ended"]
    assert decided[0].payload["outcome"] == "approved"
    assert decided[0].payload["tally"]["approve"] == 1
    with gov.conn() as conn:
        assert close_due_requests(gov.ledger, conn, now=VOTING_END + DAY) == []


def test_no_quorum_is_rejected_at_the_end(gov: Gov) -> None:
    """Without quorum at the end of the voting period the request is rejected, saying why."""
    trustees = gov.trustees(5)
    request = gov.submit()
    vote(gov, request, trustees[0], "approve")
    entry = decide_request(gov.ledger, request_id=request, now=VOTING_END)
    assert entry.payload["outcome"] == "rejected"
    assert entry.payload["reason"] == "quorum_not_reached"
    assert entry.payload["tally"]["quorum_met"] is False


def test_fast_track_skips_notice(gov: Gov) -> None:
    """A non-sensitive fast-track request goes straight to voting and is approved at the end if nobody objects."""
    gov.adopt(config_with(fast_track__enabled=True))
    trustees = gov.trustees(4)
    request = gov.submit(fast_track=True)
    row = read(gov, get_request, request)
    assert row.track == "fast"
    assert state(gov, request, T0) == "voting"
    vote(gov, request, trustees[0], "approve", now=T0 + DAY)
    with gov.conn() as conn:
        assert close_due_requests(gov.ledger, conn, now=T0 + 4 * DAY) == []
        decided = close_due_requests(gov.ledger, conn, now=T0 + 5 * DAY)
    assert decided[0].payload["outcome"] == "approved"
    assert decided[0].payload["rule"] == "fast_track_no_objection"


SENSITIVE: list[dict[str, Any]] = [
    {"categories": ["health.mental"]},  # a special category
    {"vulnerable_people": True},
    {"operation": "pseudonymised", "cohort_size": None},  # an operation the fast track does not allow
]


def test_sensitive_flags_force_full_vote(gov: Gov) -> None:
    """Special categories, vulnerable people or an operation outside the fast track force a full vote."""
    gov.adopt(config_with(fast_track__enabled=True))
    for changes in SENSITIVE:
        request = gov.submit(fast_track=True, **changes)
        assert read(gov, get_request, request).track == "full", changes
        assert state(gov, request, T0) == "public_notice"


def test_identifiable_output_is_flagged(gov: Gov) -> None:
    """Identifiable output is always flagged and never fast-tracked."""
    gov.adopt(config_with(fast_track__enabled=True, fast_track__operations=["aggregate", "pseudonymised"]))
    request = gov.submit(fast_track=True, operation="identifiable", subjects=["sub_a", "sub_b"], cohort=None)
    row = read(gov, get_request, request)
    assert row.flags["identifiable_output"] is True
    assert row.track == "full"


# -- refused transitions ---------------------------------------------------------------------


INVALID_SUBMISSIONS: list[tuple[dict[str, Any], str]] = [
    ({"duration_days": 0}, "duration_days"),  # below requests.min_duration_days
    ({"duration_days": 731}, "duration_days"),  # above requests.max_duration_days
    ({"purpose": "marketing"}, "unknown purpose"),  # not in the vocabulary
    ({"categories": ["housing", "helth"]}, "unknown data category"),  # a typo is named
    ({"operation": "sell"}, "operation"),
    ({"cohort": None, "subjects": None}, "cohort"),  # nobody described
    ({"cohort_size": None}, "cohort_size"),  # aggregate needs a size to check the minimum
    ({"subjects": ["alice@example.org"]}, "subject references"),  # personal data, not a sub_ reference
    ({"five_safes": {"people": "x"}}, "five_safes"),
    ({"proportionality": {"necessity": "a", "minimisation": "b", "alternatives": " "}}, "alternatives"),
    ({"lay_summary": " "}, "lay_summary"),
]


def test_every_disallowed_transition_is_refused_and_appends_nothing(gov: Gov) -> None:
    """Each disallowed action raises a precise error and leaves the ledger exactly as it was."""
    t1, t2, t3, t4, t5 = gov.trustees(5)
    on_notice = gov.submit()
    in_voting = gov.submit()
    approved = gov.submit()
    rejected = gov.submit()
    revoked = gov.submit()
    later = gov.submit()
    declare_conflict(gov.ledger, request_id=in_voting, trustee=t1, interest="I chair the food bank.", now=T0)
    membership.remove(gov.ledger, person_id=t5, role="trustee", reason="Term ended.", actor=ADMIN, now=T0 + DAY)
    for trustee in (t1, t2, t3):
        vote(gov, approved, trustee, "approve")
        vote(gov, rejected, trustee, "reject")
        vote(gov, revoked, trustee, "approve")
    revoke_request(gov.ledger, request_id=revoked, reason="Misuse.", actor=ADMIN, now=VOTING)
    vote(gov, in_voting, t2, "approve")
    vote(gov, later, t2, "approve")
    vote(gov, later, t3, "approve")
    vote(gov, later, t4, "reject")

    def conflict(request: str, trustee: str, now: Any = VOTING) -> Callable[[], object]:
        return lambda: declare_conflict(gov.ledger, request_id=request, trustee=trustee, interest="x", now=now)

    def comment(request: str, now: Any, text: str = "A comment.") -> Callable[[], object]:
        return lambda: comment_on_request(gov.ledger, request_id=request, text=text, actor="public", now=now)

    def decide(request: str, now: Any = VOTING) -> Callable[[], object]:
        return lambda: decide_request(gov.ledger, request_id=request, now=now)

    def revoke(request: str) -> Callable[[], object]:
        return lambda: revoke_request(gov.ledger, request_id=request, reason="Again.", actor=ADMIN, now=VOTING + DAY)

    cases: list[tuple[str, type[DomainError], str, Callable[[], object]]] = [
        (
            "vote during notice",
            InvalidStateError,
            "opens at",
            lambda: vote(gov, on_notice, t2, "approve", now=T0 + DAY),
        ),
        ("vote after close", InvalidStateError, "decided", lambda: vote(gov, approved, t4, "approve")),
        (
            "vote after period, before close recorded",
            InvalidStateError,
            "closed at",
            lambda: vote(gov, in_voting, t3, "approve", now=VOTING_END),
        ),
        ("vote by recused trustee", ForbiddenError, "recused", lambda: vote(gov, in_voting, t1, "approve")),
        ("vote by removed trustee", ForbiddenError, "not a trustee", lambda: vote(gov, in_voting, t5, "approve")),
        (
            "vote by someone never appointed",
            ForbiddenError,
            "not a trustee",
            lambda: vote(gov, in_voting, "person_stranger", "approve"),
        ),
        ("vote on unknown request", NotFoundError, "does not exist", lambda: vote(gov, "req_nope", t2, "approve")),
        ("second conflict declaration", ConflictError, "already declared", conflict(in_voting, t1)),
        ("conflict by removed trustee", ForbiddenError, "not a trustee", conflict(in_voting, t5)),
        ("conflict after decision", InvalidStateError, "before it is decided", conflict(approved, t4)),
        ("comment after notice ends", InvalidStateError, "closed", comment(in_voting, NOTICE_END)),
        ("empty comment", ValidationError, "empty", comment(on_notice, T0, "  ")),
        ("over-long comment", ValidationError, "at most 2000", comment(on_notice, T0, "x" * 2001)),
        ("decision during notice", InvalidStateError, "public notice", decide(on_notice, T0 + DAY)),
        ("decision before quorum", InvalidStateError, "quorum not reached", decide(in_voting)),
        ("decision while outcome could change", InvalidStateError, "could still change", decide(later)),
        ("second decision", InvalidStateError, "already decided", decide(approved, VOTING_END)),
        ("revoke while voting", InvalidStateError, "only an approved request", revoke(in_voting)),
        ("revoke a rejection", InvalidStateError, "only an approved request", revoke(rejected)),
        ("revoke twice", InvalidStateError, "only an approved request", revoke(revoked)),
    ]

    def submit(changes: dict[str, Any]) -> Callable[[], object]:
        return lambda: gov.submit(**changes)

    cases += [(f"invalid submission: {match}", ValidationError, match, submit(c)) for c, match in INVALID_SUBMISSIONS]
    organisations.suspend_organisation(gov.ledger, org_id=ORG, reason="Breach.", actor=ADMIN, now=VOTING)
    cases.append(
        ("submission by a suspended organisation", ForbiddenError, "suspended", lambda: gov.submit(now=VOTING + DAY))
    )
    for name, error, match, action in cases:
        before = gov.size()
        with pytest.raises(error, match=match):
            action()
        assert gov.size() == before, name


def test_changed_vote_last_counts(gov: Gov) -> None:
    """A trustee may change their vote before the close; every vote stays and the last one counts."""
    trustees = gov.trustees(3)
    request = gov.submit()
    vote(gov, request, trustees[0], "reject")
    vote(gov, request, trustees[0], "approve")
    vote(gov, request, trustees[1], "approve")
    from trust.votes import list_votes  # noqa: PLC0415

    votes = read(gov, list_votes, request)
    assert [(v.choice, v.is_current) for v in votes] == [("reject", False), ("approve", True), ("approve", True)]
    result = vote(gov, request, trustees[2], "reject")
    assert result.decision is not None
    assert result.decision.payload["outcome"] == "approved"
    assert result.decision.payload["tally"]["approve"] == 2


def test_signed_votes(gov: Gov) -> None:
    """A vote signed with the trustee's own key is accepted; a forged or unverifiable signature is refused."""
    key = Signer.generate("trustee")
    vote_key = base64.b64encode(key.verifier.public_key).decode()
    membership.appoint(
        gov.ledger, person_id="person_k", role="trustee", is_chair=False, actor=ADMIN, now=T0, vote_key=vote_key
    )
    (plain,) = gov.trustees(1, chair=False)
    request = gov.submit()
    content: dict[str, Any] = {"choice": "approve", "reason": "Sound.", "agrees_with_preassessment": True}

    def signed(trustee: str, signature: bytes) -> Any:
        return cast_vote(
            gov.ledger,
            request_id=request,
            trustee=trustee,
            now=VOTING,
            signature=base64.b64encode(signature).decode(),
            **content,
        )

    message = vote_message(request=request, trustee="person_k", **content)
    before = gov.size()
    with pytest.raises(SignatureInvalidError):
        signed("person_k", Signer.generate("other").sign(message))
    with pytest.raises(ValidationError, match="no vote_key"):
        signed(plain, key.sign(vote_message(request=request, trustee=plain, **content)))
    assert gov.size() == before
    entry = signed("person_k", key.sign(message)).vote
    Verifier("check", key.verifier.public_key).verify(
        vote_message(
            **{k: entry.payload[k] for k in ("request", "trustee", "choice", "reason", "agrees_with_preassessment")}
        ),
        base64.b64decode(entry.payload["signature"]),
    )
