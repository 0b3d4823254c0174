"""The agreement rule: an agreement in force covers purpose, categories, operation and geography."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.trust.rules_story import MICROSECOND, Story, baseline, evidence, outcome, reason


def test_pass_cites_both_signatures() -> None:
    """An agreement signed by both parties and covering the use passes, citing both signatures."""
    story = baseline()
    decision = story.check()
    assert outcome(decision, "agreement") == "pass"
    assert evidence(decision, "agreement") == story.signatures("agr_a")


def test_broader_agreement_purpose_covers_narrower_purpose() -> None:
    """An agreement for research covers a check for research.health (found through the purpose's ancestors)."""
    story = baseline()
    assert outcome(story.check(purpose="research.health"), "agreement") == "pass"


def test_fail_without_any_agreement_cites_nothing() -> None:
    """An organisation with no agreement for the purpose fails (never not_applicable) with no evidence."""
    decision = baseline().check(organisation="org_b")
    assert outcome(decision, "agreement") == "fail"
    assert evidence(decision, "agreement") == []
    assert "no data-use agreement" in reason(decision, "agreement").message


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ({"categories": ["housing"]}, "does not cover the data categories housing"),  # category outside the terms
        ({"operation": "identifiable"}, "does not permit identifiable sharing"),  # operation outside the terms
        ({"geography": "FR"}, "only in GB, not FR"),  # processing abroad
    ],
)
def test_fail_outside_the_terms_cites_the_agreement(action: dict[str, Any], words: str) -> None:
    """A use the agreement does not cover fails, citing the agreement's signatures."""
    story = baseline()
    decision = story.check(**action)
    assert outcome(decision, "agreement") == "fail"
    assert words in reason(decision, "agreement").message
    assert evidence(decision, "agreement") == story.signatures("agr_a")


def test_geography_named_or_handed_on() -> None:
    """A check in an allowed country passes; one that names no country passes with a geography obligation."""
    story = baseline()
    named = reason(story.check(geography="GB"), "agreement")
    unnamed = reason(story.check(), "agreement")
    assert named.outcome == "pass"
    assert named.obligations == ()
    assert unnamed.obligations == (("geography", ["GB"]),)


def test_expires_exactly_at_valid_until() -> None:
    """The agreement is in force one microsecond before valid_until and expired at it."""
    story = baseline()
    until = story.now + timedelta(days=30)
    story.agreement("agr_short", valid_until=until)
    story.terminate("agr_a")
    assert outcome(story.check(at=until - MICROSECOND), "agreement") == "pass"
    decision = story.check(at=until)
    assert outcome(decision, "agreement") == "fail"
    assert "agreement agr_short expired" in reason(decision, "agreement").message
    assert set(story.signatures("agr_short")) <= set(evidence(decision, "agreement"))


def test_fail_when_terminated_cites_the_termination() -> None:
    """A terminated agreement fails from the termination on, citing it."""
    story = baseline().terminate("agr_a")
    decision = story.check()
    assert outcome(decision, "agreement") == "fail"
    assert "terminated" in reason(decision, "agreement").message
    assert evidence(decision, "agreement") == [*story.signatures("agr_a"), story["terminate:agr_a"]]


def test_fail_when_signed_by_one_party_only() -> None:
    """An agreement the organisation has not signed is not in force; only the trust's signature is cited."""
    story = Story().org("org_a").agreement("agr_a", parties=("trust",))
    decision = story.check(subjects=["sub_1"])
    assert outcome(decision, "agreement") == "fail"
    assert "not yet signed by both parties" in reason(decision, "agreement").message
    assert evidence(decision, "agreement") == [story["sign:agr_a:1:trust"]]


def test_fail_before_valid_from() -> None:
    """An agreement signed now but valid from next month does not cover a check today."""
    story = baseline()
    story.terminate("agr_a")
    story.agreement("agr_later", valid_from=story.now + timedelta(days=30))
    decision = story.check()
    assert outcome(decision, "agreement") == "fail"
    assert "only starts at" in reason(decision, "agreement").message


def test_amendment_supersedes_the_earlier_version() -> None:
    """Once both parties sign version 2, it alone decides: version 1 is cited as superseded."""
    story = baseline()
    story.agreement("agr_a", version=2, supersedes="agr_a", categories=("demographics",))
    decision = story.check()
    assert outcome(decision, "agreement") == "fail"
    message = reason(decision, "agreement").message
    assert "version 1 was superseded" in message
    assert "does not cover the data categories health.mental" in message
    superseded_by = story["sign:agr_a:2:organisation"]
    assert evidence(decision, "agreement") == sorted({*story.signatures("agr_a"), *story.signatures("agr_a", 2)})
    assert superseded_by in evidence(decision, "agreement")
    assert outcome(story.check(categories=["demographics.age"]), "agreement") == "pass"
    assert evidence(story.check(categories=["demographics.age"]), "agreement") == story.signatures("agr_a", 2)


def test_pending_amendment_leaves_the_earlier_version_in_force() -> None:
    """Until the organisation signs version 2, version 1 stays in force."""
    story = baseline()
    story.agreement("agr_a", version=2, supersedes="agr_a", categories=("demographics",), parties=("trust",))
    decision = story.check()
    assert outcome(decision, "agreement") == "pass"
    assert evidence(decision, "agreement") == story.signatures("agr_a")


def test_terminating_a_named_version() -> None:
    """agreement.terminated names the version it ends (trust/agreements.py), not merely the latest one."""
    story = baseline()
    story.agreement("agr_a", version=2, supersedes="agr_a", parties=("trust",))  # proposed, not yet accepted
    story.terminate("agr_a", version=1)
    decision = story.check()
    assert outcome(decision, "agreement") == "fail"
    assert "terminated" in reason(decision, "agreement").message


def test_evidence_never_cites_entries_after_the_instant() -> None:
    """Evaluated as of an instant before the agreement was signed, the signatures are not cited."""
    story = baseline()
    decision = story.check(at=story.entries[story["sign:agr_a:1:trust"]].at_datetime - MICROSECOND)
    assert outcome(decision, "agreement") == "fail"
    assert evidence(decision, "agreement") == []
