"""Rule: how long the partner may keep what it receives (obligation ``delete_by``)."""

from __future__ import annotations

from datetime import timedelta

from trust.rules.base import Context, Outcome, RuleResult, operation_rank
from trust.rules.request import expires_at
from trust.state import ancestors

NAME = "retention"


def evaluate(ctx: Context) -> RuleResult:
    """Derive the delete-by date from the agreement's retention period and the request's end."""
    action = ctx.action
    dates: list[str] = []
    evidence: list[int] = []
    today = ctx.now.date()
    for purpose in ancestors(action.purpose):
        for agreement in ctx.state.agreements_by_org_purpose.get((action.organisation, purpose), ()):
            seqs = agreement.in_force_seqs(ctx.at)
            if seqs is not None and agreement.retention_days is not None:
                dates.append((today + timedelta(days=int(agreement.retention_days))).isoformat())
                evidence.extend(seqs)
    if ctx.request is not None:
        ends = expires_at(ctx.request)
        if ends is not None:
            dates.append(ends[:10])
            if ctx.request.decided_seq is not None:
                evidence.append(ctx.request.decided_seq)
    if not dates:
        if operation_rank(action.operation) == 0:
            return RuleResult(NAME, Outcome.NOT_APPLICABLE, "no retention period applies to aggregate outputs here")
        return RuleResult(
            NAME, Outcome.INDETERMINATE, "no retention period is recorded for this use; needs review by trustees"
        )
    delete_by = min(dates)
    return RuleResult(
        NAME,
        Outcome.PASS,
        f"data received must be deleted by {delete_by}",
        tuple(evidence),
        (("delete_by", delete_by),),
    )
