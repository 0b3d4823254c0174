"""The root and each proof read the ledger with ONE statement on each engine, refusals of a too-large tree included.

One statement is one snapshot: the ledger size that bounds a proof is read with
the very nodes it bounds (tests/ledger/test_proof_bounds.py shows why that
matters on a tampered database), and on PostgreSQL it is one round trip.
Statements are counted where the driver receives them, below SQLAlchemy, so a
read through the DB-API cursor is counted too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self

import psycopg
import pytest
from sqlalchemy import event

from ledger.db import Database
from ledger.errors import ProofError
from ledger.keys import Signer
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.service import Ledger

ORIGIN = "datatrust.test/proof-statements"
SIZE = 13  # not a power of two: proofs of the last entries need nodes of every level


class Counted:
    """A bare ledger on each engine, and every SQL statement its read engine's driver has been given."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.statements: list[tuple[int, str]] = []  # (thread, SQL)

    def ledger_reads(self, call: Callable[[], object]) -> list[str]:
        """Run *call*; return the statements it sent that name a ledger table.

        Not the pool's pre-ping, and not the statements of the ledger's own
        thread (it may sign a checkpoint meanwhile).
        """
        self.statements.clear()
        call()
        here = threading.get_ident()
        return [sql for thread, sql in self.statements if thread == here and "ledger_" in sql]


@pytest.fixture
def counted(db_url: str) -> Iterator[Counted]:
    """A ledger of SIZE entries whose read connections record each statement."""
    db = Database.from_url(db_url)
    ledger = Ledger(db, signer=Signer.generate(ORIGIN), origin=ORIGIN)
    for n in range(SIZE):
        ledger.append("check.decided", {"n": n}, actor="test", now=datetime.now(UTC))
    counted = Counted(ledger)
    seen = counted.statements

    def record(sql: object) -> None:
        seen.append((threading.get_ident(), str(sql)))

    class CountingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
            record(query)
            return super().execute(query, params, **kwargs)

    @event.listens_for(db.engine, "checkout")  # after the pool's pre-ping
    def _record(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        if db.is_postgresql:
            dbapi_connection.cursor_factory = CountingCursor
        else:
            dbapi_connection.set_trace_callback(record)

    yield counted
    ledger.close()
    db.dispose()


def test_root_and_proofs_are_one_statement_each(counted: Counted) -> None:
    """Root, inclusion and consistency proofs each send one statement, and what they return verifies."""
    ledger = counted.ledger
    root = ledger.root(SIZE)
    for seq in (0, 7, SIZE - 1):
        assert len(counted.ledger_reads(partial(ledger.inclusion_proof, seq, SIZE))) == 1
        proof = ledger.inclusion_proof(seq, SIZE)
        verify_inclusion(seq, SIZE, proof.leaf_hash, proof.proof, root)
    for old in (1, 8, SIZE - 1, SIZE):
        assert len(counted.ledger_reads(partial(ledger.consistency_proof, old, SIZE))) == 1
        verify_consistency(old, SIZE, ledger.root(old), root, ledger.consistency_proof(old, SIZE))
    for size in (1, 8, SIZE):
        assert len(counted.ledger_reads(partial(ledger.root, size))) == 1


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda ledger: ledger.root(SIZE + 1), id="root"),
        pytest.param(lambda ledger: ledger.inclusion_proof(0, SIZE + 1), id="inclusion-inside"),
        pytest.param(lambda ledger: ledger.inclusion_proof(SIZE, SIZE + 1), id="inclusion-missing-leaf"),
        pytest.param(lambda ledger: ledger.consistency_proof(8, SIZE + 3), id="consistency"),
        pytest.param(lambda ledger: ledger.consistency_proof(SIZE + 1, SIZE + 1), id="consistency-no-nodes"),
    ],
)
def test_a_tree_larger_than_the_ledger_is_refused_by_the_same_statement(
    counted: Counted, call: Callable[[Ledger], object]
) -> None:
    """The refusal needs no second statement to read the size: it came with the nodes."""

    def refused() -> None:
        with pytest.raises(ProofError, match=f"larger than the ledger \\({SIZE} entries\\)"):
            call(counted.ledger)

    assert len(counted.ledger_reads(refused)) == 1
