"""All ledger queries. Inserts only: there is no update or delete here, by design."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

from sqlalchemy import Connection, insert, select

from ledger.db import LEDGER_LOCK_ID
from ledger.entry import LedgerEntry
from ledger.merkle import CompactRange, Node
from ledger.models import checkpoints_table, entries_table, nodes_table

EntryRow = tuple[int, bytes, bytes]  # seq, leaf hash, body
NewEntryRow = tuple[int, str, str, str, bytes, bytes]  # seq, kind, at, actor, leaf hash, body
NewNodeRow = tuple[int, int, bytes]  # level, index, hash


_HEAD_SQL = "SELECT seq, leaf_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"
_LOCK_AND_HEAD_SQL = f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_ID}); {_HEAD_SQL}"
# PostgreSQL: one statement text whatever the number of nodes, so psycopg prepares it once per connection.
_PG_FETCH_NODES_SQL = (
    "SELECT 0, seq, leaf_hash FROM ledger_entries WHERE seq = ANY(%s::bigint[]) "
    "UNION ALL SELECT n.level, n.idx, n.hash FROM ledger_tree_nodes AS n "
    "JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx"
)
# The proofs' read adds, in the same statement (so under the same snapshot), one row (-1, ledger size,
# NULL): no stored node has a negative level. The size is a scalar subquery, a bare max() of the key,
# which both engines answer from the end of its index.
_SIZE_MARK = -1
_SIZE_ROW_SQL = " UNION ALL SELECT -1, coalesce((SELECT max(seq) FROM ledger_entries) + 1, 0), NULL"
_PG_FETCH_NODES_AND_SIZE_SQL = _PG_FETCH_NODES_SQL + _SIZE_ROW_SQL


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def head(conn: Connection) -> tuple[int, bytes] | None:
    """Return ``(seq, leaf hash)`` of the last entry, or None for an empty ledger."""
    row = conn.exec_driver_sql(_HEAD_SQL).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


def size(conn: Connection) -> int:
    """Return the number of entries (the tree size)."""
    current = head(conn)
    return 0 if current is None else current[0] + 1


def fetch_nodes(conn: Connection, nodes: Sequence[Node]) -> dict[Node, bytes]:
    """Fetch stored hashes of perfect subtrees in one indexed query (leaves live in entries).

    Plain SQL on purpose: this is the proof path, and building the equivalent
    SQLAlchemy expression cost more than running it. Missing nodes are simply
    absent from the answer.
    """
    leaves = [n.index for n in nodes if n.level == 0]
    inner = [n for n in nodes if n.level > 0]
    if not leaves and not inner:
        return {}
    if conn.dialect.name == "postgresql":
        sql = _PG_FETCH_NODES_SQL
        params: tuple[object, ...] = (leaves, [n.level for n in inner], [n.index for n in inner])
    else:
        sql, params = _sqlite_fetch_nodes(leaves, inner)
    return {Node(int(level), int(idx)): bytes(value) for level, idx, value in conn.exec_driver_sql(sql, params).all()}


def fetch_nodes_and_size(conn: Connection, nodes: Sequence[Node]) -> tuple[dict[Node, bytes], int]:
    """Stored hashes of *nodes*, as :func:`fetch_nodes`, and the ledger's size, read by ONE statement.

    One statement is one snapshot, so the size bounds exactly the nodes read
    with it: a caller refusing a tree larger than that size cannot be fooled by
    tree nodes stored past the last entry. It runs through the connection's
    DB-API cursor (both drivers return ``int`` and ``bytes`` here), which skips
    SQLAlchemy's result set-up; a lone statement needs no transaction of its own.
    """
    leaves = [n.index for n in nodes if n.level == 0]
    inner = [n for n in nodes if n.level > 0]
    if conn.dialect.name == "postgresql":
        sql = _PG_FETCH_NODES_AND_SIZE_SQL
        # Array literals, not lists: psycopg sends a string without inspecting each element's type.
        params: tuple[object, ...] = tuple(
            _int_array(v) for v in (leaves, [n.level for n in inner], [n.index for n in inner])
        )
    elif leaves or inner:
        sql, params = _sqlite_fetch_nodes(leaves, inner)
        sql += _SIZE_ROW_SQL
    else:
        sql, params = _SIZE_ROW_SQL.removeprefix(" UNION ALL "), ()
    found: dict[Node, bytes] = {}
    ledger_size = 0
    for level, idx, value in _driver_rows(conn, sql, params):
        if level == _SIZE_MARK:
            ledger_size = int(idx)
        else:
            found[Node(level, idx)] = bytes(value)
    return found, ledger_size


def _int_array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers."""
    return "{" + ",".join(map(str, values)) + "}"


