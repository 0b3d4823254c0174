"""The ledger's public face: append, read, prove, checkpoint.

``Ledger`` is created once per process (``Ledger.open``) and shared by every
request. Appends block until durable; reads use short read transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from ledger import repository
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.errors import NotFoundError, ProofError, ValidationError
from ledger.keys import Signer, Verifier
from ledger.merkle import (
    EMPTY_ROOT,
    Node,
    consistency_ranges,
    hash_from_nodes,
    hashes_for_ranges,
    inclusion_ranges,
    perfect_subtrees,
)
from ledger.projection import ProjectorRegistry
from ledger.remote import AppendProcess, settle
from ledger.sequencer import AppendSpec, Done, Prepare, Project, Sequencer

MAX_PAGE = 1000


def system_clock() -> datetime:
    """The real clock (the edge of the system supplies it; domain code takes ``now``)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 9162 inclusion proof of entry *seq* in the tree of *size* entries."""

    seq: int
    size: int
    leaf_hash: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, Any]:
        """The public JSON form (hex hashes)."""
        return {
            "seq": self.seq,
            "size": self.size,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [p.hex() for p in self.proof],
        }


class Ledger:
    """One trust's ledger: the append path (via the sequencer) and every read."""

    def __init__(
        self,
        db: Database,
        *,
        signer: Signer,
        origin: str,
        verifiers: list[Verifier] | None = None,
        clock: Callable[[], datetime] = system_clock,
        checkpoint_interval: float = 1.0,
    ) -> None:
        self.db = db
        self.origin = origin
        self.signer = signer
        self.verifiers = [signer.verifier, *(verifiers or [])]
        self.projectors = ProjectorRegistry()
        self.checkpoint_interval = checkpoint_interval
        self._sequencer = Sequencer(
            db,
            signer=signer,
            origin=origin,
            clock=clock,
            checkpoint_interval=checkpoint_interval,
            projectors=self.projectors,
        )
        # A server's child process that appends for its event loop (ledger.remote), while it runs.
        self.append_process: AppendProcess | None = None

    def close(self) -> None:
        """Stop the writer (after finishing queued appends)."""
        self._sequencer.close()

    def writer_running(self) -> bool:
        """Whether this process's ledger writer is alive (for readiness probes)."""
        return self._sequencer.is_running()

    def add_listener(self, listener: Callable[[list[LedgerEntry]], None]) -> None:
        """Be told of every batch of entries this process commits."""
        self._sequencer.add_listener(listener)

    def notify_listeners(self, entries: list[LedgerEntry]) -> None:
        """Tell the listeners of *entries* committed for this process elsewhere (by its append process)."""
        self._sequencer.notify(entries)

    # -- appends -------------------------------------------------------------------------

    def append(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        actor: str,
        now: datetime,
        prepare: Prepare | None = None,
        project: Project | None = None,
        checkpoint: bool = False,
    ) -> LedgerEntry:
        """Append one entry and return it once durable (raises DomainError, nothing appended)."""
        spec = AppendSpec(kind, actor, now, payload=payload, prepare=prepare, project=project)
        return self._sequencer.submit([spec], checkpoint=checkpoint).result()[0]

    async def append_async(self, kind: str, payload: dict[str, Any], *, actor: str, now: datetime) -> LedgerEntry:
        """Append one entry from an event loop: await it without blocking the loop (durable when it returns).

        The ledger's background thread commits it, in a group with whatever else is
        waiting; the outcome comes back to this loop with one ``call_soon_threadsafe``.
        While this loop's server runs an append process (:mod:`ledger.remote`), that
        process commits it instead, and the outcome comes back through its pipe.
        If the awaiting task is cancelled, the entry is still appended.
        """
        spec = AppendSpec(kind, actor, now, payload=payload)
        remote = self.append_process
        if remote is not None and remote.usable():  # its own process commits it (see ledger.remote)
            return await remote.append(spec)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[LedgerEntry]] = loop.create_future()

        def done(outcome: list[LedgerEntry] | BaseException) -> None:
            # The loop may have closed meanwhile (cancelling the awaiting task): the entry stands all the same.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future, outcome)

        self.append_nowait(spec, done)
        return (await future)[0]

    def append_nowait(self, spec: AppendSpec, done: Done) -> None:
        """Queue *spec* and return at once; *done* gets its entries (durable) or its error on the writer's thread."""
        self._sequencer.submit_nowait([spec], done)

    def append_all(self, specs: list[AppendSpec], *, checkpoint: bool = False) -> list[LedgerEntry]:
        """Append several entries atomically: all of them, in order, or none."""
        if not specs:
            return []
        return self._sequencer.submit(specs, checkpoint=checkpoint).result()

    def sign_checkpoint(self) -> str:
        """Sign a checkpoint of the current tree now (if it grew) and return the latest one."""
        self._sequencer.submit([], checkpoint=True).result()
        return self.latest_checkpoint()

    # -- reads ---------------------------------------------------------------------------

    def size(self) -> int:
        """Number of entries."""
        with self.db.engine.connect() as conn:
            return repository.size(conn)

    def latest_checkpoint(self) -> str:
        """The newest signed checkpoint note (signing one first if none exists yet)."""
        with self.db.engine.connect() as conn:
            latest = repository.latest_checkpoint(conn)
        if latest is None:
            self._sequencer.submit([], checkpoint=True).result()
            with self.db.engine.connect() as conn:
                latest = repository.latest_checkpoint(conn)
        if latest is None:
            msg = "the ledger is empty: there is no checkpoint yet"
            raise NotFoundError(msg)
        return latest[1]

    def checkpoint_covering(self, seq: int) -> str:
        """A signed checkpoint whose tree includes entry *seq* (signing one if needed)."""
        with self.db.engine.connect() as conn:
            found = repository.checkpoint_covering(conn, seq + 1)
        if found is None:
            self._sequencer.submit([], checkpoint=True).result()
            with self.db.engine.connect() as conn:
                found = repository.checkpoint_covering(conn, seq + 1)
        if found is None:
            msg = f"entry {seq} does not exist"
            raise NotFoundError(msg)
        return found[1]

    def open_checkpoint(self, note: str) -> Checkpoint:
        """Verify a checkpoint note with this trust's keys and parse it."""
        return open_checkpoint(note, self.verifiers, origin=self.origin)

    def get(self, seq: int) -> LedgerEntry:
        """One entry by sequence number."""
        with self.db.engine.connect() as conn:
            entry = repository.get_entry(conn, seq)
        if entry is None:
            msg = f"ledger entry {seq} does not exist"
            raise NotFoundError(msg)
        return entry

    def entries(self, start: int, end: int) -> list[tuple[LedgerEntry, bytes]]:
        """Entries with ``start <= seq < end`` (at most MAX_PAGE), with their leaf hashes."""
        if start < 0 or end < start:
            msg = f"invalid range start={start} end={end}: need 0 <= start <= end"
            raise ValidationError(msg)
        end = min(end, start + MAX_PAGE)
        with self.db.engine.connect() as conn:
            rows = repository.entry_rows(conn, start, end)
        return [(LedgerEntry.from_body(body), leaf) for _seq, leaf, body in rows]

    def root(self, size: int) -> bytes:
        """The Merkle tree hash of the first *size* entries, from stored nodes."""
        if size == 0:
            return EMPTY_ROOT
        nodes = perfect_subtrees(0, size)
        with self._reader() as conn:
            found, current = repository.fetch_nodes_and_size(conn, nodes)  # one statement, one snapshot
        self._check_size(size, current)
        missing = [n for n in nodes if n not in found]
        if missing:
            msg = f"stored tree is missing node level={missing[0].level} index={missing[0].index}"
            raise ProofError(msg)
        return hash_from_nodes([found[n] for n in nodes])

    def inclusion_proof(self, seq: int, size: int) -> InclusionProof:
        """RFC 9162 inclusion proof of entry *seq* in the tree of *size* entries."""
        if not 0 <= seq < size:
            msg = f"entry {seq} is not in a tree of size {size}"
            raise ValidationError(msg)
        ranges = inclusion_ranges(seq, size)
        (leaf_node,) = perfect_subtrees(seq, seq + 1)
        fetched: dict[Node, bytes] = {}

        def lookup(nodes: list[Node]) -> dict[Node, bytes]:
            # One statement in all: the path, the leaf and the ledger's size, read under one snapshot.
            # The size is checked before any node is used: a tampered database may hold tree nodes
            # past its last entry, and they must not prove a tree larger than the ledger.
            found, current = repository.fetch_nodes_and_size(conn, [*nodes, leaf_node])
            self._check_size(size, current)
            fetched.update(found)
            return found

        with self._reader() as conn:
            proof = hashes_for_ranges(ranges, lookup)
        if leaf_node not in fetched:
            msg = f"ledger entry {seq} has no stored leaf hash"
            raise ProofError(msg)
        return InclusionProof(seq, size, fetched[leaf_node], proof)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes."""
        if not 0 <= old_size <= new_size:
            msg = f"invalid sizes from={old_size} to={new_size}: need 0 <= from <= to"
            raise ValidationError(msg)
        ranges = consistency_ranges(old_size, new_size)

        def lookup(nodes: list[Node]) -> dict[Node, bytes]:
            # One statement: the nodes and the size bounding them (see inclusion_proof).
            found, current = repository.fetch_nodes_and_size(conn, nodes)
            self._check_size(new_size, current)
            return found

        with self._reader() as conn:
            return hashes_for_ranges(ranges, lookup)

    def _reader(self) -> Connection:
        """A connection for the root and proofs (one statement each): on PostgreSQL in autocommit, no BEGIN."""
        conn = self.db.engine.connect()
        if self.db.is_postgresql:
            conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    @staticmethod
    def _check_size(size: int, current: int) -> None:
        """Refuse a tree of *size* entries when the ledger holds *current* (read with the nodes)."""
        if size > current:
            msg = f"tree size {size} is larger than the ledger ({current} entries)"
            raise ProofError(msg)
