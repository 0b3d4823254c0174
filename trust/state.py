"""The in-memory index the rules engine reads: the trust's state, folded from ledger entries.

The index is a pure fold over entries in sequence order (``apply``). It keeps full
history with timestamps (ISO strings from ``format_at``, which sort correctly as
text), so it can answer "as of instant t" without re-reading the database: a fact
counts at ``t`` when its entry's ``at`` is no later than ``t``.

Everything the check needs is found through dictionaries keyed the way the check
asks (organisation, request id, subject, organisation + purpose), so a check costs
the same with ten agreements or ten thousand.

Payload fields read here are documented by the modules that write them
(``consent/``, ``trust/organisations.py``, ``trust/agreements.py``,
``trust/ethics.py``, ``trust/requests.py``, ``trust/config.py``).
"""

from __future__ import annotations

import bisect
import functools
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from consent.vocabulary import Vocabulary
from ledger.entry import LedgerEntry, format_at, parse_at

OPERATIONS = ("aggregate", "pseudonymised", "identifiable")  # least to most identifying
TEXTS_LIMIT = 65_536  # distinct shared texts kept by TrustState.text before it starts again


def covers(broader: str, narrower: str) -> bool:
    """Whether dotted code *broader* covers *narrower* (itself or a descendant)."""
    return narrower == broader or narrower.startswith(broader + ".")


@functools.lru_cache(maxsize=4096)
def ancestors(code: str) -> tuple[str, ...]:
    """*code* and every broader code above it, narrowest first (``a.b.c`` → ``a.b.c, a.b, a``)."""
    parts = code.split(".")
    return tuple(".".join(parts[:i]) for i in range(len(parts), 0, -1))


_intern: dict[tuple[str, ...], tuple[str, ...]] = {}


def _tuple(values: Iterable[str] | None) -> tuple[str, ...]:
    key = tuple(sys.intern(str(v)) for v in values or ())
    return _intern.setdefault(key, key)


@dataclass(slots=True)
class OrgState:
    """An organisation's standing."""

    id: str
    registered_seq: int
    registered_at: str
    suspended_seq: int | None = None
    suspended_at: str | None = None
    reason: str = ""


@dataclass(slots=True)
class AgreementState:
    """One version of a data-use agreement and its signatures."""

    id: str
    version: int
    organisation: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    operations: tuple[str, ...]
    retention_days: int | None
    geography: tuple[str, ...]
    valid_from: str
    valid_until: str | None
    terms_hash: str
    signed: dict[str, tuple[int, str]] = field(default_factory=dict)  # party -> (seq, at)
    terminated_seq: int | None = None
    terminated_at: str | None = None
    superseded_seq: int | None = None
    superseded_at: str | None = None

    def in_force_seqs(self, at: str) -> list[int] | None:
        """Evidence seqs if in force at *at*, else None."""
        if set(self.signed) != {"trust", "organisation"}:
            return None
        if any(signed_at > at for _seq, signed_at in self.signed.values()):
            return None
        if self.valid_from > at or (self.valid_until is not None and self.valid_until <= at):
            return None
        if self.terminated_at is not None and self.terminated_at <= at:
            return None
        if self.superseded_at is not None and self.superseded_at <= at:
            return None
        return sorted(seq for seq, _ in self.signed.values())


@dataclass(slots=True)
class EthicsState:
    """An ethics decision."""

    id: str
    seq: int
    at: str
    outcome: str
    request: str | None
    project: str | None
    conditions_text: str
    obligations: tuple[tuple[str, Any], ...]
    expires_at: str | None


@dataclass(slots=True)
class RequestState:
    """An access request and its decision."""

    id: str
    organisation: str
    purpose: str
    categories: tuple[str, ...]
    operation: str
    subjects: frozenset[str] | None
    cohort_size: int | None
    duration_days: int | None
    flags: dict[str, Any]
    submitted_seq: int
    submitted_at: str
    project: str | None = None
    decided_seq: int | None = None
    decided_at: str | None = None
    outcome: str | None = None
    revoked_seq: int | None = None
    revoked_at: str | None = None
    expires_at: str | None = None  # decision time plus duration, set when decided


