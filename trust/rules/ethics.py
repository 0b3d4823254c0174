"""Rule: special categories need an ethics approval in force, with conditions the engine can check."""

from __future__ import annotations

from trust.rules.base import Context, Outcome, RuleResult
from trust.state import EthicsState

NAME = "ethics"
APPROVING = ("approved", "approved_with_conditions")
KNOWN_OBLIGATIONS = frozenset({"min_cohort", "delete_by", "operation", "no_linkage", "geography"})


def needs_ethics(ctx: Context) -> tuple[str, ...]:
    """Categories of the action that need an ethics approval (special, or listed in the config)."""
    if ctx.special is None:
        config = ctx.state.config_at(ctx.at)
        listed = (config.governance if config else {}).get("ethics_required_categories", ())
        ctx.special = tuple(c for c in ctx.action.categories if ctx.state.is_special(c) or c in listed)
    return ctx.special


def _current(decisions: list[EthicsState], at: str) -> EthicsState | None:
    latest = None
    for decision in decisions:
        if decision.at <= at:
            latest = decision
    return latest


def evaluate(ctx: Context) -> RuleResult:
    """Pass with obligations, fail, or indeterminate when a condition exists only in words."""
    special = needs_ethics(ctx)
    if not special:
        return RuleResult(NAME, Outcome.NOT_APPLICABLE, "no special category data is involved")
    what = ", ".join(special)
    decision = _current(ctx.state.ethics_by_request.get(ctx.action.request, []), ctx.at)
    if decision is None:
        return RuleResult(
            NAME, Outcome.FAIL, f"{what} needs an ethics approval for {ctx.action.request}; there is none"
        )
    evidence = (decision.seq,)
    if decision.outcome not in APPROVING:
        return RuleResult(NAME, Outcome.FAIL, f"the ethics committee rejected {ctx.action.request}", evidence)
    if decision.expires_at is not None and decision.expires_at <= ctx.at:
        return RuleResult(
            NAME, Outcome.FAIL, f"the ethics approval {decision.id} expired at {decision.expires_at}", evidence
        )
    unknown = [kind for kind, _ in decision.obligations if kind not in KNOWN_OBLIGATIONS]
    if unknown or (decision.conditions_text and not decision.obligations):
        detail = f"conditions of type {', '.join(unknown)}" if unknown else "conditions written only in words"
        return RuleResult(
            NAME,
            Outcome.INDETERMINATE,
            f"ethics approval {decision.id} has {detail}; needs review by trustees",
            evidence,
        )
    obligations = decision.obligations
    failed = [
        f"the ethics approval allows only {value} sharing"
        for kind, value in obligations
        if kind == "operation" and ctx.action.operation != value
    ]
    if failed:
        return RuleResult(NAME, Outcome.FAIL, "; ".join(failed), evidence)
    return RuleResult(
        NAME, Outcome.PASS, f"ethics approval {decision.id} is in force for {what}", evidence, obligations
    )
