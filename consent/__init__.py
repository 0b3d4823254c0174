"""Consents: vocabularies, lifecycle, receipts."""
