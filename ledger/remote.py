"""Appends from an event loop through a writer process of their own.

In one process, the ledger's writer thread and the event loop share one interpreter
lock. The writer gives the lock up around every SQLite step and must win it back
from a busy loop, and the loop, to hand the outcomes back, waits for the writer in
turn: each batch ends with the loop idle while the writer catches up. Measured over
HTTP (``bench/check_http.py``), the loop sat idle a quarter to a third of the time.

A server can instead start an *append process* (``api/append_process.py``): a child
that opens the same trust and runs its own sequencer. The server's loop writes each
append to the child's standard input and reads the outcome from its standard output,
in the same poll as its sockets, so neither side ever waits for the other's lock.
The child is one more process appending to the same ledger, which the sequencer
already allows (the writers' lock, and each batch checking the head it extends).

Wire format, both ways: frames of a 4-byte little-endian length and a pickle. The
pipes join a server and the child it started from its own code, nothing else.

* server → child: ``(uid, kind, actor, at, canonical payload bytes)``;
* child → server: ``(0, "ready")`` once, then ``(uid, (seq, at, prev, body, leaf_hash))``
  for an appended entry or ``(uid, error class name, message)`` for a failed one.

An entry's outcome reaches the server's listeners (its check index) before the
awaiting caller resumes, as the sequencer's own commits do. If the child stops, the
appends waiting on it fail as unavailable (their outcome is unknown: the entry may
have been committed just before) and later ones fall back to the server's own
sequencer, so the server keeps answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import struct
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, Any

from ledger import errors
from ledger.entry import CanonicalPayload, LedgerEntry
from ledger.sequencer import AppendSpec, Done

log = logging.getLogger(__name__)

FRAME = struct.Struct("<I")
READY = (0, "ready")
START_TIMEOUT = 60.0  # seconds for the child to open the trust (it may run migrations' checks)
STOP_TIMEOUT = 30.0  # seconds for the child to finish its queue and sign its last checkpoint

Request = tuple[int, str, str, datetime, bytes]


def frame(message: object) -> bytes:
    """One frame: the pickle of *message* behind its length."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def _error(name: str, message: str) -> BaseException:
    """The child's error as the server raises it: the same domain error class, else a plain one."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.DomainError):
        return cls(message)
    return RuntimeError(f"the append process failed: {name}: {message}")


class _Protocol(asyncio.SubprocessProtocol):
    """The server's end of the pipes: splits the child's output into frames."""

    def __init__(self, owner: AppendProcess) -> None:
        self._owner = owner
        self._buffer = b""

    def pipe_data_received(self, fd: int, data: bytes) -> None:  # noqa: ARG002 - only stdout is a pipe here
        buffer = self._buffer + data if self._buffer else data
        start, size = 0, len(buffer)
        messages = []
        while size - start >= FRAME.size:
            (length,) = FRAME.unpack_from(buffer, start)
            end = start + FRAME.size + length
            if end > size:
                break
            messages.append(pickle.loads(buffer[start + FRAME.size : end]))  # noqa: S301 - our own child's frames
            start = end
        self._buffer = buffer[start:]
        if messages:
            self._owner.received(messages)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:  # noqa: ARG002
        if fd == 1:  # its output is closed, every frame it wrote read: the child is gone
            self._owner.exited()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - exited, reaped, pipes closed
        self._owner.exited()
        self._owner.reaped()


class AppendProcess:
    """The server's handle on its append process (one event loop, one child)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        notify: Callable[[list[LedgerEntry]], None] = lambda _entries: None,
    ) -> None:
        self._command = list(command)
        self._env = env
        self._notify = notify  # the server's ledger listeners (Ledger.notify_listeners)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._waiting: dict[int, tuple[asyncio.Future[LedgerEntry], AppendSpec]] = {}
        self._outbox: list[bytes] = []
        self._last_uid = 0
        self.running = False  # started, ready and not stopped: appends on its loop go to the child

    # -- life --------------------------------------------------------------------------

    async def start(self) -> bool:
        """Start the child and wait until it has opened the trust; whether it is running (else logged)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ready, self._stopped = loop.create_future(), loop.create_future()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Protocol(self), *self._command, stdin=-1, stdout=-1, stderr=None, env=self._env
            )
        except OSError as exc:
            log.warning("the ledger's append process could not start (%s); appending in this process", exc)
            return False
        self._transport = transport
        self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except (TimeoutError, RuntimeError) as exc:
            log.warning("the ledger's append process did not start (%s); appending in this process", exc or "timeout")
            with contextlib.suppress(ProcessLookupError):
                transport.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stopped), 5)
            transport.close()
            return False
        self.running = True
        return True

    def usable(self) -> bool:
        """Whether an append made now, on the running loop, can go to the child."""
        if not self.running:
            return False
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def aclose(self) -> None:
        """Let the child finish what it was sent, sign its last checkpoint and exit."""
        if self._transport is None or self._stopped is None:
            return
        self.running = False
        self._flush()
        if self._stdin is not None:
            self._stdin.close()  # end of input: the child drains its queue, closes its ledger and exits
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the ledger's append process did not stop within %s s; killing it", STOP_TIMEOUT)
            self._transport.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stopped), 5)
        self._transport.close()

    # -- appends -----------------------------------------------------------------------

    def append(self, spec: AppendSpec) -> asyncio.Future[LedgerEntry]:
        """Send *spec* to the child; the future resolves once its entry is durable (or failed)."""
        loop = self._loop
        assert loop is not None  # noqa: S101 - usable() was asked first
        assert spec.payload_bytes is not None  # noqa: S101 - AppendSpec made them from the payload
        self._last_uid += 1
        uid = self._last_uid
        future: asyncio.Future[LedgerEntry] = loop.create_future()
        self._waiting[uid] = (future, spec)
        if not self._outbox:
            loop.call_soon(self._flush)  # one write for everything appended in this turn of the loop
        self._outbox.append(frame((uid, spec.kind, spec.actor, spec.at, spec.payload_bytes)))
        return future

    def _flush(self) -> None:
        if self._outbox and self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(b"".join(self._outbox))
        self._outbox.clear()

    def received(self, messages: list[Any]) -> None:
        """Outcomes from the child: listeners see the entries, then the callers resume."""
        entries: list[LedgerEntry] = []
        settled: list[tuple[asyncio.Future[LedgerEntry], LedgerEntry | BaseException]] = []
        for message in messages:
            if message == READY:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                continue
            uid, *outcome = message
            future, spec = self._waiting.pop(uid)
            if len(outcome) == 1:
                seq, at, prev, body, leaf = outcome[0]
                entry = LedgerEntry(seq, spec.kind, at, spec.actor, prev, spec.payload or {}, body, leaf)
                entries.append(entry)
                settled.append((future, entry))
            else:
                settled.append((future, _error(*outcome)))
        if entries:
            self._notify(entries)
        for future, outcome in settled:
            if future.done():  # the awaiting task was cancelled: the entry is on the ledger all the same
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def exited(self) -> None:
        """The child is gone: fail what waits on it; later appends stay in this process."""
        was_running = self.running
        self.running = False
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("it exited"))
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                msg = "the ledger's append process stopped before confirming this entry: try again"
                future.set_exception(errors.UnavailableError(msg))
        if was_running:
            log.warning("the ledger's append process stopped; appending in this process from now on")

    def reaped(self) -> None:
        """The child's exit status is collected: it is gone for good."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


