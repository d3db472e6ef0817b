"""The synthetic world's knobs and their defaults: the one place they are written.

Standard library only, so `SyntheticEventSource` (a Dagster resource whose fields mirror these)
can take its defaults from here without importing numpy at code-location load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DRIFT_SCENARIOS = ("none", "covariate", "concept")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 7
    n_users: int = 5_000
    n_merchants: int = 800
    events_per_day: int = 4_000
    fraud_rate: float = 0.004
    drift_scenario: str = "none"
    drift_start: dt.date | None = None
    drift_ramp_days: int = 3

    def __post_init__(self):
        if self.drift_scenario not in DRIFT_SCENARIOS:
            raise ValueError(f"unknown drift_scenario {self.drift_scenario!r}; choose one of {DRIFT_SCENARIOS}")
        if self.drift_scenario != "none" and self.drift_start is None:
            raise ValueError(f"drift_scenario {self.drift_scenario!r} needs a drift_start date")
        if not 0 <= self.fraud_rate < 0.05:
            raise ValueError(f"fraud_rate must be in [0, 0.05), got {self.fraud_rate}")


DEFAULT_WORLD = WorldConfig()
