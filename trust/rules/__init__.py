"""Rules package."""
