"""Recorded checks are projected in the ledger writer's own guarded transaction (row projectors).

``record_projections`` only inserts rows, so a batch of ``check.decided`` entries takes the
writer's shortest path (``BatchWriter.append_if_head``): the guard, the entries and the
projected rows commit together, or nothing does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from api.instance import Instance
from ledger import repository
from ledger.entry import LedgerEntry
from trust.check_models import check_decisions_table, check_subjects_table

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _decided(n: int) -> dict[str, Any]:
    """A ``check.decided`` payload of the shape the projection reads."""
    return {
        "action": {
            "organisation": "org_a",
            "request": "req_a",
            "purpose": "research.health",
            "subjects": [f"s{n}", "x"],
        },
        "decision": "permit",
        "subjects": {"permitted": [f"s{n}"], "excluded": [{"subject": "x", "rule": "consent", "reason": "none"}]},
    }


def _projected(instance: Instance) -> tuple[list[int], list[tuple[str, int, bool]]]:
    with instance.db.engine.connect() as conn:
        decisions = [int(seq) for (seq,) in conn.execute(select(check_decisions_table.c.seq).order_by("seq"))]
        s = check_subjects_table.c
        subjects = [(str(a), int(b), bool(c)) for a, b, c in conn.execute(select(s.subject, s.seq, s.is_permitted))]
    return decisions, sorted(subjects)


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool | None]]:
    """Each guarded write from now on: (were rows to be projected in it, did it commit; None if it raised)."""
    calls: list[tuple[bool, bool | None]] = []
    original = repository.BatchWriter.append_if_head

    def spy(self: repository.BatchWriter, *args: Any, **kwargs: Any) -> bool:
        projecting = kwargs.get("project") is not None
        try:
            done = original(self, *args, **kwargs)
        except BaseException:
            calls.append((projecting, None))
            raise
        calls.append((projecting, done))
        return done

    monkeypatch.setattr(repository.BatchWriter, "append_if_head", spy)
    return calls


def test_checks_are_projected_in_the_guarded_transaction(
    instance: Instance, guarded: list[tuple[bool, bool | None]]
) -> None:
    """After the first append, each check is written with its rows by the guarded transaction."""
    entries = [instance.ledger.append("check.decided", _decided(n), actor="org_a", now=NOW) for n in range(4)]
    assert (True, True) in guarded
    decisions, subjects = _projected(instance)
    assert decisions == [e.seq for e in entries]
    assert subjects == sorted(
        [(f"s{n}", e.seq, True) for n, e in enumerate(entries)] + [("x", e.seq, False) for e in entries]
    )


def test_a_failing_row_projector_leaves_neither_entry_nor_rows(
    instance: Instance, guarded: list[tuple[bool, bool | None]]
) -> None:
    """A projector error in the guarded transaction rolls it all back; the next append continues the chain."""
    first = instance.ledger.append("check.decided", _decided(0), actor="org_a", now=NOW)
    size = instance.ledger.size()

    def broken(_cursor: Any, _paramstyle: str, _entries: list[LedgerEntry]) -> None:
        msg = "projection failed"
        raise RuntimeError(msg)

    instance.ledger.projectors.register_rows(["check.decided"], broken)
    with pytest.raises(RuntimeError, match="projection failed"):
        instance.ledger.append("check.decided", _decided(1), actor="org_a", now=NOW)
    assert guarded[-1] == (True, None)  # it failed inside the guarded transaction, not under the lock
    assert instance.ledger.size() == size
    assert _projected(instance)[0] == [first.seq]

    instance.ledger.projectors.rows["check.decided"].remove(broken)
    after = instance.ledger.append("check.decided", _decided(2), actor="org_a", now=NOW)
    assert after.seq == size
    assert _projected(instance)[0] == [first.seq, after.seq]


def test_rows_are_written_once_when_another_server_moved_the_head(
    instance: Instance, db_url: str, guarded: list[tuple[bool, bool | None]]
) -> None:
    """The guard fails (another server appended): nothing of the attempt is kept; redone under the lock, once."""
    ours = [instance.ledger.append("check.decided", _decided(n), actor="org_a", now=NOW) for n in range(2)]
    other = Instance.open(instance.data_dir, database_url=db_url, check_index=False)
    try:
        theirs = other.ledger.append("check.decided", _decided(10), actor="org_b", now=NOW)
    finally:
        other.close()
    redone = instance.ledger.append("check.decided", _decided(3), actor="org_a", now=NOW)
    assert (True, False) in guarded  # the attempt on the old head wrote nothing
    assert redone.seq == theirs.seq + 1
    decisions, _subjects = _projected(instance)
    assert decisions == sorted([*(e.seq for e in ours), theirs.seq, redone.seq])
    with instance.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(check_subjects_table)).scalar_one() == 2 * len(decisions)
