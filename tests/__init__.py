"""The test suite (mirrors the code tree)."""
