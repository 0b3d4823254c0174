"""Ledger tests exercise the ledger alone, with arbitrary payloads: no domain projectors run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.instance import Instance
from ledger.db import Database
from ledger.keys import Signer
from ledger.service import Ledger


@pytest.fixture
def instance(instance: Instance) -> Instance:
    """The shared trust fixture with the domain projectors switched off."""
    instance.ledger.projectors.by_kind.clear()
    instance.ledger.projectors.batched.clear()
    instance.ledger.projectors.rows.clear()
    return instance


@pytest.fixture
def signer(request: pytest.FixtureRequest) -> Signer:
    """The log key every writer of the test shares, named by the test module's ``ORIGIN``."""
    return Signer.generate(getattr(request.module, "ORIGIN", "datatrust.test/ledger"))


@pytest.fixture
def ledger(db_url: str, signer: Signer) -> Iterator[Ledger]:
    """A bare ledger (no projections) on each database engine."""
    db = Database.from_url(db_url)
    opened = Ledger(db, signer=signer, origin=signer.name)
    yield opened
    opened.close()
    db.dispose()
