"""A seeded trust for page tests: the demo's people, organisations, requests and consents, plus checks.

:func:`seed_world` runs the demo seeds (``api/seed_identity.py``, ``api/seed_governance.py``,
``api/seed_consent.py``) with cheap password hashing, then records check decisions by the food
bank's partner system under its approved request: enough permitted checks that the month's
count is published, and two refused ones (a count the register must hide).

The :class:`World` it returns names what tests need: the food bank's approved request, the
requests on notice and in voting, the trustees' and admin's passwords, and two individuals
(each with a receipt access code) whose pages must never show each other's data.
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


def _cohort(instance: Instance, first: str, request: str) -> list[str]:
    """*first* and nine more people whose consent covers the statistics check: exactly the minimum of ten."""
    with instance.db.engine.connect() as conn:
        subjects = list(
            dict.fromkeys(str(row.subject) for page in iter_grants(conn, organisation=FOOD_BANK) for row in page)
        )
    assert instance.checks is not None
    trial = instance.checks.decide(
        statistics_action(subjects, request), actor="test", now=instance.clock(), dry_run=True
    )
    covered = [s for s in trial.decision.permitted if s != first]
    return [first, *covered[: MIN_COHORT - 1]]


def seed_world(instance: Instance) -> World:
    """Seed *instance* with the demo trust's story and some checks; return what tests need."""
    credentials: dict[str, Any] = {}
    with _cheap_password_hashing():
        seed_identity(instance, credentials)
        seed_governance(instance, credentials)
    seed_consent(instance, credentials)
    now = instance.clock()
    ids = _request_ids(instance, now)
    alice = _individual(instance, credentials["individuals"][0], now)
    bob = _individual(instance, credentials["individuals"][1], now)
    carol = _individual(instance, credentials["individuals"][2], now)
    client = str(credentials["partner"]["client_id"])
    cohort = _cohort(instance, alice.subject, ids["approved"])
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
