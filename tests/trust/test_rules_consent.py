"""The consent rule: per subject, an active consent covering purpose, categories, recipient and operation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.trust.rules_story import (
    MICROSECOND,
    Story,
    baseline,
    evidence,
    excluded,
    exclusion_reason,
    outcome,
    reason,
)


def _one(**consent: Any) -> Story:
    """The baseline plus sub_13, whose one consent is shaped by *consent*."""
    return baseline().consent("con_13", subject="sub_13", **consent)


def test_pass_cites_each_permitted_subjects_consent() -> None:
    """When every subject is covered the rule passes, citing each consent entry."""
    story = baseline()
    decision = story.check()
    assert outcome(decision, "consent") == "pass"
    assert evidence(decision, "consent") == [story[f"consent:con_{n}"] for n in range(1, 13)]
    assert decision.permitted == story.action().subjects


def test_fail_when_no_subject_is_covered_cites_consents_and_withdrawals() -> None:
    """When nobody is covered the rule fails, citing the consents and withdrawals that ended them."""
    story = baseline().withdraw("con_1").withdraw("con_2")
    decision = story.check(subjects=["sub_1", "sub_2"], cohort_size=10)
    assert outcome(decision, "consent") == "fail"
    assert evidence(decision, "consent") == sorted(
        [story["consent:con_1"], story["withdraw:con_1"], story["consent:con_2"], story["withdraw:con_2"]]
    )
    assert excluded(decision) == {"sub_1": "consent", "sub_2": "consent"}


def test_never_not_applicable_without_subjects() -> None:
    """A check naming no subject fails rather than being not applicable."""
    decision = baseline().check(subjects=[], cohort_size=10)
    assert outcome(decision, "consent") == "fail"
    assert reason(decision, "consent").message == "no subjects were named"


def test_excluded_subject_is_not_cited_as_cover() -> None:
    """A withdrawn subject is excluded with the reason; the permit cites only the others' consents."""
    story = baseline().withdraw("con_3")
    decision = story.check(subjects=[f"sub_{n}" for n in range(1, 14)], cohort_size=13)
    assert decision.decision == "permit"
    assert excluded(decision) == {"sub_3": "consent", "sub_13": "consent"}
    assert "withdrawn by the person" in exclusion_reason(decision, "sub_3")
    assert exclusion_reason(decision, "sub_13") == "no consent is recorded for this subject"
    assert story["consent:con_3"] not in evidence(decision, "consent")
    assert "11 of 13 subjects" in reason(decision, "consent").message


@pytest.mark.parametrize(
    ("by", "words"),
    [
        ("subject", "withdrawn by the person"),  # the person withdrew
        ("organisation", "withdrawn on the person's behalf"),  # a partner recorded it for them
        ("trust", "revoked by the trust"),  # e.g. the collecting partner was suspended
    ],
)
def test_withdrawal_says_who(by: str, words: str) -> None:
    """The exclusion says who ended the consent."""
    decision = baseline().withdraw("con_5", by=by).check()
    assert words in exclusion_reason(decision, "sub_5")


def test_withdrawal_binds_from_its_instant() -> None:
    """One microsecond before the withdrawal the subject is covered; at it and one microsecond later, not."""
    story = baseline()
    withdrawn_at = story.now + timedelta(minutes=5)
    story.withdraw("con_1", at=withdrawn_at)
    assert "sub_1" in story.check(at=withdrawn_at - MICROSECOND).permitted
    assert "sub_1" in excluded(story.check(at=withdrawn_at))
    assert "sub_1" in excluded(story.check(at=withdrawn_at + MICROSECOND))


def test_erased_subject_is_excluded_citing_the_erasure() -> None:
    """An erased person is excluded, whatever consents they once gave, citing the erasure."""
    story = baseline().erase("sub_2")
    decision = story.check(subjects=["sub_2"], cohort_size=10)
    assert excluded(decision) == {"sub_2": "consent"}
    assert "erased" in exclusion_reason(decision, "sub_2")
    assert evidence(decision, "consent") == [story["erase:sub_2"]]


