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


_BLOCK = 1 << 22  # read 4 MiB at a time and split lines in C
_ENTRY_START = b'{"actor":'
_CHECKPOINT_START = b'{"note":'


def _line_blocks(handle: IO[bytes]) -> Iterator[list[bytes]]:
    """Yield the file's lines (without their newline), a few MiB at a time."""
    rest = b""
    while block := handle.read(_BLOCK):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


def verify_export(path: Path, anchors: list[Verifier], *, progress: Progress = _noop, total: int = 0) -> VerifyReport:
    """Verify an export file with only the trusted public key(s); raise at the first fault."""
    with path.open("rb") as handle:
        header_line = handle.readline()
        if not header_line:
            msg = "the export is empty"
            raise ValidationError(msg)
        try:
            header = json.loads(header_line.rstrip(b"\n"))
        except ValueError as exc:
            msg = f"line 1 is not the export header: {exc}"
            raise ValidationError(msg) from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            msg = f"not a datatrust ledger export (line 1 must be a {FORMAT} header)"
            raise ValidationError(msg)
        verifier = StreamVerifier(anchors, origin=header.get("origin"))
        number = 1
        reported = 0
        for lines in _line_blocks(handle):
            run: list[bytes] = []
            for line in lines:
                number += 1
                if line.startswith(_ENTRY_START):
                    run.append(line)
                    continue
                verifier.add_entries(run)
                run = []
                if line.startswith(_CHECKPOINT_START):
                    record = json.loads(line)
                    verifier.add_checkpoint(record["note"])
                else:
                    msg = f"line {number} is neither an entry nor a checkpoint"
                    raise LedgerIntegrityError(msg, seq=verifier.report.entries)
            verifier.add_entries(run)
            if verifier.report.entries - reported >= 50_000:  # noqa: PLR2004 - progress granularity
                reported = verifier.report.entries
                progress(reported, total)
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
    computed: dict[int, list[tuple[int, bytes]]] = {}

    def on_node(level: int, idx: int, value: bytes) -> None:
        computed.setdefault(level, []).append((idx, value))

    verifier = StreamVerifier(anchors, origin=origin, on_node=on_node)
    pending = iter(checkpoints)
    next_cp = next(pending, None)
    start = 0
    while start < total:
        end = min(total, start + chunk)
        rows = repository.scan_entry_rows(conn, start, end)
        if len(rows) != end - start:
            have = {r[0] for r in rows}
            missing = next(s for s in range(start, end) if s not in have)
            msg = f"entry {missing} is missing (entries were deleted or reordered)"
            raise LedgerIntegrityError(msg, seq=missing)
        if rows and rows[0][0] != verifier.report.entries:  # seq is the key: a full range is start..end-1
            msg = f"entry {verifier.report.entries} is missing"
            raise LedgerIntegrityError(msg, seq=verifier.report.entries)
        done = 0
        while done < len(rows):
            # up to the next checkpoint inside this chunk (it is checked right after its last entry)
            stop = len(rows) if next_cp is None else min(len(rows), max(done + 1, next_cp[0] - start))
            verifier.add_entries([r[2] for r in rows[done:stop]], [r[1] for r in rows[done:stop]])
            done = stop
            while next_cp is not None and next_cp[0] == start + done:
                verifier.add_checkpoint(next_cp[1])
                next_cp = next(pending, None)
        _check_nodes(conn, computed)
        computed.clear()
        progress(end, total)
        start = end
    return verifier.finish()


def _check_nodes(conn: Connection, computed: dict[int, list[tuple[int, bytes]]]) -> None:
    """Compare the nodes recomputed from entries with the stored ones, one indexed range read per level."""
    for level, nodes in sorted(computed.items()):
        indices = [idx for idx, _value in nodes]
        stored = repository.node_hashes(conn, level, min(indices), max(indices))
        for idx, value in nodes:
            if stored.get(idx) != value:
                found = stored.get(idx)
                check_stored_nodes([(level, idx, value)], {} if found is None else {Node(level, idx): found})
