"""Recording, withdrawing and erasing consent on the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from api.instance import Instance
from consent import access_codes, service
from consent.status import Status, covers
from consent.vocabulary import Vocabulary
from ledger.db import Database, sqlite_url
from ledger.errors import ConflictError, ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from ledger.export import verify_live
from ledger.projection import diff_tables, rebuild
from migrations import upgrade
from tests.consent.support import ORG, OTHER_ORG, record

USE: dict[str, Any] = {
    "purpose": "research.health",
    "categories": ["housing"],
    "recipient": "org_uni",
    "operation": "aggregate",
}


def _views(instance: Instance, subject: str, at: datetime):
    with instance.db.engine.connect() as conn:
        return service.consents_for_subjects(conn, [subject], at=at)[subject]


def test_record_a_consent_for_a_new_person(instance):
    """A new person gets an opaque subject; their details go to the vault, never to the ledger."""
    recorded = record(instance)
    assert recorded.subject.startswith("sub_")
    assert recorded.consent.startswith("con_")
    entry = recorded.entry
    assert entry.kind == "consent.granted"
    assert entry.payload["organisation"] == ORG
    assert entry.payload["vocabulary"] == Vocabulary.default().hash
    assert b"Amira" not in entry.body
    assert b"amira@example.org" not in entry.body
    with instance.db.engine.connect() as conn:
        assert instance.vault.read(conn, recorded.subject) == {"name": "Amira Khan", "contact": "amira@example.org"}
    [view] = _views(instance, recorded.subject, datetime.now(UTC))
    assert view.status(datetime.now(UTC)) is Status.ACTIVE


def test_the_default_vocabulary_is_adopted_on_the_ledger_once(instance):
    """The first consent records the vocabulary in force as a trust.configured entry, only once."""
    record(instance)
    record(instance)
    kinds = [e.kind for e, _ in instance.ledger.entries(0, 100)]
    configured = [
        e for e, _ in instance.ledger.entries(0, 100) if e.kind == "trust.configured" and "vocabulary" in e.payload
    ]
    assert len(configured) == 1
    assert configured[0].payload["vocabulary_hash"] == Vocabulary.default().hash
    assert kinds.count("consent.granted") == 2


def test_a_further_consent_for_a_known_subject(instance):
    """A known subject can give another consent; an unknown one is refused."""
    first = record(instance)
    second = record(instance, subject=first.subject, purposes=["statistics"])
    assert second.subject == first.subject
    with pytest.raises(ValidationError, match="knows no subject"):
        record(instance, subject="sub_nobodyatall000000000")


def test_the_same_consent_id_twice_is_a_conflict(instance):
    """A client-chosen consent id can be recorded only once."""
    record(instance, consent="con_mine-1")
    with pytest.raises(ConflictError, match="already recorded"):
        record(instance, consent="con_mine-1")


def test_special_categories_need_explicit_consent(instance):
    """Recording a special category without explicit consent is refused."""
    with pytest.raises(ValidationError, match="special category"):
        record(instance, categories=["health.mental"])
    assert record(instance, categories=["health.mental"], explicit=True).entry.payload["explicit"] is True


def test_unknown_codes_are_refused_with_closest_matches(instance):
    """An unknown purpose is a 422-class error naming the code and the closest known codes."""
    with pytest.raises(ValidationError, match="did you mean 'research'") as caught:
        record(instance, purposes=["reserch"])
    errors: Any = caught.value.extensions["errors"]
    assert errors[0]["code"] == "reserch"


def test_withdrawal_is_seen_one_microsecond_later(instance):
    """A check one microsecond after a withdrawal is recorded treats the consent as withdrawn."""
    with freeze_time("2026-11-26 10:00:00", tz_offset=0) as frozen:
        granted = record(instance, now=datetime.now(UTC))
        frozen.tick(timedelta(seconds=5))
        before = datetime.now(UTC)
        [view] = _views(instance, granted.subject, before)
        assert covers(view, at=before, **USE)
        withdrawn = service.withdraw_consent(
            instance.ledger,
            consent=granted.consent,
            by="subject",
            requester=granted.subject,
            actor=granted.subject,
            now=datetime.now(UTC),
        )
        frozen.tick(timedelta(microseconds=1))
        check_at = datetime.now(UTC)
        [view] = _views(instance, granted.subject, check_at)
        result = covers(view, at=check_at, **USE)
    assert not result
    assert "withdrawn by the person" in result.reason
    assert view.withdrawal is not None
    assert view.withdrawal.seq == withdrawn.seq


def test_withdrawal_is_idempotent(instance):
    """A second withdrawal returns the first one and appends nothing."""
    granted = record(instance)
    first = service.withdraw_consent(
        instance.ledger,
        consent=granted.consent,
        by="subject",
        requester=granted.subject,
        actor="x",
        now=datetime.now(UTC),
    )
    size = instance.ledger.size()
    again = service.withdraw_consent(
        instance.ledger,
        consent=granted.consent,
        by="subject",
        requester=granted.subject,
        actor="x",
        now=datetime.now(UTC),
    )
    assert first.is_new
    assert not again.is_new
    assert (again.seq, again.at) == (first.seq, first.at)
    assert instance.ledger.size() == size


@pytest.mark.parametrize(
    ("by", "requester"),
    [
        ("organisation", OTHER_ORG),  # another partner cannot act for the person
        ("subject", "sub_someoneelse0000000000"),  # another person cannot withdraw it
    ],
)
def test_only_the_person_or_the_collecting_organisation_may_withdraw(instance, by, requester):
    """Someone else's consent is "not found", exactly like one that does not exist."""
    granted = record(instance)
    with pytest.raises(NotFoundError) as theirs:
        service.withdraw_consent(
            instance.ledger, consent=granted.consent, by=by, requester=requester, actor="x", now=datetime.now(UTC)
        )
    with pytest.raises(NotFoundError) as missing:
        service.withdraw_consent(
            instance.ledger, consent="con_doesnotexist", by=by, requester=requester, actor="x", now=datetime.now(UTC)
        )
    assert theirs.value.detail.replace(granted.consent, "X") == missing.value.detail.replace("con_doesnotexist", "X")