def _sqlite_fetch_nodes(leaves: Sequence[int], inner: Sequence[Node]) -> tuple[str, tuple[object, ...]]:
    """SQLite: IN on the key, and OR of key lookups (planned as a MULTI-INDEX OR; a row-value IN scans)."""
    parts: list[str] = []
    values: list[int] = []
    if leaves:
        marks = ",".join("?" * len(leaves))
        parts.append(f"SELECT 0, seq, leaf_hash FROM ledger_entries WHERE seq IN ({marks})")  # noqa: S608 - placeholders
        values.extend(leaves)
    if inner:
        terms = " OR ".join(["(level = ? AND idx = ?)"] * len(inner))
        parts.append(f"SELECT level, idx, hash FROM ledger_tree_nodes WHERE {terms}")  # noqa: S608 - placeholders
        for n in inner:
            values.extend((n.level, n.index))
    return " UNION ALL ".join(parts), tuple(values)


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


_INSERT_ENTRIES_SQL = "INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) VALUES "
_INSERT_NODES_SQL = "INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES "
_PG_LOCK_SQL = f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_ID})"
_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open
# PostgreSQL, inside the caller's transaction: entries and nodes in ONE statement of fixed text, whatever
# the batch size (so psycopg parses it once and prepares it), each column one array literal (a string
# psycopg sends as it is, not a parameter per value); the nodes are inserted only if the entries were.
_PG_INSERT_SQL = (
    "WITH e AS (INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) "
    "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::bytea[]) "
    "RETURNING 1) "
    "INSERT INTO ledger_tree_nodes (level, idx, hash) "
    "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[]) WHERE EXISTS (SELECT 1 FROM e)"
)
# PostgreSQL, the guarded form (see ``append_if_head``): the entries are inserted only if the head is
# (size - 1, prev), or the ledger empty for size 0. Uncorrelated subqueries, evaluated once with the
# statement's snapshot, which READ COMMITTED takes when the statement starts (so after the lock is held).
# It returns how many entries it inserted: all of them, or none.
_PG_GUARDED_INSERT_SQL = (
    "WITH e AS (INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) "
    "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::bytea[]) "
    "WHERE (SELECT coalesce(max(seq) + 1, 0) FROM ledger_entries) = %s::bigint "
    "AND (%s::bigint = 0 OR EXISTS (SELECT 1 FROM ledger_entries WHERE seq = %s::bigint - 1 AND leaf_hash = %s)) "
    "RETURNING 1), "
    "n AS (INSERT INTO ledger_tree_nodes (level, idx, hash) "
    "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[]) WHERE EXISTS (SELECT 1 FROM e)) "
    "SELECT count(*) FROM e"
)


def _bytea_array(values: Sequence[bytes]) -> str:
    """A PostgreSQL array literal of ``bytea`` values (hex format)."""
    if not values:
        return "{}"
    return '{"\\\\x' + '","\\\\x'.join([value.hex() for value in values]) + '"}'


