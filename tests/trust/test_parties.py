"""Organisations, appointments, agreements, ethics decisions and the pre-assessment."""

from __future__ import annotations

from typing import Any

import pytest

from api.instance import Instance
from consent.principals import Role
from consent.schemas import ConsentIn
from consent.service import record_consent
from ledger.errors import ConflictError, DomainError, ForbiddenError, InvalidStateError, ValidationError
from tests.trust.governance_helpers import ADMIN, DAY, ORG, T0, Gov, config_with, make_gov, read
from trust import agreements, ethics, membership, organisations
from trust.agreements import Terms
from trust.preassessment import preassess


@pytest.fixture
def gov(instance: Instance) -> Gov:
    """A trust with the food bank registered, on each database."""
    return make_gov(instance)


def test_organisation_suspension_is_instant(gov: Gov) -> None:
    """An organisation is active from registration until the instant of its suspension, and suspended once."""
    assert read(gov, organisations.is_organisation_active, ORG, T0)
    assert not read(gov, organisations.is_organisation_active, ORG, T0 - DAY)
    assert not read(gov, organisations.is_organisation_active, "org_unknown", T0)
    organisations.suspend_organisation(gov.ledger, org_id=ORG, reason="Data breach.", actor=ADMIN, now=T0 + DAY)
    org = read(gov, organisations.get_organisation, ORG)
    assert (org.status, org.suspension_reason) == ("suspended", "Data breach.")
    assert read(gov, organisations.is_organisation_active, ORG, T0 + DAY - DAY / 1000)
    assert not read(gov, organisations.is_organisation_active, ORG, T0 + DAY)
    before = gov.size()
    for action, error in [
        (
            lambda: organisations.suspend_organisation(gov.ledger, org_id=ORG, reason="x", actor=ADMIN, now=T0),
            InvalidStateError,
        ),
        (lambda: gov.org(ORG), ConflictError),
        (lambda: gov.org("org_Bad Name"), ValidationError),
    ]:
        with pytest.raises(error):
            action()
    assert gov.size() == before


def test_appointments(gov: Gov) -> None:
    """Roles are held from appointment to removal; one chair per role; no double appointment."""
    membership.appoint(gov.ledger, person_id="person_a", role="trustee", is_chair=True, actor=ADMIN, now=T0)
    membership.appoint(gov.ledger, person_id="person_a", role="ethics", is_chair=False, actor=ADMIN, now=T0)
    assert read(gov, membership.roles_of_person, "person_a", T0) == {Role.TRUSTEE, Role.ETHICS}
    assert read(gov, membership.roles_of_person, "person_a", T0 - DAY) == frozenset()
    assert read(gov, membership.chair_of, "trustee", T0) == "person_a"
    with pytest.raises(ConflictError, match="already chairs"):
        membership.appoint(gov.ledger, person_id="person_b", role="trustee", is_chair=True, actor=ADMIN, now=T0)
    with pytest.raises(ConflictError, match="already holds"):
        membership.appoint(gov.ledger, person_id="person_a", role="trustee", is_chair=False, actor=ADMIN, now=T0)
    membership.remove(gov.ledger, person_id="person_a", role="trustee", reason="Stood down.", actor=ADMIN, now=T0 + DAY)
    assert read(gov, membership.roles_of_person, "person_a", T0 + DAY) == {Role.ETHICS}
    assert [m.person_id for m in read(gov, membership.active_members, "trustee", T0)] == ["person_a"]
    assert read(gov, membership.active_members, "trustee", T0 + DAY) == []
    with pytest.raises(InvalidStateError, match="does not hold"):
        membership.remove(gov.ledger, person_id="person_a", role="trustee", reason="x", actor=ADMIN, now=T0 + DAY)
    membership.appoint(gov.ledger, person_id="person_a", role="trustee", is_chair=False, actor=ADMIN, now=T0 + 2 * DAY)
    assert Role.TRUSTEE in read(gov, membership.roles_of_person, "person_a", T0 + 2 * DAY)


def _terms(**changes: Any) -> Terms:
    values: dict[str, Any] = {
        "organisation": ORG,
        "title": "Food bank evaluation",
        "purposes": ("statistics",),
        "categories": ("service_use",),
        "operations": ("aggregate",),
        "retention_days": 180,
        "geography": ("GB",),
        "valid_from": T0,
        "valid_until": T0 + 365 * DAY,
    }
    values.update(changes)
    return Terms(**values)


