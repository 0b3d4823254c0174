"""The standard engine's fast path and cache give the answer the rules give without them, byte for byte.

:meth:`Engine.standard` keeps the results of the rules that do not read subjects in
``TrustState.rule_cache`` and decides a one-subject permit without its general steps. Neither may
change a decision: every answer here is compared, as ``json.dumps`` of ``Decision.to_json()``
(key order included), with the answer of an engine built from the same rules without the cache,
which evaluates every rule on every check.

* Table: every scenario of ``test_check_scenarios`` (imported, not copied), each check asked as
  written, as each of its subjects alone and with duplicates and an unknown subject, with
  aggregate, pseudonymised and identifiable operations, at the scenario's instant and at the
  microseconds around every expiry the trust recorded; the cached engine is asked twice (the
  second answer comes from the cache) on one state that keeps its cache across all of them.
* Property: the randomly evolving trust of ``test_replay_property`` (its ``World`` and step
  strategy), with a check just after every change (withdrawal, erasure, suspension, revocation,
  ...); each check's answer from the live :class:`~trust.checks.CheckService` (a dry run) equals
  the uncached one, for the check and for each of its subjects alone, just before and after its
  instant and around the latest expiry instants.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.instance import Instance, initialise
from ledger.entry import format_at, parse_at
from tests.trust.rules_story import MICROSECOND, T0, Story, baseline
from tests.trust.test_check_scenarios import SCENARIOS, Scenario
from tests.trust.test_replay_property import STEP, STEPS, BufferedSink, World
from trust.rules import consent
from trust.rules.base import ProposedAction, RuleResult
from trust.rules.engine import Decision, Engine

CACHED = Engine.standard()
UNCACHED = Engine(CACHED._before, CACHED._after)  # the same rules, every one evaluated on every check
OPERATIONS = ("aggregate", "pseudonymised", "identifiable")
EXPIRY_FIELDS = ("valid_until", "expires_at")  # payload fields naming an instant at which something ends
EXAMPLES = 30  # property: examples (each a fresh trust on one shared ledger) ...
CHECKS_PER_EXAMPLE = 30  # ... and checks in each, every one asked several ways at several instants
RECENT_EXPIRIES = 2  # property: the latest expiry instants each check is also asked around


def answer(decision: Decision) -> str:
    """The decision as the check answers it, key order included."""
    return json.dumps(decision.to_json(), sort_keys=False)


def around(instant: datetime) -> tuple[datetime, datetime, datetime]:
    """One microsecond before *instant*, the instant, one microsecond after."""
    return instant - MICROSECOND, instant, instant + MICROSECOND


@pytest.fixture
def fast_path() -> Iterator[Counter[str]]:
    """Counts the consent results the fast path makes (so the tests show they reach it)."""
    made: Counter[str] = Counter()
    one_covered = consent.one_covered

    def counting(seq: int) -> RuleResult:
        made["one_covered"] += 1
        return one_covered(seq)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consent, "one_covered", counting)
        yield made


# -- table ----------------------------------------------------------------------------------------


def variants(action: ProposedAction) -> list[ProposedAction]:
    """*action* as written, with each operation, each subject alone, and with repeats and a stranger."""
    subjects = tuple(dict.fromkeys(action.subjects))
    many = [action, dataclasses.replace(action, subjects=(*action.subjects, *subjects[:1], "sub_unknown"))]
    for operation in OPERATIONS:
        cohort = (action.cohort_size or len(subjects)) if operation == "aggregate" else None
        many.append(dataclasses.replace(action, operation=operation, cohort_size=cohort))
    return many + [
        dataclasses.replace(shape, subjects=(subject,)) for shape in many[2:] for subject in (*subjects, "sub_unknown")
    ]


def expiries(story: Story) -> list[datetime]:
    """Every instant at which something recorded in *story* ends."""
    found = {
        entry.payload[name] for entry in story.entries for name in EXPIRY_FIELDS if entry.payload.get(name) is not None
    }
    return [parse_at(text) for text in sorted(found)]


def compare(story: Story, instants: list[datetime], actions: list[ProposedAction]) -> Counter[str]:
    """Ask every action at every instant, cached (twice) and uncached; count the decisions by operation."""
    cached, reference = story.state(), story.state()  # the cache lives in the first only, across every question
    decisions: Counter[str] = Counter()
    for instant, action in itertools.product(instants, actions):
        at = format_at(instant)
        expected = answer(UNCACHED.decide(reference, action, at=at))
        first = CACHED.decide(cached, action, at=at)
        shown = first.to_json()
        assert json.dumps(shown, sort_keys=False) == expected, (at, action)
        spoil(shown)  # an answer's containers are its own: changing them changes no later answer
        second = answer(CACHED.decide(cached, action, at=at))
        assert second == expected, ("from the cache", at, action)
        decisions[f"{action.operation} {first.decision}"] += 1
    return decisions


def spoil(shown: dict[str, Any]) -> None:
    """Change every container ``Decision.to_json`` promises is fresh (not values inside obligations)."""
    shown["decision"] = "spoilt"
    shown["subjects"]["permitted"].append("spoilt")
    for excluded in shown["subjects"]["excluded"]:
        excluded["reason"] = "spoilt"
    for obligation in shown["obligations"]:
        obligation["value"] = "spoilt"
    for reason in shown["reasons"]:
        reason["message"] = "spoilt"
        reason["evidence"].append(-1)


def allow_identifiable(story: Story) -> None:
    """Let org_a share identifiable data too: an agreement and an approved, ethics-cleared request ``req_id``."""
    story.agreement("agr_id", operations=("identifiable",))
    story.request("req_id", operation="identifiable").decide("req_id").ethics(request="req_id")


def scenario_checks(scenario: Scenario, *, identifiable: bool) -> tuple[Story, datetime, list[ProposedAction]]:
    """The scenario's story (after :func:`allow_identifiable` when asked), its instant and its checks' variants.

    With *identifiable*, each check is also asked as an identifiable share under ``req_id``.
    """
    story = baseline()
    if identifiable:
        allow_identifiable(story)
    arguments = scenario.change(story)
    check: dict[str, Any] = dict(arguments) if isinstance(arguments, dict) else {}
    when: datetime = check.pop("at", story.now)
    action = story.action(**check)
    actions = variants(action)
    if identifiable:
        shared = dataclasses.replace(action, request="req_id", operation="identifiable", cohort_size=None)
        actions += [shared, *(dataclasses.replace(shared, subjects=(subject,)) for subject in shared.subjects)]
    return story, when, actions


@pytest.mark.parametrize("identifiable", [False, True], ids=["baseline", "identifiable_allowed"])
@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario_answers_are_the_same_with_and_without_the_cache(
    scenario: Scenario, identifiable: bool, fast_path: Counter[str]
) -> None:
    """Every scenario's check, asked many ways and at many instants, answers alike cached, recached and uncached."""
    story, when, actions = scenario_checks(scenario, identifiable=identifiable)
    instants = sorted({*around(when), *(moment for ending in expiries(story) for moment in around(ending))})
    decisions = compare(story, instants, actions)
    assert decisions.total() == len(instants) * len(actions)
    if scenario.decision == "permit":  # the scenario's own check at its instant took the fast path for one subject
        assert fast_path["one_covered"] > 0


