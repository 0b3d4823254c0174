"""Fault tests' helpers: a trust to serve, a real ``datatrust serve`` subprocess, a load driver, the CLI.

The trust is :func:`~tests.trust.rules_story.baseline` (org_a's approved health research over twelve
consenting people) appended to a freshly initialised trust a day in the past, so that org_a's partner
token may both record consents (``consents:write``) and ask checks that are permitted (``check``).
Every request the load driver sends goes to 127.0.0.1, and every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.instance import initialise
from ledger.db import DATABASE_URL_ENV
from tests.factories import bearer, partner_principal
from tests.trust.rules_story import BASELINE_CHECK, baseline, ledger_sink

PROBLEM_JSON = "application/problem+json"
CONSENT: dict[str, Any] = {
    "person": {"name": "Amira Khan", "contact": "amira@example.org"},
    "purposes": ["research"],
    "categories": ["housing"],
    "wording_version": "v1",
    "wording_text": "I agree that the trust may use my housing information for research.",
}
CHECK = BASELINE_CHECK
SCOPES = ["check", "consents:write"]


def datatrust_command() -> list[str]:
    """The ``datatrust`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("datatrust")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from api.cli import main; main()"]


def environment(database_url: str | None) -> dict[str, str]:
    """The environment for a server or CLI run: PostgreSQL when *database_url* is given, else SQLite."""
    env = dict(os.environ)
    env.pop(DATABASE_URL_ENV, None)
    if database_url is not None:
        env[DATABASE_URL_ENV] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def prepare_trust(data_dir: Path, *, database_url: str | None = None) -> dict[str, str]:
    """Initialise a trust with the baseline story; return org_a's bearer header (check, consents:write)."""
    instance = initialise(
        data_dir, name="Fault Trust", mission="Testing.", clock=lambda: datetime.now(UTC), database_url=database_url
    )
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        baseline(start=start, sink=ledger_sink(instance.ledger), configure=False)
        instance.ledger.sign_checkpoint()
        return bearer(instance, partner_principal("org_a", SCOPES), ttl_seconds=3600)
    finally:
        instance.close()


def child_pids(pid: int, *, running: bytes = b"") -> list[int]:
    """The process ids of *pid*'s children (Linux), only those whose command line contains *running* if given."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    children = [int(child) for task in tasks for child in (task / "children").read_text().split()]
    return [child for child in children if running in Path(f"/proc/{child}/cmdline").read_bytes()]


def spawned_workers(pid: int) -> list[int]:
    """The process ids of *pid*'s children started by multiprocessing's spawn (uvicorn's workers), not its helpers."""
    return child_pids(pid, running=b"spawn_main")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``datatrust serve`` in a subprocess on 127.0.0.1; its output goes to a log file."""

    def __init__(self, data_dir: Path, log: Path, *, database_url: str | None = None, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.log = log
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> Server:
        """Start the server and wait until it answers."""
        command = [
            *datatrust_command(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(["--workers", str(self.workers)] if self.workers != 1 else []),
        ]
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=environment(self.database_url)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"the server exited with {self.process.returncode}:\n{self.output()}"
                raise AssertionError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/v1/ledger/verifier-key", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        msg = f"the server did not answer within {timeout} s:\n{self.output()}"
        raise AssertionError(msg)

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> int | None:
        """SIGKILL the server (no clean-up at all) and return its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=60)

    def stop(self) -> int | None:
        """Stop the server as Ctrl-C would (SIGINT), killing it if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=60)

    def worker_pids(self) -> list[int]:
        """The process ids of the server's worker processes (with ``--workers``; not multiprocessing's helpers)."""
        assert self.process is not None
        return spawned_workers(self.process.pid)

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass(frozen=True, slots=True)
class Ack:
    """A write the server acknowledged: the entry's seq, kind and leaf hash as the answer gave them."""

    seq: int
    kind: str
    leaf_hash: str


def consent_ack(body: dict[str, Any]) -> Ack:
    """The acknowledgement in a ``POST /v1/consents`` answer (its receipt carries the entry)."""
    receipt = body["receipt"]
    assert receipt["entry"]["seq"] == body["seq"]
    return Ack(body["seq"], receipt["entry"]["kind"], receipt["leaf_hash"])


def check_ack(body: dict[str, Any]) -> Ack:
    """The acknowledgement in a ``POST /v1/checks`` answer."""
    assert body["entry"]["seq"] == body["decision_id"]
    return Ack(body["decision_id"], "check.decided", body["entry"]["leaf_hash"])


@dataclass
class Load:
    """Threads sending consent writes and checks until stopped, a count is reached, or the time is up.

    Every 2xx answer is logged as an :class:`Ack`; every other answer (status, content type, headers,
    body) and every transport error is logged too.
    """

    base_url: str
    headers: dict[str, str]
    threads: int = 6
    per_thread: int = 400
    seconds: float = 120.0
    timeout: float = 30.0
    stop_on_transport_error: bool = True
    acks: list[Ack] = field(default_factory=list)
    refusals: list[httpx.Response] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        """Start the threads (even ones write consents, odd ones ask checks)."""
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), name=f"fault-load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + self.seconds
        path, body, ack = ("/v1/consents", CONSENT, consent_ack) if n % 2 == 0 else ("/v1/checks", CHECK, check_ack)
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout) as client:
            for _ in range(self.per_thread):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    response = client.post(path, json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.transport_errors.append(f"{type(exc).__name__}: {exc}")
                    if self.stop_on_transport_error:
                        return
                    time.sleep(0.05)
                    continue
                with self._lock:
                    if response.is_success:
                        self.acks.append(ack(response.json()))
                    else:
                        self.refusals.append(response)

    def wait_for(self, *, acks: int = 0, refusals: int = 0, timeout: float = 120.0) -> None:
        """Wait until at least *acks* acknowledgements and *refusals* refusals were logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.acks) >= acks and len(self.refusals) >= refusals:
                    return
            if not any(w.is_alive() for w in self._workers):
                break
            time.sleep(0.02)
        msg = (
            f"waited for {acks} acknowledgements and {refusals} refusals, got {len(self.acks)} and "
            f"{len(self.refusals)} (transport errors: {self.transport_errors[:3]})"
        )
        raise AssertionError(msg)

    def finish(self, *, timeout: float = 120.0) -> None:
        """Stop the threads and wait for them."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=timeout)
        assert not any(w.is_alive() for w in self._workers), "a load thread did not stop"

    def snapshot(self) -> tuple[list[Ack], list[httpx.Response]]:
        """Copies of the acknowledgements and refusals logged so far."""
        with self._lock:
            return list(self.acks), list(self.refusals)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start *server*; kill it whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.kill()


def cli(data_dir: Path, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``datatrust ledger ARGS --data-dir DATA_DIR`` and return what it did."""
    return subprocess.run(
        [*datatrust_command(), "ledger", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=environment(database_url),
        timeout=300,
        check=False,
    )


def ledger_entries(base_url: str) -> dict[int, Ack]:
    """Every entry the server serves, as ``seq -> Ack`` (read page by page)."""
    found: dict[int, Ack] = {}
    start = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while True:
            response = client.get("/v1/ledger/entries", params={"start": start, "end": start + 1000})
            assert response.status_code == 200, response.text
            page = response.json()["entries"]
            for item in page:
                entry = item["entry"]
                found[entry["seq"]] = Ack(entry["seq"], entry["kind"], item["leaf_hash"])
            if len(page) < 1000:
                return found
            start += len(page)
