"""Rule: a data-use agreement in force covers the purpose, categories, operation and geography."""

from __future__ import annotations

from trust.rules.base import Context, Outcome, RuleResult
from trust.state import AgreementState, ancestors, covers

NAME = "agreement"


def _why_not(agreement: AgreementState, ctx: Context) -> str | None:
    action = ctx.action
    if agreement.in_force_seqs(ctx.at) is None:
        if agreement.terminated_at is not None and agreement.terminated_at <= ctx.at:
            return f"agreement {agreement.id} was terminated at {agreement.terminated_at}"
        if agreement.superseded_at is not None and agreement.superseded_at <= ctx.at:
            return f"agreement {agreement.id} version {agreement.version} was superseded"
        if agreement.valid_until is not None and agreement.valid_until <= ctx.at:
            return f"agreement {agreement.id} expired at {agreement.valid_until}"
        if agreement.valid_from > ctx.at:
            return f"agreement {agreement.id} only starts at {agreement.valid_from}"
        return f"agreement {agreement.id} is not yet signed by both parties"
    missing = [c for c in action.categories if not any(covers(a, c) for a in agreement.categories)]
    if missing:
        return f"agreement {agreement.id} does not cover the data categories {', '.join(missing)}"
    if action.operation not in agreement.operations:
        return f"agreement {agreement.id} does not permit {action.operation} sharing"
    if action.geography and agreement.geography and action.geography not in agreement.geography:
        allowed = ", ".join(agreement.geography)
        return f"agreement {agreement.id} permits processing only in {allowed}, not {action.geography}"
    return None


def evaluate(ctx: Context) -> RuleResult:
    """Pass when some agreement of the organisation in force now covers the whole action."""
    action = ctx.action
    candidates: list[AgreementState] = []
    for purpose in ancestors(action.purpose):
        candidates.extend(ctx.state.agreements_by_org_purpose.get((action.organisation, purpose), ()))
    if not candidates:
        return RuleResult(
            NAME, Outcome.FAIL, f"{action.organisation} has no data-use agreement covering the purpose {action.purpose}"
        )
    reasons: list[str] = []
    evidence: list[int] = []
    for agreement in candidates:
        why = _why_not(agreement, ctx)
        seqs = [seq for seq, signed_at in agreement.signed.values() if signed_at <= ctx.at]
        if why is None:
            obligations: tuple[tuple[str, object], ...] = ()
            if action.geography is None and agreement.geography:
                obligations = (("geography", list(agreement.geography)),)
            return RuleResult(
                NAME,
                Outcome.PASS,
                f"agreement {agreement.id} (version {agreement.version}) is in force and covers this use",
                tuple(seqs),
                obligations,
            )
        reasons.append(why)
        evidence.extend(seqs)
        for ended_seq, ended_at in (
            (agreement.terminated_seq, agreement.terminated_at),
            (agreement.superseded_seq, agreement.superseded_at),
        ):
            if ended_seq is not None and ended_at is not None and ended_at <= ctx.at:
                evidence.append(ended_seq)
    return RuleResult(NAME, Outcome.FAIL, "; ".join(dict.fromkeys(reasons)), tuple(evidence))
