"""Benchmark: ``POST /v1/checks`` over HTTP (issue 6, "Benchmarks").

The real app runs under uvicorn on 127.0.0.1 (one process, or ``--workers N``; a data
directory on SQLite, or ``--engine postgresql``) with a small seeded trust: org_a with an agreement, an approved request
with its ethics approval, and a few thousand consenting people. Load comes from a
separate process, Debian's ``wrk`` (``apt-get install wrk``), posting one-subject
check bodies (a random consenting person each time) with a partner's bearer token
over 32 connections. Every answer is a recorded decision, durable before it is
sent (group commit), and every request is logged as ``datatrust serve`` logs it (one JSON
line on standard error, kept in the scratch folder; the count is reported). In the same run, two bare FastAPI endpoints that parse the
same body and answer a constant are measured the same way, with as many processes:
an ``async def`` one (the ceiling: no thread hop) and a plain ``def`` one.

The three servers run side by side (idle but for the one under load); ours and the bare
``async def`` endpoint are loaded in turn for ``--rounds`` rounds, and the ratio reported is
the median of the rounds' ratios: on a shared machine whose speed drifts by ±10 % within a
minute, two neighbouring measurements compare better than two far apart.

The server runs as ``datatrust serve`` does, its checks' decisions appended by its append
process (``ledger/remote.py``); ``--in-process-appends`` appends them in the server's own
process instead, for comparison.

Run: ``.venv/bin/python bench/check_http.py [--seconds 20] [--connections 32] [--workers N]
[--engine sqlite|postgresql] [--rounds 3] [--in-process-appends]``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from _common import WORK, cpu_seconds, free_port, machine_info, pg_database, wait_for_port, write_result

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


def seed(data_dir: Path, *, subjects: int, database_url: str | None = None) -> str:
    """Initialise a trust in *data_dir*, record a small trust on its ledger, return a partner token."""
    sys.path.insert(0, str(ROOT))
    from api.auth.tokens import issue_access_token  # noqa: PLC0415 - the parent needs the app, the load does not
    from api.instance import initialise  # noqa: PLC0415
    from consent.principals import Principal, Role  # noqa: PLC0415
    from ledger.sequencer import AppendSpec  # noqa: PLC0415
    from tests.trust.rules_story import Story, baseline  # noqa: PLC0415

    instance = initialise(
        data_dir,
        name="Bench Trust",
        mission="Benchmarking the check.",
        clock=lambda: datetime.now(UTC),
        database_url=database_url,
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


def bare_app(*, is_async: bool = True) -> Any:
    """A bare FastAPI app whose one endpoint validates the check body and answers a constant."""
    from fastapi import FastAPI  # noqa: PLC0415

    from api.routes.checks import CheckIn  # noqa: PLC0415

    app = FastAPI()

    async def bare_async(body: CheckIn) -> dict[str, Any]:
        return {"decision": "permit", "subjects": len(body.subjects)}

    def bare_def(body: CheckIn) -> dict[str, Any]:
        return {"decision": "permit", "subjects": len(body.subjects)}

    bare = bare_async if is_async else bare_def
    # This module's annotations are strings, and FastAPI resolves them in the module's globals,
    # where CheckIn is not: without this it read ``body`` as a query parameter and answered 422.
    bare.__annotations__ = {"body": CheckIn, "return": dict[str, Any]}
    app.post("/v1/checks")(bare)
    return app


def bare_async_app() -> Any:
    """Factory for uvicorn's worker processes: the bare ``async def`` endpoint."""
    return bare_app(is_async=True)


def bare_def_app() -> Any:
    """Factory for uvicorn's worker processes: the bare plain ``def`` endpoint (run in the thread pool)."""
    return bare_app(is_async=False)


