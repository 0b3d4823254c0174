"""The governance configuration: validation, TOML templates, adoption, and config changes mid-flight."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from api.instance import Instance, initialise
from ledger.errors import ValidationError
from tests.trust.governance_helpers import DAY, T0, Gov, config_with, make_gov, read
from trust.config import (
    GovernanceConfig,
    config_by_seq,
    config_history,
    config_in_force,
    export_template,
    load_template,
)
from trust.requests import get_request
from trust.votes import cast_vote


@pytest.fixture
def gov(instance: Instance) -> Gov:
    """A trust with the food bank registered, on each database."""
    return make_gov(instance)


def test_default_round_trips_through_toml(tmp_path: Path) -> None:
    """The shipped default exports to TOML and reads back identical, with the same hash."""
    default = GovernanceConfig.default()
    path = tmp_path / "template.toml"
    path.write_text(default.to_toml(template={"source": "Riverside", "mission": "Share insight.", "config_seq": 0}))
    loaded, provenance = load_template(path)
    assert loaded == default
    assert loaded.governance_hash == default.governance_hash
    assert provenance == {"source": "Riverside", "mission": "Share insight.", "config_seq": 0}


def _broken(section: str, key: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(GovernanceConfig.default().to_document())
    if value is KeyError:
        del document[section][key]
    else:
        document[section][key] = value
    return document


INVALID: list[tuple[dict[str, Any], str]] = [
    (_broken("decision", "rule", "loudest_voice"), "decision.rule must be one of"),
    (_broken("decision", "tie_break", "coin"), "tie_break"),
    (_broken("quorum", "percent_of_eligible", 101), "between 0 and 100"),
    (_broken("quorum", "minimum_votes", 0), "quorum.minimum_votes must be between"),
    (_broken("quorum", "minimum_votes", True), "whole number"),  # a boolean is not a number
    (_broken("periods", "notice_days", "14"), "whole number"),
    (_broken("periods", "voting_days", KeyError), "missing periods.voting_days"),
    (_broken("requests", "min_duration_days", 800), "must not exceed"),
    (_broken("ethics", "recorded_by", "anyone"), "recorded_by"),
    (_broken("ethics", "categories_requiring_approval", ["Health"]), "dotted lower-case"),
    (_broken("fast_track", "operations", ["identifiable"]), "identifiable output always needs a full vote"),
    (_broken("fast_track", "surprise", 1), "unknown setting"),
    ({**GovernanceConfig.default().to_document(), "extra": {}}, "unknown governance config section"),
    ({**GovernanceConfig.default().to_document(), "version": 2}, "version 2 is not supported"),
]


@pytest.mark.parametrize(("document", "match"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_config_refused(document: dict[str, Any], match: str) -> None:
    """Each invalid setting is refused with a message naming it."""
    with pytest.raises(ValidationError, match=match):
        GovernanceConfig.from_document(document)


def test_bad_toml_refused() -> None:
    """A document that is not TOML is refused."""
    with pytest.raises(ValidationError, match="not valid TOML"):
        GovernanceConfig.from_toml("quorum = [")


def test_adopting_a_config_records_it(gov: Gov) -> None:
    """The first entry carries the default; a new one is in force from its entry and history keeps both."""
    first = read(gov, config_in_force)
    assert first.seq == 0
    assert first.config == GovernanceConfig.default()
    seq = gov.adopt(config_with(decision__rule="two_thirds"))
    assert read(gov, config_in_force).seq == seq
    assert read(gov, config_in_force).config.rule == "two_thirds"
    assert [a.seq for a in read(gov, config_history)] == [0, seq]
    assert read(gov, config_by_seq, 0).config.rule == "simple_majority"
    entry = gov.ledger.get(seq)
    assert entry.payload["governance_hash"] == config_with(decision__rule="two_thirds").governance_hash


def test_config_change_mid_flight(gov: Gov) -> None:
    """A request submitted under config A is decided by A's rule and schedule even after config B is adopted."""
    trustees = gov.trustees(3)
    config_a = read(gov, config_in_force).seq
    request_a = gov.submit()
    config_b = gov.adopt(
        config_with(decision__rule="unanimity", periods__notice_days=2, quorum__minimum_votes=1), now=T0 + DAY
    )
    request_b = gov.submit(now=T0 + DAY)
    a, b = read(gov, get_request, request_a), read(gov, get_request, request_b)
    assert (a.config_seq, b.config_seq) == (config_a, config_b)
    assert a.notice_ends_at == "2026-12-15T09:00:00.000000Z"  # 14 days under A
    assert b.notice_ends_at == "2026-12-04T09:00:00.000000Z"  # 2 days under B
    voting = T0 + 15 * DAY
    decision = None
    for trustee, choice in zip(trustees, ["approve", "approve", "reject"], strict=True):
        result = cast_vote(
            gov.ledger,
            request_id=request_a,
            trustee=trustee,
            choice=choice,
            reason="My view.",
            agrees_with_preassessment=True,
            now=voting,
        )
        decision = result.decision or decision
    assert decision is not None
    # Under B (unanimity) one rejection would reject; under A (simple majority) two of three approve.
    assert decision.payload["outcome"] == "approved"
    assert decision.payload["rule"] == "simple_majority+chair_casting_vote"
    assert decision.payload["config_seq"] == config_a
    assert decision.payload["quorum"] == 3


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the CLI part runs on SQLite in any case
def test_init_from_template(tmp_path: Path, instance: Instance) -> None:
    """A trust started from another trust's exported template adopts the same rules and mission."""
    gov = make_gov(instance)
    gov.adopt(config_with(decision__rule="any_veto", outputs__min_cohort_size=25))
    path = tmp_path / "riverside.toml"
    path.write_text(read(gov, export_template, source="Riverside"))
    runner = CliRunner()
    data_dir = tmp_path / "northtown"
    result = runner.invoke(cli, ["init", "--data-dir", str(data_dir), "--name", "Northtown", "--template", str(path)])
    assert result.exit_code == 0, result.output
    export = runner.invoke(cli, ["governance", "export-config", "--data-dir", str(data_dir)])
    assert export.exit_code == 0, export.output
    copied, provenance = GovernanceConfig.from_toml(export.output), load_template(path)[1]
    assert copied.rule == "any_veto"
    assert copied.min_cohort_size == 25
    assert provenance["mission"] == "Testing."
    northtown = Instance.open(data_dir)
    try:
        assert northtown.ledger.get(0).payload["mission"] == "Testing."
    finally:
        northtown.close()


def test_initialise_takes_a_config(tmp_path: Path) -> None:
    """``initialise(governance=…)`` puts the given configuration in the first entry."""
    config = config_with(periods__notice_days=7)
    trust = initialise(tmp_path / "t", name="T", mission="M", governance=config, clock=lambda: T0)
    try:
        with trust.db.engine.connect() as conn:
            assert config_in_force(conn).config == config
        assert trust.ledger.get(0).payload["governance"] == config.to_document()
    finally:
        trust.close()
