"""Synthetic card-transaction world: the default event source."""

from .generator import DRIFT_SCENARIOS, LABEL_COLUMNS, TRANSACTION_COLUMNS, SyntheticWorld, WorldConfig

__all__ = ["DRIFT_SCENARIOS", "LABEL_COLUMNS", "TRANSACTION_COLUMNS", "SyntheticWorld", "WorldConfig"]
