"""Demo data for webhooks: the food bank's endpoint, and one deletion it confirmed after a withdrawal.

Nothing listens at the demo endpoint, so its deliveries show failed attempts being
retried (``GET /v1/webhooks/deliveries``) until a receiver is started there, e.g.
with the partner client library's ``WebhookVerifier`` behind any small web server.
"""

from __future__ import annotations

from datetime import timedelta

from api.instance import Instance
from api.webhooks.signing import webhook_signer
from consent.schemas import ConsentIn, PersonIn
from consent.service import record_consent, withdraw_consent
from trust.deletions import owed_deletions
from trust.webhooks import EVENT_TYPES, confirm_deletion, create_subscription

DEMO_PARTNER = "org_riverside_food_bank"
DEMO_ENDPOINT = "http://127.0.0.1:8001/hooks/datatrust"
DEMO_ACTOR = "client_riverside_food_bank"


def seed_webhooks(instance: Instance, credentials: dict[str, object]) -> None:
    """Subscribe the food bank to every event type and record one confirmed deletion."""
    now = instance.clock()
    subscription = create_subscription(
        instance.db,
        organisation=DEMO_PARTNER,
        url=DEMO_ENDPOINT,
        event_types=list(EVENT_TYPES.values()),
        description="Food bank case system: deletes shared records when a consent ends",
        actor=DEMO_ACTOR,
        now=now,
        allow_local=True,  # the demo endpoint is on this machine
    )
    with instance.db.engine.connect() as conn:
        owed = owed_deletions(conn, DEMO_PARTNER, limit=1)
    if owed:
        subject, consent, decision_id = owed[0].subject, owed[0].consent, owed[0].decision_id
    else:  # no withdrawal among the seeded data yet: a visitor signs up at the food bank, then withdraws
        draft = ConsentIn(
            person=PersonIn(name="Sam Okafor", contact="sam.okafor@example.org"),
            purposes=["service_delivery"],
            categories=["contact"],
            wording_version="food-bank-2026-1",
            wording_text="Riverside Food Bank may share my contact details with the trust to plan deliveries.",
        )
        recorded = record_consent(
            instance.ledger, instance.vault, draft, organisation=DEMO_PARTNER, actor=DEMO_ACTOR, now=now
        )
        subject, consent, decision_id = recorded.subject, recorded.consent, None
        withdraw_consent(
            instance.ledger,
            consent=consent,
            by="subject",
            requester=subject,
            actor=subject,
            reason="I no longer use the food bank.",
            now=now,
        )
    confirmed = confirm_deletion(
        instance.ledger,
        organisation=DEMO_PARTNER,
        subject=subject,
        consent=consent,
        decision_id=decision_id,
        deleted_at=now,
        actor=DEMO_ACTOR,
        now=now + timedelta(seconds=1),
    )
    credentials["webhooks"] = {
        "organisation": DEMO_PARTNER,
        "subscription": subscription.id,
        "url": DEMO_ENDPOINT,
        "verify_with_public_key": webhook_signer(instance.data_dir).public_key,
        "confirmed_deletion": {"subject": subject, "consent": consent, "seq": confirmed.seq},
    }
