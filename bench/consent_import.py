"""Bulk import of consents (``datatrust consents import``): consents per second and memory over the run.

Writes a CSV of N consents collected by one partner (default 100,000; every row a
new person, a mix of purposes and categories, some special categories given
explicitly, some with recipients, operations or an end date), creates a trust in a
temporary data directory, and runs the importer exactly as the CLI does: pass 1
validates every row, pass 2 appends them in chunks of 2,000 entries. We report
the rate over both passes, each pass separately, the CPU time per row (less
sensitive than wall time to other work on a shared machine), the resident memory
sampled through the run (flat memory: the last tenth of the rows costs no more
memory than the first), a rerun of the same file (every row skipped), and a full
verification of the resulting ledger.

Two runs: as ``datatrust consents import`` runs (the trust opened with
``Instance.open(check_index=False)``: no in-memory check index), and the same
importer in a process that keeps the check engine's index (as a server does),
which folds every entry and keeps every consent in memory by design. CPU time
counts the validation worker processes too (a file this size is checked by two).

    .venv/bin/python bench/consent_import.py                 # 100,000 rows on SQLite
    .venv/bin/python bench/consent_import.py --rows 20000    # quicker
    .venv/bin/python bench/consent_import.py --engine postgresql
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from _common import WORK, machine_info, pg_database, write_result

from api.instance import Instance, initialise
from consent.importer import Importer
from ledger.export import verify_live
from trust.organisations import register_organisation

TARGET_PER_SECOND = 5_000
ORG = "org_riverside_food_bank"
TERMS = [
    ("statistics.aggregate", "service_use;demographics", "aggregate", "false", ""),
    ("research.social", "financial;housing;demographics.household", "", "false", ""),
    ("research.health", "health.mental;demographics.age", "aggregate;pseudonymised", "true", ""),
    ("service_delivery.referral", "contact;housing", "", "false", "org_northside_housing"),
    ("planning;evaluation", "housing;demographics", "aggregate", "false", ""),
]
HEADER = ["consent", "name", "contact", "purposes", "categories", "operations", "recipients", "explicit",
          "valid_from", "valid_until", "wording_version", "wording_hash"]  # fmt: skip


def write_rows(path: Path, rows: int) -> None:
    """A realistic export from a partner's records: one new person a row."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(rows):
            purposes, categories, operations, explicit, recipients = TERMS[n % len(TERMS)]
            writer.writerow([
                f"con_import-{n:07d}", f"Person {n}", f"person{n}@example.org", purposes, categories, operations,
                recipients, explicit, f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00Z",
                "2027-12-31T00:00:00Z" if n % 4 == 0 else "", "food-bank-2025-09", f"{n % 7:x}" * 64,
            ])  # fmt: skip


