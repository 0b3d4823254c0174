"""Types shared by the rules: the proposed action, a rule's outcome, a decision."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ledger.entry import canonical_payload, parse_at
from trust.state import OPERATIONS, RequestState, TrustState

DEFAULT_MIN_COHORT = 10  # trust/governance.toml [outputs] min_cohort_size, when no configuration says otherwise


class Outcome(StrEnum):
    """What one rule concluded."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    INDETERMINATE = "indeterminate"  # the rule cannot compute a condition (e.g. one written only in words)


@dataclass(frozen=True, slots=True)
class ProposedAction:
    """What a partner proposes to do. ``organisation`` comes from the token, never the body."""

    organisation: str
    purpose: str
    categories: tuple[str, ...]
    operation: str
    request: str
    subjects: tuple[str, ...]
    cohort_size: int | None = None
    geography: str | None = None

    @property
    def recipient(self) -> str:
        """The organisation that would receive the data: always the caller's own."""
        return self.organisation

    def to_json(self) -> dict[str, Any]:
        """The action as recorded in ``check.decided``."""
        return {
            "organisation": self.organisation,
            "purpose": self.purpose,
            "data_categories": list(self.categories),
            "operation": self.operation,
            "request": self.request,
            "subjects": list(self.subjects),
            "cohort_size": self.cohort_size,
            "geography": self.geography,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProposedAction:
        """Rebuild an action from a recorded decision."""
        return cls(
            organisation=data["organisation"],
            purpose=data["purpose"],
            categories=tuple(data["data_categories"]),
            operation=data["operation"],
            request=data["request"],
            subjects=tuple(data["subjects"]),
            cohort_size=data.get("cohort_size"),
            geography=data.get("geography"),
        )


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's outcome, in plain words, with the ledger entries it relied on."""

    rule: str
    outcome: Outcome
    message: str
    evidence: tuple[int, ...] = ()
    obligations: tuple[tuple[str, Any], ...] = ()
    # The JSON, worked out by the first to_json and copied by the next ones (the engine shows cached results often).
    _shown: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    # Its RFC 8785 bytes, worked out once (see canonical_reason).
    _canonical: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The reason as the check answer shows it (a fresh dict and list every time)."""
        shown = self._shown
        if shown is None:
            shown = _show(self)
            _set_shown(self, shown)
        copy = shown.copy()
        copy["evidence"] = shown["evidence"].copy()
        return copy


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A subject left out of a permit, and why."""

    subject: str
    rule: str
    reason: str
    evidence: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As the check answer shows it."""
        return {"subject": self.subject, "rule": self.rule, "reason": self.reason}


# Hot paths build results, exclusions and decisions through the slots' own setters: the same frozen
# objects as their dataclass constructors make, at half the cost (those call object.__setattr__ per field).
_new = object.__new__
_set_rule, _set_outcome, _set_message, _set_evidence, _set_obligations, _set_shown, _set_canonical = (
    getattr(RuleResult, name).__set__
    for name in ("rule", "outcome", "message", "evidence", "obligations", "_shown", "_canonical")
)
_set_subject, _set_xrule, _set_reason, _set_xevidence = (
    getattr(Exclusion, name).__set__ for name in ("subject", "rule", "reason", "evidence")
)


def rule_result(
    rule: str,
    outcome: Outcome,
    message: str,
    evidence: tuple[int, ...] = (),
    obligations: tuple[tuple[str, Any], ...] = (),
) -> RuleResult:
    """``RuleResult(rule, outcome, message, evidence, obligations)``, built faster (see above)."""
    result: RuleResult = _new(RuleResult)
    _set_rule(result, rule)
    _set_outcome(result, outcome)
    _set_message(result, message)
    _set_evidence(result, evidence)
    _set_obligations(result, obligations)
    _set_shown(result, None)
    _set_canonical(result, None)
    return result


def canonical_reason(result: RuleResult) -> bytes:
    """The RFC 8785 bytes of ``result.to_json()``, worked out once per result (cached results recur)."""
    canonical = result._canonical  # noqa: SLF001 - the cache of this module's own class
    if canonical is None:
        canonical = canonical_payload(result.to_json())
        _set_canonical(result, canonical)
    return canonical


_OUTCOME_TEXT = {outcome: str(outcome) for outcome in Outcome}  # plain strings, looked up faster than str()


def _show(result: RuleResult) -> dict[str, Any]:
    """*result* as the check answer shows it, built anew."""
    evidence = result.evidence
    return {
        "rule": result.rule,
        "outcome": _OUTCOME_TEXT.get(result.outcome) or str(result.outcome),
        "message": result.message,
        "evidence": list(evidence) if len(evidence) < 2 else sorted(set(evidence)),  # noqa: PLR2004 - already in order
    }


def show_reasons(results: Iterable[RuleResult]) -> list[dict[str, Any]]:
    """``[result.to_json() for result in results]``, in one frame (a decision shows seven or so on every check).

    A result shown before (the engine's cached results are shown once when cached) is copied;
    one that was not (the consent rule's, new on every check) is built without being kept.
    """
    shown_all: list[dict[str, Any]] = []
    append = shown_all.append
    for result in results:
        shown = result._shown  # noqa: SLF001 - the cache of this module's own class
        if shown is None:
            append(_show(result))
        else:
            copy = shown.copy()
            copy["evidence"] = shown["evidence"].copy()
            append(copy)
    return shown_all


def exclusion(subject: str, rule: str, reason: str, evidence: tuple[int, ...] = ()) -> Exclusion:
    """``Exclusion(subject, rule, reason, evidence)``, built faster (see above)."""
    excluded: Exclusion = _new(Exclusion)
    _set_subject(excluded, subject)
    _set_xrule(excluded, rule)
    _set_reason(excluded, reason)
    _set_xevidence(excluded, evidence)
    return excluded


@dataclass(slots=True)
class Context:
    """What the rules share while deciding one action: the state, the instant, resolved records."""

    state: TrustState
    action: ProposedAction
    at: str
    request: RequestState | None = None
    permitted: list[str] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    consent_evidence: list[int] = field(default_factory=list)
    special: tuple[str, ...] | None = None  # categories needing ethics approval, computed once

    @property
    def now(self) -> datetime:
        """The instant of the check as a datetime."""
        return parse_at(self.at)

    @property
    def min_cohort(self) -> int:
        """The minimum cohort size for aggregate outputs (``outputs.min_cohort_size``) in force (default 10)."""
        config = self.state.config_at(self.at)
        if config is None or config.min_cohort_size is None:
            return DEFAULT_MIN_COHORT
        return config.min_cohort_size


def operation_rank(operation: str) -> int:
    """Position of *operation* from least to most identifying (unknown operations rank highest)."""
    return OPERATIONS.index(operation) if operation in OPERATIONS else len(OPERATIONS)
