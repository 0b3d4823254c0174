"""The governance configuration: a TOML document adopted as a ``trust.configured`` ledger entry.

The shipped default is ``trust/governance.toml`` (every setting explained there and in
GOVERNANCE.md). A configuration is adopted by appending ``trust.configured`` with the payload::

    {"governance": {…the validated document, JSON values only…},
     "governance_hash": "<hex SHA-256 of the RFC 8785 bytes of the document>"}

(The first entry of a trust also carries ``name``, ``mission``, ``origin`` and ``settings``;
the consent vocabularies are adopted by ``trust.configured`` entries *without* a
``governance`` member, which the governance projector ignores.)

A configuration takes effect from its entry: the one in force at any moment is the last one
recorded before it. An access request records the ``config_seq`` in force when it was
submitted, and that configuration — not a later one — sets its notice and voting periods,
quorum and decision rule, so nobody can change the rules of a vote already under way.

Exported as a template (:meth:`GovernanceConfig.to_toml`), it can start another trust
(``datatrust init --template FILE``): a mission set up in one place reproduced in another.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from consent import service as consent_service
from consent.vocabulary import Vocabulary
from ledger import repository
from ledger.canonical import canonicalize
from ledger.entry import LedgerEntry
from ledger.errors import NotFoundError, ValidationError
from ledger.service import Ledger
from trust.models import configs_table

DEFAULT_PATH = Path(__file__).with_name("governance.toml")
FORMAT_VERSION = 1
RULES = ("simple_majority", "two_thirds", "unanimity", "any_veto")
TIE_BREAKS = ("chair", "reject")
RECORDERS = ("member", "chair")
OPERATIONS = ("aggregate", "pseudonymised", "identifiable")  # least to most identifying
MAX_DAYS = 3650  # ten years: a sanity bound on every period in days

# section -> key -> (type, minimum, maximum); lists are of strings
_INT = "int"
_STR = "str"
_BOOL = "bool"
_LIST = "list"
SCHEMA: dict[str, dict[str, tuple[str, int | None, int | None]]] = {
    "quorum": {"minimum_votes": (_INT, 1, 1000), "percent_of_eligible": (_INT, 0, 100)},
    "decision": {"rule": (_STR, None, None), "tie_break": (_STR, None, None)},
    "periods": {"notice_days": (_INT, 0, MAX_DAYS), "voting_days": (_INT, 1, MAX_DAYS)},
    "requests": {"min_duration_days": (_INT, 1, MAX_DAYS), "max_duration_days": (_INT, 1, MAX_DAYS)},
    "outputs": {"min_cohort_size": (_INT, 1, 1_000_000)},
    "ethics": {"recorded_by": (_STR, None, None), "categories_requiring_approval": (_LIST, None, None)},
    "fast_track": {
        "enabled": (_BOOL, None, None),
        "operations": (_LIST, None, None),
        "approvals_needed": (_INT, 1, 1000),
        "voting_days": (_INT, 1, MAX_DAYS),
    },
}


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    """A validated governance configuration (see ``trust/governance.toml`` for the meaning of each field)."""

    quorum_minimum_votes: int
    quorum_percent_of_eligible: int
    rule: str
    tie_break: str
    notice_days: int
    voting_days: int
    min_duration_days: int
    max_duration_days: int
    min_cohort_size: int
    ethics_recorded_by: str
    categories_requiring_approval: tuple[str, ...]
    fast_track_enabled: bool
    fast_track_operations: tuple[str, ...]
    fast_track_approvals_needed: int
    fast_track_voting_days: int

    # -- constructors --------------------------------------------------------------------

    @classmethod
    def default(cls) -> GovernanceConfig:
        """The shipped default configuration."""
        return cls.from_toml(DEFAULT_PATH.read_text())

    @classmethod
    def from_toml(cls, text: str) -> GovernanceConfig:
        """Parse and validate a TOML document (a ``[template]`` table, if present, is ignored)."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"governance config is not valid TOML: {exc}"
            raise ValidationError(msg) from exc
        document.pop("template", None)
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> GovernanceConfig:
        """Validate a document (parsed TOML or a ledger payload) and build the configuration."""
        _check_shape(document)
        q, d, p = document["quorum"], document["decision"], document["periods"]
        r, o, e, f = document["requests"], document["outputs"], document["ethics"], document["fast_track"]
        config = cls(
            quorum_minimum_votes=q["minimum_votes"],
            quorum_percent_of_eligible=q["percent_of_eligible"],
            rule=d["rule"],
            tie_break=d["tie_break"],
            notice_days=p["notice_days"],
            voting_days=p["voting_days"],
            min_duration_days=r["min_duration_days"],
            max_duration_days=r["max_duration_days"],
            min_cohort_size=o["min_cohort_size"],
            ethics_recorded_by=e["recorded_by"],
            categories_requiring_approval=tuple(e["categories_requiring_approval"]),
            fast_track_enabled=f["enabled"],
            fast_track_operations=tuple(f["operations"]),
            fast_track_approvals_needed=f["approvals_needed"],
            fast_track_voting_days=f["voting_days"],
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ValidationError` naming the first setting that is not acceptable."""
        checks = [
            (self.rule in RULES, f"decision.rule must be one of {', '.join(RULES)}; got {self.rule!r}"),
            (
                self.tie_break in TIE_BREAKS,
                f"decision.tie_break must be one of {', '.join(TIE_BREAKS)}; got {self.tie_break!r}",
            ),
            (
                self.ethics_recorded_by in RECORDERS,
                f"ethics.recorded_by must be one of {', '.join(RECORDERS)}; got {self.ethics_recorded_by!r}",
            ),
            (
                self.min_duration_days <= self.max_duration_days,
                "requests.min_duration_days must not exceed requests.max_duration_days",
            ),
            (
                all(op in OPERATIONS for op in self.fast_track_operations),
                f"fast_track.operations may only contain {', '.join(OPERATIONS)}",
            ),
            (
                "identifiable" not in self.fast_track_operations,
                "fast_track.operations must not contain identifiable: identifiable output always needs a full vote",
            ),
            (
                all(_is_code(c) for c in self.categories_requiring_approval),
                "ethics.categories_requiring_approval must hold dotted lower-case category codes",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValidationError(message)

    # -- output --------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """The configuration as a JSON/TOML document (the ``governance`` member of the entry)."""
        return {
            "version": FORMAT_VERSION,
            "quorum": {
                "minimum_votes": self.quorum_minimum_votes,
                "percent_of_eligible": self.quorum_percent_of_eligible,
            },
            "decision": {"rule": self.rule, "tie_break": self.tie_break},
            "periods": {"notice_days": self.notice_days, "voting_days": self.voting_days},
            "requests": {"min_duration_days": self.min_duration_days, "max_duration_days": self.max_duration_days},
            "outputs": {"min_cohort_size": self.min_cohort_size},
            "ethics": {
                "recorded_by": self.ethics_recorded_by,
                "categories_requiring_approval": list(self.categories_requiring_approval),
            },
            "fast_track": {
                "enabled": self.fast_track_enabled,
                "operations": list(self.fast_track_operations),
                "approvals_needed": self.fast_track_approvals_needed,
                "voting_days": self.fast_track_voting_days,
            },
        }

    @property
    def governance_hash(self) -> str:
        """Hex SHA-256 of the RFC 8785 bytes of :meth:`to_document`."""
        return hashlib.sha256(canonicalize(self.to_document())).hexdigest()

    def payload(self) -> dict[str, Any]:
        """The governance members of a ``trust.configured`` payload."""
        return {"governance": self.to_document(), "governance_hash": self.governance_hash}

    def to_toml(self, *, template: dict[str, str | int] | None = None) -> str:
        """Render as a TOML template another trust can adopt (``[template]`` carries provenance)."""
        lines = [
            "# Governance configuration exported from a data trust.",
            "# Start a new trust from it with: datatrust init --template THIS_FILE",
            "",
        ]
        document = self.to_document()
        lines.append(f"version = {_toml_value(document.pop('version'))}")
        if template:
            lines += ["", "[template]"] + [f"{key} = {_toml_value(value)}" for key, value in template.items()]
        for section, values in document.items():
            lines += ["", f"[{section}]"] + [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    msg = f"cannot render {type(value).__name__} as TOML"
    raise TypeError(msg)


def _is_code(code: object) -> bool:
    return (
        isinstance(code, str)
        and bool(code)
        and all(part and part.replace("_", "").isalnum() and part.islower() for part in code.split("."))
    )


def _check_shape(document: dict[str, Any]) -> None:  # noqa: C901, PLR0912 - one pass over a small schema
    if not isinstance(document, dict):
        msg = "governance config must be a table"
        raise ValidationError(msg)
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        msg = f"governance config version {version!r} is not supported (expected {FORMAT_VERSION})"
        raise ValidationError(msg)
    unknown = set(document) - set(SCHEMA) - {"version"}
    if unknown:
        msg = f"unknown governance config section(s): {', '.join(sorted(unknown))}"
        raise ValidationError(msg)
    for section, keys in SCHEMA.items():
        values = document.get(section)
        if not isinstance(values, dict):
            msg = f"governance config is missing the [{section}] table"
            raise ValidationError(msg)
        extra = set(values) - set(keys)
        if extra:
            msg = f"unknown setting(s) in [{section}]: {', '.join(sorted(extra))}"
            raise ValidationError(msg)
        for key, (kind, low, high) in keys.items():
            name = f"{section}.{key}"
            if key not in values:
                msg = f"governance config is missing {name}"
                raise ValidationError(msg)
            value = values[key]
            if kind == _INT:
                if not isinstance(value, int) or isinstance(value, bool):
                    msg = f"{name} must be a whole number; got {value!r}"
                    raise ValidationError(msg)
                if (low is not None and value < low) or (high is not None and value > high):
                    msg = f"{name} must be between {low} and {high}; got {value}"
                    raise ValidationError(msg)
            elif kind == _BOOL and not isinstance(value, bool):
                msg = f"{name} must be true or false; got {value!r}"
                raise ValidationError(msg)
            elif kind == _STR and not isinstance(value, str):
                msg = f"{name} must be a string; got {value!r}"
                raise ValidationError(msg)
            elif kind == _LIST and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                msg = f"{name} must be a list of strings"
                raise ValidationError(msg)


def load_template(path: Path) -> tuple[GovernanceConfig, dict[str, Any]]:
    """Read an exported template: the configuration and its ``[template]`` provenance (may be empty)."""
    text = path.read_text()
    try:
        provenance = tomllib.loads(text).get("template", {})
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ValidationError(msg) from exc
    return GovernanceConfig.from_toml(text), dict(provenance) if isinstance(provenance, dict) else {}


# -- adoption and reads ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdoptedConfig:
    """A configuration as recorded on the ledger: the entry that adopted it and when."""

    seq: int
    at: str
    governance_hash: str
    config: GovernanceConfig


def adopt_config(ledger: Ledger, config: GovernanceConfig, *, actor: str, now: datetime) -> LedgerEntry:
    """Record a new governance configuration, in force from this entry on."""
    config.validate()
    return ledger.append("trust.configured", config.payload(), actor=actor, now=now)


def _row_to_adopted(row: Any) -> AdoptedConfig:
    return AdoptedConfig(
        seq=int(row.seq),
        at=str(row.at),
        governance_hash=str(row.governance_hash),
        config=GovernanceConfig.from_document(json.loads(row.document)),
    )


def config_in_force(conn: Connection) -> AdoptedConfig:
    """The configuration recorded last (the one a new request is governed by)."""
    row = conn.execute(select(configs_table).order_by(configs_table.c.seq.desc()).limit(1)).first()
    if row is None:
        msg = "no governance configuration has been adopted: record one with PUT /v1/governance/config"
        raise NotFoundError(msg)
    return _row_to_adopted(row)


def config_by_seq(conn: Connection, seq: int) -> AdoptedConfig:
    """The configuration adopted by entry *seq*."""
    row = conn.execute(select(configs_table).where(configs_table.c.seq == seq)).first()
    if row is None:
        msg = f"ledger entry {seq} did not adopt a governance configuration"
        raise NotFoundError(msg)
    return _row_to_adopted(row)


def config_history(conn: Connection) -> list[AdoptedConfig]:
    """Every adopted configuration, oldest first."""
    return [_row_to_adopted(row) for row in conn.execute(select(configs_table).order_by(configs_table.c.seq))]


def export_template(conn: Connection, *, source: str) -> str:
    """The configuration in force as a TOML template, with its provenance and the trust's mission."""
    adopted = config_in_force(conn)
    first = repository.get_entry(conn, 0)
    mission = first.payload.get("mission") if first is not None and first.kind == "trust.configured" else None
    provenance: dict[str, str | int] = {"source": source}
    if isinstance(mission, str):
        provenance["mission"] = mission
    provenance |= {"config_seq": adopted.seq, "governance_hash": adopted.governance_hash}
    return adopted.config.to_toml(template=provenance)


def vocabulary_in_force(conn: Connection) -> Vocabulary:
    """The consent vocabulary in force (the shipped default until one is adopted)."""
    return consent_service.vocabulary_in_force(conn)[1]


def special_categories(conn: Connection, categories: list[str]) -> list[str]:
    """The *categories* that are special (UK GDPR Art. 9 and 10) in the vocabulary in force."""
    vocabulary = vocabulary_in_force(conn)
    return [c for c in categories if vocabulary.is_special(c)]


def categories_needing_ethics(conn: Connection, config: GovernanceConfig, categories: list[str]) -> list[str]:
    """The *categories* that need an ethics approval: special ones and those *config* lists (or below them)."""
    special = set(special_categories(conn, categories))
    listed = config.categories_requiring_approval
    return [c for c in categories if c in special or any(c == x or c.startswith(x + ".") for x in listed)]
