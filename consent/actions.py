"""Units of work the fronts call (HTTP routes, CLI, demo seed): one call each, answering with a schema.

Each function opens its own short read connection where it needs one and calls
the domain (``consent/service.py``, ``consent/receipts.py``); routes stay thin.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection

from consent import access_codes, service
from consent.receipts import build_receipt
from consent.schemas import (
    ConsentIn,
    ConsentOut,
    ConsentsOut,
    ErasureOut,
    ReceiptOut,
    RecordedOut,
    VocabularyOut,
    WithdrawalOut,
    WithdrawOut,
)
from consent.status import ConsentView
from consent.summaries import Namer, consent_out, vocabulary_out
from ledger.service import Ledger
from ledger.vault import Vault


def record(
    ledger: Ledger, vault: Vault, draft: ConsentIn, *, organisation: str, actor: str, now: datetime
) -> RecordedOut:
    """Record a consent and answer with its receipt (holding the access code, shown this once)."""
    recorded = service.record_consent(ledger, vault, draft, organisation=organisation, actor=actor, now=now)
    receipt = build_receipt(ledger, recorded.entry.seq, access_code=recorded.access_code)
    return RecordedOut(
        consent=recorded.consent,
        subject=recorded.subject,
        seq=recorded.entry.seq,
        status="active" if recorded.entry.payload["valid_from"] <= recorded.entry.at else "pending",
        receipt=ReceiptOut(**receipt),
    )


def withdraw(
    ledger: Ledger,
    *,
    consent: str,
    by: service.By,
    requester: str | None,
    actor: str,
    reason: str,
    now: datetime,
) -> WithdrawOut:
    """Withdraw a consent (idempotent) and answer with the withdrawal entry."""
    result = service.withdraw_consent(
        ledger, consent=consent, by=by, requester=requester, actor=actor, reason=reason, now=now
    )
    return WithdrawOut(
        consent=consent,
        status="revoked" if result.by == "trust" else "withdrawn",
        withdrawal=WithdrawalOut(seq=result.seq, at=result.at, by=result.by, reason=result.reason),
        already_withdrawn=not result.is_new,
    )


def erase(
    ledger: Ledger,
    vault: Vault,
    *,
    subject: str,
    by: service.By,
    actor: str,
    now: datetime,
    also: Callable[[Connection], object] | None = None,
) -> ErasureOut:
    """Erase a subject (idempotent)."""
    result = service.erase_subject(ledger, vault, subject=subject, by=by, actor=actor, now=now, also=also)
    return ErasureOut(subject=subject, seq=result.seq, at=result.at, already_erased=not result.is_new)


def consents_of(ledger: Ledger, subject: str, *, at: datetime, name_of: Namer = str) -> ConsentsOut:
    """Every consent of *subject*, newest first, with status and plain-language text."""
    with ledger.db.engine.connect() as conn:
        views = service.consents_for_subjects(conn, [subject], at=at)[subject]
    return ConsentsOut(subject=subject, consents=[consent_out(v, at=at, name_of=name_of) for v in reversed(views)])


def present(view: ConsentView, *, at: datetime, name_of: Namer = str) -> ConsentOut:
    """The API form of one consent at *at*, with plain-language text."""
    return consent_out(view, at=at, name_of=name_of)


def consent_of(ledger: Ledger, consent: str, subject: str, *, at: datetime) -> ConsentView:
    """One consent of *subject* (NotFoundError when it is someone else's or does not exist)."""
    with ledger.db.engine.connect() as conn:
        return service.consent_for_subject(conn, consent, subject, at=at)


def receipt_of(ledger: Ledger, consent: str, subject: str, *, at: datetime) -> tuple[ConsentView, ReceiptOut]:
    """The receipt of one of *subject*'s consents (without an access code: that is shown only once)."""
    view = consent_of(ledger, consent, subject, at=at)
    return view, ReceiptOut(**build_receipt(ledger, view.seq))


def vocabulary(ledger: Ledger) -> VocabularyOut:
    """The vocabulary in force."""
    with ledger.db.engine.connect() as conn:
        seq, vocab = service.vocabulary_in_force(conn)
    return vocabulary_out(vocab, adopted_seq=seq)


def redeem(ledger: Ledger, code: str, *, now: datetime) -> str:
    """The subject a receipt access code signs in as (ForbiddenError, same words, for every failure)."""
    with ledger.db.engine.connect() as conn:
        return access_codes.redeem_access_code(conn, code, now=now)
