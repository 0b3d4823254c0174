"""Replay: every decision recorded over a randomly evolving trust replays to the identical answer.

Hypothesis drives random interleavings of grants, withdrawals, erasures, suspensions, agreement
amendments and terminations, requests, decisions, revocations, ethics decisions, configuration
changes, clock ticks (0 µs, 1 µs, … 20 days) and checks. Every step is appended through the real
ledger of the ``instance`` fixture (SQLite and PostgreSQL) and every check is decided by its live
:class:`~trust.checks.CheckService` and recorded; each example then replays each of its recorded
decisions with :func:`~trust.checks.replay_check`, which folds the ledger prefix the decision saw.

Each step is one Hypothesis draw: an integer naming the step's kind and a seed for its details
(drawn from ``random.Random(seed)``), which keeps the ~1,700 steps of a run cheap to generate and
still shrinks towards simpler runs. Examples share one ledger (each under its own id prefix, at its
own stretch of time), so the prefixes replay folds grow as the run goes on, as in a real trust. To
keep the run short, consecutive changes are appended together (``append_all``: one commit, still
one entry and one seq each, in order) and consecutive checks are decided concurrently (group
commit); changes are always appended before the checks that follow them, and checks are recorded
before the changes that follow them.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.instance import Instance
from ledger.entry import LedgerEntry
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from tests.trust.rules_story import MICROSECOND, T0, Story
from trust.checks import CheckService, replay_check
from trust.rules.base import ProposedAction

EXAMPLES = 10
CHECKS_PER_EXAMPLE = 100  # EXAMPLES x CHECKS_PER_EXAMPLE = 1,000 recorded and replayed decisions per database
SUBJECTS = [f"sub_{n}" for n in range(1, 9)]
ORGS = ["org_a", "org_b", "org_c"]
PURPOSES = ["research", "research.health", "research.social"]
CATEGORIES = ["health", "health.mental", "demographics", "demographics.age", "housing"]
PLAUSIBLE_CATEGORIES = ["health.mental", "demographics.age"]
OPERATIONS = ["aggregate", "pseudonymised", "identifiable"]
TICKS = [timedelta(0), MICROSECOND, timedelta(seconds=1), timedelta(hours=1), timedelta(days=1), timedelta(days=20)]
PROJECT = "Healthy Minds"
# Step kinds, repeated to weight them: about seven steps in ten are checks. (Replay folds the
# prefix a decision saw, so the run's cost grows with checks x changes: changes are kept fewer.)
STEPS = (
    ["check"] * 45
    + ["tick"] * 4
    + ["grant"] * 3
    + ["withdraw"] * 2
    + ["submit", "decide", "decide", "ethics", "amend", "erase", "revoke", "terminate", "agreement", "config"]
    + ["suspend"]
)
SEEDS = 2**20
STEP = st.integers(0, len(STEPS) * SEEDS - 1)  # kind = STEPS[n % len(STEPS)], seed = n // len(STEPS)


def subset(rng: random.Random, values: list[str], *favourites: list[str]) -> list[str]:
    """One of the *favourites* half the time, else any non-empty subset of *values*."""
    if favourites and rng.random() < 0.5:
        return list(rng.choice(favourites))
    chosen = [v for v in values if rng.random() < 0.5]
    return chosen or [rng.choice(values)]


class BufferedSink:
    """A story sink that holds changes until :meth:`flush` appends them together, in order."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.specs: list[AppendSpec] = []

    def __call__(self, kind: str, payload: dict[str, Any], actor: str, at: datetime) -> LedgerEntry:
        """Hold one change (its seq is not known yet: the story's names are not used here)."""
        self.specs.append(AppendSpec(kind, actor, at, payload=payload))
        return LedgerEntry(-1, kind, "", actor, b"", payload, b"", b"")

    def flush(self) -> None:
        """Append every held change atomically, one entry each."""
        specs, self.specs = self.specs, []
        entries = self.ledger.append_all(specs)
        assert [e.kind for e in entries] == [s.kind for s in specs]


