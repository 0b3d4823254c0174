"""PostgreSQL stopped and started again under load: 503 with Retry-After while it is down, then recovery.

The shared server on 127.0.0.1:5432 is never touched: each test makes a private throwaway
cluster with Debian's tools (``pg_createcluster`` on a free port, trust authentication), stops
and starts only that one, and drops it at the end. Needs root and Debian's postgresql-common.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import skip_or_fail
from tests.faults.support import (
    CHECK,
    CONSENT,
    PROBLEM_JSON,
    Load,
    Server,
    cli,
    free_port,
    ledger_entries,
    prepare_trust,
    running,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.xdist_group("pgcluster")]


@dataclass(frozen=True)
class Cluster:
    """A private PostgreSQL cluster made for one test."""

    version: str
    name: str
    port: int

    def ctl(self, action: str, *options: str) -> None:
        """``pg_ctlcluster VERSION NAME ACTION`` (waits until done)."""
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *options)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of *database* in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, database: str) -> str:
        """Create *database*; return its URL."""
        dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}"
        raise AssertionError(msg)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A running private cluster on a free port (trust authentication), dropped afterwards."""
    if os.geteuid() != 0:
        skip_or_fail("a private PostgreSQL cluster needs root (pg_createcluster)")
    if shutil.which("pg_createcluster") is None or not Path("/etc/postgresql").is_dir():
        skip_or_fail("pg_createcluster is missing: install Debian's postgresql and postgresql-common")
    versions = sorted((p.name for p in Path("/etc/postgresql").iterdir() if p.name.isdigit()), key=int)
    if not versions:
        skip_or_fail("no PostgreSQL version under /etc/postgresql")
    made = Cluster(versions[-1], f"dtfault{uuid.uuid4().hex[:10]}", free_port())
    _run(
        "pg_createcluster",
        "--start-conf=manual",
        made.version,
        made.name,
        "-p",
        str(made.port),
        "--",
        "--auth-local=trust",
        "--auth-host=trust",
    )
    try:
        made.ctl("start")
        yield made
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", made.version, made.name],
            capture_output=True,
            timeout=120,
            check=False,
        )


def _assert_unavailable(response: httpx.Response) -> None:
    """A 503 problem document with Retry-After and a plain detail (no stack trace, no host or port)."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["status"] == 503
    assert problem["type"].endswith("/unavailable")
    assert problem["detail"]
    assert "Traceback" not in problem["detail"]


def test_the_api_answers_503_while_postgresql_is_down_and_recovers_without_a_restart(
    tmp_path: Path, cluster: Cluster
) -> None:
    """Stop the database under load: 503 + Retry-After, never a 500 or a hang; start it: the same process serves."""
    url = cluster.create_database("datatrust")
    data_dir = tmp_path / "trust"
    headers = prepare_trust(data_dir, database_url=url)
    server = Server(data_dir, tmp_path / "server.log", database_url=url)
    with running(server):
        pid = server.pid
        load = Load(server.base_url, headers, threads=4, stop_on_transport_error=False, timeout=60).start()
        try:
            load.wait_for(acks=40)
            cluster.ctl("stop", "-m", "fast")  # under load: connections in use are cut off
            load.wait_for(acks=40, refusals=20)
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                _assert_unavailable(client.post("/v1/consents", json=CONSENT))
                _assert_unavailable(client.post("/v1/checks", json=CHECK))
                _assert_unavailable(client.get("/v1/ledger/entries", params={"start": 0, "end": 10}))

            cluster.ctl("start")
            acked_while_down = len(load.snapshot()[0])
            load.wait_for(acks=acked_while_down + 40)
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                consent = client.post("/v1/consents", json=CONSENT)
                assert consent.status_code == 201, consent.text
                check = client.post("/v1/checks", json=CHECK)
                assert check.status_code == 200, check.text
                assert check.json()["decision"] == "permit"
        finally:
            load.finish()
        assert server.alive()
        assert server.pid == pid, "the server was restarted"

        acks, refusals = load.snapshot()
        for response in refusals:  # every refusal while down was a clean 503, none a 500
            _assert_unavailable(response)
        assert load.transport_errors == [], load.transport_errors[:5]
        entries = ledger_entries(server.base_url)
        missing = [a for a in acks if entries.get(a.seq) != a]
        assert missing == [], f"{len(missing)} acknowledged writes missing or changed, e.g. {missing[:3]}"
        assert "Exception in ASGI application" not in server.output()  # uvicorn's words for a request's crash
        assert server.stop() == 0, server.output()

    verify = cli(data_dir, "verify", database_url=url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replay = cli(data_dir, "replay", database_url=url)
    assert replay.returncode == 0, replay.stdout + replay.stderr
