"""Demo consents: forty-five consents of thirty people, collected by two partners of the demo trust.

The governance seed registers the organisations; this only uses their ids. Some
consents are withdrawn (by the person, or on their behalf), one has expired and
one was replaced by a newer, broader consent, so every status shows up.
"""

from __future__ import annotations

from typing import Any

from api.instance import Instance
from consent import service
from consent.schemas import ConsentIn

FOOD_BANK = "org_riverside_food_bank"
HOUSING = "org_northside_housing"

FOOD_BANK_WORDING = (
    "Riverside Food Bank would like to share information about your visits with the Riverside Community Data "
    "Trust, so that local charities and researchers can learn what help people need. You can say no, and you "
    "can change your mind at any time."
)
HOUSING_WORDING = (
    "Northside Housing would like to share information about your home and your household with the Riverside "
    "Community Data Trust, to plan better services and support research into local housing. You can withdraw "
    "at any time."
)
HEALTH_WORDING = (
    "With your explicit agreement, Riverside Food Bank would like to share whether you have told us about any "
    "mental health needs, only for approved health research and never in a form that identifies you."
)

PEOPLE = [
    ("Amira Khan", "amira.khan@example.org"),
    ("Tom Price", "07700 900101"),
    ("Grace Okafor", "grace.okafor@example.org"),
    ("Daniel Evans", "07700 900102"),
    ("Siobhan Murphy", "siobhan.murphy@example.org"),
    ("Priya Shah", "priya.shah@example.org"),
    ("Joe Bloggs", "07700 900103"),
    ("Fatima Hussain", "fatima.hussain@example.org"),
    ("Callum Reid", "07700 900104"),
    ("Elena Popescu", "elena.popescu@example.org"),
    ("Kwame Mensah", "07700 900105"),
    ("Rosie Clarke", "rosie.clarke@example.org"),
    ("Yusuf Ali", "07700 900106"),
    ("Hannah Lewis", "hannah.lewis@example.org"),
    ("Marek Nowak", "07700 900107"),
    ("Chloe Bennett", "chloe.bennett@example.org"),
    ("Ibrahim Diallo", "07700 900108"),
    ("Megan Hughes", "megan.hughes@example.org"),
    ("Oluwaseun Adeyemi", "07700 900109"),
    ("Laura Martin", "laura.martin@example.org"),
    ("Arjun Patel", "07700 900110"),
    ("Niamh Byrne", "niamh.byrne@example.org"),
    ("George Wright", "07700 900111"),
    ("Zainab Ahmed", "zainab.ahmed@example.org"),
    ("Liam Campbell", "07700 900112"),
    ("Sophie Turner", "sophie.turner@example.org"),
    ("Mohammed Rahman", "07700 900113"),
    ("Ellie Walsh", "ellie.walsh@example.org"),
    ("Samuel Osei", "07700 900114"),
    ("Jessica Taylor", "jessica.taylor@example.org"),
]

TERMS: dict[str, dict[str, Any]] = {
    "statistics": {"purposes": ["statistics.aggregate"], "categories": ["service_use", "demographics"],
                   "operations": ["aggregate"]},
    "social research": {"purposes": ["research.social"],
                        "categories": ["financial", "housing", "demographics.household"]},
    "referral": {"purposes": ["service_delivery.referral"], "categories": ["contact", "housing"],
                 "recipients": [HOUSING]},
    "planning": {"purposes": ["planning", "evaluation"], "categories": ["housing", "demographics"],
                 "operations": ["aggregate"]},
    "health research": {"purposes": ["research.health"], "categories": ["health.mental", "demographics.age"],
                        "explicit": True, "operations": ["aggregate", "pseudonymised"]},
    "planning and research": {"purposes": ["planning", "evaluation", "research.social"],
                              "categories": ["housing", "demographics", "financial"]},
}  # fmt: skip


def _draft(terms: str, *, wording: str, version: str) -> dict[str, Any]:
    return {**TERMS[terms], "wording_version": version, "wording_text": wording}


def seed_consent(instance: Instance, credentials: dict[str, Any]) -> None:
    """Record the demo consents; put three individuals' access codes in ``credentials["individuals"]``."""
    now = instance.clock()
    subjects: list[str] = []
    codes: dict[str, str] = {}
    consents: dict[tuple[int, str], str] = {}

    def give(person: int, organisation: str, terms: dict[str, Any], *, tag: str) -> None:
        body = dict(terms)
        if person < len(subjects):
            body["subject"] = subjects[person]
        else:
            name, contact = PEOPLE[person]
            body["person"] = {"name": name, "contact": contact}
        recorded = service.record_consent(
            instance.ledger,
            instance.vault,
            ConsentIn.model_validate(body),
            organisation=organisation,
            actor=organisation,
            now=now,
        )
        if person == len(subjects):
            subjects.append(recorded.subject)
        codes.setdefault(recorded.subject, recorded.access_code)
        consents[person, tag] = recorded.consent

    food = {"wording": FOOD_BANK_WORDING, "version": "food-bank-2026-01"}
    housing = {"wording": HOUSING_WORDING, "version": "northside-2025-09"}
    for person in range(18):  # food bank visitors: statistics for everyone, social research for most
        give(person, FOOD_BANK, _draft("statistics", **food), tag="stats")
        if person % 2 == 0:  # half the visitors also agreed to social research
            give(person, FOOD_BANK, _draft("social research", **food), tag="research")
    for person in (0, 4, 9):
        give(person, FOOD_BANK, _draft("referral", **food), tag="referral")
    give(
        5,
        FOOD_BANK,
        _draft("health research", wording=HEALTH_WORDING, version="food-bank-health-2026-02"),
        tag="health",
    )
    for person in range(18, 30):  # Northside tenants
        give(person, HOUSING, _draft("planning", **housing), tag="planning")
    # one consent that has expired: a one-year research consent from 2025
    expired = _draft("social research", **housing)
    expired.update(valid_from="2025-01-06T09:00:00Z", valid_until="2026-01-06T09:00:00Z")
    give(20, HOUSING, expired, tag="expired")
    # one superseded: a tenant who agreed to planning, then to planning and research, more broadly
    give(21, HOUSING, _draft("planning and research", **housing), tag="broader")
    for person, tag, by in ((2, "research", "subject"), (8, "research", "subject"), (12, "stats", "organisation")):
        service.withdraw_consent(
            instance.ledger,
            consent=consents[person, tag],
            by=by,  # type: ignore[arg-type]
            requester=subjects[person] if by == "subject" else FOOD_BANK,
            actor=subjects[person] if by == "subject" else FOOD_BANK,
            reason="No longer happy for this to be used." if by == "subject" else "Asked us by telephone to stop.",
            now=now,
        )
    service.withdraw_consent(
        instance.ledger,
        consent=consents[25, "planning"],
        by="organisation",
        requester=HOUSING,
        actor=HOUSING,
        reason="Tenant asked at the housing office.",
        now=now,
    )
    individuals = [subjects[0], subjects[5], subjects[21]]  # referral + research; health; superseded
    credentials["individuals"] = [{"subject": s, "access_code": codes[s]} for s in individuals]
