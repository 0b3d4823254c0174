"""Inclusion and consistency proofs on a 1,000,000-entry ledger, through ``Ledger.inclusion_proof`` / ``consistency_proof``.

The ledger is the synthetic one of ``bench/ledger_verify.py`` (built with the
ledger's own functions, cached under ``bench/work/``). On SQLite the proofs read
that database file; on PostgreSQL its rows are copied (``COPY``) into a scratch
database, dropped afterwards. Each proof is a full public call: a pooled
connection, one statement reading the stored nodes and the ledger's size (the
size check), the hashes folded into the proof. Every proof is verified against
the signed root afterwards (not timed). Beside the latencies, the client's CPU
time per proof and the load average are recorded: the machine may be shared.

    .venv/bin/python bench/ledger_proofs.py            # 1,000,000 entries, 2,000 proofs of each kind
    .venv/bin/python bench/ledger_proofs.py --quick    # 100,000 entries, 500 proofs
    .venv/bin/python bench/ledger_proofs.py --engine postgresql --postgresql-url URL  # a database already loaded
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from _common import ORIGIN, bench_signer, machine_info, percentile, pg_database, synth_files, synth_paths, write_result
from sqlalchemy import make_url

from ledger.db import Database
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.service import Ledger

TARGET_MS = 1.0
WARMUP = 200


def copy_to_postgresql(sqlite_path: str, url: str) -> float:
    """Copy entries, nodes and checkpoints from the cached SQLite file into PostgreSQL; return the seconds."""
    started = time.perf_counter()
    source = sqlite3.connect(sqlite_path)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as target, target.cursor() as cur:
        for table, columns in (
            ("ledger_entries", "seq, kind, at, actor, leaf_hash, body"),
            ("ledger_tree_nodes", "level, idx, hash"),
            ("ledger_checkpoints", "size, root, note, signed_at"),
        ):
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in source.execute(f"SELECT {columns} FROM {table}"):  # noqa: S608 - fixed names
                    copy.write_row(row)
        target.commit()
        cur.execute("ANALYZE ledger_entries")
        cur.execute("ANALYZE ledger_tree_nodes")
        target.commit()
    source.close()
    return time.perf_counter() - started


def postgresql_facts(url: str) -> dict[str, str]:
    """Cache size and table sizes: whether the tree fits in PostgreSQL's own cache decides its latency."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('shared_buffers'), pg_size_pretty(pg_table_size('ledger_entries')), "
            "pg_size_pretty(pg_table_size('ledger_tree_nodes')), pg_size_pretty(pg_indexes_size('ledger_entries')), "
            "pg_size_pretty(pg_indexes_size('ledger_tree_nodes'))"
        ).fetchone()
    assert row is not None
    keys = ("shared_buffers", "entries_table", "nodes_table", "entries_indexes", "nodes_indexes")
    return dict(zip(keys, (str(v) for v in row), strict=True))


@dataclass
class Timing:
    """The latency of each call (s), this process's CPU time over all of them (s), and the load around them."""

    latencies: list[float]
    cpu_seconds: float
    load_1min: tuple[float, float]  # before, after


def timed(calls: list[Callable[[], Any]]) -> tuple[Timing, list[Any]]:
    """Run each call, timing it; return the timing and the results."""
    latencies, results = [], []
    clock = time.perf_counter
    load_before = os.getloadavg()[0]
    cpu_started = time.process_time()
    for call in calls:
        started = clock()
        results.append(call())
        latencies.append(clock() - started)
    cpu = time.process_time() - cpu_started
    return Timing(latencies, cpu, (load_before, os.getloadavg()[0])), results


def summary(timing: Timing, hashes: list[int]) -> dict[str, Any]:
    """Mean, p50 and p99 in milliseconds, the client's CPU time per proof, the load, and the mean proof length.

    The CPU time is this process's only (SQLAlchemy, the driver, the fold), not
    the database server's: with other work on the machine, it moves far less
    than the latencies do.
    """
    latencies = timing.latencies
    ordered = sorted(latencies)
    return {
        "proofs": len(latencies),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "client_cpu_ms": round(timing.cpu_seconds / len(latencies) * 1000, 3),
        "loadavg_1min_before_after": [round(v, 2) for v in timing.load_1min],
        "mean_hashes": round(statistics.fmean(hashes), 1),
    }


