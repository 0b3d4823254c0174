"""Derived status and coverage of one consent, as pure functions of the consent and an instant."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.status import ConsentView, Ending, Status, covers, link_supersession
from ledger.entry import format_at

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(moment: datetime) -> str:
    """A ledger timestamp."""
    return format_at(moment)


def view(**overrides) -> ConsentView:
    """A consent granted at T0, for research on housing and contact details, with no end."""
    base = ConsentView(
        consent="con_a",
        subject="sub_aaaaaaaa",
        organisation="org_riverside_food_bank",
        purposes=("research",),
        categories=("housing", "contact"),
        recipients=None,
        operations=None,
        valid_from=at(T0),
        valid_until=None,
        explicit=False,
        seq=10,
        granted_at=at(T0),
    )
    return replace(base, **overrides)


def check(v: ConsentView, moment: datetime, **overrides):
    """Ask whether *v* covers a research.health use of housing data (with *overrides*)."""
    request: dict[str, Any] = {
        "purpose": "research.health",
        "categories": ["housing"],
        "recipient": "org_uni",
        "operation": "aggregate",
    }
    request.update(overrides)
    return covers(v, at=moment, **request)


def test_expiry_at_valid_until_exactly():
    """A consent is in force up to, but not at, valid_until: at that instant it has expired."""
    end = T0 + timedelta(days=365)
    v = view(valid_until=at(end))
    with freeze_time(end - timedelta(microseconds=1)):
        assert v.status(datetime.now(UTC)) is Status.ACTIVE
    with freeze_time(end):
        now = datetime.now(UTC)
        assert v.status(now) is Status.EXPIRED
        assert v.dpv(now) == "dpv:ConsentExpired"
        assert not check(v, now)


def test_pending_before_valid_from():
    """A consent that starts later is pending (and covers nothing) until it starts."""
    v = view(valid_from=at(T0 + timedelta(days=1)))
    assert v.status(T0 + timedelta(hours=1)) is Status.PENDING
    assert v.status(T0 + timedelta(days=1)) is Status.ACTIVE


def test_withdrawal_takes_effect_from_its_instant():
    """Withdrawn from the instant the withdrawal is recorded: one microsecond earlier it was active."""
    w = T0 + timedelta(days=2)
    v = view(withdrawal=Ending(seq=20, at=at(w), by="subject"))
    assert v.status(w - timedelta(microseconds=1)) is Status.ACTIVE
    assert v.status(w) is Status.WITHDRAWN
    assert v.status(w + timedelta(microseconds=1)) is Status.WITHDRAWN
    assert v.dpv(w) == "dpv:ConsentWithdrawn"


def test_revocation_by_the_trust():
    """A withdrawal by the trust is a revocation."""
    v = view(withdrawal=Ending(seq=20, at=at(T0 + timedelta(days=1)), by="trust"))
    info = v.state(T0 + timedelta(days=2))
    assert info.status is Status.REVOKED
    assert info.dpv == "dpv:ConsentRevoked"
    assert "revoked" in info.reason


def test_erasure_ends_the_consent():
    """After the subject is erased, the consent counts as withdrawn."""
    v = view(erasure=Ending(seq=30, at=at(T0 + timedelta(days=3)), by="subject"))
    assert v.status(T0 + timedelta(days=3)) is Status.WITHDRAWN
    assert "erased" in v.state(T0 + timedelta(days=4)).reason


def test_not_yet_recorded():
    """Asked about an instant before it was recorded, a consent covers nothing."""
    assert view().status(T0 - timedelta(seconds=1)) is Status.PENDING


# -- supersession -------------------------------------------------------------------------------


def _grant(consent, seq, purposes, categories, **extra):
    return view(
        consent=consent,
        seq=seq,
        granted_at=at(T0 + timedelta(days=seq)),
        purposes=purposes,
        categories=categories,
        **extra,
    )


def test_newer_consent_with_the_same_scope_supersedes():
    """A newer consent with the same purposes and categories supersedes the older one from its instant."""
    old = _grant("con_old", 1, ("research",), ("housing",))
    new = _grant("con_new", 2, ("research",), ("housing",), operations=("aggregate",))
    linked = {v.consent: v for v in link_supersession([new, old])}
    assert linked["con_old"].status(T0 + timedelta(days=1, hours=1)) is Status.ACTIVE
    assert linked["con_old"].status(T0 + timedelta(days=2)) is Status.SUPERSEDED
    assert _by(linked["con_old"]) == "con_new"
    assert linked["con_new"].status(T0 + timedelta(days=3)) is Status.ACTIVE
    assert linked["con_new"].dpv(T0 + timedelta(days=3)) == "dpv:RenewedConsentGiven"


def test_a_superset_supersedes_a_subset_never_the_reverse():
    """Broader purposes or more categories supersede; a narrower newer consent does not."""
    old = _grant("con_old", 1, ("research.health",), ("housing",))
    broader = _grant("con_b", 2, ("research",), ("housing", "contact"))
    linked = {v.consent: v for v in link_supersession([old, broader])}
    assert linked["con_old"].superseded_by is not None

    wide = _grant("con_wide", 1, ("research",), ("housing", "contact"))
    narrow = _grant("con_narrow", 2, ("research.health",), ("housing",))
    linked = {v.consent: v for v in link_supersession([wide, narrow])}
    assert linked["con_wide"].superseded_by is None
    assert linked["con_narrow"].superseded_by is None


def test_partial_overlap_does_not_supersede():
    """A newer consent that leaves out one of the older categories does not supersede it."""
    old = _grant("con_old", 1, ("research",), ("housing", "financial"))
    new = _grant("con_new", 2, ("research",), ("housing", "contact"))
    assert all(v.superseded_by is None for v in link_supersession([old, new]))


def test_a_consent_withdrawn_before_the_newer_one_is_not_superseded():
    """A consent already withdrawn when the newer one arrives stays withdrawn, not superseded."""
    old = _grant("con_old", 1, ("research",), ("housing",), withdrawal=Ending(2, at(T0 + timedelta(days=1, hours=2))))
    new = _grant("con_new", 3, ("research",), ("housing",))
    linked = {v.consent: v for v in link_supersession([old, new])}
    assert linked["con_old"].superseded_by is None
    assert linked["con_old"].status(T0 + timedelta(days=9)) is Status.WITHDRAWN


def test_supersession_is_permanent():
    """Withdrawing the newer consent does not bring the older one back."""
    old = _grant("con_old", 1, ("research",), ("housing",))
    new = _grant("con_new", 2, ("research",), ("housing",), withdrawal=Ending(5, at(T0 + timedelta(days=5))))
    linked = {v.consent: v for v in link_supersession([old, new])}
    later = T0 + timedelta(days=6)
    assert linked["con_old"].status(later) is Status.SUPERSEDED
    assert linked["con_new"].status(later) is Status.WITHDRAWN
    assert not check(linked["con_old"], later)


def test_the_first_newer_consent_is_reported():
    """When two newer consents both cover the scope, the earlier of them is the one that superseded."""
    old = _grant("con_old", 1, ("research",), ("housing",))
    second = _grant("con_2", 2, ("research",), ("housing",))
    third = _grant("con_3", 3, ("research",), ("housing",))
    linked = {v.consent: v for v in link_supersession([third, old, second])}
    assert _by(linked["con_old"]) == "con_2"
    assert _by(linked["con_2"]) == "con_3"


def _by(v: ConsentView) -> str:
    """The consent that superseded *v*."""
    assert v.superseded_by is not None
    return v.superseded_by.consent


# -- covers ---------------------------------------------------------------------------------------

LATER = T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("overrides", "expected", "reason"),
    [
        ({}, True, "covers this use"),  # research covers research.health; housing listed
        ({"purpose": "research"}, True, "covers"),
        ({"purpose": "service_delivery"}, False, "purpose service_delivery"),
        ({"categories": ["housing", "financial"]}, False, "does not cover financial"),
        ({"categories": ["health"]}, False, "does not cover health"),
    ],
)
def test_covers_purposes_and_categories(overrides, expected, reason):
    """Purposes and categories are matched through the hierarchy, and every category must be covered."""
    result = check(view(), LATER, **overrides)
    assert bool(result) is expected
    assert reason in result.reason


def test_narrower_consent_does_not_cover_broader_use():
    """Consent to health.mental does not cover health; consent to research.health does not cover research."""
    v = view(purposes=("research.health",), categories=("health.mental",), explicit=True)
    assert check(v, LATER, categories=["health.mental"])
    assert not check(v, LATER, categories=["health"])
    assert not check(v, LATER, purpose="research", categories=["health.mental"])


def test_recipients_and_operations():
    """Named recipients and operations limit the cover; null means any approved recipient / every operation."""
    v = view(recipients=("org_uni",), operations=("aggregate",))
    assert check(v, LATER)
    assert not check(v, LATER, recipient="org_other")
    assert not check(v, LATER, operation="identifiable")
    assert check(view(), LATER, recipient="org_other", operation="identifiable")


def test_special_categories_need_explicit_consent():
    """A special category is covered only by an explicit consent."""
    implicit = view(categories=("health",))
    assert "explicitly" in check(implicit, LATER, categories=["health.mental"]).reason
    assert check(replace(implicit, explicit=True), LATER, categories=["health.mental"])


def test_inactive_consent_covers_nothing():
    """A withdrawn consent covers nothing, and says why."""
    v = view(withdrawal=Ending(seq=11, at=at(T0 + timedelta(hours=1)), by="organisation"))
    result = check(v, LATER)
    assert not result
    assert "on the person's behalf" in result.reason


CODES = ["research", "research.health", "research.social", "statistics", "statistics.aggregate"]


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(CODES), st.sampled_from(CODES))
def test_cover_of_a_purpose_extends_to_its_descendants(granted, asked):
    """Consent to a purpose covers every narrower purpose and nothing outside its branch."""
    result = check(view(purposes=(granted,)), LATER, purpose=asked)
    assert bool(result) == (asked == granted or asked.startswith(granted + "."))
