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
from trust.rules.base import Context, Exclusion, Outcome, ProposedAction, RuleResult, exclusion, show_reasons
from trust.state import RequestState, TrustState

GlobalRule = Callable[[Context], RuleResult]
CACHE_LIMIT = 4096  # cached action shapes per state generation before the cache starts again
_RULE_TOKENS: dict[tuple[tuple[GlobalRule, ...], tuple[GlobalRule, ...]], object] = {}
_GENERATION = "generation"  # the key in TrustState.rule_cache naming the generation the entries belong to

NEEDS_REVIEW = "needs review by trustees"
_BLOCKING = (Outcome.FAIL, Outcome.INDETERMINATE)  # outcomes that make the answer deny


def _fresh_obligation(obligation: dict[str, Any]) -> dict[str, Any]:
    """A copy of *obligation* whose list value (a geography) is a copy too: an answer never shares the cache's."""
    value = obligation.get("value")
    return {**obligation, "value": list(value)} if isinstance(value, list) else dict(obligation)


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
            "obligations": list(map(_fresh_obligation, self.obligations)) if self.obligations else [],
            "reasons": show_reasons(self.reasons),
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
    """A rule that reads the subjects only in a last step: ``finish(ctx, prepare(ctx))``.

    ``may_change(ctx, prepared)``, when given, tells from the action without its subjects whether
    ``finish`` can return anything but *prepared*; when it says no, the cached engine skips ``finish``.
    """

    prepare: GlobalRule
    finish: Callable[[Context, RuleResult], RuleResult]
    may_change: Callable[[Context, RuleResult], bool] | None = None

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
    after_blocking: RuleResult | None  # the first of ``after`` that does (as prepared)
    # (finish, prepared result) of each rule after the consent rule, when any of them has a finish step
    steps: tuple[tuple[Callable[[Context, RuleResult], RuleResult] | None, RuleResult], ...] | None
    open: bool  # nothing blocks and no finish step runs: one covered subject makes a permit with these results


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

    @classmethod
    def standard(cls) -> Engine:
        """The trust's rules, in the order the answer lists them."""
        return cls(
            before=(organisation.evaluate, agreement.evaluate, request.evaluate, ethics.evaluate),
            after=(
                SplitRule(proportionality.prepare, proportionality.finish, proportionality.may_change),
                retention.evaluate,
            ),
            cache=True,
        )

    def _shared(self, state: TrustState, action: ProposedAction, at: str) -> _Shared:
        """The results of the rules that do not read subjects, from the state's cache when it has them."""
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
            ctx = Context(state, action, at, None, [], [], [])
            before = tuple(rule(ctx) for rule in self._before)
            special = ethics.needs_ethics(ctx)
            after = tuple(rule.prepare(ctx) if isinstance(rule, SplitRule) else rule(ctx) for rule in self._after)
            finishes = tuple(
                rule.finish
                if isinstance(rule, SplitRule) and (rule.may_change is None or rule.may_change(ctx, prepared))
                else None
                for rule, prepared in zip(self._after, after, strict=True)
            )
            matcher = consent.Matcher(action, special, ctx.request)
            blocking = next((r for r in before if r.outcome in _BLOCKING), None)
            after_blocking = next((r for r in after if r.outcome in _BLOCKING), None)
            obligations = _merge_obligations(before + after)
            steps = tuple(zip(finishes, after, strict=True)) if any(finishes) else None
            for result in before + after:  # shown on every check: work out their JSON once (see show_reasons)
                result.to_json()
            is_open = blocking is None and after_blocking is None and steps is None
            shared = _Shared(
                before, ctx.request, special, after, matcher, obligations, blocking, after_blocking, steps, is_open
            )
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
        if not self._cache:
            with state.lock:
                ctx = Context(state, action, at, None, [], [], [])
                evaluated, first = self._evaluate(ctx)
                as_of = state.head
            return _conclude(ctx, tuple(evaluated), first, None, as_of)
        with state.lock:
            shared = self._shared(state, action, at)
            subjects = action.subjects
            if shared.open and len(subjects) == 1:  # the commonest check, decided without the general steps below
                seq = shared.matcher.quick_cover(state, subjects[0], at)
                if seq is not None:
                    results = (*shared.before, consent.one_covered(seq), *shared.after)
                    return _decision("permit", subjects, (), shared.obligations, results, state.head, at)
            ctx = Context(state, action, at, None, [], [], [])
            ctx.request, ctx.special = shared.request, shared.special
            checked = shared.matcher.evaluate(ctx)
            first = shared.blocking
            if first is None and checked.outcome in _BLOCKING:
                first = checked
            # a permit's obligations, when known without merging again
            obligations: tuple[dict[str, Any], ...] | None = shared.obligations
            steps = shared.steps
            if steps is None:
                results = (*shared.before, checked, *shared.after)
                if first is None:
                    first = shared.after_blocking
            else:
                after: list[RuleResult] = []
                for finish, prepared in steps:
                    result = prepared if finish is None else finish(ctx, prepared)
                    if result is not prepared:
                        obligations = None
                    if first is None and result.outcome in _BLOCKING:
                        first = result
                    after.append(result)
                results = (*shared.before, checked, *after)
            as_of = state.head
        return _conclude(ctx, results, first, obligations, as_of)


def _conclude(
    ctx: Context,
    results: tuple[RuleResult, ...],
    first: RuleResult | None,
    obligations: tuple[dict[str, Any], ...] | None,
    as_of: int,
) -> Decision:
    """The decision from every rule's result and the first that blocks a permit.

    *obligations* are a permit's when already known (None: merged from *results*).
    """
    if first is None and ctx.permitted:
        return _decision(
            "permit",
            tuple(ctx.permitted),
            tuple(ctx.exclusions),
            _merge_obligations(results) if obligations is None else obligations,
            results,
            as_of,
            ctx.at,
        )
    # A deny covers everyone: subjects who were individually covered are excluded by the blocking rule.
    rule_name = first.rule if first else consent.NAME
    reason = first.message if first else "no subject is covered"
    if first is not None and first.outcome is Outcome.INDETERMINATE:
        reason = f"{reason}" if NEEDS_REVIEW in reason else f"{reason}; {NEEDS_REVIEW}"
    excluded = (*ctx.exclusions, *(exclusion(s, rule_name, reason) for s in ctx.permitted))
    return _decision("deny", (), excluded, (), results, as_of, ctx.at)
