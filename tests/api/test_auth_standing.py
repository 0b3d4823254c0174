"""A token's good standing is remembered briefly.

Never past a suspension this process records, and never longer than its time to live for a
suspension another server records.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.standing import StandingCache
from api.instance import Instance
from tests.api.test_auth_tokens import BASE, ORG, _client_token, assert_refused, whoami
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


def test_a_suspension_recorded_by_another_server_binds_once_the_standing_expires(
    instance: Instance, api: TestClient, db_url: str
) -> None:
    """Another server's suspension is not heard of here at once, but binds within the time to live."""
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
