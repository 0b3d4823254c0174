"""A trust on disk: its data directory, keys, database and ledger.

Layout of a data directory::

    datatrust.toml        the trust's name and log origin
    datatrust.db          SQLite database (unless DATATRUST_DATABASE_URL names PostgreSQL)
    keys/log.key          Ed25519 checkpoint key (0600, never logged)
    keys/vault.key        vault master key (0600)
    keys/token.key        Ed25519 JWK signing access tokens; cookie keys derive from it (0600)
    keys/verifiers.txt    every checkpoint verifier key this trust has used, newest last
    keys/webhook.key      Ed25519 key signing webhooks (v1a), created on first use (0600)
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from api.auth.keys import create_token_key
from consent import projections as consent_projections
from ledger.db import Database
from ledger.errors import ValidationError
from ledger.keys import Signer, Verifier
from ledger.service import Ledger, system_clock
from ledger.vault import Vault
from migrations import upgrade
from trust import identity
from trust import projections as governance_projections
from trust.checks import CheckService, record_projections
from trust.config import GovernanceConfig
from trust.setup import configure_trust
from trust.webhooks import register_projectors as register_webhook_projectors

CONFIG_NAME = "datatrust.toml"


@dataclass
class Instance:
    """Everything one running trust needs, created once per process."""

    data_dir: Path
    name: str
    origin: str
    db: Database
    ledger: Ledger
    vault: Vault
    clock: Callable[[], datetime]
    checks: CheckService | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        clock: Callable[[], datetime] = system_clock,
        database_url: str | None = None,
        checkpoint_interval: float = 1.0,
        check_index: bool = True,
    ) -> Instance:
        """Open an initialised data directory (runs pending migrations).

        *check_index*: start the check engine's in-memory index (``checks``), which
        folds every entry; a command that only writes (the bulk import) needs none.
        """
        config_path = data_dir / CONFIG_NAME
        if not config_path.exists():
            msg = f"{data_dir} is not a datatrust data directory (no {CONFIG_NAME}); run `datatrust init` first"
            raise ValidationError(msg)
        config = tomllib.loads(config_path.read_text())
        trust = config.get("trust", {})
        db = Database.from_url(database_url) if database_url else Database.for_data_dir(data_dir)
        upgrade(db.url)
        signer = Signer.load(data_dir / "keys" / "log.key")
        verifiers = [Verifier.from_text(line) for line in _lines(data_dir / "keys" / "verifiers.txt")]
        ledger = Ledger(
            db,
            signer=signer,
            origin=trust["origin"],
            verifiers=[v for v in verifiers if v != signer.verifier],
            clock=clock,
            checkpoint_interval=checkpoint_interval,
        )
        vault = Vault.from_file(data_dir / "keys" / "vault.key")
        ledger.projectors.register_rows(
            ["check.decided"], record_projections, tables=["check_decisions", "check_subjects"]
        )
        governance_projections.register(ledger.projectors)
        consent_projections.register(ledger)
        identity.register_projectors(ledger.projectors)
        register_webhook_projectors(ledger.projectors)  # outbox (same transaction) and deletions
        instance = cls(data_dir, trust["name"], trust["origin"], db, ledger, vault, clock)
        if check_index:
            instance.checks = CheckService(ledger)
        return instance

    def close(self) -> None:
        """Stop the ledger writer and close database connections."""
        if self.checks is not None:
            self.checks.close()
        self.ledger.close()
        self.db.dispose()


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def origin_for(name: str) -> str:
    """A C2SP log origin derived from the trust's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "trust"
    return f"datatrust.local/{slug}"


def initialise(
    data_dir: Path,
    *,
    name: str,
    mission: str,
    settings: dict[str, Any] | None = None,
    clock: Callable[[], datetime] = system_clock,
    database_url: str | None = None,
    governance: GovernanceConfig | None = None,
) -> Instance:
    """Create a new trust in *data_dir*: config, keys, database, first ledger entries."""
    config_path = data_dir / CONFIG_NAME
    if config_path.exists():
        msg = f"{data_dir} already holds a trust; refusing to initialise it again"
        raise ValidationError(msg)
    data_dir.mkdir(parents=True, exist_ok=True)
    origin = origin_for(name)
    signer = Signer.generate(origin)
    signer.save(data_dir / "keys" / "log.key")
    Vault.create_master_key(data_dir / "keys" / "vault.key")
    create_token_key(data_dir)  # keys/token.key: signs access tokens (separate from the log key)
    (data_dir / "keys" / "verifiers.txt").write_text(signer.verifier.to_text() + "\n")
    name_toml = name.replace("\\", "\\\\").replace('"', '\\"')
    config_path.write_text(f'[trust]\nname = "{name_toml}"\norigin = "{origin}"\n')
    instance = Instance.open(data_dir, clock=clock, database_url=database_url)
    configure_trust(
        instance.ledger, name=name, mission=mission, settings=settings or {}, now=clock(), governance=governance
    )
    return instance


def rotate_log_key(instance: Instance) -> tuple[Verifier, Verifier]:
    """Replace the checkpoint key: announce the new one, switch, revoke the old one.

    Run it while no server is using this data directory (servers read the key at start).
    """
    from trust.setup import announce_key, revoke_key  # noqa: PLC0415 - keeps import graph light

    keys = instance.data_dir / "keys"
    old = instance.ledger.signer
    new = Signer.generate(instance.origin)
    announce_key(instance.ledger, new.verifier, now=instance.clock())
    instance.ledger.close()
    retired = keys / f"log-{old.verifier.key_id.hex()}.retired.key"
    (keys / "log.key").rename(retired)
    new.save(keys / "log.key")
    with (keys / "verifiers.txt").open("a") as handle:
        handle.write(new.verifier.to_text() + "\n")
    retired.unlink()  # the old private key is no longer needed: its checkpoints verify with its public key
    instance.ledger = Ledger(
        instance.db, signer=new, origin=instance.origin, verifiers=[old.verifier], clock=instance.clock
    )
    revoke_key(instance.ledger, old.verifier, reason="rotated", now=instance.clock())
    return old.verifier, new.verifier