def _text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted and escaped."""
    if not values:
        return "{}"
    return '{"' + '","'.join([v.replace("\\", "\\\\").replace('"', '\\"') for v in values]) + '"}'


def _pg_insert_params(entries: list[NewEntryRow], nodes: list[NewNodeRow]) -> list[object]:
    seqs, kinds, ats, actors, leaves, bodies = zip(*entries, strict=True)
    params: list[object] = [
        _int_array(seqs),
        '{"' + '","'.join(kinds) + '"}',  # entry kinds are names from KINDS: nothing to escape
        '{"' + '","'.join(ats) + '"}',  # timestamps written by format_at: nothing to escape
        _text_array(actors),
        _bytea_array(leaves),
        _bytea_array(bodies),
    ]
    if nodes:
        levels, indices, hashes = zip(*nodes, strict=True)
        params += (_int_array(levels), _int_array(indices), _bytea_array(hashes))
    else:
        params += ("{}", "{}", "{}")
    return params


class BatchWriter:
    """The sequencer's hot path, as plain DB-API calls on the connection's driver connection.

    The same statements as :func:`head`, :func:`insert_entries` and
    :func:`insert_nodes`, without SQLAlchemy's per-row work; rows are tuples in
    column order. :meth:`lock_and_head` and :meth:`insert` run inside the
    connection's current (SQLAlchemy) transaction: on PostgreSQL the advisory
    lock and the head read travel in one round trip (two statements: the head
    is read with a snapshot taken after the lock is granted), and entries and
    nodes in one ``INSERT`` (a writable CTE). :meth:`append_if_head` runs a whole
    transaction of its own, guarded by the head. Driver errors are raised as they are
    (``sqlite3.Error``, ``psycopg.Error``).
    """

    def __init__(
        self, conn: Connection, *, writer_lock: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    ) -> None:
        self.is_postgresql = conn.dialect.name == "postgresql"
        self._writer_lock = writer_lock  # held around the guarded transaction (Database.writer_lock)
        self._driver: Any = cast("Any", conn.connection.dbapi_connection)
        self._cursor: Any = self._driver.cursor()
        self._insert_cursor: Any = None  # PostgreSQL: the guarded insert's result, read after the pipeline

    def lock_and_head(self) -> tuple[int, bytes] | None:
        """Take the cross-process append lock (PostgreSQL) and return the head, like :func:`head`."""
        cursor = self._cursor
        if self.is_postgresql:
            cursor.execute(_LOCK_AND_HEAD_SQL)
            cursor.nextset()
        else:  # SQLite: the transaction began IMMEDIATE, so it already holds the write lock
            cursor.execute(_HEAD_SQL)
        row = cursor.fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def insert(self, entries: list[NewEntryRow], nodes: list[NewNodeRow]) -> None:
        """Insert entry rows and tree node rows."""
        if not entries:
            return
        cursor = self._cursor
        if self.is_postgresql:
            cursor.execute(_PG_INSERT_SQL, _pg_insert_params(entries, nodes))
            return
        cursor.executemany(_INSERT_ENTRIES_SQL + "(?, ?, ?, ?, ?, ?)", entries)
        if nodes:
            cursor.executemany(_INSERT_NODES_SQL + "(?, ?, ?)", nodes)

    def append_if_head(
        self,
        entries: list[NewEntryRow],
        nodes: list[NewNodeRow],
        *,
        size: int,
        prev: bytes,
        project: Callable[[Any, str], None] | None = None,
    ) -> bool:
        """Append *entries* (prepared from a head read earlier) in a transaction of their own, if still valid.

        Takes the cross-process lock, then checks that the ledger still has
        *size* entries, the last one's leaf hash being *prev* (nothing else
        appended since the head the rows were built on); only then inserts the
        rows, and commits. Returns True once they are committed (durable), False
        if the head had moved: nothing was written, and the caller must redo its
        batch from the current head. It returns False, too, if the
        connection is already in a transaction (not its own to commit).

        On PostgreSQL the whole transaction travels in one round trip (psycopg's
        pipeline mode): ``BEGIN``, the advisory lock, one ``INSERT … SELECT``
        guarded by the head (a later statement than the lock, so READ COMMITTED
        reads the head with a snapshot taken once the lock is held), ``COMMIT``; an
        empty transaction is committed when the guard fails. The callers' entries
        are durable once the ``COMMIT``'s answer has come back.

        *project*, if given, is called as ``project(cursor, paramstyle)`` once the guard has
        passed and the entries are inserted, before the commit, to insert the rows that project
        them (``ProjectorRegistry.project_rows``). On PostgreSQL the pipeline then waits for the
        guarded insert's answer first: two round trips instead of one.
        """
        if not entries:
            msg = "append_if_head needs entries"
            raise ValueError(msg)
        if self.is_postgresql:
            return self._pg_append_if_head(entries, nodes, size=size, prev=prev, project=project)
        if self._driver.in_transaction:  # not ours to commit: let the caller take its usual path
            return False
        with self._writer_lock():
            return self._sqlite_append_if_head(entries, nodes, size=size, prev=prev, project=project)

    def _sqlite_append_if_head(
        self,
        entries: list[NewEntryRow],
        nodes: list[NewNodeRow],
        *,
        size: int,
        prev: bytes,
        project: Callable[[Any, str], None] | None,
    ) -> bool:
        cursor = self._cursor
        cursor.execute("BEGIN IMMEDIATE")  # the write lock, before the head is read
        try:
            cursor.execute(_HEAD_SQL)
            row = cursor.fetchone()
            if (0 if row is None else row[0] + 1) != size or (row is not None and bytes(row[1]) != prev):
                cursor.execute("ROLLBACK")
                return False
            cursor.executemany(_INSERT_ENTRIES_SQL + "(?, ?, ?, ?, ?, ?)", entries)
            if nodes:
                cursor.executemany(_INSERT_NODES_SQL + "(?, ?, ?)", nodes)
            if project is not None:
                project(cursor, "qmark")
            cursor.execute("COMMIT")
        except BaseException:
            if self._driver.in_transaction:
                self._driver.rollback()
            raise
        return True

    def _pg_append_if_head(
        self,
        entries: list[NewEntryRow],
        nodes: list[NewNodeRow],
        *,
        size: int,
        prev: bytes,
        project: Callable[[Any, str], None] | None,
    ) -> bool:
        driver = self._driver
        if driver.info.transaction_status != _PG_IDLE:  # not ours to commit: let the caller take its usual path
            return False
        params = _pg_insert_params(entries, nodes)
        params[6:6] = (size, size, size, prev)  # the guard's, in the entries' part of the statement
        if self._insert_cursor is None:
            self._insert_cursor = driver.cursor()
        control, insert = self._cursor, self._insert_cursor
        guarded = None  # the guarded insert's answer, read inside the pipeline when rows are projected
        # Autocommit, so that psycopg sends no BEGIN of its own (followed by a sync, a round trip): ours
        # is queued with the rest, and everything goes when the pipeline ends, answered at once.
        driver.autocommit = True
        try:
            with driver.pipeline() as pipeline:
                control.execute("BEGIN")
                control.execute(_PG_LOCK_SQL)
                insert.execute(_PG_GUARDED_INSERT_SQL, params)
                if project is not None:  # project only once the guard is known to have passed
                    pipeline.sync()
                    guarded = insert.fetchone()
                    if guarded is not None and int(guarded[0]) == len(entries):
                        project(control, "pyformat")
                control.execute("COMMIT")
            row = insert.fetchone() if project is None else guarded
        except BaseException:
            if driver.info.transaction_status != _PG_IDLE:  # a statement failed: the transaction is aborted
                with contextlib.suppress(Exception):
                    driver.rollback()
            raise
        finally:
            if driver.info.transaction_status == _PG_IDLE:  # else the connection is broken: it is discarded
                driver.autocommit = False
        inserted = 0 if row is None else int(row[0])
        if inserted not in (0, len(entries)):  # pragma: no cover - one statement inserts all rows or none
            msg = f"the guarded insert wrote {inserted} of {len(entries)} entries"
            raise RuntimeError(msg)
        return inserted == len(entries)


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


def _driver_rows(conn: Connection, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    """Rows of a plain query through the connection's own DB-API cursor, inside its current transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql.replace("?", _placeholder(conn)), params)
        return cast("list[tuple[Any, ...]]", cursor.fetchall())
    finally:
        cursor.close()


