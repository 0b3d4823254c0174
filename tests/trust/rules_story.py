"""Trust histories for rules-engine tests: synthetic ledger entries, folded without a database.

    story = baseline()            # a trust in which org_a may run its approved health research
    story.withdraw("con_3")       # ... then one person withdraws
    decision = story.check()      # evaluated at the story's clock, just after the last entry
    assert story["withdraw:con_3"] in evidence(decision, "consent")

Every step appends one entry with the next sequence number (an agreement appends two: the
trust's signature, then the organisation's) at the story's clock, which then moves on by
``step``. ``at=`` pins one entry's instant; :meth:`Story.wait` and :meth:`Story.moment` move
the clock. ``story[name]`` is the seq of the latest entry recorded under *name*:
``config``, ``vocabulary``, ``org:<id>``, ``suspend:<id>``, ``sign:<agreement>:<version>:trust``,
``sign:<agreement>:<version>:organisation``, ``terminate:<agreement>``, ``request:<id>``,
``decide:<id>``, ``revoke:<id>``, ``ethics:<request or project>``, ``consent:<id>``,
``withdraw:<id>``, ``erase:<subject>``.

Payloads carry every field that ``trust/state.py`` and the projectors of ``trust/projections.py``
and ``consent/projections.py`` read (the formats documented in ``trust/organisations.py``,
``trust/agreements.py``, ``trust/ethics.py``, ``trust/requests.py`` and ``consent/``), so the
same story can be appended to a real ledger: pass ``sink=`` a function that appends an entry
and returns it (see :func:`ledger_sink`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from consent.vocabulary import Vocabulary
from ledger.canonical import canonicalize
from ledger.entry import GENESIS_PREV, LedgerEntry, build_entry, canonical_payload, format_at
from ledger.service import Ledger
from trust.config import GovernanceConfig
from trust.rules.base import ProposedAction, RuleResult
from trust.rules.engine import Decision, Engine
from trust.state import TrustState

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STEP = timedelta(seconds=1)
MICROSECOND = timedelta(microseconds=1)
ADMIN = "person_admin"

Sink = Callable[[str, dict[str, Any], str, datetime], LedgerEntry]
_UNSET: Any = object()


class SyntheticLedger:
    """A sink that makes real, hash-chained entries in memory (no database)."""

    def __init__(self) -> None:
        self.size = 0
        self.prev = GENESIS_PREV

    def __call__(self, kind: str, payload: dict[str, Any], actor: str, at: datetime) -> LedgerEntry:
        """Build the next entry."""
        body, leaf = build_entry(
            seq=self.size,
            kind=kind,
            at=format_at(at),
            actor=actor,
            prev=self.prev,
            payload_bytes=canonical_payload(payload),
        )
        self.size += 1
        self.prev = leaf
        return LedgerEntry.from_body(body)


def ledger_sink(ledger: Ledger) -> Sink:
    """A sink that appends through a real ledger (durable before it returns)."""

    def append(kind: str, payload: dict[str, Any], actor: str, at: datetime) -> LedgerEntry:
        return ledger.append(kind, payload, actor=actor, now=at)

    return append


def _hash(value: object) -> str:
    return hashlib.sha256(canonicalize(value)).hexdigest()


class Story:
    """A trust's history, built step by step; :meth:`state` folds it and :meth:`check` decides."""

    def __init__(
        self,
        *,
        start: datetime = T0,
        step: timedelta = STEP,
        sink: Sink | None = None,
        configure: bool = True,
        prefix: str = "",
    ) -> None:
        self.clock = start
        self.step = step
        self.prefix = prefix
        self.entries: list[LedgerEntry] = []
        self.names: dict[str, int] = {}
        self._sink = sink or SyntheticLedger()
        self._subjects: dict[str, str] = {}  # consent -> subject
        self._durations: dict[str, int] = {}  # request -> duration_days
        self._ethics = 0
        if configure:
            self.configure()

    # -- time and names --------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The story's clock: when the next entry will be recorded (and the default instant of a check)."""
        return self.clock

    @property
    def last(self) -> int:
        """The seq of the latest entry."""
        return self.entries[-1].seq

    def wait(self, delta: timedelta) -> Story:
        """Move the clock on by *delta*."""
        self.clock += delta
        return self

    def moment(self, when: datetime) -> Story:
        """Set the clock to *when*."""
        self.clock = when
        return self

    def __getitem__(self, name: str) -> int:
        """The seq of the latest entry recorded under *name*."""
        return self.names[name]

    def signatures(self, agreement: str, version: int = 1) -> list[int]:
        """Both signature seqs of an agreement version, trust's first."""
        return [self.names[f"sign:{agreement}:{version}:{party}"] for party in ("trust", "organisation")]

    def append(
        self, kind: str, payload: dict[str, Any], *, actor: str = ADMIN, at: datetime | None = None, name: str = ""
    ) -> LedgerEntry:
        """Append one entry at *at* (default: the clock, which then moves on by ``step``)."""
        if at is None:
            at = self.clock
            self.clock += self.step
        entry = self._sink(kind, payload, actor, at)
        self.entries.append(entry)
        if name:
            self.names[name] = entry.seq
        return entry

    # -- governance --------------------------------------------------------------------------

    def configure(
        self,
        *,
        min_cohort_size: int | None = None,
        categories_requiring_approval: Sequence[str] | None = None,
        at: datetime | None = None,
    ) -> Story:
        """Adopt a governance configuration (the shipped default, with the settings given)."""
        config = GovernanceConfig.default()
        if min_cohort_size is not None:
            config = dataclasses.replace(config, min_cohort_size=min_cohort_size)
        if categories_requiring_approval is not None:
            config = dataclasses.replace(config, categories_requiring_approval=tuple(categories_requiring_approval))
        self.append("trust.configured", config.payload(), actor="trust", at=at, name="config")
        return self

    def vocabulary(self, *, special: Iterable[str] = (), at: datetime | None = None) -> Story:
        """Adopt the shipped vocabulary with *special* categories marked special too."""
        document = Vocabulary.default().to_document()
        for code in special:
            document["categories"][code]["special"] = True
        vocabulary = Vocabulary.from_document(document)
        payload = {"vocabulary": vocabulary.to_document(), "vocabulary_hash": vocabulary.hash}
        self.append("trust.configured", payload, actor="trust", at=at, name="vocabulary")
        return self

    def org(self, org: str, *, kind: str = "charity", at: datetime | None = None) -> Story:
        """Register an organisation."""
        org = self.prefix + org
        payload = {"organisation": org, "name": f"Organisation {org}", "kind": kind}
        self.append("org.registered", payload, at=at, name=f"org:{org}")
        return self

    def suspend(self, org: str, *, reason: str = "misuse of data", at: datetime | None = None) -> Story:
        """Suspend an organisation."""
        org = self.prefix + org
        self.append("org.suspended", {"organisation": org, "reason": reason}, at=at, name=f"suspend:{org}")
        return self

    def agreement(
        self,
        agreement: str,
        *,
        org: str = "org_a",
        version: int = 1,
        purposes: Sequence[str] = ("research",),
        categories: Sequence[str] = ("health", "demographics"),
        operations: Sequence[str] = ("aggregate", "pseudonymised"),
        retention_days: int = 180,
        geography: Sequence[str] = ("GB",),
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        supersedes: str | None = None,
        parties: Sequence[str] = ("trust", "organisation"),
        at: datetime | None = None,
    ) -> Story:
        """Propose (the trust signs) and accept (the organisation signs) one version of an agreement."""
        agreement, org = self.prefix + agreement, self.prefix + org
        start = valid_from or at or self.clock
        terms = {
            "agreement": agreement,
            "version": version,
            "supersedes": self.prefix + supersedes if supersedes else None,
            "organisation": org,
            "title": f"Data-use agreement {agreement}",
            "purposes": list(purposes),
            "categories": list(categories),
            "operations": list(operations),
            "retention_days": retention_days,
            "geography": list(geography),
            "valid_from": format_at(start),
            "valid_until": format_at(valid_until or start + timedelta(days=730)),
        }
        terms["terms_hash"] = _hash(terms)
        for party in parties:
            actor = ADMIN if party == "trust" else f"client_{org}"
            self.append(
                "agreement.signed",
                {**terms, "party": party},
                actor=actor,
                at=at,
                name=f"sign:{agreement}:{version}:{party}",
            )
        return self

    def terminate(
        self, agreement: str, *, version: int = 1, reason: str = "ended early", at: datetime | None = None
    ) -> Story:
        """Terminate one version of an agreement."""
        agreement = self.prefix + agreement
        payload = {"agreement": agreement, "version": version, "reason": reason}
        self.append("agreement.terminated", payload, at=at, name=f"terminate:{agreement}")
        return self

    def request(
        self,
        request: str,
        *,
        org: str = "org_a",
        purpose: str = "research.health",
        categories: Sequence[str] = ("health.mental", "demographics.age"),
        operation: str = "pseudonymised",
        subjects: Sequence[str] | None = None,
        cohort_size: int | None = None,
        duration_days: int = 365,
        project: str | None = None,
        at: datetime | None = None,
    ) -> Story:
        """Submit an access request."""
        request, org = self.prefix + request, self.prefix + org
        when = at or self.clock
        self._durations[request] = duration_days
        payload = {
            "request": request,
            "organisation": org,
            "title": f"Request {request}",
            "purpose": purpose,
            "categories": list(categories),
            "operation": operation,
            "subjects": None if subjects is None else [self.prefix + s for s in subjects],
            "cohort": "people the partner supports",
            "cohort_size": cohort_size,
            "duration_days": duration_days,
            "project": project,
            "lay_summary": "We want to understand what helps people in our area.",
            "public_benefit": "Better local services.",
            "five_safes": dict.fromkeys(("people", "projects", "settings", "data", "outputs"), "described"),
            "proportionality": {"necessity": "needed", "minimisation": "minimal", "alternatives": "none"},
            "flags": {
                "special_categories": False,
                "vulnerable_people": False,
                "identifiable_output": operation == "identifiable",
                "ethics_required": False,
            },
            "track": "full",
            "config_seq": self.names.get("config", 0),
            "notice_ends_at": format_at(when + timedelta(days=14)),
            "voting_ends_at": format_at(when + timedelta(days=28)),
        }
        self.append("request.submitted", payload, actor=f"client_{org}", at=at, name=f"request:{request}")
        return self

    def decide(
        self, request: str, *, outcome: str = "approved", expires_at: Any = _UNSET, at: datetime | None = None
    ) -> Story:
        """Record the trustees' decision (an approval runs for the request's duration unless *expires_at*)."""
        request = self.prefix + request
        when = at or self.clock
        if expires_at is _UNSET:
            days = self._durations.get(request, 365)
            expires_at = when + timedelta(days=days) if outcome == "approved" else None
        payload = {
            "request": request,
            "outcome": outcome,
            "reason": "rule_met",
            "rule": "simple_majority+chair_casting_vote",
            "quorum": 3,
            "tally": {"eligible": 5, "recused": 0, "approve": 3, "reject": 0, "abstain": 0, "cast": 3},
            "config_seq": self.names.get("config", 0),
            "votes": [],
            "expires_at": None if expires_at is None else format_at(expires_at),
        }
        self.append("request.decided", payload, actor="trust", at=at, name=f"decide:{request}")
        return self

    def revoke(self, request: str, *, reason: str = "the partner broke its terms", at: datetime | None = None) -> Story:
        """Revoke an approved request."""
        request = self.prefix + request
        self.append("request.revoked", {"request": request, "reason": reason}, at=at, name=f"revoke:{request}")
        return self

    def ethics(
        self,
        *,
        request: str | None = "req_a",
        project: str | None = None,
        outcome: str = "approved",
        conditions_text: str = "",
        obligations: Sequence[tuple[str, Any]] = (),
        expires_at: datetime | None = None,
        at: datetime | None = None,
    ) -> Story:
        """Record an ethics decision on a request, or (``request=None``) on a project."""
        request = self.prefix + request if request else None
        self._ethics += 1
        payload = {
            "decision": f"eth_{self.prefix}{self._ethics}",
            "outcome": outcome,
            "request": request,
            "project": None if request else project,
            "conditions_text": conditions_text,
            "obligations": [{"type": kind, "value": value} for kind, value in obligations],
            "expires_at": None if expires_at is None else format_at(expires_at),
        }
        self.append("ethics.decided", payload, actor="person_ethics", at=at, name=f"ethics:{request or project}")
        return self

    # -- consent -------------------------------------------------------------------------------

    def consent(
        self,
        consent: str,
        *,
        subject: str,
        org: str = "org_a",
        purposes: Sequence[str] = ("research",),
        categories: Sequence[str] = ("health", "demographics"),
        recipients: Sequence[str] | None = None,
        operations: Sequence[str] | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        explicit: bool = True,
        at: datetime | None = None,
    ) -> Story:
        """Record a consent given by *subject*."""
        consent, subject, org = self.prefix + consent, self.prefix + subject, self.prefix + org
        self._subjects[consent] = subject
        payload = {
            "consent": consent,
            "subject": subject,
            "organisation": org,
            "purposes": list(purposes),
            "categories": list(categories),
            "recipients": None if recipients is None else [self.prefix + r for r in recipients],
            "operations": None if operations is None else list(operations),
            "valid_from": format_at(valid_from or at or self.clock),
            "valid_until": None if valid_until is None else format_at(valid_until),
            "explicit": explicit,
            "wording_hash": "0" * 64,
            "wording_version": "2026-01",
            "vocabulary": Vocabulary.default().hash,
            "on_behalf": False,
        }
        self.append("consent.granted", payload, actor=f"client_{org}", at=at, name=f"consent:{consent}")
        return self

    def withdraw(self, consent: str, *, by: str = "subject", at: datetime | None = None) -> Story:
        """Withdraw a consent (``by``: subject, organisation or trust)."""
        consent = self.prefix + consent
        payload = {"consent": consent, "subject": self._subjects[consent], "by": by, "reason": ""}
        self.append("consent.withdrawn", payload, actor=self._subjects[consent], at=at, name=f"withdraw:{consent}")
        return self

    def erase(self, subject: str, *, at: datetime | None = None) -> Story:
        """Erase a subject (their vault key is destroyed; their consents end)."""
        subject = self.prefix + subject
        self.append(
            "subject.erased", {"subject": subject, "by": "subject"}, actor=subject, at=at, name=f"erase:{subject}"
        )
        return self

    # -- deciding --------------------------------------------------------------------------------

    def subjects(self) -> tuple[str, ...]:
        """Every subject who has given consent in this story, in order (without the prefix)."""
        unprefixed = (s.removeprefix(self.prefix) for s in self._subjects.values())
        return tuple(dict.fromkeys(unprefixed))

    def state(self) -> TrustState:
        """The trust state folded from every entry so far."""
        state = TrustState()
        state.apply_all(self.entries)
        return state

    def action(
        self,
        *,
        organisation: str = "org_a",
        purpose: str = "research.health",
        categories: Sequence[str] = ("health.mental",),
        operation: str = "aggregate",
        request: str = "req_a",
        subjects: Sequence[str] | None = None,
        cohort_size: Any = _UNSET,
        geography: str | None = None,
    ) -> ProposedAction:
        """A proposed share (default: org_a's aggregate mental-health research over every consenting subject)."""
        chosen = self.subjects() if subjects is None else tuple(subjects)
        if cohort_size is _UNSET:
            cohort_size = len(chosen) if operation == "aggregate" else None
        return ProposedAction(
            organisation=self.prefix + organisation,
            purpose=purpose,
            categories=tuple(categories),
            operation=operation,
            request=self.prefix + request,
            subjects=tuple(self.prefix + s for s in chosen),
            cohort_size=cohort_size,
            geography=geography,
        )

    def check(self, *, at: datetime | None = None, **action: Any) -> Decision:
        """Decide a proposed share (see :meth:`action`) at *at* (default: the story's clock)."""
        return Engine.standard().decide(self.state(), self.action(**action), at=format_at(at or self.clock))


