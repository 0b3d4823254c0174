"""Full verification of a 1,000,000-entry ledger: an export file (no database) and the live SQLite database.

The ledger is synthesised directly with the ledger's own functions
(``build_entry``, ``CompactRange``, ``Checkpoint.sign``): realistic consent and
check entries of about 300 bytes, a signed checkpoint every 10,000 entries.
It is written once as an export file (and, unless ``--no-live``, bulk-inserted
into a SQLite database) under ``bench/work/`` and reused by later runs (and by
``bench/ledger_proofs.py``).

Each measurement runs in a fresh child process, so its peak resident memory
(``ru_maxrss``) is that of verification alone (plus the interpreter and the
imported modules). ``verify_export`` checks a large file in two halves at once
(a second process takes the second half); the serial path is timed too
(``parallel=False``), and the memory target counts both processes.
``tracemalloc`` gives the peak of Python allocations in a separate run (it
slows the run, so it is not timed).

    .venv/bin/python bench/ledger_verify.py            # 1,000,000 entries (~1-2 minutes the first time)
    .venv/bin/python bench/ledger_verify.py --quick    # 100,000 entries
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from _common import ORIGIN, machine_info, synth_files, synth_paths, write_result

from ledger.db import Database
from ledger.export import verify_export, verify_live
from ledger.keys import Verifier

TARGET_SECONDS = 3.0
TARGET_MIB = 200


def child(mode: str, count: int, verifier_text: str) -> None:
    """Run one verification in this (child) process and print its figures as JSON."""
    export, db_path = synth_paths(count)
    anchors = [Verifier.from_text(verifier_text)]
    if mode == "tracemalloc":
        tracemalloc.start()
    started = time.perf_counter()
    if mode == "live":
        db = Database.from_url(f"sqlite:///{db_path}")
        with db.engine.connect() as conn:
            report = verify_live(conn, anchors, origin=ORIGIN)
        db.dispose()
    else:
        report = verify_export(export, anchors, parallel=mode != "export-serial")
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {
        "seconds": elapsed,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if mode == "tracemalloc":
        figures["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 1024 / 1024
    print(json.dumps(figures))


def baseline_rss() -> float:
    """Peak RSS of a child that only imports what verification imports (the floor under every figure)."""
    code = "import resource, ledger.export, ledger.db;print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    return float(out.stdout.strip())


def run_child(mode: str, count: int, verifier_text: str) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--entries", str(count), "--key", verifier_text],
        capture_output=True,
        check=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the synthetic ledger, verify it, and write ``bench/results/ledger_verify.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1,000,000")
    parser.add_argument("--entries", type=int, default=None, help="number of entries (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each verification (default 3)")
    parser.add_argument("--no-live", action="store_true", help="skip the live SQLite database")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the synthetic ledger")
    parser.add_argument("--child", choices=["export", "export-serial", "live", "tracemalloc"], help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    count = args.entries or (100_000 if args.quick else 1_000_000)
    if args.child:
        child(args.child, count, args.key)
        return 0
    machine = machine_info()
    print(f"machine: {machine}")
    meta = synth_files(count, with_db=not args.no_live, regenerate=args.regenerate)
    key = meta["verifier_key"]
    floor = baseline_rss()
    print(
        f"{count:,} entries, mean {meta['mean_entry_bytes']} bytes, file {meta['file_bytes'] / 2**20:.0f} MiB, "
        f"{meta['checkpoints']} signed checkpoints; interpreter + imports alone: {floor:.0f} MiB RSS"
    )
    results: dict[str, Any] = {}
    modes = ["export", "export-serial"] if args.no_live else ["export", "export-serial", "live"]
    for mode in modes:
        runs = [run_child(mode, count, key) for _ in range(1 if mode == "live" else args.runs)]
        if any(r["entries"] != count for r in runs):
            raise SystemExit(f"{mode}: verified {runs[0]['entries']} entries, expected {count}")
        seconds = [r["seconds"] for r in runs]
        results[mode] = {
            "runs": len(runs),
            "seconds_median": round(statistics.median(seconds), 3),
            "seconds_min": round(min(seconds), 3),
            "entries_per_s": round(count / statistics.median(seconds)),
            "peak_rss_mib": round(max(r["maxrss_mib"] for r in runs), 1),
            "worker_peak_rss_mib": round(max(r["worker_maxrss_mib"] for r in runs), 1),
            "checkpoints_verified": runs[0]["checkpoints"],
        }
        print(
            f"verify {mode:<13}: median {results[mode]['seconds_median']:.2f} s (min {results[mode]['seconds_min']:.2f} s,"
            f" {results[mode]['entries_per_s']:,} entries/s), peak RSS {results[mode]['peak_rss_mib']:.0f} MiB"
            f" (second process {results[mode]['worker_peak_rss_mib']:.0f} MiB)",
            flush=True,
        )
    traced = run_child("tracemalloc", count, key)
    results["export"]["tracemalloc_peak_mib"] = round(traced["tracemalloc_peak_mib"], 2)
    print(f"verify export: tracemalloc peak of Python allocations {traced['tracemalloc_peak_mib']:.1f} MiB")
    export_result = results["export"]
    targets = {"seconds": TARGET_SECONDS, "peak_mib": TARGET_MIB}
    peak = export_result["peak_rss_mib"] + export_result["worker_peak_rss_mib"]
    meets = export_result["seconds_median"] <= TARGET_SECONDS and peak <= TARGET_MIB
    if count == 1_000_000:
        print(
            f"targets (1,000,000 entries: <= {TARGET_SECONDS} s, <= {TARGET_MIB} MB): {'MET' if meets else 'NOT MET'}"
        )
    path = write_result(
        "ledger_verify" if count == 1_000_000 else f"ledger_verify_{count}",
        {
            "benchmark": "ledger_verify",
            "command": "python bench/ledger_verify.py" + ("" if count == 1_000_000 else f" --entries {count}"),
            "machine": machine,
            "ledger": {k: v for k, v in meta.items() if k != "verifier_key"},
            "interpreter_and_imports_rss_mib": round(floor, 1),
            "targets_export_1m": targets,
            "meets_targets": meets if count == 1_000_000 else None,
            "results": results,
        },
    )
    print(f"wrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