class ConsentScope:
    """What a consent allows, shared by every consent of the same scope (most consents repeat a few scopes).

    ``purpose_set`` and ``category_set`` hold the codes for cover tests: a code is covered when one
    of its :func:`ancestors` (itself included) is in the set, which is what :func:`covers` decides.
    """

    __slots__ = (
        "categories",
        "category_set",
        "explicit",
        "operations",
        "organisation",
        "purpose_set",
        "purposes",
        "recipients",
    )

    def __init__(  # noqa: PLR0917 - the scope's fields, in order
        self,
        organisation: str,
        purposes: tuple[str, ...],
        categories: tuple[str, ...],
        recipients: tuple[str, ...] | None,
        operations: tuple[str, ...] | None,
        explicit: bool,
    ) -> None:
        self.organisation = organisation
        self.purposes = purposes
        self.categories = categories
        self.recipients = recipients
        self.operations = operations
        self.explicit = explicit
        self.purpose_set = frozenset(purposes)
        self.category_set = frozenset(categories)

    def covers_purpose(self, purpose: str) -> bool:
        """Whether some purpose of the scope covers *purpose*."""
        return not self.purpose_set.isdisjoint(ancestors(purpose))

    def covers_category(self, category: str) -> bool:
        """Whether some category of the scope covers *category*."""
        return not self.category_set.isdisjoint(ancestors(category))

    def covers_scope(self, other: ConsentScope) -> bool:
        """Whether this scope covers every purpose and every category of *other* (a newer consent supersedes)."""
        return all(self.covers_purpose(p) for p in other.purposes) and all(
            self.covers_category(c) for c in other.categories
        )


class ConsentState:
    """One consent as the engine needs it, kept small: an index may hold millions.

    Scope fields live in a shared :class:`ConsentScope`; the subject's consents are chained
    newest first through ``previous`` (``TrustState.latest_consent`` holds the newest); an
    ending is a ``(seq, at, by)`` withdrawal or the newer consent that superseded this one.
    ``valid_from`` is the same string object as ``at`` when the consent starts when recorded.
    """

    __slots__ = (
        "at",
        "id",
        "previous",
        "scope",
        "seq",
        "subject",
        "superseded_by",
        "valid_from",
        "valid_until",
        "withdrawal",
    )

    def __init__(  # noqa: PLR0917 - called once per consent while folding: positional is quicker
        self,
        id: str,  # noqa: A002 - the consent id, as the ledger names it
        subject: str,
        scope: ConsentScope,
        seq: int,
        at: str,
        valid_from: str,
        valid_until: str | None,
        previous: ConsentState | None = None,
    ) -> None:
        self.id = id
        self.subject = subject
        self.scope = scope
        self.seq = seq
        self.at = at
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.withdrawal: tuple[int, str, str] | None = None  # (seq, at, by)
        self.superseded_by: ConsentState | None = None
        self.previous = previous

    def __repr__(self) -> str:
        return f"ConsentState({self.id!r}, subject={self.subject!r}, seq={self.seq})"

    @property
    def organisation(self) -> str:
        """The collecting organisation."""
        return self.scope.organisation

    @property
    def purposes(self) -> tuple[str, ...]:
        """Purpose codes, as given."""
        return self.scope.purposes

    @property
    def categories(self) -> tuple[str, ...]:
        """Data category codes, as given."""
        return self.scope.categories

    @property
    def recipients(self) -> tuple[str, ...] | None:
        """Named recipients (None: any the trust approves)."""
        return self.scope.recipients

    @property
    def operations(self) -> tuple[str, ...] | None:
        """Allowed operations (None: every operation)."""
        return self.scope.operations

    @property
    def explicit(self) -> bool:
        """Whether consent was given explicitly."""
        return self.scope.explicit

    @property
    def withdrawn_seq(self) -> int | None:
        """The seq of the withdrawal, if withdrawn."""
        return None if self.withdrawal is None else self.withdrawal[0]

    @property
    def withdrawn_at(self) -> str | None:
        """When it was withdrawn, if it was."""
        return None if self.withdrawal is None else self.withdrawal[1]

    @property
    def withdrawn_by(self) -> str | None:
        """Who withdrew it (subject, organisation or trust), if anyone did."""
        return None if self.withdrawal is None else self.withdrawal[2]

    @property
    def superseded_seq(self) -> int | None:
        """The seq of the newer consent that replaced this one, if any."""
        return None if self.superseded_by is None else self.superseded_by.seq

    @property
    def superseded_at(self) -> str | None:
        """When the newer consent that replaced this one was recorded, if any."""
        return None if self.superseded_by is None else self.superseded_by.at


