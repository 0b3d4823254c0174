"""Webhook delivery: Standard Webhooks signing and the outbox delivery worker."""
