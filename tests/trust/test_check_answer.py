"""A recorded check's payload and answer are spliced from canonical pieces (``trust.checks``).

They must be byte for byte what encoding the whole values gives: the payload RFC 8785's form of
the merged object (the ledger hashes these bytes), and the answer the same JSON as ``to_json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.instance import Instance
from ledger.canonical import canonicalize
from ledger.entry import LedgerEntry
from ledger.sequencer import AppendSpec
from tests.event_loop import run_on_new_loop
from tests.trust.rules_story import Story, baseline
from trust.checks import CheckResult


@pytest.fixture
def story(instance: Instance) -> Story:
    """The baseline trust on the instance's ledger, with a withdrawal and a person outside it."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    story = baseline(start=start, step=timedelta(milliseconds=1), configure=False)
    story.withdraw("con_3")
    specs = [AppendSpec(e.kind, e.actor, e.at_datetime, payload=e.payload) for e in story.entries]
    instance.ledger.append_all(specs)
    return story


ACTIONS: list[dict[str, Any]] = [
    {},  # a permit of twelve, one of them withdrawn: excluded
    {"subjects": ["sub_1"], "operation": "pseudonymised"},
    {"subjects": ["sub_1", "sub_nobody"], "operation": "pseudonymised", "geography": "FR"},
    {"organisation": "org_b"},  # a deny
    {"categories": ["health.mental", "demographics.age"], "subjects": ["sub_2", "sub_3"], "cohort_size": 2},
]


@pytest.mark.parametrize("action", ACTIONS, ids=range(len(ACTIONS)))
def test_recorded_payload_and_answer_equal_whole_encodings(
    instance: Instance, story: Story, action: dict[str, Any]
) -> None:
    """The stored entry verifies as canonical, and the answer parses to exactly ``to_json``."""
    assert instance.checks is not None
    service = instance.checks
    result: CheckResult = run_on_new_loop(
        service.decide_recorded(story.action(**action), actor="client_a", now=datetime.now(UTC))
    )
    assert result.entry is not None
    stored = instance.ledger.get(result.entry.seq)
    assert LedgerEntry.from_body(stored.body) == stored  # re-canonicalises the whole entry and compares
    assert canonicalize(stored.payload) in stored.body
    assert stored.payload == {"action": story.action(**action).to_json(), **result.decision.to_json()}
    answer = json.loads(result.answer())
    assert answer == result.to_json()
    assert answer["decision_id"] == result.entry.seq
    assert answer["entry"] == {"seq": result.entry.seq, "leaf_hash": result.entry.leaf_hash.hex()}
