"""Rule (per subject): an active consent covers purpose, every category, the recipient and the operation.

Subjects without such a consent are excluded, never silently included. Special
categories need the consent to have been given explicitly.

Everything the rule compares a consent's scope with comes from the action without
its subjects, so a :class:`Matcher` is built once per action shape (the engine keeps
it with the other cached results) and remembers, per shared
:class:`~trust.state.ConsentScope`, whether that scope covers the action. Deciding a
subject is then one dictionary lookup and a walk over that subject's own consents.
"""

from __future__ import annotations

from collections.abc import Iterable

from trust.rules.base import Context, Exclusion, Outcome, ProposedAction, RuleResult, exclusion, rule_result
from trust.state import ConsentScope, ConsentState, RequestState, TrustState, ancestors

NAME = "consent"
_PASS, _FAIL = Outcome.PASS, Outcome.FAIL  # read once: an enum member lookup is slow on the hot path
GAPS_LIMIT = 4096  # remembered scopes per matcher before it starts again
_UNKNOWN = "?"  # not yet looked up (no gap is a single character)
_WHO = {"trust": "revoked by the trust", "organisation": "withdrawn on the person's behalf"}
_NO_CONSENT = "no consent is recorded for this subject"


def _inactive(consent: ConsentState, at: str) -> str | None:
    """Why the consent is not in force at *at* (the whole reason), or None."""
    withdrawal = consent.withdrawal
    if withdrawal is not None and withdrawal[1] <= at:
        who = _WHO.get(withdrawal[2] or "", "withdrawn by the person")
        return f"consent {consent.id} was {who} at {withdrawal[1]} (entry {withdrawal[0]})"
    newer = consent.superseded_by
    if newer is not None and newer.at <= at:
        return f"consent {consent.id} was replaced by a newer consent (entry {newer.seq})"
    if consent.valid_from > at:
        return f"consent {consent.id} only starts at {consent.valid_from}"
    if consent.valid_until is not None and consent.valid_until <= at:
        return f"consent {consent.id} expired at {consent.valid_until}"
    return None


