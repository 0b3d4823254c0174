"""The outbox: which ledger entries become which messages, for whom, in the entry's own transaction."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from api.instance import Instance
from consent.service import erase_subject, withdraw_consent
from ledger.db import Database, sqlite_url
from ledger.errors import NotFoundError, ValidationError
from ledger.projection import diff_tables, rebuild
from ledger.sequencer import AppendSpec
from migrations import upgrade
from tests.webhooks.helpers import grant, now, permit, subscribe
from trust import agreements, organisations, requests, webhooks
from trust.webhook_deliveries import Delivery, get_delivery, list_deliveries
from trust.webhook_models import messages_table


def _messages(instance: Instance, organisation: str | None = None) -> list[Delivery]:
    return list_deliveries(instance.db, organisation=organisation, limit=200)


def _payload(instance: Instance, delivery: Delivery) -> dict[str, Any]:
    detail = get_delivery(instance.db, delivery.id, organisation=None)
    assert detail.payload is not None
    return detail.payload


def test_withdrawal_reaches_recipients_under_a_permit_and_the_collector(instance: Instance) -> None:
    """consent.withdrawn goes to partners a permit gave the subject to and to the collector; nobody else."""
    consent = grant(instance, "org_collector")
    other = grant(instance, "org_collector")
    got = permit(instance, "org_partner", [consent.subject])
    permit(instance, "org_denied", [consent.subject], decision="deny")
    permit(instance, "org_excluded", [other.subject], excluded=(consent.subject,))
    permit(instance, "org_unrelated", [other.subject])
    for org in ("org_collector", "org_partner", "org_denied", "org_excluded", "org_unrelated"):
        subscribe(instance, org)
    entry_seq = withdraw_consent(
        instance.ledger,
        consent=consent.consent,
        by="subject",
        requester=consent.subject,
        actor=consent.subject,
        now=now(),
    ).seq

    messages = {m.organisation: m for m in _messages(instance)}
    assert set(messages) == {"org_collector", "org_partner"}
    partner = _payload(instance, messages["org_partner"])
    assert partner["type"] == "consent.withdrawn"
    assert partner["data"]["entry"]["seq"] == entry_seq
    assert partner["data"]["relation"] == ["recipient"]
    assert partner["data"]["decision_ids"] == [got.seq]
    assert partner["data"]["subject"] == consent.subject
    assert _payload(instance, messages["org_collector"])["data"]["relation"] == ["collector"]
    assert messages["org_partner"].id == webhooks.message_id(entry_seq, messages["org_partner"].subscription)


def test_message_commits_with_its_entry_or_not_at_all(instance: Instance) -> None:
    """If the unit holding the withdrawal fails after the outbox projector ran, neither entry nor message remains."""
    consent = grant(instance, "org_collector")
    subscribe(instance, "org_collector")
    size = instance.ledger.size()

    def refuse(_conn: Connection) -> dict[str, Any]:
        msg = "refused after the withdrawal was projected"
        raise ValidationError(msg)

    payload = {"consent": consent.consent, "subject": consent.subject, "by": "subject", "reason": ""}
    with pytest.raises(ValidationError, match="refused after"):
        instance.ledger.append_all(
            [
                AppendSpec("consent.withdrawn", consent.subject, now(), payload=payload),
                AppendSpec("deletion.confirmed", "client_x", now(), prepare=refuse),
            ]
        )
    assert instance.ledger.size() == size
    with instance.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages_table)).scalar_one() == 0


def test_subscriptions_receive_only_their_event_types_and_only_while_active(instance: Instance) -> None:
    """An endpoint not subscribed to consent.withdrawn, or paused, gets no message for it."""
    consent = grant(instance, "org_collector")
    permit(instance, "org_partner", [consent.subject])
    subscribe(instance, "org_partner", event_types=["request.revoked"])
    paused = subscribe(instance, "org_collector")
    webhooks.update_subscription(instance.db, paused.id, organisation="org_collector", now=now(), is_active=False)
    withdraw_consent(instance.ledger, consent=consent.consent, by="trust", requester=None, actor="trust", now=now())
    assert _messages(instance) == []


def test_erasure_reaches_every_organisation_that_holds_the_subject(instance: Instance) -> None:
    """subject.erased goes to collectors of any of the subject's consents and to permitted recipients."""
    first = grant(instance, "org_collector")
    grant(instance, "org_second_collector", subject=first.subject)
    permit(instance, "org_partner", [first.subject])
    for org in ("org_collector", "org_second_collector", "org_partner", "org_other"):
        subscribe(instance, org, event_types=["subject.erased"])
    erase_subject(instance.ledger, instance.vault, subject=first.subject, by="subject", actor=first.subject, now=now())
    messages = _messages(instance)
    assert {m.organisation for m in messages} == {"org_collector", "org_second_collector", "org_partner"}
    assert {m.event_type for m in messages} == {"subject.erased"}


