"""A consent as read back from the ledger, its status at an instant, and what it covers.

Status is never stored. It is derived from the consent's own entries and the
instant asked about, so it cannot drift from the ledger:

=============  ==========================================================  ==========================
status         when (checked in this order, at instant ``t``)              W3C DPV consent status
=============  ==========================================================  ==========================
``withdrawn``  a ``consent.withdrawn`` by the subject or on their behalf   ``dpv:ConsentWithdrawn``
               (``by`` = ``subject`` / ``organisation``) recorded at or
               before ``t``; or the subject was erased (``subject.erased``)
               at or before ``t``
``revoked``    a ``consent.withdrawn`` with ``by`` = ``trust`` at or       ``dpv:ConsentRevoked``
               before ``t`` (e.g. the collecting partner was suspended)
``superseded`` a newer consent of the same subject (see below) was         ``dpv:ConsentInvalidated``
               recorded at or before ``t``                                 (the newer one is
                                                                           ``dpv:RenewedConsentGiven``)
``pending``    ``t`` is before ``valid_from``                              ``dpv:ConsentGiven`` (not yet
                                                                           valid for processing)
``expired``    ``valid_until`` is set and ``t >= valid_until``             ``dpv:ConsentExpired``
               (the consent is in force on ``[valid_from, valid_until)``)
``active``     none of the above                                           ``dpv:ConsentGiven``
=============  ==========================================================  ==========================

**Superseded**, precisely: consent *B* supersedes an earlier consent *A* of the
same subject when *B* has a higher sequence number, every purpose of *A* is
covered (:func:`consent.vocabulary.code_covers`) by some purpose of *B*, every
data category of *A* is covered by some category of *B*, and *A* had not been
withdrawn before *B* was recorded. Recipients, operations and validity are
ignored: the newer consent states the person's current wishes for that scope.
The first such *B* (lowest sequence number) is the one reported. Supersession
is permanent: withdrawing *B* later does not bring *A* back, because a person
who withdraws their newest consent for a scope means to stop that use.

A withdrawal takes effect from the instant it is recorded (its entry's ``at``):
a check at any later instant, even one microsecond later, sees the consent as
withdrawn. Instants are compared as ``format_at`` strings, which sort correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from consent.vocabulary import Vocabulary, code_covers
from ledger.entry import format_at

OPERATIONS = ("aggregate", "pseudonymised", "identifiable")  # least to most identifying


class Status(StrEnum):
    """The derived status of a consent at an instant."""

    ACTIVE = "active"
    PENDING = "pending"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


DPV_STATUS = {
    Status.ACTIVE: "dpv:ConsentGiven",
    Status.PENDING: "dpv:ConsentGiven",
    Status.WITHDRAWN: "dpv:ConsentWithdrawn",
    Status.REVOKED: "dpv:ConsentRevoked",
    Status.EXPIRED: "dpv:ConsentExpired",
    Status.SUPERSEDED: "dpv:ConsentInvalidated",
}
DPV_RENEWED = "dpv:RenewedConsentGiven"


@dataclass(frozen=True, slots=True)
class Ending:
    """A ledger entry that ended a consent: a withdrawal, an erasure or a newer consent."""

    seq: int
    at: str
    by: str = ""
    reason: str = ""
    consent: str = ""


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """A status with the instant it began, the entry behind it and plain words."""

    status: Status
    since: str | None
    seq: int | None
    reason: str

    @property
    def dpv(self) -> str:
        """The W3C DPV consent-status term."""
        return DPV_STATUS[self.status]


@dataclass(frozen=True, slots=True)
class ConsentView:
    """One consent with everything needed to decide its status and cover at any instant."""

    consent: str
    subject: str
    organisation: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    recipients: tuple[str, ...] | None
    operations: tuple[str, ...] | None
    valid_from: str
    valid_until: str | None
    explicit: bool
    seq: int
    granted_at: str
    wording_hash: str = ""
    wording_version: str = ""
    vocabulary_hash: str = ""
    on_behalf: bool = False
    withdrawal: Ending | None = None
    erasure: Ending | None = None
    superseded_by: Ending | None = None
    supersedes: tuple[str, ...] = ()
    vocabulary: Vocabulary = field(default_factory=Vocabulary.default, compare=False, repr=False)

    def state(self, at: datetime | str) -> StatusInfo:
        """The status at instant *at*, with its reason."""
        t = _at(at)
        if self.granted_at > t:
            return StatusInfo(Status.PENDING, None, None, f"consent {self.consent} had not been recorded yet")
        w = self.withdrawal
        if w is not None and w.at <= t:
            if w.by == "trust":
                return StatusInfo(Status.REVOKED, w.at, w.seq, f"consent {self.consent} was revoked by the trust")
            who = "on the person's behalf by the organisation" if w.by == "organisation" else "by the person"
            return StatusInfo(Status.WITHDRAWN, w.at, w.seq, f"consent {self.consent} was withdrawn {who}")
        e = self.erasure
        if e is not None and e.at <= t:
            reason = f"the person's data was erased, which ended consent {self.consent}"
            return StatusInfo(Status.WITHDRAWN, e.at, e.seq, reason)
        s = self.superseded_by
        if s is not None and s.at <= t:
            reason = f"consent {self.consent} was replaced by the newer consent {s.consent}"
            return StatusInfo(Status.SUPERSEDED, s.at, s.seq, reason)
        if self.valid_from > t:
            return StatusInfo(Status.PENDING, None, None, f"consent {self.consent} starts at {self.valid_from}")
        if self.valid_until is not None and self.valid_until <= t:
            return StatusInfo(
                Status.EXPIRED, self.valid_until, None, f"consent {self.consent} ended {self.valid_until}"
            )
        return StatusInfo(Status.ACTIVE, self.valid_from, self.seq, f"consent {self.consent} is in force")

    def status(self, at: datetime | str) -> Status:
        """The status at instant *at*."""
        return self.state(at).status

    def dpv(self, at: datetime | str) -> str:
        """The W3C DPV term at *at* (an active consent that replaced another is a renewed consent)."""
        info = self.state(at)
        if info.status is Status.ACTIVE and self.supersedes:
            return DPV_RENEWED
        return info.dpv


@dataclass(frozen=True, slots=True)
class Coverage:
    """The answer of :func:`covers`: truthy when covered, with the reason in plain words either way."""

    ok: bool
    reason: str
    consent: str
    seq: int

    def __bool__(self) -> bool:
        return self.ok


def covers(
    view: ConsentView,
    *,
    purpose: str,
    categories: Sequence[str],
    recipient: str | None,
    operation: str,
    at: datetime | str,
) -> Coverage:
    """Whether *view* allows sharing *categories* with *recipient* for *purpose* by *operation* at *at*.

    Pure: reads nothing but its arguments. Purposes and categories use the
    vocabulary hierarchy (consent to ``research`` covers ``research.health``, never
    the reverse); ``recipients`` / ``operations`` of None mean any recipient the trust
    approves / every operation; a special category is covered only by an explicit
    consent. A ``recipient`` of None is covered only by a consent without a
    recipient list.
    """

    def no(reason: str) -> Coverage:
        return Coverage(ok=False, reason=reason, consent=view.consent, seq=view.seq)

    info = view.state(at)
    if info.status is not Status.ACTIVE:
        return no(info.reason)
    if not any(code_covers(p, purpose) for p in view.purposes):
        return no(f"consent {view.consent} does not cover the purpose {purpose}")
    missing = [c for c in categories if not any(code_covers(k, c) for k in view.categories)]
    if missing:
        return no(f"consent {view.consent} does not cover {', '.join(missing)}")
    if view.recipients is not None and recipient not in view.recipients:
        return no(f"consent {view.consent} does not name {recipient or 'this recipient'} as a recipient")
    if view.operations is not None and operation not in view.operations:
        return no(f"consent {view.consent} does not allow {operation} use")
    special = sorted(c for c in categories if view.vocabulary.is_special(c))
    if special and not view.explicit:
        return no(f"consent {view.consent} was not given explicitly, as {', '.join(special)} requires")
    return Coverage(ok=True, reason=f"consent {view.consent} covers this use", consent=view.consent, seq=view.seq)


def scope_covers(newer: ConsentView, older: ConsentView) -> bool:
    """Whether *newer*'s purposes and categories cover every purpose and category of *older*."""
    return all(any(code_covers(n, o) for n in newer.purposes) for o in older.purposes) and all(
        any(code_covers(n, o) for n in newer.categories) for o in older.categories
    )


def link_supersession(views: Iterable[ConsentView]) -> list[ConsentView]:
    """Fill ``superseded_by`` / ``supersedes`` for the consents of ONE subject (any order in, seq order out)."""
    ordered = sorted(views, key=lambda v: v.seq)
    superseded: dict[int, Ending] = {}
    supersedes: dict[int, list[str]] = {}
    for i, older in enumerate(ordered):
        for newer in ordered[i + 1 :]:
            if older.withdrawal is not None and older.withdrawal.seq < newer.seq:
                break
            if scope_covers(newer, older):
                superseded[older.seq] = Ending(newer.seq, newer.granted_at, consent=newer.consent)
                supersedes.setdefault(newer.seq, []).append(older.consent)
                break
    return [
        replace(v, superseded_by=superseded.get(v.seq), supersedes=tuple(supersedes.get(v.seq, ()))) for v in ordered
    ]


def _at(at: datetime | str) -> str:
    return at if isinstance(at, str) else format_at(at)
