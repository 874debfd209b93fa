"""Candlewick's benchmark harness (not imported by the package). Run: python -m bench --help."""
