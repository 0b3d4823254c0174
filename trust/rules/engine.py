"""The rules engine: a pure function of (proposed action, trust state, instant) to a decision.

Every rule runs (no short-circuit), so the answer explains everything that is
wrong at once. The decision is ``permit`` only when no rule fails or is
indeterminate and at least one subject is covered; a rule that cannot decide
makes the answer ``deny`` with "needs review by trustees". Fail closed: an
engine with no rules refuses to decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trust.rules import agreement, consent, ethics, organisation, proportionality, request, retention
from trust.rules.base import Context, Exclusion, Outcome, ProposedAction, RuleResult
from trust.state import TrustState

GlobalRule = Callable[[Context], RuleResult]

NEEDS_REVIEW = "needs review by trustees"


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer, before it is recorded."""

    decision: str
    permitted: tuple[str, ...]
    excluded: tuple[Exclusion, ...]
    obligations: tuple[dict[str, Any], ...]
    reasons: tuple[RuleResult, ...]
    as_of: int
    at: str

    @property
    def is_permit(self) -> bool:
        """Whether the decision is a permit."""
        return self.decision == "permit"

    def to_json(self) -> dict[str, Any]:
        """Decision fields shared by the answer and the ``check.decided`` entry."""
        return {
            "decision": self.decision,
            "subjects": {"permitted": list(self.permitted), "excluded": [x.to_json() for x in self.excluded]},
            "obligations": list(self.obligations),
            "reasons": [r.to_json() for r in self.reasons],
            "as_of": self.as_of,
            "evaluated_at": self.at,
        }


def _merge_obligations(results: Sequence[RuleResult]) -> tuple[dict[str, Any], ...]:
    merged: dict[str, Any] = {}
    for result in results:
        for kind, value in result.obligations:
            if kind not in merged:
                merged[kind] = value
            elif kind in {"delete_by", "review_by"}:  # the earliest date binds
                merged[kind] = min(merged[kind], value)
            elif kind == "min_cohort":
                merged[kind] = max(merged[kind], value)
            elif kind == "geography":  # only where every source allows
                merged[kind] = [code for code in merged[kind] if code in value]
    return tuple({"type": kind, "value": value} for kind, value in merged.items())


class Engine:
    """Runs the rules in order over one consistent view of the state."""

    def __init__(self, before: Sequence[GlobalRule], after: Sequence[GlobalRule]) -> None:
        if not before and not after:
            msg = "an engine with no rules would permit everything; refusing to build it"
            raise ValueError(msg)
        self._before = tuple(before)
        self._after = tuple(after)

    @classmethod
    def standard(cls) -> Engine:
        """The trust's rules, in the order the answer lists them."""
        return cls(
            before=(organisation.evaluate, agreement.evaluate, request.evaluate, ethics.evaluate),
            after=(proportionality.evaluate, retention.evaluate),
        )

    def decide(self, state: TrustState, action: ProposedAction, *, at: str) -> Decision:
        """Evaluate *action* against *state* as of instant *at* (an ISO string from ``format_at``)."""
        with state.lock:
            ctx = Context(state=state, action=action, at=at)
            results = [rule(ctx) for rule in self._before]
            special = set(ethics.needs_ethics(ctx))
            results.append(consent.evaluate(ctx, special))
            results.extend(rule(ctx) for rule in self._after)
            as_of = state.head
        blocking = [r for r in results if r.outcome in (Outcome.FAIL, Outcome.INDETERMINATE)]
        permit = not blocking and bool(ctx.permitted)
        if permit:
            permitted, excluded = tuple(ctx.permitted), tuple(ctx.exclusions)
        else:
            # A deny covers everyone: subjects who were individually covered are excluded by the blocking rule.
            first = blocking[0] if blocking else None
            rule_name = first.rule if first else consent.NAME
            reason = first.message if first else "no subject is covered"
            if first is not None and first.outcome is Outcome.INDETERMINATE:
                reason = f"{reason}" if NEEDS_REVIEW in reason else f"{reason}; {NEEDS_REVIEW}"
            excluded = tuple(ctx.exclusions) + tuple(Exclusion(s, rule_name, reason) for s in ctx.permitted)
            permitted = ()
        return Decision(
            decision="permit" if permit else "deny",
            permitted=permitted,
            excluded=excluded,
            obligations=_merge_obligations(results) if permit else (),
            reasons=tuple(results),
            as_of=as_of,
            at=at,
        )
