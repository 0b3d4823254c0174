"""Table-driven check scenarios: a change to the baseline trust, a check, the expected answer.

Every scenario starts from :func:`~tests.trust.rules_story.baseline` (org_a's approved
mental-health research over twelve consenting people; the default check is a permit), applies
one change, and checks the decision, the rules that block it and the subjects it excludes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.trust.rules_story import MICROSECOND, Story, baseline, excluded

SUBJECTS_1_12 = [f"sub_{n}" for n in range(1, 13)]
LATER = baseline().now + timedelta(hours=1)  # an instant well after the baseline's entries


@dataclass(frozen=True)
class Scenario:
    """A change to the baseline and what the check must answer."""

    change: Callable[[Story], Any]  # may return a dict of check arguments
    decision: str
    blocking: frozenset[str] = frozenset()  # rules that fail or are indeterminate
    excluded: dict[str, str] = field(default_factory=dict)  # subject -> rule, for a permit
    words: str = ""  # plain words that must appear in a reason or an exclusion


def permit(change: Callable[[Story], Any], *, excluded: dict[str, str] | None = None, words: str = "") -> Scenario:
    """A scenario whose answer is permit."""
    return Scenario(change, "permit", excluded=excluded or {}, words=words)


def deny(change: Callable[[Story], Any], *blocking: str, words: str = "") -> Scenario:
    """A scenario whose answer is deny, blocked by *blocking*."""
    return Scenario(change, "deny", frozenset(blocking), words=words)


def then(change: Callable[[Story], object], **check: Any) -> Callable[[Story], dict[str, Any]]:
    """Apply *change*, then check with *check* arguments."""

    def run(story: Story) -> dict[str, Any]:
        change(story)
        return check

    return run


def _at(when: datetime, **check: Any) -> Callable[[Story], dict[str, Any]]:
    """Only evaluate at *when* (with *check* arguments)."""
    return lambda _story: {"at": when, **check}


def _withdraw_at_later(offset: timedelta) -> Callable[[Story], dict[str, Any]]:
    def change(story: Story) -> dict[str, Any]:
        story.withdraw("con_1", at=LATER)
        return {"at": LATER + offset}

    return change


def _consent_until_later(offset: timedelta) -> Callable[[Story], dict[str, Any]]:
    def change(story: Story) -> dict[str, Any]:
        story.consent("con_13", subject="sub_13", valid_until=LATER)
        return {"at": LATER + offset, "subjects": [*SUBJECTS_1_12, "sub_13"], "cohort_size": 13}

    return change


def _agreement_until_later(story: Story) -> dict[str, Any]:
    story.terminate("agr_a").agreement("agr_b", valid_until=LATER)
    return {"at": LATER}


def _identifiable_under_aggregate_approval(story: Story) -> dict[str, Any]:
    story.agreement("agr_a", version=2, supersedes="agr_a", operations=("aggregate", "pseudonymised", "identifiable"))
    story.request("req_agg", operation="aggregate").decide("req_agg").ethics(request="req_agg")
    return {"request": "req_agg", "operation": "identifiable", "cohort_size": None}


def _mixed_batch(story: Story) -> dict[str, Any]:
    story.withdraw("con_2").erase("sub_5").consent("con_13", subject="sub_13", recipients=["org_b"])
    return {"subjects": [*SUBJECTS_1_12, "sub_13", "sub_99"], "cohort_size": 14}


def _another_organisations_request(story: Story) -> dict[str, Any]:
    story.agreement("agr_b", org="org_b").request("req_b", org="org_b").decide("req_b").ethics(request="req_b")
    return {"request": "req_b"}


def _consent_health_mental_asked_health(story: Story) -> dict[str, Any]:
    story.request("req_h", categories=("health",)).decide("req_h").ethics(request="req_h")
    story.consent("con_13", subject="sub_13", categories=["health.mental"])
    return {"request": "req_h", "categories": ["health"], "subjects": [*SUBJECTS_1_12, "sub_13"], "cohort_size": 13}


def _project_approval(story: Story) -> dict[str, Any]:
    story.request("req_p", project="Healthy Minds").decide("req_p").ethics(request=None, project="Healthy Minds")
    return {"request": "req_p"}


def _with_sub_13(**consent: Any) -> Callable[[Story], dict[str, Any]]:
    def change(story: Story) -> dict[str, Any]:
        story.consent("con_13", subject="sub_13", **consent)
        return {"subjects": [*SUBJECTS_1_12, "sub_13"], "cohort_size": 13}

    return change


SCENARIOS = {
    # nothing changed: the baseline's research is permitted for all twelve people
    "baseline": permit(lambda _s: None),
    # one person withdrew: the permit covers the other eleven
    "withdrawn_consent": permit(lambda s: s.withdraw("con_3"), excluded={"sub_3": "consent"}, words="withdrawn"),
    # everyone asked about withdrew: nobody is covered
    "all_withdrawn": deny(then(lambda s: s.withdraw("con_1"), subjects=["sub_1"], cohort_size=10), "consent"),
    # the agreement ran out (checked exactly at valid_until)
    "expired_agreement": deny(_agreement_until_later, "agreement", words="expired"),
    # the agreement was terminated
    "terminated_agreement": deny(lambda s: s.terminate("agr_a"), "agreement", words="terminated"),
    # the trust suspended the organisation
    "suspended_organisation": deny(lambda s: s.suspend("org_a"), "organisation", words="suspended"),
    # ... but a check as of before the suspension was a permit
    "before_suspension": permit(then(lambda s: s.suspend("org_a", at=LATER), at=LATER - MICROSECOND)),
    # the trustees revoked the request
    "revoked_request": deny(lambda s: s.revoke("req_a"), "request", words="revoked"),
    # the request is still before the trustees
    "undecided_request": deny(then(lambda s: s.request("req_new"), request="req_new"), "request", "ethics"),
    # the trustees rejected the request
    "rejected_request": deny(
        then(lambda s: s.request("req_new").decide("req_new", outcome="rejected"), request="req_new"),
        "request",
        "ethics",
    ),
    # the approval ran out
    "expired_request": deny(_at(baseline().now + timedelta(days=366)), "request", words="expired"),
    # asking for all health data when only mental health was approved
    "broader_categories": deny(lambda _s: {"categories": ["health"]}, "proportionality", words="goes beyond"),
    # an aggregate of five people is below the minimum of ten
    "cohort_below_minimum": deny(lambda _s: {"cohort_size": 5}, "proportionality", words="below the minimum"),
    # the governance config raised the minimum to twenty
    "config_raises_min_cohort": deny(lambda s: s.configure(min_cohort_size=20), "proportionality", words="of 20"),
    # the governance config lowered the minimum to five: five people are enough
    "config_lowers_min_cohort": permit(then(lambda s: s.configure(min_cohort_size=5), subjects=SUBJECTS_1_12[:5])),
    # special category data with no ethics approval at all (the approval was for another request)
    "special_without_ethics": deny(
        then(lambda s: s.request("req_new").decide("req_new"), request="req_new"), "ethics", words="needs an ethics"
    ),
    # the ethics approval expired
    "ethics_expired": deny(
        then(lambda s: s.ethics(request="req_a", expires_at=LATER), at=LATER), "ethics", words="expired"
    ),
    # the ethics committee's condition exists only in words
    "ethics_condition_in_words": deny(
        lambda s: s.ethics(request="req_a", outcome="approved_with_conditions", conditions_text="Panel must agree."),
        "ethics",
        words="needs review by trustees",
    ),
    # the ethics committee rejected the request after first approving it
    "ethics_rejected_later": deny(lambda s: s.ethics(request="req_a", outcome="rejected"), "ethics"),
    # the ethics approval covers the request's project
    "ethics_project_approval": permit(_project_approval),
    # non-special data needs no ethics approval
    "non_special_needs_no_ethics": permit(lambda _s: {"categories": ["demographics.age"]}),
    # the consent names another organisation as the only recipient
    "recipient_not_named": permit(_with_sub_13(recipients=["org_b"]), excluded={"sub_13": "consent"}),
    # identifiable sharing under an approval for aggregates only
    "identifiable_under_aggregate_approval": deny(_identifiable_under_aggregate_approval, "proportionality"),
    # the person was erased
    "subject_erased": permit(lambda s: s.erase("sub_2"), excluded={"sub_2": "consent"}, words="erased"),
    # withdrawn, erased, recipient not named, unknown: four excluded, ten permitted
    "mixed_batch": permit(
        _mixed_batch,
        excluded={"sub_2": "consent", "sub_5": "consent", "sub_13": "consent", "sub_99": "consent"},
    ),
    # mixed batch leaving fewer than the minimum: the aggregate is refused
    "exclusions_leave_too_few": deny(
        lambda s: s.withdraw("con_1").withdraw("con_2").withdraw("con_3"), "proportionality", words="remain"
    ),
    # a newer consent for the same scope only allows pseudonymised use
    "superseded_consent": permit(
        lambda s: s.consent("con_4b", subject="sub_4", operations=["pseudonymised"]),
        excluded={"sub_4": "consent"},
    ),
    # the consent ends at valid_until: one microsecond before, it still covers
    "consent_expiry_microsecond_before": permit(_consent_until_later(-MICROSECOND)),
    # ... and at valid_until, it no longer does
    "consent_expiry_at_valid_until": permit(_consent_until_later(timedelta(0)), excluded={"sub_13": "consent"}),
    # a check one microsecond after a withdrawal is bound by it
    "withdrawal_then_microsecond_later": permit(
        _withdraw_at_later(MICROSECOND), excluded={"sub_1": "consent"}, words="withdrawn"
    ),
    # a check one microsecond before the withdrawal still covers the person
    "microsecond_before_withdrawal": permit(_withdraw_at_later(-MICROSECOND)),
    # an amendment (version 2) narrows the agreement to demographics: health is no longer covered
    "agreement_amended_narrower": deny(
        lambda s: s.agreement("agr_a", version=2, supersedes="agr_a", categories=("demographics",)),
        "agreement",
        words="superseded",
    ),
    # an amendment only the trust has signed leaves version 1 in force
    "agreement_amendment_pending": permit(
        lambda s: s.agreement("agr_a", version=2, categories=("demographics",), parties=("trust",))
    ),
    # processing in a country the agreement does not allow
    "geography_outside_agreement": deny(lambda _s: {"geography": "FR"}, "agreement", words="not FR"),
    # processing in the agreed country
    "geography_inside_agreement": permit(lambda _s: {"geography": "GB"}),
    # a request id the trust never saw
    "unknown_request": deny(lambda _s: {"request": "req_unknown"}, "request", "ethics"),
    # citing another organisation's approved request
    "another_organisations_request": deny(_another_organisations_request, "request", words="no access request"),
    # an organisation with no agreement citing org_a's request
    "other_organisation_without_agreement": deny(lambda _s: {"organisation": "org_b"}, "agreement", "request"),
    # consent to research covers research.health (and the approval is for research.health)
    "hierarchy_broader_purpose_covers": permit(_with_sub_13(purposes=["research"])),
    # consent to research.social does not cover research.health
    "hierarchy_sibling_purpose": permit(_with_sub_13(purposes=["research.social"]), excluded={"sub_13": "consent"}),
    # consent to health.mental does not cover all health data
    "hierarchy_narrower_category": permit(_consent_health_mental_asked_health, excluded={"sub_13": "consent"}),
    # special categories need explicit consent
    "special_needs_explicit_consent": permit(
        _with_sub_13(explicit=False), excluded={"sub_13": "consent"}, words="explicitly"
    ),
    # the consent does not allow aggregate use
    "operation_not_in_consent": permit(_with_sub_13(operations=["pseudonymised"]), excluded={"sub_13": "consent"}),
    # the consent was revoked by the trust
    "consent_revoked_by_trust": permit(
        lambda s: s.withdraw("con_6", by="trust"), excluded={"sub_6": "consent"}, words="revoked by the trust"
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario(scenario: Scenario) -> None:
    """The check answers as the scenario expects, and every reason names the rule's outcome in plain words."""
    story = baseline()
    arguments = scenario.change(story)
    check = arguments if isinstance(arguments, dict) else {}
    decision = story.check(**check)
    blocking = {r.rule for r in decision.reasons if r.outcome in ("fail", "indeterminate")}
    assert decision.decision == scenario.decision, decision.to_json()
    if scenario.decision == "permit":
        assert blocking == set()
        assert excluded(decision) == scenario.excluded
        assert set(decision.permitted).isdisjoint(scenario.excluded)
        assert decision.permitted
    else:
        assert blocking == scenario.blocking
        assert decision.permitted == ()
        assert decision.obligations == ()
    if scenario.words:
        texts = [r.message for r in decision.reasons] + [x.reason for x in decision.excluded]
        assert any(scenario.words in text for text in texts), texts


def test_there_are_at_least_thirty_scenarios() -> None:
    """The table covers at least thirty situations (issue 6)."""
    assert len(SCENARIOS) >= 30
