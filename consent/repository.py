"""Every consent query. Projection rows are inserted by projectors and never updated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Row, Table, insert, select

from consent.models import erasures_table, grants_table, vocabularies_table, withdrawals_table
from consent.vocabulary import Vocabulary, from_document_cached

IN_CHUNK = 500  # bound on IN (...) lists, well under every engine's parameter limit


def chunks(values: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    """Split *values* into slices of at most *size*."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- writes (projectors only) ----------------------------------------------------------------


_COMPILED: dict[tuple[str, str], tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]] | None]] = {}


def _compiled(conn: Connection, table: Table) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]] | None]:
    key = (conn.dialect.name, table.name)
    if key not in _COMPILED:
        compiled = insert(table).compile(dialect=conn.dialect, column_keys=[c.name for c in table.columns])
        positions = compiled.positiontup if compiled.positional and compiled.positiontup else None
        _COMPILED[key] = (str(compiled), None if positions is None else _tuple_of(positions))
    return _COMPILED[key]


def _tuple_of(keys: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    getter = itemgetter(*keys)
    return (lambda row: (getter(row),)) if len(keys) == 1 else getter


def fast_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows straight through the driver, with SQL compiled once per dialect (the bulk import's hot path).

    Every row must give every column of *table*. The driver's cursor runs inside this
    connection's transaction, so the rows commit or roll back with everything else.
    """
    if not rows:
        return
    sql, positional = _compiled(conn, table)
    driver = conn.connection.dbapi_connection
    if driver is None:  # pragma: no cover - a live connection always has one
        msg = "the connection is closed"
        raise RuntimeError(msg)
    if len(rows) == 1:
        driver.execute(sql, positional(rows[0]) if positional is not None else rows[0])
        return
    cursor = driver.cursor()
    try:
        cursor.executemany(sql, [positional(row) for row in rows] if positional is not None else rows)
    finally:
        cursor.close()


def insert_grant(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one grant row."""
    fast_insert(conn, grants_table, [row])


def insert_withdrawal(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a withdrawal row unless the consent already has one (the first withdrawal counts)."""
    if withdrawal(conn, row["consent"]) is None:
        conn.execute(insert(withdrawals_table), row)


def insert_erasure(conn: Connection, row: dict[str, Any]) -> None:
    """Insert an erasure row unless the subject already has one."""
    if erasure(conn, row["subject"]) is None:
        conn.execute(insert(erasures_table), row)


def insert_vocabulary(conn: Connection, row: dict[str, Any]) -> None:
    """Insert an adopted vocabulary."""
    conn.execute(insert(vocabularies_table), row)


# -- reads ---------------------------------------------------------------------------------


def latest_vocabulary(conn: Connection, *, as_of_seq: int | None = None) -> tuple[int, Vocabulary] | None:
    """The adopted vocabulary in force (highest seq, at or before *as_of_seq*), or None."""
    query = select(vocabularies_table.c.seq, vocabularies_table.c.document).order_by(vocabularies_table.c.seq.desc())
    if as_of_seq is not None:
        query = query.where(vocabularies_table.c.seq <= as_of_seq)
    row = conn.execute(query.limit(1)).first()
    return None if row is None else (int(row[0]), from_document_cached(str(row[1])))


def grant(conn: Connection, consent: str) -> Row[Any] | None:
    """One grant row by consent id."""
    return conn.execute(select(grants_table).where(grants_table.c.consent == consent)).first()


def withdrawal(conn: Connection, consent: str) -> Row[Any] | None:
    """The withdrawal row of a consent, if any."""
    return conn.execute(select(withdrawals_table).where(withdrawals_table.c.consent == consent)).first()


def erasure(conn: Connection, subject: str) -> Row[Any] | None:
    """The erasure row of a subject, if any."""
    return conn.execute(select(erasures_table).where(erasures_table.c.subject == subject)).first()


def _marks(conn: Connection, count: int) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ",".join([mark] * count)


def existing_consents(conn: Connection, consents: Sequence[str]) -> dict[str, tuple[str, str, int]]:
    """``{consent: (organisation, subject, seq)}`` for the ids already recorded.

    Plain SQL, as the bulk import asks this of every chunk (twice) and every validation batch.
    """
    found: dict[str, tuple[str, str, int]] = {}
    for part in chunks(consents):
        sql = f"SELECT consent, organisation, subject, seq FROM consent_grants WHERE consent IN ({_marks(conn, len(part))})"  # noqa: S608, E501 - placeholders
        for consent, organisation, subject, seq in conn.exec_driver_sql(sql, tuple(part)):
            found[str(consent)] = (str(organisation), str(subject), int(seq))
    return found


def subject_states(conn: Connection, subjects: Sequence[str]) -> dict[str, bool]:
    """``{subject: is_erased}`` for every subject in *subjects* the trust knows (has a grant for)."""
    known: dict[str, bool] = {}
    for part in chunks(subjects):
        marks = _marks(conn, len(part))
        for (subject,) in conn.exec_driver_sql(
            f"SELECT DISTINCT subject FROM consent_grants WHERE subject IN ({marks})",  # noqa: S608 - placeholders
            tuple(part),
        ):
            known[str(subject)] = False
        for (subject,) in conn.exec_driver_sql(
            f"SELECT subject FROM consent_erasures WHERE subject IN ({marks})",  # noqa: S608 - placeholders
            tuple(part),
        ):
            known[str(subject)] = True
    return known


def grants_of(conn: Connection, subjects: Sequence[str], *, until: str, as_of_seq: int | None) -> list[Row[Any]]:
    """Grant rows of *subjects* recorded at or before *until* (and *as_of_seq*), by subject then seq."""
    rows: list[Row[Any]] = []
    for part in chunks(subjects):
        query = select(grants_table).where(grants_table.c.subject.in_(part), grants_table.c.granted_at <= until)
        if as_of_seq is not None:
            query = query.where(grants_table.c.seq <= as_of_seq)
        rows.extend(conn.execute(query.order_by(grants_table.c.subject, grants_table.c.seq)))
    return rows


def withdrawals_of(conn: Connection, subjects: Sequence[str], *, as_of_seq: int | None) -> list[Row[Any]]:
    """Withdrawal rows of *subjects* (at or before *as_of_seq*)."""
    rows: list[Row[Any]] = []
    for part in chunks(subjects):
        query = select(withdrawals_table).where(withdrawals_table.c.subject.in_(part))
        if as_of_seq is not None:
            query = query.where(withdrawals_table.c.seq <= as_of_seq)
        rows.extend(conn.execute(query))
    return rows


def erasures_of(conn: Connection, subjects: Sequence[str], *, as_of_seq: int | None) -> list[Row[Any]]:
    """Erasure rows of *subjects* (at or before *as_of_seq*)."""
    rows: list[Row[Any]] = []
    for part in chunks(subjects):
        query = select(erasures_table).where(erasures_table.c.subject.in_(part))
        if as_of_seq is not None:
            query = query.where(erasures_table.c.seq <= as_of_seq)
        rows.extend(conn.execute(query))
    return rows


def iter_grants(conn: Connection, *, organisation: str | None = None, chunk: int = 2000) -> Iterator[list[Row[Any]]]:
    """Every grant in seq order, in pages (constant memory), optionally one organisation's."""
    after = -1
    while True:
        query = select(grants_table).where(grants_table.c.seq > after)
        if organisation is not None:
            query = query.where(grants_table.c.organisation == organisation)
        page = list(conn.execute(query.order_by(grants_table.c.seq).limit(chunk)))
        if not page:
            return
        yield page
        after = int(page[-1].seq)


def withdrawals_for(conn: Connection, consents: Iterable[str]) -> dict[str, Row[Any]]:
    """Withdrawal rows by consent id."""
    ids = list(consents)
    found: dict[str, Row[Any]] = {}
    for part in chunks(ids):
        for row in conn.execute(select(withdrawals_table).where(withdrawals_table.c.consent.in_(part))):
            found[str(row.consent)] = row
    return found


def decode_list(value: str | None) -> tuple[str, ...] | None:
    """A JSON array column as a tuple (None stays None)."""
    return None if value is None else tuple(json.loads(value))