def test_withdrawal_on_behalf_is_recorded_as_such(instance):
    """The collecting organisation's withdrawal says by: organisation; the trust's is a revocation."""
    a, b = record(instance), record(instance)
    on_behalf = service.withdraw_consent(
        instance.ledger, consent=a.consent, by="organisation", requester=ORG, actor="client_x", now=datetime.now(UTC)
    )
    revoked = service.withdraw_consent(
        instance.ledger, consent=b.consent, by="trust", requester=None, actor="trust", now=datetime.now(UTC)
    )
    assert instance.ledger.get(on_behalf.seq).payload["by"] == "organisation"
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert _views(instance, b.subject, later)[0].status(later) is Status.REVOKED
    assert instance.ledger.get(revoked.seq).payload == {
        "consent": b.consent,
        "subject": b.subject,
        "by": "trust",
        "reason": "",
    }


def test_erasure(instance):
    """After erasure nothing readable is left, consents are inactive, the code fails and the ledger verifies."""
    granted = record(instance)
    other = record(instance, subject=granted.subject, purposes=["statistics"])
    result = service.erase_subject(
        instance.ledger,
        instance.vault,
        subject=granted.subject,
        by="subject",
        actor=granted.subject,
        now=datetime.now(UTC),
    )
    assert result.is_new
    with instance.db.engine.connect() as conn:
        assert not instance.vault.has_key(conn, granted.subject)
        with pytest.raises(NotFoundError):
            instance.vault.read(conn, granted.subject)
        for code in (granted.access_code, other.access_code):
            with pytest.raises(ForbiddenError) as erased:
                access_codes.redeem_access_code(conn, code, now=datetime.now(UTC))
            with pytest.raises(ForbiddenError) as unknown:
                access_codes.redeem_access_code(conn, access_codes.new_code(), now=datetime.now(UTC))
            assert erased.value.detail == unknown.value.detail
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert {v.status(later) for v in _views(instance, granted.subject, later)} == {Status.WITHDRAWN}
    instance.ledger.sign_checkpoint()
    with instance.db.engine.connect() as conn:
        report = verify_live(conn, [instance.ledger.signer.verifier], origin=instance.origin)
    assert report.entries == instance.ledger.size()
    again = service.erase_subject(
        instance.ledger, instance.vault, subject=granted.subject, by="subject", actor="x", now=datetime.now(UTC)
    )
    assert not again.is_new
    assert again.seq == result.seq
    with pytest.raises(InvalidStateError, match="erased"):
        record(instance, subject=granted.subject)


