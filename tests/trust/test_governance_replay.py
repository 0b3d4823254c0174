"""Replay: rebuilding the governance projections from the ledger alone reproduces them exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app as cli
from api.instance import Instance, initialise
from api.seed_governance import seed_governance
from ledger.db import Database
from ledger.projection import diff_tables, rebuild
from tests.factories import make_person
from trust.models import PROJECTION_TABLES
from trust.requests import list_requests


def test_replay_reproduces_every_request(instance: Instance, sqlite_template: Path, tmp_path: Path) -> None:
    """Every governance table, and every request's state, tally and decision, comes back identical from a replay."""
    credentials = {"trustees": [{"person_id": make_person(instance)} for _ in range(5)]}
    seed_governance(instance, credentials)
    target_path = tmp_path / "replay" / "datatrust.db"
    target_path.parent.mkdir()
    shutil.copy(sqlite_template, target_path)
    target = Database.from_url(f"sqlite:///{target_path}")
    try:
        with instance.db.engine.connect() as live, target.write_engine.begin() as conn:
            count = rebuild(live, conn, instance.ledger.projectors)
        assert count == instance.ledger.size()
        with instance.db.engine.connect() as live, target.engine.connect() as rebuilt:
            assert diff_tables(live, rebuilt, PROJECTION_TABLES) == []
            now = instance.clock()
            before = [(r.id, r.state_at(now), r.tally, r.rule, r.decided_seq) for r in list_requests(live, at=now)]
            after = [(r.id, r.state_at(now), r.tally, r.rule, r.decided_seq) for r in list_requests(rebuilt, at=now)]
    finally:
        target.dispose()
    assert before == after
    assert {state for _, state, *_ in before} == {"public_notice", "voting", "approved", "rejected", "revoked"}


def test_cli_replay_matches(data_dir: Path) -> None:
    """``datatrust ledger replay`` reports that the seeded governance projections match the ledger."""
    trust = initialise(data_dir, name="Replay", mission="Check replay.")
    try:
        seed_governance(trust, {"trustees": [{"person_id": make_person(trust)} for _ in range(3)]})
    finally:
        trust.close()
    result = CliRunner().invoke(cli, ["ledger", "replay", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "match the live ones" in result.output
