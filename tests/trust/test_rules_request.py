"""The request rule: the caller's own access request, approved, unrevoked, unexpired, for this purpose."""

from __future__ import annotations

from datetime import timedelta

from tests.trust.rules_story import MICROSECOND, baseline, evidence, outcome, reason


def test_pass_cites_submission_and_decision() -> None:
    """An approved, current request passes, citing its submission and the trustees' decision."""
    story = baseline()
    decision = story.check()
    assert outcome(decision, "request") == "pass"
    assert evidence(decision, "request") == [story["request:req_a"], story["decide:req_a"]]


def test_fail_for_an_unknown_request() -> None:
    """A request id the trust never saw fails (never not_applicable), citing nothing."""
    decision = baseline().check(request="req_unknown")
    assert outcome(decision, "request") == "fail"
    assert evidence(decision, "request") == []
    assert reason(decision, "request").message == "there is no access request req_unknown from org_a"


def test_fail_for_another_organisations_request_reveals_nothing() -> None:
    """Citing another organisation's approved request fails exactly as if it did not exist."""
    story = baseline()
    story.agreement("agr_b", org="org_b").request("req_b", org="org_b").decide("req_b")
    decision = story.check(request="req_b")
    assert outcome(decision, "request") == "fail"
    assert evidence(decision, "request") == []
    assert reason(decision, "request").message == "there is no access request req_b from org_a"


def test_fail_while_undecided_cites_the_submission() -> None:
    """A request still before the trustees fails, citing its submission."""
    story = baseline().request("req_new")
    decision = story.check(request="req_new")
    assert outcome(decision, "request") == "fail"
    assert "has not been decided" in reason(decision, "request").message
    assert evidence(decision, "request") == [story["request:req_new"]]


def test_fail_when_rejected_cites_the_decision() -> None:
    """A rejected request fails, citing the decision."""
    story = baseline().request("req_new").decide("req_new", outcome="rejected")
    decision = story.check(request="req_new")
    assert outcome(decision, "request") == "fail"
    assert "rejected" in reason(decision, "request").message
    assert evidence(decision, "request") == [story["request:req_new"], story["decide:req_new"]]


def test_fail_when_revoked_cites_the_revocation() -> None:
    """A revoked request fails from the revocation on, citing it."""
    story = baseline().revoke("req_a")
    decision = story.check()
    assert outcome(decision, "request") == "fail"
    assert "revoked" in reason(decision, "request").message
    assert evidence(decision, "request") == [story["request:req_a"], story["decide:req_a"], story["revoke:req_a"]]


def test_expires_exactly_at_the_recorded_end() -> None:
    """The approval ends at the decision's expires_at: in force one microsecond before, expired at it."""
    story = baseline()
    ends = story.now + timedelta(days=10)
    story.request("req_short").decide("req_short", expires_at=ends).ethics(request="req_short")
    assert outcome(story.check(request="req_short", at=ends - MICROSECOND), "request") == "pass"
    decision = story.check(request="req_short", at=ends)
    assert outcome(decision, "request") == "fail"
    assert "expired" in reason(decision, "request").message
    assert evidence(decision, "request") == [story["request:req_short"], story["decide:req_short"]]


def test_default_expiry_is_decision_plus_duration() -> None:
    """Without an explicit end, an approval lasts duration_days from the decision."""
    story = baseline()
    story.request("req_30", duration_days=30)
    decided_at = story.now
    story.decide("req_30").ethics(request="req_30")
    assert outcome(story.check(request="req_30", at=decided_at + timedelta(days=30) - MICROSECOND), "request") == "pass"
    assert outcome(story.check(request="req_30", at=decided_at + timedelta(days=30)), "request") == "fail"


def test_fail_for_a_broader_purpose_than_approved() -> None:
    """A request approved for research.health does not cover a share for research in general."""
    story = baseline()
    decision = story.check(purpose="research")
    assert outcome(decision, "request") == "fail"
    assert "does not cover research" in reason(decision, "request").message
    assert evidence(decision, "request") == [story["request:req_a"], story["decide:req_a"]]


def test_narrower_purpose_than_approved_passes() -> None:
    """A request approved for research.health covers a narrower purpose below it."""
    story = baseline().request("req_r", purpose="research").decide("req_r").ethics(request="req_r")
    assert outcome(story.check(request="req_r", purpose="research.health"), "request") == "pass"
