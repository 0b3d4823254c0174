"""Consents in plain words, for the person they belong to (British English, no codes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from consent.schemas import ConsentOut, TermOut, VocabularyOut, WithdrawalOut
from consent.status import ConsentView, Status
from consent.vocabulary import Kind, Vocabulary
from ledger.entry import parse_at

OPERATION_WORDS = {
    "aggregate": "only as counts and totals about groups of people",
    "pseudonymised": "with your name and contact details replaced by a code",
    "identifiable": "in a form that identifies you",
}
STATUS_WORDS = {
    Status.ACTIVE: "in force",
    Status.PENDING: "not started yet",
    Status.WITHDRAWN: "withdrawn",
    Status.REVOKED: "ended by the trust",
    Status.EXPIRED: "expired",
    Status.SUPERSEDED: "replaced by a newer consent",
}
Namer = Callable[[str], str]


def long_date(text: str) -> str:
    """``2026-03-01T…Z`` -> ``1 March 2026``."""
    moment = parse_at(text)
    return f"{moment.day} {moment:%B %Y}"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _terms(vocabulary: Vocabulary, kind: Kind, codes: tuple[str, ...]) -> list[str]:
    return [vocabulary.label(kind, c).lower() if kind == "categories" else vocabulary.label(kind, c) for c in codes]


def summary(view: ConsentView, *, at: datetime, name_of: Namer = str) -> str:
    """One paragraph saying what the person agreed to, with whom, for how long, and its status now."""
    vocabulary = view.vocabulary
    purposes = _join([p.lower() for p in _terms(vocabulary, "purposes", view.purposes)])
    categories = _join(_terms(vocabulary, "categories", view.categories))
    recipients = (
        "any organisation the trust approves"
        if view.recipients is None
        else _join([name_of(r) for r in view.recipients])
    )
    how = "" if view.operations is None else " " + _join([OPERATION_WORDS[o] for o in view.operations])
    until = f" until {long_date(view.valid_until)}" if view.valid_until else ", with no end date"
    given = "Someone with authority to act for you agreed" if view.on_behalf else "You agreed"
    info = view.state(at)
    return (
        f"{given}, through {name_of(view.organisation)}, that information about your {categories} may be used "
        f"for {purposes} and shared with {recipients}{how}, from {long_date(view.valid_from)}{until}. "
        f"This consent is {STATUS_WORDS[info.status]}."
    )


def consent_out(view: ConsentView, *, at: datetime, name_of: Namer = str) -> ConsentOut:
    """The API form of a consent, with its status at *at* and a plain-language summary."""
    info = view.state(at)
    vocabulary = view.vocabulary
    withdrawal = None
    if info.status in (Status.WITHDRAWN, Status.REVOKED) and info.seq is not None and info.since is not None:
        ending = view.withdrawal if view.withdrawal is not None and view.withdrawal.seq == info.seq else view.erasure
        by, reason = (ending.by, ending.reason) if ending is not None else ("subject", "")
        if ending is view.erasure:
            reason = "the person's data was erased"
        withdrawal = WithdrawalOut(seq=info.seq, at=info.since, by=by, reason=reason)
    return ConsentOut(
        consent=view.consent,
        subject=view.subject,
        organisation=view.organisation,
        status=info.status.value,
        status_reason=info.reason,
        dpv_status=view.dpv(at),
        summary=summary(view, at=at, name_of=name_of),
        purposes=[_term(vocabulary, "purposes", c) for c in view.purposes],
        categories=[_term(vocabulary, "categories", c) for c in view.categories],
        recipients=None if view.recipients is None else list(view.recipients),
        operations=None if view.operations is None else list(view.operations),
        valid_from=view.valid_from,
        valid_until=view.valid_until,
        explicit=view.explicit,
        on_behalf=view.on_behalf,
        wording_version=view.wording_version,
        wording_hash=view.wording_hash,
        seq=view.seq,
        granted_at=view.granted_at,
        withdrawal=withdrawal,
        superseded_by=None if view.superseded_by is None else view.superseded_by.consent,
    )


def _term(vocabulary: Vocabulary, kind: Kind, code: str) -> TermOut:
    term = vocabulary.terms(kind).get(code)
    if term is None:
        return TermOut(code=code, label=code)
    return TermOut(code=code, label=term.label, description=term.description, special=term.special)


def vocabulary_out(vocabulary: Vocabulary, *, adopted_seq: int | None) -> VocabularyOut:
    """The API form of a vocabulary."""
    return VocabularyOut(
        version=vocabulary.version,
        hash=vocabulary.hash,
        adopted_seq=adopted_seq,
        purposes=[_term(vocabulary, "purposes", c) for c in sorted(vocabulary.purposes)],
        categories=[_term(vocabulary, "categories", c) for c in sorted(vocabulary.categories)],
    )
