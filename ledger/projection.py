"""Projections: tables derived from the ledger, updated in the same transaction as each entry.

Each domain package registers, per entry kind, a *projector*: a deterministic
function ``(connection, entry) -> None`` that writes the rows the API reads. The
sequencer calls the projectors of every entry it appends, inside the batch's
transaction, so an entry and its projection commit together or not at all.

Because projections depend on nothing but the entries, ``replay`` can rebuild
them from scratch into an empty database and :func:`diff_tables` can report any
row where the live tables drifted from what the ledger says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, MetaData, Table, select

from ledger import repository
from ledger.entry import LedgerEntry

Projector = Callable[[Connection, LedgerEntry], None]
BatchProjector = Callable[[Connection, list[LedgerEntry]], None]
RowProjector = Callable[[Any, str, list[LedgerEntry]], None]  # (DB-API cursor, its paramstyle, entries)
P = TypeVar("P", BatchProjector, RowProjector)


@dataclass
class ProjectorRegistry:
    """Which projectors run for which entry kinds, and which tables they own."""

    by_kind: dict[str, list[Projector]] = field(default_factory=lambda: defaultdict(list))
    tables: list[str] = field(default_factory=list)
    refusing: set[str] = field(default_factory=set)  # kinds with a projector that may raise a domain error
    batched: dict[str, list[BatchProjector]] = field(default_factory=lambda: defaultdict(list))
    rows: dict[str, list[RowProjector]] = field(default_factory=lambda: defaultdict(list))

    def register(
        self, kinds: Iterable[str], projector: Projector, *, tables: Iterable[str] = (), may_refuse: bool = True
    ) -> None:
        """Run *projector* for every entry of one of *kinds*; *tables* are the tables it writes.

        A projector registered with ``may_refuse=False`` promises never to raise a domain error
        (it only writes rows): the sequencer then runs it without a savepoint of its own, since
        a database error fails the whole batch either way.
        """
        for kind in kinds:
            self.by_kind[kind].append(projector)
            if may_refuse:
                self.refusing.add(kind)
        self._own(tables)

    def register_batch(self, kinds: Iterable[str], projector: BatchProjector, *, tables: Iterable[str] = ()) -> None:
        """Run *projector* with many entries of *kinds* at once (in sequence order): for rows written by the thousand.

        It must only write rows (never refuse an entry) and read nothing another projection of
        the same batch writes. The sequencer calls it once per batch with the batch's entries of
        these kinds, before the batch's entries are written and before any later unit of the
        batch whose projectors or callbacks may read the database; elsewhere (rebuilds) it is
        called with one entry at a time.
        """
        for kind in kinds:
            self.batched[kind].append(projector)
        self._own(tables)

    def register_rows(self, kinds: Iterable[str], projector: RowProjector, *, tables: Iterable[str] = ()) -> None:
        """A batch projector that writes rows through the driver's own cursor, and does nothing else.

        *projector* is called as ``projector(cursor, paramstyle, entries)``: a DB-API cursor inside
        the writer's transaction, its driver's parameter style (``qmark`` or ``pyformat``), and the
        batch's entries of *kinds* in sequence order. It must only insert rows (never read, never
        refuse an entry), so that the writer may run it inside the guarded transaction of a batch
        of plain entries (:meth:`ledger.repository.BatchWriter.append_if_head`), where SQLAlchemy
        is not in charge of the transaction. Elsewhere it runs as a batch projector does.
        """
        for kind in kinds:
            self.rows[kind].append(projector)
        self._own(tables)

    def _own(self, tables: Iterable[str]) -> None:
        """Note *tables* as written by projectors (each once, in the order first named)."""
        for table in tables:
            if table not in self.tables:
                self.tables.append(table)

    def handles(self, kind: str) -> bool:
        """Whether any projector runs for *kind*."""
        return bool(self.by_kind.get(kind) or self.batched.get(kind) or self.rows.get(kind))

    def needs_connection(self, kind: str) -> bool:
        """Whether *kind* has a projector that works on the connection: any but a row projector (register_rows)."""
        return bool(self.by_kind.get(kind) or self.batched.get(kind))

    def project_rows(self, cursor: Any, paramstyle: str, entries: list[LedgerEntry]) -> None:
        """Run the row projectors over *entries* (each projector once, with its kinds' entries, in order)."""
        for projector, mine in _grouped(self.rows, entries).items():
            projector(cursor, paramstyle, mine)

    def may_refuse(self, kind: str) -> bool:
        """Whether a projector for *kind* may refuse the entry (it then runs in a savepoint)."""
        return kind in self.refusing

    def apply(self, conn: Connection, entry: LedgerEntry, *, pending: list[LedgerEntry] | None = None) -> None:
        """Run every projector registered for the entry's kind; batch projectors too, unless *pending* collects it.

        With *pending*, an entry with batch projectors is added to it, to be projected by :meth:`flush`.
        """
        for projector in self.by_kind.get(entry.kind, ()):
            projector(conn, entry)
        if self.batched.get(entry.kind) or self.rows.get(entry.kind):
            if pending is not None:
                pending.append(entry)
            else:
                self.flush(conn, [entry])

    def flush(self, conn: Connection, pending: list[LedgerEntry]) -> None:
        """Run the batch projectors over the entries *pending* collected (each with its own, in order); empty it."""
        if not pending:
            return
        entries = list(pending)
        pending.clear()
        for batch_projector, mine in _grouped(self.batched, entries).items():
            batch_projector(conn, mine)
        if any(entry.kind in self.rows for entry in entries):
            if not conn.in_transaction():  # as SQLAlchemy's own first statement would (autobegin)
                conn.begin()
            cursor = cast("Any", conn.connection.dbapi_connection).cursor()
            try:
                self.project_rows(cursor, conn.dialect.paramstyle, entries)
            finally:
                cursor.close()


def _grouped(by_kind: dict[str, list[P]], entries: list[LedgerEntry]) -> dict[P, list[LedgerEntry]]:
    """Each projector of *by_kind* with the entries of its kinds, in order (projectors in order first needed)."""
    groups: dict[P, list[LedgerEntry]] = {}
    for entry in entries:
        for projector in by_kind.get(entry.kind, ()):
            groups.setdefault(projector, []).append(entry)
    return groups


@dataclass(frozen=True, slots=True)
class TableDifference:
    """Rows that differ between the live table and the rebuilt one."""

    table: str
    only_live: list[tuple[object, ...]]
    only_rebuilt: list[tuple[object, ...]]


def _normal(value: object) -> object:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _rows(conn: Connection, table: Table) -> set[tuple[object, ...]]:
    return {tuple(_normal(v) for v in row) for row in conn.execute(select(table))}


def rebuild(
    source: Connection,
    target: Connection,
    registry: ProjectorRegistry,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Apply every entry of *source*, in order, to the projections in *target*; return the count."""
    total = repository.size(source)
    count = 0
    for _seq, _leaf, body in repository.iter_entries(source, end=total):
        entry = LedgerEntry.from_body(body)
        registry.apply(target, entry)
        count += 1
        if progress is not None and count % 5000 == 0:
            progress(count, total)
    if progress is not None:
        progress(count, total)
    return count


def diff_tables(live: Connection, rebuilt: Connection, tables: Iterable[str]) -> list[TableDifference]:
    """Compare each table's rows in two databases; return the tables that differ."""
    differences: list[TableDifference] = []
    for name in tables:
        live_table = Table(name, MetaData(), autoload_with=live)
        rebuilt_table = Table(name, MetaData(), autoload_with=rebuilt)
        a, b = _rows(live, live_table), _rows(rebuilt, rebuilt_table)
        if a != b:
            differences.append(TableDifference(name, sorted(a - b, key=repr), sorted(b - a, key=repr)))
    return differences
