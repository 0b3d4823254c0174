"""The demo trust: realistic seeded data so a newcomer sees every capability working.

Seeding order matters: people and the partner client (identity), then organisations,
appointments, agreements, ethics decisions and requests (governance), then consents,
then check decisions, then webhook subscriptions and a confirmed deletion. The trust's
first entries are dated before the governance story begins (six weeks ago), so every
request is judged by the configuration in force when it was submitted.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.instance import CONFIG_NAME, Instance, initialise
from api.seed_checks import seed_checks
from api.seed_consent import seed_consent
from api.seed_governance import seed_governance
from api.seed_identity import seed_identity
from api.seed_webhooks import seed_webhooks

DEMO_NAME = "Riverside Community Data Trust"
DEMO_MISSION = (
    "Help Riverside's charities, council and researchers learn what works for local people, "
    "without anyone losing control of their own data."
)
STORY_STARTS = timedelta(days=60)
CREDENTIALS = "demo-credentials.json"


def seed(data_dir: Path) -> Instance:
    """Create and seed the demo trust in *data_dir*, or reopen it if it exists."""
    if (data_dir / CONFIG_NAME).exists():
        return Instance.open(data_dir)
    founded = datetime.now(UTC) - STORY_STARTS
    first = initialise(data_dir, name=DEMO_NAME, mission=DEMO_MISSION, clock=lambda: founded)
    first.close()
    instance = Instance.open(data_dir)
    credentials: dict[str, Any] = {}
    seed_identity(instance, credentials)
    seed_governance(instance, credentials)
    seed_consent(instance, credentials)
    seed_checks(instance, credentials)
    seed_webhooks(instance, credentials)
    instance.ledger.sign_checkpoint()
    path = data_dir / CREDENTIALS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(credentials, indent=2) + "\n")
    return instance
