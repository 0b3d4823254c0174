"""A token's good standing is remembered briefly.

Never past a suspension this process records, and never longer than its time to live for a
suspension another server records. On the event loop, requests waiting for the same
standing share one database read, and a standing is renewed in the background before it
expires.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.standing import StandingCache
from api.instance import Instance
from api.problems import UnauthorisedError
from tests.api.test_auth_tokens import BASE, ORG, _client_token, assert_refused, whoami
from tests.event_loop import run_on_new_loop
from tests.factories import make_organisation
from trust.identity import suspend_client


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The time the test has set."""
        return self.now


@pytest.fixture
def api(instance: Instance) -> Iterator[TestClient]:
    """An API client for a trust with the partner organisation registered."""
    make_organisation(instance, ORG)
    with TestClient(create_app(instance), base_url=BASE) as client:
        yield client


def _suspended_by_another_server(
    instance: Instance, api: TestClient, db_url: str
) -> tuple[FakeClock, StandingCache, str, str]:
    """A client whose good standing this server remembers (1 s), then suspended by a second server."""
    clock = FakeClock()
    standing = StandingCache(ttl_seconds=1.0, clock=clock)
    instance.ledger.add_listener(standing.on_commit)
    api.app.state.standing = standing  # type: ignore[attr-defined]
    client_id, _secret, token = _client_token(instance, api)
    assert whoami(api, token).status_code == 200  # read from the database, then remembered

    other = Instance.open(instance.data_dir, database_url=db_url)  # a second server on the same database
    try:
        suspend_client(other.ledger, client_id=client_id, reason="key leaked", actor="trust", now=datetime.now(UTC))
    finally:
        other.close()
    return clock, standing, client_id, token


def test_a_suspension_recorded_by_another_server_binds_once_the_standing_expires(
    instance: Instance, api: TestClient, db_url: str
) -> None:
    """Another server's suspension is not heard of here at once, but binds within the time to live."""
    clock, _standing, client_id, token = _suspended_by_another_server(instance, api, db_url)

    assert whoami(api, token).status_code == 200  # this server has not heard yet: within the documented bound
    clock.now += 1.01
    assert_refused(whoami(api, token), f"client {client_id} is suspended")


def test_a_suspension_recorded_here_binds_at_once(instance: Instance, api: TestClient) -> None:
    """This process's own suspension empties the cache as it commits: no waiting."""
    clock = FakeClock()
    standing = StandingCache(ttl_seconds=3600.0, clock=clock)
    instance.ledger.add_listener(standing.on_commit)
    api.app.state.standing = standing  # type: ignore[attr-defined]
    client_id, _secret, token = _client_token(instance, api)
    assert whoami(api, token).status_code == 200
    suspend_client(instance.ledger, client_id=client_id, reason="key leaked", actor="trust", now=datetime.now(UTC))
    assert_refused(whoami(api, token), f"client {client_id} is suspended")  # no waiting for the hour


def test_a_standing_read_before_a_change_is_not_remembered() -> None:
    """A request that read the old standing while a suspension committed does not store it."""
    clock = FakeClock()
    cache = StandingCache(clock=clock)
    generation = cache.generation()  # a request starts reading the database ...
    cache.clear()  # ... a suspension commits meanwhile ...
    cache.remember(("client_a", 1, "org_a"), generation)  # ... and what the request read is stale
    assert not cache.is_good(("client_a", 1, "org_a"))
    cache.remember(("client_a", 1, "org_a"), cache.generation())
    assert cache.is_good(("client_a", 1, "org_a"))
    clock.now += cache.ttl_seconds
    assert not cache.is_good(("client_a", 1, "org_a"))


KEY = ("client_a", 1, "org_a")


def test_requests_that_arrive_while_a_standing_is_read_share_that_one_read() -> None:
    """Twenty requests of one client, after its standing expired, cause one database read, not twenty."""
    cache = StandingCache()
    reads: list[int] = []
    gate = threading.Event()

    def read() -> None:
        gate.wait(5)
        reads.append(1)
        cache.remember(KEY, cache.generation())

    async def main() -> None:
        waiting = [asyncio.create_task(cache.confirm(KEY, read)) for _ in range(20)]
        await asyncio.sleep(0.05)  # all twenty are waiting for the read in flight
        gate.set()
        await asyncio.gather(*waiting)

    run_on_new_loop(main())
    assert reads == [1]
    assert cache.is_good(KEY)


def test_a_refusal_found_by_a_shared_read_reaches_every_request_waiting_for_it() -> None:
    """Each waiting request is refused; nothing is remembered; the next request reads again."""
    cache = StandingCache()
    reads: list[int] = []

    def read() -> None:
        reads.append(1)
        msg = "the access token is no longer valid: client client_a is suspended"
        raise UnauthorisedError(msg)

    async def main() -> list[BaseException | None]:
        outcomes = await asyncio.gather(*(cache.confirm(KEY, read) for _ in range(5)), return_exceptions=True)
        return list(outcomes)

    outcomes = run_on_new_loop(main())
    assert all(isinstance(outcome, UnauthorisedError) for outcome in outcomes)
    assert reads == [1]
    assert not cache.is_good(KEY)
    with pytest.raises(UnauthorisedError):
        run_on_new_loop(cache.confirm(KEY, read))
    assert reads == [1, 1]


def test_a_standing_is_read_again_in_the_background_only_in_the_second_half_of_its_time_to_live() -> None:
    """Before half its time to live nothing is read; after, one background read renews it (not one per request)."""
    clock = FakeClock()
    cache = StandingCache(ttl_seconds=1.0, clock=clock)
    cache.remember(KEY, cache.generation())
    reads: list[float] = []

    def read() -> None:
        reads.append(clock.now)
        cache.remember(KEY, cache.generation())

    async def requests(count: int) -> None:
        for _ in range(count):
            cache.refresh_ahead(KEY, read)
        await asyncio.gather(*list(cache._reading.values()))  # the background read the requests started

    run_on_new_loop(requests(10))
    assert reads == []  # fresh: no read
    clock.now += 0.6
    run_on_new_loop(requests(10))
    assert reads == [clock.now]  # ten requests, one read
    clock.now += 0.6  # 1.2 s after the first read, 0.6 s after the renewal: still good
    assert cache.is_good(KEY)


def test_not_known_standing_is_not_read_ahead() -> None:
    """A key never found good is not read in the background: the request itself must wait for the read."""
    cache = StandingCache()
    reads: list[int] = []

    async def main() -> None:
        cache.refresh_ahead(KEY, lambda: reads.append(1))
        await asyncio.sleep(0.05)

    run_on_new_loop(main())
    assert reads == []


def test_a_suspension_found_by_a_background_read_binds_before_the_time_to_live_is_up(
    instance: Instance, api: TestClient, db_url: str
) -> None:
    """Another server's suspension, found by the renewal a request started, refuses the next request at once."""
    clock, standing, client_id, token = _suspended_by_another_server(instance, api, db_url)

    clock.now += 0.6  # past half the time to live, not past all of it
    assert whoami(api, token).status_code == 200  # answered from the cache, and a renewal started
    deadline = time.monotonic() + 5
    while standing._good and time.monotonic() < deadline:  # the renewal has not finished yet
        time.sleep(0.01)
    assert_refused(whoami(api, token), f"client {client_id} is suspended")  # still within the 1 s
