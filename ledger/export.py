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
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

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


def _line_blocks(handle: IO[bytes], *, stop: int | None = None) -> Iterator[list[bytes]]:
    """Yield the file's lines (without their newline), a few MiB at a time, up to byte *stop* if given."""
    rest = b""
    while True:
        want = _BLOCK if stop is None else min(_BLOCK, stop - handle.tell())
        block = handle.read(want) if want > 0 else b""
        if not block:
            break
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


def _open_export(handle: IO[bytes], anchors: list[Verifier]) -> StreamVerifier:
    """Read the header line and return a verifier for the export's origin."""
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
    return StreamVerifier(anchors, origin=header.get("origin"))


def _feed(
    handle: IO[bytes],
    verifier: StreamVerifier,
    *,
    progress: Progress,
    total: int,
    stop: int | None = None,
    number: int = 1,
) -> int:
    """Feed the lines from the handle's position (up to byte *stop*) to *verifier*; return the last line number.

    *number* is the line number of the line before the handle's position (1: the header).
    """
    reported = verifier.report.entries
    for lines in _line_blocks(handle, stop=stop):
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
    return number


def verify_export(
    path: Path,
    anchors: list[Verifier],
    *,
    progress: Progress = _noop,
    total: int = 0,
    parallel: bool = True,
) -> VerifyReport:
    """Verify an export file with only the trusted public key(s); raise at the first fault.

    A large export on a machine with several cores is checked in two halves at
    once (see :func:`_verify_in_two`); the answer, and any error, is the same.
    """
    plan = _plan_split(path) if parallel and (os.cpu_count() or 1) > 1 else None
    if plan is not None:
        report = _verify_in_two(path, anchors, plan, progress=progress, total=total)
        if report is not None:
            return report
    with path.open("rb") as handle:
        verifier = _open_export(handle, anchors)
        _feed(handle, verifier, progress=progress, total=total)
    report = verifier.finish()
    progress(report.entries, total)
    return report


_PARALLEL_MIN_ENTRIES = 1 << 17  # below this, starting a second process costs more than it saves


def _seq_of_line(line: bytes) -> int | None:
    at = line.rfind(b'"seq":')
    digits = line[at + 6 :].split(b",", 1)[0] if at >= 0 else b""
    return int(digits) if digits.isdigit() else None


def _first_entry_from(handle: IO[bytes], position: int, *, line_start: bool) -> tuple[int, int | None] | None:
    """``(offset, seq)`` of the first entry line starting at or after *position*."""
    handle.seek(position)
    if not line_start:
        handle.readline()
    while True:
        offset = handle.tell()
        line = handle.readline()
        if not line:
            return None
        if line.startswith(_ENTRY_START):
            return offset, _seq_of_line(line)


def _plan_split(path: Path) -> tuple[int, int, int] | None:
    """Where to split a large export: ``(first seq of the second half, its byte offset, subtree level)``.

    The second half starts at a multiple of ``2**level`` so that its subtrees of
    up to that many leaves are subtrees of the whole tree. The entry count comes
    from the last entry and the offset from a binary search on ``seq``; if the
    file is not what that assumes, verification simply runs in one piece.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.readline()
        start = handle.tell()
        handle.seek(max(start, size - (1 << 16)))
        tail = handle.read().split(b"\n")
        last = next((_seq_of_line(line) for line in reversed(tail[1:]) if line.startswith(_ENTRY_START)), None)
        if last is None or last + 1 < _PARALLEL_MIN_ENTRIES:
            return None
        count = last + 1
        level = max(10, (count // 8).bit_length() - 1)
        first = (count // 2) >> level << level
        low, high = start, size
        while high - low > 1 << 16:
            middle = (low + high) // 2
            found = _first_entry_from(handle, middle, line_start=False)
            if found is None or found[1] is None or found[1] >= first:
                high = middle
            else:
                low = middle
        found = _first_entry_from(handle, low, line_start=low == start)
        while found is not None and found[1] is not None and found[1] < first:
            found = _first_entry_from(handle, found[0] + 1, line_start=False)
        if found is None or found[1] != first:
            return None
        return first, found[0], level


def _verify_in_two(
    path: Path, anchors: list[Verifier], plan: tuple[int, int, int], *, progress: Progress, total: int
) -> VerifyReport | None:
    """Verify the first part here while a second process checks the rest; None if the caller must redo it serially.

    The worker (:func:`ledger.verify.verify_range`) hashes and chains the
    entries from the split point and returns the tree's aligned subtrees at
    each checkpoint; this process checks the link across the split, the
    checkpoint signatures and roots, and the key entries, in order. A fault in
    the first part raises here as it would serially; if the worker finds a
    fault (or does not answer), this process goes on serially from the split
    point, so that the error names the same entry and reads the same.
    """
    first, offset, level = plan
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from ledger.verify import range_worker; range_worker(sys.argv[1:])"
    command = [sys.executable, "-c", code, str(path), str(offset), str(first), str(level)]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)  # noqa: S603 - our interpreter, our arguments
    with path.open("rb") as handle:
        try:
            verifier = _open_export(handle, anchors)
            number = _feed(handle, verifier, progress=progress, total=total, stop=offset)
            out, _ = worker.communicate()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        if handle.tell() != offset or verifier.report.entries != first:
            return None
        result = _worker_result(worker.returncode, out)
        if result is None or result["first_prev"].encode() != verifier.prev_hex:
            _feed(handle, verifier, progress=progress, total=total, number=number)  # raises as a serial run would
        else:
            verifier.join_range(result)
    report = verifier.finish()
    progress(report.entries, total)
    return report


def _worker_result(returncode: int | None, out: bytes) -> dict[str, Any] | None:
    if returncode != 0:
        return None
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        return None
    return result


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
    computed: dict[int, list[tuple[int, list[bytes]]]] = {}

    def on_layer(level: int, first: int, hashes: list[bytes]) -> None:
        computed.setdefault(level, []).append((first, hashes))

    verifier = StreamVerifier(anchors, origin=origin, on_layer=on_layer)
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


def _check_nodes(conn: Connection, computed: dict[int, list[tuple[int, list[bytes]]]]) -> None:
    """Compare the nodes recomputed from entries with the stored ones, one indexed range read per level."""
    for level, runs in sorted(computed.items()):
        low = min(first for first, _hashes in runs)
        high = max(first + len(hashes) - 1 for first, hashes in runs)
        stored = repository.node_hash_range(conn, level, low, high)
        for first, hashes in runs:
            if stored[first - low : first - low + len(hashes)] != hashes:
                found = repository.node_hashes(conn, level, first, first + len(hashes) - 1)
                for idx, value in enumerate(hashes, start=first):
                    got = found.get(idx)
                    check_stored_nodes([(level, idx, value)], {} if got is None else {Node(level, idx): got})