def real_app() -> Any:
    """Factory for uvicorn's worker processes: the real app on the trust in ``BENCH_DATA_DIR``."""
    from api.app import create_app  # noqa: PLC0415
    from api.instance import Instance  # noqa: PLC0415
    from api.logs import configure_logging  # noqa: PLC0415
    from api.serving_gc import prepare_gc_for_serving  # noqa: PLC0415

    configure_logging()  # one JSON line per request on standard error, as `datatrust serve` writes
    instance = Instance.open(Path(os.environ["BENCH_DATA_DIR"]))
    # As `datatrust serve` runs it: the checks' decisions appended by a child process (ledger.remote),
    # unless BENCH_IN_PROCESS_APPENDS is set (`--in-process-appends`, for comparison).
    appends = not os.environ.get("BENCH_IN_PROCESS_APPENDS")
    app = create_app(instance, close_on_shutdown=True, append_process=appends)
    prepare_gc_for_serving()  # as `datatrust serve` does
    return app


def serve(what: str, port: int, workers: int) -> None:
    """Serve the real app on the data directory *what*, or a bare endpoint (``@async``, ``@def``), until killed."""
    import uvicorn  # noqa: PLC0415

    factory = {"@async": "bare_async_app", "@def": "bare_def_app"}.get(what, "real_app")
    if factory == "real_app":
        os.environ["BENCH_DATA_DIR"] = what
    sys.path.insert(0, str(Path(__file__).parent))
    uvicorn.run(
        f"check_http:{factory}",
        factory=True,
        workers=workers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


@contextlib.contextmanager
def server(
    what: str, *, workers: int, database_url: str | None, log: Path | None = None
) -> Iterator[tuple[int, list[int]]]:
    """Run :func:`serve` in a child process (standard error to *log*); yield its port and working pids."""
    port = free_port()
    args = [sys.executable, __file__, "--serve", what, "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATATRUST_DATABASE_URL", None)
    if database_url:
        env["DATATRUST_DATABASE_URL"] = database_url
    stderr = stack_log = log.open("w") if log is not None else None
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stderr=stderr)
    try:
        wait_for_port(port, proc)
        yield port, _working_pids(proc.pid, workers)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if stack_log is not None:
            stack_log.close()


