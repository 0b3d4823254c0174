"""Governance test helpers: a trust with an organisation, trustees and a request factory.

Each test module defines ``gov`` as ``make_gov(instance)`` (a fixture over both databases).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from api.instance import Instance
from trust import agreements, membership, organisations
from trust.config import GovernanceConfig, adopt_config
from trust.requests import RequestDraft, submit_request

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ADMIN = "person_admin"
ORG = "org_riverside_food_bank"
DAY = timedelta(days=1)


def config_with(**changes: Any) -> GovernanceConfig:
    """The default config with settings replaced by ``section__key=value`` keywords."""
    document = copy.deepcopy(GovernanceConfig.default().to_document())
    for name, value in changes.items():
        section, key = name.split("__")
        document[section][key] = value
    return GovernanceConfig.from_document(document)


def draft(**changes: Any) -> RequestDraft:
    """A complete, plain-language aggregate request, with fields replaced by *changes*."""
    values: dict[str, Any] = {
        "title": "How many families used the food bank twice or more this winter",
        "purpose": "statistics.aggregate",
        "categories": ["service_use", "demographics.household"],
        "operation": "aggregate",
        "duration_days": 90,
        "lay_summary": "We want to count how many families needed help more than once, to plan stock.",
        "public_benefit": "Fewer empty shelves in January for families who rely on the food bank.",
        "five_safes": {
            "people": "Two named analysts who have completed data-protection training.",
            "projects": "Service planning for winter 2026-27 only.",
            "settings": "The trust's secure analysis environment; nothing leaves it but tables.",
            "data": "Visit counts and household size; no names or addresses.",
            "outputs": "Counts of 10 or more families, checked before release.",
        },
        "proportionality": {
            "necessity": "Without repeat-visit counts we cannot size the winter stock.",
            "minimisation": "Only visit dates and household size, aggregated by month.",
            "alternatives": "A paper survey was considered but misses the families most in need.",
        },
        "cohort": "Households who visited the food bank between November and February",
        "cohort_size": 240,
    }
    values.update(changes)
    return RequestDraft(**values)


@dataclass
class Gov:
    """A trust under test with helpers that record governance facts at chosen instants."""

    instance: Instance

    @property
    def ledger(self) -> Any:
        """The trust's ledger."""
        return self.instance.ledger

    def conn(self) -> Any:
        """A read connection (use as a context manager)."""
        return self.instance.db.engine.connect()

    def size(self) -> int:
        """Number of ledger entries."""
        return int(self.instance.ledger.size())

    def adopt(self, config: GovernanceConfig, *, now: datetime = T0) -> int:
        """Adopt *config*; return the entry's seq."""
        return adopt_config(self.ledger, config, actor=ADMIN, now=now).seq

    def org(self, org_id: str = ORG, *, now: datetime = T0) -> str:
        """Register an organisation."""
        organisations.register_organisation(
            self.ledger,
            org_id=org_id,
            name=org_id.removeprefix("org_").replace("_", " ").title(),
            kind="charity",
            actor=ADMIN,
            now=now,
        )
        return org_id

    def trustees(self, count: int, *, chair: bool = True, now: datetime = T0) -> list[str]:
        """Appoint *count* trustees ``person_t1…`` (the first is chair if *chair*)."""
        people = [f"person_t{i}" for i in range(1, count + 1)]
        for index, person in enumerate(people):
            membership.appoint(
                self.ledger, person_id=person, role="trustee", is_chair=chair and index == 0, actor=ADMIN, now=now
            )
        return people

    def submit(self, *, org: str = ORG, now: datetime = T0, **changes: Any) -> str:
        """Submit a request; return its id."""
        entry = submit_request(self.ledger, organisation=org, draft=draft(**changes), actor="client_test", now=now)
        return str(entry.payload["request"])

    def agreement(self, *, org: str = ORG, now: datetime = T0, **changes: Any) -> str:
        """Propose and countersign an agreement covering the default draft; return its id."""
        values: dict[str, Any] = {
            "organisation": org,
            "title": "Food bank service evaluation",
            "purposes": ("service_delivery", "statistics.aggregate"),
            "categories": ("service_use", "demographics"),
            "operations": ("aggregate", "pseudonymised"),
            "retention_days": 365,
            "geography": ("GB",),
            "valid_from": now,
            "valid_until": now + 365 * DAY,
        }
        values.update(changes)
        entry = agreements.propose_agreement(self.ledger, terms=agreements.Terms(**values), actor=ADMIN, now=now)
        p = entry.payload
        agreements.sign_agreement(
            self.ledger,
            agreement_id=p["agreement"],
            version=p["version"],
            party="organisation",
            expected_terms_hash=p["terms_hash"],
            organisation=org,
            actor="client_test",
            now=now,
        )
        return str(p["agreement"])


def make_gov(instance: Instance) -> Gov:
    """A trust with the food bank registered (test modules wrap this in a ``gov`` fixture)."""
    helper = Gov(instance)
    helper.org()
    return helper


def read(gov: Gov, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(conn, *args, **kwargs)`` on a fresh read connection."""
    conn: Connection
    with gov.conn() as conn:
        return fn(conn, *args, **kwargs)
