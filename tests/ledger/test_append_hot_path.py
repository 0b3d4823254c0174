"""The append path's shortcuts give exactly what the general code gives."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785

from ledger.entry import canonical_payload
from ledger.errors import ValidationError
from ledger.merkle import CompactRange, leaf_hash

SAFE_INT = 2**53 - 1


@pytest.mark.parametrize(
    "payload",
    [
        {"permitted": 118, "excluded": 0, "decision": "permit", "ok": True, "none": None},
        {"low": -SAFE_INT, "high": SAFE_INT, "zero": 0, "tags": ["a", "b"]},
        {"b": 1, "a": 2, "B": -3, "_": False},
    ],
)
def test_flat_payload_with_integers_is_rfc8785(payload: dict[str, Any]) -> None:
    """Top-level integers in the exact range take the shortcut and give RFC 8785's bytes."""
    assert canonical_payload(payload) == rfc8785.dumps(payload)


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**21])
def test_integer_out_of_exact_range_is_refused(number: int) -> None:
    """An integer RFC 8785 cannot write exactly is refused, shortcut or not."""
    with pytest.raises(ValidationError):
        canonical_payload({"n": number, "s": "x"})


def test_push_reports_the_nodes_append_reports() -> None:
    """``push`` builds the same tree and completes the same nodes, in order, as ``append``."""
    by_append, by_push = CompactRange(), CompactRange()
    reported: list[tuple[int, int, bytes]] = []
    pushed: list[tuple[int, int, bytes]] = []
    for n in range(300):
        leaf = leaf_hash(n.to_bytes(4, "big"))
        by_append.append(leaf, lambda level, idx, value: reported.append((level, idx, value)))
        by_push.push(leaf, pushed)
        assert (by_push.size, by_push.hashes) == (by_append.size, by_append.hashes)
        assert by_push.root() == by_append.root()
    assert pushed == reported
    assert len(pushed) == 300 - (300).bit_count()  # every completed perfect subtree of level >= 1
