"""Concurrent writers (threads, and separate processes on one database) never fork the chain or skip a number."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from ledger import repository
from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.errors import ValidationError
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.service import Ledger
from migrations import upgrade

ORIGIN = "datatrust.test/concurrency"


def _verify(ledger: Ledger) -> int:
    with ledger.db.engine.connect() as conn:
        report = verify_live(conn, [ledger.signer.verifier], origin=ORIGIN)
    return report.entries


def _payloads(conn: Connection, size: int) -> list[dict[str, Any]]:
    return [LedgerEntry.from_body(body).payload for _seq, _leaf, body in repository.iter_entries(conn, end=size)]


@pytest.mark.slow
def test_eight_threads_one_chain(ledger: Ledger) -> None:
    """8 threads appending 500 entries each through one Ledger get seq 0..3999 with no gap, and it verifies."""
    threads, each = 8, 500

    def work(worker: int) -> list[int]:
        return [
            ledger.append("check.decided", {"w": worker, "n": n}, actor=f"org_w{worker}", now=datetime.now(UTC)).seq
            for n in range(each)
        ]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, range(threads)))
    seqs = sorted(seq for result in results for seq in result)
    assert seqs == list(range(threads * each))
    for result in results:  # each writer's own appends are in the order it made them
        assert result == sorted(result)
    ledger.sign_checkpoint()
    assert _verify(ledger) == threads * each
    with ledger.db.engine.connect() as conn:
        assert {(p["w"], p["n"]) for p in _payloads(conn, threads * each)} == {
            (w, n) for w in range(threads) for n in range(each)
        }


def test_bad_append_does_not_fail_its_batch(ledger: Ledger) -> None:
    """An append refused in the writer (or before it) fails alone, never the others committed with it."""
    gate = threading.Event()
    started = threading.Event()

    def held(_conn: Connection) -> dict[str, Any]:
        started.set()
        gate.wait(10)
        return {"n": 0}

    def refused(_conn: Connection) -> dict[str, Any]:
        msg = "refused by prepare"
        raise ValidationError(msg)

    now = datetime.now(UTC)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(ledger.append, "check.decided", actor="org_a", now=now, prepare=held)
        assert started.wait(10)
        # These queue up behind the held transaction and are then written as one batch.
        bad = pool.submit(ledger.append, "check.decided", actor="org_b", now=now, prepare=refused)
        naive = pool.submit(ledger.append, "check.decided", {"n": 2}, actor="org_c", now=now.replace(tzinfo=None))
        good = pool.submit(ledger.append, "check.decided", {"n": 3}, actor="org_d", now=now)
        while ledger._sequencer._queue.qsize() < 3:  # wait until all three are queued
            threading.Event().wait(0.01)
        gate.set()
        assert first.result().seq == 0
        with pytest.raises(ValidationError, match="refused by prepare"):
            bad.result()
        with pytest.raises(ValidationError, match="timezone-aware"):
            naive.result()
        assert good.result().seq == 1
    with pytest.raises(ValidationError, match="not a Unicode string"):  # refused before it reaches the writer
        ledger.append("check.decided", {"n": 4}, actor="\ud800", now=now)
    assert ledger.append("check.decided", {"n": 5}, actor="org_e", now=now, checkpoint=True).seq == 2
    assert _verify(ledger) == 3


def test_two_writers_on_one_database_share_checkpoints(db_url: str, signer: Signer) -> None:
    """Two Ledgers on one database (as two servers) interleave appends and both sign checkpoints without conflict."""
    dbs = [Database.from_url(db_url), Database.from_url(db_url)]
    a, b = (Ledger(db, signer=signer, origin=ORIGIN, checkpoint_interval=60) for db in dbs)
    try:
        now = datetime.now(UTC)
        assert a.append("check.decided", {"n": 0}, actor="org_a", now=now).seq == 0
        assert b.append("check.decided", {"n": 1}, actor="org_b", now=now).seq == 1  # b reloads a's head
        assert a.append("check.decided", {"n": 2}, actor="org_a", now=now).seq == 2  # and a reloads b's
        note_b = b.sign_checkpoint()
        note_a = a.sign_checkpoint()  # the same size was already signed by b: not an error
        assert a.open_checkpoint(note_a).size == b.open_checkpoint(note_b).size == 3
        assert _verify(a) == 3
    finally:
        a.close()
        b.close()
        for db in dbs:
            db.dispose()


WRITER = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path

from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.keys import Signer
from ledger.service import Ledger

url, key, origin, proc, count, threads = sys.argv[1], Path(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:])
db = Database.from_url(url)
ledger = Ledger(db, signer=Signer.load(key), origin=origin)
print("ready", flush=True)
sys.stdin.readline()  # start together


def work(thread: int) -> None:
    for n in range(thread, count, threads):
        ledger.append("check.decided", {"proc": proc, "n": n}, actor=f"org_p{proc}", now=datetime.now(UTC))


workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
ledger.close()
db.dispose()
print("done", flush=True)
"""


@pytest.mark.slow
def test_separate_processes_one_chain(db_url: str, signer: Signer, tmp_path: Path) -> None:
    """Separate processes (4 on PostgreSQL, 2 on SQLite) appending 500 each make one chain with no gap or fork."""
    processes = 4 if db_url.startswith("postgresql") else 2
    each = 500
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    key = tmp_path / "log.key"
    signer.save(key)
    children = [
        subprocess.Popen(
            [sys.executable, str(script), db_url, str(key), ORIGIN, str(p), str(each), "4"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, err = child.communicate(timeout=240)
            assert child.returncode == 0, err
            assert out.strip() == "done"
            assert "Error" not in err, err  # no failed batch was logged (e.g. a duplicate checkpoint)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    db = Database.from_url(db_url)
    ledger = Ledger(db, signer=signer, origin=ORIGIN)
    try:
        ledger.sign_checkpoint()
        assert _verify(ledger) == processes * each
        with db.engine.connect() as conn:
            payloads = _payloads(conn, processes * each)
            assert repository.size(conn) == processes * each
        assert sorted((p["proc"], p["n"]) for p in payloads) == [(p, n) for p in range(processes) for n in range(each)]
    finally:
        ledger.close()
        db.dispose()


def test_sqlite_writers_of_several_processes_queue_on_one_file_lock(tmp_path: Path, signer: Signer) -> None:
    """On SQLite each process's writer holds the lock file beside the database for its transaction.

    Another writer (here another Database on the same file, holding the lock as that writer
    would) makes an append wait in the kernel's queue, and it goes through the moment the lock
    is let go; SQLite's own busy handler, which sleeps and retries, never comes into play.
    """
    url = f"sqlite:///{tmp_path / 'datatrust.db'}"
    upgrade(url)
    other, ours = Database.from_url(url), Database.from_url(url)
    ledger = Ledger(ours, signer=signer, origin=ORIGIN)
    done = threading.Event()

    def append() -> None:
        ledger.append("check.decided", {"n": 0}, actor="org_a", now=datetime.now(UTC))
        done.set()

    try:
        with other.writer_lock():
            appending = threading.Thread(target=append)
            appending.start()
            assert not done.wait(0.5), "the append went ahead while another writer held the lock"
        assert done.wait(10), "the append did not go ahead once the lock was let go"
        appending.join()
        assert _verify(ledger) == 1
    finally:
        ledger.close()
        other.dispose()
        ours.dispose()