@dataclass(slots=True)
class ConfigState:
    """A governance configuration and when it took effect.

    ``governance`` is the document of ``trust/config.py`` (``outputs.min_cohort_size``,
    ``ethics.categories_requiring_approval``); the settings the rules read are taken out
    of it once, when the entry is folded.
    """

    seq: int
    at: str
    governance: dict[str, Any]
    min_cohort_size: int | None = None
    ethics_categories: frozenset[str] = frozenset()

    @classmethod
    def from_governance(cls, seq: int, at: str, governance: dict[str, Any]) -> ConfigState:
        """Read the settings the rules need out of a governance document."""
        outputs = governance.get("outputs")
        minimum = outputs.get("min_cohort_size") if isinstance(outputs, dict) else None
        ethics = governance.get("ethics")
        listed = ethics.get("categories_requiring_approval") if isinstance(ethics, dict) else None
        return cls(
            seq,
            at,
            governance,
            min_cohort_size=None if minimum is None else int(minimum),
            ethics_categories=frozenset(str(code) for code in listed or ()),
        )

    def requires_ethics(self, category: str) -> bool:
        """Whether this configuration lists *category* (or a broader code above it) as needing ethics approval."""
        listed = self.ethics_categories
        return bool(listed) and any(code in listed for code in ancestors(category))


@functools.cache
def default_special_categories() -> frozenset[str]:
    """Special categories of the shipped vocabulary, which applies until a trust adopts its own."""
    return frozenset(code for code, term in Vocabulary.default().categories.items() if term.special)


