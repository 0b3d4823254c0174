"""The proportionality rule: within what was approved, and aggregates large enough."""

from __future__ import annotations

import pytest

from tests.trust.rules_story import MICROSECOND, baseline, evidence, outcome, reason


def test_pass_for_an_aggregate_cites_request_and_config() -> None:
    """An aggregate within the approval passes, citing the request and the config that sets the minimum."""
    story = baseline()
    decision = story.check()
    result = reason(decision, "proportionality")
    assert result.outcome == "pass"
    assert evidence(decision, "proportionality") == [story["config"], story["request:req_a"]]
    assert result.obligations == (("min_cohort", 10),)


def test_pass_for_a_pseudonymised_share_cites_the_request() -> None:
    """A record-level share within the approval passes, citing the request; no cohort minimum applies."""
    story = baseline()
    decision = story.check(operation="pseudonymised", subjects=["sub_1"])
    assert outcome(decision, "proportionality") == "pass"
    assert evidence(decision, "proportionality") == [story["request:req_a"]]
    assert decision.decision == "permit"


def test_not_applicable_without_an_approved_request() -> None:
    """With no request of the caller's to compare with, the rule is not applicable."""
    decision = baseline().check(request="req_unknown")
    assert outcome(decision, "proportionality") == "not_applicable"
    assert evidence(decision, "proportionality") == []


def test_fail_for_broader_categories_than_approved() -> None:
    """Asking for health when only health.mental was approved fails, citing the request."""
    story = baseline()
    decision = story.check(categories=["health"])
    assert outcome(decision, "proportionality") == "fail"
    assert "health goes beyond the categories approved" in reason(decision, "proportionality").message
    assert evidence(decision, "proportionality") == [story["request:req_a"]]


@pytest.mark.parametrize(
    ("approved", "asked"),
    [
        ("aggregate", "pseudonymised"),  # record-level under an aggregate-only approval
        ("aggregate", "identifiable"),  # identifiable under an aggregate-only approval
        ("pseudonymised", "identifiable"),  # identifiable under a pseudonymised approval
    ],
)
def test_fail_for_a_more_identifying_operation_than_approved(approved: str, asked: str) -> None:
    """An operation more identifying than the approved one fails, citing the request."""
    story = baseline().request("req_x", operation=approved).decide("req_x").ethics(request="req_x")
    decision = story.check(request="req_x", operation=asked)
    assert outcome(decision, "proportionality") == "fail"
    assert f"{asked} sharing goes beyond the {approved} use" in reason(decision, "proportionality").message
    assert evidence(decision, "proportionality") == [story["request:req_x"]]


def test_less_identifying_operation_than_approved_passes() -> None:
    """An aggregate under a pseudonymised approval is within it."""
    assert outcome(baseline().check(operation="aggregate"), "proportionality") == "pass"


def test_subjects_outside_the_approved_list_are_excluded() -> None:
    """A request approved for named subjects does not cover others: they are excluded one by one."""
    story = baseline().request("req_named", subjects=["sub_1", "sub_2"]).decide("req_named")
    story.ethics(request="req_named")
    decision = story.check(request="req_named", operation="pseudonymised", subjects=["sub_1", "sub_3"])
    assert decision.decision == "permit"
    assert decision.permitted == ("sub_1",)
    [excluded] = decision.excluded
    assert (excluded.subject, excluded.rule) == ("sub_3", "request")
    assert "not among the people the trustees approved for req_named" in excluded.reason
    assert excluded.evidence == (story["request:req_named"],)


@pytest.mark.parametrize(
    ("cohort_size", "words"),
    [
        (9, "cohort size 9 is below the minimum of 10"),  # one short
        (None, "must state their cohort_size"),  # no cohort size at all
    ],
)
def test_fail_for_a_small_cohort_cites_request_and_config(cohort_size: int | None, words: str) -> None:
    """An aggregate below the configured minimum fails, citing the request and the config."""
    story = baseline()
    decision = story.check(cohort_size=cohort_size)
    assert outcome(decision, "proportionality") == "fail"
    assert words in reason(decision, "proportionality").message
    assert evidence(decision, "proportionality") == [story["config"], story["request:req_a"]]


def test_fail_when_exclusions_leave_too_few() -> None:
    """Exclusions that leave fewer people than the minimum make the aggregate too small."""
    story = baseline().withdraw("con_1").withdraw("con_2").withdraw("con_3")
    decision = story.check()
    assert outcome(decision, "proportionality") == "fail"
    assert "only 9 subjects remain after exclusions" in reason(decision, "proportionality").message


def test_config_change_of_minimum_binds_from_its_instant() -> None:
    """Raising the minimum to 20 fails a cohort of 12 from the new config's instant, citing it."""
    story = baseline()
    changed_at = story.now
    story.configure(min_cohort_size=20)
    assert outcome(story.check(at=changed_at - MICROSECOND), "proportionality") == "pass"
    decision = story.check()
    assert outcome(decision, "proportionality") == "fail"
    assert "below the minimum of 20" in reason(decision, "proportionality").message
    assert evidence(decision, "proportionality") == [story["request:req_a"], story["config"]]
    lowered = story.configure(min_cohort_size=5).check(subjects=["sub_1", "sub_2", "sub_3", "sub_4", "sub_5"])
    assert outcome(lowered, "proportionality") == "pass"
    assert reason(lowered, "proportionality").obligations == (("min_cohort", 5),)
