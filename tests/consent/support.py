"""Plain helpers for consent tests: drafts and recorded consents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.instance import Instance
from consent import service
from consent.schemas import ConsentIn

ORG = "org_riverside_food_bank"
OTHER_ORG = "org_northside_housing"


def draft(**overrides: Any) -> ConsentIn:
    """A valid consent for a new person: research on housing, wording v1."""
    fields: dict[str, Any] = {
        "person": {"name": "Amira Khan", "contact": "amira@example.org"},
        "purposes": ["research"],
        "categories": ["housing"],
        "wording_version": "v1",
        "wording_text": "I agree that the trust may use my housing information for research.",
    }
    fields.update(overrides)
    if "subject" in overrides:
        fields.pop("person", None)
    return ConsentIn.model_validate(fields)


def record(
    instance: Instance, *, organisation: str = ORG, now: datetime | None = None, **overrides: Any
) -> service.RecordedConsent:
    """Record a consent through the domain service."""
    return service.record_consent(
        instance.ledger,
        instance.vault,
        draft(**overrides),
        organisation=organisation,
        actor=f"client_{organisation.removeprefix('org_')}",
        now=now or datetime.now(UTC),
    )