def scan_entry_rows(conn: Connection, start: int, end: int) -> list[EntryRow]:
    """Rows with ``start <= seq < end`` in order, as :func:`entry_rows`, for bulk reads (verification).

    The plain DB-API read skips SQLAlchemy's per-row work: both drivers already
    return ``int`` and ``bytes`` for these columns. Run it after a SQLAlchemy
    statement on *conn* (as :func:`size`), so that it reads in that transaction.
    """
    sql = "SELECT seq, leaf_hash, body FROM ledger_entries WHERE seq >= ? AND seq < ? ORDER BY seq"
    return cast("list[EntryRow]", _driver_rows(conn, sql, (start, end)))


def node_hash_range(conn: Connection, level: int, first: int, last: int) -> list[bytes | None]:
    """Stored hashes of one *level* for indices ``first..last`` in order, None where a node is missing."""
    sql = "SELECT idx, hash FROM ledger_tree_nodes WHERE level = ? AND idx >= ? AND idx <= ? ORDER BY idx"
    rows = _driver_rows(conn, sql, (level, first, last))
    if len(rows) == last - first + 1:  # the key is unique: a full count is the whole range, in order
        return [bytes(value) for _idx, value in rows]
    found = {int(idx): bytes(value) for idx, value in rows}
    return [found.get(i) for i in range(first, last + 1)]


def node_hashes(conn: Connection, level: int, first: int, last: int) -> dict[int, bytes]:
    """Stored hashes of one *level* by index, ``first <= index <= last`` (bulk reads, like :func:`scan_entry_rows`)."""
    mark = _placeholder(conn)
    sql = f"SELECT idx, hash FROM ledger_tree_nodes WHERE level = {mark} AND idx >= {mark} AND idx <= {mark}"  # noqa: S608 - placeholders only
    return {int(idx): bytes(value) for idx, value in conn.exec_driver_sql(sql, (level, first, last)).all()}


def nodes_between(conn: Connection, level: int, first: int, last: int) -> dict[Node, bytes]:
    """Stored nodes of one *level* with ``first <= index <= last``."""
    result = conn.execute(
        select(nodes_table.c.idx, nodes_table.c.hash).where(
            nodes_table.c.level == level, nodes_table.c.idx >= first, nodes_table.c.idx <= last
        )
    )
    return {Node(level, int(idx)): bytes(value) for idx, value in result}
