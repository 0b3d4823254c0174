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

Wire format (:func:`encode_request`, :func:`encode_reply` and their decoders): frames
of a 4-byte little-endian length and fixed-layout fields, packed with :mod:`struct`
(pickle cost the loop ~25 µs a check, mostly for the timestamp).

* server → child: uid, the instant in microseconds since 1970 (UTC), kind, actor, and
  the payload's canonical bytes;
* child → server: a "ready" frame once, then per uid either the entry (seq, ``at``,
  ``prev``, leaf hash, body) or the error (class name, message).

An entry's outcome reaches the server's listeners (its check index) before the
awaiting caller resumes, as the sequencer's own commits do. If the child stops, the
appends waiting on it fail as unavailable (their outcome is unknown: the entry may
have been committed just before) and later ones fall back to the server's own
sequencer, so the server keeps answering, and the child is started again (after 1 s, then
waiting longer after each failed start, up to a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, TypeVar

from ledger import errors
from ledger.entry import CanonicalPayload, LedgerEntry
from ledger.sequencer import AppendSpec, Done

log = logging.getLogger(__name__)

FRAME = struct.Struct("<I")  # a frame's length, then the frame
MAX_FRAME = 64 << 20  # far above the largest answer (a 10,000-subject check's entry, ~1 MB), far below text
_REQUEST = struct.Struct("<QqHHI")  # uid, at (µs since 1970, UTC), lengths of kind, actor, payload
_REPLY = struct.Struct("<QB")  # uid, outcome
_ENTRY = struct.Struct("<QH")  # seq, length of at; then at, prev (32), leaf hash (32), body
_ERROR = struct.Struct("<H")  # length of the error's class name; then the name and the message
READY, ENTRY, ERROR = 0, 1, 2
HASH = 32
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
START_TIMEOUT = 60.0  # seconds for the child to open the trust (it may run migrations' checks)
STOP_TIMEOUT = 30.0  # seconds for the child to finish its queue and sign its last checkpoint
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # before each start after it stopped; then every minute

T = TypeVar("T")
Outcome = tuple[int, str, bytes, bytes, bytes] | tuple[str, str]  # an entry's fields, or an error's


def encode_request(uid: int, spec: AppendSpec) -> bytes:
    """The frame sending *spec* (with its canonical payload) as request *uid*."""
    kind, actor, body = spec.kind.encode(), spec.actor.encode(), spec.payload_bytes or b""
    at = (spec.at - EPOCH) // MICROSECOND
    head = _REQUEST.pack(uid, at, len(kind), len(actor), len(body))
    return FRAME.pack(len(head) + len(kind) + len(actor) + len(body)) + head + kind + actor + body


def decode_request(data: bytes) -> tuple[int, AppendSpec]:
    """Request *uid* and its spec, from a frame's contents (raises ValidationError for a bad kind or actor)."""
    uid, at, kind_len, actor_len, body_len = _REQUEST.unpack_from(data)
    start = _REQUEST.size
    kind = data[start : start + kind_len].decode()
    actor = data[start + kind_len : start + kind_len + actor_len].decode()
    body = data[start + kind_len + actor_len : start + kind_len + actor_len + body_len]
    payload = CanonicalPayload.restore(json.loads(body), body)
    return uid, AppendSpec(kind, actor, EPOCH + at * MICROSECOND, payload=payload)


def encode_reply(uid: int, outcome: LedgerEntry | BaseException | None) -> bytes:
    """The frame answering request *uid*: its entry, its error, or (``None``, uid 0) "ready"."""
    if outcome is None:
        data = _REPLY.pack(uid, READY)
    elif isinstance(outcome, BaseException):
        name = type(outcome).__name__.encode()
        data = _REPLY.pack(uid, ERROR) + _ERROR.pack(len(name)) + name + str(outcome).encode()
    else:
        at = outcome.at.encode()
        head = _REPLY.pack(uid, ENTRY) + _ENTRY.pack(outcome.seq, len(at))
        data = head + at + outcome.prev + outcome.leaf_hash + outcome.body
    return FRAME.pack(len(data)) + data


def decode_reply(data: bytes) -> tuple[int, Outcome | None]:
    """``(uid, outcome)`` from a frame's contents: the entry's fields, the error's, or ``None`` for "ready"."""
    uid, status = _REPLY.unpack_from(data)
    start = _REPLY.size
    if status == READY:
        return uid, None
    if status == ERROR:
        (name_len,) = _ERROR.unpack_from(data, start)
        start += _ERROR.size
        return uid, (data[start : start + name_len].decode(), data[start + name_len :].decode())
    seq, at_len = _ENTRY.unpack_from(data, start)
    start += _ENTRY.size
    at = data[start : start + at_len].decode()
    start += at_len
    prev, leaf, body = data[start : start + HASH], data[start + HASH : start + 2 * HASH], data[start + 2 * HASH :]
    return uid, (seq, at, prev, leaf, body)


def settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    """Give *future* its outcome, unless its awaiting task was cancelled (the entry stands all the same)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _error(name: str, message: str) -> BaseException:
    """The child's error as the server raises it: the same domain error class, else a plain one."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.DomainError):
        return cls(message)
    return RuntimeError(f"the append process failed: {name}: {message}")


class _Protocol(asyncio.SubprocessProtocol):
    """The server's end of the pipes: splits the child's output into frames."""

    def __init__(self, owner: AppendProcess, generation: int) -> None:
        self._owner = owner
        self._generation = generation  # which start of the child this is (it may be started again)
        self._buffer = b""

    def pipe_data_received(self, fd: int, data: bytes) -> None:  # noqa: ARG002 - only stdout is a pipe here
        buffer = self._buffer + data if self._buffer else data
        start, size = 0, len(buffer)
        messages: list[tuple[int, Outcome | None]] = []
        while size - start >= FRAME.size:
            (length,) = FRAME.unpack_from(buffer, start)
            end = start + FRAME.size + length
            if length > MAX_FRAME:  # text read as a length, say: never wait for the rest
                self._garbled(messages)
                return
            if end > size:
                break
            try:
                messages.append(decode_reply(buffer[start + FRAME.size : end]))
            except (struct.error, UnicodeDecodeError, ValueError):
                self._garbled(messages)
                return
            start = end
        self._buffer = buffer[start:]
        if messages:
            self._owner.received(messages)

    def _garbled(self, messages: list[tuple[int, Outcome | None]]) -> None:
        """Not our frames: settle what was read before them, then stop the child (nothing after can be trusted)."""
        log.error("the ledger's append process wrote something that is not an answer; stopping it")
        self._owner.received(messages)
        self._owner.broken(self._generation)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:  # noqa: ARG002
        if fd == 1:  # its output is closed, every frame it wrote read: the child is gone
            self._owner.exited(self._generation)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - exited, reaped, pipes closed
        self._owner.exited(self._generation)
        self._owner.reaped(self._generation)


class AppendProcess:
    """The server's handle on its append process (one event loop, one child)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        notify: Callable[[list[LedgerEntry]], None] = lambda _entries: None,
        restart_delays: Sequence[float] = RESTART_DELAYS,
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
        self._generation = 0  # starts so far
        self._delays = tuple(restart_delays)
        self._tries = 0  # starts again since it last ran
        self._closing = False
        self._restart: asyncio.TimerHandle | None = None
        self._restarting: asyncio.Task[None] | None = None
        self.running = False  # started, ready and not stopped: appends on its loop go to the child

    # -- life --------------------------------------------------------------------------

    async def start(self) -> bool:
        """Start the child and wait until it has opened the trust; whether it is running (else logged)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._generation += 1
        generation = self._generation
        self._ready, self._stopped = loop.create_future(), loop.create_future()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Protocol(self, generation), *self._command, stdin=-1, stdout=-1, stderr=None, env=self._env
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
            await self._kill()
            transport.close()
            return False
        self._tries = 0
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
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
        if self._restarting is not None:
            await self._restarting
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
            await self._kill()
        self._transport.close()

    async def _kill(self) -> None:
        """Kill the child (if still there) and give it up to 5 s to be reaped."""
        if self._transport is not None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()
        if self._stopped is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stopped), 5)

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
        self._outbox.append(encode_request(uid, spec))
        return future

    def _flush(self) -> None:
        if self._outbox and self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(b"".join(self._outbox))
        self._outbox.clear()

    def received(self, messages: list[tuple[int, Outcome | None]]) -> None:
        """Outcomes from the child: listeners see the entries, then the callers resume."""
        entries: list[LedgerEntry] = []
        settled: list[tuple[asyncio.Future[LedgerEntry], LedgerEntry | BaseException]] = []
        for uid, outcome in messages:
            if outcome is None:  # "ready"
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                continue
            waiting = self._waiting.pop(uid, None)
            if waiting is None:  # not a request of ours (never expected): nobody to tell
                log.error("the ledger's append process answered request %s, which nobody awaits", uid)
                continue
            future, spec = waiting
            if len(outcome) == 2:  # noqa: PLR2004 - an error: (class name, message)
                settled.append((future, _error(*outcome)))
            else:
                seq, at, prev, leaf, body = outcome
                entry = LedgerEntry(seq, spec.kind, at, spec.actor, prev, spec.payload or {}, body, leaf)
                entries.append(entry)
                settled.append((future, entry))
        if entries:
            self._notify(entries)
        for future, result in settled:
            settle(future, result)

    def broken(self, generation: int) -> None:
        """The child's output cannot be read: fail what waits on it and stop it."""
        if generation != self._generation:
            return
        self.exited(generation)
        if self._transport is not None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    def exited(self, generation: int) -> None:
        """The child is gone: fail what waits on it; append in this process until it is started again."""
        if generation != self._generation:  # an earlier child's last word
            return
        was_running = self.running
        self.running = False
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("it exited"))
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                msg = "the ledger's append process stopped before confirming this entry: try again"
                future.set_exception(errors.UnavailableError(msg))
        if was_running and not self._closing:
            log.warning("the ledger's append process stopped; appending in this process until it is started again")
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        assert self._loop is not None  # noqa: S101 - it ran on this loop
        delay = self._delays[min(self._tries, len(self._delays) - 1)]
        self._tries += 1
        self._restart = self._loop.call_later(delay, self._begin_restart)

    def _begin_restart(self) -> None:
        self._restart = None
        if not self._closing and self._loop is not None:
            self._restarting = self._loop.create_task(self._start_again())

    async def _start_again(self) -> None:
        """Start a new child once the last one is reaped; if it fails, try again later."""
        if self._stopped is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stopped), 5)
        if self._transport is not None:
            self._transport.close()
        if self._closing:
            return
        try:
            started = await self.start()
        except Exception:  # never let the restarts stop: the server appends itself meanwhile
            log.exception("the ledger's append process could not be started again")
            started = False
        if started:
            log.warning("the ledger's append process was started again; it appends this server's checks")
        elif not self._closing:
            self._schedule_restart()
        self._restarting = None

    def reaped(self, generation: int) -> None:
        """The child's exit status is collected: it is gone for good."""
        if generation != self._generation:
            return
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


def serve_appends(append: Callable[[AppendSpec, Done], None], source: IO[bytes], sink: int) -> None:
    """The child's side: append each request read from *source* until it ends, answer on *sink*.

    *append* queues a spec on this process's sequencer (``Ledger.append_nowait``) and
    calls back with its outcome on the writer's thread, which writes the answer.
    """
    lock = threading.Lock()

    def answer(uid: int, outcome: LedgerEntry | BaseException | None) -> None:
        data = memoryview(encode_reply(uid, outcome))
        with lock:
            while data:
                data = data[os.write(sink, data) :]

    answer(0, None)  # ready
    while True:
        head = source.read(FRAME.size)
        if len(head) < FRAME.size:
            return  # the server closed our input: it is stopping
        (length,) = FRAME.unpack(head)
        data = source.read(length)
        uid = _REPLY.unpack_from(data)[0]  # the uid leads every request too

        def done(outcome: list[LedgerEntry] | BaseException, uid: int = uid) -> None:
            answer(uid, outcome if isinstance(outcome, BaseException) else outcome[0])

        try:
            _, spec = decode_request(data)
            append(spec, done)
        except Exception as exc:  # noqa: BLE001 - refused before queueing (closed ledger, bad kind): say so
            done(exc)
