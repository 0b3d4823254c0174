"""Pure helpers of the register and the uses history: suppression, month windows, plain words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trust.register import RULE_WORDS, MonthlyChecks, _months_back, rule_words, suppress
from trust.uses import explain


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, 0),  # nobody: safe to say so
        (1, None),  # one to nine people could be picked out
        (9, None),
        (10, 10),  # the minimum cohort is published
        (250, 250),
    ],
)
def test_counts_below_the_minimum_are_suppressed(count: int, shown: int | None) -> None:
    """A count between 1 and the minimum minus one is withheld; zero and the minimum or more are shown."""
    assert suppress(count, 10) == shown


@pytest.mark.parametrize(
    ("at", "months", "start"),
    [
        (datetime(2026, 11, 26, tzinfo=UTC), 12, "2025-12"),
        (datetime(2026, 1, 5, tzinfo=UTC), 12, "2025-02"),
        (datetime(2026, 1, 5, tzinfo=UTC), 1, "2026-01"),  # only the current month
    ],
)
def test_the_window_of_monthly_counts_starts_on_a_month(at: datetime, months: int, start: str) -> None:
    """The last *months* calendar months, the current one included."""
    assert _months_back(at, months) == start


def test_a_month_is_named_in_words() -> None:
    """``2026-11`` reads as November 2026."""
    row = MonthlyChecks("2026-11", "org_x", "X", 10, None)
    assert row.month_words == "November 2026"


def test_every_rule_reads_after_approved_when() -> None:
    """Each rule's words complete "Approved when …" and unknown rules fall back to their name in words."""
    for words in RULE_WORDS.values():
        assert not words.lower().startswith(("approved", "fast track:"))
    assert rule_words("some_new_rule") == "some new rule"
    assert rule_words(None) == ""


@pytest.mark.parametrize(
    ("rule", "reason", "because"),
    [
        ("consent", "consent con_1 was withdrawn by the person at 2026-…", "your consent had been withdrawn"),
        ("consent", "consent con_1 was revoked by the trust at 2026-…", "your consent had been withdrawn"),
        (
            "consent",
            "the person asked for their data to be erased (entry 9)",
            "you asked for your details to be erased",
        ),
        ("consent", "consent con_1 expired at 2026-…", "your consent was not in force at the time"),
        (
            "consent",
            "consent con_1 does not cover the purpose research.health",
            "none of your consents covers this use",
        ),
        ("organisation", "org_x is suspended", "the organisation was not in good standing with the trust"),
        ("something_new", "words", "the trust's rules did not allow it"),
    ],
)
def test_uses_are_explained_in_plain_words(rule: str, reason: str, because: str) -> None:
    """Why a person was left out of a share is said without codes."""
    assert (
        explain(is_permitted=False, rule=rule, reason=reason)
        == f"Your information was not included, because {because}."
    )
    assert explain(is_permitted=True, rule=None, reason=None).startswith("Your information was included")
