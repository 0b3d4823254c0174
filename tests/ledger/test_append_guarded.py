"""The lock-free append path: a batch built from a stale head is redone under the lock, never forked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger import repository
from ledger.db import Database
from ledger.errors import ValidationError
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.sequencer import AppendSpec
from ledger.service import Ledger

ORIGIN = "datatrust.test/guarded"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def two_writers(db_url: str, signer: Signer) -> Iterator[tuple[Ledger, Ledger]]:
    """Two writers on one database, each with its own engine and sequencer (as two processes would be)."""
    dbs = [Database.from_url(db_url) for _ in range(2)]
    ledgers = [Ledger(db, signer=signer, origin=ORIGIN, checkpoint_interval=3600) for db in dbs]
    yield ledgers[0], ledgers[1]
    for ledger, db in zip(ledgers, dbs, strict=True):
        ledger.close()
        db.dispose()


def _verify(ledger: Ledger) -> int:
    ledger.sign_checkpoint()
    with ledger.db.engine.connect() as conn:
        return verify_live(conn, [ledger.signer.verifier], origin=ORIGIN).entries


def test_append_between_preparation_and_commit_is_redone_on_the_new_head(
    two_writers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer appends between A's lock-free preparation and A's guarded write: A redoes, never forks.

    A writes nothing from the stale head, redoes the batch on B's entries, and
    its caller gets the next number, not an error.
    """
    a, b = two_writers
    first = [a.append("check.decided", {"n": n}, actor="org_a", now=NOW) for n in range(3)]  # A caches the head
    original = repository.BatchWriter.append_if_head
    written: list[tuple[int, bool]] = []
    interleaved: list[Any] = []

    def append_if_head(
        self: repository.BatchWriter,
        entries: list[repository.NewEntryRow],
        nodes: list[repository.NewNodeRow],
        *,
        size: int,
        prev: bytes,
        project: Any = None,
    ) -> bool:
        if not interleaved:  # the first guarded write from now on: another writer appends just before it
            interleaved.extend(
                b.append_all([AppendSpec("check.decided", "org_b", NOW, payload={"b": n}) for n in range(2)])
            )
        done = original(self, entries, nodes, size=size, prev=prev, project=project)
        written.append((size, done))
        return done

    monkeypatch.setattr(repository.BatchWriter, "append_if_head", append_if_head)
    redone = a.append("check.decided", {"n": 3}, actor="org_a", now=NOW)
    following = a.append("check.decided", {"n": 4}, actor="org_a", now=NOW)  # under the lock: finds its head current
    alone_again = a.append("check.decided", {"n": 5}, actor="org_a", now=NOW)

    assert [e.seq for e in first] == [0, 1, 2]
    assert [e.seq for e in interleaved] == [3, 4]
    assert written[0] == (3, False)  # built on the head A cached (3 entries): refused, nothing written
    assert redone.seq == 5
    assert redone.prev == interleaved[-1].leaf_hash
    assert following.seq == 6
    assert following.prev == redone.leaf_hash
    assert written[1:] == [(7, True)]  # then the lock-free way again, from the new head
    assert alone_again.seq == 7
    assert alone_again.prev == following.leaf_hash
    assert _verify(a) == 8
    assert b.get(5) == redone


def test_stale_head_after_another_writer_is_not_extended(two_writers: tuple[Ledger, Ledger]) -> None:
    """A's cached head went stale while idle: its next append lands after B's entries, one chain."""
    a, b = two_writers
    a.append("check.decided", {"n": 0}, actor="org_a", now=NOW)
    a.append("check.decided", {"n": 1}, actor="org_a", now=NOW)
    for n in range(3):
        b.append("check.decided", {"b": n}, actor="org_b", now=NOW)
    entries = [a.append("check.decided", {"n": n}, actor="org_a", now=NOW) for n in range(2, 5)]
    assert [e.seq for e in entries] == [5, 6, 7]
    assert entries[0].prev == b.get(4).leaf_hash
    assert _verify(b) == 8


def test_refused_unit_on_the_lock_free_path_leaves_no_gap(two_writers: tuple[Ledger, Ledger]) -> None:
    """A unit with an entry refused while the batch is built before the lock fails whole; numbering goes on."""
    a, _b = two_writers
    a.append("check.decided", {"n": 0}, actor="org_a", now=NOW)
    a.append("check.decided", {"n": 1}, actor="org_a", now=NOW)
    unit = [
        AppendSpec("check.decided", "org_a", NOW, payload={"u": 0}),
        AppendSpec("check.decided", "org_a", datetime(2026, 11, 26, 9, 0), payload={"u": 1}),  # noqa: DTZ001 - naive on purpose
    ]
    with pytest.raises(ValidationError):
        a.append_all(unit)
    after = a.append_all([AppendSpec("check.decided", "org_a", NOW, payload={"u": n}) for n in range(3)])
    assert [e.seq for e in after] == [2, 3, 4]
    assert _verify(a) == 5


ODD_ACTORS = ["org_'quoted'", 'org_"double"', "org_back\\slash\\", "{org,brace}", "NULL", "", "E'x'", "ørg_ünïcødé_🙂"]


def test_any_actor_text_is_stored_as_given_on_the_lock_free_path(two_writers: tuple[Ledger, Ledger]) -> None:
    """Quotes, backslashes, braces, commas, ``NULL`` and non-ASCII actors reach the row and the entry unchanged."""
    a, _b = two_writers
    a.append("check.decided", {"n": 0}, actor="org_a", now=NOW)
    a.append("check.decided", {"n": 1}, actor="org_a", now=NOW)  # the cached head is used from here on
    entries = a.append_all([AppendSpec("check.decided", actor, NOW, payload={"actor": actor}) for actor in ODD_ACTORS])
    assert [e.actor for e in entries] == ODD_ACTORS
    with a.db.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT actor, kind, at FROM ledger_entries WHERE seq >= 2 ORDER BY seq").all()
    assert [tuple(row) for row in stored] == [(actor, "check.decided", entries[0].at) for actor in ODD_ACTORS]
    assert [a.get(e.seq) for e in entries] == entries
    assert _verify(a) == 2 + len(ODD_ACTORS)
