"""Rule: the use stays within what was approved (categories, operation) and aggregates are large enough."""

from __future__ import annotations

from trust.rules.base import Context, Outcome, RuleResult, operation_rank
from trust.state import covers

NAME = "proportionality"
_PASS = Outcome.PASS  # read once: finish runs on every check


def evaluate(ctx: Context) -> RuleResult:
    """Compare the action with the approved request and the minimum cohort size in force."""
    return finish(ctx, prepare(ctx))


def prepare(ctx: Context) -> RuleResult:
    """The outcome before counting the subjects who remain (it reads no subject, so the engine may cache it)."""
    request = ctx.request
    action = ctx.action
    if request is None:
        return RuleResult(NAME, Outcome.NOT_APPLICABLE, "there is no approved request to compare this use with")
    evidence: tuple[int, ...] = (request.submitted_seq,)
    extra = [c for c in action.categories if not any(covers(r, c) for r in request.categories)]
    if extra:
        return RuleResult(
            NAME, Outcome.FAIL, f"{', '.join(extra)} goes beyond the categories approved for {request.id}", evidence
        )
    if operation_rank(action.operation) > operation_rank(request.operation):
        return RuleResult(
            NAME,
            Outcome.FAIL,
            f"{action.operation} sharing goes beyond the {request.operation} use approved for {request.id}",
            evidence,
        )
    obligations: tuple[tuple[str, object], ...] = ()
    if action.operation == "aggregate":
        minimum = ctx.min_cohort
        config = ctx.state.config_at(ctx.at)
        cfg_evidence = evidence + ((config.seq,) if config else ())
        if action.cohort_size is None:
            return RuleResult(NAME, Outcome.FAIL, "aggregate outputs must state their cohort_size", cfg_evidence)
        if action.cohort_size < minimum:
            return RuleResult(
                NAME,
                Outcome.FAIL,
                f"cohort size {action.cohort_size} is below the minimum of {minimum} for aggregate outputs",
                cfg_evidence,
            )
        obligations = (("min_cohort", minimum),)
        evidence = cfg_evidence
    return RuleResult(
        NAME, Outcome.PASS, f"the use stays within what was approved for {request.id}", evidence, obligations
    )


def may_change(ctx: Context, prepared: RuleResult) -> bool:
    """Whether :func:`finish` can fail *prepared* (only a passing aggregate is counted again); reads no subject."""
    return ctx.action.operation == "aggregate" and prepared.outcome is _PASS


def finish(ctx: Context, prepared: RuleResult) -> RuleResult:
    """Fail an aggregate that passed :func:`prepare` when fewer subjects remain than its minimum cohort."""
    if ctx.action.operation != "aggregate" or not ctx.permitted or prepared.outcome is not _PASS:
        return prepared
    minimum = dict(prepared.obligations)["min_cohort"]
    if len(ctx.permitted) < minimum:
        return RuleResult(
            NAME,
            Outcome.FAIL,
            f"only {len(ctx.permitted)} subjects remain after exclusions, below the minimum of {minimum}",
            prepared.evidence,
        )
    return prepared