def test_consents_for_subjects_answers_for_every_subject_asked(instance):
    """Every subject asked about is a key, with [] when the trust holds nothing for it."""
    a = record(instance)
    found = _views_many(instance, [a.subject, "sub_unknown00000000000000"])
    assert [v.consent for v in found[a.subject]] == [a.consent]
    assert found["sub_unknown00000000000000"] == []


def _views_many(instance, subjects):
    with instance.db.engine.connect() as conn:
        return service.consents_for_subjects(conn, subjects, at=datetime.now(UTC))


def test_consents_for_subjects_as_of_a_ledger_prefix(instance):
    """Asked as of an earlier entry, later withdrawals are not seen (decisions replay from a prefix)."""
    granted = record(instance)
    withdrawal = service.withdraw_consent(
        instance.ledger,
        consent=granted.consent,
        by="subject",
        requester=granted.subject,
        actor="x",
        now=datetime.now(UTC),
    )
    later = datetime.now(UTC) + timedelta(seconds=1)
    with instance.db.engine.connect() as conn:
        then = service.consents_for_subjects(conn, [granted.subject], at=later, as_of_seq=withdrawal.seq - 1)
        now = service.consents_for_subjects(conn, [granted.subject], at=later)
    assert then[granted.subject][0].status(later) is Status.ACTIVE
    assert now[granted.subject][0].status(later) is Status.WITHDRAWN


def test_a_newer_consent_supersedes_on_the_ledger(instance):
    """A newer consent from the same subject covering the same scope makes the older one superseded."""
    old = record(instance, purposes=["research.health"], categories=["housing"])
    new = record(instance, subject=old.subject, purposes=["research"], categories=["housing", "contact"])
    later = datetime.now(UTC) + timedelta(seconds=1)
    views = {v.consent: v for v in _views(instance, old.subject, later)}
    assert views[old.consent].status(later) is Status.SUPERSEDED
    assert views[new.consent].status(later) is Status.ACTIVE
    assert views[new.consent].supersedes == (old.consent,)


def test_adopting_a_vocabulary(instance):
    """A newly adopted vocabulary is in force: its codes are accepted and the consent records its hash."""
    document = Vocabulary.default().to_document()
    document["version"] = "2027-01"
    document["purposes"]["research.climate"] = {"label": "Climate research", "description": "Weather and homes."}
    vocabulary = Vocabulary.from_document(document)
    service.adopt_vocabulary(instance.ledger, vocabulary, now=datetime.now(UTC))
    recorded = record(instance, purposes=["research.climate"])
    assert recorded.entry.payload["vocabulary"] == vocabulary.hash
    with instance.db.engine.connect() as conn:
        seq, in_force = service.vocabulary_in_force(conn)
    assert seq is not None
    assert in_force.version == "2027-01"


def test_replay_rebuilds_identical_projections(instance):
    """After grants, withdrawals, supersession and an erasure, a replay of the ledger matches the live tables."""
    a = record(instance)
    b = record(instance, organisation=OTHER_ORG, purposes=["statistics.aggregate"], operations=["aggregate"])
    record(instance, subject=a.subject, purposes=["research"], categories=["housing", "contact"])
    service.withdraw_consent(
        instance.ledger, consent=b.consent, by="organisation", requester=OTHER_ORG, actor="c", now=datetime.now(UTC)
    )
    service.withdraw_consent(
        instance.ledger, consent=b.consent, by="subject", requester=b.subject, actor="c", now=datetime.now(UTC)
    )
    service.erase_subject(
        instance.ledger, instance.vault, subject=a.subject, by="trust", actor="trust", now=datetime.now(UTC)
    )
    registry = instance.ledger.projectors
    assert {"consent_grants", "consent_withdrawals", "consent_erasures", "consent_vocabularies"} <= set(registry.tables)
    with tempfile.TemporaryDirectory() as scratch:
        url = sqlite_url(Path(scratch))
        upgrade(url)
        target = Database.from_url(url)
        try:
            with instance.db.engine.connect() as live, target.write_engine.begin() as conn:
                rebuild(live, conn, registry)
            with instance.db.engine.connect() as live, target.engine.connect() as conn:
                differences = diff_tables(live, conn, registry.tables)
        finally:
            target.dispose()
    assert differences == []
