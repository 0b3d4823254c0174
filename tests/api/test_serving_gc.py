"""A server process sets the garbage collector up for serving (``api.serving_gc.prepare_gc_for_serving``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.serving_gc import SERVING_GC_THRESHOLD, prepare_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Put the collector back as it was (the test process goes on running other tests)."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_rarer() -> None:
    """What is alive at start-up is frozen, and generation 0 waits for many more allocations than 700."""
    gc.unfreeze()
    _, gen1, gen2 = gc.get_threshold()
    prepare_gc_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (SERVING_GC_THRESHOLD, gen1, gen2)
    assert SERVING_GC_THRESHOLD > 700
