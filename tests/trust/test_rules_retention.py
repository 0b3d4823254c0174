"""The retention rule: the delete-by date from the agreement's retention and the request's end."""

from __future__ import annotations

from datetime import timedelta

from tests.trust.rules_story import Story, baseline, evidence, outcome, reason


def test_pass_with_the_agreements_retention() -> None:
    """The partner must delete what it receives within the agreement's retention period, citing agreement and decision."""
    story = baseline()
    decision = story.check()
    result = reason(decision, "retention")
    assert result.outcome == "pass"
    delete_by = (story.now.date() + timedelta(days=180)).isoformat()
    assert result.obligations == (("delete_by", delete_by),)
    assert evidence(decision, "retention") == sorted([*story.signatures("agr_a"), story["decide:req_a"]])
    assert {"type": "delete_by", "value": delete_by} in decision.obligations


def test_request_end_binds_when_earlier() -> None:
    """When the approval ends before the retention period, the data must be deleted by the approval's end."""
    story = baseline()
    story.request("req_30", duration_days=30)
    decided_at = story.now
    story.decide("req_30").ethics(request="req_30")
    result = reason(story.check(request="req_30"), "retention")
    assert result.obligations == (("delete_by", (decided_at + timedelta(days=30)).date().isoformat()),)


def test_not_applicable_for_aggregates_without_any_period() -> None:
    """Aggregate outputs with no agreement or approval in force carry no deletion date."""
    decision = Story().org("org_a").check(subjects=["sub_1"], request="req_none")
    assert outcome(decision, "retention") == "not_applicable"
    assert evidence(decision, "retention") == []


def test_indeterminate_for_record_level_data_without_any_period() -> None:
    """Record-level data with no retention period recorded cannot be given a deletion date: needs review."""
    decision = Story().org("org_a").check(subjects=["sub_1"], request="req_none", operation="pseudonymised")
    result = reason(decision, "retention")
    assert result.outcome == "indeterminate"
    assert "needs review by trustees" in result.message
