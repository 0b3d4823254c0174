"""Pre-assessment: what the rules would say about an access request, shown to trustees before they vote.

Each finding has an outcome — ``pass``, ``fail``, ``not_applicable`` or ``indeterminate`` —
a message in plain words and the ledger entries it relied on. The overall answer is ``fail``
if any finding fails, ``indeterminate`` if any cannot decide, else ``pass``. Trustees record
on every vote whether they agree with it (``agrees_with_preassessment``), so the trust can
later show how often people overruled the automation, and why (the vote's reason).

Findings: the organisation is in good standing; an agreement in force covers the purpose,
categories and operation; the requested duration fits the agreement's retention period; an
ethics approval is in force where a category needs one (special categories and those the
governance config lists); an aggregate cohort meets the minimum size; and how many subjects'
consents cover the request (named subjects, or — for a cohort described in words — every
subject the trust holds consent for, as an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from consent import repository as consent_repository
from consent import service as consent_service
from consent.status import covers
from consent.vocabulary import code_covers
from ledger.entry import format_at
from trust.agreements import Agreement, agreements_in_force
from trust.config import categories_needing_ethics, config_by_seq, special_categories
from trust.ethics import approval_in_force
from trust.organisations import get_organisation
from trust.requests import AccessRequest, get_request

PASS, FAIL, NOT_APPLICABLE, INDETERMINATE = "pass", "fail", "not_applicable", "indeterminate"
SUBJECT_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's outcome."""

    rule: str
    outcome: str
    message: str
    evidence: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"rule": self.rule, "outcome": self.outcome, "message": self.message, "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class PreAssessment:
    """Every finding about one request at one instant."""

    request: str
    at: str
    outcome: str
    findings: list[Finding]
    special_categories: list[str]
    subjects_considered: int
    subjects_covered: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "request": self.request,
            "at": self.at,
            "outcome": self.outcome,
            "findings": [f.to_json() for f in self.findings],
            "special_categories": self.special_categories,
            "consent": {"subjects_considered": self.subjects_considered, "subjects_covered": self.subjects_covered},
        }


def _agreement_covers(agreement: Agreement, request: AccessRequest) -> bool:
    return (
        any(code_covers(p, request.purpose) for p in agreement.purposes)
        and all(any(code_covers(k, c) for k in agreement.categories) for c in request.categories)
        and request.operation in agreement.operations
    )


def _organisation(conn: Connection, request: AccessRequest, at: datetime) -> Finding:
    org = get_organisation(conn, request.organisation)
    if org is None:
        return Finding("organisation", FAIL, f"{request.organisation} is not registered")
    if not org.is_active_at(at):
        return Finding(
            "organisation",
            FAIL,
            f"{org.name} is suspended: {org.suspension_reason}",
            [org.suspended_seq or org.registered_seq],
        )
    return Finding("organisation", PASS, f"{org.name} is in good standing", [org.registered_seq])


def _agreement(conn: Connection, request: AccessRequest, at: datetime) -> tuple[Finding, Finding]:
    in_force = agreements_in_force(conn, request.organisation, at)
    covering = [a for a in in_force if _agreement_covers(a, request)]
    if not covering:
        message = (
            "no data-use agreement in force covers this purpose, these categories and this operation"
            if in_force
            else "the organisation has no data-use agreement in force"
        )
        return Finding("agreement", FAIL, message, [s for a in in_force for s in a.evidence()]), Finding(
            "retention", NOT_APPLICABLE, "no agreement to compare the duration with"
        )
    best = max(covering, key=lambda a: a.retention_days)
    agreement = Finding(
        "agreement", PASS, f"agreement {best.id} (version {best.version}) covers this use", best.evidence()
    )
    if request.duration_days > best.retention_days:
        retention = Finding(
            "retention",
            FAIL,
            f"the request asks for {request.duration_days} days but the agreement allows {best.retention_days}",
            best.evidence(),
        )
    else:
        retention = Finding(
            "retention", PASS, f"{request.duration_days} days is within the agreement's {best.retention_days}"
        )
    return agreement, retention


def _ethics(conn: Connection, request: AccessRequest, needing: list[str], at: datetime) -> Finding:
    if not needing:
        return Finding("ethics", NOT_APPLICABLE, "no category in this request needs ethics approval")
    approval = approval_in_force(conn, request=request.id, project=request.project, at=at)
    if approval is None:
        return Finding("ethics", FAIL, f"{', '.join(needing)} need an ethics approval in force, and there is none")
    conditions = " with conditions" if approval.outcome == "approved_with_conditions" else ""
    return Finding("ethics", PASS, f"ethics approval {approval.id} is in force{conditions}", [approval.seq])


def _cohort(request: AccessRequest, minimum: int) -> Finding:
    if request.operation != "aggregate":
        return Finding("cohort", NOT_APPLICABLE, "the minimum cohort size applies to aggregate outputs")
    size = request.cohort_size or 0
    if size < minimum:
        return Finding("cohort", FAIL, f"the cohort of {size} is below the minimum of {minimum}")
    return Finding("cohort", PASS, f"the cohort of {size} meets the minimum of {minimum}")


def _subjects_of(conn: Connection, request: AccessRequest) -> list[str]:
    if request.subjects is not None:
        return request.subjects
    seen: dict[str, None] = {}
    for page in consent_repository.iter_grants(conn):
        for row in page:
            seen.setdefault(str(row.subject), None)
    return list(seen)


def _consent(conn: Connection, request: AccessRequest, at: datetime) -> tuple[Finding, int, int]:
    subjects = _subjects_of(conn, request)
    covered = 0
    for start in range(0, len(subjects), SUBJECT_CHUNK):
        views = consent_service.consents_for_subjects(conn, subjects[start : start + SUBJECT_CHUNK], at=at)
        for consents in views.values():
            if any(
                covers(
                    v,
                    purpose=request.purpose,
                    categories=request.categories,
                    recipient=request.organisation,
                    operation=request.operation,
                    at=at,
                )
                for v in consents
            ):
                covered += 1
    scope = "named subjects" if request.subjects is not None else "subjects the trust holds consent for"
    message = f"{covered} of {len(subjects)} {scope} have an active consent covering this use"
    if request.subjects is None:
        outcome = INDETERMINATE if covered else FAIL
        message += "; the cohort is described in words, so each check will exclude anyone without cover"
    else:
        outcome = PASS if covered == len(subjects) else (FAIL if covered == 0 else INDETERMINATE)
        if 0 < covered < len(subjects):
            message += "; the others will be excluded from every share"
    return Finding("consent", outcome, message), len(subjects), covered


def preassess(conn: Connection, request_id: str, *, at: datetime) -> PreAssessment:
    """Assess *request_id* as things stand at *at*."""
    request = get_request(conn, request_id)
    config = config_by_seq(conn, request.config_seq).config
    special = special_categories(conn, request.categories)
    needing = categories_needing_ethics(conn, config, request.categories)
    agreement, retention = _agreement(conn, request, at)
    consent, considered, covered = _consent(conn, request, at)
    findings = [
        _organisation(conn, request, at),
        agreement,
        retention,
        _ethics(conn, request, needing, at),
        _cohort(request, config.min_cohort_size),
        consent,
    ]
    outcomes = {f.outcome for f in findings}
    overall = FAIL if FAIL in outcomes else INDETERMINATE if INDETERMINATE in outcomes else PASS
    return PreAssessment(request.id, format_at(at), overall, findings, special, considered, covered)
