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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

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
        until = self._good.get(key)
        return until is not None and self._clock() < until

    def remember(self, key: Hashable, generation: int) -> None:
        """Remember *key* as in good standing, unless a change committed since *generation*."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._good) >= MAX_ENTRIES:
                self._good.clear()
            self._good[key] = self._clock() + self.ttl_seconds
