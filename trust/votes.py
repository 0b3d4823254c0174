"""Trustees' votes on access requests.

Ledger payload (actor: the trustee)::

    vote.cast {"request": "req_…", "trustee": "person_…", "choice": "approve" | "reject" | "abstain",
               "reason": "plain words", "agrees_with_preassessment": bool,
               "signature": "<base64 Ed25519 signature>" | null}

``signature``, when present, is the trustee's own Ed25519 signature (with the key whose public
half is the ``vote_key`` of their appointment) over :func:`vote_message` — the RFC 8785 bytes
of ``{"request", "trustee", "choice", "reason", "agrees_with_preassessment"}`` — so anyone can
check that the trustee, not the trust's staff, cast it.

A trustee may vote again while the vote is open: every vote stays on the ledger and the
latest one counts. ``agrees_with_preassessment`` records whether the trustee agrees with
the automated pre-assessment (:mod:`trust.preassessment`), so the trust can show how often
people overruled it and why. After each vote the request is decided at once if the rule is
already met (:func:`trust.requests.close_due_requests`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ledger.canonical import canonicalize
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ForbiddenError, InvalidStateError, ValidationError
from ledger.keys import Verifier
from ledger.service import Ledger
from trust.decision_rules import CHOICES
from trust.membership import current_appointment, parse_vote_key
from trust.models import votes_table
from trust.requests import VOTING, Standing, close_due_requests, get_request, list_conflicts, standing

MAX_REASON = 2000
VOTE_KEY_NAME = "vote"  # the verifier name is not part of a raw Ed25519 signature; any valid name works


@dataclass(frozen=True, slots=True)
class Vote:
    """One ``vote.cast`` entry as projected."""

    seq: int
    request: str
    trustee: str
    at: str
    choice: str
    reason: str
    agrees_with_preassessment: bool
    signature: str | None
    is_current: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "seq": self.seq,
            "request": self.request,
            "trustee": self.trustee,
            "at": self.at,
            "choice": self.choice,
            "reason": self.reason,
            "agrees_with_preassessment": self.agrees_with_preassessment,
            "is_signed": self.signature is not None,
            "is_current": self.is_current,
        }


@dataclass(frozen=True, slots=True)
class VoteResult:
    """The recorded vote and, if it settled the outcome, the decision entry."""

    vote: LedgerEntry
    decision: LedgerEntry | None


def vote_message(*, request: str, trustee: str, choice: str, reason: str, agrees_with_preassessment: bool) -> bytes:
    """The exact bytes a trustee signs: RFC 8785 of the vote's content."""
    return canonicalize(
        {
            "request": request,
            "trustee": trustee,
            "choice": choice,
            "reason": reason,
            "agrees_with_preassessment": agrees_with_preassessment,
        }
    )


def list_votes(conn: Connection, request_id: str, *, at: datetime | None = None) -> list[Vote]:
    """Every vote on a request (cast by *at*, if given), oldest first."""
    t = votes_table.c
    query = select(votes_table).where(t.request == request_id).order_by(t.seq)
    if at is not None:
        query = query.where(t.at <= format_at(at))
    return [
        Vote(
            int(r.seq),
            r.request,
            r.trustee,
            r.at,
            r.choice,
            r.reason,
            bool(r.agrees_with_preassessment),
            r.signature,
            bool(r.is_current),
        )
        for r in conn.execute(query)
    ]


def _check_signature(signature: str, vote_key: str | None, message: bytes) -> None:
    if vote_key is None:
        msg = "this trustee has no vote_key on record, so a signed vote cannot be checked; vote without a signature"
        raise ValidationError(msg)
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = "signature must be base64"
        raise ValidationError(msg) from exc
    Verifier(VOTE_KEY_NAME, parse_vote_key(vote_key)).verify(message, raw)


def _check_choice(choice: str, reason: str) -> str:
    if choice not in CHOICES:
        msg = f"choice must be one of {', '.join(CHOICES)}; got {choice!r}"
        raise ValidationError(msg)
    reason = reason.strip()
    if not reason:
        msg = "a vote needs a reason"
        raise ValidationError(msg)
    if len(reason) > MAX_REASON:
        msg = f"a reason must be at most {MAX_REASON} characters"
        raise ValidationError(msg)
    return reason


def cast_vote(
    ledger: Ledger,
    *,
    request_id: str,
    trustee: str,
    choice: str,
    reason: str,
    agrees_with_preassessment: bool,
    now: datetime,
    signature: str | None = None,
) -> VoteResult:
    """Record ``vote.cast``, then record the decision at once if the rule is met."""
    reason = _check_choice(choice, reason)

    def prepare(conn: Connection) -> dict[str, Any]:
        request = get_request(conn, request_id)
        state = request.state_at(now)
        if request.decided_seq is not None:
            msg = f"voting on {request_id} is closed: it was decided (entry {request.decided_seq})"
            raise InvalidStateError(msg)
        if state != VOTING:
            when = (
                f"opens at {request.notice_ends_at}, when public notice ends"
                if state == "public_notice"
                else "is closed"
            )
            msg = f"voting on {request_id} {when}"
            raise InvalidStateError(msg)
        if request.is_decision_due(now):
            msg = f"voting on {request_id} closed at {request.voting_ends_at}"
            raise InvalidStateError(msg)
        member = current_appointment(conn, trustee, "trustee", now)
        if member is None:
            msg = f"{trustee} is not a trustee (never appointed, or removed) and may not vote"
            raise ForbiddenError(msg)
        if any(c.trustee == trustee for c in list_conflicts(conn, request_id)):
            msg = f"{trustee} declared a conflict on {request_id} and is recused from voting on it"
            raise ForbiddenError(msg)
        if signature is not None:
            message = vote_message(
                request=request_id,
                trustee=trustee,
                choice=choice,
                reason=reason,
                agrees_with_preassessment=agrees_with_preassessment,
            )
            _check_signature(signature, member.vote_key, message)
        return {
            "request": request_id,
            "trustee": trustee,
            "choice": choice,
            "reason": reason,
            "agrees_with_preassessment": agrees_with_preassessment,
            "signature": signature,
        }

    entry = ledger.append("vote.cast", actor=trustee, now=now, prepare=prepare)
    with ledger.db.engine.connect() as conn:
        decided = close_due_requests(ledger, conn, now=now, only=request_id)
    return VoteResult(entry, decided[0] if decided else None)


def votes_and_standing(conn: Connection, request_id: str, *, at: datetime) -> tuple[list[Vote], Standing]:
    """Every vote on the request and where the count stands at *at* (for trustees reviewing it)."""
    request = get_request(conn, request_id)
    return list_votes(conn, request_id, at=at), standing(conn, request, at=at)
