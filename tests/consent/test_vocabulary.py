"""Vocabularies: dotted hierarchies, special categories, "did you mean", documents and hashes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.vocabulary import Vocabulary, ancestors, code_covers
from ledger.errors import ValidationError

DEFAULT = Vocabulary.default()


def test_default_vocabulary_has_the_promised_codes():
    """The shipped vocabulary holds the purposes and categories the issue lists, with plain labels."""
    for code in ("research", "research.health", "research.social", "service_delivery", "service_delivery.referral"):
        assert code in DEFAULT.purposes
    assert "statistics.aggregate" in DEFAULT.purposes
    for code in ("contact", "demographics", "demographics.age", "demographics.gender", "housing", "financial"):
        assert code in DEFAULT.categories
    assert all(t.label and t.description for t in [*DEFAULT.purposes.values(), *DEFAULT.categories.values()])


@pytest.mark.parametrize(
    ("code", "special"),
    [
        ("health", True),  # marked special itself
        ("health.mental", True),  # marked, and below a special category
        ("ethnicity", True),
        ("religion", True),
        ("sexual_orientation", True),
        ("criminal_offence", True),
        ("housing", False),
        ("demographics.age", False),
    ],
)
def test_special_categories(code, special):
    """GDPR Art. 9 and 10 categories are special; ordinary ones are not."""
    assert DEFAULT.is_special(code) is special


def test_research_covers_research_health_never_the_reverse():
    """Consent to a broader code covers the narrower code, never the reverse."""
    assert DEFAULT.covers("research", "research.health")
    assert not DEFAULT.covers("research.health", "research")
    assert not DEFAULT.covers("health.mental", "health")
    assert DEFAULT.covers("health", "health.mental")


def test_a_shared_prefix_is_not_a_parent():
    """``research`` does not cover ``researcher``: only a dot starts a narrower code."""
    assert not code_covers("research", "researcher")
    assert not code_covers("health", "healthcare.mental")


def test_closest_codes_for_did_you_mean():
    """Misspelt or partial codes find the known codes they resemble, best first."""
    assert DEFAULT.closest("reserch", "purposes")[0] == "research"
    assert "health.mental" in DEFAULT.closest("mental", "categories")
    assert DEFAULT.closest("zzzzzz", "categories") == []


def test_check_names_every_unknown_code_and_its_closest_matches():
    """An unknown code is refused with the code, its position and the closest known codes."""
    with pytest.raises(ValidationError, match="unknown data category 'helth'") as caught:
        DEFAULT.check("categories", ["housing", "helth", "xyzzy"])
    errors: Any = caught.value.extensions["errors"]
    assert [e["code"] for e in errors] == ["helth", "xyzzy"]
    assert errors[0]["field"] == "categories[1]"
    assert "health" in errors[0]["closest"]


def test_check_removes_duplicates_and_needs_one_code():
    """Repeated codes are kept once, in order; an empty list is refused."""
    assert DEFAULT.check("purposes", ["research", "research", "statistics"]) == ["research", "statistics"]
    with pytest.raises(ValidationError, match="at least one purpose"):
        DEFAULT.check("purposes", [])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": "1", "purposes": {"a.b": {"label": "B"}}, "categories": {"c": {"label": "C"}}}, "no parent"),
        ({"version": "1", "purposes": {"A": {"label": "A"}}, "categories": {"c": {"label": "C"}}}, "invalid purpose"),
        ({"version": "1", "purposes": {"a": {"label": ""}}, "categories": {"c": {"label": "C"}}}, "label"),
        (
            {"version": "1", "purposes": {"a": {"label": "A", "special": True}}, "categories": {"c": {"label": "C"}}},
            "cannot be special",
        ),
        ({"version": "", "purposes": {"a": {"label": "A"}}, "categories": {"c": {"label": "C"}}}, "version"),
        ({"version": "1", "purposes": {}, "categories": {"c": {"label": "C"}}}, r"\[purposes\]"),
    ],
)
def test_malformed_vocabularies_are_refused(document, message):
    """A vocabulary with an orphan, a bad code, no label or a special purpose is refused."""
    with pytest.raises(ValidationError, match=message):
        Vocabulary.from_document(document)


def test_document_round_trip_and_hash():
    """The ledger document rebuilds the same vocabulary (same hash); any change changes the hash."""
    again = Vocabulary.from_document(DEFAULT.to_document())
    assert again.hash == DEFAULT.hash
    changed = DEFAULT.to_document()
    changed["purposes"]["research"]["label"] = "Studies"
    assert Vocabulary.from_document(changed).hash != DEFAULT.hash


def test_special_is_inherited_in_the_document():
    """A child of a special category is written as special even if its own entry did not say so."""
    vocabulary = Vocabulary.from_document(
        {
            "version": "1",
            "purposes": {"p": {"label": "P"}},
            "categories": {"h": {"label": "H", "special": True}, "h.x": {"label": "X"}},
        }
    )
    assert vocabulary.to_document()["categories"]["h.x"]["special"] is True


# -- properties over random hierarchies ---------------------------------------------------------

SEGMENTS = st.sampled_from(["a", "b", "c", "ab", "ba", "x1", "y_2"])


@st.composite
def hierarchies(draw):
    """A random tree of dotted codes (each parent present), with random special marks."""
    codes: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        parent = draw(st.sampled_from([None, *codes])) if codes else None
        segment = draw(SEGMENTS)
        code = segment if parent is None else f"{parent}.{segment}"
        if code not in codes and len(code) <= 64:
            codes.append(code)
    marks = {code: draw(st.booleans()) for code in codes}
    return codes, marks


def _vocabulary(codes, marks):
    return Vocabulary.from_document(
        {
            "version": "random",
            "purposes": {c: {"label": c} for c in codes},
            "categories": {c: {"label": c, "special": marks[c]} for c in codes},
        }
    )


def _is_ancestor_or_self(a, b):
    """The tree relation, by walking parent links (independent of string prefixes)."""
    node = b
    while node:
        if node == a:
            return True
        node = node.rpartition(".")[0]
    return False


@settings(deadline=None, max_examples=60)
@given(hierarchies())
def test_covers_is_exactly_the_ancestor_relation(tree):
    """For any hierarchy, a covers b exactly when a is b or one of b's ancestors."""
    codes, marks = tree
    vocabulary = _vocabulary(codes, marks)
    for a in codes:
        for b in codes:
            assert vocabulary.covers(a, b) == _is_ancestor_or_self(a, b)


@settings(deadline=None, max_examples=60)
@given(hierarchies())
def test_covers_is_a_partial_order(tree):
    """Coverage is reflexive, antisymmetric and transitive: a narrower code never covers a broader one."""
    codes, marks = tree
    vocabulary = _vocabulary(codes, marks)
    for a in codes:
        assert vocabulary.covers(a, a)
        for b in codes:
            if a != b and vocabulary.covers(a, b):
                assert not vocabulary.covers(b, a)
            for c in codes:
                if vocabulary.covers(a, b) and vocabulary.covers(b, c):
                    assert vocabulary.covers(a, c)


@settings(deadline=None, max_examples=60)
@given(hierarchies())
def test_special_is_inherited_downwards(tree):
    """A category is special exactly when it or an ancestor is marked special."""
    codes, marks = tree
    vocabulary = _vocabulary(codes, marks)
    for code in codes:
        assert vocabulary.is_special(code) == any(marks.get(a, False) for a in ancestors(code))
