"""Demo governance: four Riverside organisations, trustees, agreements, an ethics approval and six requests.

Called by ``api/demo.py`` after the identity seed has put the trustees' person ids into
``credentials["trustees"]`` (items with ``person_id``; the first, or any item with
``"is_chair": true``, chairs). With no trustees nothing is appointed and no votes are cast.
The ethics-committee member comes from ``credentials["ethics"]`` (an item or a list of items
with ``person_id``); if there is none, one account is created and added there.

The story spans the last six weeks so every state is visible today: entries carry the
instants at which they happen in that story (``at`` goes back in time relative to the
trust's first entries, which were recorded moments ago).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from api.instance import Instance
from trust import agreements, ethics, identity, membership, organisations
from trust.agreements import Terms
from trust.requests import RequestDraft, close_due_requests, comment_on_request, declare_conflict, revoke_request
from trust.requests import submit_request as submit
from trust.votes import cast_vote

DAY = timedelta(days=1)
ORGANISATIONS = [
    ("org_riverside_food_bank", "Riverside Food Bank", "charity"),
    ("org_northside_housing", "Northside Housing Association", "charity"),
    ("org_riverside_university", "University of Riverside", "university"),
    ("org_riverside_council", "Riverside Borough Council", "council"),
]
UNIVERSITY_PROJECT = "Riverside Young Adults Wellbeing Study"


@dataclass
class _Story:
    instance: Instance
    now: datetime
    admin: str

    def at(self, days_ago: float) -> datetime:
        return self.now - timedelta(days=days_ago)


def _people(credentials: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = credentials.get(key) or []
    items = [value] if isinstance(value, dict) else list(value)
    return [item for item in items if isinstance(item, dict) and item.get("person_id")]


def _ethics_member(story: _Story, credentials: dict[str, Any]) -> str:
    found = _people(credentials, "ethics")
    if found:
        return str(found[0]["person_id"])
    password = secrets.token_urlsafe(12)
    with story.instance.db.write_engine.begin() as conn:
        person_id = identity.create_person(
            conn,
            username="amara.okafor",
            password=password,
            display_name="Dr Amara Okafor",
            email=None,
            is_admin=False,
            now=story.at(42),
        )
    credentials["ethics"] = [{"person_id": person_id, "username": "amara.okafor", "password": password}]
    return person_id


def _agreement(story: _Story, *, terms: Terms, days_ago: float) -> str:
    entry = agreements.propose_agreement(story.instance.ledger, terms=terms, actor=story.admin, now=story.at(days_ago))
    p = entry.payload
    agreements.sign_agreement(
        story.instance.ledger,
        agreement_id=p["agreement"],
        version=p["version"],
        party="organisation",
        expected_terms_hash=p["terms_hash"],
        organisation=terms.organisation,
        actor=terms.organisation,
        now=story.at(days_ago - 0.5),
    )
    return str(p["agreement"])


def _agreements(story: _Story) -> None:
    start = story.at(41)
    _agreement(
        story,
        days_ago=41,
        terms=Terms(
            organisation="org_riverside_food_bank",
            title="Food bank service planning and evaluation",
            purposes=("service_delivery", "statistics.aggregate"),
            categories=("service_use", "demographics.household", "demographics.age"),
            operations=("aggregate", "pseudonymised"),
            retention_days=365,
            geography=("GB",),
            valid_from=start,
            valid_until=start + 730 * DAY,
        ),
    )
    _agreement(
        story,
        days_ago=40,
        terms=Terms(
            organisation="org_northside_housing",
            title="Tenancy support referrals",
            purposes=("service_delivery.referral", "service_delivery.follow_up"),
            categories=("housing", "demographics.household", "contact"),
            operations=("pseudonymised",),
            retention_days=365,
            geography=("GB",),
            valid_from=story.at(40),
            valid_until=story.at(40) + 365 * DAY,
        ),
    )
    _agreement(
        story,
        days_ago=39,
        terms=Terms(
            organisation="org_riverside_university",
            title="Young adults' wellbeing research (aggregate statistics only)",
            purposes=("research.health",),
            categories=("health.mental", "demographics.age"),
            operations=("aggregate",),
            retention_days=540,
            geography=("GB",),
            valid_from=story.at(39),
            valid_until=story.at(39) + 1095 * DAY,
        ),
    )


def _five_safes(people: str, project: str, settings: str, data: str, outputs: str) -> dict[str, str]:
    return {"people": people, "projects": project, "settings": settings, "data": data, "outputs": outputs}


def _proportionality(necessity: str, minimisation: str, alternatives: str) -> dict[str, str]:
    return {"necessity": necessity, "minimisation": minimisation, "alternatives": alternatives}


DRAFTS: dict[str, tuple[str, RequestDraft]] = {
    "approved": (
        "org_riverside_food_bank",
        RequestDraft(
            title="How many families needed the food bank more than once this winter",
            purpose="statistics.aggregate",
            categories=["service_use", "demographics.household"],
            operation="aggregate",
            duration_days=180,
            lay_summary=(
                "The food bank wants to count how many families came back for help two or more times "
                "between November and February, and how big those households are, so it can order the "
                "right amount of food for next winter. Nobody is named; only totals are produced."
            ),
            public_benefit="Fewer empty shelves in January, and earlier help for families who keep needing support.",
            five_safes=_five_safes(
                "Two food bank staff who have completed the trust's data-protection training.",
                "Winter stock planning for 2026-27 only; no other use.",
                "The trust's secure analysis environment; only tables leave it.",
                "Visit dates and household size; no names, addresses or contact details.",
                "Monthly totals, each describing at least 10 households, checked before release.",
            ),
            proportionality=_proportionality(
                "Without repeat-visit counts the food bank cannot size next winter's order.",
                "Only visit dates and household size are used, and only as monthly totals.",
                "A paper survey was tried last year but missed the families most in need.",
            ),
            cohort="Households who visited the food bank between November and February",
            cohort_size=412,
        ),
    ),
    "rejected": (
        "org_riverside_council",
        RequestDraft(
            title="Names of food bank users in rent arrears, for enforcement letters",
            purpose="service_delivery",
            categories=["financial", "housing", "contact"],
            operation="identifiable",
            duration_days=90,
            lay_summary=(
                "The council asked for the names and addresses of food bank users who are behind on "
                "their rent, so that it could send them letters about arrears."
            ),
            public_benefit="The council said earlier contact could stop arrears from growing.",
            five_safes=_five_safes(
                "The council's income recovery team.",
                "Recovering rent arrears.",
                "The council's case management system.",
                "Names, addresses and arrears amounts of named people.",
                "Individual letters to each person.",
            ),
            proportionality=_proportionality(
                "The council says it has no other way to find these households.",
                "Only people with arrears would be included.",
                "None were described.",
            ),
            cohort="Food bank users with rent arrears",
            cohort_size=None,
            vulnerable_people=True,
        ),
    ),
    "revoked": (
        "org_northside_housing",
        RequestDraft(
            title="Follow-up calls to tenants referred for tenancy support",
            purpose="service_delivery.follow_up",
            categories=["housing", "contact"],
            operation="pseudonymised",
            duration_days=365,
            lay_summary=(
                "The housing association wanted to check in with tenants who had agreed to be referred "
                "for tenancy support, to see whether the help arrived."
            ),
            public_benefit="Tenants who were referred but never helped would be noticed and contacted again.",
            five_safes=_five_safes(
                "Three tenancy support officers.",
                "Follow-up of referrals made since April.",
                "The association's case system; pseudonymised until a call is due.",
                "Referral date, outcome and a contact route for each referred tenant.",
                "No publication; internal follow-up only.",
            ),
            proportionality=_proportionality(
                "Referrals that fail are otherwise invisible to the association.",
                "Only tenants who consented to referral, only their referral record and a contact route.",
                "Asking the support agencies directly was tried but their records are incomplete.",
            ),
            cohort="Tenants referred for tenancy support since April who consented to follow-up",
            cohort_size=86,
        ),
    ),
    "voting": (
        "org_riverside_university",
        RequestDraft(
            title="Mental health service use among young adults in Riverside",
            purpose="research.health",
            categories=["health.mental", "demographics.age"],
            operation="aggregate",
            duration_days=365,
            project=UNIVERSITY_PROJECT,
            lay_summary=(
                "Researchers want to know how many 18 to 25 year olds in Riverside used local mental health "
                "services in the last two years, and at what ages, to show where support is missing. "
                "They will only ever see totals, never individual records."
            ),
            public_benefit=(
                "Evidence for the council and NHS to fund support where young people are falling through gaps."
            ),
            five_safes=_five_safes(
                "Two named university researchers with accredited researcher status.",
                "The Riverside Young Adults Wellbeing Study, approved by the trust's ethics committee.",
                "The trust's secure analysis environment; researchers never receive records.",
                "Age band and whether a mental health service was used; nothing else.",
                "Tables with at least 20 people in every cell, checked by the trust before release.",
            ),
            proportionality=_proportionality(
                "National statistics do not break down by town or by age in this way.",
                "Age bands instead of birth dates, and no diagnosis details.",
                "A survey was considered but young people who struggle most rarely answer surveys.",
            ),
            cohort="People aged 18 to 25 who consented to health research",
            cohort_size=350,
        ),
    ),
    "notice": (
        "org_riverside_food_bank",
        RequestDraft(
            title="Do housing advice referrals reduce repeat food bank visits?",
            purpose="service_delivery",
            categories=["service_use", "housing"],
            operation="pseudonymised",
            duration_days=270,
            lay_summary=(
                "The food bank wants to see whether families it referred to housing advice came back "
                "less often afterwards, to decide whether to keep offering referrals."
            ),
            public_benefit="Referral schemes that work can be kept, and ones that do not can be changed.",
            five_safes=_five_safes(
                "One food bank evaluation officer.",
                "Evaluation of the housing advice referral scheme, 2025-26.",
                "The trust's secure analysis environment.",
                "Pseudonymised visit dates and whether a referral was made; no names.",
                "A short report with totals only.",
            ),
            proportionality=_proportionality(
                "The scheme costs volunteer time that could be used elsewhere if it does not help.",
                "Pseudonymised references instead of names; visit dates only.",
                "Asking families directly was considered too intrusive for people in crisis.",
            ),
            cohort="Families referred to housing advice since April and a comparison group",
            cohort_size=180,
        ),
    ),
    "notice_council": (
        "org_riverside_council",
        RequestDraft(
            title="Households using the food bank, by ward, for the cost-of-living plan",
            purpose="statistics.aggregate",
            categories=["service_use", "demographics.household"],
            operation="aggregate",
            duration_days=120,
            lay_summary=(
                "The council wants totals of households using the food bank in each ward, to decide where "
                "to open warm spaces and advice sessions this winter."
            ),
            public_benefit="Warm spaces and advice open where they are most needed.",
            five_safes=_five_safes(
                "The council's public health intelligence team.",
                "The 2026-27 cost-of-living plan.",
                "The trust's secure analysis environment.",
                "Ward and household size; no names or addresses.",
                "Ward totals of at least 10 households, published in the plan.",
            ),
            proportionality=_proportionality(
                "The council has no other source of where food insecurity is concentrated.",
                "Ward-level totals only.",
                "National indices were considered but are three years out of date.",
            ),
            cohort="Households who used the food bank in the last twelve months",
            cohort_size=1250,
        ),
    ),
}


def _submit(story: _Story, key: str, days_ago: float) -> str:
    organisation, draft = DRAFTS[key]
    entry = submit(
        story.instance.ledger, organisation=organisation, draft=draft, actor=organisation, now=story.at(days_ago)
    )
    return str(entry.payload["request"])


def _vote(
    story: _Story, request: str, trustee: str, *, choice: str, reason: str, days_ago: float, agrees: bool = True
) -> bool:
    """Cast a vote; return whether it settled the request."""
    result = cast_vote(
        story.instance.ledger,
        request_id=request,
        trustee=trustee,
        choice=choice,
        reason=reason,
        agrees_with_preassessment=agrees,
        now=story.at(days_ago),
    )
    return result.decision is not None


def seed_governance(instance: Instance, credentials: dict[str, Any]) -> None:
    """Seed the demo trust's governance story (see the module docstring)."""
    admin_items = _people(credentials, "admin")
    story = _Story(instance, instance.clock(), str(admin_items[0]["person_id"]) if admin_items else "trust")
    ledger = instance.ledger
    for org_id, name, kind in ORGANISATIONS:
        organisations.register_organisation(
            ledger, org_id=org_id, name=name, kind=kind, actor=story.admin, now=story.at(42)
        )
    trustees = [str(item["person_id"]) for item in _people(credentials, "trustees")]
    chair = next((str(i["person_id"]) for i in _people(credentials, "trustees") if i.get("is_chair")), None)
    chair = chair or (trustees[0] if trustees else None)
    for person in trustees:
        membership.appoint(
            ledger, person_id=person, role="trustee", is_chair=person == chair, actor=story.admin, now=story.at(42)
        )
    ethics_member = _ethics_member(story, credentials)
    membership.appoint(
        ledger, person_id=ethics_member, role="ethics", is_chair=True, actor=story.admin, now=story.at(42)
    )
    _agreements(story)
    ethics.record_decision(
        ledger,
        outcome="approved_with_conditions",
        request=None,
        project=UNIVERSITY_PROJECT,
        conditions_text=(
            "Approved on condition that researchers see aggregate tables only, every cell describes at least "
            "20 people, the extract is deleted by the end of the study, and the team reports back to the "
            "committee within a year."
        ),
        obligations=[
            {"type": "min_cohort", "value": 20},
            {"type": "operations", "value": ["aggregate"]},
            {"type": "delete_by", "value": (story.now + 400 * DAY).date().isoformat()},
            {"type": "review_by", "value": (story.now + 330 * DAY).date().isoformat()},
        ],
        expires_at=story.now + 400 * DAY,
        actor=ethics_member,
        now=story.at(30),
    )
    requests = {key: _submit(story, key, days) for key, days in [("approved", 38), ("rejected", 37), ("revoked", 36)]}
    requests["voting"] = _submit(story, "voting", 16)
    requests["notice"] = _submit(story, "notice", 3)
    requests["notice_council"] = _submit(story, "notice_council", 1)
    comment_on_request(
        ledger,
        request_id=requests["notice"],
        text=(
            "I was referred to housing advice last spring and it helped. Please make sure the report "
            "does not make it possible to recognise families from small villages."
        ),
        actor="public",
        now=story.at(2),
    )
    if trustees:
        _story_votes(story, trustees, requests)
    with instance.db.engine.connect() as conn:
        close_due_requests(ledger, conn, now=story.now)


