"""Projection helpers: the fast JSON of code lists is exactly what the JSON encoder writes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from consent.projections import _json


@settings(deadline=None, max_examples=300)
@given(st.lists(st.one_of(st.text(), st.sampled_from(["research.health", "org_a", '","', '"', "\\", "é"]))))
def test_fast_json_equals_the_encoder(values):
    """For any list of strings, the fast path and json.dumps agree byte for byte."""
    assert _json(values) == json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def test_null_stays_null():
    """A missing list (any recipient, every operation) is stored as NULL."""
    assert _json(None) is None
