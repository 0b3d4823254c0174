"""Ethics-committee decisions.

Ledger payload (actor: the ethics-committee member who recorded it)::

    ethics.decided {"decision": "eth_…",
                    "outcome": "approved" | "approved_with_conditions" | "rejected",
                    "request": "req_…" | null,          # the access request it concerns, or
                    "project": "plain project name" | null,  # a project several requests belong to
                    "conditions_text": "the conditions in words",
                    "obligations": [{"type": "min_cohort", "value": 20}, …],
                    "expires_at": "2027-11-26T00:00:00.000000Z" | null}

Conditions are written twice: in words, for people, and as machine-checkable
obligations the rules engine enforces (types in :data:`OBLIGATION_TYPES`). A condition
that exists only in words makes the rules engine answer "indeterminate", never "permit".

A later decision on the same request (or, for project-wide decisions, the same project)
supersedes the earlier one. An approval is IN FORCE at t when it is the latest decision
recorded by t for the request — or, if the request has none, for its project — its
outcome is an approval, and it has not expired. Who may record decisions is set by the
governance config (``ethics.recorded_by``: any member, or only the chair).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from ledger.entry import LedgerEntry, format_at
from ledger.errors import ForbiddenError, NotFoundError, ValidationError
from ledger.service import Ledger
from trust.config import OPERATIONS, config_in_force
from trust.membership import current_appointment
from trust.models import ethics_table, loads, new_id, requests_table

OUTCOMES = ("approved", "approved_with_conditions", "rejected")
APPROVALS = ("approved", "approved_with_conditions")
MAX_TEXT = 4000
MAX_PROJECT = 200
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _iso_date(value: object) -> bool:
    if not isinstance(value, str) or not ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _str_list(allowed: tuple[str, ...] | None = None) -> Any:
    def check(value: object) -> bool:
        return (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(v, str) and (allowed is None or v in allowed) for v in value)
        )

    return check


OBLIGATION_TYPES: dict[str, tuple[Any, str]] = {
    "min_cohort": (_positive_int, "a positive whole number: outputs must describe at least this many people"),
    "delete_by": (_iso_date, "a date YYYY-MM-DD by which the data must be deleted"),
    "review_by": (_iso_date, "a date YYYY-MM-DD by which the project must report back"),
    "retention_days": (_positive_int, "a positive whole number of days the data may be kept"),
    "operations": (_str_list(OPERATIONS), f"a list drawn from {', '.join(OPERATIONS)}"),
    "geography": (_str_list(), "a list of ISO 3166-1 alpha-2 country codes where the data may be used"),
    "categories": (_str_list(), "a list of the only data categories that may be used"),
}


@dataclass(frozen=True, slots=True)
class EthicsDecision:
    """An ethics decision as projected (instants are ``format_at`` strings)."""

    id: str
    seq: int
    at: str
    decided_by: str
    outcome: str
    request: str | None
    project: str | None
    conditions_text: str
    obligations: list[dict[str, Any]]
    expires_at: str | None
    superseded_seq: int | None
    superseded_at: str | None

    def is_approval_at(self, at: datetime) -> bool:
        """Whether this is an approval that had not expired at *at* (supersession is checked by the caller)."""
        moment = format_at(at)
        return self.outcome in APPROVALS and (self.expires_at is None or self.expires_at > moment)

    def to_json(self) -> dict[str, Any]:
        """The public JSON form."""
        return {
            "decision": self.id,
            "seq": self.seq,
            "at": self.at,
            "decided_by": self.decided_by,
            "outcome": self.outcome,
            "request": self.request,
            "project": self.project,
            "conditions_text": self.conditions_text,
            "obligations": self.obligations,
            "expires_at": self.expires_at,
            "superseded_seq": self.superseded_seq,
        }


def _from_row(row: Row[Any]) -> EthicsDecision:
    return EthicsDecision(
        id=row.decision_id,
        seq=int(row.seq),
        at=row.at,
        decided_by=row.decided_by,
        outcome=row.outcome,
        request=row.request,
        project=row.project,
        conditions_text=row.conditions_text,
        obligations=loads(row.obligations),
        expires_at=row.expires_at,
        superseded_seq=row.superseded_seq,
        superseded_at=row.superseded_at,
    )


def get_decision(conn: Connection, decision_id: str) -> EthicsDecision:
    """One decision, or :class:`NotFoundError`."""
    row = conn.execute(select(ethics_table).where(ethics_table.c.decision_id == decision_id)).first()
    if row is None:
        msg = f"ethics decision {decision_id} does not exist"
        raise NotFoundError(msg)
    return _from_row(row)


def list_decisions(conn: Connection, *, request: str | None = None) -> list[EthicsDecision]:
    """Every decision (optionally about one request), oldest first."""
    query = select(ethics_table).order_by(ethics_table.c.seq)
    if request is not None:
        query = query.where(ethics_table.c.request == request)
    return [_from_row(row) for row in conn.execute(query)]


def latest_decision(
    conn: Connection, *, request: str | None, project: str | None, at: datetime
) -> EthicsDecision | None:
    """The latest decision recorded by *at* for *request*, else (if none) for *project*."""
    moment, t = format_at(at), ethics_table.c
    for clause in (
        t.request == request if request else None,
        (t.project == project) & t.request.is_(None) if project else None,
    ):
        if clause is None:
            continue
        row = conn.execute(select(ethics_table).where(clause, t.at <= moment).order_by(t.seq.desc()).limit(1)).first()
        if row is not None:
            return _from_row(row)
    return None


def approval_in_force(
    conn: Connection, *, request: str | None, project: str | None, at: datetime
) -> EthicsDecision | None:
    """The ethics approval in force at *at* for a request (or its project), or None."""
    decision = latest_decision(conn, request=request, project=project, at=at)
    return decision if decision is not None and decision.is_approval_at(at) else None


def check_obligations(obligations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate machine-checkable obligations; return them as ``{"type", "value"}`` objects."""
    result = []
    for index, item in enumerate(obligations):
        kind, value = item.get("type"), item.get("value")
        spec = OBLIGATION_TYPES.get(str(kind))
        if spec is None:
            known = ", ".join(OBLIGATION_TYPES)
            msg = f"obligations[{index}]: unknown type {kind!r}; known types are {known} (put anything else in words)"
            raise ValidationError(msg)
        check, meaning = spec
        if not check(value):
            msg = f"obligations[{index}]: {kind} needs {meaning}; got {value!r}"
            raise ValidationError(msg)
        result.append({"type": kind, "value": value})
    return result