def _sign(gov: Gov, entry: Any, *, organisation: str = ORG, now: Any = T0, terms_hash: str | None = None) -> Any:
    return agreements.sign_agreement(
        gov.ledger,
        agreement_id=entry.payload["agreement"],
        version=entry.payload["version"],
        party="organisation",
        expected_terms_hash=terms_hash or entry.payload["terms_hash"],
        organisation=organisation,
        actor="client_food_bank",
        now=now,
    )


def test_agreement_lifecycle(gov: Gov) -> None:
    """Both signatures on the same terms put an agreement in force; amendments supersede; termination ends it."""
    proposed = agreements.propose_agreement(gov.ledger, terms=_terms(), actor=ADMIN, now=T0)
    agreement_id = proposed.payload["agreement"]
    assert read(gov, agreements.get_agreement, agreement_id).status_at(T0) == "awaiting_signature"
    before = gov.size()
    with pytest.raises(ForbiddenError, match="only org_riverside_food_bank"):
        _sign(gov, proposed, organisation="org_other")
    with pytest.raises(ConflictError, match="read the current terms"):
        _sign(gov, proposed, terms_hash="0" * 64)
    assert gov.size() == before
    signed = _sign(gov, proposed, now=T0 + DAY)
    assert signed.payload["terms_hash"] == proposed.payload["terms_hash"]
    with pytest.raises(ConflictError, match="already signed"):
        _sign(gov, proposed)
    current = read(gov, agreements.get_agreement, agreement_id)
    assert current.status_at(T0) == "awaiting_signature"
    assert current.status_at(T0 + DAY) == "in_force"
    assert current.status_at(T0 + 365 * DAY) == "expired"
    assert current.evidence() == [proposed.seq, signed.seq]
    amended = agreements.amend_agreement(
        gov.ledger, agreement_id=agreement_id, terms=_terms(retention_days=90), actor=ADMIN, now=T0 + 2 * DAY
    )
    assert (amended.payload["version"], amended.payload["supersedes"]) == (2, agreement_id)
    assert [a.version for a in read(gov, agreements.agreements_in_force, ORG, T0 + 3 * DAY)] == [1]
    _sign(gov, amended, now=T0 + 3 * DAY)
    versions = read(gov, agreements.agreement_versions, agreement_id)
    assert [v.status_at(T0 + 3 * DAY) for v in versions] == ["superseded", "in_force"]
    with pytest.raises(InvalidStateError, match="superseded"):
        _sign(gov, proposed, now=T0 + 3 * DAY)
    agreements.terminate_agreement(
        gov.ledger, agreement_id=agreement_id, reason="Ended.", actor=ADMIN, now=T0 + 4 * DAY
    )
    assert read(gov, agreements.agreements_in_force, ORG, T0 + 4 * DAY) == []
    with pytest.raises(InvalidStateError, match="terminated"):
        agreements.terminate_agreement(gov.ledger, agreement_id=agreement_id, reason="x", actor=ADMIN, now=T0 + 5 * DAY)


INVALID_TERMS: list[tuple[dict[str, Any], str]] = [
    ({"purposes": ("marketing",)}, "unknown purpose"),
    ({"operations": ("sell",)}, "operations"),
    ({"geography": ("uk",)}, "ISO 3166"),
    ({"valid_until": T0}, "later than valid_from"),
    ({"organisation": "org_unknown"}, "not registered"),
]


def test_invalid_agreement_refused(gov: Gov) -> None:
    """Bad terms are refused with a message naming the problem, and nothing is appended."""
    before = gov.size()
    for changes, match in INVALID_TERMS:
        with pytest.raises(DomainError, match=match):
            agreements.propose_agreement(gov.ledger, terms=_terms(**changes), actor=ADMIN, now=T0)
    assert gov.size() == before


