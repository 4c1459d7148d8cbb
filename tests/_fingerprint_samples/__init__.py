"""Fixed modules whose code fingerprints tests/test_fingerprint.py pins across Pythons."""
