"""``Ledger.append_async``: awaited appends from an event loop, committed by the writer's thread, never blocking the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import uvloop
from sqlalchemy import Connection, text

from ledger import repository
from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.errors import DomainError, UnavailableError, ValidationError
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.service import Ledger
from tests.event_loop import run_on_new_loop

ORIGIN = "datatrust.test/append-async"
WAIT = 20.0  # seconds a test waits for the other side before it gives up (a hang guard, never a measurement)
T = TypeVar("T")


class LoopRunner:
    """Runs a test's coroutine to completion on a new event loop of one kind, then closes the loop."""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.factory = factory

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* as ``asyncio.run`` does, on a thread of its own (see :func:`run_on_new_loop`)."""
        return run_on_new_loop(coro, self.factory)


@pytest.fixture(
    params=[
        pytest.param(asyncio.new_event_loop, id="asyncio"),  # the standard library's loop
        pytest.param(uvloop.new_event_loop, id="uvloop"),  # the loop uvicorn picks when installed, as in production
    ]
)
def run(request: pytest.FixtureRequest) -> LoopRunner:
    """Each test once on the standard event loop and once on uvloop."""
    factory: Callable[[], asyncio.AbstractEventLoop] = request.param
    return LoopRunner(factory)


class Gate:
    """A projector that holds the writer inside its transaction on entries whose payload asks for it."""

    def __init__(self) -> None:
        self.entered = threading.Event()  # the writer is inside a batch's transaction, held
        self.release = threading.Event()

    def __call__(self, _conn: Connection, entry: LedgerEntry) -> None:
        """Hold the writer on a ``{"hold": true}`` entry until released."""
        if entry.payload.get("hold"):
            self.entered.set()
            if not self.release.wait(WAIT):
                msg = "the test never released the held batch"
                raise RuntimeError(msg)

    async def entered_async(self) -> None:
        """Wait, without blocking the loop, until the writer is held."""
        for _ in range(int(WAIT / 0.005)):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.005)
        msg = "the writer never reached the held entry"
        raise AssertionError(msg)


async def _queued(ledger: Ledger, count: int) -> None:
    """Wait, without blocking the loop, until *count* units wait for the (held) writer."""
    for _ in range(int(WAIT / 0.005)):
        if ledger._sequencer._queue.qsize() >= count:
            return
        await asyncio.sleep(0.005)
    msg = f"{count} units never queued"
    raise AssertionError(msg)


def _verify(ledger: Ledger) -> int:
    ledger.sign_checkpoint()
    with ledger.db.engine.connect() as conn:
        return verify_live(conn, [ledger.signer.verifier], origin=ORIGIN).entries


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_awaited_append_is_durable(ledger: Ledger, run: LoopRunner, db_url: str, signer: Signer) -> None:
    """When append_async returns, another connection and a second Ledger on the database read the entry."""
    payload = {"grant": "g_1", "subject": "s_1"}

    async def main() -> tuple[LedgerEntry, LedgerEntry | None, LedgerEntry]:
        entry = await ledger.append_async("consent.granted", payload, actor="org_a", now=datetime.now(UTC))
        other_db = Database.from_url(db_url)  # read before anything else runs: no close, no checkpoint first
        other = Ledger(other_db, signer=signer, origin=ORIGIN)
        try:
            with other_db.engine.connect() as conn:
                fresh = repository.get_entry(conn, entry.seq)
            via_ledger = other.get(entry.seq)
        finally:
            other.close()
            other_db.dispose()
        return entry, fresh, via_ledger

    entry, fresh, via_ledger = run(main())
    assert entry.seq == 0
    assert entry.payload == payload
    assert fresh is not None
    assert (fresh.body, fresh.leaf_hash) == (via_ledger.body, via_ledger.leaf_hash) == (entry.body, entry.leaf_hash)
    assert fresh.actor == "org_a"
    assert fresh.kind == "consent.granted"
    assert _verify(ledger) == 1


@pytest.mark.slow
def test_tasks_and_threads_make_one_chain(ledger: Ledger, run: LoopRunner) -> None:
    """16 asyncio tasks and 4 threads appending at once get seq 0..N-1 with no gap, each in its own order; it verifies."""
    tasks, threads, each = 16, 4, 60
    thread_seqs: list[list[int]] = [[] for _ in range(threads)]

    def thread_writer(worker: int) -> None:
        for n in range(each):
            entry = ledger.append("check.decided", {"w": f"t{worker}", "n": n}, actor="org_t", now=datetime.now(UTC))
            thread_seqs[worker].append(entry.seq)

    async def task_writer(worker: int) -> list[int]:
        seqs = []
        for n in range(each):
            entry = await ledger.append_async(
                "check.decided", {"w": f"a{worker}", "n": n}, actor="org_a", now=datetime.now(UTC)
            )
            seqs.append(entry.seq)
        return seqs

    async def main() -> list[list[int]]:
        pool = [threading.Thread(target=thread_writer, args=(w,)) for w in range(threads)]
        for thread in pool:
            thread.start()
        results = await asyncio.gather(*(task_writer(w) for w in range(tasks)))
        for thread in pool:
            await asyncio.to_thread(thread.join)
        return results

    task_seqs = run(main())
    total = (tasks + threads) * each
    every = [seq for part in (*task_seqs, *thread_seqs) for seq in part]
    assert sorted(every) == list(range(total))
    for part in (*task_seqs, *thread_seqs):  # each writer's appends are in the order it awaited them
        assert part == sorted(part)
        assert len(part) == each
    assert _verify(ledger) == total
    with ledger.db.engine.connect() as conn:
        written = {
            (entry.payload["w"], entry.payload["n"])
            for entry in (LedgerEntry.from_body(body) for _seq, _leaf, body in repository.iter_entries(conn))
        }
    assert written == {(f"a{w}", n) for w in range(tasks) for n in range(each)} | {
        (f"t{w}", n) for w in range(threads) for n in range(each)
    }


@pytest.mark.parametrize(
    ("kind", "payload", "actor", "match"),
    [
        ("no.such.kind", {"n": 1}, "org_a", "unknown entry kind"),  # refused by AppendSpec
        ("check.decided", {"ratio": 0.5}, "org_a", "floating-point"),  # the payload cannot be canonicalised
        ("check.decided", {"n": 1}, "\ud800", "not a Unicode string"),  # a lone surrogate in the actor
    ],
)
def test_refused_before_the_writer(ledger: Ledger, kind: str, payload: dict[str, Any], actor: str, match: str) -> None:
    """An append refused when its spec is built raises in the awaiting task and queues nothing."""

    async def main() -> None:
        with pytest.raises(ValidationError, match=match):
            await ledger.append_async(kind, payload, actor=actor, now=datetime.now(UTC))
        assert ledger._sequencer._queue.qsize() == 0

    LoopRunner(asyncio.new_event_loop)(main())  # refused before any loop is involved: the standard loop suffices
    assert ledger.size() == 0
    assert ledger.append("check.decided", {"n": 2}, actor="org_a", now=datetime.now(UTC)).seq == 0


def test_refused_in_the_writer_fails_alone(ledger: Ledger, run: LoopRunner) -> None:
    """A projector's DomainError and a naive timestamp fail their own awaiting tasks; their batch-mates are appended."""
    gate = Gate()

    def refuse(_conn: Connection, entry: LedgerEntry) -> None:
        if entry.payload.get("refuse"):
            msg = "refused by the projector"
            raise ValidationError(msg)

    ledger.projectors.register(["check.decided"], gate, may_refuse=False)
    ledger.projectors.register(["check.decided"], refuse)  # may refuse: runs in a savepoint

    async def main() -> tuple[list[LedgerEntry | BaseException], LedgerEntry]:
        held = asyncio.create_task(
            ledger.append_async("check.decided", {"hold": True}, actor="org_a", now=datetime.now(UTC))
        )
        await gate.entered_async()
        naive = datetime.now(UTC).replace(tzinfo=None)
        batch = [
            asyncio.create_task(ledger.append_async("check.decided", {"n": 1}, actor="org_b", now=datetime.now(UTC))),
            asyncio.create_task(
                ledger.append_async("check.decided", {"refuse": True}, actor="org_c", now=datetime.now(UTC))
            ),
            asyncio.create_task(ledger.append_async("check.decided", {"n": 3}, actor="org_d", now=naive)),
            asyncio.create_task(ledger.append_async("check.decided", {"n": 4}, actor="org_e", now=datetime.now(UTC))),
        ]
        await _queued(ledger, len(batch))  # all four wait behind the held transaction: one batch
        gate.release.set()
        outcomes = await asyncio.gather(*batch, return_exceptions=True)
        return outcomes, await held

    (first, refused, naive, last), held = run(main())
    assert held.seq == 0
    assert isinstance(first, LedgerEntry)
    assert first.seq == 1
    assert isinstance(refused, ValidationError)
    assert "refused by the projector" in str(refused)
    assert isinstance(naive, ValidationError)
    assert "timezone-aware" in str(naive)
    assert isinstance(last, LedgerEntry)
    assert last.seq == 2
    assert ledger.size() == 3
    assert [ledger.get(seq).payload for seq in range(3)] == [{"hold": True}, {"n": 1}, {"n": 4}]
    assert _verify(ledger) == 3