def test_ethics_decisions(gov: Gov) -> None:
    """Only ethics members record decisions; later decisions supersede; approvals expire; chair-only configs bind."""
    membership.appoint(gov.ledger, person_id="person_e1", role="ethics", is_chair=True, actor=ADMIN, now=T0)
    membership.appoint(gov.ledger, person_id="person_e2", role="ethics", is_chair=False, actor=ADMIN, now=T0)
    request = gov.submit(categories=["health.mental"], purpose="research.health", project="Wellbeing study")

    def decide(actor: str, outcome: str, now: Any, **extra: Any) -> Any:
        values: dict[str, Any] = {
            "request": request,
            "project": None,
            "conditions_text": "Cells of 20 or more.",
            "obligations": [{"type": "min_cohort", "value": 20}],
            "expires_at": T0 + 30 * DAY,
        }
        values.update(extra)
        return ethics.record_decision(gov.ledger, outcome=outcome, actor=actor, now=now, **values)

    with pytest.raises(ForbiddenError, match="not a member"):
        decide("person_t1", "approved_with_conditions", T0)
    with pytest.raises(ValidationError, match="unknown type"):
        decide("person_e1", "approved_with_conditions", T0, obligations=[{"type": "be_nice", "value": 1}])
    with pytest.raises(ValidationError, match="min_cohort needs"):
        decide("person_e1", "approved_with_conditions", T0, obligations=[{"type": "min_cohort", "value": -1}])
    with pytest.raises(ValidationError, match="rejection carries no obligations"):
        decide("person_e1", "rejected", T0)
    first = decide("person_e2", "approved_with_conditions", T0)
    found = read(gov, ethics.approval_in_force, request=request, project=None, at=T0 + DAY)
    assert found is not None
    assert found.id == first.payload["decision"]
    assert read(gov, ethics.approval_in_force, request=request, project=None, at=T0 + 30 * DAY) is None  # expired
    decide("person_e1", "rejected", T0 + 2 * DAY, obligations=[], expires_at=None)
    assert read(gov, ethics.approval_in_force, request=request, project=None, at=T0 + 3 * DAY) is None
    assert read(gov, ethics.approval_in_force, request=request, project=None, at=T0 + DAY) is not None
    assert read(gov, ethics.get_decision, first.payload["decision"]).superseded_seq is not None
    gov.adopt(config_with(ethics__recorded_by="chair"), now=T0 + 3 * DAY)
    with pytest.raises(ForbiddenError, match="chair"):
        decide("person_e2", "approved", T0 + 4 * DAY, obligations=[])
    project_approval = decide(
        "person_e1", "approved", T0 + 4 * DAY, request=None, project="Wellbeing study", obligations=[]
    )
    other = gov.submit(categories=["health.mental"], purpose="research.health", project="Wellbeing study")
    found = read(gov, ethics.approval_in_force, request=other, project="Wellbeing study", at=T0 + 5 * DAY)
    assert found is not None
    assert found.seq == project_approval.seq


def test_preassessment(gov: Gov) -> None:
    """The pre-assessment reports organisation, agreement, retention, ethics, cohort and consent findings."""
    request = gov.submit(categories=["service_use", "health"], cohort_size=5, duration_days=400)
    findings = {f.rule: f for f in read(gov, preassess, request, at=T0).findings}
    assert findings["organisation"].outcome == "pass"
    assert findings["agreement"].outcome == "fail"
    assert findings["ethics"].outcome == "fail"
    assert findings["cohort"].outcome == "fail"
    assert "below the minimum of 10" in findings["cohort"].message
    assert read(gov, preassess, request, at=T0).special_categories == ["health"]
    gov.agreement(categories=("service_use", "health", "demographics"))
    good = gov.submit(cohort_size=40, duration_days=200)
    report = read(gov, preassess, good, at=T0)
    findings = {f.rule: f for f in report.findings}
    assert findings["agreement"].outcome == "pass"
    assert findings["agreement"].evidence
    assert findings["retention"].outcome == "pass"
    assert findings["ethics"].outcome == "not_applicable"
    assert findings["cohort"].outcome == "pass"
    assert report.to_json()["consent"] == {"subjects_considered": 0, "subjects_covered": 0}
    long = {f.rule: f for f in read(gov, preassess, request, at=T0).findings}
    assert long["retention"].outcome == "fail"


def test_preassessment_counts_consent_cover(gov: Gov) -> None:
    """Named subjects are counted as covered only when an active consent covers purpose, categories and operation."""
    subjects = []
    for purposes in (["statistics"], ["research"]):
        draft = ConsentIn(
            person={"name": "A Person", "contact": "person@example.org"},
            purposes=purposes,
            categories=["service_use", "demographics"],
            wording_version="v1",
            wording_text="I agree to the trust using my data for these purposes.",
        )
        recorded = record_consent(gov.ledger, gov.instance.vault, draft, organisation=ORG, actor=ORG, now=T0)
        subjects.append(recorded.subject)
    request = gov.submit(subjects=subjects, cohort=None, cohort_size=None)
    report = read(gov, preassess, request, at=T0 + DAY)
    consent = {f.rule: f for f in report.findings}["consent"]
    assert (report.subjects_considered, report.subjects_covered) == (2, 1)
    assert consent.outcome == "indeterminate"
    assert consent.message.startswith("1 of 2 named subjects")
