"""Batch projectors (``ProjectorRegistry.register_batch``): once per writer's batch, in order, and flushed early.

The check's projection writes rows for every recorded decision; the sequencer hands it all the
decisions of a batch at once. Rows of earlier units must still be written before a later unit
of the same batch whose projectors may read the database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from ledger.entry import LedgerEntry
from ledger.sequencer import AppendSpec, _Unit
from ledger.service import Ledger

ORIGIN = "datatrust.test/projection-batches"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _unit(kind: str, n: int) -> _Unit:
    return _Unit([AppendSpec(kind, "org_a", NOW, payload={"n": n})], checkpoint=False, proxied=True)


def test_batch_projector_runs_once_a_batch_and_before_a_unit_that_may_read(ledger: Ledger) -> None:
    """Five units in one batch: the batch projector sees [0, 1] before the refusable unit 2, then [3, 4]."""
    calls: list[list[int]] = []
    seen_by_unit_2: list[list[int]] = []

    def project_checks(_conn: Connection, entries: list[LedgerEntry]) -> None:
        calls.append([entry.seq for entry in entries])

    def project_consent(_conn: Connection, _entry: LedgerEntry) -> None:  # may refuse: runs in a savepoint
        seen_by_unit_2.append([seq for call in calls for seq in call])

    ledger.projectors.register_batch(["check.decided"], project_checks)
    ledger.projectors.register(["consent.granted"], project_consent)
    kinds = ["check.decided", "check.decided", "consent.granted", "check.decided", "check.decided"]
    batch = [_unit(kind, n) for n, kind in enumerate(kinds)]
    sequencer = ledger._sequencer  # one batch of exactly these units, as the writer makes them
    with sequencer._mutex:  # hold the lead, as the writer does while it commits
        sequencer._leading = True
    try:
        sequencer._process(batch, own=None)
    finally:
        sequencer._pass_lead()
    assert [[entry.seq for entry in unit.outcome] for unit in batch if isinstance(unit.outcome, list)] == [
        [0],
        [1],
        [2],
        [3],
        [4],
    ]
    assert seen_by_unit_2 == [[0, 1]]
    assert calls == [[0, 1], [3, 4]]
    assert ledger.size() == 5


def test_batch_projector_outside_the_writer_gets_one_entry_at_a_time(ledger: Ledger) -> None:
    """Rebuilds and savepointed units call ``apply`` without collecting: the projector gets ``[entry]``."""
    calls: list[list[int]] = []
    ledger.projectors.register_batch(["check.decided"], lambda _conn, entries: calls.append([e.seq for e in entries]))
    entries = ledger.append_all([AppendSpec("check.decided", "org_a", NOW, payload={"n": n}) for n in range(3)])
    assert [entry.seq for entry in entries] == [0, 1, 2]
    assert calls == [[0], [1], [2]]  # a unit of several entries runs in a savepoint, entry by entry