@dataclass
class World:
    """One example's trust, what has happened in it, and the decisions it recorded."""

    story: Story
    sink: BufferedSink
    service: CheckService
    pool: ThreadPoolExecutor
    suspended: set[str] = field(default_factory=set)
    agreements: dict[str, tuple[str, int]] = field(default_factory=dict)  # agreement -> (org, latest version)
    requests: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # request -> (org, state, plausible)
    consents: dict[str, bool] = field(default_factory=dict)  # consent -> withdrawn
    erased: set[str] = field(default_factory=set)
    waiting: list[tuple[ProposedAction, datetime]] = field(default_factory=list)  # checks not yet decided
    checks: int = 0
    recorded: list[LedgerEntry] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)

    def begin(self) -> None:
        """The starting trust: org_a may run approved, ethics-cleared health research on six people."""
        s = self.story
        s.configure(min_cohort_size=3)
        for org in ORGS:
            s.org(org)
        s.agreement("agr_a", org="org_a")
        self.agreements["agr_a"] = ("org_a", 1)
        s.request("req_1", org="org_a", categories=PLAUSIBLE_CATEGORIES).decide("req_1").ethics(request="req_1")
        self.requests["req_1"] = ("org_a", "approved", True)
        for n, subject in enumerate(SUBJECTS[:6], start=1):
            s.consent(f"con_{n}", subject=subject)
            self.consents[f"con_{n}"] = False

    # -- steps -----------------------------------------------------------------------------------

    def step(self, code: int) -> None:
        """Take the step *code* names: its kind, and the seed of its details."""
        kind, rng = STEPS[code % len(STEPS)], random.Random(code // len(STEPS))
        if kind == "check":
            self.sink.flush()  # every change so far is on the ledger before the check
            self._check(rng)
            return
        self.decide_waiting()  # every check so far is recorded before the change
        getattr(self, f"_{kind}")(rng)

    def decide_waiting(self) -> None:
        """Decide and record the waiting checks concurrently (they share commits)."""
        waiting, self.waiting = self.waiting, []
        results = list(
            self.pool.map(lambda w: self.service.decide(w[0], actor=f"client_{w[0].organisation}", now=w[1]), waiting)
        )
        for result in results:
            assert result.entry is not None
            self.recorded.append(result.entry)
            self.decisions[result.decision.decision] += 1

    def _check(self, rng: random.Random) -> None:
        s = self.story
        subjects = subset(rng, [*SUBJECTS, "sub_unknown"], SUBJECTS[:6], SUBJECTS)
        if rng.random() < 2 / 3:  # a plausible share: org_a, within an approval
            approved = [r for r, (_org, state, plausible) in self.requests.items() if state == "approved" and plausible]
            operation = rng.choice(["aggregate", "pseudonymised"])
            action = s.action(
                categories=subset(rng, PLAUSIBLE_CATEGORIES),
                operation=operation,
                request=rng.choice(approved or ["req_1"]),
                subjects=subjects,
                cohort_size=len(subjects) if operation == "aggregate" else None,
                geography=rng.choice([None, "GB"]),
            )
        else:  # anything at all
            action = s.action(
                organisation=rng.choice(ORGS),
                purpose=rng.choice(PURPOSES),
                categories=subset(rng, CATEGORIES),
                operation=rng.choice(OPERATIONS),
                request=rng.choice(["req_unknown", *self.requests]),
                subjects=subjects,
                cohort_size=rng.choice([len(subjects), None, 1, 5, 20]),
                geography=rng.choice([None, "GB", "FR"]),
            )
        self.waiting.append((action, s.now))
        self.checks += 1

    def _tick(self, rng: random.Random) -> None:
        self.story.wait(rng.choice(TICKS))

    def _grant(self, rng: random.Random) -> None:
        s = self.story
        consent = f"con_{len(self.consents) + 1}"
        s.consent(
            consent,
            subject=rng.choice(SUBJECTS),
            purposes=subset(rng, PURPOSES, ["research"]),
            categories=subset(rng, CATEGORIES, ["health", "demographics"]),
            recipients=rng.choice([None, None, ["org_a"], ["org_b"]]),
            operations=rng.choice([None, None, ["aggregate"], ["pseudonymised"]]),
            explicit=rng.choice([True, True, False]),
            valid_from=rng.choice([None, None, s.now + timedelta(hours=1)]),
            valid_until=rng.choice([None, None, s.now + MICROSECOND, s.now + timedelta(days=1)]),
        )
        self.consents[consent] = False

    def _withdraw(self, rng: random.Random) -> None:
        active = [c for c, withdrawn in self.consents.items() if not withdrawn]
        if active:
            consent = rng.choice(active)
            self.story.withdraw(consent, by=rng.choice(["subject", "organisation", "trust"]))
            self.consents[consent] = True

    def _erase(self, rng: random.Random) -> None:
        subject = rng.choice(SUBJECTS)
        if subject not in self.erased:
            self.story.erase(subject)
            self.erased.add(subject)

    def _suspend(self, rng: random.Random) -> None:
        org = rng.choice(["org_b", "org_c"])  # not org_a: that would end the story (the scenarios cover it)
        if org not in self.suspended:
            self.story.suspend(org)
            self.suspended.add(org)

    def _agreement(self, rng: random.Random) -> None:
        org = rng.choice(ORGS)
        agreement = f"agr_{len(self.agreements) + 1}"
        self.story.agreement(agreement, org=org, purposes=subset(rng, PURPOSES))
        self.agreements[agreement] = (org, 1)

    def _amend(self, rng: random.Random) -> None:
        agreement = rng.choice(sorted(self.agreements))
        org, version = self.agreements[agreement]
        self.story.agreement(
            agreement,
            org=org,
            version=version + 1,
            supersedes=agreement,
            categories=subset(rng, CATEGORIES, ["health", "demographics"]),
            operations=subset(rng, OPERATIONS, ["aggregate", "pseudonymised"]),
            geography=rng.choice([["GB"], ["GB", "FR"], []]),
            parties=rng.choice([("trust", "organisation"), ("trust",)]),
            valid_until=rng.choice([None, self.story.now + timedelta(days=2)]),
        )
        self.agreements[agreement] = (org, version + 1)

    def _terminate(self, rng: random.Random) -> None:
        others = sorted(a for a in self.agreements if a != "agr_a")  # agr_a ends only by amendment here
        if others:
            agreement = rng.choice(others)
            self.story.terminate(agreement, version=rng.randint(1, self.agreements[agreement][1]))

    def _submit(self, rng: random.Random) -> None:
        request = f"req_{len(self.requests) + 1}"
        project = rng.choice([None, self.story.prefix + PROJECT])
        duration_days = rng.choice([1, 30, 365])
        plausible, state = rng.random() < 0.5, "submitted"
        if plausible:  # org_a's health research again, cleared by the ethics committee (often approved at once)
            org = "org_a"
            self.story.request(request, categories=PLAUSIBLE_CATEGORIES, duration_days=duration_days, project=project)
            self.story.ethics(request=request)
            if rng.random() < 0.5:
                self.story.decide(request)
                state = "approved"
        else:  # anything at all
            org = rng.choice(ORGS)
            self.story.request(
                request,
                org=org,
                purpose=rng.choice(PURPOSES),
                categories=subset(rng, CATEGORIES),
                operation=rng.choice(OPERATIONS),
                subjects=rng.choice([None, None, SUBJECTS[:2], SUBJECTS[:4]]),
                duration_days=duration_days,
                project=project,
            )
        self.requests[request] = (org, state, plausible)

    def _decide(self, rng: random.Random) -> None:
        waiting = [r for r, (_org, state, _plausible) in self.requests.items() if state == "submitted"]
        if waiting:
            request = rng.choice(waiting)
            outcome = rng.choice(["approved", "approved", "rejected"])
            self.story.decide(request, outcome=outcome)
            org, _state, plausible = self.requests[request]
            self.requests[request] = (org, outcome, plausible)

    def _revoke(self, rng: random.Random) -> None:
        approved = [r for r, (_org, state, _plausible) in self.requests.items() if state == "approved"]
        if approved:
            request = rng.choice(approved)
            self.story.revoke(request)
            org, _state, plausible = self.requests[request]
            self.requests[request] = (org, "revoked", plausible)

    def _ethics(self, rng: random.Random) -> None:
        s = self.story
        variant = rng.choice(["plain", "plain", "words", "obligations", "unknown"])
        obligations: list[tuple[str, Any]] = []
        if variant == "obligations":
            obligations = [
                rng.choice(
                    [
                        ("operations", ["aggregate"]),
                        ("min_cohort", 5),
                        ("retention_days", 30),
                        ("geography", ["GB"]),
                        ("categories", ["health.mental"]),
                        ("delete_by", "2030-01-01"),
                    ]
                )
            ]
        elif variant == "unknown":
            obligations = [("no_linkage", True)]
        s.ethics(
            request=rng.choice([None, *self.requests]),
            project=s.prefix + PROJECT,
            outcome=rng.choice(["approved", "approved_with_conditions", "rejected"]),
            conditions_text="Only with the community panel's agreement." if variant != "plain" else "",
            obligations=obligations,
            expires_at=rng.choice([None, s.now + MICROSECOND, s.now + timedelta(days=1)]),
        )

    def _config(self, rng: random.Random) -> None:
        self.story.configure(min_cohort_size=rng.choice([1, 2, 3, 5]))

    # -- replay ---------------------------------------------------------------------------------

    def replay_all(self) -> None:
        """Replay every decision this example recorded and demand the identical answer."""
        for entry in self.recorded:
            replay = replay_check(self.service.ledger, entry)
            assert replay.identical, f"decision {entry.seq}: recorded {replay.recorded} != replayed {replay.replayed}"


def test_every_recorded_decision_replays_identically(instance: Instance) -> None:
    """Over 1,000 random checks of a randomly evolving trust, replaying each recorded decision gives the same answer."""
    service = instance.checks
    assert service is not None
    examples = itertools.count()
    totals: Counter[str] = Counter()
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="check")

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(data=st.data())
    def evolve(data: st.DataObject) -> None:
        n = next(examples)
        sink = BufferedSink(instance.ledger)
        start = T0 + timedelta(days=2000 * n)
        story = Story(start=start, step=timedelta(0), sink=sink, configure=False, prefix=f"e{n}_")
        world = World(story, sink, service, pool)
        world.begin()
        while world.checks < CHECKS_PER_EXAMPLE:
            world.step(data.draw(STEP))
        world.decide_waiting()
        world.replay_all()
        totals.update(world.decisions)

    with pool:
        evolve()
    assert totals["permit"] + totals["deny"] >= EXAMPLES * CHECKS_PER_EXAMPLE
    assert totals["permit"] >= EXAMPLES * CHECKS_PER_EXAMPLE // 20, totals  # the trust does not deny everything
    assert totals["deny"] >= EXAMPLES * CHECKS_PER_EXAMPLE // 20, totals
