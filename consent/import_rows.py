"""Reading consent rows from CSV, JSON Lines and FHIR files, streaming (see ``consent/importer.py``).

Every function yields ``(line number, raw row)`` pairs, or the error that makes a row
unreadable, without holding the file in memory (a FHIR Bundle, being one JSON
document, is the exception).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError as PydanticValidationError

from consent import fhir
from ledger.errors import DomainError, ValidationError

Format = Literal["csv", "jsonl", "fhir"]
Record = tuple[int, Any]  # (line number, what convert() turns into a raw row)
LIST_FIELDS = frozenset({"purposes", "categories", "recipients", "operations"})
BOOL_FIELDS = frozenset({"explicit", "on_behalf"})
TRUE, FALSE = frozenset({"true", "yes", "y", "1"}), frozenset({"false", "no", "n", "0", ""})
BOOLEANS = TRUE | FALSE
_SPLIT = re.compile(r"[;\s]+")


def _csv_row(row: dict[str | None, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            msg = "the row has more fields than the header"
            raise ValidationError(msg)
        text = value.strip() if value else ""
        if key in LIST_FIELDS:
            raw[key] = [p for p in _SPLIT.split(text) if p] if text else None
        elif key in BOOL_FIELDS:
            lowered = text.lower()
            if lowered not in BOOLEANS:
                msg = f"{key} must be true or false, not {text!r}"
                raise ValidationError(msg)
            raw[key] = lowered in TRUE
        elif text:
            raw[key] = text
    return raw


def _flat_person(raw: dict[str, Any]) -> dict[str, Any]:
    if "name" in raw or "contact" in raw:
        raw = dict(raw)
        raw["person"] = {"name": raw.pop("name", ""), "contact": raw.pop("contact", "")}
    return raw


def read_rows(path: Path, fmt: Format, *, organisation: str) -> Iterator[tuple[int, dict[str, Any] | DomainError]]:
    """Yield ``(line number, raw row or the error that makes it unreadable)`` for every row of *path*."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header, records = read_records(handle, fmt, organisation=organisation)
        for line, record in records:
            yield line, convert(fmt, header, record)


def read_records(handle: IO[str], fmt: Format, *, organisation: str) -> tuple[list[str] | None, Iterator[Record]]:
    """``(CSV header or None, records)``: the cheap, sequential half of reading (see :func:`convert`).

    A CSV record is the row's list of fields and a JSON Lines record the line's
    text; FHIR records are already converted (a Bundle is one document anyway).
    Records are plain values, so :func:`convert` can run in another process.
    """
    if fmt == "csv":
        reader = csv.reader(handle)
        header = next(reader, None)  # what csv.DictReader takes as its field names
        return header, ((reader.line_num, values) for values in reader if values != [])
    if fmt == "jsonl":
        return None, ((number, line) for number, line in enumerate(handle, start=1) if line.strip())
    return None, _read_fhir(handle, organisation=organisation)


def convert(fmt: Format, header: list[str] | None, record: Any) -> dict[str, Any] | DomainError:
    """The raw row (ConsentIn's fields) of one record from :func:`read_records`, or what makes it unreadable."""
    if fmt == "csv":
        try:
            return _flat_person(_csv_row(_csv_fields(header or [], record)))
        except DomainError as exc:
            return exc
    if fmt == "jsonl":
        return _json_object(record, _flat_person)
    result: dict[str, Any] | DomainError = record
    return result


def _csv_fields(header: list[str], values: list[str]) -> dict[str | None, Any]:
    """The row as ``csv.DictReader`` gives it: extra fields under None, missing ones None."""
    row: dict[str | None, Any] = dict(zip(header, values, strict=False))
    if len(values) > len(header):
        row[None] = values[len(header) :]
    else:
        for key in header[len(values) :]:
            row[key] = None
    return row


def _json_object(text: str, shape: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any] | DomainError:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return ValidationError(f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return ValidationError("each line must be a JSON object")
    try:
        return shape(obj)
    except DomainError as exc:
        return exc


def _first_document(handle: IO[str]) -> tuple[int, Any]:
    """The first JSON document: one line, or (pretty-printed) the whole rest of the file."""
    for number, line in enumerate(handle, start=1):
        if line.strip():
            try:
                return number, json.loads(line)
            except ValueError:
                return number, _json_object(line + handle.read(), lambda obj: obj)
    return 0, None


def _read_fhir(handle: IO[str], *, organisation: str) -> Iterator[tuple[int, dict[str, Any] | DomainError]]:
    """A Bundle, a single Consent (either may be pretty-printed), or NDJSON with one Consent a line."""

    def draft(resource: dict[str, Any]) -> dict[str, Any]:
        return fhir.draft_from_fhir(resource, organisation=organisation)

    number, whole = _first_document(handle)
    if isinstance(whole, DomainError):
        yield number, whole
        return
    if isinstance(whole, dict) and whole.get("resourceType") == "Bundle":
        for index, entry in enumerate(whole.get("entry", []) or [], start=1):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            yield index, _json_object(json.dumps(resource), draft)
        return
    if whole is not None:
        yield number, _json_object(json.dumps(whole), draft)
    for later, line in enumerate(handle, start=number + 1):
        if line.strip():
            yield later, _json_object(line, draft)


def message(exc: Exception) -> str:
    """One line saying what is wrong with a row."""
    if isinstance(exc, PydanticValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
    return exc.detail if isinstance(exc, DomainError) else str(exc)
