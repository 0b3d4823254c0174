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

from sqlalchemy import Connection, MetaData, Table, select

from ledger import repository
from ledger.entry import LedgerEntry

Projector = Callable[[Connection, LedgerEntry], None]


@dataclass
class ProjectorRegistry:
    """Which projectors run for which entry kinds, and which tables they own."""

    by_kind: dict[str, list[Projector]] = field(default_factory=lambda: defaultdict(list))
    tables: list[str] = field(default_factory=list)
    refusing: set[str] = field(default_factory=set)  # kinds with a projector that may raise a domain error

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
        for table in tables:
            if table not in self.tables:
                self.tables.append(table)

    def handles(self, kind: str) -> bool:
        """Whether any projector runs for *kind*."""
        return bool(self.by_kind.get(kind))

    def may_refuse(self, kind: str) -> bool:
        """Whether a projector for *kind* may refuse the entry (it then runs in a savepoint)."""
        return kind in self.refusing

    def apply(self, conn: Connection, entry: LedgerEntry) -> None:
        """Run every projector registered for the entry's kind."""
        for projector in self.by_kind.get(entry.kind, ()):
            projector(conn, entry)


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