def test_the_table_reaches_the_fast_path_and_every_kind_of_answer(fast_path: Counter[str]) -> None:
    """Over the whole table, the fast path is taken often and every operation is permitted and denied (it bites)."""
    totals: Counter[str] = Counter()
    for scenario, identifiable in itertools.product(SCENARIOS.values(), [False, True]):
        story, when, actions = scenario_checks(scenario, identifiable=identifiable)
        totals.update(compare(story, [when], actions))
    for operation, decision in itertools.product(OPERATIONS, ["permit", "deny"]):
        assert totals[f"{operation} {decision}"] >= 50, totals
    assert fast_path["one_covered"] >= 500, fast_path


def test_changing_an_obligation_value_in_an_answer_changes_no_later_answer() -> None:
    """An answer's obligation values are its own, on the cached path as on the uncached one."""
    story = Story().org("org_a").agreement("agr_a", geography=("GB", "IE")).request("req_a").decide("req_a")
    story.ethics(request="req_a", obligations=[("geography", ["GB", "FR"])])
    story.consent("con_1", subject="sub_1")
    action, at = story.action(operation="pseudonymised"), format_at(story.now)
    for engine in (UNCACHED, CACHED):
        state = story.state()
        expected = answer(engine.decide(state, action, at=at))
        for obligation in engine.decide(state, action, at=at).to_json()["obligations"]:
            if isinstance(obligation["value"], list):
                obligation["value"].append("FR")
        assert answer(engine.decide(state, action, at=at)) == expected, engine