def test_governance_events_reach_the_organisation_concerned(instance: Instance) -> None:
    """request.decided, request.revoked, agreement.terminated and org.suspended go to that organisation only."""
    start = now()
    for org in ("org_food_bank", "org_bystander"):
        organisations.register_organisation(
            instance.ledger, org_id=org, name=org, kind="charity", actor="admin", now=start
        )
        subscribe(instance, org)
    draft = requests.RequestDraft(
        title="Repeat visits this winter",
        purpose="statistics.aggregate",
        categories=["service_use"],
        operation="aggregate",
        duration_days=90,
        lay_summary="Count families who needed help more than once.",
        public_benefit="Better stocked shelves.",
        five_safes={"people": "p", "projects": "p", "settings": "s", "data": "d", "outputs": "o"},
        proportionality={"necessity": "n", "minimisation": "m", "alternatives": "a"},
        cohort="Households visiting this winter",
        cohort_size=240,
    )
    submitted = requests.submit_request(
        instance.ledger, organisation="org_food_bank", draft=draft, actor="c", now=start
    )
    request_id = submitted.payload["request"]
    requests.decide_request(instance.ledger, request_id=request_id, now=start + timedelta(days=90))
    instance.ledger.append("request.revoked", {"request": request_id, "reason": "misuse"}, actor="admin", now=now())
    terms = agreements.Terms(
        organisation="org_food_bank",
        title="Service evaluation",
        purposes=("statistics.aggregate",),
        categories=("service_use",),
        operations=("aggregate",),
        retention_days=365,
        geography=("GB",),
        valid_from=start,
        valid_until=start + timedelta(days=365),
    )
    proposed = agreements.propose_agreement(instance.ledger, terms=terms, actor="admin", now=start)
    agreements.terminate_agreement(
        instance.ledger, agreement_id=proposed.payload["agreement"], reason="ended early", actor="admin", now=now()
    )
    organisations.suspend_organisation(
        instance.ledger, org_id="org_food_bank", reason="breach", actor="admin", now=now()
    )

    messages = _messages(instance)
    assert {m.organisation for m in messages} == {"org_food_bank"}
    kinds = {m.event_type: _payload(instance, m)["data"] for m in messages}
    assert set(kinds) == {"request.decided", "request.revoked", "agreement.terminated", "organisation.suspended"}
    assert kinds["request.revoked"]["reason"] == "misuse"
    assert kinds["agreement.terminated"]["agreement"] == proposed.payload["agreement"]
    assert kinds["organisation.suspended"]["reason"] == "breach"


def test_replay_queues_events_again_with_their_ids(instance: Instance) -> None:
    """A replay sends past events (even from before the subscription) with the same webhook-id as before."""
    consents = [grant(instance, "org_collector") for _ in range(3)]
    withdrawn = [
        withdraw_consent(
            instance.ledger, consent=c.consent, by="subject", requester=c.subject, actor=c.subject, now=now()
        )
        for c in consents
    ]
    subscription = subscribe(instance, "org_collector", event_types=["consent.withdrawn"])
    assert _messages(instance) == []

    first = webhooks.replay_events(instance.db, organisation="org_collector", since=withdrawn[1].seq, now=now())
    assert (first.requeued, first.next_since) == (2, None)
    ids = {m.id for m in _messages(instance)}
    assert ids == {webhooks.message_id(w.seq, subscription.id) for w in withdrawn[1:]}

    paged = webhooks.replay_events(instance.db, organisation="org_collector", since=0, now=now(), limit=1)
    assert paged.next_since == withdrawn[0].seq + 1
    assert webhooks.replay_events(instance.db, organisation="org_collector", since=0, now=now()).requeued == 3
    assert {m.id for m in _messages(instance)} == ids | {webhooks.message_id(withdrawn[0].seq, subscription.id)}
    assert {m.status for m in _messages(instance)} == {"pending"}