def _revoke(story: _Story, request: str, trustee: str) -> None:
    revoke_request(
        story.instance.ledger,
        request_id=request,
        reason=(
            "The housing association sent the pseudonymised list to a call-centre contractor outside the "
            "agreement. Approval revoked while the breach is investigated."
        ),
        actor=trustee,
        now=story.at(5),
    )


def _story_votes(story: _Story, trustees: list[str], requests: dict[str, str]) -> None:
    ledger = story.instance.ledger
    reasons_for = [
        "Clear public benefit, totals only, and the agreement covers it.",
        "Proportionate: only visit dates and household size, aggregated.",
        "Small risk, real benefit for families next winter.",
        "Agree with the pre-assessment.",
        "Supports the food bank's planning; outputs are checked.",
    ]
    for trustee, reason in zip(trustees, reasons_for, strict=False):
        if _vote(story, requests["approved"], trustee, choice="approve", reason=reason, days_ago=23):
            break
    against = [
        "Identifiable data about people in crisis, for enforcement: not what they consented to.",
        "No proportionality case and no alternatives considered.",
        "This would destroy trust in the food bank.",
        "Vulnerable people, identifiable output, no agreement in force.",
        "Reject: outside the trust's mission.",
    ]
    for trustee, reason in zip(trustees, against, strict=False):
        if _vote(story, requests["rejected"], trustee, choice="reject", reason=reason, days_ago=22):
            break
    reason = "Consented tenants only, pseudonymised until needed."
    if any(_vote(story, requests["revoked"], t, choice="approve", reason=reason, days_ago=21) for t in trustees):
        _revoke(story, requests["revoked"], trustees[0])
    if len(trustees) > 1:
        declare_conflict(
            ledger,
            request_id=requests["voting"],
            trustee=trustees[-1],
            interest="I am an honorary lecturer at the University of Riverside.",
            now=story.at(10),
        )
    _vote(
        story,
        requests["voting"],
        trustees[0],
        choice="approve",
        reason="Ethics approval with conditions is in force and outputs are aggregate with cells of 20 or more.",
        days_ago=1,
    )
