"""Remembering, briefly, that a token's client and organisation are in good standing.

Every bearer request must be refused once its client is suspended or rotated away, or its
organisation suspended. Reading that from the database on each call cost two queries per
request on the hot path (the check). This cache keeps only *good* standings:

* in this process a suspension, rotation or registration binds at once: the ledger tells the
  cache of every batch it commits (before the appending caller is released), and any
  ``client.*`` or ``org.*`` entry empties it;
* another server process sharing a PostgreSQL database learns of it within
  ``ttl_seconds`` (default 1 s), after which a remembered standing is read again.

A generation number guards the race where a request reads the old standing while a
suspension commits: what it read is then not remembered.

On the event loop (:meth:`StandingCache.confirm`, :meth:`StandingCache.refresh_ahead`) the
database is read in the thread pool, once at a time for a key: requests that arrive while a
read is in flight wait for that read instead of each starting their own, and a standing in
the second half of its time to live is read again in the background by the first request
that sees it, so that under steady traffic it is renewed before it expires and no request
waits for the database at all. (Before, every request in the moment after the expiry read
the database itself: at 1,500 checks a second, about one request in fifteen.) A background
read that finds the standing bad forgets it, so the next request is refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from functools import partial

from starlette.concurrency import run_in_threadpool

from ledger.entry import LedgerEntry
from ledger.service import Ledger

STANDING_KINDS = frozenset(
    {"org.registered", "org.suspended", "client.registered", "client.rotated", "client.suspended"}
)
DEFAULT_TTL_SECONDS = 1.0
MAX_ENTRIES = 10_000


class StandingCache:
    """Good standings, keyed by whatever identifies a token's standing (client, credential version, organisation)."""

    def __init__(
        self, *, ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._good: dict[Hashable, float] = {}
        self._generation = 0
        self._reading: dict[Hashable, asyncio.Task[None]] = {}  # reads in flight on the event loop, by key

    @classmethod
    def following(cls, ledger: Ledger, *, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> StandingCache:
        """A cache emptied whenever *ledger* commits an entry that can change a standing."""
        cache = cls(ttl_seconds=ttl_seconds)
        ledger.add_listener(cache.on_commit)
        return cache

    def on_commit(self, entries: list[LedgerEntry]) -> None:
        """Ledger listener: forget every standing if the batch touches clients or organisations."""
        if any(entry.kind in STANDING_KINDS for entry in entries):
            self.clear()

    def clear(self) -> None:
        """Forget every remembered standing."""
        with self._lock:
            self._good.clear()
            self._generation += 1

    def generation(self) -> int:
        """Read before checking the database; pass to :meth:`remember`."""
        return self._generation

    def is_good(self, key: Hashable) -> bool:
        """Whether *key* was found in good standing less than ``ttl_seconds`` ago."""
        return self.standing(key) != "unknown"

    def forget(self, key: Hashable) -> None:
        """Forget *key*'s standing (a read found it bad): the next request reads it again."""
        with self._lock:
            self._good.pop(key, None)

    async def confirm(self, key: Hashable, read: Callable[[], None]) -> None:
        """Run *read* in the thread pool, or wait for the run already in flight for *key* on this loop.

        *read* checks the database, raises if the standing is bad and calls :meth:`remember`
        if it is good. Every caller sharing a run gets its outcome, the exception included.
        """
        await asyncio.shield(self._read(key, read))

    def standing(self, key: Hashable) -> str:
        """``"good"``, ``"renew"`` (good, past half its time to live, no renewal in flight) or ``"unknown"``."""
        until = self._good.get(key)
        if until is None:
            return "unknown"
        left = until - self._clock()
        if left <= 0:
            return "unknown"
        return "renew" if left < self.ttl_seconds / 2 and key not in self._reading else "good"

    def refresh_ahead(self, key: Hashable, read: Callable[[], None]) -> None:
        """Start *read* in the background if *key* is good but past half its time to live and none is in flight."""
        if self.standing(key) == "renew":
            self._read(key, read)

    def _read(self, key: Hashable, read: Callable[[], None]) -> asyncio.Task[None]:
        loop = asyncio.get_running_loop()
        task = self._reading.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(run_in_threadpool(read))
            self._reading[key] = task
            task.add_done_callback(partial(self._read_done, key))
        return task

    def _read_done(self, key: Hashable, task: asyncio.Task[None]) -> None:
        if self._reading.get(key) is task:
            del self._reading[key]
        if not task.cancelled():
            task.exception()  # retrieved here too: a background read's refusal has no other reader

    def remember(self, key: Hashable, generation: int) -> None:
        """Remember *key* as in good standing, unless a change committed since *generation*."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._good) >= MAX_ENTRIES:
                self._good.clear()
            self._good[key] = self._clock() + self.ttl_seconds