def _broken(conn: Connection, entry: LedgerEntry) -> None:
    """A projector whose SQL fails (a storage error, not a refusal) for entries marked ``boom``."""
    if entry.payload.get("boom"):
        conn.execute(text("INSERT INTO no_such_table (x) VALUES (1)"))


@pytest.mark.parametrize("may_refuse", [False, True], ids=["plain-projector", "refusing-projector"])
def test_storage_error_fails_the_batch_and_the_writer_recovers(
    ledger: Ledger, run: LoopRunner, may_refuse: bool
) -> None:
    """A storage error in the writer raises UnavailableError in the awaiting task, appends nothing; the next batch goes on."""
    gate = Gate()

    ledger.projectors.register(["check.decided"], gate, may_refuse=False)
    ledger.projectors.register(["check.decided"], _broken, may_refuse=may_refuse)
    ledger.append("check.decided", {"n": 0}, actor="org_a", now=datetime.now(UTC))

    async def main() -> tuple[list[LedgerEntry | BaseException], LedgerEntry | BaseException, LedgerEntry]:
        held = asyncio.create_task(
            ledger.append_async("check.decided", {"hold": True, "boom": True}, actor="org_a", now=datetime.now(UTC))
        )
        await gate.entered_async()
        mates = [
            asyncio.create_task(ledger.append_async("consent.granted", {"n": n}, actor="org_b", now=datetime.now(UTC)))
            for n in range(3)
        ]
        await _queued(ledger, len(mates))
        gate.release.set()
        (held_outcome,) = await asyncio.gather(held, return_exceptions=True)
        outcomes = await asyncio.gather(*mates, return_exceptions=True)  # the next batch: unaffected
        after = await ledger.append_async("consent.granted", {"n": "after"}, actor="org_c", now=datetime.now(UTC))
        return outcomes, held_outcome, after

    mates, held, after = run(main())
    assert isinstance(held, UnavailableError)
    assert "no_such_table" in str(held)
    assert [m.seq for m in mates if isinstance(m, LedgerEntry)] == [1, 2, 3]
    assert after.seq == 4
    assert ledger.size() == 5
    assert all(not ledger.get(seq).payload.get("boom") for seq in range(5))
    assert _verify(ledger) == 5


