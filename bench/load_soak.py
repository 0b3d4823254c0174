"""Load and soak: a mix of checks, consent writes and reads against two API servers on PostgreSQL.

A fresh PostgreSQL database (dropped afterwards) holds a small seeded trust, the
same one ``bench/check_http.py`` seeds: org_a with an agreement, an approved
request (``req_a``, pseudonymised mental-health research) with its ethics
approval, and a few thousand people whose explicit consent covers it, so a
one-subject check is a permit. Two ``datatrust serve`` processes (separate OS
processes, different ports) share that database.

A load generator in a third process (threads, ``http.client``) sends requests at a fixed
rate for a fixed time, open loop: request *i* is due at ``start + i / rate``
whatever happened to earlier ones, alternating between the two servers. The mix is
80 % ``POST /v1/checks`` (one random consenting subject), 15 % ``POST /v1/consents``
(half for someone new, half a further consent of someone recorded earlier in the run)
and 5 % reads (in turn ``GET /v1/checks/{id}`` of a recent decision,
``GET /v1/ledger/checkpoint`` and an individual's ``GET /v1/me/consents``). Each server
gets a fixed number of keep-alive connections (``--connections``), each worked by one
thread; a due request waits in that server's queue for a free one. Latency is measured from the time a request was
due, not from when it was sent, so a stall delays every request queued behind it (no
coordinated omission). A request still waiting ``--timeout`` seconds after it was due
is dropped unsent (``dropped``, counted with its wait as latency), so a run whose rate
the servers cannot keep up with still ends on time.

Reported: achieved throughput, p50/p99/max latency per kind and overall, errors by
status, and every 5 s the resident memory and CPU time of each server. Memory growth
is ``(RSS at the end - RSS after warm-up) / RSS after warm-up``; the warm-up's requests
(default the first 10 %, at most 60 s) are left out of the latency figures. The script
exits 1 if any request failed (5xx, 4xx or no answer) or a server died; it asserts
nothing about speed, and dropped requests only get a note.

    .venv/bin/python bench/load_soak.py --duration 60 --rate 100   # a quick run
    .venv/bin/python bench/load_soak.py --duration 600 --rate 200  # the 10-minute soak

Figures go to ``bench/results/load_soak_<duration>s.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    WORK,
    cpu_seconds,
    free_port,
    machine_info,
    percentile,
    pg_database,
    rss_mib,
    wait_for_port,
    write_result,
)
from check_http import BODY_PREFIX, BODY_SUFFIX, ORG
from check_http import seed as seed_trust

ROOT = Path(__file__).resolve().parent.parent
SERVERS = 2
SAMPLE_EVERY = 5.0  # seconds between memory samples, and the width of the timeline's windows
KINDS = ("check", "consent", "read: check by id", "read: checkpoint", "read: my consents")
CHECK, CONSENT, READ_CHECK, READ_CHECKPOINT, READ_ME = range(len(KINDS))
FIRST_FREE_SUBJECT = 13  # sub_1..sub_12 belong to the rules' story; sub_13.. only ever consented
INDIVIDUALS = 20  # individuals whose own consents are read
DROPPED = "dropped"  # the status of a request still queued `timeout` seconds after it was due
MEMORY_TARGET = 0.10  # growth allowed over the soak (reported, not asserted)
CONSENT_TERMS: dict[str, Any] = {
    "purposes": ["research.health"],
    "categories": ["health.mental", "demographics.age"],
    "operations": ["pseudonymised"],
    "explicit": True,
    "wording_version": "2026-01",
    "wording_hash": "0" * 64,
}


# -- the load generator (its own process) ------------------------------------------------------------


@dataclass
class Sent:
    """One request as the generator records it."""

    kind: int
    server: int
    due: float  # seconds after the start
    latency: float  # seconds from when it was due to the end of its answer
    status: str  # the HTTP status, or the name of the transport error
    decision: str | None  # a check's decision


def _request(plan: dict[str, Any], kind: int, number: int, rng: random.Random, known: dict[str, list[Any]]) -> Any:
    """Method, path, body and headers of request *number* of *kind* (*known*: decisions and subjects seen)."""
    partner = {"Authorization": f"Bearer {plan['partner_token']}", "Content-Type": "application/json"}
    if kind == CHECK:
        subject = rng.randint(FIRST_FREE_SUBJECT, plan["subjects"])
        return "POST", "/v1/checks", f"{BODY_PREFIX}{subject}{BODY_SUFFIX}", partner
    if kind == CONSENT:
        body = dict(CONSENT_TERMS)
        if number % 2 and known["subjects"]:  # a further consent of someone recorded earlier in this run
            body["subject"] = rng.choice(known["subjects"])
        else:
            body["person"] = {"name": f"Load Person {number}", "contact": f"load.person.{number}@example.org"}
        return "POST", "/v1/consents", json.dumps(body), partner
    if kind == READ_CHECK and known["decisions"]:
        return "GET", f"/v1/checks/{known['decisions'][0]}", None, partner
    if kind == READ_ME:
        return "GET", "/v1/me/consents", None, {"Authorization": f"Bearer {rng.choice(plan['individual_tokens'])}"}
    return "GET", "/v1/ledger/checkpoint", None, {}


class _Connection:
    """One keep-alive HTTP/1.1 connection to a server, opened again after an error or a long idle spell."""

    IDLE = 4.0  # below uvicorn's 5 s keep-alive, so we never reuse a connection the server is closing

    def __init__(self, port: int, timeout: float) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.used = time.monotonic()

    def send(self, method: str, path: str, body: str | None, headers: dict[str, str]) -> tuple[int, bytes]:
        if time.monotonic() - self.used > self.IDLE:
            self.http.close()
        try:
            self.http.request(method, path, body=body, headers=headers)
            response = self.http.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.http.close()  # the next request opens a new connection
            raise
        finally:
            self.used = time.monotonic()


def drive(plan: dict[str, Any]) -> dict[str, Any]:
    """Send the planned requests open loop; return what happened to each.

    Each server gets ``connections`` worker threads, each with its own keep-alive
    connection (the standard library's ``http.client``: httpx cost ~3.6 ms of CPU a
    request here against 0.2 ms, and the generator shares the machine's cores with the
    servers), taking due requests from that server's queue. A request still queued
    ``timeout`` seconds after it was due is dropped unsent, so an overloaded run ends on
    time; it counts as ``dropped``, with its wait as its latency.
    """
    rng = random.Random(plan["seed"])
    rate, timeout = plan["rate"], plan["timeout"]
    sent: list[Sent] = []  # list.append is atomic: the workers share it
    samples: dict[str, str] = {}  # the first answer of each failing status, to say what went wrong
    known: dict[str, list[Any]] = {"decisions": [], "subjects": []}  # the latest decision; subjects recorded
    queues: list[queue.SimpleQueue[tuple[int, int, float, Any] | None]] = [queue.SimpleQueue() for _ in plan["ports"]]
    start = time.monotonic() + 0.5

    def one(connection: _Connection, kind: int, server: int, due: float, request: Any) -> None:
        method, path, body, headers = request
        decision = None
        if time.monotonic() - due > timeout:
            sent.append(Sent(kind, server, due - start, time.monotonic() - due, DROPPED, None))
            return
        try:
            code, content = connection.send(method, path, body, headers)
            status = str(code)
            if code < 300 and kind == CHECK:
                answer = json.loads(content)
                decision = answer["decision"]
                known["decisions"][:] = [answer["decision_id"]]
            elif code < 300 and kind == CONSENT and len(known["subjects"]) < 1000:
                known["subjects"].append(json.loads(content)["subject"])
            elif code >= 300:
                samples.setdefault(status, f"{method} {path}: {content[:500].decode(errors='replace')}")
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            samples.setdefault(status, f"{method} {path}: {exc!r}"[:500])
        sent.append(Sent(kind, server, due - start, time.monotonic() - due, status, decision))

    def worker(server: int) -> None:
        connection = _Connection(plan["ports"][server], timeout)
        while (item := queues[server].get()) is not None:
            one(connection, *item)
        connection.http.close()

    workers = [
        threading.Thread(target=worker, args=(server,), daemon=True)
        for server in range(len(queues))
        for _ in range(plan["connections"])
    ]
    for thread in workers:
        thread.start()
    print(f"start {start!r}", flush=True)  # clocks are CLOCK_MONOTONIC: the parent reads the same time line
    behind: list[float] = []  # how late the generator itself queued each request
    reads = 0
    for number in range(round(rate * plan["duration"])):
        due = start + number / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        behind.append(max(0.0, -delay))
        draw = rng.random()
        if draw < plan["mix"][0]:
            kind = CHECK
        elif draw < plan["mix"][0] + plan["mix"][1]:
            kind = CONSENT
        else:
            kind = (READ_CHECK, READ_CHECKPOINT, READ_ME)[reads % 3]
            reads += 1
        server = number % len(queues)
        queues[server].put((kind, server, due, _request(plan, kind, number, rng, known)))
    for server_queue in queues:
        for _ in range(plan["connections"]):
            server_queue.put(None)
    for thread in workers:
        thread.join()
    behind.sort()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sent": [[s.kind, s.server, round(s.due, 6), round(s.latency, 6), s.status, s.decision] for s in sent],
        "failure_samples": samples,
        "generator_late_p99_ms": round(percentile(behind, 0.99) * 1000, 2),
        "generator_late_max_ms": round(behind[-1] * 1000, 2) if behind else 0.0,
        "generator_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def generator(plan_path: Path, out_path: Path) -> None:
    """The load generator's process: read the plan, drive the load, write what happened."""
    plan = json.loads(plan_path.read_text())
    out_path.write_text(json.dumps(drive(plan)))


