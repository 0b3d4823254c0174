"""The organisation rule: registered and in good standing at the instant of the check."""

from __future__ import annotations

from datetime import timedelta

from tests.trust.rules_story import MICROSECOND, T0, Story, baseline, evidence, outcome, reason


def test_pass_cites_the_registration() -> None:
    """A registered, unsuspended organisation passes, citing its registration entry."""
    story = baseline()
    decision = story.check()
    assert outcome(decision, "organisation") == "pass"
    assert evidence(decision, "organisation") == [story["org:org_a"]]


def test_fail_when_suspended_cites_registration_and_suspension() -> None:
    """A suspended organisation fails with the suspension (and its reason) as evidence."""
    story = baseline().suspend("org_a", reason="shared data without a check")
    decision = story.check()
    assert outcome(decision, "organisation") == "fail"
    assert evidence(decision, "organisation") == [story["org:org_a"], story["suspend:org_a"]]
    assert "shared data without a check" in reason(decision, "organisation").message
    assert decision.decision == "deny"


def test_suspension_binds_from_its_instant_not_before() -> None:
    """A check one microsecond before the suspension passes; one at its instant fails."""
    story = baseline()
    suspended_at = story.now + timedelta(hours=1)
    story.suspend("org_a", at=suspended_at)
    assert outcome(story.check(at=suspended_at - MICROSECOND), "organisation") == "pass"
    assert outcome(story.check(at=suspended_at), "organisation") == "fail"


def test_fail_for_an_unregistered_organisation_cites_nothing() -> None:
    """An organisation never registered fails (it is never not_applicable) and no entry is cited."""
    decision = baseline().check(organisation="org_nobody")
    assert outcome(decision, "organisation") == "fail"
    assert evidence(decision, "organisation") == []
    assert "not a registered organisation" in reason(decision, "organisation").message


def test_fail_before_registration() -> None:
    """At an instant before the organisation was registered it is not (yet) in good standing."""
    story = baseline()
    decision = story.check(at=T0 - timedelta(days=1))
    assert outcome(decision, "organisation") == "fail"
    assert evidence(decision, "organisation") == []


def test_never_not_applicable() -> None:
    """The rule applies to every check, even one that names nothing else the trust knows."""
    story = Story(configure=False)
    decision = story.check(subjects=["sub_x"], request="req_none")
    assert outcome(decision, "organisation") == "fail"
