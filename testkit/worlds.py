"""Synthetic worlds small enough for tests: seconds to generate, enough fraud to train on."""

from __future__ import annotations

from typing import Any

SMALL_WORLD: dict[str, Any] = dict(seed=11, n_users=300, n_merchants=80, events_per_day=600, fraud_rate=0.01)
