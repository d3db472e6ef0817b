"""Drift and performance monitoring: the decision logic (drift.py) and its data access (data.py)."""