def test_consent_expires_exactly_at_valid_until() -> None:
    """A consent covers up to one microsecond before valid_until and not at it."""
    story = baseline()
    until = story.now + timedelta(days=7)
    story.consent("con_13", subject="sub_13", valid_until=until)
    assert "sub_13" in story.check(at=until - MICROSECOND).permitted
    decision = story.check(at=until)
    assert "sub_13" in excluded(decision)
    assert "expired" in exclusion_reason(decision, "sub_13")


def test_consent_not_yet_valid() -> None:
    """A consent recorded now but valid from next week does not cover a share today."""
    story = _one(valid_from=baseline().now + timedelta(days=7))
    assert "only starts at" in exclusion_reason(story.check(), "sub_13")


def test_consent_given_after_the_instant_is_neither_cover_nor_evidence() -> None:
    """Evaluated as of an instant before the consent was recorded, the subject has no consent and nothing is cited."""
    story = baseline()
    given_at = story.now
    story.consent("con_13", subject="sub_13")
    decision = story.check(at=given_at - MICROSECOND, subjects=["sub_13"], cohort_size=10)
    assert exclusion_reason(decision, "sub_13") == "no consent is recorded for this subject"
    assert evidence(decision, "consent") == []


def test_superseded_consent_no_longer_covers() -> None:
    """A newer consent for the same scope replaces the older one; the older one's wider cover is gone."""
    story = baseline().consent("con_4b", subject="sub_4", operations=["pseudonymised"])
    decision = story.check()
    assert "does not allow aggregate sharing" in exclusion_reason(decision, "sub_4")
    assert "sub_4" in story.check(operation="pseudonymised").permitted
    refused = story.check(subjects=["sub_4"], cohort_size=10)
    assert evidence(refused, "consent") == [story["consent:con_4"], story["consent:con_4b"]]


def test_narrower_newer_consent_does_not_supersede() -> None:
    """A newer consent that covers less than the older one leaves the older one in force."""
    story = baseline().consent("con_4b", subject="sub_4", categories=["demographics"])
    assert "sub_4" in story.check().permitted


@pytest.mark.parametrize(
    ("consent", "action", "covered"),
    [
        ({"recipients": ["org_b"]}, {}, False),  # recipient not named in the consent
        ({"recipients": ["org_a"]}, {}, True),  # recipient named
        ({"operations": ["aggregate"]}, {"operation": "pseudonymised"}, False),  # operation not allowed
        ({"purposes": ["research.social"]}, {}, False),  # another purpose
        ({"purposes": ["research.health"]}, {}, True),  # exactly the purpose
        ({"categories": ["health.mental"]}, {"categories": ["health"]}, False),  # health.mental does not cover health
        ({"categories": ["health"]}, {"categories": ["health.mental"]}, True),  # health covers health.mental
        ({"explicit": False}, {}, False),  # special category needs explicit consent
        ({"explicit": False}, {"categories": ["demographics.age"]}, True),  # not special: implicit consent is enough
    ],
)
def test_cover(consent: dict[str, Any], action: dict[str, Any], covered: bool) -> None:
    """A consent covers exactly its purposes, categories (by hierarchy), recipients and operations."""
    decision = _one(**consent).check(**action)
    assert ("sub_13" not in excluded(decision)) is covered
    if not covered:
        assert excluded(decision)["sub_13"] == "consent"


def test_duplicate_subjects_are_decided_once() -> None:
    """A subject named twice is decided and counted once."""
    story = baseline()
    decision = story.check(subjects=["sub_1", "sub_1", *[f"sub_{n}" for n in range(2, 11)]], cohort_size=10)
    assert decision.permitted.count("sub_1") == 1
    assert "all 10 subjects" in reason(decision, "consent").message
