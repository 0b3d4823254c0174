"""Rule: the requesting organisation is registered and in good standing."""

from __future__ import annotations

from trust.rules.base import Context, Outcome, RuleResult

NAME = "organisation"


def evaluate(ctx: Context) -> RuleResult:
    """Pass when the organisation is registered and not suspended at the instant of the check."""
    org = ctx.state.orgs.get(ctx.action.organisation)
    if org is None or org.registered_at > ctx.at:
        return RuleResult(NAME, Outcome.FAIL, f"{ctx.action.organisation} is not a registered organisation")
    if org.suspended_at is not None and org.suspended_seq is not None and org.suspended_at <= ctx.at:
        reason = f" ({org.reason})" if org.reason else ""
        return RuleResult(
            NAME,
            Outcome.FAIL,
            f"{org.id} was suspended by the trust at {org.suspended_at}{reason}",
            (org.registered_seq, org.suspended_seq),
        )
    return RuleResult(NAME, Outcome.PASS, f"{org.id} is registered and in good standing", (org.registered_seq,))
