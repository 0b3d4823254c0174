"""Rule: special categories need an ethics approval in force, with conditions the engine can check.

The approval in force at instant t (``trust/ethics.py``) is the latest decision recorded by t
for the request or, if the request has none, for the request's project; it must be an
approval that has not expired. Its machine-checkable obligations (``OBLIGATION_TYPES`` of
``trust/ethics.py``) are enforced here or handed to the partner; a condition written only in
words, or of a type this engine does not know, makes the rule ``indeterminate``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from trust.rules.base import Context, Outcome, RuleResult
from trust.state import EthicsState, covers

NAME = "ethics"
APPROVING = ("approved", "approved_with_conditions")
# The obligation types of trust/ethics.py OBLIGATION_TYPES; any other type is indeterminate.
KNOWN_OBLIGATIONS = frozenset(
    {"min_cohort", "delete_by", "review_by", "retention_days", "operations", "geography", "categories"}
)


def needs_ethics(ctx: Context) -> tuple[str, ...]:
    """Categories of the action that need an ethics approval (special, or listed in the config, or below them)."""
    if ctx.special is None:
        config = ctx.state.config_at(ctx.at)
        ctx.special = tuple(
            c
            for c in ctx.action.categories
            if ctx.state.is_special(c) or (config is not None and config.requires_ethics(c))
        )
    return ctx.special


def _current(decisions: list[EthicsState], at: str) -> EthicsState | None:
    latest = None
    for decision in decisions:
        if decision.at <= at:
            latest = decision
    return latest


def current_decision(ctx: Context) -> EthicsState | None:
    """The ethics decision in force for the action's request at the instant (request first, then project)."""
    decision = _current(ctx.state.ethics_by_request.get(ctx.action.request, []), ctx.at)
    if decision is None and ctx.request is not None and ctx.request.project:
        decision = _current(ctx.state.ethics_by_project.get(ctx.request.project, []), ctx.at)
    return decision


def _failures(ctx: Context, obligations: tuple[tuple[str, Any], ...]) -> list[str]:
    """Obligations the proposed action itself breaks."""
    action = ctx.action
    failed: list[str] = []
    for kind, value in obligations:
        if kind == "operations" and action.operation not in value:
            failed.append(f"the ethics approval allows only {' or '.join(value)} use, not {action.operation}")
        elif kind == "categories":
            outside = [c for c in action.categories if not any(covers(allowed, c) for allowed in value)]
            if outside:
                failed.append(f"the ethics approval does not cover {', '.join(outside)}")
        elif kind == "geography" and action.geography is not None and action.geography not in value:
            failed.append(f"the ethics approval allows use only in {', '.join(value)}, not {action.geography}")
        elif kind == "min_cohort" and action.operation == "aggregate" and (action.cohort_size or 0) < value:
            failed.append(
                f"the ethics approval requires aggregate outputs about at least {value} people; "
                f"this one describes {action.cohort_size or 0}"
            )
    return failed


def _handed_on(ctx: Context, obligations: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """The obligations the partner must honour, as the answer names them."""
    result: list[tuple[str, Any]] = []
    for kind, value in obligations:
        if kind == "retention_days":
            result.append(("delete_by", (ctx.now.date() + timedelta(days=int(value))).isoformat()))
        elif kind in {"min_cohort", "delete_by", "review_by", "geography"}:
            result.append((kind, value))
    return tuple(result)


def evaluate(ctx: Context) -> RuleResult:
    """Pass with obligations, fail, or indeterminate when a condition exists only in words."""
    special = needs_ethics(ctx)
    if not special:
        return RuleResult(NAME, Outcome.NOT_APPLICABLE, "no special category data is involved")
    what = ", ".join(special)
    decision = current_decision(ctx)
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
    failed = _failures(ctx, decision.obligations)
    if failed:
        return RuleResult(NAME, Outcome.FAIL, "; ".join(failed), evidence)
    return RuleResult(
        NAME,
        Outcome.PASS,
        f"ethics approval {decision.id} is in force for {what}",
        evidence,
        _handed_on(ctx, decision.obligations),
    )
