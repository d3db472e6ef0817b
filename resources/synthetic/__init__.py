"""Synthetic card-transaction world: the default event source.

The generator (numpy, pandas) is imported on first use of its names, so importing
`resources.synthetic.config` for the defaults stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import DEFAULT_WORLD, DRIFT_SCENARIOS, WorldConfig

if TYPE_CHECKING:  # served by __getattr__ below at run time
    from .generator import LABEL_COLUMNS, TRANSACTION_COLUMNS, SyntheticWorld

__all__ = ["DEFAULT_WORLD", "DRIFT_SCENARIOS", "LABEL_COLUMNS", "TRANSACTION_COLUMNS", "SyntheticWorld", "WorldConfig"]
_GENERATOR_NAMES = {"LABEL_COLUMNS", "TRANSACTION_COLUMNS", "SyntheticWorld"}


def __getattr__(name: str):
    if name in _GENERATOR_NAMES:
        from . import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
