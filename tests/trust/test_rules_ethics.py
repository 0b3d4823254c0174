"""The ethics rule: special categories need an approval in force, with conditions the engine can check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.trust.rules_story import MICROSECOND, Story, baseline, evidence, outcome, reason
from trust.rules import ethics


def _without_ethics() -> Story:
    story = Story().org("org_a").agreement("agr_a").request("req_a").decide("req_a")
    for n in range(1, 13):
        story.consent(f"con_{n}", subject=f"sub_{n}")
    return story


def test_not_applicable_without_special_categories() -> None:
    """A share of non-special categories needs no ethics approval and cites nothing."""
    decision = baseline().check(categories=["demographics.age"])
    assert outcome(decision, "ethics") == "not_applicable"
    assert evidence(decision, "ethics") == []
    assert decision.decision == "permit"


def test_pass_cites_the_approval() -> None:
    """An approval in force for the request passes, citing it."""
    story = baseline()
    decision = story.check()
    assert outcome(decision, "ethics") == "pass"
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_fail_without_an_approval() -> None:
    """Special-category data with no ethics decision at all fails, citing nothing."""
    decision = _without_ethics().check()
    assert outcome(decision, "ethics") == "fail"
    assert evidence(decision, "ethics") == []
    assert "needs an ethics approval" in reason(decision, "ethics").message


def test_later_rejection_supersedes_the_approval() -> None:
    """The latest decision on the request decides: a rejection after an approval fails, citing the rejection."""
    story = baseline().ethics(request="req_a", outcome="rejected")
    decision = story.check()
    assert outcome(decision, "ethics") == "fail"
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_expires_exactly_at_expires_at() -> None:
    """An approval is in force one microsecond before its expiry and not at it."""
    story = _without_ethics()
    ends = story.now + timedelta(days=90)
    story.ethics(request="req_a", expires_at=ends)
    assert outcome(story.check(at=ends - MICROSECOND), "ethics") == "pass"
    decision = story.check(at=ends)
    assert outcome(decision, "ethics") == "fail"
    assert "expired" in reason(decision, "ethics").message
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_indeterminate_for_conditions_only_in_words() -> None:
    """A condition written only in words is indeterminate: the answer is deny, needing review by trustees."""
    story = _without_ethics().ethics(
        request="req_a", outcome="approved_with_conditions", conditions_text="Only after the community panel agrees."
    )
    decision = story.check()
    assert outcome(decision, "ethics") == "indeterminate"
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]
    assert decision.decision == "deny"
    assert all("needs review by trustees" in x.reason for x in decision.excluded)


def test_indeterminate_for_an_obligation_type_it_does_not_know() -> None:
    """An obligation of a type the engine cannot check is indeterminate, never guessed."""
    story = _without_ethics().ethics(request="req_a", obligations=[("no_linkage_with_police_data", True)])
    decision = story.check()
    assert outcome(decision, "ethics") == "indeterminate"
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_known_obligations_are_the_ethics_modules() -> None:
    """The rule knows exactly the obligation types trust/ethics.py lets the committee record."""
    from trust import ethics as ethics_service  # noqa: PLC0415 - the contract with the governance code

    assert set(ethics_service.OBLIGATION_TYPES) == ethics.KNOWN_OBLIGATIONS


@pytest.mark.parametrize(
    ("obligation", "action", "words"),
    [
        (("operations", ["aggregate"]), {"operation": "pseudonymised"}, "allows only aggregate use"),  # operation
        (("min_cohort", 20), {}, "at least 20 people"),  # cohort of 12 is too small for this approval
        (("categories", ["health.disability"]), {}, "does not cover health.mental"),  # only another category
        (("geography", ["GB"]), {"geography": "FR"}, "only in GB, not FR"),  # processing abroad
    ],
)
def test_fail_when_the_action_breaks_an_obligation(
    obligation: tuple[str, object], action: dict[str, Any], words: str
) -> None:
    """Machine-checkable conditions of the approval are enforced, citing the approval."""
    story = _without_ethics().ethics(request="req_a", outcome="approved_with_conditions", obligations=[obligation])
    decision = story.check(**action)
    assert outcome(decision, "ethics") == "fail"
    assert words in reason(decision, "ethics").message
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_obligations_are_handed_to_the_partner() -> None:
    """Conditions the partner must honour become obligations of the permit (earliest deletion date wins)."""
    story = _without_ethics()
    story.ethics(
        request="req_a",
        outcome="approved_with_conditions",
        conditions_text="Delete within 30 days; report by June.",
        obligations=[("retention_days", 30), ("review_by", "2026-06-30"), ("min_cohort", 12)],
    )
    decision = story.check()
    assert decision.decision == "permit"
    obligations = {o["type"]: o["value"] for o in decision.obligations}
    assert obligations["delete_by"] == (story.now.date() + timedelta(days=30)).isoformat()
    assert obligations["review_by"] == "2026-06-30"
    assert obligations["min_cohort"] == 12


def test_project_approval_covers_the_projects_requests() -> None:
    """A request with no decision of its own is covered by its project's approval; its own decision wins."""
    story = Story().org("org_a").agreement("agr_a").request("req_a", project="Healthy Minds").decide("req_a")
    story.consent("con_1", subject="sub_1")
    story.ethics(request=None, project="Healthy Minds")
    decision = story.check(cohort_size=10)
    assert outcome(decision, "ethics") == "pass"
    assert evidence(decision, "ethics") == [story["ethics:Healthy Minds"]]
    story.ethics(request="req_a", outcome="rejected")
    decision = story.check(cohort_size=10)
    assert outcome(decision, "ethics") == "fail"
    assert evidence(decision, "ethics") == [story["ethics:req_a"]]


