"""Demo seed: the food bank's endpoint and one confirmed deletion; what a partner still owes."""

from __future__ import annotations

from api.instance import Instance
from api.seed_webhooks import DEMO_PARTNER, seed_webhooks
from consent.service import withdraw_consent
from tests.webhooks.helpers import grant, now, permit
from trust import webhooks
from trust.deletions import owed_deletions


def test_seed_subscribes_the_food_bank_and_confirms_a_deletion(instance: Instance) -> None:
    """On an empty trust the seed records a withdrawal itself, then the food bank's confirmation of it."""
    credentials: dict[str, object] = {}
    seed_webhooks(instance, credentials)
    (subscription,) = webhooks.list_subscriptions(instance.db, organisation=DEMO_PARTNER)
    assert subscription.url.startswith("http://127.0.0.1:")
    seeded = credentials["webhooks"]
    assert isinstance(seeded, dict)
    subject = seeded["confirmed_deletion"]["subject"]
    with instance.db.engine.connect() as conn:
        assert [d.organisation for d in webhooks.deletions_for_subject(conn, subject)] == [DEMO_PARTNER]
        assert owed_deletions(conn, DEMO_PARTNER) == []


def test_owed_deletions_list_what_the_partner_holds_until_confirmed(instance: Instance) -> None:
    """Withdrawn consents the partner collected or received are owed until it confirms deleting them."""
    collected = grant(instance, DEMO_PARTNER)
    received = grant(instance, "org_collector")
    decision = permit(instance, DEMO_PARTNER, [received.subject])
    untouched = grant(instance, "org_collector")
    for consent in (collected, received, untouched):
        withdraw_consent(
            instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
        )
    with instance.db.engine.connect() as conn:
        owed = owed_deletions(conn, DEMO_PARTNER)
    assert [(o.consent, o.decision_id) for o in owed] == [(collected.consent, None), (received.consent, decision.seq)]
    seed_webhooks(instance, {})  # confirms the oldest one owed
    with instance.db.engine.connect() as conn:
        assert [o.consent for o in owed_deletions(conn, DEMO_PARTNER)] == [received.consent]