def serve_appends(append: Callable[[AppendSpec, Done], None], source: IO[bytes], sink: int) -> None:
    """The child's side: append each request read from *source* until it ends, answer on *sink*.

    *append* queues a spec on this process's sequencer (``Ledger.append_nowait``) and
    calls back with its outcome on the writer's thread, which writes the answer.
    """
    lock = threading.Lock()

    def answer(message: object) -> None:
        data = memoryview(frame(message))
        with lock:
            while data:
                data = data[os.write(sink, data) :]

    answer(READY)
    while True:
        head = source.read(FRAME.size)
        if len(head) < FRAME.size:
            return  # the server closed our input: it is stopping
        (length,) = FRAME.unpack(head)
        uid, kind, actor, at, body = pickle.loads(source.read(length))  # noqa: S301 - our own server's frames

        def done(outcome: list[LedgerEntry] | BaseException, uid: int = uid) -> None:
            if isinstance(outcome, BaseException):
                answer((uid, type(outcome).__name__, str(outcome)))
            else:
                entry = outcome[0]
                answer((uid, (entry.seq, entry.at, entry.prev, entry.body, entry.leaf_hash)))

        try:
            spec = AppendSpec(kind, actor, at, payload=CanonicalPayload.restore(json.loads(body), body))
            append(spec, done)
        except Exception as exc:  # noqa: BLE001 - refused before queueing (closed ledger, bad kind): say so
            done(exc)
