"""Recording, withdrawing and erasing consent, on the ledger; and the fast read the rules engine uses.

Ledger payloads (every field is written by this module; nothing identifying is in clear):

``consent.granted`` ::

    {"consent": "con_…",            the consent id (the caller's own, or chosen by the trust)
     "subject": "sub_…",            the person, as an opaque reference issued by the trust
     "organisation": "org_…",       the collecting partner (from the caller's token, never the body)
     "purposes": ["research", …],   vocabulary codes, without duplicates, in the order given
     "categories": ["housing", …],  vocabulary codes
     "recipients": ["org_…"] | null,        null: any recipient the trust approves
     "operations": ["aggregate", …] | null, null: every operation
     "valid_from": "2026-…Z",       start (format_at), inclusive
     "valid_until": "2027-…Z" | null,       end, exclusive; null: no end
     "explicit": true | false,      explicit consent (required when a category is special)
     "wording_hash": "<hex>",       SHA-256 of the exact consent text the person saw
     "wording_version": "v3",       the version of that wording
     "vocabulary": "<hex>",         hash of the vocabulary in force (see consent/vocabulary.py)
     "on_behalf": true | false}     given by someone with authority to act for the person

``consent.withdrawn`` :: ``{"consent", "subject", "by": "subject" | "organisation" | "trust", "reason"}``
(``by == "trust"`` makes the status ``revoked``).

``subject.erased`` :: ``{"subject", "by": "subject" | "organisation" | "trust"}``.

``trust.configured`` (vocabulary adoption) :: ``{"vocabulary": <document>, "vocabulary_hash": "<hex>"}``.

Every write validates inside the ledger writer's transaction (``prepare``), so two
concurrent calls can never both record the same consent id, withdraw twice or
erase twice; the vault and the access codes change in that same transaction.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection

from consent import access_codes, repository
from consent.schemas import ConsentIn
from consent.status import OPERATIONS, ConsentView, Ending, covers, link_supersession
from consent.vocabulary import Vocabulary
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, InvalidStateError, NotFoundError, ValidationError
from ledger.service import Ledger
from ledger.vault import Vault

__all__ = [
    "RecordedConsent",
    "WithdrawalResult",
    "adopt_vocabulary",
    "consent_for_subject",
    "consents_for_subjects",
    "covers",
    "erase_subject",
    "record_consent",
    "vocabulary_in_force",
    "withdraw_consent",
]

TRUST_ACTOR = "trust"
By = Literal["subject", "organisation", "trust"]


def _random_id(prefix: str, random: bytes | None = None) -> str:
    return prefix + (random or secrets.token_bytes(15)).hex()  # 120 bits, 30 hex digits


def new_consent_id() -> str:
    """A fresh ``con_…`` id."""
    return _random_id("con_")


def new_subject_id(random: bytes | None = None) -> str:
    """A fresh ``sub_…`` reference (opaque: it says nothing about the person); *random*: 15 bytes from ``secrets``."""
    return _random_id("sub_", random)


# -- vocabulary -----------------------------------------------------------------------------


def vocabulary_in_force(conn: Connection, *, as_of_seq: int | None = None) -> tuple[int | None, Vocabulary]:
    """``(adopting entry seq, vocabulary)``; the shipped default (seq None) until one is adopted."""
    found = repository.latest_vocabulary(conn, as_of_seq=as_of_seq)
    return (None, Vocabulary.default()) if found is None else found


def adopt_vocabulary(
    ledger: Ledger, vocabulary: Vocabulary, *, now: datetime, only_if_none: bool = False
) -> LedgerEntry:
    """Append ``trust.configured`` adopting *vocabulary* (with *only_if_none*, only if none was adopted yet)."""

    def prepare(conn: Connection) -> dict[str, Any]:
        if only_if_none and repository.latest_vocabulary(conn) is not None:
            msg = "a vocabulary has already been adopted"
            raise ConflictError(msg)
        return {"vocabulary": vocabulary.to_document(), "vocabulary_hash": vocabulary.hash}

    return ledger.append("trust.configured", actor=TRUST_ACTOR, now=now, prepare=prepare)


def ensure_vocabulary(ledger: Ledger, *, now: datetime) -> None:
    """Adopt the default vocabulary on the ledger if the trust has not adopted one yet."""
    with ledger.db.engine.connect() as conn:
        if repository.latest_vocabulary(conn) is not None:
            return
    try:
        adopt_vocabulary(ledger, Vocabulary.default(), now=now, only_if_none=True)
    except ConflictError:
        return  # another caller adopted one first


# -- granting -------------------------------------------------------------------------------


def wording_hash(draft: ConsentIn) -> str:
    """The SHA-256 of the wording the person saw (given, or computed from the text)."""
    if draft.wording_hash is not None:
        return draft.wording_hash
    return hashlib.sha256((draft.wording_text or "").encode()).hexdigest()


_TERMS: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...], list[str]]] = {}
_TERMS_LIMIT = 4096  # distinct combinations remembered (a bulk import repeats a few of them on every row)


_format_at = functools.lru_cache(maxsize=4096)(format_at)  # rows of an import share a few dates


def _checked_terms(
    vocabulary: Vocabulary, purposes: list[str], categories: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """``(purposes, categories, special categories)`` checked against *vocabulary*, remembered when valid."""
    key = (vocabulary.hash, tuple(purposes), tuple(categories))
    found = _TERMS.get(key)
    if found is None:
        checked = vocabulary.check("purposes", purposes), vocabulary.check("categories", categories)
        found = (tuple(checked[0]), tuple(checked[1]), vocabulary.special_among(checked[1]))
        if len(_TERMS) >= _TERMS_LIMIT:
            _TERMS.clear()
        _TERMS[key] = found
    return list(found[0]), list(found[1]), list(found[2])


def grant_payload(
    draft: ConsentIn, *, consent: str, subject: str, organisation: str, vocabulary: Vocabulary, now: datetime
) -> dict[str, Any]:
    """Check *draft* against *vocabulary* and build the ``consent.granted`` payload."""
    purposes, categories, special = _checked_terms(vocabulary, draft.purposes, draft.categories)
    if special and not draft.explicit:
        msg = (
            f"{', '.join(special)} {'is a special category' if len(special) == 1 else 'are special categories'}: "
            "record it only with explicit consent (set explicit to true)"
        )
        raise ValidationError(msg, errors=[{"field": "explicit", "message": msg}])
    valid_from = _format_at(draft.valid_from or now)
    valid_until = None if draft.valid_until is None else _format_at(draft.valid_until)
    if valid_until is not None and valid_until <= valid_from:
        msg = f"valid_until ({valid_until}) must be after valid_from ({valid_from})"
        raise ValidationError(msg, errors=[{"field": "valid_until", "message": msg}])
    return {
        "consent": consent,
        "subject": subject,
        "organisation": organisation,
        "purposes": purposes,
        "categories": categories,
        "recipients": None if draft.recipients is None else list(dict.fromkeys(draft.recipients)),
        "operations": None if draft.operations is None else [o for o in OPERATIONS if o in draft.operations],
        "valid_from": valid_from,
        "valid_until": valid_until,
        "explicit": draft.explicit,
        "wording_hash": wording_hash(draft),
        "wording_version": draft.wording_version,
        "vocabulary": vocabulary.hash,
        "on_behalf": draft.on_behalf,
    }


@dataclass(frozen=True, slots=True)
class RecordedConsent:
    """A consent just recorded, with the access code to hand to the person (shown once)."""

    entry: LedgerEntry
    consent: str
    subject: str
    access_code: str


def check_subject(conn: Connection, subject: str) -> None:
    """Raise unless the trust knows *subject* and has not erased it."""
    state = repository.subject_states(conn, [subject]).get(subject)
    if state is None:
        msg = f"the trust knows no subject {subject}: give the person's details instead to record someone new"
        raise ValidationError(msg, errors=[{"field": "subject", "message": msg}])
    if state:
        msg = f"subject {subject} was erased at their request; a new consent needs a new subject"
        raise InvalidStateError(msg)


def record_consent(
    ledger: Ledger, vault: Vault, draft: ConsentIn, *, organisation: str, actor: str, now: datetime
) -> RecordedConsent:
    """Record a consent collected by *organisation*; a new person gets a new subject in the vault."""
    consent = draft.consent or new_consent_id()
    subject = draft.subject or new_subject_id()
    code = access_codes.new_code()
    ensure_vocabulary(ledger, now=now)

    def prepare(conn: Connection) -> dict[str, Any]:
        _seq, vocabulary = vocabulary_in_force(conn)
        payload = grant_payload(
            draft, consent=consent, subject=subject, organisation=organisation, vocabulary=vocabulary, now=now
        )
        if repository.grant(conn, consent) is not None:
            msg = f"consent {consent} is already recorded"
            raise ConflictError(msg)
        if draft.person is not None:
            vault.store(conn, subject, {"name": draft.person.name, "contact": draft.person.contact}, now=format_at(now))
        else:
            check_subject(conn, subject)
        access_codes.store_codes(conn, [(code, subject, consent)], now=now)
        return payload

    entry = ledger.append("consent.granted", actor=actor, now=now, prepare=prepare, checkpoint=True)
    return RecordedConsent(entry, consent, subject, code)


# -- withdrawing and erasing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WithdrawalResult:
    """A withdrawal (new, or the one already recorded)."""

    consent: str
    subject: str
    seq: int
    at: str
    by: str
    reason: str
    is_new: bool


class _AlreadyDoneError(ConflictError):
    """Raised inside ``prepare`` so that nothing is appended; carries the existing row."""

    def __init__(self, row: Any) -> None:
        super().__init__("already recorded")
        self.row = row


def _not_found(consent: str) -> NotFoundError:
    return NotFoundError(f"consent {consent} was not found")


def withdraw_consent(
    ledger: Ledger,
    *,
    consent: str,
    by: By,
    requester: str | None,
    actor: str,
    reason: str = "",
    now: datetime,
) -> WithdrawalResult:
    """Withdraw *consent*, effective from *now*; a second call returns the first withdrawal.

    *requester* is the subject (``by="subject"``) or the organisation
    (``by="organisation"``: only the collecting organisation may act on the person's
    behalf). A consent that is not theirs is "not found", exactly like one that does
    not exist. ``by="trust"`` revokes (the caller has authorised the trust's action).
    """

    def check(conn: Connection) -> Any:
        grant = repository.grant(conn, consent)
        if grant is None:
            raise _not_found(consent)
        if (by == "subject" and grant.subject != requester) or (
            by == "organisation" and grant.organisation != requester
        ):
            raise _not_found(consent)
        existing = repository.withdrawal(conn, consent)
        if existing is not None:
            raise _AlreadyDoneError(existing)
        if repository.erasure(conn, grant.subject) is not None:
            msg = f"consent {consent} ended when its subject was erased"
            raise InvalidStateError(msg)
        return grant

    def prepare(conn: Connection) -> dict[str, Any]:
        grant = check(conn)
        return {"consent": consent, "subject": grant.subject, "by": by, "reason": reason}

    try:
        with ledger.db.engine.connect() as conn:
            check(conn)  # answer repeats without a trip through the writer
        entry = ledger.append("consent.withdrawn", actor=actor, now=now, prepare=prepare)
    except _AlreadyDoneError as done:
        row = done.row
        return WithdrawalResult(consent, row.subject, int(row.seq), row.withdrawn_at, row.by, row.reason, is_new=False)
    p = entry.payload
    return WithdrawalResult(consent, p["subject"], entry.seq, entry.at, by, reason, is_new=True)


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """An erasure (new, or the one already recorded)."""

    subject: str
    seq: int
    at: str
    is_new: bool


def erase_subject(
    ledger: Ledger,
    vault: Vault,
    *,
    subject: str,
    by: By,
    actor: str,
    now: datetime,
    also: Callable[[Connection], object] | None = None,
) -> ErasureResult:
    """Crypto-shred *subject*: destroy their vault key and access codes and append ``subject.erased``.

    Once that has committed, the deleted key is also purged from the database
    files (:meth:`Vault.purge_deleted_keys`). From *now* every consent of the
    subject is inactive. *also* runs in the same transaction (the API ends the
    subject's sign-in sessions with it).
    """

    def prepare(conn: Connection) -> dict[str, Any]:
        if subject not in repository.subject_states(conn, [subject]):
            msg = f"subject {subject} was not found"
            raise NotFoundError(msg)
        existing = repository.erasure(conn, subject)
        if existing is not None:
            raise _AlreadyDoneError(existing)
        vault.destroy_key(conn, subject)
        access_codes.revoke_codes(conn, subject)
        if also is not None:
            also(conn)
        return {"subject": subject, "by": by}

    try:
        entry = ledger.append("subject.erased", actor=actor, now=now, prepare=prepare, checkpoint=True)
    except _AlreadyDoneError as done:
        return ErasureResult(subject, int(done.row.seq), done.row.erased_at, is_new=False)
    # Committed: now push the deleted key's bytes out of the write-ahead log (SQLite) or the table's dead
    # rows (PostgreSQL), so that no copy of the database files taken from now on holds them.
    vault.purge_deleted_keys(ledger.db.write_engine)
    return ErasureResult(subject, entry.seq, entry.at, is_new=True)


# -- reading --------------------------------------------------------------------------------


def _ending(row: Any, at_column: str) -> Ending:
    return Ending(int(row.seq), getattr(row, at_column), row.by, getattr(row, "reason", ""))


def consents_for_subjects(
    conn: Connection, subjects: Sequence[str], *, at: datetime, as_of_seq: int | None = None
) -> dict[str, list[ConsentView]]:
    """Every consent of each subject recorded by instant *at* (and entry *as_of_seq*), oldest first.

    Pure read of indexed projection rows: a few queries per 500 subjects, whatever
    the size of the ledger. Every subject asked about is a key (with ``[]`` when the
    trust holds no consent for it). Decide each view with :func:`consent.status.covers`.
    """
    until = format_at(at)
    unique = list(dict.fromkeys(subjects))
    _seq, vocabulary = vocabulary_in_force(conn, as_of_seq=as_of_seq)
    withdrawals = {str(r.consent): r for r in repository.withdrawals_of(conn, unique, as_of_seq=as_of_seq)}
    erasures = {str(r.subject): r for r in repository.erasures_of(conn, unique, as_of_seq=as_of_seq)}
    grouped: dict[str, list[ConsentView]] = defaultdict(list)
    for row in repository.grants_of(conn, unique, until=until, as_of_seq=as_of_seq):
        withdrawal = withdrawals.get(str(row.consent))
        erasure = erasures.get(str(row.subject))
        grouped[str(row.subject)].append(
            ConsentView(
                consent=row.consent,
                subject=row.subject,
                organisation=row.organisation,
                purposes=repository.decode_list(row.purposes) or (),
                categories=repository.decode_list(row.categories) or (),
                recipients=repository.decode_list(row.recipients),
                operations=repository.decode_list(row.operations),
                valid_from=row.valid_from,
                valid_until=row.valid_until,
                explicit=bool(row.explicit),
                seq=int(row.seq),
                granted_at=row.granted_at,
                wording_hash=row.wording_hash,
                wording_version=row.wording_version,
                vocabulary_hash=row.vocabulary,
                on_behalf=bool(row.on_behalf),
                withdrawal=None if withdrawal is None else _ending(withdrawal, "withdrawn_at"),
                erasure=None if erasure is None else _ending(erasure, "erased_at"),
                vocabulary=vocabulary,
            )
        )
    return {subject: link_supersession(grouped.get(subject, ())) for subject in unique}


def consent_for_subject(conn: Connection, consent: str, subject: str, *, at: datetime) -> ConsentView:
    """One consent of *subject*; "not found" also when it belongs to someone else."""
    for view in consents_for_subjects(conn, [subject], at=at)[subject]:
        if view.consent == consent:
            return view
    raise _not_found(consent)