# A check the baseline trust permits over HTTP: org_a's approved request req_a, twelve consenting people.
BASELINE_CHECK: dict[str, Any] = {
    "purpose": "research.health",
    "data_categories": ["health.mental"],
    "operation": "aggregate",
    "request": "req_a",
    "subjects": [f"sub_{n}" for n in range(1, 13)],
    "cohort_size": 12,
}


def baseline(**options: Any) -> Story:
    """A trust in which org_a may run its approved mental-health research on twelve consenting people.

    The default check (aggregate, ``health.mental`` for ``research.health``, cohort 12, under
    ``req_a``) is a permit. org_b is registered too, with no agreement and no request.
    """
    story = Story(**options)  # seq 0: the shipped governance config (min cohort 10; health needs ethics)
    story.org("org_a").org("org_b")
    story.agreement("agr_a")  # research; health + demographics; aggregate + pseudonymised; GB; keep 180 days
    story.request("req_a")  # research.health; health.mental + demographics.age; pseudonymised; 365 days
    story.decide("req_a")
    story.ethics(request="req_a")
    for n in range(1, 13):
        story.consent(f"con_{n}", subject=f"sub_{n}")  # research; health + demographics; explicit
    return story


def reason(decision: Decision, rule: str) -> RuleResult:
    """The outcome of one rule in a decision."""
    found = [r for r in decision.reasons if r.rule == rule]
    assert len(found) == 1, f"expected one reason from rule {rule}, got {len(found)}"
    return found[0]


def outcome(decision: Decision, rule: str) -> str:
    """The outcome of one rule, as the answer spells it."""
    return str(reason(decision, rule).outcome)


def evidence(decision: Decision, rule: str) -> list[int]:
    """The evidence seqs of one rule, as the answer lists them (sorted, without repeats)."""
    return list(reason(decision, rule).to_json()["evidence"])


def excluded(decision: Decision) -> dict[str, str]:
    """Excluded subjects and the rule that excluded each."""
    return {x.subject: x.rule for x in decision.excluded}


def exclusion_reason(decision: Decision, subject: str) -> str:
    """Why one subject was excluded."""
    return next(x.reason for x in decision.excluded if x.subject == subject)
