"""A seeded trust for page tests: the demo's people, organisations, requests and consents, plus checks.

:func:`seed_world` runs the demo seeds (``api/seed_identity.py``, ``api/seed_governance.py``,
``api/seed_consent.py``) with cheap password hashing, adds Alice (two consents from the food
bank; statistics is her newest), then records check decisions by the food bank's partner
system under its approved request for a cohort of exactly ten people, Alice among them:
enough permitted checks that the month's count is published, and two refused ones (a count
the register must hide).

The :class:`World` it returns names what tests need: the requests (approved, rejected, on
notice, in voting), the trustees', ethics member's and admin's passwords, the partner's
client, and three individuals with receipt access codes -- Alice, Bob (never in a check) and
Carol -- whose pages must never show each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.instance import Instance
from api.seed_consent import seed_consent
from api.seed_governance import seed_governance
from api.seed_identity import seed_identity
from consent import service as consent_service
from consent.repository import iter_grants
from consent.schemas import ConsentIn
from tests.factories import _cheap_password_hashing
from trust.requests import list_requests
from trust.rules.base import ProposedAction

FOOD_BANK = "org_riverside_food_bank"
PERMITTED_CHECKS = 12
MIN_COHORT = 10  # trust/governance.toml [outputs] min_cohort_size
DENIED_CHECKS = 2


@dataclass(frozen=True)
class Individual:
    """A person with a receipt access code."""

    subject: str
    access_code: str
    consents: list[str]
    purposes: dict[str, list[str]]

    def consent_for(self, purpose: str) -> str:
        """The id of this person's consent that names *purpose*."""
        return next(c for c, purposes in self.purposes.items() if purpose in purposes)


@dataclass(frozen=True)
class World:
    """What the seeded trust holds that tests refer to."""

    credentials: dict[str, Any]
    approved: str
    notice: str
    notice_council: str
    voting: str
    decided: str
    alice: Individual
    bob: Individual
    carol: Individual
    partner_client: str
    cohort: list[str]

    @property
    def trustees(self) -> list[dict[str, str]]:
        """Usernames, passwords and person ids of the four trustees (the first chairs)."""
        return list(self.credentials["trustees"])

    @property
    def admin(self) -> dict[str, str]:
        """The administrator's username, password and person id."""
        return dict(self.credentials["admin"])


def _request_ids(instance: Instance, now: datetime) -> dict[str, str]:
    with instance.db.engine.connect() as conn:
        found = list_requests(conn, at=now)
    by_title = {r.title: r.id for r in found}

    def find(start: str) -> str:
        return next(rid for title, rid in by_title.items() if title.startswith(start))

    return {
        "approved": find("How many families needed"),
        "notice": find("Do housing advice referrals"),
        "notice_council": find("Households using the food bank"),
        "voting": find("Mental health service use"),
        "decided": find("Names of food bank users"),
    }


def _individual(instance: Instance, item: dict[str, str], now: datetime) -> Individual:
    with instance.db.engine.connect() as conn:
        views = consent_service.consents_for_subjects(conn, [item["subject"]], at=now)[item["subject"]]
    return Individual(
        item["subject"], item["access_code"], [v.consent for v in views], {v.consent: list(v.purposes) for v in views}
    )


def statistics_check(subjects: list[str], request: str, *, purpose: str = "statistics.aggregate") -> dict[str, Any]:
    """The body of a check for aggregate statistics about visits, under the approved request."""
    return {
        "purpose": purpose,
        "data_categories": ["service_use"],
        "operation": "aggregate",
        "request": request,
        "subjects": subjects,
        "cohort_size": 412,
    }


def statistics_action(subjects: list[str], request: str, *, purpose: str = "statistics.aggregate") -> ProposedAction:
    """:func:`statistics_check` as the food bank's proposed action."""
    body = statistics_check(subjects, request, purpose=purpose)
    return ProposedAction(
        organisation=FOOD_BANK,
        purpose=body["purpose"],
        categories=tuple(body["data_categories"]),
        operation=body["operation"],
        request=body["request"],
        subjects=tuple(body["subjects"]),
        cohort_size=body["cohort_size"],
    )


def _cohort(instance: Instance, first: str, request: str, *, leave_out: str) -> list[str]:
    """*first* and nine more people (never *leave_out*) whose consent covers the check: the minimum of ten."""
    with instance.db.engine.connect() as conn:
        subjects = list(
            dict.fromkeys(str(row.subject) for page in iter_grants(conn, organisation=FOOD_BANK) for row in page)
        )
    assert instance.checks is not None
    trial = instance.checks.decide(
        statistics_action(subjects, request), actor="test", now=instance.clock(), dry_run=True
    )
    covered = [s for s in trial.decision.permitted if s not in {first, leave_out}]
    return [first, *covered[: MIN_COHORT - 1]]


def _give_alice(instance: Instance) -> dict[str, str]:
    """Alice: a food bank visitor who agreed to social research, then (her newest consent) to statistics."""
    wording = {"wording_version": "food-bank-2026-01", "wording_text": "Riverside Food Bank would like to share…"}
    first = consent_service.record_consent(
        instance.ledger,
        instance.vault,
        ConsentIn.model_validate(
            {
                "person": {"name": "Alice Example", "contact": "alice@example.org"},
                "purposes": ["research.social"],
                "categories": ["housing", "financial"],
                **wording,
            }
        ),
        organisation=FOOD_BANK,
        actor=FOOD_BANK,
        now=instance.clock(),
    )
    consent_service.record_consent(
        instance.ledger,
        instance.vault,
        ConsentIn.model_validate(
            {
                "subject": first.subject,
                "purposes": ["statistics.aggregate"],
                "categories": ["service_use", "demographics"],
                "operations": ["aggregate"],
                **wording,
            }
        ),
        organisation=FOOD_BANK,
        actor=FOOD_BANK,
        now=instance.clock(),
    )
    return {"subject": first.subject, "access_code": first.access_code}


def seed_world(instance: Instance) -> World:
    """Seed *instance* with the demo trust's story and some checks; return what tests need."""
    credentials: dict[str, Any] = {}
    with _cheap_password_hashing():
        seed_identity(instance, credentials)
        seed_governance(instance, credentials)
    seed_consent(instance, credentials)
    alice_code = _give_alice(instance)
    now = instance.clock()
    ids = _request_ids(instance, now)
    alice = _individual(instance, alice_code, now)
    bob = _individual(instance, credentials["individuals"][1], now)
    carol = _individual(instance, credentials["individuals"][0], now)
    client = str(credentials["partner"]["client_id"])
    cohort = _cohort(instance, alice.subject, ids["approved"], leave_out=bob.subject)
    assert instance.checks is not None
    for index in range(PERMITTED_CHECKS + DENIED_CHECKS):
        purpose = "statistics.aggregate" if index < PERMITTED_CHECKS else "research.health"  # outside the request
        instance.checks.decide(
            statistics_action(cohort, ids["approved"], purpose=purpose), actor=client, now=instance.clock()
        )
    return World(
        credentials=credentials,
        approved=ids["approved"],
        notice=ids["notice"],
        notice_council=ids["notice_council"],
        voting=ids["voting"],
        decided=ids["decided"],
        alice=alice,
        bob=bob,
        carol=carol,
        partner_client=client,
        cohort=cohort,
    )