def test_storage_error_fails_every_awaiting_task_of_its_batch(ledger: Ledger, run: LoopRunner) -> None:
    """Tasks committed in the same batch as a storage error all raise UnavailableError, and none of them is appended."""
    gate = Gate()

    ledger.projectors.register(["check.decided"], gate, may_refuse=False)
    ledger.projectors.register(["consent.granted"], _broken, may_refuse=False)

    async def main() -> tuple[list[LedgerEntry | BaseException], LedgerEntry]:
        held = asyncio.create_task(
            ledger.append_async("check.decided", {"hold": True}, actor="org_a", now=datetime.now(UTC))
        )
        await gate.entered_async()
        batch = [
            asyncio.create_task(
                ledger.append_async("consent.granted", {"n": n, "boom": n == 1}, actor="org_b", now=datetime.now(UTC))
            )
            for n in range(3)
        ]
        await _queued(ledger, len(batch))
        gate.release.set()
        await held
        return await asyncio.gather(*batch, return_exceptions=True), await ledger.append_async(
            "consent.granted", {"n": "after"}, actor="org_c", now=datetime.now(UTC)
        )

    outcomes, after = run(main())
    assert all(isinstance(outcome, UnavailableError) for outcome in outcomes), outcomes
    assert after.seq == 1
    assert ledger.size() == 2
    assert _verify(ledger) == 2


