"""Benchmark: ``POST /v1/checks`` over HTTP (issue 6, "Benchmarks").

The real app runs under uvicorn on 127.0.0.1 (one process, a data directory on
SQLite) with a small seeded trust: org_a with an agreement, an approved request
with its ethics approval, and a few thousand consenting people. Load comes from a
separate process, Debian's ``wrk`` (``apt-get install wrk``), posting one-subject
check bodies (a random consenting person each time) with a partner's bearer token
over 32 connections. Every answer is a recorded decision, durable before it is
sent (group commit). In the same run, a bare FastAPI endpoint that parses the
same body and answers a constant is measured the same way: the ceiling.

Run: ``.venv/bin/python bench/check_http.py [--seconds 20] [--connections 32]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import WORK, cpu_seconds, free_port, machine_info, wait_for_port, write_result

ROOT = Path(__file__).resolve().parent.parent
ORG = "org_a"
BODY_PREFIX = (
    '{"purpose":"research.health","data_categories":["health.mental"],"operation":"pseudonymised",'
    '"request":"req_a","subjects":["sub_'
)
BODY_SUFFIX = '"]}'
LUA = """
math.randomseed(6)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  return wrk.format(nil, nil, nil, '%(prefix)s' .. math.random(1, %(subjects)d) .. '%(suffix)s')
end
"""


def seed(data_dir: Path, *, subjects: int) -> str:
    """Initialise a trust in *data_dir*, record a small trust on its ledger, return a partner token."""
    sys.path.insert(0, str(ROOT))
    from api.auth.tokens import issue_access_token  # noqa: PLC0415 - the parent needs the app, the load does not
    from api.instance import initialise  # noqa: PLC0415
    from consent.principals import Principal, Role  # noqa: PLC0415
    from ledger.sequencer import AppendSpec  # noqa: PLC0415
    from tests.trust.rules_story import Story, baseline  # noqa: PLC0415

    instance = initialise(
        data_dir, name="Bench Trust", mission="Benchmarking the check.", clock=lambda: datetime.now(UTC)
    )
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        story: Story = baseline(start=start, step=timedelta(milliseconds=1), configure=False)
        for n in range(13, subjects + 1):
            story.consent(f"con_{n}", subject=f"sub_{n}")
        specs = [AppendSpec(e.kind, e.actor, e.at_datetime, payload=e.payload) for e in story.entries]
        for first in range(0, len(specs), 500):
            instance.ledger.append_all(specs[first : first + 500])
        principal = Principal(
            id="client_a", roles=frozenset({Role.PARTNER}), organisation=ORG, scopes=frozenset({"check"})
        )
        return issue_access_token(instance, principal, now=datetime.now(UTC), ttl_seconds=3600)
    finally:
        instance.close()


def serve(data_dir: str | None, port: int) -> None:
    """Serve the real app on *data_dir*, or (``None``) the bare endpoint, until killed."""
    import uvicorn  # noqa: PLC0415
    from fastapi import FastAPI  # noqa: PLC0415

    from api.app import create_app  # noqa: PLC0415
    from api.instance import Instance  # noqa: PLC0415
    from api.routes.checks import CheckIn  # noqa: PLC0415

    if data_dir is None:
        app = FastAPI()

        def bare(body: CheckIn) -> dict[str, Any]:
            return {"decision": "permit", "subjects": len(body.subjects)}

        # This module's annotations are strings, and FastAPI resolves them in the module's globals,
        # where CheckIn is not: without this it read ``body`` as a query parameter and answered 422.
        bare.__annotations__ = {"body": CheckIn, "return": dict[str, Any]}
        app.post("/v1/checks")(bare)

    else:
        app = create_app(Instance.open(Path(data_dir)), close_on_shutdown=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def server(data_dir: Path | None) -> Iterator[tuple[int, int]]:
    """Run :func:`serve` in a child process; yield its port and pid once it answers."""
    port = free_port()
    args = [sys.executable, __file__, "--serve", str(data_dir) if data_dir else "-", "--port", str(port)]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for_port(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def load(port: int, pid: int, script: Path, *, seconds: int, connections: int) -> dict[str, Any]:
    """Run wrk against *port* and read its summary, with server *pid*'s CPU time per answer."""
    wrk = shutil.which("wrk")
    if wrk is None:
        msg = "wrk is not installed (apt-get install -y wrk)"
        raise SystemExit(msg)
    url = f"http://127.0.0.1:{port}/v1/checks"
    warm = [wrk, "-t1", "-c8", "-d3s", "-s", str(script), url]
    subprocess.run(warm, capture_output=True, check=True, timeout=60)
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url]
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(args, capture_output=True, check=True, timeout=seconds + 60).stdout.decode()
    cpu_used = cpu_seconds(pid) - cpu_before  # steady whatever else the machine is running
    latency = dict(re.findall(r"\s(50|75|90|99)%\s+([\d.]+(?:us|ms|s|m))", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.MULTILINE)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "server_cpu_us_per_request": round(cpu_used / requests * 1e6) if requests else None,
        "per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),  # type: ignore[union-attr]
        "p50_ms": round(_seconds(latency["50"]) * 1e3, 2),
        "p90_ms": round(_seconds(latency["90"]) * 1e3, 2),
        "p99_ms": round(_seconds(latency["99"]) * 1e3, 2),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def main() -> None:
    """Seed, serve, load, print and write ``bench/results/check_http.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=3000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(None if args.serve == "-" else args.serve, args.port)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="check-http-", dir=WORK))
    try:
        data_dir = scratch / "trust"
        token = seed(data_dir, subjects=args.subjects)
        script = scratch / "check.lua"
        values = {"token": token, "prefix": BODY_PREFIX, "suffix": BODY_SUFFIX, "subjects": args.subjects}
        script.write_text(LUA % values)
        with server(data_dir) as (port, pid):
            checks = load(port, pid, script, seconds=args.seconds, connections=args.connections)
        load_after_checks = [round(x, 2) for x in os.getloadavg()]
        with server(None) as (port, pid):
            bare = load(port, pid, script, seconds=args.seconds, connections=args.connections)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "check_http",
        "machine": machine_info(),
        "server": "uvicorn, 1 process, SQLite (WAL) data directory; wrk -t1 in a separate process",
        "connections": args.connections,
        "seconds": args.seconds,
        "consenting_subjects": args.subjects,
        "checks": checks,
        "bare_fastapi": bare,
        "ratio_to_bare": round(checks["per_s"] / bare["per_s"], 2) if bare["per_s"] else None,
        "load_average_after_checks": load_after_checks,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"checks: {checks['per_s']:,}/s p50 {checks['p50_ms']} ms p99 {checks['p99_ms']} ms "
        f"(non-2xx {checks['non_2xx']}); bare FastAPI: {bare['per_s']:,}/s p99 {bare['p99_ms']} ms; "
        f"ratio {result['ratio_to_bare']}; load {result['load_average']}"
    )
    print(json.dumps(checks))
    print(f"wrote {write_result('check_http', result)}")
    if checks["non_2xx"] or bare["non_2xx"]:
        sys.exit(f"error: non-2xx answers (checks {checks['non_2xx']}, bare {bare['non_2xx']}): the figures are void")


if __name__ == "__main__":
    main()