def bench_engine(engine: str, url: str, *, size: int, proofs: int) -> dict[str, Any]:
    """Time random inclusion and consistency proofs against the tree of *size* entries."""
    db = Database.from_url(url)
    ledger = Ledger(db, signer=bench_signer(), origin=ORIGIN)
    try:
        if ledger.size() != size:
            raise SystemExit(f"{engine}: the ledger has {ledger.size()} entries, expected {size}")
        root = ledger.root(size)
        rng = random.Random(2026)
        seqs = [rng.randrange(size) for _ in range(WARMUP + proofs)]
        olds = [rng.randrange(1, size) for _ in range(WARMUP + proofs)]
        timed([functools.partial(ledger.inclusion_proof, s, size) for s in seqs[:WARMUP]])
        timed([functools.partial(ledger.consistency_proof, m, size) for m in olds[:WARMUP]])
        inc_time, inc = timed([functools.partial(ledger.inclusion_proof, s, size) for s in seqs[WARMUP:]])
        con_time, con = timed([functools.partial(ledger.consistency_proof, m, size) for m in olds[WARMUP:]])
        # The same proofs again: their pages are now cached (what a server sees for hot entries).
        inc_again, _ = timed([functools.partial(ledger.inclusion_proof, s, size) for s in seqs[WARMUP:]])
        con_again, _ = timed([functools.partial(ledger.consistency_proof, m, size) for m in olds[WARMUP:]])
        for proof in inc:
            verify_inclusion(proof.seq, proof.size, proof.leaf_hash, proof.proof, root)
        for old, proof in zip(olds[WARMUP:], con, strict=True):
            verify_consistency(old, size, ledger.root(old), root, proof)
    finally:
        ledger.close()
        db.dispose()
    result: dict[str, Any] = {
        "engine": engine,
        "tree_size": size,
        "inclusion": summary(inc_time, [len(p.proof) for p in inc]),
        "consistency": summary(con_time, [len(p) for p in con]),
        "inclusion_repeated": summary(inc_again, [len(p.proof) for p in inc]),
        "consistency_repeated": summary(con_again, [len(p) for p in con]),
        "all_proofs_verified": True,
        "target_ms": TARGET_MS,
    }
    result["meets_target_mean"] = all(result[k]["mean_ms"] <= TARGET_MS for k in ("inclusion", "consistency"))
    result["meets_target_p99"] = all(result[k]["p99_ms"] <= TARGET_MS for k in ("inclusion", "consistency"))
    for kind in ("inclusion", "consistency", "inclusion_repeated", "consistency_repeated"):
        figures = result[kind]
        print(
            f"{engine:<10} {kind:<20}: mean {figures['mean_ms']:.3f} ms  p50 {figures['p50_ms']:.3f} ms  "
            f"p99 {figures['p99_ms']:.3f} ms  client CPU {figures['client_cpu_ms']:.3f} ms  "
            f"load {figures['loadavg_1min_before_after'][1]:.2f}  ({figures['mean_hashes']} hashes, {figures['proofs']} proofs)",
            flush=True,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``bench/results/ledger_proofs.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 entries and 500 proofs of each kind")
    parser.add_argument("--entries", type=int, default=None, help="ledger size (default 1,000,000)")
    parser.add_argument("--proofs", type=int, default=None, help="timed proofs of each kind (default 2,000)")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgresql-url",
        default=None,
        help="use this PostgreSQL database, already holding the same synthetic ledger, instead of copying it "
        "into a scratch one (it is neither loaded nor dropped)",
    )
    args = parser.parse_args(argv)
    count = args.entries or (100_000 if args.quick else 1_000_000)
    proofs = args.proofs or (500 if args.quick else 2_000)
    machine = machine_info()
    print(f"machine: {machine}")
    meta = synth_files(count, with_db=True)
    _export, sqlite_path = synth_paths(count)
    results = []
    if args.engine in ("sqlite", "both"):
        results.append(bench_engine("sqlite", f"sqlite:///{sqlite_path}", size=count, proofs=proofs))
    if args.engine in ("postgresql", "both"):
        if machine["postgresql_server"] is None:
            print("PostgreSQL is not reachable: skipping it", file=sys.stderr)
        elif args.postgresql_url:
            result = bench_engine("postgresql", args.postgresql_url, size=count, proofs=proofs)
            result["server"] = postgresql_facts(args.postgresql_url)
            results.append(result)
        else:
            with pg_database("proofs") as url:
                seconds = copy_to_postgresql(str(sqlite_path), url)
                print(f"copied {count:,} entries into PostgreSQL in {seconds:.0f} s", flush=True)
                result = bench_engine("postgresql", url, size=count, proofs=proofs)
                result["server"] = postgresql_facts(url)
                results.append(result)
    path = write_result(
        "ledger_proofs" if count == 1_000_000 else f"ledger_proofs_{count}",
        {
            "benchmark": "ledger_proofs",
            "command": "python bench/ledger_proofs.py" + ("" if count == 1_000_000 else f" --entries {count}"),
            "machine": machine,
            "ledger": {k: v for k, v in meta.items() if k != "verifier_key"},
            "target_ms_each": TARGET_MS,
            "results": results,
        },
    )
    print(f"wrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
