"""The check: decide a proposed share, record the decision on the ledger, read and replay it.

``CheckService`` keeps the live :class:`~trust.state.TrustState` for this process.
It is folded from the ledger at start, then kept current two ways: the sequencer
calls it with every batch this process commits (before the appending callers are
released, so a withdrawal binds every later check here at once), and a follower
thread polls the ledger head (``follow_interval``, default 0.2 s) to pick up
entries other processes appended to the same PostgreSQL database. A withdrawal
recorded on one server therefore binds checks on every server within one poll
interval plus one query.

A recorded decision names the prefix of the ledger it was evaluated on
(``as_of``) and the instant (``evaluated_at``); replay folds exactly that prefix
and evaluates again, which must give the identical answer.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ledger import repository
from ledger.entry import CanonicalPayload, LedgerEntry, canonical_payload, format_at
from ledger.errors import NotFoundError
from ledger.models import entries_table
from ledger.service import Ledger
from trust.rules.base import ProposedAction, canonical_reason
from trust.rules.engine import Decision, Engine
from trust.state import INDEXED_KINDS, TrustState

log = logging.getLogger(__name__)
MAX_SUBJECTS = 10_000
FOLD_PAGE = 5000  # entries read per query while folding


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A decision and, unless it was a dry run, the entry that records it."""

    action: ProposedAction
    decision: Decision
    entry: LedgerEntry | None
    decision_bytes: bytes | None = None  # the RFC 8785 bytes of ``decision.to_json()``, when recorded here

    def answer(self) -> bytes:
        """:meth:`to_json` as UTF-8 JSON, built from the recorded bytes of the decision when there are some."""
        if self.entry is None or self.decision_bytes is None:
            return _encode(self.to_json()).encode()
        seq, leaf = self.entry.seq, self.entry.leaf_hash.hex()
        tail = f',"decision_id":{seq},"dry_run":false,"entry":{{"leaf_hash":"{leaf}","seq":{seq}}}}}'
        return self.decision_bytes[:-1] + tail.encode()

    def to_json(self) -> dict[str, Any]:
        """The answer partners rely on (DESIGN.md, "The check")."""
        if self.entry is None:
            body = self.decision.to_json()
        else:  # the recorded payload holds the decision's JSON already: don't build it twice
            body = {key: value for key, value in self.entry.payload.items() if key != "action"}
        body["decision_id"] = self.entry.seq if self.entry else None
        body["entry"] = {"seq": self.entry.seq, "leaf_hash": self.entry.leaf_hash.hex()} if self.entry else None
        body["dry_run"] = self.entry is None
        return body


def _stored_entry(body: bytes, leaf: bytes) -> LedgerEntry:
    """An entry from this database's own stored bytes, parsed without re-canonicalising them.

    Folding trusts the stored bytes (``datatrust ledger verify`` is what checks them): checking
    RFC 8785 form here costs ~150 µs an entry, which made start-up and every replay scale at
    that rate with the length of the ledger.
    """
    obj = json.loads(body)
    prev = bytes.fromhex(obj["prev"])
    return LedgerEntry(obj["seq"], obj["kind"], obj["at"], obj["actor"], prev, obj["payload"], bytes(body), bytes(leaf))


def _fold(conn: Connection, state: TrustState, *, until: int) -> None:
    """Fold indexed entries with ``state.head < seq <= until`` into *state*.

    A short stretch (what another process appended since we last looked) is read by
    sequence number and filtered here: asked by kind, the database would walk its kind
    index through every indexed entry of the ledger to find the few in the stretch.
    """
    after = state.head
    if until - after <= FOLD_PAGE:
        result = conn.execute(
            select(entries_table.c.body, entries_table.c.leaf_hash, entries_table.c.kind)
            .where(entries_table.c.seq > after, entries_table.c.seq <= until)
            .order_by(entries_table.c.seq)
        )
        entries = [_stored_entry(body, leaf) for body, leaf, kind in result if kind in INDEXED_KINDS]
        if entries:
            state.apply_all(entries)
        state.head = max(state.head, until)
        return
    while True:
        result = conn.execute(
            select(entries_table.c.body, entries_table.c.leaf_hash)
            .where(
                entries_table.c.kind.in_(sorted(INDEXED_KINDS)),
                entries_table.c.seq > after,
                entries_table.c.seq <= until,
            )
            .order_by(entries_table.c.seq)
            .limit(FOLD_PAGE)
        )
        entries = [_stored_entry(body, leaf) for body, leaf in result]
        if not entries:
            break
        state.apply_all(entries)
        after = entries[-1].seq
        if len(entries) < FOLD_PAGE:
            break
    state.head = max(state.head, until)