def test_another_projects_approval_does_not_count() -> None:
    """An approval for a different project does not cover the request."""
    story = Story().org("org_a").agreement("agr_a").request("req_a", project="Healthy Minds").decide("req_a")
    story.consent("con_1", subject="sub_1").ethics(request=None, project="Other Study")
    assert outcome(story.check(cohort_size=10), "ethics") == "fail"


def test_governance_config_lists_categories_needing_approval() -> None:
    """A category the governance config lists (here housing, by its parent code) needs an approval from then on."""
    story = Story().org("org_a").agreement("agr_a", categories=("housing",)).request("req_h", categories=("housing",))
    story.decide("req_h").consent("con_1", subject="sub_1", categories=("housing",))
    action: dict[str, Any] = {"request": "req_h", "categories": ["housing.tenancy"], "cohort_size": 10}
    changed_at = story.now
    story.configure(categories_requiring_approval=["housing"])
    assert outcome(story.check(at=changed_at - MICROSECOND, **action), "ethics") == "not_applicable"
    decision = story.check(**action)
    assert outcome(decision, "ethics") == "fail"


def test_default_vocabulary_applies_until_one_is_adopted() -> None:
    """Health is special under the shipped vocabulary even when the config lists no category."""
    story = Story(configure=False).configure(categories_requiring_approval=[])
    story.org("org_a").agreement("agr_a").request("req_a").decide("req_a").consent("con_1", subject="sub_1")
    assert outcome(story.check(cohort_size=10), "ethics") == "fail"


def test_adopted_vocabulary_marks_categories_special() -> None:
    """A vocabulary that marks housing special makes housing need ethics approval and explicit consent."""
    story = Story().configure(categories_requiring_approval=[]).vocabulary(special=["housing"])
    story.org("org_a").agreement("agr_a", categories=("housing",)).request("req_h", categories=("housing",))
    story.decide("req_h").consent("con_1", subject="sub_1", categories=("housing",), explicit=False)
    decision = story.check(request="req_h", categories=["housing"], cohort_size=10)
    assert outcome(decision, "ethics") == "fail"
    assert "not given explicitly" in decision.excluded[0].reason
