"""How trustees' votes become a decision: quorum and the decision rules, as pure functions.

Words used here (and in GOVERNANCE.md):

* **eligible** trustees: in office at the moment of decision and not recused (a trustee who
  declared a conflict on the request is recused and neither counts nor is counted);
* **cast** votes: the current (latest) vote of each eligible trustee — approve, reject or abstain;
* **quorum**: at least ``max(minimum_votes, ceil(percent_of_eligible * eligible / 100))``
  votes cast, abstentions included. Without quorum nothing is approved.

Rules (A approvals, R rejections, X abstentions among the cast votes):

=================  =========================================================================
simple_majority    approved when A > R. A tie (A = R) is broken by the chair's own vote when
                   ``tie_break = "chair"`` — the side the chair voted for wins; if the chair
                   abstained, did not vote or is recused, the request is rejected. With
                   ``tie_break = "reject"`` a tie is rejected.
two_thirds         approved when A ≥ 1 and A ≥ two thirds of A + R (abstentions do not count).
unanimity          approved when A ≥ 1 and every cast vote is approve (an abstention blocks).
any_veto           approved when A ≥ 1 and nobody rejects (abstentions do not block).
fast track         approved when A ≥ ``fast_track.approvals_needed`` and nobody rejects (the
                   quorum is the same number of votes): in practice approved at the end of the
                   short voting period if enough trustees approve and nobody objects.
=================  =========================================================================

The vote closes EARLY as soon as quorum is reached and the outcome can no longer change
whatever the trustees who have not yet voted do (we check the two extremes: all of them
approve, all of them reject — every rule is monotone in each vote). Otherwise it closes at
the end of the voting period, with whatever votes were cast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trust.config import GovernanceConfig

APPROVE, REJECT, ABSTAIN = "approve", "reject", "abstain"
CHOICES = (APPROVE, REJECT, ABSTAIN)
APPROVED, REJECTED = "approved", "rejected"
RULE_MET, PERIOD_ENDED, NO_QUORUM = "rule_met", "voting_period_ended", "quorum_not_reached"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """The rule and quorum that govern one request (fixed by the config in force at submission)."""

    rule: str
    tie_break: str
    quorum_minimum: int
    quorum_percent: int
    is_fast_track: bool = False

    @classmethod
    def from_config(cls, config: GovernanceConfig, *, track: str) -> RuleSpec:
        """The spec for a request on *track* ("full" or "fast") under *config*."""
        if track == "fast":
            return cls("no_objection", "reject", config.fast_track_approvals_needed, 0, is_fast_track=True)
        return cls(config.rule, config.tie_break, config.quorum_minimum_votes, config.quorum_percent_of_eligible)

    @property
    def name(self) -> str:
        """The rule as recorded in ``request.decided`` and shown on the register."""
        if self.is_fast_track:
            return "fast_track_no_objection"
        if self.rule == "simple_majority":
            return "simple_majority+chair_casting_vote" if self.tie_break == "chair" else "simple_majority+tie_rejects"
        return self.rule

    def quorum_required(self, eligible: int) -> int:
        """Votes needed for quorum among *eligible* trustees."""
        by_percent = -(-self.quorum_percent * eligible // 100)  # ceiling without floats
        return max(self.quorum_minimum, by_percent)


@dataclass(frozen=True, slots=True)
class Ballot:
    """A trustee's current vote."""

    trustee: str
    choice: str
    seq: int


@dataclass(frozen=True, slots=True)
class Tally:
    """The count a decision rests on."""

    eligible: int
    recused: int
    approve: int
    reject: int
    abstain: int
    quorum_required: int
    chair: str | None
    chair_vote: str | None

    @property
    def cast(self) -> int:
        """Votes cast by eligible trustees."""
        return self.approve + self.reject + self.abstain

    @property
    def quorum_met(self) -> bool:
        """Whether enough eligible trustees voted."""
        return self.cast >= self.quorum_required

    def to_json(self) -> dict[str, Any]:
        """The ``tally`` member of ``request.decided``."""
        return {
            "eligible": self.eligible,
            "recused": self.recused,
            "approve": self.approve,
            "reject": self.reject,
            "abstain": self.abstain,
            "cast": self.cast,
            "quorum_required": self.quorum_required,
            "quorum_met": self.quorum_met,
            "chair": self.chair,
            "chair_vote": self.chair_vote,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of applying a rule."""

    outcome: str
    reason: str
    rule: str
    tally: Tally
    votes: list[int]


def outcome_of(spec: RuleSpec, approve: int, reject: int, abstain: int, chair_vote: str | None) -> str:
    """Apply the rule to a count (quorum is checked separately)."""
    if spec.rule == "simple_majority":
        if approve != reject:
            return APPROVED if approve > reject else REJECTED
        if spec.tie_break == "chair" and chair_vote == APPROVE and approve > 0:
            return APPROVED
        return REJECTED
    if spec.rule == "two_thirds":
        return APPROVED if approve > 0 and 3 * approve >= 2 * (approve + reject) else REJECTED
    if spec.rule == "unanimity":
        return APPROVED if approve > 0 and reject == 0 and abstain == 0 else REJECTED
    if spec.rule == "any_veto":
        return APPROVED if approve > 0 and reject == 0 else REJECTED
    if spec.rule == "no_objection":  # the fast track: enough approvals and no rejection
        return APPROVED if approve >= spec.quorum_minimum and reject == 0 else REJECTED
    msg = f"unknown decision rule {spec.rule!r}"
    raise ValueError(msg)


def tally(
    spec: RuleSpec, *, eligible: list[str], recused: int, ballots: Mapping[str, Ballot], chair: str | None
) -> Tally:
    """Count the current votes of *eligible* trustees (ballots of anyone else are ignored)."""
    counted = [ballots[t] for t in eligible if t in ballots]
    chair_ballot = ballots.get(chair) if chair is not None and chair in eligible else None
    return Tally(
        eligible=len(eligible),
        recused=recused,
        approve=sum(b.choice == APPROVE for b in counted),
        reject=sum(b.choice == REJECT for b in counted),
        abstain=sum(b.choice == ABSTAIN for b in counted),
        quorum_required=spec.quorum_required(len(eligible)),
        chair=chair if chair is not None and chair in eligible else None,
        chair_vote=None if chair_ballot is None else chair_ballot.choice,
    )


def evaluate(
    spec: RuleSpec,
    *,
    eligible: list[str],
    recused: int,
    ballots: Mapping[str, Ballot],
    chair: str | None,
    is_final: bool,
) -> Decision | None:
    """The decision now, or None if the vote must stay open (not final and the outcome could still change)."""
    count = tally(spec, eligible=eligible, recused=recused, ballots=ballots, chair=chair)
    seqs = sorted(ballots[t].seq for t in eligible if t in ballots)
    if not count.quorum_met:
        if is_final:
            return Decision(REJECTED, NO_QUORUM, spec.name, count, seqs)
        return None
    outcome = outcome_of(spec, count.approve, count.reject, count.abstain, count.chair_vote)
    if is_final:
        return Decision(outcome, PERIOD_ENDED, spec.name, count, seqs)
    missing = [t for t in eligible if t not in ballots]
    chair_missing = count.chair is not None and count.chair in missing
    extremes = {
        outcome_of(
            spec,
            count.approve + len(missing) * (choice == APPROVE),
            count.reject + len(missing) * (choice == REJECT),
            count.abstain,
            choice if chair_missing else count.chair_vote,
        )
        for choice in (APPROVE, REJECT)
    }
    if extremes == {outcome}:
        return Decision(outcome, RULE_MET, spec.name, count, seqs)
    return None
