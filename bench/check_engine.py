"""Benchmark: the rules engine in process (issue 6, "Benchmarks").

A synthetic trust (100,000 consenting subjects, 20 organisations, 50 agreements,
200 approved requests with ethics approvals) is folded into a ``TrustState`` from
in-memory ledger entries (no database), then checks are decided one after another
on one core with full reasons, as ``CheckService.decide`` does before it records:

- 1 subject per decision: decisions/s and p50/p99 latency;
- the same with 10,000 agreements (rules read indexed data, so it must not slow down);
- 1,000 subjects in one call: latency.

Run: ``.venv/bin/python bench/check_engine.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import machine_info, percentile, write_result

from consent.vocabulary import Vocabulary
from ledger.entry import LedgerEntry, format_at
from trust.config import GovernanceConfig
from trust.rules.base import ProposedAction
from trust.rules.engine import Engine
from trust.state import TrustState

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PURPOSES = tuple(code for code in Vocabulary.default().purposes if "." not in code)  # research, statistics, ...
CATEGORIES = ("health.mental", "demographics.age")
NO_HASH = bytes(32)
CHUNK = 1000  # decisions per CPU-time sample (thread CPU time, read between chunks, not around each decision)


def entry(seq: int, kind: str, payload: dict[str, Any], actor: str = "person_admin") -> LedgerEntry:
    """A ledger entry as the index reads it (one millisecond after the previous; hashes are not computed)."""
    at = format_at(T0 + timedelta(milliseconds=seq))
    return LedgerEntry(seq, kind, at, actor, NO_HASH, payload, b"", NO_HASH)


def org_id(n: int) -> str:
    """The id of organisation *n*."""
    return f"org_{n:03d}"


def request_id(n: int) -> str:
    """The id of access request *n*."""
    return f"req_{n:05d}"


def subject_id(n: int) -> str:
    """The opaque ref of subject *n*."""
    return f"sub_{n:08d}"


def trust_entries(
    *, subjects: int, organisations: int = 20, agreements: int = 50, requests: int = 200
) -> Iterator[LedgerEntry]:
    """The entries of a seeded trust, in sequence order (payload fields as ``trust/state.py`` reads them)."""
    seq = 0

    def nxt(kind: str, payload: dict[str, Any]) -> LedgerEntry:
        nonlocal seq
        made = entry(seq, kind, payload)
        seq += 1
        return made

    yield nxt("trust.configured", GovernanceConfig.default().payload())
    for n in range(organisations):
        yield nxt("org.registered", {"organisation": org_id(n), "name": f"Organisation {n}", "kind": "charity"})
    for n in range(agreements):
        # Each organisation's first agreement covers research; the others spread over the vocabulary's purposes.
        purpose = "research" if n < organisations else PURPOSES[n % len(PURPOSES)]
        terms = {
            "agreement": f"agr_{n:05d}",
            "version": 1,
            "organisation": org_id(n % organisations),
            "purposes": [purpose],
            "categories": ["health", "demographics"],
            "operations": ["aggregate", "pseudonymised"],
            "retention_days": 180 + n % 90,
            "geography": ["GB"],
            "valid_from": format_at(T0),
            "valid_until": format_at(T0 + timedelta(days=730)),
            "terms_hash": f"{n:064x}",
        }
        for party in ("trust", "organisation"):
            yield nxt("agreement.signed", {**terms, "party": party})
    for n in range(requests):
        yield nxt(
            "request.submitted",
            {
                "request": request_id(n),
                "organisation": org_id(n % organisations),
                "purpose": "research.health",
                "categories": list(CATEGORIES),
                "operation": "pseudonymised",
                "subjects": None,
                "cohort_size": None,
                "duration_days": 365,
                "project": None,
                "flags": {"special_categories": True},
            },
        )
        yield nxt(
            "request.decided",
            {"request": request_id(n), "outcome": "approved", "expires_at": format_at(T0 + timedelta(days=365))},
        )
        yield nxt(
            "ethics.decided",
            {
                "decision": f"eth_{n:05d}",
                "outcome": "approved_with_conditions",
                "request": request_id(n),
                "project": None,
                "conditions_text": "Review the project after six months.",
                "obligations": [{"type": "review_by", "value": "2026-07-01"}],
                "expires_at": format_at(T0 + timedelta(days=400)),
            },
        )
    for n in range(subjects):
        yield nxt(
            "consent.granted",
            {
                "consent": f"con_{n:08d}",
                "subject": subject_id(n),
                "organisation": org_id(n % organisations),
                "purposes": ["research"],
                "categories": ["health", "demographics"],
                "recipients": None,
                "operations": None,
                "valid_from": format_at(T0),
                "valid_until": None,
                "explicit": n % 50 != 0,  # every 50th consent was not explicit: that subject is excluded
            },
        )


def build_state(*, subjects: int, agreements: int) -> TrustState:
    """Fold a seeded trust into a fresh index."""
    state = TrustState()
    state.apply_all(trust_entries(subjects=subjects, agreements=agreements))
    return state


def actions(count: int, *, subjects: int, per_call: int, seed: int = 6) -> list[ProposedAction]:
    """*count* proposed shares by random organisations under their own requests, naming random subjects."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        req = rng.randrange(200)
        made.append(
            ProposedAction(
                organisation=org_id(req % 20),
                purpose="research.health",
                categories=CATEGORIES,
                operation="pseudonymised",
                request=request_id(req),
                subjects=tuple(subject_id(rng.randrange(subjects)) for _ in range(per_call)),
                geography="GB",
            )
        )
    return made