@dataclass
class TrustState:
    """The fold of every entry up to ``head``. Guard reads and writes with ``lock``."""

    head: int = -1
    orgs: dict[str, OrgState] = field(default_factory=dict)
    agreements: dict[tuple[str, int], AgreementState] = field(default_factory=dict)
    latest_agreement: dict[str, AgreementState] = field(default_factory=dict)
    agreements_by_org_purpose: dict[tuple[str, str], list[AgreementState]] = field(
        default_factory=lambda: defaultdict(list)
    )
    ethics_by_request: dict[str, list[EthicsState]] = field(default_factory=lambda: defaultdict(list))
    ethics_by_project: dict[str, list[EthicsState]] = field(default_factory=lambda: defaultdict(list))
    requests: dict[str, RequestState] = field(default_factory=dict)
    # subject -> their newest consent (older ones chained through ``previous``); no index by consent id: a
    # withdrawal names the subject, and a dictionary of a million ids would cost ~40 MB (see ``consents``)
    latest_consent: dict[str, ConsentState] = field(default_factory=dict)
    erased: dict[str, tuple[int, str]] = field(default_factory=dict)
    configs: list[ConfigState] = field(default_factory=list)
    special_categories: frozenset[str] = field(default_factory=default_special_categories)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Bumped by every entry that changes what the global rules read (everything but consents and erasures):
    # results of those rules, cached by the engine, are valid only within one generation.
    generation: int = field(default=0, init=False, compare=False)
    rule_cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _boundaries: tuple[int, tuple[str, ...]] = field(default=(-1, ()), init=False, repr=False, compare=False)
    _window: tuple[int, int, str, str | None] = field(default=(-1, 0, "", None), init=False, repr=False, compare=False)
    _scopes: dict[tuple[Any, ...], ConsentScope] = field(default_factory=dict, init=False, repr=False, compare=False)
    _texts: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- folding -------------------------------------------------------------------------

    def apply_all(self, entries: Iterable[LedgerEntry]) -> None:
        """Fold *entries* (in sequence order, continuing from ``head``)."""
        with self.lock:
            for entry in entries:
                if entry.seq <= self.head:
                    continue
                handler = _HANDLERS.get(entry.kind)
                if handler is not None:
                    handler(self, entry)
                    if entry.kind not in SUBJECT_KINDS:
                        self.generation += 1
                self.head = entry.seq

    # -- reads ---------------------------------------------------------------------------

    def config_at(self, at: str) -> ConfigState | None:
        """The governance configuration in force at *at*."""
        current = None
        for config in self.configs:
            if config.at <= at:
                current = config
        return current

    def time_window(self, at: str) -> int:
        """How many instants the global rules compare with are no later than *at*.

        Every time-dependent condition of the organisation, agreement, request, ethics,
        proportionality and retention rules has the form ``instant <= at`` for an instant
        recorded in this state; two moments with the same window (and the same date, which
        dated obligations are counted from) therefore get the same answers from those rules.
        """
        generation, window, low, high = self._window  # the last answer and the instants around it
        if generation == self.generation and low <= at and (high is None or at < high):
            return window
        generation, instants = self._boundaries
        if generation != self.generation:
            instants = tuple(sorted({instant for instant in self._instants() if instant is not None}))
            self._boundaries = (self.generation, instants)
        window = bisect.bisect_right(instants, at)
        low = instants[window - 1] if window else ""
        self._window = (self.generation, window, low, instants[window] if window < len(instants) else None)
        return window

    def _instants(self) -> Iterable[str | None]:
        for org in self.orgs.values():
            yield from (org.registered_at, org.suspended_at)
        for agreement in self.agreements.values():
            yield from (agreement.valid_from, agreement.valid_until, agreement.terminated_at, agreement.superseded_at)
            yield from (signed_at for _seq, signed_at in agreement.signed.values())
        for request in self.requests.values():
            yield from (request.submitted_at, request.decided_at, request.revoked_at, request.expires_at)
        for decisions in (*self.ethics_by_request.values(), *self.ethics_by_project.values()):
            for decision in decisions:
                yield from (decision.at, decision.expires_at)
        yield from (config.at for config in self.configs)

    @property
    def consents(self) -> dict[str, ConsentState]:
        """Every consent by id (built on each call, for tools and seeds: the engine never needs it)."""
        found: dict[str, ConsentState] = {}
        for subject in self.latest_consent:
            for consent in self.consents_of(subject):
                found[consent.id] = consent
        return found

    def find_consent(self, consent: str, subject: str | None) -> ConsentState | None:
        """The consent with id *consent*, looked up among *subject*'s (every subject's when not given)."""
        if subject is None:
            return self.consents.get(consent)
        found = self.latest_consent.get(subject)
        while found is not None and found.id != consent:
            found = found.previous
        return found

    def consents_of(self, subject: str) -> list[ConsentState]:
        """The consents *subject* gave, oldest first."""
        found: list[ConsentState] = []
        consent = self.latest_consent.get(subject)
        while consent is not None:
            found.append(consent)
            consent = consent.previous
        found.reverse()
        return found

    def scope(  # noqa: PLR0917 - the fields of ConsentScope, in order
        self,
        organisation: str,
        purposes: tuple[str, ...],
        categories: tuple[str, ...],
        recipients: tuple[str, ...] | None,
        operations: tuple[str, ...] | None,
        explicit: bool,
    ) -> ConsentScope:
        """The shared scope object for these values."""
        key = (organisation, purposes, categories, recipients, operations, explicit)
        found = self._scopes.get(key)
        if found is None:
            found = self._scopes[key] = ConsentScope(
                organisation, purposes, categories, recipients, operations, explicit
            )
        return found

    def text(self, value: str) -> str:
        """One shared object for a repeated text (timestamps such as a common ``valid_from``)."""
        texts = self._texts
        found = texts.get(value)
        if found is None:
            if len(texts) >= TEXTS_LIMIT:  # mostly distinct values: start again (texts kept so far stay shared)
                texts.clear()
            found = texts[value] = value
        return found

    def is_special(self, category: str) -> bool:
        """Whether *category* (or a broader code above it) is a special category."""
        special = self.special_categories
        return any(code in special for code in ancestors(category))


