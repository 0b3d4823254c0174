"""Rule (per subject): an active consent covers purpose, every category, the recipient and the operation.

Subjects without such a consent are excluded, never silently included. Special
categories need the consent to have been given explicitly.
"""

from __future__ import annotations

from trust.rules.base import Context, Exclusion, Outcome, RuleResult
from trust.state import ConsentState, covers

NAME = "consent"


def _inactive(consent: ConsentState, at: str) -> str | None:
    if consent.withdrawn_at is not None and consent.withdrawn_at <= at:
        who = {"trust": "revoked by the trust", "organisation": "withdrawn on the person's behalf"}.get(
            consent.withdrawn_by or "", "withdrawn by the person"
        )
        return f"consent {consent.id} was {who} at {consent.withdrawn_at} (entry {consent.withdrawn_seq})"
    if consent.superseded_at is not None and consent.superseded_at <= at:
        return f"consent {consent.id} was replaced by a newer consent (entry {consent.superseded_seq})"
    if consent.valid_from > at:
        return f"consent {consent.id} only starts at {consent.valid_from}"
    if consent.valid_until is not None and consent.valid_until <= at:
        return f"consent {consent.id} expired at {consent.valid_until}"
    return None


def _gap(consent: ConsentState, ctx: Context, special: set[str]) -> str | None:
    """What the consent's scope lacks for the action (the words after "consent <id>"), or None."""
    action = ctx.action
    if not any(covers(p, action.purpose) for p in consent.purposes):
        return f"does not cover the purpose {action.purpose}"
    missing = [c for c in action.categories if not any(covers(k, c) for k in consent.categories)]
    if missing:
        return f"does not cover {', '.join(missing)}"
    if consent.recipients is not None and action.recipient not in consent.recipients:
        return f"does not name {action.recipient} as a recipient"
    if consent.operations is not None and action.operation not in consent.operations:
        return f"does not allow {action.operation} sharing"
    if special and not consent.explicit:
        return f"was not given explicitly, as {', '.join(sorted(special))} requires"
    return None


_UNKNOWN = "?"  # not yet looked up in the memo (no gap is a single character)
Scope = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...] | None, tuple[str, ...] | None, bool]


def _mismatch(
    consent: ConsentState, ctx: Context, special: set[str], memo: dict[Scope, str | None] | None = None
) -> str | None:
    """Why the consent does not cover the action, or None; *memo* shares the answer between consents of one scope."""
    if memo is None:
        gap = _gap(consent, ctx, special)
    else:
        scope = (consent.purposes, consent.categories, consent.recipients, consent.operations, consent.explicit)
        gap = memo.get(scope, _UNKNOWN)
        if gap is _UNKNOWN:
            gap = memo[scope] = _gap(consent, ctx, special)
    return None if gap is None else f"consent {consent.id} {gap}"


def decide_subject(
    ctx: Context, subject: str, special: set[str], memo: dict[Scope, str | None] | None = None
) -> tuple[int | None, Exclusion | None]:
    """Return ``(consent seq, None)`` when covered, else ``(None, exclusion)``."""
    request = ctx.request
    if request is not None and request.subjects is not None and subject not in request.subjects:
        return None, Exclusion(
            subject,
            "request",
            f"not among the people the trustees approved for {request.id}",
            (request.submitted_seq,),
        )
    erased = ctx.state.erased.get(subject)
    if erased is not None and erased[1] <= ctx.at:
        return None, Exclusion(
            subject, NAME, f"the person asked for their data to be erased (entry {erased[0]})", (erased[0],)
        )
    consents = ctx.state.consents_by_subject.get(subject, ())
    reasons: list[str] = []
    evidence: list[int] = []
    for consent in reversed(consents):  # newest first: the most relevant reason comes first
        if consent.at > ctx.at:  # not given yet at the instant of the check: neither cover nor evidence
            continue
        why = _inactive(consent, ctx.at) or _mismatch(consent, ctx, special, memo)
        if why is None:
            return consent.seq, None
        reasons.append(why)
        evidence.append(consent.seq)
        if consent.withdrawn_seq is not None and consent.withdrawn_at is not None and consent.withdrawn_at <= ctx.at:
            evidence.append(consent.withdrawn_seq)
        if consent.superseded_seq is not None and consent.superseded_at is not None and consent.superseded_at <= ctx.at:
            evidence.append(consent.superseded_seq)
    if not reasons:
        return None, Exclusion(subject, NAME, "no consent is recorded for this subject")
    return None, Exclusion(subject, NAME, reasons[0], tuple(evidence))


def evaluate(ctx: Context, special: set[str]) -> RuleResult:
    """Decide every subject; pass when at least one is covered (the permit then covers only those)."""
    seen: set[str] = set()
    memo: dict[Scope, str | None] = {}  # one action: consents of the same scope cover it or not alike
    for subject in ctx.action.subjects:
        if subject in seen:
            continue
        seen.add(subject)
        seq, exclusion = decide_subject(ctx, subject, special, memo)
        if exclusion is not None:
            ctx.exclusions.append(exclusion)
        else:
            ctx.permitted.append(subject)
            if seq is not None:
                ctx.consent_evidence.append(seq)
    total = len(seen)
    if not total:
        return RuleResult(NAME, Outcome.FAIL, "no subjects were named")
    if not ctx.permitted:
        return RuleResult(
            NAME,
            Outcome.FAIL,
            f"none of the {total} subjects has an active consent covering this use",
            tuple(e for x in ctx.exclusions for e in x.evidence),
        )
    excluded = len(ctx.exclusions)
    message = (
        f"all {total} subjects have an active consent covering this use"
        if not excluded
        else f"{len(ctx.permitted)} of {total} subjects have an active consent covering this use; {excluded} excluded"
    )
    return RuleResult(NAME, Outcome.PASS, message, tuple(ctx.consent_evidence))
