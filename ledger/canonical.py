"""RFC 8785 (JCS) canonical bytes: the only bytes the ledger hashes or signs."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ledger.errors import ValidationError

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]


def _reject_floats(value: Any, path: str = "$") -> None:
    if isinstance(value, float):
        msg = f"floating-point number at {path}: the ledger stores integers and strings only"
        raise ValidationError(msg)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"non-string key {key!r} at {path}"
                raise ValidationError(msg)
            _reject_floats(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_floats(item, f"{path}[{index}]")


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of *value* (no floats allowed)."""
    _reject_floats(value)
    try:
        return rfc8785.dumps(value)
    except (ValueError, TypeError) as exc:  # CanonicalizationError, and UnicodeEncodeError for lone surrogates
        msg = f"value cannot be canonicalised: {exc}"
        raise ValidationError(msg) from exc


def parse(data: bytes) -> Any:
    """Parse canonical bytes back to Python values (for reading, never for re-hashing)."""
    return json.loads(data)
