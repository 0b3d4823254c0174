"""Vocabularies of purposes and data categories: dotted hierarchies with plain-language labels.

A code such as ``research.health`` names a node in a tree; its parent is
``research``. Consent to a broader code covers every narrower code below it,
never the reverse (DESIGN.md, "Consent")::

    research ──┬── research.health        covers("research", "research.health")   -> True
               └── research.social        covers("research.health", "research")   -> False
                                          covers("research", "researcher")        -> False

Data categories may be *special* (UK GDPR Art. 9 and 10); every code below a
special category is special too, whatever its own entry says.

The trust adopts a vocabulary by appending a ``trust.configured`` entry whose
payload is ``{"vocabulary": <document>, "vocabulary_hash": <hex>}``; the document
is :meth:`Vocabulary.to_document`, and the hash is the SHA-256 of its RFC 8785
canonical bytes, so anyone can recompute it from the entry alone. Until a
vocabulary has been adopted, the default shipped in ``vocabulary.toml`` applies.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from ledger.canonical import canonicalize
from ledger.errors import ValidationError

Kind = Literal["purposes", "categories"]
KINDS: tuple[Kind, ...] = ("purposes", "categories")
SINGULAR = {"purposes": "purpose", "categories": "data category"}
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
MAX_CODE_LENGTH = 64
DEFAULT_PATH = Path(__file__).with_name("vocabulary.toml")


def code_covers(broader: str, narrower: str) -> bool:
    """Whether *broader* is *narrower* or one of its ancestors (a purely structural test)."""
    return narrower == broader or narrower.startswith(broader + ".")


def ancestors(code: str) -> list[str]:
    """*code* and every code above it, narrowest first (``a.b.c`` -> ``a.b.c``, ``a.b``, ``a``)."""
    parts = code.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


@dataclass(frozen=True, slots=True)
class Term:
    """One code of a vocabulary, with the words people read."""

    code: str
    label: str
    description: str
    special: bool = False

    @property
    def parent(self) -> str | None:
        """The next broader code, or None at the top of the tree."""
        return self.code.rpartition(".")[0] or None


class Vocabulary:
    """The purposes and data categories of one trust, as adopted on the ledger."""

    __slots__ = ("_special", "categories", "hash", "purposes", "version")

    def __init__(self, *, version: str, purposes: Mapping[str, Term], categories: Mapping[str, Term]) -> None:
        self.version = version
        self.purposes = dict(purposes)
        self.categories = {code: _inherit_special(term, categories) for code, term in categories.items()}
        self._special = frozenset(code for code, term in self.categories.items() if term.special)
        self.hash = hashlib.sha256(canonicalize(self.to_document())).hexdigest()

    def __repr__(self) -> str:
        return f"Vocabulary(version={self.version!r}, hash={self.hash[:12]}…)"

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Vocabulary:
        """Build and check a vocabulary from its document (the TOML tables or the ledger JSON)."""
        version = document.get("version")
        if not isinstance(version, str) or not version.strip():
            msg = "the vocabulary needs a non-empty version string"
            raise ValidationError(msg)
        terms: dict[str, dict[str, Term]] = {}
        for kind in KINDS:
            table = document.get(kind)
            if not isinstance(table, Mapping) or not table:
                msg = f"the vocabulary needs a non-empty [{kind}] table"
                raise ValidationError(msg)
            terms[kind] = {code: _term(kind, code, body) for code, body in table.items()}
            for code in terms[kind]:
                parent = code.rpartition(".")[0]
                if parent and parent not in terms[kind]:
                    msg = f"{SINGULAR[kind]} {code!r} has no parent: add {parent!r} to the vocabulary"
                    raise ValidationError(msg)
        return cls(version=version.strip(), purposes=terms["purposes"], categories=terms["categories"])

    @classmethod
    def from_toml(cls, text: str) -> Vocabulary:
        """Parse a vocabulary TOML file's text."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"the vocabulary is not valid TOML: {exc}"
            raise ValidationError(msg) from exc
        return cls.from_document(document)

    @classmethod
    def default(cls) -> Vocabulary:
        """The vocabulary shipped with datatrust (``consent/vocabulary.toml``)."""
        return _default()

    def to_document(self) -> dict[str, Any]:
        """The JSON form recorded in ``trust.configured`` (special flags already inherited)."""
        return {
            "version": self.version,
            "purposes": {c: {"label": t.label, "description": t.description} for c, t in sorted(self.purposes.items())},
            "categories": {
                c: {"label": t.label, "description": t.description, "special": t.special}
                for c, t in sorted(self.categories.items())
            },
        }

    # -- questions -----------------------------------------------------------------------

    def terms(self, kind: Kind) -> dict[str, Term]:
        """Every term of one kind."""
        return self.purposes if kind == "purposes" else self.categories

    def covers(self, broader: str, narrower: str) -> bool:
        """Whether consent to *broader* covers *narrower* in this hierarchy (never the reverse)."""
        return code_covers(broader, narrower)

    def is_special(self, code: str) -> bool:
        """Whether a data category (or any category above it) is a special category."""
        if code in self.categories:
            return code in self._special
        return any(self.categories[a].special for a in ancestors(code) if a in self.categories)

    def special_among(self, codes: Iterable[str]) -> list[str]:
        """The special categories among *codes*, in order."""
        return [code for code in codes if (code in self._special if code in self.categories else self.is_special(code))]

    def closest(self, code: str, kind: Kind = "categories", *, limit: int = 3) -> list[str]:
        """Known codes that look like *code*, best first (for "did you mean" messages)."""
        known = sorted(self.terms(kind))
        found = difflib.get_close_matches(code, known, n=limit, cutoff=0.6)
        last = code.rpartition(".")[2]
        by_leaf = {k.rpartition(".")[2]: k for k in known}
        for leaf in difflib.get_close_matches(last, list(by_leaf), n=limit, cutoff=0.75):
            if by_leaf[leaf] not in found:
                found.append(by_leaf[leaf])
        return found[:limit]

    def check(self, kind: Kind, codes: Iterable[str], *, field: str | None = None) -> list[str]:
        """Return *codes* without duplicates, in order, or raise naming every unknown code."""
        terms = self.terms(kind)
        codes = list(codes)
        if codes and terms.keys() >= set(codes):  # the common case, kept short
            return list(dict.fromkeys(codes))
        field = field or kind
        result: list[str] = []
        errors: list[dict[str, Any]] = []
        for index, code in enumerate(codes):
            if code in self.terms(kind):
                if code not in result:
                    result.append(code)
                continue
            closest = self.closest(str(code), kind)
            hint = f"; did you mean {' or '.join(repr(c) for c in closest)}?" if closest else ""
            errors.append(
                {
                    "field": f"{field}[{index}]",
                    "code": code,
                    "closest": closest,
                    "message": f"unknown {SINGULAR[kind]} {code!r}{hint}",
                }
            )
        if errors:
            raise ValidationError("; ".join(e["message"] for e in errors), errors=errors)
        if not result:
            msg = f"name at least one {SINGULAR[kind]}"
            raise ValidationError(msg, errors=[{"field": field, "message": msg}])
        return result

    def label(self, kind: Kind, code: str) -> str:
        """The plain-language label of a code (the code itself if it is no longer in the vocabulary)."""
        term = self.terms(kind).get(code)
        return term.label if term is not None else code

    def describe(self, kind: Kind, code: str) -> str:
        """The plain-language description of a code (empty if unknown)."""
        term = self.terms(kind).get(code)
        return term.description if term is not None else ""


