"""Ledger tests exercise the ledger alone, with arbitrary payloads: no domain projectors run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.instance import Instance


@pytest.fixture
def instance(instance: Instance) -> Iterator[Instance]:
    """The shared trust fixture with the domain projectors switched off."""
    instance.ledger.projectors.by_kind.clear()
    yield instance
