"""Shared helpers of the benchmarks: machine facts, scratch databases, payloads, result files.

Not a test module and not part of the package: the scripts beside it import it
as ``_common`` (``python bench/NAME.py`` puts ``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from ledger.checkpoint import Checkpoint
from ledger.entry import build_entry, format_at
from ledger.export import FORMAT as EXPORT_FORMAT
from ledger.keys import Signer
from ledger.merkle import CompactRange
from migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"  # git-ignored scratch space on the same disk as a real data directory
PG_URL = os.environ.get("DATATRUST_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ORIGIN = "bench.datatrust.example/ledger"


def pg_dsn(database: str | None = None) -> str:
    """The libpq DSN of the benchmark server (optionally of another database on it)."""
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


def pg_server_version() -> str | None:
    """The PostgreSQL server version, or None when no server answers."""
    try:
        with psycopg.connect(pg_dsn(), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0])


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run([git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.decode().strip() or None


def _filesystem(path: Path) -> str:
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} on {parts[0]}"
    return kind


def machine_info() -> dict[str, Any]:
    """Facts about the machine and software a figure was measured on."""
    WORK.mkdir(parents=True, exist_ok=True)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql_server": pg_server_version(),
        "filesystem": _filesystem(WORK),
        "git_commit": _git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg_1_5_15": list(os.getloadavg()),  # other work on the machine while measuring
    }


def fsync_probe(samples: int = 200) -> dict[str, float]:
    """Latency of ``fdatasync`` after a 4 KiB write in the benchmark's scratch directory (the disk's floor)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "fsync-probe.bin"
    took: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(samples):
            os.write(fd, b"\0" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    took.sort()
    return {"p50_ms": round(percentile(took, 0.5) * 1000, 3), "p90_ms": round(percentile(took, 0.9) * 1000, 3)}


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process in MiB (Linux ``/proc``); 0 once it has gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``); 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14 and 15)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], *, timeout: float = 60.0) -> None:
    """Return once something accepts connections on 127.0.0.1:*port*; raise if *proc* exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if proc.poll() is not None:
            msg = f"the process listening on port {port} exited with {proc.returncode}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    msg = f"nothing listened on port {port} within {timeout:.0f} s"
    raise RuntimeError(msg)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


@contextlib.contextmanager
def sqlite_database(label: str) -> Iterator[str]:
    """A migrated SQLite file in a temporary data directory (removed afterwards); yields its URL."""
    WORK.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=WORK))
    try:
        url = f"sqlite:///{directory / 'datatrust.db'}"
        upgrade(url)
        yield url
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def pg_database(label: str) -> Iterator[str]:
    """A migrated scratch PostgreSQL database (dropped afterwards); yields its SQLAlchemy URL."""
    name = f"dt_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = pg_dsn(name).replace("postgresql://", "postgresql+psycopg://")
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ref(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(16)


def consent_payload(number: int) -> dict[str, Any]:
    """A realistic ``consent.granted`` payload (opaque references only, no personal data)."""
    return {
        "consent": _ref("con_"),
        "subject": _ref("sub_"),
        "purposes": ["research.health"],
        "data_categories": ["health.mental", "demographics.age"] if number % 3 else ["education"],
        "starts_at": "2026-11-26T09:00:00.000000Z",
        "ends_at": None if number % 4 else "2028-11-26T09:00:00.000000Z",
        "collected_by": "org_northside_food_bank",
    }


def check_payload(number: int) -> dict[str, Any]:
    """A realistic ``check.decided`` payload."""
    return {
        "request": "req_" + f"{number % 97:06d}",
        "decision": "permit" if number % 5 else "deny",
        "purpose": "research.health",
        "operation": "aggregate",
        "permitted": 118 + number % 7,
        "excluded": number % 7,
    }


def payload_for(number: int) -> tuple[str, dict[str, Any]]:
    """Alternate consent and check entries, as a busy trust writes them."""
    if number % 2:
        return "check.decided", check_payload(number)
    return "consent.granted", consent_payload(number)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


# -- a synthetic ledger, built with the ledger's own functions (no database) ------------------------

CONSENT_TEMPLATE = (
    b'{"consent":"con_%s","data_categories":["health.mental"],"purposes":["research.health"],"subject":"sub_%s"}'
)
CHECK_TEMPLATE = b'{"decision":"%s","operation":"aggregate","permitted":%d,"request":"req_%s"}'


def synth_payload(seq: int) -> tuple[str, bytes]:
    """Canonical payload bytes of a realistic entry (alternating consents and check decisions)."""
    token = hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=8).hexdigest().encode()
    if seq % 2:
        decision = b"deny" if seq % 7 == 0 else b"permit"
        return "check.decided", CHECK_TEMPLATE % (decision, 100 + seq % 50, token[:8])
    return "consent.granted", CONSENT_TEMPLATE % (token, token[::-1])


@dataclass
class SynthChunk:
    """Rows of one stretch of a synthetic ledger, ending in a signed checkpoint."""

    entries: list[tuple[int, str, str, str, bytes, bytes]]  # seq, kind, at, actor, leaf hash, body
    nodes: list[tuple[int, int, bytes]]  # level, index, hash
    checkpoint: tuple[int, bytes, str, str]  # size, root, note, signed_at


def synth_ledger(count: int, *, signer: Signer, checkpoint_every: int = 10_000) -> Iterator[SynthChunk]:
    """Build *count* entries with :func:`ledger.entry.build_entry` and a checkpoint every *checkpoint_every*."""
    tree = CompactRange()
    prev = bytes(32)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    actors = ("org_northside_food_bank", "org_city_council", "org_uni_health_lab")
    seq = 0
    while seq < count:
        end = min(count, seq + checkpoint_every)
        entries: list[tuple[int, str, str, str, bytes, bytes]] = []
        nodes: list[tuple[int, int, bytes]] = []

        def on_node(level: int, idx: int, value: bytes, nodes: list[tuple[int, int, bytes]] = nodes) -> None:
            nodes.append((level, idx, value))

        for n in range(seq, end):
            kind, payload = synth_payload(n)
            at = format_at(start + timedelta(milliseconds=n * 7))
            actor = actors[n % 3]
            body, leaf = build_entry(seq=n, kind=kind, at=at, actor=actor, prev=prev, payload_bytes=payload)
            entries.append((n, kind, at, actor, leaf, body))
            tree.append(leaf, on_node)
            prev = leaf
        root = tree.root()
        note = Checkpoint(ORIGIN, end, root).sign(signer)
        signed_at = format_at(start + timedelta(milliseconds=end * 7))
        yield SynthChunk(entries, nodes, (end, root, note, signed_at))
        seq = end


BENCH_SIGNER_TEXT_FILE = WORK / "bench-signer.key"


def bench_signer() -> Signer:
    """A fixed signing key for the synthetic ledgers (kept in bench/work so cached files stay verifiable)."""
    if BENCH_SIGNER_TEXT_FILE.exists():
        return Signer.load(BENCH_SIGNER_TEXT_FILE)
    signer = Signer.generate("bench.datatrust.example")
    signer.save(BENCH_SIGNER_TEXT_FILE)
    return signer


def synth_paths(count: int) -> tuple[Path, Path]:
    """Where the synthetic ledger of *count* entries is cached: its export file and its SQLite database."""
    return WORK / f"synth-{count}.jsonl", WORK / f"synth-{count}" / "datatrust.db"


def synth_files(count: int, *, with_db: bool, regenerate: bool = False) -> dict[str, Any]:
    """Build (or reuse) the export file and, if asked, the SQLite database of a synthetic ledger; return its facts.

    Entries are written exactly as ``datatrust ledger export`` writes them, and
    inserted into a migrated SQLite database (WAL) in one transaction.
    """
    export, db_path = synth_paths(count)
    meta_path = export.with_suffix(".meta.json")
    if not regenerate and meta_path.exists() and export.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if not with_db or (meta["has_db"] and db_path.exists()):
            return meta
    print(f"building a synthetic ledger of {count:,} entries in {WORK} ...", flush=True)
    signer = bench_signer()
    WORK.mkdir(parents=True, exist_ok=True)
    conn = None
    if with_db:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        upgrade(f"sqlite:///{db_path}")
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    size = 0
    partial = export.with_suffix(".partial")
    with partial.open("wb") as out:
        header = {"format": EXPORT_FORMAT, "origin": ORIGIN, "type": "header"}
        out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        for chunk in synth_ledger(count, signer=signer):
            out.write(b"\n".join(row[5] for row in chunk.entries) + b"\n")
            cp_size, root, note, signed_at = chunk.checkpoint
            out.write(
                json.dumps({"note": note, "size": cp_size, "type": "checkpoint"}, sort_keys=True).encode() + b"\n"
            )
            if conn is not None:
                conn.executemany(
                    "INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) VALUES (?, ?, ?, ?, ?, ?)",
                    chunk.entries,
                )
                conn.executemany("INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (?, ?, ?)", chunk.nodes)
                conn.execute(
                    "INSERT INTO ledger_checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
                    (cp_size, root, note, signed_at),
                )
            size += sum(len(row[5]) for row in chunk.entries)
    partial.replace(export)
    if conn is not None:
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    meta = {
        "entries": count,
        "mean_entry_bytes": round(size / count, 1),
        "file_bytes": export.stat().st_size,
        "checkpoints": -(-count // 10_000),
        "verifier_key": signer.verifier.to_text(),
        "has_db": with_db,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"  built in {meta['build_seconds']} s", flush=True)
    return meta
