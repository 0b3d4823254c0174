"""The engine: every rule reported, fail closed, deny covers everyone, obligations merged."""

from __future__ import annotations

import pytest

from tests.trust.rules_story import Story, baseline, excluded, outcome
from trust.rules.engine import Engine

RULES = ["organisation", "agreement", "request", "ethics", "consent", "proportionality", "retention"]


def test_an_engine_without_rules_refuses_to_exist() -> None:
    """An empty engine would permit everything, so it cannot be built."""
    with pytest.raises(ValueError, match="no rules"):
        Engine([], [])


def test_every_rule_is_reported_in_order() -> None:
    """A permit lists every rule's outcome, in the documented order."""
    decision = baseline().check()
    assert [r.rule for r in decision.reasons] == RULES
    assert decision.is_permit


def test_no_short_circuit_on_failure() -> None:
    """A check that fails several rules reports every failure at once."""
    decision = baseline().suspend("org_a").terminate("agr_a").revoke("req_a").check()
    assert [r.rule for r in decision.reasons] == RULES
    assert {r.rule for r in decision.reasons if r.outcome == "fail"} >= {"organisation", "agreement", "request"}


def test_deny_excludes_every_subject_with_the_first_blocking_rule() -> None:
    """On deny nobody is permitted; subjects the consent rule covered are excluded by the first blocking rule."""
    story = baseline().withdraw("con_1").suspend("org_a")
    decision = story.check()
    assert decision.decision == "deny"
    assert decision.permitted == ()
    assert decision.obligations == ()
    assert excluded(decision)["sub_1"] == "consent"
    assert {excluded(decision)[f"sub_{n}"] for n in range(2, 13)} == {"organisation"}


def test_indeterminate_means_deny_needing_review() -> None:
    """An indeterminate rule turns the answer into deny with 'needs review by trustees'."""
    story = Story().org("org_a").agreement("agr_a").request("req_a").decide("req_a")
    story.ethics(request="req_a", conditions_text="Only with the panel's agreement.")
    story.consent("con_1", subject="sub_1")
    decision = story.check(cohort_size=10)
    assert outcome(decision, "ethics") == "indeterminate"
    assert decision.decision == "deny"
    assert decision.excluded[0].rule == "ethics"
    assert decision.excluded[0].reason.endswith("needs review by trustees")


def test_decision_records_prefix_and_instant() -> None:
    """A decision names the last entry it saw and the instant it was evaluated at."""
    story = baseline()
    decision = story.check()
    assert decision.as_of == story.last
    assert decision.at == decision.to_json()["evaluated_at"]


def test_geography_obligations_intersect() -> None:
    """When the agreement and the ethics approval both limit geography, only countries both allow remain."""
    story = Story().org("org_a").agreement("agr_a", geography=("GB", "IE")).request("req_a").decide("req_a")
    story.ethics(request="req_a", obligations=[("geography", ["GB", "FR"])])
    story.consent("con_1", subject="sub_1")
    decision = story.check(operation="pseudonymised")
    assert decision.is_permit
    assert {"type": "geography", "value": ["GB"]} in decision.obligations