def state_as_of(conn: Connection, seq: int) -> TrustState:
    """A fresh state folded from entries ``0..seq`` (for replay)."""
    state = TrustState()
    _fold(conn, state, until=seq)
    return state


# The projector's statements in each driver's parameter style (SQLite's ``?``, psycopg's ``%s``).
_DECISION_SQL = "INSERT INTO check_decisions (seq, organisation, request, purpose, decision, at) VALUES "
_SUBJECTS_SQL = "INSERT INTO check_subjects (seq, subject, is_permitted) VALUES "
_RECORD_SQL = {
    "qmark": (_DECISION_SQL + "(?, ?, ?, ?, ?, ?)", _SUBJECTS_SQL + "(?, ?, ?)"),
    "pyformat": (_DECISION_SQL + "(%s, %s, %s, %s, %s, %s)", _SUBJECTS_SQL + "(%s, %s, %s)"),
}


def record_projections(cursor: Any, paramstyle: str, entries: list[LedgerEntry]) -> None:
    """Row projector for ``check.decided``: who asked, what was decided, which subjects each decision named.

    It runs for every check, once per ledger writer's batch, on the driver's cursor inside the
    writer's transaction (``ProjectorRegistry.register_rows``): one ``executemany`` per table, no
    statement compilation, no SQLAlchemy execution context. It only writes rows and never refuses,
    so a batch of checks is written by the writer's guarded transaction of its own.
    """
    decisions: list[tuple[Any, ...]] = []
    subjects: list[tuple[Any, ...]] = []
    for entry in entries:
        payload = entry.payload
        action = payload["action"]
        decisions.append(
            (entry.seq, action["organisation"], action["request"], action["purpose"], payload["decision"], entry.at)
        )
        permitted = set(payload["subjects"]["permitted"])
        subjects.extend((entry.seq, subject, subject in permitted) for subject in dict.fromkeys(action["subjects"]))
    if not decisions:
        return
    decision_sql, subjects_sql = _RECORD_SQL[paramstyle]
    cursor.executemany(decision_sql, decisions)
    if subjects:
        cursor.executemany(subjects_sql, subjects)


