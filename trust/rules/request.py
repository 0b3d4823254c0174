"""Rule: the access request named is the caller's, approved, unrevoked, unexpired, for this purpose."""

from __future__ import annotations

from trust.rules.base import Context, Outcome, RuleResult
from trust.state import RequestState, covers

NAME = "request"


def expires_at(request: RequestState) -> str | None:
    """When an approved request's permission ends (decision time plus its duration)."""
    return request.expires_at


def evaluate(ctx: Context) -> RuleResult:
    """Pass when the named request is approved for this organisation and purpose, and still current."""
    action = ctx.action
    request = ctx.state.requests.get(action.request)
    if request is None or request.submitted_at > ctx.at or request.organisation != action.organisation:
        return RuleResult(NAME, Outcome.FAIL, f"there is no access request {action.request} from {action.organisation}")
    ctx.request = request
    evidence: list[int] = [request.submitted_seq]
    decided = request.decided_at is not None and request.decided_at <= ctx.at
    if not decided or request.decided_seq is None:
        return RuleResult(
            NAME, Outcome.FAIL, f"request {request.id} has not been decided by the trustees yet", tuple(evidence)
        )
    evidence.append(request.decided_seq)
    if request.outcome != "approved":
        return RuleResult(NAME, Outcome.FAIL, f"request {request.id} was rejected by the trustees", tuple(evidence))
    if request.revoked_at is not None and request.revoked_seq is not None and request.revoked_at <= ctx.at:
        evidence.append(request.revoked_seq)
        return RuleResult(
            NAME, Outcome.FAIL, f"the trustees revoked request {request.id} at {request.revoked_at}", tuple(evidence)
        )
    ends = expires_at(request)
    if ends is not None and ends <= ctx.at:
        return RuleResult(NAME, Outcome.FAIL, f"request {request.id} expired at {ends}", tuple(evidence))
    if not covers(request.purpose, action.purpose):
        return RuleResult(
            NAME,
            Outcome.FAIL,
            f"request {request.id} was approved for {request.purpose}, which does not cover {action.purpose}",
            tuple(evidence),
        )
    until = f" until {ends}" if ends else ""
    return RuleResult(NAME, Outcome.PASS, f"request {request.id} was approved{until}", tuple(evidence))
