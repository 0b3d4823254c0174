"""Governance: organisations, agreements, ethics, access requests, votes, and the rules engine."""
