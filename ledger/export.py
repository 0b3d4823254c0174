"""Export the ledger as JSON Lines, and verify an export or the live database.

Export format (one JSON object per line)::

    {"format":"datatrust-ledger-export/1","origin":"…","type":"header"}
    <entry 0's canonical bytes, exactly as hashed>
    <entry 1's canonical bytes>
    {"note":"<signed checkpoint>","size":2,"type":"checkpoint"}   (after the entry it covers up to)
    …

Canonical entries contain no raw newline (RFC 8785 escapes control characters),
so each entry line is byte for byte the hashed entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sqlalchemy import Connection

from ledger import repository
from ledger.errors import LedgerIntegrityError, ValidationError
from ledger.keys import Verifier
from ledger.merkle import Node
from ledger.verify import StreamVerifier, VerifyReport, check_stored_nodes

FORMAT = "datatrust-ledger-export/1"
Progress = Callable[[int, int], None]


def _noop(_done: int, _total: int) -> None:
    return None


def export_ledger(conn: Connection, out: IO[bytes], *, origin: str, progress: Progress = _noop) -> int:
    """Write every entry and checkpoint to *out*; return the number of entries."""
    total = repository.size(conn)
    checkpoints = iter(list(repository.iter_checkpoints(conn)))
    pending = next(checkpoints, None)
    header = {"format": FORMAT, "origin": origin, "type": "header"}
    out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
    count = 0
    for seq, _leaf, body in repository.iter_entries(conn, end=total):
        out.write(body + b"\n")
        count = seq + 1
        while pending is not None and pending[0] == count:
            line = {"note": pending[1], "size": pending[0], "type": "checkpoint"}
            out.write(json.dumps(line, sort_keys=True).encode() + b"\n")
            pending = next(checkpoints, None)
        if count % 10_000 == 0:
            progress(count, total)
    progress(count, total)
    return count


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip(b"\n")


def verify_export(path: Path, anchors: list[Verifier], *, progress: Progress = _noop, total: int = 0) -> VerifyReport:
    """Verify an export file with only the trusted public key(s); raise at the first fault."""
    verifier: StreamVerifier | None = None
    for number, line in _lines(path):
        if verifier is None:
            try:
                header = json.loads(line)
            except ValueError as exc:
                msg = f"line 1 is not the export header: {exc}"
                raise ValidationError(msg) from exc
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                msg = f"not a datatrust ledger export (line 1 must be a {FORMAT} header)"
                raise ValidationError(msg)
            verifier = StreamVerifier(anchors, origin=header.get("origin"))
            continue
        if line.startswith(b'{"note":'):
            record = json.loads(line)
            verifier.add_checkpoint(record["note"])
        elif line.startswith(b'{"actor":'):
            verifier.add_entry(line)
            done = verifier.report.entries
            if done % 50_000 == 0:
                progress(done, total)
        else:
            msg = f"line {number} is neither an entry nor a checkpoint"
            raise LedgerIntegrityError(msg, seq=verifier.report.entries)
    if verifier is None:
        msg = "the export is empty"
        raise ValidationError(msg)
    report = verifier.finish()
    progress(report.entries, total)
    return report


def verify_live(
    conn: Connection,
    anchors: list[Verifier],
    *,
    origin: str,
    progress: Progress = _noop,
    chunk: int = 20_000,
) -> VerifyReport:
    """Verify the database: stored leaf hashes, chain, stored Merkle nodes, every checkpoint.

    A checkpoint larger than the ledger means entries were removed after it was
    published (a rollback) and fails verification.
    """
    total = repository.size(conn)
    checkpoints = list(repository.iter_checkpoints(conn))
    if checkpoints and checkpoints[-1][0] > total:
        msg = (
            f"the trust published a checkpoint of {checkpoints[-1][0]} entries but the ledger now has "
            f"{total}: entries were removed (rollback)"
        )
        raise LedgerIntegrityError(msg, seq=total)
    computed: list[tuple[int, int, bytes]] = []
    verifier = StreamVerifier(anchors, origin=origin, on_node=lambda lv, ix, h: computed.append((lv, ix, h)))
    pending = iter(checkpoints)
    next_cp = next(pending, None)
    start = 0
    while start < total:
        end = min(total, start + chunk)
        rows = repository.entry_rows(conn, start, end)
        if len(rows) != end - start:
            have = {r[0] for r in rows}
            missing = next(s for s in range(start, end) if s not in have)
            msg = f"entry {missing} is missing (entries were deleted or reordered)"
            raise LedgerIntegrityError(msg, seq=missing)
        for seq, leaf, body in rows:
            if seq != verifier.report.entries:
                msg = f"entry {verifier.report.entries} is missing"
                raise LedgerIntegrityError(msg, seq=verifier.report.entries)
            verifier.add_entry(body, stored_leaf=leaf)
            while next_cp is not None and next_cp[0] == seq + 1:
                verifier.add_checkpoint(next_cp[1])
                next_cp = next(pending, None)
        if computed:
            stored: dict[Node, bytes] = {}
            for level in {lv for lv, _ix, _h in computed}:
                indices = [ix for lv, ix, _h in computed if lv == level]
                stored.update(repository.nodes_between(conn, level, min(indices), max(indices)))
            check_stored_nodes(computed, stored)
            computed.clear()
        progress(end, total)
        start = end
    return verifier.finish()