def _check_input(
    outcome: str, request: str | None, project: str | None, conditions_text: str, obligations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if outcome not in OUTCOMES:
        msg = f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}"
        raise ValidationError(msg)
    if not request and not project:
        msg = "an ethics decision must concern a request or a project"
        raise ValidationError(msg)
    if project is not None and len(project) > MAX_PROJECT:
        msg = f"project must be at most {MAX_PROJECT} characters"
        raise ValidationError(msg)
    if len(conditions_text) > MAX_TEXT:
        msg = f"conditions_text must be at most {MAX_TEXT} characters"
        raise ValidationError(msg)
    checked = check_obligations(obligations)
    if outcome == "approved_with_conditions" and not (conditions_text or checked):
        msg = "an approval with conditions must state the conditions (in words, as obligations, or both)"
        raise ValidationError(msg)
    if outcome == "rejected" and checked:
        msg = "a rejection carries no obligations"
        raise ValidationError(msg)
    return checked


def record_decision(
    ledger: Ledger,
    *,
    outcome: str,
    request: str | None,
    project: str | None,
    conditions_text: str,
    obligations: list[dict[str, Any]],
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> LedgerEntry:
    """Record ``ethics.decided``; *actor* must be an ethics-committee member (the chair, if the config says so)."""
    project = project.strip() if project else None
    conditions_text = conditions_text.strip()
    checked = _check_input(outcome, request, project, conditions_text, obligations)
    if expires_at is not None and expires_at <= now:
        msg = "expires_at must be in the future"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, Any]:
        member = current_appointment(conn, actor, "ethics", now)
        if member is None:
            msg = f"{actor} is not a member of the ethics committee"
            raise ForbiddenError(msg)
        if config_in_force(conn).config.ethics_recorded_by == "chair" and not member.is_chair:
            msg = "the governance config lets only the ethics committee's chair record decisions"
            raise ForbiddenError(msg)
        if (
            request
            and conn.execute(select(requests_table.c.request_id).where(requests_table.c.request_id == request)).first()
            is None
        ):
            msg = f"access request {request} does not exist"
            raise NotFoundError(msg)
        return {
            "decision": new_id("eth"),
            "outcome": outcome,
            "request": request or None,
            "project": project,
            "conditions_text": conditions_text,
            "obligations": checked,
            "expires_at": None if expires_at is None else format_at(expires_at),
        }

    return ledger.append("ethics.decided", actor=actor, now=now, prepare=prepare)