def _org_registered(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    state.orgs[p["organisation"]] = OrgState(p["organisation"], e.seq, e.at)


def _org_suspended(state: TrustState, e: LedgerEntry) -> None:
    org = state.orgs.get(e.payload["organisation"])
    if org is not None and org.suspended_seq is None:
        org.suspended_seq, org.suspended_at, org.reason = e.seq, e.at, str(e.payload.get("reason", ""))


def _agreement_signed(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    key = (p["agreement"], int(p.get("version", 1)))
    agreement = state.agreements.get(key)
    if agreement is None:
        agreement = AgreementState(
            id=p["agreement"],
            version=key[1],
            organisation=p["organisation"],
            purposes=_tuple(p.get("purposes")),
            categories=_tuple(p.get("categories")),
            operations=_tuple(p.get("operations")),
            retention_days=p.get("retention_days"),
            geography=_tuple(p.get("geography")),
            valid_from=p.get("valid_from") or e.at,
            valid_until=p.get("valid_until"),
            terms_hash=str(p.get("terms_hash", "")),
        )
        state.agreements[key] = agreement
        for purpose in agreement.purposes:
            state.agreements_by_org_purpose[(agreement.organisation, purpose)].append(agreement)
    if str(p.get("terms_hash", "")) != agreement.terms_hash or agreement.signed.get(str(p.get("party"))):
        return
    agreement.signed[str(p.get("party", "organisation"))] = (e.seq, e.at)
    if set(agreement.signed) != {"trust", "organisation"}:
        return
    # Fully signed: this version now supersedes the previous version and any agreement it names.
    replaced = [state.latest_agreement.get(agreement.id), state.latest_agreement.get(str(p.get("supersedes") or ""))]
    for older in replaced:
        if older is not None and older is not agreement and older.superseded_seq is None:
            older.superseded_seq, older.superseded_at = e.seq, e.at
    state.latest_agreement[agreement.id] = agreement


def _agreement_terminated(state: TrustState, e: LedgerEntry) -> None:
    version = e.payload.get("version")
    if version is None:
        agreement = state.latest_agreement.get(e.payload["agreement"])
    else:  # trust/agreements.py names the version it terminates
        agreement = state.agreements.get((e.payload["agreement"], int(version)))
    if agreement is not None and agreement.terminated_seq is None:
        agreement.terminated_seq, agreement.terminated_at = e.seq, e.at


def _ethics_decided(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    obligations = tuple((str(o.get("type")), o.get("value")) for o in p.get("obligations") or ())
    decision = EthicsState(
        id=p.get("decision", f"eth_{e.seq}"),
        seq=e.seq,
        at=e.at,
        outcome=p.get("outcome", "rejected"),
        request=p.get("request"),
        project=p.get("project"),
        conditions_text=str(p.get("conditions_text") or ""),
        obligations=obligations,
        expires_at=p.get("expires_at"),
    )
    if decision.request:
        state.ethics_by_request[decision.request].append(decision)
    elif decision.project:
        state.ethics_by_project[decision.project].append(decision)


def _request_submitted(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    subjects = p.get("subjects")
    state.requests[p["request"]] = RequestState(
        id=p["request"],
        organisation=p["organisation"],
        purpose=p["purpose"],
        categories=_tuple(p.get("categories")),
        operation=p.get("operation", "aggregate"),
        subjects=frozenset(subjects) if subjects else None,
        cohort_size=p.get("cohort_size"),
        duration_days=p.get("duration_days"),
        flags=dict(p.get("flags") or {}),
        submitted_seq=e.seq,
        submitted_at=e.at,
        project=p.get("project") or None,
    )


def _request_decided(state: TrustState, e: LedgerEntry) -> None:
    request = state.requests.get(e.payload["request"])
    if request is not None and request.decided_seq is None:
        request.decided_seq, request.decided_at, request.outcome = e.seq, e.at, e.payload.get("outcome")
        if "expires_at" in e.payload:  # trust/requests.py records the end of an approval (null when rejected)
            request.expires_at = e.payload["expires_at"]
        elif request.duration_days is not None:
            request.expires_at = format_at(parse_at(e.at) + timedelta(days=int(request.duration_days)))


def _request_revoked(state: TrustState, e: LedgerEntry) -> None:
    request = state.requests.get(e.payload["request"])
    if request is not None and request.revoked_seq is None:
        request.revoked_seq, request.revoked_at = e.seq, e.at


def _consent_granted(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    recipients = p.get("recipients")
    operations = p.get("operations")
    scope = state.scope(
        sys.intern(p.get("organisation", "")),
        _tuple(p.get("purposes")),
        _tuple(p.get("categories")),
        None if recipients is None else _tuple(recipients),
        None if operations is None else _tuple(operations),
        bool(p.get("explicit", False)),
    )
    at = e.at
    valid_from = p.get("valid_from") or at
    valid_from = at if valid_from == at else state.text(valid_from)
    valid_until = p.get("valid_until")
    if valid_until is not None:
        valid_until = state.text(valid_until)
    subject = p["subject"]
    previous = state.latest_consent.get(subject)
    if previous is not None:
        subject = previous.subject  # one string object per subject
    consent = ConsentState(p["consent"], subject, scope, e.seq, at, valid_from, valid_until, previous)
    old = previous
    while old is not None:
        if old.superseded_by is None and old.withdrawal is None and scope.covers_scope(old.scope):
            old.superseded_by = consent
        old = old.previous
    state.latest_consent[subject] = consent


def _consent_withdrawn(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    consent = state.find_consent(p["consent"], p.get("subject"))
    if consent is not None and consent.withdrawal is None:
        consent.withdrawal = (e.seq, e.at, sys.intern(str(p.get("by", "subject"))))


def _subject_erased(state: TrustState, e: LedgerEntry) -> None:
    state.erased.setdefault(e.payload["subject"], (e.seq, e.at))


def _trust_configured(state: TrustState, e: LedgerEntry) -> None:
    p = e.payload
    governance = p.get("governance")
    if governance is None and "settings" in p and isinstance(p["settings"], dict):
        governance = p["settings"].get("governance")
    if isinstance(governance, dict):
        state.configs.append(ConfigState.from_governance(e.seq, e.at, governance))
    vocabulary = p.get("vocabulary")
    if isinstance(vocabulary, dict):
        state.special_categories = frozenset(_special_codes(vocabulary))


def _special_codes(vocabulary: dict[str, Any]) -> list[str]:
    """Special category codes from a vocabulary document ({"categories": {code: {"special": bool}}} or a list)."""
    categories = vocabulary.get("categories", {})
    if isinstance(categories, dict):
        return [code for code, item in categories.items() if isinstance(item, dict) and item.get("special")]
    if isinstance(categories, list):
        return [item["code"] for item in categories if isinstance(item, dict) and item.get("special")]
    return []


_HANDLERS: dict[str, Callable[[TrustState, LedgerEntry], None]] = {
    "org.registered": _org_registered,
    "org.suspended": _org_suspended,
    "agreement.signed": _agreement_signed,
    "agreement.terminated": _agreement_terminated,
    "ethics.decided": _ethics_decided,
    "request.submitted": _request_submitted,
    "request.decided": _request_decided,
    "request.revoked": _request_revoked,
    "consent.granted": _consent_granted,
    "consent.withdrawn": _consent_withdrawn,
    "subject.erased": _subject_erased,
    "trust.configured": _trust_configured,
}

INDEXED_KINDS = frozenset(_HANDLERS)
SUBJECT_KINDS = frozenset({"consent.granted", "consent.withdrawn", "subject.erased"})  # read by the consent rule only
