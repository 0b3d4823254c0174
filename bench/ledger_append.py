"""Durable appends per second through ``Ledger.append``, beside the raw insert ceiling of the same run.

For each engine (SQLite in a temporary data directory, PostgreSQL in a scratch
database) and for 1 and 16 writers, every writer appends in a loop with
realistic ``consent.granted`` / ``check.decided`` payloads; each append returns
only once its entry is committed durably. Writers are threads calling
``Ledger.append`` (``--mode thread``, the default) or asyncio tasks on one event
loop awaiting ``Ledger.append_async`` (``--mode async``; ``--mode both`` runs
both, side by side), on uvloop as uvicorn picks it (``--loop asyncio`` for the
standard library's loop, ``--loop both`` for both). We report appends/s and the p50/p99 latency of one append,
the process CPU time per append, and the batch sizes the sequencer achieved.

The *raw ceiling* then replays exactly the same rows (entries and Merkle nodes,
read back from the ledger's tables) into a fresh database with the plain DB-API
driver, one transaction per batch of the sizes the sequencer achieved, with the
same durability (SQLite WAL + ``synchronous=FULL``, and the ledger's WAL checkpoint interval; PostgreSQL
``synchronous_commit=on``): no hashing, no canonicalisation, no threads.

    .venv/bin/python bench/ledger_append.py            # default run (~1-2 minutes)
    .venv/bin/python bench/ledger_append.py --quick    # smaller run
    .venv/bin/python bench/ledger_append.py --mode both   # thread writers and asyncio writers
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from _common import (
    ORIGIN,
    fsync_probe,
    machine_info,
    payload_for,
    percentile,
    pg_database,
    sqlite_database,
    write_result,
)
from sqlalchemy import make_url, select

from ledger.db import SQLITE_WAL_AUTOCHECKPOINT, Database
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.models import entries_table, nodes_table
from ledger.service import Ledger

TARGETS = {"sqlite": 20_000, "postgresql": 15_000, "p99_ms": 10.0, "share_of_ceiling": 0.5}
WARMUP = 300


def _thread_writers(ledger: Ledger, threads: int, per_thread: int) -> tuple[list[list[float]], float, float]:
    """Run *threads* writer threads, each calling ``Ledger.append`` *per_thread* times; return latencies, wall, CPU."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def writer(index: int) -> None:
        work = [payload_for(index * per_thread + n) for n in range(per_thread)]
        out = latencies[index]
        clock = time.perf_counter
        barrier.wait()
        for kind, payload in work:
            started = clock()
            ledger.append(kind, payload, actor="org_bench", now=datetime.now(UTC))
            out.append(clock() - started)

    pool = [threading.Thread(target=writer, args=(i,), name=f"writer-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    return latencies, time.perf_counter() - started, time.process_time() - cpu_started


def _async_writers(
    ledger: Ledger, tasks: int, per_task: int, *, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> tuple[list[list[float]], float, float]:
    """Run *tasks* asyncio tasks on one loop, each awaiting ``Ledger.append_async`` *per_task* times, one at a time."""
    latencies: list[list[float]] = [[] for _ in range(tasks)]

    async def writer(index: int, start: asyncio.Event) -> None:
        work = [payload_for(index * per_task + n) for n in range(per_task)]
        out = latencies[index]
        clock = time.perf_counter
        await start.wait()
        for kind, payload in work:
            began = clock()
            await ledger.append_async(kind, payload, actor="org_bench", now=datetime.now(UTC))
            out.append(clock() - began)

    async def main() -> tuple[float, float]:
        start = asyncio.Event()
        running = [asyncio.create_task(writer(i, start)) for i in range(tasks)]
        await asyncio.sleep(0)  # every task has built its payloads and waits for the start
        began, cpu_began = time.perf_counter(), time.process_time()
        start.set()
        await asyncio.gather(*running)
        return time.perf_counter() - began, time.process_time() - cpu_began

    loop = loop_factory()
    try:
        elapsed, cpu = loop.run_until_complete(main())
    finally:
        loop.close()
    return latencies, elapsed, cpu


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - only the async writers need it

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _loops(choice: str) -> list[str]:
    """The event loops to run the async writers on: ``auto`` is the one uvicorn picks (uvloop when installed)."""
    if choice == "both":
        return ["asyncio", "uvloop"]
    if choice == "auto":
        return ["uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"]
    return [choice]


def run_ledger(
    url: str, *, threads: int, per_thread: int, mode: str = "thread", loop: str = "uvloop"
) -> dict[str, Any]:
    """Append ``threads * per_thread`` entries from *threads* writers; return the figures and the batches."""
    db = Database.from_url(url)
    signer = Signer.generate("bench")
    ledger = Ledger(db, signer=signer, origin=ORIGIN)
    batches: list[int] = []
    for number in range(WARMUP):
        kind, payload = payload_for(number)
        ledger.append(kind, payload, actor="org_bench", now=datetime.now(UTC))
    ledger.add_listener(lambda entries: batches.append(len(entries)))
    first_seq = ledger.size()
    load_before = os.getloadavg()
    if mode == "async":
        latencies, elapsed, cpu = _async_writers(ledger, threads, per_thread, loop_factory=_loop_factory(loop))
    else:
        latencies, elapsed, cpu = _thread_writers(ledger, threads, per_thread)
    load_after = os.getloadavg()
    ledger.close()
    total = threads * per_thread
    with db.engine.connect() as conn:
        report = verify_live(conn, [signer.verifier], origin=ORIGIN)
        rows = [
            tuple(r)
            for r in conn.execute(
                select(
                    entries_table.c.seq,
                    entries_table.c.kind,
                    entries_table.c.at,
                    entries_table.c.actor,
                    entries_table.c.leaf_hash,
                    entries_table.c.body,
                )
                .where(entries_table.c.seq >= first_seq)
                .order_by(entries_table.c.seq)
            )
        ]
        nodes = [tuple(r) for r in conn.execute(select(nodes_table.c.level, nodes_table.c.idx, nodes_table.c.hash))]
    db.dispose()
    if report.entries != first_seq + total or len(rows) != total:
        msg = f"expected {first_seq + total} entries, the ledger holds {report.entries}"
        raise SystemExit(msg)
    flat = sorted(x for part in latencies for x in part)
    return {
        "threads": threads,
        "mode": mode,
        "writers": f"{threads} asyncio task(s) on one {loop} event loop" if mode == "async" else f"{threads} thread(s)",
        "event_loop": loop if mode == "async" else None,
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "appends": total,
        "seconds": round(elapsed, 3),
        "appends_per_s": round(total / elapsed),
        "latency_ms": {
            "p50": round(percentile(flat, 0.50) * 1000, 3),
            "p99": round(percentile(flat, 0.99) * 1000, 3),
            "max": round(flat[-1] * 1000, 3),
        },
        "cpu_us_per_append": round(cpu / total * 1e6, 1),
        "batches": len(batches),
        "mean_batch": round(statistics.fmean(batches), 2) if batches else 0,
        "verified_entries": report.entries,
        "_batches": batches,
        "_rows": rows,
        "_nodes": _nodes_of(nodes, first_seq),
    }


def _nodes_of(nodes: list[tuple[Any, ...]], first_seq: int) -> dict[int, list[tuple[Any, ...]]]:
    """Group Merkle nodes by the sequence number whose append completed them."""
    by_seq: dict[int, list[tuple[Any, ...]]] = {}
    for level, idx, value in nodes:
        completed_by = ((idx + 1) << level) - 1
        if completed_by >= first_seq:
            by_seq.setdefault(completed_by, []).append((level, idx, value))
    return by_seq


def _plan(run: dict[str, Any]) -> list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    rows: list[tuple[Any, ...]] = run["_rows"]
    nodes: dict[int, list[tuple[Any, ...]]] = run["_nodes"]
    plan = []
    position = 0
    for size in run["_batches"]:
        chunk = rows[position : position + size]
        plan.append((chunk, [n for r in chunk for n in nodes.get(r[0], [])]))
        position += size
    return plan


def ceiling_sqlite(run: dict[str, Any]) -> dict[str, Any]:
    """Replay the run's rows with sqlite3: WAL, synchronous=FULL, one BEGIN IMMEDIATE…COMMIT per batch."""
    plan = _plan(run)
    with sqlite_database("ceiling") as url:
        path = make_url(url).database
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")  # as the ledger's connections
        entries_sql = "INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) VALUES (?, ?, ?, ?, ?, ?)"
        nodes_sql = "INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (?, ?, ?)"
        started = time.perf_counter()
        for entries, nodes in plan:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(entries_sql, entries)
            if nodes:
                conn.executemany(nodes_sql, nodes)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    total = sum(len(e) for e, _n in plan)
    return {
        "method": "sqlite3 executemany",
        "rows": total,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(total / elapsed),
    }


def _values_sql(table: str, columns: str, width: int, count: int) -> str:
    one = "(" + ", ".join(["%s"] * width) + ")"
    return f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * count)  # noqa: S608 - fixed names


def ceiling_postgresql(run: dict[str, Any]) -> dict[str, Any]:
    """Replay the run's rows with psycopg, one transaction per batch; the faster of two insert styles."""
    plan = _plan(run)
    best: dict[str, Any] | None = None
    for method in ("multi-row VALUES", "executemany (pipeline)"):
        with pg_database("ceiling") as url:
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(dsn) as conn:
                mode = conn.execute("SHOW synchronous_commit").fetchone()
                assert mode is not None
                assert mode[0] == "on", mode
                started = time.perf_counter()
                for entries, nodes in plan:
                    with conn.cursor() as cur:
                        if method == "multi-row VALUES":
                            cur.execute(
                                _values_sql("ledger_entries", "seq, kind, at, actor, leaf_hash, body", 6, len(entries)),
                                [v for r in entries for v in r],
                            )
                            if nodes:
                                cur.execute(
                                    _values_sql("ledger_tree_nodes", "level, idx, hash", 3, len(nodes)),
                                    [v for r in nodes for v in r],
                                )
                        else:
                            cur.executemany(
                                "INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) "
                                "VALUES (%s, %s, %s, %s, %s, %s)",
                                entries,
                            )
                            if nodes:
                                cur.executemany(
                                    "INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (%s, %s, %s)", nodes
                                )
                    conn.commit()
                elapsed = time.perf_counter() - started
        total = sum(len(e) for e, _n in plan)
        result = {"method": method, "rows": total, "seconds": round(elapsed, 3), "rows_per_s": round(total / elapsed)}
        if best is None or result["rows_per_s"] > best["rows_per_s"]:
            best = result
    assert best is not None
    return best


def bench_engine(
    engine: str, *, single: int, threads: int, per_thread: int, mode: str = "thread", loop: str = "uvloop"
) -> list[dict[str, Any]]:
    """Run the 1-writer and N-writer cases on one engine, with writers of one *mode* (thread or async)."""
    database = sqlite_database if engine == "sqlite" else pg_database
    ceiling = ceiling_sqlite if engine == "sqlite" else ceiling_postgresql
    out = []
    for writers, count in ((1, single), (threads, per_thread)):
        with database("append") as url:
            run = run_ledger(url, threads=writers, per_thread=count, mode=mode, loop=loop)
        raw = ceiling(run)
        sizes = Counter(run["_batches"])
        for key in [k for k in run if k.startswith("_")]:
            del run[key]
        run["engine"] = engine
        run["batch_sizes_most_common"] = [[size, times] for size, times in sizes.most_common(6)]
        run["raw_ceiling"] = raw
        run["share_of_ceiling"] = round(run["appends_per_s"] / raw["rows_per_s"], 3)
        if writers == threads and threads >= 16:
            run["targets"] = {
                "appends_per_s": TARGETS[engine],
                "p99_ms": TARGETS["p99_ms"],
                "share_of_ceiling": TARGETS["share_of_ceiling"],
            }
            run["meets_targets"] = (
                run["appends_per_s"] >= TARGETS[engine]
                and run["latency_ms"]["p99"] <= TARGETS["p99_ms"]
                and run["share_of_ceiling"] >= TARGETS["share_of_ceiling"]
            )
        out.append(run)
        _print(run)
    return out


def _print(run: dict[str, Any]) -> None:
    raw = run["raw_ceiling"]
    verdict = ""
    if "meets_targets" in run:
        verdict = "  targets " + ("MET" if run["meets_targets"] else "NOT MET")
    print(
        f"{run['engine']:<10} {run['mode']:<6} {run['event_loop'] or '':<7} {run['threads']:>2} writer(s): "
        f"{run['appends_per_s']:>7,} appends/s  "
        f"p50 {run['latency_ms']['p50']:6.2f} ms  p99 {run['latency_ms']['p99']:6.2f} ms  "
        f"mean batch {run['mean_batch']:5.1f}  cpu {run['cpu_us_per_append']:5.1f} us/append  | raw ceiling {raw['rows_per_s']:>7,} rows/s "
        f"({raw['method']})  = {run['share_of_ceiling']:.0%} of ceiling  "
        f"load {run['loadavg_1m_before_after'][0]:.2f}->{run['loadavg_1m_before_after'][1]:.2f}{verdict}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``bench/results/ledger_append.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 20 seconds)")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--threads", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument(
        "--mode",
        choices=["thread", "async", "both"],
        default="thread",
        help="writers: threads calling Ledger.append (default), asyncio tasks awaiting Ledger.append_async, or both",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop", "both"],
        default="auto",
        help="event loop of the async writers: auto (default) is uvicorn's choice, uvloop when installed",
    )
    args = parser.parse_args(argv)
    single, per_thread = (1_000, 500) if args.quick else (5_000, 3_000)
    machine = machine_info()
    machine["fsync_probe"] = fsync_probe()
    print(f"machine: {machine}")
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    if "postgresql" in engines and machine["postgresql_server"] is None:
        print("PostgreSQL is not reachable: skipping it", file=sys.stderr)
        engines.remove("postgresql")
    modes = ["thread", "async"] if args.mode == "both" else [args.mode]
    variants = [(mode, loop) for mode in modes for loop in (_loops(args.loop) if mode == "async" else ["-"])]
    runs = []
    for engine in engines:
        for mode, loop in variants:
            runs.extend(
                bench_engine(engine, single=single, threads=args.threads, per_thread=per_thread, mode=mode, loop=loop)
            )
    command = "python bench/ledger_append.py" + (" --quick" if args.quick else "")
    if args.engine != "both":
        command += f" --engine {args.engine}"
    if args.mode != "thread":
        command += f" --mode {args.mode}"
    if args.loop != "auto":
        command += f" --loop {args.loop}"
    path = write_result(
        "ledger_append",
        {
            "benchmark": "ledger_append",
            "command": command,
            "machine": machine,
            "targets_16_writers": TARGETS,
            "runs": runs,
        },
    )
    print(f"wrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
