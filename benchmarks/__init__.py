"""Measurements of the running system (not tests, not in the package)."""
