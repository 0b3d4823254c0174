"""The demo trust: realistic seeded data so a newcomer sees every capability working."""

from __future__ import annotations

import json
from pathlib import Path

from api.instance import CONFIG_NAME, Instance, initialise

DEMO_NAME = "Riverside Community Data Trust"
DEMO_MISSION = (
    "Help Riverside's charities, council and researchers learn what works for local people, "
    "without anyone losing control of their own data."
)


def seed(data_dir: Path) -> Instance:
    """Create and seed the demo trust in *data_dir*, or reopen it if it exists."""
    if (data_dir / CONFIG_NAME).exists():
        return Instance.open(data_dir)
    instance = initialise(data_dir, name=DEMO_NAME, mission=DEMO_MISSION)
    credentials: dict[str, object] = {}
    (data_dir / "demo-credentials.json").write_text(json.dumps(credentials, indent=2) + "\n")
    instance.ledger.sign_checkpoint()
    return instance
