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
those results in ``TrustState.rule_cache`` under exactly that key, with the
consent rule's :class:`~trust.rules.consent.Matcher` for the action (which
remembers which consent scopes cover it), so a check looks up each subject's own
consents and reuses the rest. The answer is the same as without the cache:
replay, which folds a fresh state, checks that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trust.rules import agreement, consent, ethics, organisation, proportionality, request, retention
from trust.rules.base import Context, Exclusion, Outcome, ProposedAction, RuleResult, exclusion
from trust.state import RequestState, TrustState

GlobalRule = Callable[[Context], RuleResult]
CACHE_LIMIT = 4096  # cached action shapes per state generation before the cache starts again
_RULE_TOKENS: dict[tuple[tuple[GlobalRule, ...], tuple[GlobalRule, ...]], object] = {}
_GENERATION = "generation"  # the key in TrustState.rule_cache naming the generation the entries belong to

NEEDS_REVIEW = "needs review by trustees"
_BLOCKING = (Outcome.FAIL, Outcome.INDETERMINATE)  # outcomes that make the answer deny


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
        """Decision fields shared by the answer and the ``check.decided`` entry (fresh containers every call)."""
        return {
            "decision": self.decision,
            "subjects": {
                "permitted": list(self.permitted),
                "excluded": list(map(Exclusion.to_json, self.excluded)) if self.excluded else [],
            },
            "obligations": list(map(dict.copy, self.obligations)) if self.obligations else [],
            "reasons": list(map(RuleResult.to_json, self.reasons)),
            "as_of": self.as_of,
            "evaluated_at": self.at,
        }


_new = object.__new__
_DECISION_FIELDS = ("decision", "permitted", "excluded", "obligations", "reasons", "as_of", "at")
_set_decision, _set_permitted, _set_excluded, _set_obligations, _set_reasons, _set_as_of, _set_at = (
    getattr(Decision, name).__set__ for name in _DECISION_FIELDS
)


def _decision(  # noqa: PLR0917 - the fields of Decision, in order
    decision: str,
    permitted: tuple[str, ...],
    excluded: tuple[Exclusion, ...],
    obligations: tuple[dict[str, Any], ...],
    reasons: tuple[RuleResult, ...],
    as_of: int,
    at: str,
) -> Decision:
    """``Decision(...)`` through the slots' setters, as :func:`~trust.rules.base.rule_result` builds results."""
    made: Decision = _new(Decision)
    _set_decision(made, decision)
    _set_permitted(made, permitted)
    _set_excluded(made, excluded)
    _set_obligations(made, obligations)
    _set_reasons(made, reasons)
    _set_as_of(made, as_of)
    _set_at(made, at)
    return made


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
    """What the rules that do not read subjects concluded for one action shape, state generation and window.

    With them: the consent rule's :class:`~trust.rules.consent.Matcher` for the action, and the
    obligations a permit carries when the ``finish`` steps leave their prepared results as they are.
    """

    before: tuple[RuleResult, ...]
    request: RequestState | None
    special: tuple[str, ...]
    after: tuple[RuleResult, ...]
    matcher: consent.Matcher
    obligations: tuple[dict[str, Any], ...]
    blocking: RuleResult | None  # the first of ``before`` that fails or is indeterminate


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
        # Names these rules in cache keys: engines with the same rules share cached results, and a key
        # holding the token hashes faster than one holding the rules themselves.
        self._rules = _RULE_TOKENS.setdefault((self._before, self._after), object())
        self._finish = tuple(rule.finish if isinstance(rule, SplitRule) else None for rule in self._after)

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
            matcher = consent.Matcher(action, special, ctx.request)
            blocking = next((r for r in before if r.outcome in _BLOCKING), None)
            obligations = _merge_obligations(before + after)
            shared = _Shared(before, ctx.request, special, after, matcher, obligations, blocking)
            cache[key] = shared
        return shared

    def _evaluate(self, ctx: Context) -> tuple[list[RuleResult], RuleResult | None]:
        """Every rule's result and the first that blocks a permit, without the cache."""
        results = [rule(ctx) for rule in self._before]
        special = set(ethics.needs_ethics(ctx))
        results.append(consent.evaluate(ctx, special))
        results.extend(rule(ctx) for rule in self._after)
        return results, next((r for r in results if r.outcome in _BLOCKING), None)

    def decide(self, state: TrustState, action: ProposedAction, *, at: str) -> Decision:
        """Evaluate *action* against *state* as of instant *at* (an ISO string from ``format_at``)."""
        obligations: tuple[dict[str, Any], ...] | None = None  # a permit's, when known without merging again
        with state.lock:
            ctx = Context(state, action, at, None, [], [], [])
            if not self._cache:
                results, first = self._evaluate(ctx)
            else:
                shared = self._shared(ctx)
                ctx.request, ctx.special = shared.request, shared.special
                checked = shared.matcher.evaluate(ctx)
                results = [*shared.before, checked]
                first = shared.blocking
                if first is None and checked.outcome in _BLOCKING:
                    first = checked
                unchanged = True
                for finish, prepared in zip(self._finish, shared.after, strict=True):
                    result = prepared if finish is None else finish(ctx, prepared)
                    if result is not prepared:
                        unchanged = False
                    if first is None and result.outcome in _BLOCKING:
                        first = result
                    results.append(result)
                if unchanged:
                    obligations = shared.obligations
            as_of = state.head
        permit = first is None and bool(ctx.permitted)
        if permit:
            permitted, excluded = tuple(ctx.permitted), tuple(ctx.exclusions)
        else:
            # A deny covers everyone: subjects who were individually covered are excluded by the blocking rule.
            rule_name = first.rule if first else consent.NAME
            reason = first.message if first else "no subject is covered"
            if first is not None and first.outcome is Outcome.INDETERMINATE:
                reason = f"{reason}" if NEEDS_REVIEW in reason else f"{reason}; {NEEDS_REVIEW}"
            excluded = (*ctx.exclusions, *(exclusion(s, rule_name, reason) for s in ctx.permitted))
            permitted = ()
        return _decision(
            "permit" if permit else "deny",
            permitted,
            excluded,
            (_merge_obligations(results) if obligations is None else obligations) if permit else (),
            tuple(results),
            as_of,
            at,
        )