def run(state: TrustState, batch: list[ProposedAction], *, at_start: datetime, chunk: int = CHUNK) -> dict[str, Any]:
    """Decide every action (each at its own instant, one microsecond apart, as live checks are); time each."""
    engine = Engine.standard()
    instants = [format_at(at_start + timedelta(microseconds=n)) for n in range(len(batch))]
    for action, at in zip(batch[:200], instants, strict=False):  # warm up
        engine.decide(state, action, at=at).to_json()
    latencies: list[float] = []
    chunk_cpu: list[float] = []  # CPU per decision over each run of CHUNK decisions
    permits = 0
    gc.collect()
    collections = [0, 0, 0]  # garbage collections per generation while timing (a gen-2 one walks the whole index)

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    gc.callbacks.append(count)
    clock, cpu_clock = time.perf_counter, time.thread_time
    cpu_started = chunk_started = cpu_clock()
    started = clock()
    for n, (action, at) in enumerate(zip(batch, instants, strict=True), start=1):
        t0 = clock()
        decision = engine.decide(state, action, at=at)
        decision.to_json()  # full reasons, as recorded and returned
        latencies.append(clock() - t0)
        permits += decision.is_permit
        if n % chunk == 0:
            now = cpu_clock()
            chunk_cpu.append((now - chunk_started) / chunk)
            chunk_started = now
    elapsed = clock() - started
    cpu = cpu_clock() - cpu_started
    gc.callbacks.remove(count)
    latencies.sort()
    chunk_cpu.sort()
    result: dict[str, Any] = {
        "decisions": len(batch),
        "permits": permits,
        "decisions_per_s": round(len(batch) / elapsed),
        "decisions_per_cpu_s": round(len(batch) / cpu),  # less sensitive to other work on a shared machine
        "mean_cpu_us": round(cpu / len(batch) * 1e6, 1),
        "p50_us": round(percentile(latencies, 0.50) * 1e6, 1),
        "p99_us": round(percentile(latencies, 0.99) * 1e6, 1),
        "max_us": round(latencies[-1] * 1e6, 1),
        "gc_collections_by_generation": collections,
    }
    if chunk_cpu:  # the least disturbed stretches: closest to what one idle core does
        result["chunk_cpu_us"] = {
            "decisions_per_chunk": chunk,
            "best": round(chunk_cpu[0] * 1e6, 1),
            "median": round(percentile(chunk_cpu, 0.50) * 1e6, 1),
        }
    return result


def main() -> None:
    """Run the benchmark and write ``bench/results/check_engine.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 decisions")
    parser.add_argument("--pin", action="store_true", help="pin to one core (only on an idle machine)")
    args = parser.parse_args()
    decisions = 20_000 if args.quick else args.decisions
    at_start = T0 + timedelta(days=30)
    with_pin = args.pin and hasattr(os, "sched_setaffinity")
    if with_pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    result: dict[str, Any] = {"benchmark": "check_engine", "machine": machine_info(), "pinned_to_one_core": with_pin}
    for agreements in (50, 10_000):
        t0 = time.perf_counter()
        state = build_state(subjects=args.subjects, agreements=agreements)
        fold_s = time.perf_counter() - t0
        # The index is not frozen (gc.freeze), as CheckService does not freeze it: a decision leaves no garbage
        # the collector must find, so no collection walks the index while timing (gc_collections_by_generation).
        one = run(state, actions(decisions, subjects=args.subjects, per_call=1), at_start=at_start)
        big = run(state, actions(200, subjects=args.subjects, per_call=1000), at_start=at_start, chunk=10)
        key = f"agreements_{agreements}"
        result[key] = {
            "subjects": args.subjects,
            "organisations": 20,
            "agreements": agreements,
            "requests": 200,
            "fold_s": round(fold_s, 2),
            "one_subject": one,
            "thousand_subjects": {
                "calls": big["decisions"],
                "mean_cpu_ms": round(big["mean_cpu_us"] / 1000, 2),
                "p50_ms": round(big["p50_us"] / 1000, 2),
                "p99_ms": round(big["p99_us"] / 1000, 2),
                "chunk_cpu_ms": {
                    "calls_per_chunk": 10,
                    "best": round(big["chunk_cpu_us"]["best"] / 1000, 2),
                    "median": round(big["chunk_cpu_us"]["median"] / 1000, 2),
                },
            },
        }
        print(
            f"{agreements:>6} agreements: fold {fold_s:.1f} s; 1 subject: {one['decisions_per_s']:,}/s "
            f"p50 {one['p50_us']} µs p99 {one['p99_us']} µs; 1,000 subjects: p50 {big['p50_us'] / 1000:.2f} ms "
            f"p99 {big['p99_us'] / 1000:.2f} ms; CPU/decision {one['mean_cpu_us']} µs, "
            f"CPU/1,000-subject call {big['mean_cpu_us'] / 1000:.2f} ms; least disturbed {CHUNK:,} decisions: "
            f"{one['chunk_cpu_us']['best']} µs CPU each; garbage collections while timing (gen 0, 1, 2) "
            f"{one['gc_collections_by_generation']}",
            flush=True,
        )
        del state
        gc.collect()
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average {result['load_average']}")
    print(f"wrote {write_result('check_engine', result)}")


if __name__ == "__main__":
    main()