def rss_mib() -> float:
    """Resident memory of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Records resident memory against progress while the import runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append((self.done, rss_mib()))

    def progress(self, done: int, _total: int) -> None:
        """The importer's progress callback."""
        self.done = done

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def database(engine: str) -> Iterator[str | None]:
    """``None`` (SQLite inside the data directory) or a scratch PostgreSQL URL."""
    if engine == "sqlite":
        yield None
    else:
        with pg_database("consent_import") as url:
            yield url


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the validation workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run(rows: int, engine: str, *, check_index: bool) -> dict[str, Any]:
    """Import *rows* consents into a fresh trust; return the figures."""
    WORK.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="consent-import-", dir=WORK))
    try:
        source = scratch / "consents.csv"
        write_rows(source, rows)
        with database(engine) as url:
            trust = initialise(scratch / "trust", name="Bench Trust", mission="Benchmarks.", database_url=url)
            try:
                register_organisation(
                    trust.ledger, org_id=ORG, name="Riverside Food Bank", kind="charity", actor="trust",
                    now=datetime.now(UTC),
                )  # fmt: skip
            finally:
                trust.close()
            trust = Instance.open(scratch / "trust", database_url=url, check_index=check_index)  # as the CLI does
            try:
                return {"engine": engine, "check_index": check_index} | _measure(trust, source, rows)
            finally:
                trust.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(trust: Any, source: Path, rows: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    rss_start = rss_mib()
    codes_path = source.with_name("codes.csv")
    with (
        codes_path.open("w", encoding="utf-8") as codes,
        Importer(trust.ledger, trust.vault, organisation=ORG, actor="trust", now=lambda: datetime.now(UTC)) as importer,
    ):
        with Sampler() as validating:
            cpu_started, started = cpu_seconds(), time.perf_counter()
            report = importer.validate(source, "csv", progress=validating.progress)
            cpu_validated, validated = cpu_seconds(), time.perf_counter()
        assert not report.errors, report.errors[:3]
        with Sampler() as importing:
            report = importer.import_rows(codes=codes, progress=importing.progress)
            cpu_finished, finished = cpu_seconds(), time.perf_counter()
    assert report.imported == rows, report
    codes_bytes = codes_path.stat().st_size
    with Importer(trust.ledger, trust.vault, organisation=ORG, actor="trust", now=lambda: datetime.now(UTC)) as again:
        rerun_started = time.perf_counter()
        rerun = again.run(source, "csv", codes=io.StringIO())
        rerun_seconds = time.perf_counter() - rerun_started
    assert (rerun.imported, rerun.skipped) == (0, rows), rerun
    trust.ledger.sign_checkpoint()
    with trust.db.engine.connect() as conn:
        verified = verify_live(conn, [trust.ledger.signer.verifier], origin=trust.origin)
    total = finished - started
    memory = importing.samples or [(rows, rss_mib())]
    tenth = [m for done, m in memory if done <= rows // 10] or [memory[0][1]]
    last = [m for done, m in memory if done >= rows * 9 // 10] or [memory[-1][1]]
    return {
        "rows": rows,
        "consents_per_s": round(rows / total),
        "seconds": {"total": round(total, 2), "validate": round(validated - started, 2),
                    "append": round(finished - validated, 2), "rerun_all_skipped": round(rerun_seconds, 2)},
        "cpu_us_per_row": {"validate": round((cpu_validated - cpu_started) / rows * 1e6),
                           "append": round((cpu_finished - cpu_validated) / rows * 1e6)},
        "per_pass_rows_per_s": {"validate": round(rows / (validated - started)),
                                "append": round(rows / (finished - validated))},
        "memory_mib": {"before": round(rss_start, 1), "max_first_tenth": round(max(tenth), 1),
                       "max_last_tenth": round(max(last), 1),
                       "peak": round(max(m for _d, m in [*validating.samples, *memory]), 1)},
        "memory_samples": [(d, round(m, 1)) for d, m in memory[:: max(1, len(memory) // 20)]],
        "access_codes_bytes": codes_bytes,
        "verified_entries": verified.entries,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> None:
    """Run and record."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    runs = [run(args.rows, args.engine, check_index=False), run(args.rows, args.engine, check_index=True)]
    result = {
        "benchmark": "consent_import",
        "command": f"python bench/consent_import.py --rows {args.rows} --engine {args.engine}",
        "machine": machine_info(),
        "target_consents_per_s": TARGET_PER_SECOND,
        "notes": "check_index=false: as `datatrust consents import` runs (Instance.open(check_index=False)); "
        "check_index=true: the same importer in a process whose check engine index folds every entry (a server); "
        "CPU includes the two validation worker processes",
        "runs": runs,
    }
    path = write_result("consent_import" if args.engine == "sqlite" else f"consent_import_{args.engine}", result)
    for figures in runs:
        _say(figures, args.engine)
    print(f"wrote {path}")


def _say(figures: dict[str, Any], engine: str) -> None:
    print(
        f"check index {'on ' if figures['check_index'] else 'off'}: {figures['rows']:,} consents on {engine} in {figures['seconds']['total']} s: "
        f"{figures['consents_per_s']:,}/s (validate {figures['per_pass_rows_per_s']['validate']:,}/s, "
        f"append {figures['per_pass_rows_per_s']['append']:,}/s); memory {figures['memory_mib']['max_first_tenth']} "
        f"MiB in the first tenth, {figures['memory_mib']['max_last_tenth']} MiB in the last; "
        f"rerun {figures['seconds']['rerun_all_skipped']} s; {figures['verified_entries']:,} entries verified; "
        f"load {figures['load_average_before']} -> {figures['load_average_after']}"
    )


if __name__ == "__main__":
    main()
