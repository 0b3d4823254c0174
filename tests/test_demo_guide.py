"""What ``datatrust demo`` tells a newcomer to try works when they try it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.instance import Instance


@pytest.mark.slow
def test_every_account_and_command_the_demo_prints_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed the demo, then follow its guide: individual, trustee, partner and operator."""
    monkeypatch.chdir(tmp_path)  # the backup command names a file in the working directory
    data_dir = tmp_path / "demo"
    runner = CliRunner()
    seeded = runner.invoke(cli, ["demo", "--seed-only", "--data-dir", str(data_dir)])
    assert seeded.exit_code == 0, seeded.output
    guide = seeded.output
    code = re.search(r"with access code (\S+)", guide)
    trustee = re.search(r"/desk as (\S+) / (\S+)", guide)
    partner = re.search(r"curl -u (client_\w+):(\S+) ", guide)
    backup = re.search(r"datatrust (backup \S+ --data-dir \S+)", guide)
    assert code, guide
    assert trustee, guide
    assert partner, guide
    assert backup, guide
    assert "/readyz" in guide
    assert "/metrics" in guide

    instance = Instance.open(data_dir)
    try:
        with TestClient(create_app(instance), base_url="http://127.0.0.1:8000") as web:
            csrf = {"X-CSRF-Token": web.get("/auth/csrf").json()["csrf_token"]}
            me = web.post("/v1/me/sign-in", json={"access_code": code.group(1)}, headers=csrf)
            assert me.status_code == 200, me.text
            assert web.get("/v1/me/consents").status_code == 200
            web.cookies.clear()
            csrf = {"X-CSRF-Token": web.get("/auth/csrf").json()["csrf_token"]}
            desk = web.post(
                "/auth/sign-in", json={"username": trustee.group(1), "password": trustee.group(2)}, headers=csrf
            )
            assert desk.status_code == 200, desk.text
            web.cookies.clear()
            token = web.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "check"},
                auth=(partner.group(1), partner.group(2)),
            )
            assert token.status_code == 200, token.text
            assert web.get("/readyz").status_code == 200
    finally:
        instance.close()

    made = runner.invoke(cli, backup.group(1).split(), catch_exceptions=False, env={"COLUMNS": "200"})
    assert made.exit_code == 0, made.output
    assert (tmp_path / backup.group(1).split()[1]).stat().st_size > 0
