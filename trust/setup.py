"""Starting a trust: the first entries of a new ledger, and key rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.entry import LedgerEntry
from ledger.keys import Verifier
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from trust.config import GovernanceConfig

TRUST_ACTOR = "trust"


def configure_trust(
    ledger: Ledger,
    *,
    name: str,
    mission: str,
    settings: dict[str, Any],
    now: datetime,
    governance: GovernanceConfig | None = None,
) -> list[LedgerEntry]:
    """Record ``trust.configured`` and announce the log key (``key.added``), atomically.

    The first ``trust.configured`` also adopts the governance configuration (*governance*, or
    the shipped default): its ``governance`` and ``governance_hash`` members (see ``trust/config.py``).
    """
    adopted = (governance or GovernanceConfig.default()).payload()
    return ledger.append_all(
        [
            AppendSpec(
                "trust.configured",
                TRUST_ACTOR,
                now,
                payload={"name": name, "mission": mission, "origin": ledger.origin, "settings": settings, **adopted},
            ),
            AppendSpec(
                "key.added",
                TRUST_ACTOR,
                now,
                payload={"verifier_key": ledger.signer.verifier.to_text(), "purpose": "checkpoint"},
            ),
        ],
        checkpoint=True,
    )


def announce_key(ledger: Ledger, new: Verifier, *, now: datetime) -> LedgerEntry:
    """Announce a new checkpoint key, under a checkpoint signed by the current key."""
    return ledger.append(
        "key.added",
        {"verifier_key": new.to_text(), "purpose": "checkpoint"},
        actor=TRUST_ACTOR,
        now=now,
        checkpoint=True,
    )


def revoke_key(ledger: Ledger, old: Verifier, *, reason: str, now: datetime) -> LedgerEntry:
    """Revoke a checkpoint key; checkpoints it signed before this entry stay valid."""
    return ledger.append(
        "key.revoked", {"verifier_key": old.to_text(), "reason": reason}, actor=TRUST_ACTOR, now=now, checkpoint=True
    )