# -- property -------------------------------------------------------------------------------------


@dataclasses.dataclass
class PathWorld(World):
    """The replay property's trust; each check is asked cached and uncached instead of being recorded."""

    endings: list[datetime] = dataclasses.field(default_factory=list)  # expiry instants recorded, in order
    seen: int = 0  # entries of the story already searched for expiry instants
    asked: Counter[str] = dataclasses.field(default_factory=Counter)

    def begin(self) -> None:
        """The replay property's starting trust, in which org_a may also share identifiable data (``req_id``)."""
        super().begin()
        allow_identifiable(self.story)
        self.agreements["agr_id"] = ("org_a", 1)  # amended and terminated like the others
        self.requests["req_id"] = ("org_a", "approved", False)  # revoked like the others

    def step(self, code: int) -> None:
        """Take the step, and after a change, check at once (just after a withdrawal, an erasure, ...)."""
        super().step(code)
        if STEPS[code % len(STEPS)] != "check":
            self.sink.flush()
            self._check(random.Random(code))

    def decide_waiting(self) -> None:
        """Ask each waiting check many ways at several instants, from the live service and without the cache."""
        waiting, self.waiting = self.waiting, []
        self._note_endings()
        service = self.service
        for action, now in waiting:
            instants = {*around(now)}
            for ending in self.endings[-RECENT_EXPIRIES:]:
                instants.update(around(ending))
            identifiable = dataclasses.replace(
                action, request=self.story.prefix + "req_id", operation="identifiable", cohort_size=None
            )
            actions = [
                dataclasses.replace(shape, subjects=subjects)
                for shape in (action, identifiable)
                for subjects in (shape.subjects, *((subject,) for subject in dict.fromkeys(action.subjects)))
            ]
            for instant, asked in itertools.product(sorted(instants), actions):
                expected = answer(UNCACHED.decide(service.state, asked, at=format_at(instant)))
                for attempt in ("first", "from the cache"):
                    result = service.decide(asked, actor="client", now=now, dry_run=True, at=instant)
                    assert answer(result.decision) == expected, (attempt, format_at(instant), asked)
                self.asked[f"{asked.operation} {result.decision.decision}"] += 1

    def _note_endings(self) -> None:
        entries, self.seen = self.story.entries[self.seen :], len(self.story.entries)
        for entry in entries:
            for name in EXPIRY_FIELDS:
                if entry.payload.get(name) is not None:
                    self.endings.append(parse_at(entry.payload[name]))


@pytest.fixture
def trust(tmp_path: Path, sqlite_only_url: str) -> Iterator[Instance]:
    """A freshly initialised trust on SQLite, with its live check service."""
    instance = initialise(
        tmp_path / "trust",
        name="Test Trust",
        mission="Testing.",
        clock=lambda: datetime.now(UTC),
        database_url=sqlite_only_url,
    )
    yield instance
    instance.close()


def test_every_check_of_an_evolving_trust_answers_alike_with_and_without_the_cache(
    trust: Instance, fast_path: Counter[str]
) -> None:
    """Over a randomly evolving trust, the live service's cached answers equal the uncached ones."""
    service = trust.checks
    assert service is not None
    examples = itertools.count()
    totals: Counter[str] = Counter()
    pool = ThreadPoolExecutor(max_workers=1)  # World's, unused: checks are not recorded here

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def evolve(data: st.DataObject) -> None:
        n = next(examples)
        sink = BufferedSink(trust.ledger)
        story = Story(
            start=T0 + timedelta(days=2000 * n), step=timedelta(0), sink=sink, configure=False, prefix=f"p{n}_"
        )
        world = PathWorld(story, sink, service, pool)
        world.begin()
        while world.checks < CHECKS_PER_EXAMPLE:
            world.step(data.draw(STEP))
        world.sink.flush()
        world.decide_waiting()
        totals.update(world.asked)

    with pool:
        evolve()
    for operation, decision in itertools.product(OPERATIONS, ["permit", "deny"]):  # neither denies nor permits all
        assert totals[f"{operation} {decision}"] >= EXAMPLES, totals
    assert fast_path["one_covered"] >= EXAMPLES * CHECKS_PER_EXAMPLE // 10, fast_path