class CheckService:
    """Decides checks against the live state of this process and records them."""

    def __init__(self, ledger: Ledger, *, follow_interval: float = 0.2) -> None:
        self.ledger = ledger
        self.engine = Engine.standard()
        self.state = TrustState()
        self._stop = threading.Event()
        with ledger.db.engine.connect() as conn:
            self._catch_up(conn)
        ledger.add_listener(self._on_commit)
        self._follower = threading.Thread(
            target=self._follow, args=(follow_interval,), name="check-index-follower", daemon=True
        )
        self._follower.start()

    def close(self) -> None:
        """Stop following the ledger."""
        self._stop.set()
        self._follower.join(timeout=5)

    def _catch_up(self, conn: Connection) -> None:
        with self.state.lock:
            head = repository.head(conn)
            if head is not None and head[0] > self.state.head:
                _fold(conn, self.state, until=head[0])

    def _on_commit(self, entries: list[LedgerEntry]) -> None:
        with self.state.lock:
            if entries[0].seq > self.state.head + 1:
                with self.ledger.db.engine.connect() as conn:
                    _fold(conn, self.state, until=entries[0].seq - 1)
            self.state.apply_all(entries)

    def _follow(self, interval: float) -> None:
        failing = False  # told once when following fails and once when it works again, not every poll
        while not self._stop.wait(interval):
            try:
                with self.ledger.db.engine.connect() as conn:
                    self._catch_up(conn)
            except Exception as exc:  # noqa: BLE001 - keep following; the database may be restarting
                if not failing:
                    log.warning("check index could not follow the ledger (%s); retrying", type(exc).__name__)
                failing = True
                continue
            if failing:
                log.warning("check index follows the ledger again")
            failing = False

    def decide(
        self,
        action: ProposedAction,
        *,
        actor: str,
        now: datetime,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> CheckResult:
        """Evaluate *action*; unless *dry_run*, append ``check.decided`` (durable before returning)."""
        decision = self.engine.decide(self.state, action, at=format_at(at or now))
        if dry_run:
            return CheckResult(action, decision, None)
        payload = {"action": action.to_json(), **decision.to_json()}
        entry = self.ledger.append("check.decided", payload, actor=actor, now=now)
        return CheckResult(action, decision, entry)

    async def decide_recorded(self, action: ProposedAction, *, actor: str, now: datetime) -> CheckResult:
        """:meth:`decide` and record, from an event loop: the loop waits for the commit without blocking.

        The evaluation itself runs on the calling thread (tens of microseconds for a few
        subjects); callers with thousands of subjects should use :meth:`decide` off the loop.
        """
        decision = self.engine.decide(self.state, action, at=format_at(now))
        payload, decision_bytes = _recorded_payload(action, decision)
        entry = await self.ledger.append_async("check.decided", payload, actor=actor, now=now)
        return CheckResult(action, decision, entry, decision_bytes)


def _recorded_payload(action: ProposedAction, decision: Decision) -> tuple[CanonicalPayload, bytes]:
    """The ``check.decided`` payload, canonical, and the canonical bytes of the decision alone (for the answer).

    RFC 8785 writes an object's members in key order, each independently of the others, and
    ``action`` sorts before every key of the decision (``as_of``, ``decision``, …): so the
    payload's bytes are ``{"action":`` + the action's bytes + ``,`` + the decision's bytes
    without their ``{``. ``tests/trust/test_check_answer.py`` holds them to a whole encoding.
    """
    action_json, decision_json = action.to_json(), decision.to_json()
    decision_bytes = _canonical_decision(decision, decision_json)
    body = b'{"action":' + canonical_payload(action_json) + b"," + decision_bytes[1:]
    return CanonicalPayload.restore({"action": action_json, **decision_json}, body), decision_bytes


def _canonical_decision(decision: Decision, shown: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of *shown* (``decision.to_json()``), with each reason's bytes worked out once.

    The members in key order: ``as_of``, ``decision``, ``evaluated_at`` and ``obligations``
    (encoded together), ``reasons`` (the rules' results, most of them cached by the engine and
    recurring from check to check), ``subjects``.
    """
    head = canonical_payload({key: shown[key] for key in ("as_of", "decision", "evaluated_at", "obligations")})
    tail = canonical_payload({"subjects": shown["subjects"]})
    reasons = b",".join(map(canonical_reason, decision.reasons))
    return head[:-1] + b',"reasons":[' + reasons + b"]," + tail[1:]


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def recorded_check(ledger: Ledger, decision_id: int) -> LedgerEntry:
    """The ``check.decided`` entry with sequence number *decision_id*."""
    try:
        entry = ledger.get(decision_id)
    except NotFoundError:
        entry = None
    if entry is None or entry.kind != "check.decided":
        msg = f"there is no check decision {decision_id}"
        raise NotFoundError(msg)
    return entry


@dataclass(frozen=True, slots=True)
class Replay:
    """A recorded decision evaluated again from the ledger prefix it relied on."""

    decision_id: int
    identical: bool
    recorded: dict[str, Any]
    replayed: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "decision_id": self.decision_id,
            "identical": self.identical,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }


def replay_check(ledger: Ledger, entry: LedgerEntry, *, engine: Engine | None = None) -> Replay:
    """Re-evaluate a recorded decision from entries ``0..as_of`` at its recorded instant."""
    payload = entry.payload
    action = ProposedAction.from_json(payload["action"])
    with ledger.db.engine.connect() as conn:
        state = state_as_of(conn, int(payload["as_of"]))
    replayed = (engine or Engine.standard()).decide(state, action, at=payload["evaluated_at"]).to_json()
    recorded = {key: payload[key] for key in replayed}
    return Replay(entry.seq, replayed == recorded, recorded, replayed)
