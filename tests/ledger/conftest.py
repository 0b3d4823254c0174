"""Ledger tests exercise the ledger alone, with arbitrary payloads: no domain projectors run."""

from __future__ import annotations

import pytest

from api.instance import Instance


@pytest.fixture
def instance(instance: Instance) -> Instance:
    """The shared trust fixture with the domain projectors switched off."""
    instance.ledger.projectors.by_kind.clear()
    return instance