def test_replay_needs_an_active_subscription(instance: Instance) -> None:
    """Replaying for an organisation without endpoints is refused with a clear message."""
    with pytest.raises(ValidationError, match="no active webhook subscription"):
        webhooks.replay_events(instance.db, organisation="org_nobody", since=0, now=now())


def test_deletion_confirmation_is_recorded_once_and_shown_for_the_subject(instance: Instance) -> None:
    """A partner that received the subject confirms deletion; a repeat returns the same record."""
    organisations.register_organisation(
        instance.ledger, org_id="org_partner", name="Riverside Food Bank", kind="charity", actor="admin", now=now()
    )
    consent = grant(instance, "org_collector")
    decision = permit(instance, "org_partner", [consent.subject])
    deleted_at = now() - timedelta(minutes=5)
    first = webhooks.confirm_deletion(
        instance.ledger,
        organisation="org_partner",
        subject=consent.subject,
        consent=consent.consent,
        decision_id=decision.seq,
        deleted_at=deleted_at,
        actor="client_partner",
        now=now(),
    )
    size = instance.ledger.size()
    again = webhooks.confirm_deletion(
        instance.ledger,
        organisation="org_partner",
        subject=consent.subject,
        consent=consent.consent,
        decision_id=decision.seq,
        deleted_at=now(),
        actor="client_partner",
        now=now(),
    )
    assert (first.is_new, again.is_new, again.seq, instance.ledger.size()) == (True, False, first.seq, size)
    entry = instance.ledger.get(first.seq)
    assert entry.kind == "deletion.confirmed"
    assert set(entry.payload) == {"organisation", "subject", "consent", "decision_id", "deleted_at"}
    with instance.db.engine.connect() as conn:
        shown = webhooks.deletions_for_subject(conn, consent.subject)
    assert [(d.organisation_name, d.deleted_at[:10]) for d in shown] == [
        ("Riverside Food Bank", deleted_at.isoformat()[:10])
    ]


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("never_received", NotFoundError),  # no permit and no consent collected: nothing to delete
        ("other_decision", NotFoundError),  # a decision of another organisation
        ("future", ValidationError),  # deleted_at after now
    ],
)
def test_deletion_confirmation_is_refused_when_it_cannot_be_true(instance: Instance, case: str, error: type) -> None:
    """Confirmations for a subject the partner never held, someone else's decision, or the future are refused."""
    consent = grant(instance, "org_collector")
    theirs = permit(instance, "org_someone_else", [consent.subject])
    organisation = "org_partner" if case == "never_received" else "org_collector"
    with pytest.raises(error):
        webhooks.confirm_deletion(
            instance.ledger,
            organisation=organisation,
            subject=consent.subject,
            consent=None,
            decision_id=theirs.seq if case == "other_decision" else None,
            deleted_at=now() + timedelta(hours=1) if case == "future" else now(),
            actor="client_x",
            now=now(),
        )


def test_replay_of_the_ledger_rebuilds_deletions_and_skips_the_outbox(instance: Instance) -> None:
    """`ledger replay` compares deletion_confirmations with a rebuild and leaves the outbox (not a projection) out."""
    consent = grant(instance, "org_collector")
    subscribe(instance, "org_collector")
    withdraw_consent(
        instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
    )
    webhooks.confirm_deletion(
        instance.ledger,
        organisation="org_collector",
        subject=consent.subject,
        consent=consent.consent,
        decision_id=None,
        deleted_at=now(),
        actor="client_c",
        now=now(),
    )
    registry = instance.ledger.projectors
    assert "deletion_confirmations" in registry.tables
    assert not {"webhook_messages", "webhook_subscriptions", "webhook_attempts"} & set(registry.tables)
    with tempfile.TemporaryDirectory() as scratch:
        url = sqlite_url(Path(scratch))
        upgrade(url)
        target = Database.from_url(url)
        try:
            with instance.db.engine.connect() as live, target.write_engine.begin() as conn:
                rebuild(live, conn, registry)
            with instance.db.engine.connect() as live, target.engine.connect() as conn:
                assert diff_tables(live, conn, registry.tables) == []
                assert conn.execute(select(func.count()).select_from(messages_table)).scalar_one() == 0
        finally:
            target.dispose()
