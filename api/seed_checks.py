"""Demo check decisions: the food bank asks before it shares, and the trust answers on the ledger.

Runs after the governance and consent seeds. It finds the food bank's approved request and the
people whose consents the food bank collected, then records a few real decisions: a permit
for a batch (people who withdrew are excluded, with the reason), a deny for a purpose the
request does not cover, and a dry run that records nothing.
"""

from __future__ import annotations

from typing import Any

from api.instance import Instance
from trust.rules.base import ProposedAction

FOOD_BANK = "org_riverside_food_bank"


def seed_checks(instance: Instance, credentials: dict[str, Any]) -> None:
    """Record demo decisions for the food bank; note their ids in *credentials*."""
    service = instance.checks
    if service is None:  # pragma: no cover - Instance.open always starts it
        return
    state = service.state
    with state.lock:
        approved = [
            r
            for r in state.requests.values()
            if r.organisation == FOOD_BANK and r.outcome == "approved" and r.revoked_at is None
        ]
        subjects = sorted(
            {
                c.subject
                for c in state.consents.values()
                if c.organisation == FOOD_BANK and "statistics.aggregate" in c.purposes
            }
        )
    if not approved or not subjects:
        return
    request = approved[0]
    now = instance.clock()
    batch = ProposedAction(
        organisation=FOOD_BANK,
        purpose=request.purpose,
        categories=request.categories,
        operation=request.operation,
        request=request.id,
        subjects=tuple(subjects),
        cohort_size=request.cohort_size or len(subjects),
    )
    permit = service.decide(batch, actor=FOOD_BANK, now=now)
    narrow = ProposedAction(
        organisation=FOOD_BANK,
        purpose="research.health",
        categories=("health.mental",),
        operation="pseudonymised",
        request=request.id,
        subjects=tuple(subjects[:3]),
    )
    deny = service.decide(narrow, actor=FOOD_BANK, now=now)
    credentials["checks"] = {
        "request": request.id,
        "decisions": [
            {"decision_id": r.entry.seq, "decision": r.decision.decision} for r in (permit, deny) if r.entry is not None
        ],
    }
