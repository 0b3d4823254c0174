"""Decision rules and quorum, parametrised over governance configs (pure functions, no database)."""

from __future__ import annotations

import pytest

from tests.trust.governance_helpers import config_with
from trust.decision_rules import Ballot, RuleSpec, evaluate

TRUSTEES = ["t1", "t2", "t3", "t4", "t5"]  # t1 chairs
CHOICE = {"A": "approve", "R": "reject", "X": "abstain"}

SPECS = {
    "majority+chair": RuleSpec.from_config(config_with(decision__rule="simple_majority"), track="full"),
    "majority+reject": RuleSpec.from_config(
        config_with(decision__rule="simple_majority", decision__tie_break="reject"), track="full"
    ),
    "two_thirds": RuleSpec.from_config(config_with(decision__rule="two_thirds"), track="full"),
    "unanimity": RuleSpec.from_config(config_with(decision__rule="unanimity"), track="full"),
    "any_veto": RuleSpec.from_config(config_with(decision__rule="any_veto"), track="full"),
    "fast_track": RuleSpec.from_config(config_with(fast_track__approvals_needed=2), track="fast"),
}


def ballots(pattern: str) -> dict[str, Ballot]:
    """Ballots from a pattern such as ``"AAR-X"`` (one letter per trustee; ``-`` = no vote)."""
    return {
        trustee: Ballot(trustee, CHOICE[letter], seq)
        for seq, (trustee, letter) in enumerate(zip(TRUSTEES, pattern, strict=True))
        if letter != "-"
    }


def decide(spec_name: str, pattern: str, *, is_final: bool) -> tuple[str, str] | None:
    """``(outcome, reason)`` of applying a spec to a pattern, or None while the vote stays open."""
    decision = evaluate(
        SPECS[spec_name], eligible=TRUSTEES, recused=0, ballots=ballots(pattern), chair="t1", is_final=is_final
    )
    return None if decision is None else (decision.outcome, decision.reason)


# Final outcomes when the voting period ends: quorum is 3 votes (default minimum) of 5 eligible.
# Columns: majority+chair, majority+reject, two_thirds, unanimity, any_veto, fast_track (2 needed).
FINAL = [
    ("AAA--", "approved", "approved", "approved", "approved", "approved", "approved"),
    ("AARR-", "approved", "rejected", "rejected", "rejected", "rejected", "rejected"),  # tie: chair t1 approved
    ("RRAA-", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected"),  # tie: chair t1 rejected
    ("XAARR", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected"),  # tie: chair abstained
    ("AAR--", "approved", "approved", "approved", "rejected", "rejected", "rejected"),  # exactly two thirds
    ("AAX--", "approved", "approved", "approved", "rejected", "approved", "approved"),  # abstention blocks unanimity
    ("AAAAR", "approved", "approved", "approved", "rejected", "rejected", "rejected"),
    ("XXX--", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected"),  # nobody approved
    ("AA---", "rejected", "rejected", "rejected", "rejected", "rejected", "approved"),  # no quorum (fast: 2 enough)
    ("AX---", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected"),  # fast: one approval too few
]


@pytest.mark.parametrize("row", FINAL, ids=[r[0] for r in FINAL])
@pytest.mark.parametrize("column", range(6), ids=list(SPECS))
def test_final_outcome(row: tuple[str, ...], column: int) -> None:
    """At the end of the voting period each rule gives the outcome in the table."""
    pattern, expected = row[0], row[1 + column]
    result = decide(list(SPECS)[column], pattern, is_final=True)
    assert result is not None
    assert result[0] == expected


def test_no_quorum_reason() -> None:
    """Without quorum the request is rejected and the reason says so."""
    assert decide("majority+chair", "AA---", is_final=True) == ("rejected", "quorum_not_reached")
    assert decide("majority+chair", "AAA--", is_final=True) == ("approved", "voting_period_ended")


# Early closes while voting is open: decided only once the missing votes cannot change the outcome.
EARLY = [
    ("majority+chair", "AAA--", ("approved", "rule_met")),  # 3 of 5 approve: a majority whatever the rest do
    ("majority+chair", "RRR--", ("rejected", "rule_met")),
    ("majority+chair", "AARR-", None),  # t5 decides it
    ("majority+chair", "R----", None),  # no quorum yet
    ("two_thirds", "AAA--", None),  # 3 of 5 is below two thirds if t4 and t5 reject
    ("two_thirds", "AAAA-", ("approved", "rule_met")),
    ("two_thirds", "RR---", None),  # quorum not met yet
    ("two_thirds", "RRA--", ("rejected", "rule_met")),  # at most 3 of 5 can approve
    ("unanimity", "AAAA-", None),
    ("unanimity", "AAAAA", ("approved", "rule_met")),
    ("unanimity", "AAR--", ("rejected", "rule_met")),
    ("any_veto", "AAA--", None),  # a veto could still come
    ("any_veto", "AAR--", ("rejected", "rule_met")),
    ("fast_track", "AA---", None),  # approved only at the end, if nobody objects
    ("fast_track", "AR---", ("rejected", "rule_met")),
]


@pytest.mark.parametrize(("spec", "pattern", "expected"), EARLY, ids=[f"{s}-{p}" for s, p, _ in EARLY])
def test_early_close(spec: str, pattern: str, expected: tuple[str, str] | None) -> None:
    """The vote closes early exactly when the outcome is settled."""
    assert decide(spec, pattern, is_final=False) == expected


@pytest.mark.parametrize(
    ("minimum", "percent", "eligible", "required"),
    [
        (3, 50, 5, 3),  # the minimum dominates
        (1, 50, 5, 3),  # ceil(2.5) = 3
        (1, 100, 4, 4),  # everyone
        (2, 0, 7, 2),
        (1, 60, 3, 2),  # five in office, two recused: 60 % of the three eligible
    ],
)
def test_quorum_required(minimum: int, percent: int, eligible: int, required: int) -> None:
    """Quorum is the larger of the minimum and the percentage of eligible trustees, rounded up."""
    spec = RuleSpec("simple_majority", "chair", minimum, percent)
    assert spec.quorum_required(eligible) == required


def test_recused_are_not_counted() -> None:
    """Votes of trustees outside the eligible list (recused or removed) are ignored, and so is a recused chair."""
    spec = SPECS["majority+chair"]
    votes = ballots("AARR-")
    decision = evaluate(spec, eligible=["t2", "t3", "t4"], recused=2, ballots=votes, chair="t1", is_final=True)
    assert decision is not None
    assert decision.tally.to_json() == {
        "eligible": 3,
        "recused": 2,
        "approve": 1,
        "reject": 2,
        "abstain": 0,
        "cast": 3,
        "quorum_required": 3,
        "quorum_met": True,
        "chair": None,
        "chair_vote": None,
    }
    assert decision.outcome == "rejected"
    assert decision.votes == [1, 2, 3]


def test_rule_names() -> None:
    """The register shows the rule by a stable name."""
    assert [s.name for s in SPECS.values()] == [
        "simple_majority+chair_casting_vote",
        "simple_majority+tie_rejects",
        "two_thirds",
        "unanimity",
        "any_veto",
        "fast_track_no_objection",
    ]