def _term(kind: Kind, code: object, body: object) -> Term:
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH or not CODE_PATTERN.match(code):
        msg = (
            f"invalid {SINGULAR[kind]} code {code!r}: use lower-case words joined by dots "
            f"(letters, digits, underscores; at most {MAX_CODE_LENGTH} characters)"
        )
        raise ValidationError(msg)
    if not isinstance(body, Mapping):
        msg = f"{SINGULAR[kind]} {code!r} must be a table with a label and a description"
        raise ValidationError(msg)
    label, description, special = body.get("label"), body.get("description", ""), body.get("special", False)
    if not isinstance(label, str) or not label.strip():
        msg = f"{SINGULAR[kind]} {code!r} needs a plain-language label"
        raise ValidationError(msg)
    if not isinstance(description, str) or not isinstance(special, bool):
        msg = f"{SINGULAR[kind]} {code!r}: description must be text and special must be true or false"
        raise ValidationError(msg)
    if special and kind == "purposes":
        msg = f"purpose {code!r} cannot be special: only data categories are"
        raise ValidationError(msg)
    return Term(code, label.strip(), description.strip(), special)


def _inherit_special(term: Term, categories: Mapping[str, Term]) -> Term:
    special = any(categories[a].special for a in ancestors(term.code) if a in categories)
    return term if special == term.special else Term(term.code, term.label, term.description, special)


@cache
def _default() -> Vocabulary:
    return Vocabulary.from_toml(DEFAULT_PATH.read_text(encoding="utf-8"))


@cache
def from_document_cached(document_json: str) -> Vocabulary:
    """Parse a vocabulary from its canonical JSON text, once per process (documents are immutable)."""
    return Vocabulary.from_document(json.loads(document_json))