# -- the trust and its servers -------------------------------------------------------------------------


def tokens(data_dir: Path, *, subjects: int, ttl: int) -> tuple[str, list[str]]:
    """A partner token for org_a (check and consent scopes) and tokens of a few individuals."""
    from api.auth.tokens import issue_access_token  # noqa: PLC0415 - the generator does not need the app
    from api.instance import Instance  # noqa: PLC0415
    from consent.principals import Principal, Role, Scope  # noqa: PLC0415

    instance = Instance.open(data_dir)
    try:
        now = datetime.now(UTC)
        partner = Principal(
            id="client_a", roles=frozenset({Role.PARTNER}), organisation=ORG, scopes=frozenset(str(s) for s in Scope)
        )
        people = [f"sub_{n}" for n in range(FIRST_FREE_SUBJECT, subjects + 1)][:INDIVIDUALS]
        individuals = [
            issue_access_token(
                instance,
                Principal(id=subject, roles=frozenset({Role.INDIVIDUAL}), subject=subject),
                now=now,
                ttl_seconds=ttl,
            )
            for subject in people
        ]
        return issue_access_token(instance, partner, now=now, ttl_seconds=ttl), individuals
    finally:
        instance.close()


@contextlib.contextmanager
def servers(data_dir: Path, logs: Path, count: int) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    """Start *count* ``datatrust serve`` processes on the same data directory and database."""
    datatrust = Path(sys.executable).with_name("datatrust")
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for index in range(count):
            port = free_port()
            with (logs / f"server-{index}.log").open("wb") as log:
                command = [str(datatrust), "serve", "--data-dir", str(data_dir), "--port", str(port)]
                proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            started.append((proc, port))
        for proc, port in started:
            wait_for_port(port, proc, timeout=120)
        yield started
    finally:
        for proc, _port in started:
            proc.terminate()
        for proc, _port in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Seed, serve, drive the load while sampling the servers; return the raw figures."""
    data_dir = scratch / "trust"
    with pg_database("soak") as url:
        os.environ["DATATRUST_DATABASE_URL"] = url  # the seed, and the servers started below, use it
        began = time.perf_counter()
        seed_trust(data_dir, subjects=args.subjects)
        partner, individuals = tokens(data_dir, subjects=args.subjects, ttl=args.duration + 3600)
        print(f"seeded a trust with {args.subjects:,} consenting people in {time.perf_counter() - began:.1f} s")
        with servers(data_dir, scratch, SERVERS) as started:
            pids = [proc.pid for proc, _port in started]
            plan = {
                "ports": [port for _proc, port in started],
                "rate": args.rate,
                "duration": args.duration,
                "mix": [0.80, 0.15, 0.05],
                "subjects": args.subjects,
                "partner_token": partner,
                "individual_tokens": individuals,
                "connections": args.connections,
                "timeout": args.timeout,
                "seed": args.seed,
            }
            plan_path, out_path = scratch / "plan.json", scratch / "sent.json"
            plan_path.write_text(json.dumps(plan))
            print(
                f"servers: pids {pids}; {args.rate}/s for {args.duration} s (warm-up {args.warmup:.0f} s), "
                f"load from a separate process",
                flush=True,
            )
            command = [sys.executable, __file__, "--drive", str(plan_path), "--out", str(out_path)]
            load = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            memory: list[dict[str, Any]] = []
            try:
                ready = load.stdout.readline() if load.stdout else ""  # "start <monotonic time>" once it is ready
                if not ready.startswith("start "):
                    msg = "the load generator did not start"
                    raise RuntimeError(msg)
                start_at = float(ready.split()[1])
                tick = start_at
                while True:  # a sample every SAMPLE_EVERY seconds from the start, and one as soon as the load ends
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        load.wait(timeout=max(0.0, tick - time.monotonic()))
                    done = load.poll() is not None
                    memory.append(
                        {
                            "t": round(time.monotonic() - start_at, 1),
                            "rss_mib": [round(rss_mib(pid), 1) for pid in pids],
                            "cpu_s": [round(cpu_seconds(pid), 2) for pid in pids],
                        }
                    )
                    if done:
                        break
                    tick += SAMPLE_EVERY
            finally:
                if load.poll() is None:
                    load.kill()
                load.wait()
            alive = [proc.poll() is None for proc, _port in started]
        logs = {path.name: path.read_text(errors="replace")[-3000:] for path in sorted(scratch.glob("server-*.log"))}
    if load.returncode != 0:
        msg = f"the load generator exited with {load.returncode}"
        raise RuntimeError(msg)
    return {"out": json.loads(out_path.read_text()), "memory": memory, "alive": alive, "logs": logs}


# -- figures ------------------------------------------------------------------------------------------


def _failed(status: str) -> bool:
    """An answer that is not a success, or no answer at all (a request dropped unsent is not a failure)."""
    return not status.startswith("2") and status != DROPPED


def _latencies(rows: list[list[Any]]) -> dict[str, Any]:
    took = sorted(row[3] for row in rows)  # dropped requests count with their wait: a lower bound
    return {
        "requests": len(rows),
        "ok": sum(1 for row in rows if row[4].startswith("2")),
        "dropped": sum(1 for row in rows if row[4] == DROPPED),
        "failed": sum(1 for row in rows if _failed(row[4])),
        "p50_ms": round(percentile(took, 0.50) * 1000, 1),
        "p99_ms": round(percentile(took, 0.99) * 1000, 1),
        "max_ms": round(took[-1] * 1000, 1) if took else 0.0,
    }


def _timeline(sent: list[list[Any]], memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per window of SAMPLE_EVERY seconds: requests due, answers received, latency, failures, memory."""
    due: dict[int, list[list[Any]]] = {}
    completed: Counter[int] = Counter()
    for row in sent:
        due.setdefault(int(row[2] // SAMPLE_EVERY), []).append(row)
        if row[4] != DROPPED:
            completed[int((row[2] + row[3]) // SAMPLE_EVERY)] += 1
    windows = []
    for window in range(max([*due, *completed], default=-1) + 1):
        rows = due.get(window, [])
        end = (window + 1) * SAMPLE_EVERY
        sample = min(memory, key=lambda m: abs(m["t"] - end)) if memory else {"rss_mib": []}
        took = sorted(row[3] for row in rows)
        windows.append(
            {
                "t": round(window * SAMPLE_EVERY),
                "due_per_s": round(len(rows) / SAMPLE_EVERY, 1),
                "completed_per_s": round(completed[window] / SAMPLE_EVERY, 1),
                "p50_ms": round(percentile(took, 0.50) * 1000, 1),
                "p99_ms": round(percentile(took, 0.99) * 1000, 1),
                "failed": sum(1 for row in rows if _failed(row[4])),
                "dropped": sum(1 for row in rows if row[4] == DROPPED),
                "rss_mib": sample["rss_mib"],
            }
        )
    return windows


def figures(args: argparse.Namespace, raw: dict[str, Any]) -> dict[str, Any]:
    """Throughput, latency, failures and memory from what the generator and the sampler recorded."""
    sent: list[list[Any]] = raw["out"]["sent"]
    memory: list[dict[str, Any]] = raw["memory"]
    measured = [row for row in sent if row[2] >= args.warmup]
    span = max((row[2] + row[3] for row in measured), default=args.warmup) - args.warmup
    overall = _latencies(measured)
    overall["achieved_per_s"] = round(overall["ok"] / span, 1) if span > 0 else 0.0
    per_kind = {}
    for index, name in enumerate(KINDS):
        rows = [row for row in measured if row[0] == index]
        per_kind[name] = _latencies(rows)
        per_kind[name]["achieved_per_s"] = round(per_kind[name]["ok"] / span, 1) if span > 0 else 0.0
    after_warmup = next((m for m in memory if m["t"] >= args.warmup), memory[-1])
    end = memory[-1]
    growth = [
        round((last - first) / first, 4) if first else None
        for first, last in zip(after_warmup["rss_mib"], end["rss_mib"], strict=True)
    ]
    cpu = [round(b - a, 2) for a, b in zip(after_warmup["cpu_s"], end["cpu_s"], strict=True)]
    answered = sum(1 for row in measured if row[4] != DROPPED)
    return {
        "overall": overall,
        "per_kind": per_kind,
        "statuses": dict(Counter(row[4] for row in sent).most_common()),
        "failures_during_warmup": sum(1 for row in sent if row[2] < args.warmup and _failed(row[4])),
        "failure_samples": raw["out"]["failure_samples"],
        "decisions": dict(Counter(row[5] for row in sent if row[0] == CHECK and row[5]).most_common()),
        "memory": {
            "rss_after_warmup_mib": after_warmup["rss_mib"],
            "rss_at_end_mib": end["rss_mib"],
            "rss_peak_mib": [max(m["rss_mib"][i] for m in memory) for i in range(SERVERS)],
            "growth": growth,
            "target_growth": MEMORY_TARGET,
            "within_target": all(g is not None and g < MEMORY_TARGET for g in growth),
            "samples": memory,
        },
        "server_cpu_s_after_warmup": cpu,
        "server_cpu_ms_per_answer": round(sum(cpu) * 1000 / answered, 2) if answered else None,
        "generator_late_p99_ms": raw["out"]["generator_late_p99_ms"],
        "generator_late_max_ms": raw["out"]["generator_late_max_ms"],
        "generator_cpu_s": raw["out"]["generator_cpu_s"],
        "servers_alive_at_end": raw["alive"],
        "timeline": _timeline(sent, memory),
    }


def show(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Print the figures as tables."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"{args.rate}/s offered for {args.duration} s to 2 servers (after {args.warmup:.0f} s warm-up)")
    for column in ("kind", "requests", "ok", "dropped", "failed", "achieved/s", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "kind" else "right", no_wrap=True)
    for name, row in [*result["per_kind"].items(), ("all", result["overall"])]:
        table.add_row(
            name, f"{row['requests']:,}", f"{row['ok']:,}", f"{row['dropped']:,}", str(row["failed"]),
            f"{row['achieved_per_s']:,}",
            str(row["p50_ms"]), str(row["p99_ms"]), str(row["max_ms"]),
        )  # fmt: skip
    console.print(table)
    timeline = result["timeline"]
    step = max(1, -(-len(timeline) // 20))  # at most ~20 rows on screen; the JSON keeps every window
    over_time = Table(title="over time (windows of 5 s; memory is each server's RSS)")
    for column in ("t s", "due/s", "done/s", "p50 ms", "p99 ms", "dropped", "failed", "RSS MiB"):
        over_time.add_column(column, justify="right")
    for window in timeline[::step]:
        over_time.add_row(
            str(window["t"]), str(window["due_per_s"]), str(window["completed_per_s"]), str(window["p50_ms"]),
            str(window["p99_ms"]), str(window["dropped"]), str(window["failed"]),
            " / ".join(f"{r:.0f}" for r in window["rss_mib"]),
        )  # fmt: skip
    console.print(over_time)
    memory = result["memory"]
    console.print(
        f"memory after warm-up {memory['rss_after_warmup_mib']} MiB, at the end {memory['rss_at_end_mib']} MiB: "
        f"growth {[f'{g:+.1%}' if g is not None else '?' for g in memory['growth']]} "
        f"(target < {MEMORY_TARGET:.0%}); server CPU {result['server_cpu_ms_per_answer']} ms an answer, "
        f"load generator CPU {result['generator_cpu_s']} s; "
        f"decisions {result['decisions']}; statuses {result['statuses']}; "
        f"generator late by p99 {result['generator_late_p99_ms']} ms; load average {result['load_average_at_end']}",
        highlight=False,
    )


def main() -> int:
    """Run the load and soak; print and write ``bench/results/load_soak_<duration>s.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second offered (default 200)")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60; the soak is 600)")
    parser.add_argument("--warmup", type=float, help="seconds left out of latency and memory growth (default 10 %%)")
    parser.add_argument("--subjects", type=int, default=3000, help="consenting people seeded (default 3,000)")
    parser.add_argument("--connections", type=int, default=16, help="connections to each server (default 16)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a request may wait to be sent, or for its answer"
    )
    parser.add_argument("--seed", type=int, default=6, help="random seed of the request mix")
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        generator(args.drive, args.out)
        return 0
    if args.warmup is None:
        args.warmup = min(60.0, max(5.0, args.duration / 10))
    machine = machine_info()
    WORK.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="load-soak-", dir=WORK))
    try:
        raw = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "load_soak",
        "machine": machine,
        "setup": (
            "2 `datatrust serve` processes (uvicorn, 1 worker each) on one PostgreSQL database; open-loop "
            "load from a separate process (threads with http.client, a fixed number of keep-alive connections "
            "to each server), alternating servers; latency from the time each request was due"
        ),
        "rate_offered_per_s": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "mix": {"check": 0.80, "consent": 0.15, "read": 0.05},
        "consenting_subjects": args.subjects,
        "connections_per_server": args.connections,
        **figures(args, raw),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    show(args, result)
    print(f"wrote {write_result(f'load_soak_{args.duration}s', result)}")
    dropped = result["statuses"].get(DROPPED, 0)
    if dropped:
        print(
            f"note: {dropped:,} requests waited more than {args.timeout:.0f} s to be sent and were dropped: "
            "the servers did not keep up with the offered rate",
            file=sys.stderr,
        )
    failed = sum(n for status, n in result["statuses"].items() if _failed(status))
    if failed or not all(raw["alive"]):
        print(f"FAILED: {failed} requests did not succeed; servers alive at the end: {raw['alive']}", file=sys.stderr)
        for status, sample in result["failure_samples"].items():
            print(f"  {status}: {sample}", file=sys.stderr)
        for name, tail in raw["logs"].items():
            if "Traceback" in tail or "ERROR" in tail:
                print(f"--- end of {name}:\n{tail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
