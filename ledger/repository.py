"""All ledger queries. Inserts only: there is no update or delete here, by design."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, and_, insert, or_, select

from ledger.entry import LedgerEntry
from ledger.merkle import CompactRange, Node
from ledger.models import checkpoints_table, entries_table, nodes_table

EntryRow = tuple[int, bytes, bytes]  # seq, leaf hash, body


def head(conn: Connection) -> tuple[int, bytes] | None:
    """Return ``(seq, leaf hash)`` of the last entry, or None for an empty ledger."""
    row = conn.execute(
        select(entries_table.c.seq, entries_table.c.leaf_hash).order_by(entries_table.c.seq.desc()).limit(1)
    ).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


def size(conn: Connection) -> int:
    """Return the number of entries (the tree size)."""
    current = head(conn)
    return 0 if current is None else current[0] + 1


def fetch_nodes(conn: Connection, nodes: Sequence[Node]) -> dict[Node, bytes]:
    """Fetch stored hashes of perfect subtrees in one query per table (leaves live in entries)."""
    found: dict[Node, bytes] = {}
    leaves = [n.index for n in nodes if n.level == 0]
    inner = [n for n in nodes if n.level > 0]
    if leaves:
        for seq, value in conn.execute(
            select(entries_table.c.seq, entries_table.c.leaf_hash).where(entries_table.c.seq.in_(leaves))
        ):
            found[Node(0, int(seq))] = bytes(value)
    if inner:
        clause = or_(*(and_(nodes_table.c.level == n.level, nodes_table.c.idx == n.index) for n in inner))
        for level, idx, value in conn.execute(
            select(nodes_table.c.level, nodes_table.c.idx, nodes_table.c.hash).where(clause)
        ):
            found[Node(int(level), int(idx))] = bytes(value)
    return found


def load_compact_range(conn: Connection, tree_size: int) -> CompactRange:
    """Rebuild the right edge of the tree of *tree_size* leaves from stored nodes."""
    nodes = CompactRange.edge_nodes(tree_size)
    found = fetch_nodes(conn, nodes)
    return CompactRange(tree_size, [found[n] for n in nodes])


def insert_entries(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Insert entry rows (executemany)."""
    if rows:
        conn.execute(insert(entries_table), rows)


def insert_nodes(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Insert tree node rows (executemany)."""
    if rows:
        conn.execute(insert(nodes_table), rows)


def insert_checkpoint(conn: Connection, *, size: int, root: bytes, note: str, signed_at: str) -> None:
    """Store a signed checkpoint."""
    conn.execute(insert(checkpoints_table).values(size=size, root=root, note=note, signed_at=signed_at))


def latest_checkpoint(conn: Connection) -> tuple[int, str] | None:
    """Return ``(size, note)`` of the newest checkpoint."""
    row = conn.execute(
        select(checkpoints_table.c.size, checkpoints_table.c.note).order_by(checkpoints_table.c.size.desc()).limit(1)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def checkpoint_covering(conn: Connection, min_size: int) -> tuple[int, str] | None:
    """Return the smallest checkpoint whose size is at least *min_size*."""
    row = conn.execute(
        select(checkpoints_table.c.size, checkpoints_table.c.note)
        .where(checkpoints_table.c.size >= min_size)
        .order_by(checkpoints_table.c.size)
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def iter_checkpoints(conn: Connection) -> Iterator[tuple[int, str]]:
    """Every stored checkpoint, smallest first."""
    for size_, note in conn.execute(
        select(checkpoints_table.c.size, checkpoints_table.c.note).order_by(checkpoints_table.c.size)
    ):
        yield int(size_), str(note)


def entry_rows(conn: Connection, start: int, end: int) -> list[EntryRow]:
    """Rows with ``start <= seq < end`` in order."""
    result = conn.execute(
        select(entries_table.c.seq, entries_table.c.leaf_hash, entries_table.c.body)
        .where(entries_table.c.seq >= start, entries_table.c.seq < end)
        .order_by(entries_table.c.seq)
    )
    return [(int(s), bytes(h), bytes(b)) for s, h, b in result]


def get_entry(conn: Connection, seq: int) -> LedgerEntry | None:
    """Return one entry, parsed, or None."""
    rows = entry_rows(conn, seq, seq + 1)
    if not rows:
        return None
    return LedgerEntry.from_body(rows[0][2])


def entries_of_kind(
    conn: Connection, kinds: Sequence[str], *, after: int = -1, limit: int = 10_000
) -> list[LedgerEntry]:
    """Entries of the given kinds with seq > *after*, oldest first (for projections)."""
    result = conn.execute(
        select(entries_table.c.body)
        .where(entries_table.c.kind.in_(list(kinds)), entries_table.c.seq > after)
        .order_by(entries_table.c.seq)
        .limit(limit)
    )
    return [LedgerEntry.from_body(bytes(b)) for (b,) in result]


def iter_entries(conn: Connection, *, start: int = 0, end: int | None = None, chunk: int = 5000) -> Iterator[EntryRow]:
    """Stream entry rows in seq order, in chunks (constant memory)."""
    position = start
    while end is None or position < end:
        stop = position + chunk if end is None else min(end, position + chunk)
        rows = entry_rows(conn, position, stop)
        yield from rows
        if len(rows) < stop - position:
            return
        position = stop


def nodes_between(conn: Connection, level: int, first: int, last: int) -> dict[Node, bytes]:
    """Stored nodes of one *level* with ``first <= index <= last``."""
    result = conn.execute(
        select(nodes_table.c.idx, nodes_table.c.hash).where(
            nodes_table.c.level == level, nodes_table.c.idx >= first, nodes_table.c.idx <= last
        )
    )
    return {Node(level, int(idx)): bytes(value) for idx, value in result}
