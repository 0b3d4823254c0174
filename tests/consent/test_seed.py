"""The demo consents: every status appears, and the three demo individuals can sign in."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from api.seed_consent import seed_consent
from consent import access_codes, service


def test_demo_consents(instance):
    """About forty consents of thirty people, with withdrawn, expired and superseded ones, and three sign-ins."""
    credentials: dict[str, Any] = {}
    seed_consent(instance, credentials)
    now = datetime.now(UTC)
    grants = [e for e, _ in instance.ledger.entries(0, 1000) if e.kind == "consent.granted"]
    subjects = sorted({e.payload["subject"] for e in grants})
    assert 40 <= len(grants) <= 50
    assert len(subjects) == 30
    assert {e.payload["organisation"] for e in grants} == {"org_riverside_food_bank", "org_northside_housing"}
    with instance.db.engine.connect() as conn:
        views = service.consents_for_subjects(conn, subjects, at=now)
        statuses = Counter(v.status(now).value for vs in views.values() for v in vs)
        for person in credentials["individuals"]:
            assert access_codes.redeem_access_code(conn, person["access_code"], now=now) == person["subject"]
    assert statuses["withdrawn"] == 4
    assert statuses["expired"] == 1
    assert statuses["superseded"] == 1
    assert len(credentials["individuals"]) == 3
