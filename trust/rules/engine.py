"""The rules engine: a pure function of (proposed action, trust state, instant) to a decision.

Every rule runs (no short-circuit), so the answer explains everything that is
wrong at once. The decision is ``permit`` only when no rule fails or is
indeterminate and at least one subject is covered; a rule that cannot decide
makes the answer ``deny`` with "needs review by trustees". Fail closed: an
engine with no rules refuses to decide.

Only the consent rule (and the final subject count of proportionality) looks at
the subjects. Everything else depends on the action without its subjects, the
state's ``generation`` and the instant only through which recorded instants it
has reached (``TrustState.time_window``) and its date; the standard engine keeps
those results in ``TrustState.rule_cache`` under exactly that key, so a check
runs the per-subject rule and reuses the rest. The answer is the same as without
the cache: replay, which folds a fresh state, checks that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trust.rules import agreement, consent, ethics, organisation, proportionality, request, retention
from trust.rules.base import Context, Exclusion, Outcome, ProposedAction, RuleResult
from trust.state import RequestState, TrustState

GlobalRule = Callable[[Context], RuleResult]
CACHE_LIMIT = 4096  # cached action shapes per state generation before the cache starts again
_GENERATION = "generation"  # the key in TrustState.rule_cache naming the generation the entries belong to

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


@dataclass(frozen=True, slots=True)
class SplitRule:
    """A rule that reads the subjects only in a last step: ``finish(ctx, prepare(ctx))``."""

    prepare: GlobalRule
    finish: Callable[[Context, RuleResult], RuleResult]

    def __call__(self, ctx: Context) -> RuleResult:
        """Evaluate the whole rule."""
        return self.finish(ctx, self.prepare(ctx))


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the rules that do not read subjects concluded for one action shape, state generation and window."""

    before: tuple[RuleResult, ...]
    request: RequestState | None
    special: tuple[str, ...]
    after: tuple[RuleResult, ...]


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

    def __init__(self, before: Sequence[GlobalRule], after: Sequence[GlobalRule], *, cache: bool = False) -> None:
        """Rules run *before* and *after* the consent rule.

        With *cache*, the rules must not read the subjects (``ctx.permitted`` and the like),
        except in the ``finish`` step of a :class:`SplitRule`: their results are reused.
        """
        if not before and not after:
            msg = "an engine with no rules would permit everything; refusing to build it"
            raise ValueError(msg)
        self._before = tuple(before)
        self._after = tuple(after)
        self._cache = cache
        self._rules = (self._before, self._after)

    @classmethod
    def standard(cls) -> Engine:
        """The trust's rules, in the order the answer lists them."""
        return cls(
            before=(organisation.evaluate, agreement.evaluate, request.evaluate, ethics.evaluate),
            after=(SplitRule(proportionality.prepare, proportionality.finish), retention.evaluate),
            cache=True,
        )

    def _shared(self, ctx: Context) -> _Shared:
        """The results of the rules that do not read subjects, from the state's cache when it has them."""
        state, action, at = ctx.state, ctx.action, ctx.at
        cache = state.rule_cache
        if cache.get(_GENERATION) != state.generation or len(cache) > CACHE_LIMIT:
            cache.clear()
            cache[_GENERATION] = state.generation
        key = (
            self._rules,
            action.organisation,
            action.purpose,
            action.categories,
            action.operation,
            action.request,
            action.cohort_size,
            action.geography,
            state.time_window(at),
            at[:10],  # dated obligations (delete_by) count from the day of the check
        )
        shared: _Shared | None = cache.get(key)
        if shared is None:
            before = tuple(rule(ctx) for rule in self._before)
            special = ethics.needs_ethics(ctx)
            after = tuple(rule.prepare(ctx) if isinstance(rule, SplitRule) else rule(ctx) for rule in self._after)
            shared = _Shared(before, ctx.request, special, after)
            cache[key] = shared
        return shared

    def _evaluate(self, ctx: Context) -> list[RuleResult]:
        if self._cache:
            shared = self._shared(ctx)
            ctx.request, ctx.special = shared.request, shared.special
            results = list(shared.before)
            results.append(consent.evaluate(ctx, set(shared.special)))
            for rule, prepared in zip(self._after, shared.after, strict=True):
                results.append(rule.finish(ctx, prepared) if isinstance(rule, SplitRule) else prepared)
            return results
        results = [rule(ctx) for rule in self._before]
        special = set(ethics.needs_ethics(ctx))
        results.append(consent.evaluate(ctx, special))
        results.extend(rule(ctx) for rule in self._after)
        return results

    def decide(self, state: TrustState, action: ProposedAction, *, at: str) -> Decision:
        """Evaluate *action* against *state* as of instant *at* (an ISO string from ``format_at``)."""
        with state.lock:
            ctx = Context(state=state, action=action, at=at)
            results = self._evaluate(ctx)
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