def _working_pids(pid: int, workers: int) -> list[int]:
    """*pid* itself with one worker, else its uvicorn worker processes (children started by spawn)."""
    from tests.faults.support import spawned_workers  # noqa: PLC0415 - the parent alone needs it

    return [pid] if workers == 1 else spawned_workers(pid)


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def load(port: int, pids: list[int], script: Path, *, seconds: int, connections: int) -> dict[str, Any]:
    """Run wrk against *port* and read its summary, with the server processes' CPU time per answer.

    The servers' own child processes (an append process) are counted with them.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        msg = "wrk is not installed (apt-get install -y wrk)"
        raise SystemExit(msg)
    url = f"http://127.0.0.1:{port}/v1/checks"
    warm = [wrk, "-t1", "-c8", "-d3s", "-s", str(script), url]
    subprocess.run(warm, capture_output=True, check=True, timeout=60)
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url]
    from tests.faults.support import child_pids  # noqa: PLC0415 - the parent alone needs it

    pids = [*pids, *(child for pid in pids for child in child_pids(pid))]  # with each server's append process
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    out = subprocess.run(args, capture_output=True, check=True, timeout=seconds + 60).stdout.decode()
    cpu_used = sum(cpu_seconds(pid) for pid in pids) - cpu_before  # steady whatever else the machine is running
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
    """Seed, serve, load in alternating rounds, print and write ``bench/results/check_http*.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1, help="server processes, for ours and the bare endpoints")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (checks, bare async def), one after the other (default 3)"
    )
    parser.add_argument(
        "--in-process-appends",
        action="store_true",
        help="append the checks' decisions in the server's own process, not its append process (to compare)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.workers)
        return
    if args.in_process_appends:
        os.environ["BENCH_IN_PROCESS_APPENDS"] = "1"  # read by real_app() in the server process
    WORK.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="check-http-", dir=WORK))
    rounds: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(pg_database("check_http")) if args.engine == "postgresql" else None
            data_dir = scratch / "trust"
            token = seed(data_dir, subjects=args.subjects, database_url=database_url)
            script = scratch / "check.lua"
            values = {"token": token, "prefix": BODY_PREFIX, "suffix": BODY_SUFFIX, "subjects": args.subjects}
            script.write_text(LUA % values)
            with contextlib.ExitStack() as servers:
                running = {
                    name: servers.enter_context(
                        server(what, workers=args.workers, database_url=database_url, log=scratch / f"{name}.log")
                    )
                    for name, what in (("checks", str(data_dir)), ("bare_async", "@async"), ("bare_def", "@def"))
                }

                def measure(name: str) -> dict[str, Any]:
                    port, pids = running[name]
                    figures = load(port, pids, script, seconds=args.seconds, connections=args.connections)
                    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                    return figures

                # Ours and the bare endpoint one after the other, round after round: each round's ratio
                # pairs two neighbouring measurements, so a drift of the shared machine mostly cancels.
                for number in range(1, args.rounds + 1):
                    checks, bare_async = measure("checks"), measure("bare_async")
                    ratio = round(checks["per_s"] / bare_async["per_s"], 2) if bare_async["per_s"] else 0.0
                    rounds.append({"checks": checks, "bare_fastapi_async": bare_async, "ratio_to_bare_async": ratio})
                    print(
                        f"round {number}: checks {checks['per_s']:,}/s p50 {checks['p50_ms']} ms "
                        f"p99 {checks['p99_ms']} ms, {checks['server_cpu_us_per_request']} µs CPU each; "
                        f"bare async def {bare_async['per_s']:,}/s ({bare_async['server_cpu_us_per_request']} µs); "
                        f"ratio {ratio}",
                        flush=True,
                    )
                bare_def = measure("bare_def")
            # The servers have stopped: the request log is complete (written as `datatrust serve` writes it).
            logged = (scratch / "checks.log").read_text().count('"logger":"datatrust.access"')
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = sorted(rounds, key=lambda r: r["ratio_to_bare_async"])[len(rounds) // 2]
    checks, bare_async = median["checks"], median["bare_fastapi_async"]
    result = {
        "benchmark": "check_http",
        "machine": machine_info(),
        "server": (
            f"uvicorn (uvloop, httptools), {args.workers} process(es), "
            f"{'SQLite (WAL) data directory' if args.engine == 'sqlite' else 'PostgreSQL on 127.0.0.1'}; "
            "wrk -t1 in a separate process on the same 2 cores"
        ),
        "workers": args.workers,
        "appends": "in the server process" if args.in_process_appends else "append process (ledger.remote)",
        "engine": args.engine,
        "connections": args.connections,
        "seconds": args.seconds,
        "consenting_subjects": args.subjects,
        "rounds": rounds,
        "median_round": "checks and bare_fastapi_async below are the round with the median ratio",
        "checks": checks,
        "bare_fastapi_async": bare_async,
        "bare_fastapi_def": bare_def,
        "ratio_to_bare_async": median["ratio_to_bare_async"],
        "ratio_to_bare_def": round(checks["per_s"] / bare_def["per_s"], 2) if bare_def["per_s"] else None,
        "request_log_lines": logged,
    }
    print(
        f"median of {len(rounds)} rounds: checks {checks['per_s']:,}/s p50 {checks['p50_ms']} ms "
        f"p99 {checks['p99_ms']} ms, {checks['server_cpu_us_per_request']} µs CPU each; "
        f"bare async def {bare_async['per_s']:,}/s; ratio {result['ratio_to_bare_async']} "
        f"(rounds {sorted(r['ratio_to_bare_async'] for r in rounds)}); "
        f"bare def {bare_def['per_s']:,}/s (ratio {result['ratio_to_bare_def']}); request log lines {logged:,}"
    )
    suffix = "" if (args.workers, args.engine) == (1, "sqlite") else f"_{args.engine}_{args.workers}w"
    suffix += "_in_process" if args.in_process_appends else ""
    print(f"wrote {write_result('check_http' + suffix, result)}")
    failed = [
        name
        for r in [*rounds, {"bare_fastapi_def": bare_def}]
        for name, f in r.items()
        if isinstance(f, dict) and f["non_2xx"]
    ]
    if failed:
        sys.exit(f"error: non-2xx answers in {failed}: the figures are void")


if __name__ == "__main__":
    main()