class Matcher:
    """What the rule compares every consent with, for one action (its subjects aside)."""

    __slots__ = ("categories", "gaps", "operation", "purpose", "purposes", "recipient", "request", "special")

    def __init__(self, action: ProposedAction, special: Iterable[str], request: RequestState | None) -> None:
        self.purpose = action.purpose
        self.purposes = ancestors(action.purpose)
        self.categories = tuple((c, ancestors(c)) for c in action.categories)
        self.recipient = action.recipient
        self.operation = action.operation
        self.special = ", ".join(sorted(set(special)))  # "" when no category is special
        self.request = request if request is not None and request.subjects is not None else None
        self.gaps: dict[ConsentScope, str | None] = {}

    def _gap(self, scope: ConsentScope) -> str | None:
        """What *scope* lacks for the action (the words after "consent <id>"), or None."""
        if scope.purpose_set.isdisjoint(self.purposes):
            return f"does not cover the purpose {self.purpose}"
        missing = [c for c, codes in self.categories if scope.category_set.isdisjoint(codes)]
        if missing:
            return f"does not cover {', '.join(missing)}"
        if scope.recipients is not None and self.recipient not in scope.recipients:
            return f"does not name {self.recipient} as a recipient"
        if scope.operations is not None and self.operation not in scope.operations:
            return f"does not allow {self.operation} sharing"
        if self.special and not scope.explicit:
            return f"was not given explicitly, as {self.special} requires"
        return None

    def gap(self, scope: ConsentScope) -> str | None:
        """:meth:`_gap`, remembered per scope."""
        gaps = self.gaps
        found = gaps.get(scope, _UNKNOWN)
        if found is _UNKNOWN:
            if len(gaps) >= GAPS_LIMIT:
                gaps.clear()
            found = gaps[scope] = self._gap(scope)
        return found

    def quick_cover(self, state: TrustState, subject: str, at: str) -> int | None:
        """The seq of the consent covering *subject* in the usual case, else None (then ask :meth:`decide_subject`).

        The usual case: no list of approved people to check, no erasure, and the subject's newest
        consent is in force, never withdrawn or replaced, with a scope already known to cover the action.
        """
        if self.request is not None or subject in state.erased:
            return None
        consent = state.latest_consent.get(subject)
        if (
            consent is not None
            and consent.withdrawal is None
            and consent.superseded_by is None
            and consent.at <= at
            and consent.valid_from <= at
            and (consent.valid_until is None or consent.valid_until > at)
            and self.gaps.get(consent.scope, _UNKNOWN) is None
        ):
            return consent.seq
        return None

    def decide_subject(  # noqa: C901 - the per-subject hot loop, kept in one frame
        self, state: TrustState, subject: str, at: str
    ) -> tuple[int | None, Exclusion | None]:
        """Return ``(consent seq, None)`` when covered, else ``(None, exclusion)``."""
        request = self.request
        if request is not None and subject not in request.subjects:  # type: ignore[operator]
            return None, exclusion(
                subject,
                "request",
                f"not among the people the trustees approved for {request.id}",
                (request.submitted_seq,),
            )
        erased = state.erased.get(subject)
        if erased is not None and erased[1] <= at:
            return None, exclusion(
                subject, NAME, f"the person asked for their data to be erased (entry {erased[0]})", (erased[0],)
            )
        consent = state.latest_consent.get(subject)
        first: str | None = None  # the reason of the newest consent that does not cover: the most relevant
        evidence: list[int] = []
        while consent is not None:  # newest first
            if consent.at > at:  # not given yet at the instant of the check: neither cover nor evidence
                consent = consent.previous
                continue
            withdrawal, newer, until = consent.withdrawal, consent.superseded_by, consent.valid_until
            if (
                (withdrawal is None or withdrawal[1] > at)
                and (newer is None or newer.at > at)
                and consent.valid_from <= at
                and (until is None or until > at)
            ):  # in force (what _inactive checks, inlined): does its scope cover the action?
                gap = self.gaps.get(consent.scope, _UNKNOWN)
                if gap is _UNKNOWN:
                    gap = self.gap(consent.scope)
                if gap is None:
                    return consent.seq, None
                why = f"consent {consent.id} {gap}"
            else:
                why = _inactive(consent, at) or ""
            if first is None:
                first = why
            evidence.append(consent.seq)
            if withdrawal is not None and withdrawal[1] <= at:
                evidence.append(withdrawal[0])
            if newer is not None and newer.at <= at:
                evidence.append(newer.seq)
            consent = consent.previous
        if first is None:
            return None, exclusion(subject, NAME, _NO_CONSENT)
        return None, exclusion(subject, NAME, first, tuple(evidence))

    def evaluate(self, ctx: Context) -> RuleResult:
        """Decide every subject of the action; pass when at least one is covered (the permit then covers only those)."""
        state, at = ctx.state, ctx.at
        permitted, exclusions, covered = ctx.permitted, ctx.exclusions, ctx.consent_evidence
        subjects = ctx.action.subjects
        if len(subjects) > 1:
            subjects = tuple(dict.fromkeys(subjects))
        quick = self.quick_cover
        for subject in subjects:
            seq = quick(state, subject, at)
            if seq is not None:
                permitted.append(subject)
                covered.append(seq)
                continue
            seq, exclusion = self.decide_subject(state, subject, at)
            if exclusion is not None:
                exclusions.append(exclusion)
            else:
                permitted.append(subject)
                if seq is not None:
                    covered.append(seq)
        total = len(subjects)
        if not total:
            return rule_result(NAME, _FAIL, "no subjects were named")
        if not permitted:
            return rule_result(
                NAME,
                _FAIL,
                f"none of the {total} subjects has an active consent covering this use",
                tuple(e for x in exclusions for e in x.evidence),
            )
        excluded = len(exclusions)
        message = (
            _all_covered(total)
            if not excluded
            else f"{len(permitted)} of {total} subjects have an active consent covering this use; {excluded} excluded"
        )
        return rule_result(NAME, _PASS, message, tuple(covered))


def _all_covered(total: int) -> str:
    return f"all {total} subjects have an active consent covering this use"


ONE_COVERED = _all_covered(1)


def one_covered(seq: int) -> RuleResult:
    """The rule's result for an action naming one subject, covered by the consent recorded at *seq*."""
    return rule_result(NAME, _PASS, ONE_COVERED, (seq,))


def decide_subject(ctx: Context, subject: str, special: Iterable[str]) -> tuple[int | None, Exclusion | None]:
    """Return ``(consent seq, None)`` when *subject* is covered, else ``(None, exclusion)``."""
    return Matcher(ctx.action, special, ctx.request).decide_subject(ctx.state, subject, ctx.at)


def evaluate(ctx: Context, special: Iterable[str]) -> RuleResult:
    """Decide every subject; pass when at least one is covered (the permit then covers only those)."""
    return Matcher(ctx.action, special, ctx.request).evaluate(ctx)
