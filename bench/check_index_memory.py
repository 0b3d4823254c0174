"""Benchmark: memory of the check index for 1,000,000 consents (issue 6, "Benchmarks"; target <= 500 MB).

A child process (so nothing else shares its heap) folds a small trust and then
N ``consent.granted`` entries into a ``TrustState``, and reports how much its
resident set (``/proc/self/statm``) and the Python heap (``tracemalloc``, in a
second child: tracing slows the fold) grew. Entries are generated one at a time
and dropped once folded, as when following the ledger.

Run: ``.venv/bin/python bench/check_index_memory.py [--consents N]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import machine_info, write_result

HERE = Path(__file__).resolve().parent


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def child(consents: int, *, trace: bool) -> dict[str, Any]:
    """Fold the trust in this process and measure what the index costs."""
    from check_engine import trust_entries  # noqa: PLC0415 - imported in the child only

    from trust.state import ConsentState, TrustState  # noqa: PLC0415

    gc.collect()
    if trace:
        tracemalloc.start()
    before_rss, before_heap = _rss_bytes(), tracemalloc.get_traced_memory()[0] if trace else 0
    started = time.perf_counter()
    state = TrustState()
    state.apply_all(trust_entries(subjects=consents))
    elapsed = time.perf_counter() - started
    gc.collect()
    counted = 0
    for latest in state.latest_consent.values():  # walk the chains: building a dictionary here would grow the heap
        consent: ConsentState | None = latest
        while consent is not None:
            counted += 1
            consent = consent.previous
    result: dict[str, Any] = {"consents": counted, "subjects": len(state.latest_consent)}
    if trace:
        result["tracemalloc_mb"] = round((tracemalloc.get_traced_memory()[0] - before_heap) / 1e6, 1)
    else:
        result["rss_mb"] = round((_rss_bytes() - before_rss) / 1e6, 1)
        result["fold_s"] = round(elapsed, 1)
        result["fold_entries_per_s"] = round(consents / elapsed)
    return result


def run_child(consents: int, *, trace: bool) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it measured."""
    args = [sys.executable, str(HERE / "check_index_memory.py"), "--child", "--consents", str(consents)]
    if trace:
        args.append("--trace")
    out = subprocess.run(
        args, capture_output=True, check=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(HERE.parent)}
    )
    measured: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return measured


def main() -> None:
    """Measure, print and write ``bench/results/check_index_memory.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consents", type=int, default=1_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-trace", action="store_true", help="skip the (slow) tracemalloc run")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.consents, trace=args.trace)))
        return
    measured = run_child(args.consents, trace=False)
    if not args.no_trace:
        measured.update(run_child(args.consents, trace=True))
    measured["bytes_per_consent"] = round(measured["rss_mb"] * 1e6 / args.consents)
    result = {
        "benchmark": "check_index_memory",
        "machine": machine_info(),
        **measured,
        "target_mb": 500,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"{measured['consents']:,} consents: index RSS +{measured['rss_mb']} MB"
        + (f", tracemalloc +{measured['tracemalloc_mb']} MB" if "tracemalloc_mb" in measured else "")
        + f" ({measured['bytes_per_consent']} B/consent); fold {measured['fold_s']} s"
    )
    print(f"wrote {write_result('check_index_memory', result)}")


if __name__ == "__main__":
    main()