def test_cancelled_task_still_appends(ledger: Ledger, run: LoopRunner, caplog: pytest.LogCaptureFixture) -> None:
    """Cancelling the awaiting task does not withdraw its entry: it is appended in order, and no error is logged."""
    caplog.set_level(logging.WARNING)
    gate = Gate()
    ledger.projectors.register(["check.decided"], gate, may_refuse=False)

    async def main() -> tuple[LedgerEntry, LedgerEntry]:
        held = asyncio.create_task(
            ledger.append_async("check.decided", {"hold": True}, actor="org_a", now=datetime.now(UTC))
        )
        await gate.entered_async()
        victim = asyncio.create_task(
            ledger.append_async("consent.granted", {"n": "victim"}, actor="org_b", now=datetime.now(UTC))
        )
        await _queued(ledger, 1)  # the victim's unit is handed to the writer before it is cancelled
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        gate.release.set()
        first = await held
        after = await ledger.append_async("consent.granted", {"n": "after"}, actor="org_c", now=datetime.now(UTC))
        return first, after

    first, after = run(main())
    assert (first.seq, after.seq) == (0, 2)
    assert ledger.get(1).payload == {"n": "victim"}
    assert _verify(ledger) == 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_entry_outlives_its_closed_loop(ledger: Ledger, run: LoopRunner, caplog: pytest.LogCaptureFixture) -> None:
    """An append whose loop shut down (cancelling its task) before the commit is appended, and no error is logged."""
    caplog.set_level(logging.WARNING)
    gate = Gate()
    ledger.projectors.register(["check.decided"], gate, may_refuse=False)

    pending: list[asyncio.Task[LedgerEntry]] = []

    async def main() -> None:
        # Left pending on purpose: asyncio.run cancels it and closes the loop while the writer is held.
        pending.append(
            asyncio.create_task(
                ledger.append_async("check.decided", {"hold": True}, actor="org_a", now=datetime.now(UTC))
            )
        )
        await gate.entered_async()

    run(main())
    gate.release.set()
    # Queued behind the held batch: when this returns, the held batch was settled (its outcome handed back).
    after = ledger.append("consent.granted", {"n": "after"}, actor="org_b", now=datetime.now(UTC))
    assert after.seq == 1
    assert ledger.get(0).payload == {"hold": True}
    assert pending[0].cancelled()
    assert _errors(caplog) == []


def test_close_finishes_queued_async_appends_then_refuses(ledger: Ledger, run: LoopRunner) -> None:
    """close() commits the appends already awaited; append_async afterwards raises UnavailableError."""
    gate = Gate()
    ledger.projectors.register(["check.decided"], gate, may_refuse=False)

    async def main() -> list[LedgerEntry]:
        held = asyncio.create_task(
            ledger.append_async("check.decided", {"hold": True}, actor="org_a", now=datetime.now(UTC))
        )
        await gate.entered_async()
        queued = [
            asyncio.create_task(ledger.append_async("consent.granted", {"n": n}, actor="org_b", now=datetime.now(UTC)))
            for n in range(5)
        ]
        await _queued(ledger, len(queued))
        closing = asyncio.create_task(asyncio.to_thread(ledger.close))
        gate.release.set()
        entries = [await held, *await asyncio.gather(*queued)]
        await closing
        with pytest.raises(UnavailableError, match="closed"):
            await ledger.append_async("consent.granted", {"n": 9}, actor="org_c", now=datetime.now(UTC))
        return entries

    entries = run(main())
    assert [entry.seq for entry in entries] == list(range(6))
    assert not ledger.writer_running()
    with ledger.db.engine.connect() as conn:
        assert repository.size(conn) == 6
        assert verify_live(conn, [ledger.signer.verifier], origin=ORIGIN).entries == 6


def test_loop_keeps_running_while_commits_are_in_flight(ledger: Ledger, run: LoopRunner) -> None:
    """Every entry's projector (inside the writer's open transaction) sees a loop heartbeat tick that began after it."""
    tasks, each = 16, 15
    tick = threading.Event()
    missed: list[int] = []

    def needs_a_tick(_conn: Connection, entry: LedgerEntry) -> None:
        tick.clear()
        if missed or not tick.wait(WAIT):  # only a running loop sets it again (after one miss, fail fast)
            missed.append(entry.seq)
            msg = "the event loop did not run while the writer held a transaction open"
            raise DomainError(msg)

    ledger.projectors.register(["check.decided"], needs_a_tick, may_refuse=False)
    in_flight = 0
    seen_in_flight: list[int] = []

    async def heartbeat(stop: asyncio.Event) -> int:
        beats = 0
        while not stop.is_set():
            tick.set()
            beats += 1
            seen_in_flight.append(in_flight)
            await asyncio.sleep(0)
        return beats

    async def writer(worker: int) -> list[int]:
        nonlocal in_flight
        seqs = []
        for n in range(each):
            in_flight += 1
            try:
                entry = await ledger.append_async(
                    "check.decided", {"w": worker, "n": n}, actor="org_a", now=datetime.now(UTC)
                )
            finally:
                in_flight -= 1
            seqs.append(entry.seq)
        return seqs

    async def main() -> tuple[int, list[list[int]]]:
        stop = asyncio.Event()
        beating = asyncio.create_task(heartbeat(stop))
        results = await asyncio.gather(*(writer(w) for w in range(tasks)))
        stop.set()
        return await beating, results

    beats, results = run(main())
    total = tasks * each
    assert missed == []
    assert sorted(seq for part in results for seq in part) == list(range(total))
    assert beats >= total  # at least one tick per committed entry
    assert max(seen_in_flight) > 1  # the loop ticked while several appends awaited their commit
    assert _verify(ledger) == total
