"""The check index catching up on what other processes appended (``trust.checks._fold``).

A short stretch, read by sequence number, must fold to exactly what folding the whole ledger gives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.instance import Instance
from ledger.sequencer import AppendSpec
from tests.trust.rules_story import baseline
from trust import checks
from trust.state import TrustState


def _summary(state: TrustState) -> dict[str, Any]:
    """What the rules read, in comparable form."""
    return {
        "head": state.head,
        "generation": state.generation,
        "orgs": repr(state.orgs),
        "agreements": repr(state.agreements),
        "requests": repr(state.requests),
        "consents": {
            subject: (consent.id, consent.seq, consent.withdrawal, consent.superseded_by is not None)
            for subject, consent in state.latest_consent.items()
        },
        "erased": dict(state.erased),
    }


def test_catching_up_a_few_entries_at_a_time_gives_the_whole_fold(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up a few entries at a time gives the state a fold of the whole ledger gives.

    With pages of 4, stretches of up to 4 entries take the read-by-sequence path and longer ones
    the paged read by kind; other processes' checks (not indexed) are mixed in between.
    """
    monkeypatch.setattr(checks, "FOLD_PAGE", 4)
    instance.ledger.projectors.rows.pop("check.decided", None)  # the fillers below are not real decisions
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    story = baseline(start=start, step=timedelta(milliseconds=1), configure=False)
    story.consent("con_x", subject="sub_x").withdraw("con_x").consent("con_y", subject="sub_y").erase("sub_y")
    specs: list[AppendSpec] = []
    for number, entry in enumerate(story.entries):
        specs.append(AppendSpec(entry.kind, entry.actor, entry.at_datetime, payload=entry.payload))
        specs.extend(
            AppendSpec("check.decided", "client_org_a", entry.at_datetime, payload={"filler": n})
            for n in range(number % 3)
        )
    instance.ledger.append_all(specs)
    with instance.db.engine.connect() as conn:
        end = instance.ledger.size() - 1
        whole = _summary(checks.state_as_of(conn, end))
        for stride in (1, 2, 3, 4, 5, 9, end + 1):  # others appended this many entries between two catch-ups
            state = TrustState()
            while state.head < end:
                checks._fold(conn, state, until=min(state.head + stride, end))
            assert _summary(state) == whole, f"caught up {stride} entries at a time"
